import dataclasses
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from microturn.engine.parity import random_batch
from microturn.errors import CheckpointError
from microturn.model.checkpoint import load_model, save_model


def test_round_trip_gives_identical_outputs(small_model, tmp_path):
    path = tmp_path / "m.safetensors"
    small_model.codec.range.copy_(torch.tensor([-6.0, -0.5]))
    save_model(small_model, path)
    loaded = load_model(path, expect=small_model.cfg)
    assert torch.equal(loaded.codec.range, small_model.codec.range)
    batch = random_batch(small_model.cfg, 1, 3)
    with torch.no_grad():
        assert torch.equal(loaded.hidden(batch), small_model.hidden(batch))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_other_config_is_refused_and_nothing_overwritten(small_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(small_model, path)
    before = path.read_bytes()
    other = dataclasses.replace(small_model.cfg, n_layers=3)
    with pytest.raises(CheckpointError, match=r"n_layers: checkpoint 2 vs config 3"):
        load_model(path, expect=other)
    assert path.read_bytes() == before


def test_corrupt_truncated_and_pickle_files(small_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(small_model, path)
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors"):
        load_model(tmp_path / "trunc.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 100)
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors"):
        load_model(tmp_path / "garbage.safetensors")
    (tmp_path / "m.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="pickle checkpoints are refused"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")


def test_foreign_safetensors_and_wrong_shapes(small_model, tmp_path):
    save_file({"x": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="format None"):
        load_model(tmp_path / "foreign.safetensors")
    state = {k: v.contiguous() for k, v in small_model.state_dict().items()}
    state["text_head.weight"] = torch.zeros(3, 3)
    meta = {"format": "microturn-checkpoint/1", "config": small_model.cfg.to_json()}
    save_file(state, tmp_path / "shapes.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="wrong shapes.*text_head.weight"):
        load_model(tmp_path / "shapes.safetensors")
