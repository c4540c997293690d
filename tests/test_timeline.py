import numpy as np
import pytest

from conftest import tone
from microturn.config import TurnLayout
from microturn.errors import InputError
from microturn.streams.audio import DMelCodec, MelNorm
from microturn.streams.text import ByteTokenizer
from microturn.streams.timeline import Timeline, timeline_to_turns, turns_to_timeline
from microturn.streams.turns import SILENT, SPEAK, Event, TextQueue, TurnPacker

LAY = TurnLayout()
TOK = ByteTokenizer()


def _key(events):
    return sorted(
        (e.kind, round(e.t, 6), e.text, None if e.end is None else round(e.end, 6)) for e in events
    )


def test_timeline_turns_timeline_is_exact():
    events = [
        Event(0.0, "user_text", "hi there"),  # typed at t = 0
        Event(1.2, "result", "4,294,967,296"),
        Event(0.4, "model_word", "hello"),
        Event(0.6, "model_word", "you"),
        Event(1.0, "delegation", "2**32"),
        Event(2.4, "model_word", "¿sí?"),
        Event(0.4, "model_speech", end=1.0),
        Event(2.4, "model_speech", end=3.0),
        Event(3.4, "user_text", "bye"),
    ]
    tl = Timeline(duration=4.0, events=events, user_audio=tone(4.0))
    batch = timeline_to_turns(tl, LAY, DMelCodec(), MelNorm(80))
    assert batch.shape == (1, 20)
    assert batch.control[0, 1].item() == SPEAK and batch.control[0, 0].item() == SILENT
    assert bool(batch.audio_in_mask.all()) and not bool(batch.video_mask.any())
    back = turns_to_timeline(batch, LAY)
    assert _key(back.events) == _key(events)


def test_speech_at_time_zero_and_empty_timeline():
    tl = Timeline(duration=1.0, events=[])
    batch = timeline_to_turns(tl, LAY, DMelCodec(), MelNorm(80))
    assert batch.shape == (1, 5) and not bool(batch.audio_in_mask.any())
    assert (batch.text_out == TOK.PAD).all() and (batch.control == SILENT).all()
    assert turns_to_timeline(batch, LAY).events == []


def test_text_queue_spills_a_few_bytes_per_turn():
    q = TextQueue(4)
    q.put("abcdef")
    assert q.take() == list(b"abcd")
    assert q.take() == list(b"ef") + [TOK.SEP, TOK.PAD]
    assert q.take() == [TOK.PAD] * 4
    with pytest.raises(InputError, match="empty text"):
        q.put("")


def test_packer_checks_chunks():
    packer = TurnPacker(LAY, DMelCodec())
    with pytest.raises(InputError, match="expected 3200 mono samples"):
        packer.pack(np.zeros(100, np.float32))
    with pytest.raises(InputError, match="expected 3200 mono samples"):
        packer.pack(np.zeros(0, np.float32))
    with pytest.raises(InputError, match="expected 3200 mono samples"):
        packer.pack(np.zeros(3200 * 50, np.float32))
    inp = packer.pack(np.zeros(3200, np.float32), np.zeros((80, 80, 3), np.uint8))
    assert inp.audio.shape == (4, 320) and inp.video.shape == (4, 3, 40, 40)
    assert inp.user_text == [TOK.PAD] * 4


def test_a_new_delegate_token_restarts_an_unfinished_request():
    from microturn.streams.turns import TurnOutput, TurnUnpacker

    un = TurnUnpacker(LAY)
    junk = TurnOutput(SILENT, [TOK.DELEGATE, ord("x"), ord("y"), TOK.PAD], None)
    real = TurnOutput(SILENT, [TOK.DELEGATE, ord("4"), TOK.DELEGATE_END, TOK.PAD], None)
    events = un.unpack(0, junk)[0] + un.unpack(1, real)[0]
    assert [(e.kind, e.text, e.t) for e in events] == [("delegation", "4", 0.4)]
