"""Property tests: stream round trips hold for any input hypothesis can think of."""

from hypothesis import given, settings
from hypothesis import strategies as st

from microturn.config import TurnLayout
from microturn.streams.audio import DMelCodec, MelNorm
from microturn.streams.text import ByteTokenizer, Utf8Stream
from microturn.streams.timeline import Timeline, timeline_to_turns, turns_to_timeline
from microturn.streams.turns import Event

LAY = TurnLayout()
TOK = ByteTokenizer()
words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=3
)


@given(st.text(), st.lists(st.integers(0, 12), max_size=20))
def test_utf8_stream_reassembles_any_split(text, cuts):
    ids = TOK.encode(text)
    stream, out, start = Utf8Stream(), "", 0
    for cut in cuts:
        out += stream.push(ids[start : start + cut])
        start += cut
    out += stream.push(ids[start:])
    assert out == text


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), words), max_size=8, unique_by=lambda x: x[0]),
    st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["user_text", "result"]), words),
        max_size=4,
        unique_by=lambda x: x[0],
    ),
)
def test_random_timelines_round_trip(model_words, inputs):
    """Words start on turn boundaries, far enough apart that no queue spills over."""
    events = [Event(round(5 * k * LAY.turn_seconds, 6), "model_word", w) for k, w in model_words]
    events += [Event(round(5 * k * LAY.turn_seconds, 6), kind, w) for k, kind, w in inputs]
    tl = Timeline(duration=5 * 41 * LAY.turn_seconds, events=events)
    back = turns_to_timeline(timeline_to_turns(tl, LAY, DMelCodec(), MelNorm(80)), LAY)
    key = lambda evs: sorted((e.kind, e.t, e.text) for e in evs)
    assert key(back.events) == key(events)
