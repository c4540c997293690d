import pytest
import torch

from microturn.config import NAMED_MODELS, ModelConfig, TurnLayout, load_config, named_config
from microturn.errors import ConfigError
from microturn.model.interaction import InteractionModel


def test_layout_counts():
    lay = TurnLayout()
    assert lay.turn_samples == 3200 and lay.frames_per_turn == 16 and lay.audio_slots == 4
    assert lay.video_slots == 4
    assert lay.in_tokens == 1 + 4 + 4 + 4 + 4 and lay.out_tokens == 1 + 4 + 4
    assert lay.offset("audio_in") == 1 and lay.offset("control") == lay.in_tokens


def test_unknown_key_in_toml_is_named(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[model]\nd_model = 128\nn_layerz = 3\n')
    with pytest.raises(ConfigError, match=r"model\.n_layerz"):
        load_config(f)


@pytest.mark.parametrize("text,message", [
    ('[model.layout]\nvideo_height = 50\n', "video_height=50.*multiple of 40"),
    ('[model.layout]\nturn_msec = 100\n', r"layout\.turn_msec"),
    ('[model]\nd_model = "big"\n', "d_model.*expected int"),
    ('[modle]\n', "modle"),
    ('base = "huge"\n', "huge"),
    ('not toml [', "not valid TOML"),
])
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f)


def test_toml_with_base_and_overrides(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(
        'base = "tiny"\n[model]\nn_layers = 2\n[model.layout]\ntext_out_slots = 3\n'
        "[engine]\nmax_sessions = 3\n"
    )
    cfg = load_config(f)
    assert cfg.model.n_layers == 2 and cfg.model.d_model == NAMED_MODELS["tiny"]["d_model"]
    assert (
        cfg.model.layout.text_out_slots == 3 and cfg.engine.max_sessions == 3 and cfg.name == "mine"
    )


def test_invalid_model_values():
    with pytest.raises(ConfigError, match="n_heads"):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ConfigError, match="moe_top_k"):
        ModelConfig(moe_experts=4, moe_top_k=5)
    with pytest.raises(ConfigError, match="copy_lookup needs byte_history"):
        ModelConfig(byte_history=False)
    with pytest.raises(ConfigError, match="unknown config name"):
        named_config("gigantic")
    with pytest.raises(ConfigError, match="no such file"):
        load_config("/nonexistent/x.toml")


def test_config_json_round_trip():
    cfg = named_config("large-moe").model
    assert ModelConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("name", list(NAMED_MODELS))
def test_named_configs_build(name):
    cfg = named_config(name).model
    with torch.device("meta"):
        model = InteractionModel(cfg)
    assert model.num_params() > 1e6
