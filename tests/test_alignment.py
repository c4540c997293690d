"""The listening transcript's aligned loss (model.alignment) against every placement counted
by hand, against slot cross-entropy on a window of one slot, and on a tiny training run."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from microturn.config import TurnLayout, named_config
from microturn.engine.parity import random_batch
from microturn.errors import InputError
from microturn.model.alignment import aligned_transcript_loss
from microturn.model.interaction import InteractionModel
from microturn.streams.text import ByteTokenizer
from microturn.streams.timeline import transcript_schedule, transcript_targets
from microturn.streams.turns import Event

PAD = ByteTokenizer.PAD
V = 260


def _case(seed: int = 0):
    """Two turns of 4 slots; bytes 'a' due at slot 2 (may come 1 early), 'b' at slot 4."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 2, 4, V, generator=g)
    heard = torch.full((1, 2, 4), PAD)
    early = torch.zeros(1, 2, 4, dtype=torch.long)
    heard.view(-1)[2], early.view(-1)[2] = ord("a"), 1
    heard.view(-1)[4] = ord("b")
    return logits, heard, early, torch.ones(1, 2, dtype=torch.bool)


def test_it_sums_every_placement_in_order_within_the_windows():
    logits, heard, early, present = _case()
    logp = logits.flatten(1, 2).log_softmax(-1)[0]
    late = 2
    paths = []
    for pa, pb in itertools.product(range(1, 2 + late + 1), range(4, 4 + late + 1)):
        if pa >= pb:
            continue
        lp = sum(
            logp[s, ord("a") if s == pa else ord("b") if s == pb else PAD] for s in range(8)
        )
        paths.append(lp)
    by_hand = -torch.logsumexp(torch.stack(paths), 0) / 2
    got = aligned_transcript_loss(logits, heard, early, present, late)
    assert math.isclose(float(got), float(by_hand), rel_tol=1e-5)


def test_a_window_of_one_slot_is_slot_cross_entropy():
    logits, heard, _, present = _case(1)
    ce = F.cross_entropy(logits.flatten(0, 2), heard.flatten(), reduction="sum") / 2
    got = aligned_transcript_loss(logits, heard, torch.zeros_like(heard), present, 0)
    assert math.isclose(float(got), float(ce), rel_tol=1e-5)


def test_slots_without_audio_are_not_scored_and_gradients_are_finite():
    logits, heard, early, _ = _case(2)
    logits.requires_grad_(True)
    present = torch.tensor([[True, False]])
    heard.view(-1)[4] = PAD  # nothing is due in the silent turn
    loss = aligned_transcript_loss(logits, heard, early, present, 3)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1].abs().sum() == 0  # the turn with no audio is left alone


def test_a_byte_may_come_from_its_word_start():
    layout = TurnLayout()
    slot = layout.turn_seconds / layout.audio_slots
    words = [Event(0.0, "user_word", "347", 1.5), Event(1.6, "user_word", "times", 1.9)]
    heard, early = transcript_schedule(words, layout, n=15)
    heard, early = heard.flatten(), early.flatten()
    due = (heard != PAD).nonzero().flatten()
    assert bytes(heard[due].tolist()).decode() == "347 times "
    first = due - early[due]
    assert (first[:3] == 1).all()  # "347": from the slot after the one the word starts in
    assert first[3] == math.floor(round(1.5 / slot, 6)) + 1  # its space: once the word ended
    starts = math.floor(round(1.6 / slot, 6)) + 1
    assert (first[4:9] == starts).all() and first[9] == math.floor(round(1.9 / slot, 6)) + 1
    assert (first <= due).all()


def test_a_batch_without_windows_is_refused_not_scored_slot_by_slot():
    cfg = named_config("tiny").model
    batch = random_batch(cfg, 1, 3, seed=1, speak=0.4)
    batch.heard = transcript_targets([], cfg.layout, 3)[None]
    with pytest.raises(InputError, match="transcript_window"):
        InteractionModel(cfg)(batch, transcript_window=4)
