import numpy as np
import pytest
import torch

from microturn.config import ModelConfig, TurnLayout
from microturn.errors import InputError
from microturn.model.fusion import HMLPStem
from microturn.streams.text import ByteTokenizer, Utf8Stream
from microturn.streams.video import frame_to_patches, patches_to_frame

LAY = TurnLayout()


def test_patches_round_trip_and_order():
    frame = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    p = frame_to_patches(frame, LAY)
    assert p.shape == (4, 3, 40, 40)
    assert np.array_equal(patches_to_frame(p, LAY), frame)
    frame2 = frame.copy()
    frame2[45, 5] = 255 - frame2[45, 5]  # bottom-left patch is index 2 (row-major)
    changed = (frame_to_patches(frame2, LAY) != p).flatten(1).any(1)
    assert changed.tolist() == [False, False, True, False]


def test_frame_errors():
    with pytest.raises(InputError, match="multiples of 40"):
        frame_to_patches(np.zeros((50, 80, 3), np.uint8), LAY)
    with pytest.raises(InputError, match="takes 80x80"):
        frame_to_patches(np.zeros((120, 80, 3), np.uint8), LAY)
    with pytest.raises(InputError, match=r"\[height, width, 3\]"):
        frame_to_patches(np.zeros((80, 80), np.uint8), LAY)


def test_hmlp_patches_are_independent():
    stem = HMLPStem(64, 32, invariant=True, eps=1e-5).eval()
    x = torch.randn(2, 4, 3, 40, 40)
    y = stem(x)
    assert y.shape == (2, 4, 32)
    x2 = x.clone()
    x2[1, 2, :, 7:30, 3:33] += torch.randn(3, 23, 30)
    y2 = stem(x2)
    diff = (y2 - y).abs().amax(-1)
    assert diff[1, 2] > 0
    diff[1, 2] = 0
    assert diff.max() == 0  # bitwise: no other patch moved


def test_byte_tokenizer_any_language():
    tok = ByteTokenizer()
    for text in ("hello", "¿Qué tal?", "日本語", "🙂"):
        assert tok.decode(tok.encode(text)) == text
    assert tok.name(tok.DELEGATE) == "<delegate>" and ModelConfig().vocab_size == tok.vocab_size
    stream = Utf8Stream()
    ids = tok.encode("日本")
    assert stream.push(ids[:2]) == "" and stream.push(ids[2:]) == "日本"
