import dataclasses

import pytest
import torch
import torch.nn.functional as F

from microturn.engine.parity import random_batch
from microturn.model.fusion import byte_history, continuation, stream_history
from microturn.model.heads import FlowHead
from microturn.model.interaction import PAD, InteractionModel, text_onsets
from microturn.model.linear import tiled_linear
from microturn.model.moe import MoEFeedForward
from microturn.model.trunk import SwiGLU
from microturn.model.window import AttentionWindow
from microturn.streams.text import ByteTokenizer


@pytest.mark.parametrize(
    "k,n", [(1024, 256), (320, 128), (704, 256), (128, 2), (64, 1), (256, 272)]
)
def test_tiled_linear_rows_do_not_depend_on_the_batch(k, n):
    """Plain GEMMs fail this for many shapes on MKL (see model.linear); tiles must not."""
    w = torch.randn(n, k)
    x = torch.randn(3000, k)
    full = tiled_linear(x, w)
    for m in (1, 2, 3, 7, 8, 9, 31, 500):
        assert torch.equal(tiled_linear(x[:m], w), full[:m])
        assert torch.equal(
            tiled_linear(x[101 : 101 + m], w), full[101 : 101 + m]
        )  # other places in a tile
    assert torch.allclose(full, F.linear(x, w), atol=1e-3)


def test_tiled_linear_gradients_match_plain():
    w = torch.randn(64, 32, requires_grad=True)
    x = torch.randn(37, 32, requires_grad=True)
    tiled_linear(x, w).pow(2).sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.linear(x, w).pow(2).sum().backward()
    assert torch.allclose(gx, x.grad, atol=1e-4) and torch.allclose(gw, w.grad, atol=1e-4)


def test_window_layout_matches_its_definition():
    win = AttentionWindow(tokens_per_turn=3, sink_turns=1, window_turns=4)
    for t in range(14):
        held = win.chunk_turns(torch.tensor(t)).tolist()
        visible = sorted(u for u in held if u >= 0)
        assert visible == sorted({0} | set(range(max(1, t - 3), t + 1)))  # sink + last 4 turns
        for u in visible:  # every visible turn sits in its own ring chunk
            assert held[win.chunk_of_turn(torch.tensor(u)).item()] == u


def test_forward_returns_a_loss_per_stream(small_model):
    batch = random_batch(small_model.cfg, 2, 6, seed=1)
    small_model.train()
    losses = small_model(batch)
    assert set(losses) == {"control", "text", "audio", "loss"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for name, p in small_model.trunk.named_parameters():  # the flow head's adaLN starts at zero
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(torch.isfinite(p.grad).all() for p in small_model.parameters() if p.grad is not None)


def test_training_steps_lower_every_loss(small_model):
    batch = random_batch(small_model.cfg, 2, 6, seed=2)
    small_model.train()
    opt = torch.optim.AdamW(small_model.parameters(), lr=3e-3)
    first = {k: v.item() for k, v in small_model(batch).items()}
    for _ in range(30):
        opt.zero_grad()
        small_model(batch)["loss"].backward()
        opt.step()
    last = {k: v.item() for k, v in small_model(batch).items()}
    for k in ("control", "text", "audio"):
        assert last[k] < first[k], (k, first[k], last[k])


def test_flow_head_learns_a_toy_conditional_distribution():
    """Target: N(mu(c), 0.1^2) with mu = +-1 per coordinate set by a binary condition."""
    torch.manual_seed(0)
    head = FlowHead(target_dim=8, cond_dim=4, width=64, depth=2)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    losses = []
    for _ in range(400):
        c = torch.randint(0, 2, (256, 1)).float()
        cond = torch.cat([c, 1 - c, torch.zeros(256, 2)], dim=1)
        target = (2 * c - 1) * torch.ones(256, 8) + 0.1 * torch.randn(256, 8)
        loss = head.loss(target, cond, draws=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    for sign in (1.0, 0.0):
        cond = torch.tensor([[sign, 1 - sign, 0.0, 0.0]]).expand(2000, -1)
        x = head.sample(cond, steps=16, x0=torch.randn(2000, 8))
        assert abs(x.mean().item() - (2 * sign - 1)) < 0.1
        assert 0.03 < x.std(0).mean().item() < 0.3


def test_moe_routes_and_equal_experts_equal_dense(small_cfg):
    cfg = dataclasses.replace(small_cfg, moe_experts=4, moe_top_k=2)
    moe = MoEFeedForward(cfg).eval()
    dense = SwiGLU(cfg.d_model, cfg.ffn_hidden, invariant=True)
    with torch.no_grad():
        moe.gate_up.copy_(dense.gate_up.weight.expand_as(moe.gate_up))
        moe.down.copy_(dense.down.weight.expand_as(moe.down))
    x = torch.randn(50, cfg.d_model)
    assert torch.allclose(moe(x), dense(x), atol=1e-5)
    _, expert = moe.route(x)
    assert expert.shape == (50, 2) and len(expert.unique()) > 1  # tokens really are routed


def test_moe_gather_equals_grouped_bitwise(small_cfg):
    cfg = dataclasses.replace(small_cfg, moe_experts=8, moe_top_k=2)
    moe = MoEFeedForward(cfg).eval()
    x = torch.randn(40, cfg.d_model)
    with torch.no_grad():
        assert torch.equal(moe(x, gather=True), moe(x, gather=False))
        assert torch.equal(moe(x[:3], gather=True), moe(x, gather=False)[:3])


def test_moe_training_has_balance_loss(small_cfg):
    cfg = dataclasses.replace(small_cfg, moe_experts=4)
    model = InteractionModel(cfg).train()
    losses = model(random_batch(cfg, 1, 5))
    assert "moe_aux" in losses and losses["moe_aux"] > 0


def test_text_onsets_mark_where_the_model_chooses_what_to_say():
    P, D = PAD, ByteTokenizer.DELEGATE
    text = torch.tensor([[[P, P, P, P], [72, 105, P, P], [32, 116, P, P], [P, P, P, P],
                          [P, 79, 107, P], [D, 119, P, P]]])
    onsets = text_onsets(text)
    assert onsets.nonzero().tolist() == [[0, 1, 0], [0, 4, 1]]  # a line's start, a word after a gap
    text[0, 4] = P  # a delegation after a quiet turn is a choice too
    assert text_onsets(text).nonzero().tolist() == [[0, 1, 0], [0, 5, 0]]


def test_byte_history_gives_each_slot_the_bytes_before_it_across_gaps_and_turns(small_model):
    a, b, c, d = (ord(x) for x in "abcd")
    tokens = torch.tensor([[a, PAD, b, c, PAD, d]])
    last, before = byte_history(tokens, inclusive=False)
    assert last.tolist() == [[PAD, a, a, b, c, c]] and before.tolist() == [[PAD, PAD, PAD, a, b, b]]
    last, before = byte_history(tokens, inclusive=True)
    assert last.tolist() == [[a, a, b, c, c, d]] and before.tolist() == [[PAD, PAD, a, b, b, c]]
    # over turns [B, L, S]: one call on the whole sequence == turn by turn with the bytes carried
    seq = torch.randint(0, 272, (2, 5, 4)).masked_fill(torch.rand(2, 5, 4) < 0.4, PAD)
    for inclusive, depth in [(False, 2), (True, 2), (False, 3), (True, 3)]:
        whole, _ = stream_history(seq, inclusive, depth=depth)
        carried = torch.full((2, 3), PAD)  # a session carries three bytes, whatever the depth
        for t in range(5):
            hist, carried = stream_history(seq[:, t : t + 1], inclusive, carried, depth)
            assert len(hist) == depth
            for i in range(depth):
                assert torch.equal(hist[i], whole[i][:, t : t + 1]), (inclusive, depth, t, i)
    # the tables learn: a training step reaches all four
    small_model.train()
    small_model(random_batch(small_model.cfg, 2, 6, seed=3))["loss"].backward()
    for name, emb in small_model.embed.history.items():
        assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0, name


def test_copy_lookup_finds_what_followed_the_last_two_written_bytes_when_read():
    a, b, c, d = (ord(x) for x in "abcd")
    read = torch.tensor([[a, b, c, PAD, a, b, d]])
    read_turn = torch.tensor([[0, 0, 1, 1, 6, 6, 7]])
    history = byte_history(read, inclusive=False)
    wrote = (torch.tensor([[b, b, b, b, c]]), torch.tensor([[a, a, a, a, b]]))  # (last, before)
    turns = torch.tensor([[7, 6, 2, 9, 7]])
    got = continuation(read, history, read_turn, wrote, turns, window=4)
    # the latest "ab" -> d at turn 7; at turn 6 d is not read yet and the first "ab" is out of
    # the window; at turn 2 only the first "ab" was read; "bc" -> a across the PAD gap
    assert got.tolist() == [[d, PAD, c, d, a]]


def test_copy_lookup_keys_on_three_bytes_where_they_occurred_else_two():
    """Reading "times 29 is 10": after "es " two bytes ("s ") point at the later "is 1",
    three at "2"; "xs " never occurred, so its two bytes still point at "1"."""
    read = torch.tensor([[ord(x) for x in "times 29 is 10"]])
    history = byte_history(read, inclusive=False, depth=3)
    key = lambda text: tuple(torch.tensor([[ord(x)]]) for x in reversed(text))  # latest first
    at = torch.tensor([[0]])
    look = lambda text: chr(continuation(read, history, at, key(text), at, window=4).item())
    assert look("es ") == "2" and look("xs ") == "1" and look("s ") == "1"
    assert chr(continuation(read, history[:2], at, key("es "), at, window=4).item()) == "1"


def test_transcript_feedback_teacher_forced_is_what_it_writes_live(small_model):
    """Fed its own greedy bytes as targets, the teacher-forced transcript is the live one: the
    slot that trains on byte k-1 is the slot that sees it live (across turns too). Without the
    bytes fed back (a zero table), it is the head alone."""
    batch = random_batch(small_model.cfg, 2, 5, seed=3)
    h = small_model.hidden(batch)
    live = small_model.predict(h, batch).transcript_logits  # batch.heard is None: its own bytes
    own = dataclasses.replace(batch, heard=live.argmax(-1))
    forced = small_model.predict(h, own).transcript_logits
    torch.testing.assert_close(forced, live, rtol=1e-5, atol=1e-5)
    shifted = dataclasses.replace(batch, heard=live.argmax(-1).roll(1, dims=-1))
    assert not torch.allclose(small_model.predict(h, shifted).transcript_logits, live)
    torch.nn.init.zeros_(small_model.heard_before.weight)
    plain = small_model.transcript_head(h[..., small_model.cfg.layout.offset("audio_in"):, :][
        ..., : small_model.cfg.layout.audio_slots, :])
    assert torch.equal(small_model.predict(h, own).transcript_logits, plain)


def test_transcript_feedback_learns_where_a_slot_is_in_its_word(small_cfg):
    """A transcript a byte a slot from states that cannot tell its slots apart (each slot's
    state is its word's, as when a word has ended and its bytes drain): the head alone can only
    write the word's likeliest byte; with the byte before fed back it spells the word."""
    torch.manual_seed(0)
    d = small_cfg.d_model
    words = [b"cat ", b"dog ", b"347 "]
    state = torch.randn(len(words), d)
    targets = torch.tensor([list(w) for w in words])  # [word, 4]
    h = state[:, None, :].expand(-1, 4, -1)  # the same state in all four slots
    for feedback in (False, True):
        model = InteractionModel(dataclasses.replace(small_cfg, transcript_feedback=feedback))
        if feedback:
            torch.nn.init.normal_(model.heard_before.weight, std=0.02)
        heads = [p for n, p in model.named_parameters() if n.startswith(("transcript_head",
                                                                         "heard_before"))]
        opt = torch.optim.Adam(heads, lr=3e-2)
        for _ in range(200):
            opt.zero_grad()
            logits = model.transcript(h[:, None], heard=targets[:, None])
            F.cross_entropy(logits.flatten(0, -2), targets.flatten()).backward()
            opt.step()
        with torch.no_grad():
            wrote = model.transcript(h[:, None]).argmax(-1)[:, 0]  # live: its own bytes
        right = (wrote == targets).float().mean().item()
        assert right == 1.0 if feedback else right <= 0.5, (feedback, wrote)
