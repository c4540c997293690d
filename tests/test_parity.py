"""Trainer-sampler alignment: Engine.step turn by turn == InteractionModel.forward, bitwise."""

import dataclasses

import pytest
import torch

from microturn.engine.parity import measure_parity
from microturn.model.interaction import PAD, InteractionModel


def test_one_session_past_the_window(small_model):
    r = measure_parity(small_model, starts=[0], turns=12)  # window 4 + sink 1
    assert r.compared == 12
    assert r.max_abs_diff == 0.0, r


def test_batch_of_sessions_at_different_lengths(small_model):
    r = measure_parity(small_model, starts=[0, 2, 7], turns=11, seed=3)
    assert r.compared == 33
    assert r.max_abs_diff == 0.0, r


def test_all_silent_turns(small_model):
    r = measure_parity(small_model, starts=[0, 1], turns=9, seed=4, speak=0.0)
    assert r.max_abs_diff == 0.0, r


def test_all_speaking(small_model):
    r = measure_parity(small_model, starts=[0, 1], turns=9, seed=5, speak=1.0)
    assert r.max_abs_diff == 0.0, r


@pytest.mark.parametrize("kv_heads", [1, 4])
def test_other_head_groupings(small_cfg, kv_heads):
    model = InteractionModel(dataclasses.replace(small_cfg, n_kv_heads=kv_heads)).eval()
    assert measure_parity(model, starts=[0, 3], turns=8, seed=6).max_abs_diff == 0.0


def test_mixture_of_experts(small_cfg):
    model = InteractionModel(dataclasses.replace(small_cfg, moe_experts=4, moe_top_k=2)).eval()
    assert measure_parity(model, starts=[0, 2, 3], turns=9, seed=7).max_abs_diff == 0.0


def test_copy_lookup_finds_what_it_read_the_same_in_both(small_model):
    """Text from three letters: written pairs recur in the read streams within the window, so
    the continuations are mostly real bytes, and they must agree turn by turn."""
    from microturn.engine.parity import random_batch

    hist = small_model.histories(random_batch(small_model.cfg, 2, 12, seed=9, letters=3))
    follows = hist["text_out"][2:] + hist["control"][2:]
    assert all(f.ne(PAD).float().mean() > 0.5 for f in follows)
    r = measure_parity(small_model, starts=[0, 3], turns=12, seed=9, letters=3)
    assert r.max_abs_diff == 0.0, r


def test_three_byte_copy_lookup_is_the_same_in_both(small_cfg):
    """`lookup_bytes = 3`: the engine carries three bytes a stream and keys the lookup on
    them, as the training pass does on whole sequences."""
    from microturn.engine.parity import random_batch

    model = InteractionModel(dataclasses.replace(small_cfg, lookup_bytes=3)).eval()
    for emb in model.embed.history.values():
        torch.nn.init.normal_(emb.weight, std=0.02)
    batch = random_batch(model.cfg, 2, 12, seed=9, letters=3)
    three, two = model.histories(batch), InteractionModel(small_cfg).histories(batch)
    assert not torch.equal(three["text_out"][2], two["text_out"][2])  # the key changed some
    r = measure_parity(model, starts=[0, 3], turns=12, seed=9, letters=3)
    assert r.max_abs_diff == 0.0, r


def test_without_batch_invariant_kernels_the_gap_is_small(small_cfg):
    """Plain GEMMs pick kernels by row count, so the two paths differ in the last bits."""
    model = InteractionModel(dataclasses.replace(small_cfg, batch_invariant=False)).eval()
    r = measure_parity(model, starts=[0, 2], turns=8, seed=8)
    assert r.max_abs_diff < 1e-3, r
