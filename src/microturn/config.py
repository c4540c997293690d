"""Every config dataclass: the turn layout, the model, the engine.

The layout is the one place that says which streams exist and how many slots each has
per micro-turn; the model, engine and streams all read it from here.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PATCH = 40  # video patch side; the hMLP stem (10 -> 2 -> 2) is built for it

# Slot order inside one micro-turn. IN_k streams come first, then OUT_k; OUT_k is
# generated autoregressively in this order (control, then text, then audio).
IN_STREAMS = ("time", "audio_in", "video", "user_text", "background")
OUT_STREAMS = ("control", "text_out", "audio_out")
CONTROL_TOKENS = ("silent", "speak")  # is the model voicing audio this turn


@dataclass(frozen=True)
class TurnLayout:
    """The fixed shape of one micro-turn: [IN_k][OUT_k], every stream a fixed slot count."""

    turn_ms: int = 200
    sample_rate: int = 16_000
    hop: int = 200  # 12.5 ms mel hop at 16 kHz
    mel_channels: int = 80
    frames_per_token: int = 4  # mel frames stacked into one audio token
    dmel_levels: int = 16
    video_height: int = 80
    video_width: int = 80
    user_text_slots: int = 4
    background_slots: int = 4
    text_out_slots: int = 4

    def __post_init__(self) -> None:
        if self.turn_ms <= 0:
            raise ConfigError(f"layout.turn_ms={self.turn_ms}: expected a positive number of ms")
        if self.turn_samples * 1000 != self.turn_ms * self.sample_rate:
            raise ConfigError(
                f"layout.turn_ms={self.turn_ms} at sample_rate={self.sample_rate} is not a whole "
                "number of samples")
        if self.turn_samples % (self.hop * self.frames_per_token):
            raise ConfigError(
                f"layout: a turn of {self.turn_samples} samples is not a whole number of audio "
                f"tokens of {self.frames_per_token} frames x hop {self.hop}")
        for name in ("video_height", "video_width"):
            v = getattr(self, name)
            if v <= 0 or v % PATCH:
                raise ConfigError(f"layout.{name}={v}: expected a positive multiple of {PATCH}")
        for name in ("user_text_slots", "background_slots", "text_out_slots", "mel_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"layout.{name}={getattr(self, name)}: expected >= 1")

    @property
    def turn_seconds(self) -> float:
        return self.turn_ms / 1000

    @property
    def turn_samples(self) -> int:
        return self.turn_ms * self.sample_rate // 1000

    @property
    def frames_per_turn(self) -> int:
        return self.turn_samples // self.hop

    @property
    def audio_slots(self) -> int:
        """Audio tokens per turn, the same for input (dMel) and output (flow head)."""
        return self.frames_per_turn // self.frames_per_token

    @property
    def audio_token_dim(self) -> int:
        return self.frames_per_token * self.mel_channels

    @property
    def video_slots(self) -> int:
        return (self.video_height // PATCH) * (self.video_width // PATCH)

    def slots(self, stream: str) -> int:
        return {
            "time": 1, "audio_in": self.audio_slots, "video": self.video_slots,
            "user_text": self.user_text_slots, "background": self.background_slots,
            "control": 1, "text_out": self.text_out_slots, "audio_out": self.audio_slots,
        }[stream]

    def offset(self, stream: str) -> int:
        """Index of a stream's first slot inside the turn."""
        off = 0
        for s in IN_STREAMS + OUT_STREAMS:
            if s == stream:
                return off
            off += self.slots(s)
        raise KeyError(stream)

    @property
    def in_tokens(self) -> int:
        return sum(self.slots(s) for s in IN_STREAMS)

    @property
    def out_tokens(self) -> int:
        return sum(self.slots(s) for s in OUT_STREAMS)

    @property
    def tokens_per_turn(self) -> int:
        return self.in_tokens + self.out_tokens


@dataclass(frozen=True)
class ModelConfig:
    """The interaction model: fusion embeddings, trunk, heads."""

    layout: TurnLayout = field(default_factory=TurnLayout)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_hidden: int = 704
    moe_experts: int = 0  # 0: dense SwiGLU feed-forward
    moe_top_k: int = 2
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    window_turns: int = 50  # attention looks back this many turns ...
    sink_turns: int = 1  # ... plus the first turns of the session, always
    vocab_size: int = 272  # bytes + specials, see streams.text
    flow_width: int = 256
    flow_depth: int = 3
    flow_draws: int = 4  # (t, noise) draws per target frame in training
    flow_steps: int = 8  # Euler steps at inference
    hmlp_width: int = 256
    batch_invariant: bool = True  # fixed-tile GEMMs: bitwise train == infer on CPU
    transcript_head: bool = True  # the listening transcript: a byte per audio-in slot
    transcript_feedback: bool = True  # each transcript slot sees the byte the one before wrote
    byte_history: bool = True  # text slots carry the two bytes before them (model.fusion)
    copy_lookup: bool = True  # writing slots get what followed their last two bytes when read
    lookup_bytes: int = 2  # ... or their last three, where those occurred (model.fusion)

    def __post_init__(self) -> None:
        if isinstance(self.layout, dict):  # built from TOML / JSON
            object.__setattr__(self, "layout", _build(TurnLayout, self.layout, "layout"))
        checks = [
            (
                self.d_model % self.n_heads == 0,
                f"d_model={self.d_model} must divide by n_heads={self.n_heads}",
            ),
            (
                self.n_heads % self.n_kv_heads == 0,
                f"n_heads={self.n_heads} must divide by n_kv_heads={self.n_kv_heads}",
            ),
            ((self.d_model // self.n_heads) % 2 == 0, "head_dim must be even for RoPE"),
            (self.window_turns >= 2, f"window_turns={self.window_turns}: expected >= 2"),
            (self.sink_turns >= 1, f"sink_turns={self.sink_turns}: expected >= 1"),
            (
                self.moe_experts == 0 or 1 <= self.moe_top_k <= self.moe_experts,
                f"moe_top_k={self.moe_top_k} must be in [1, moe_experts={self.moe_experts}]",
            ),
            (
                self.vocab_size >= 272,
                f"vocab_size={self.vocab_size}: expected >= 272 (bytes + specials)",
            ),
            (self.hmlp_width % 4 == 0, f"hmlp_width={self.hmlp_width} must divide by 4"),
            (
                self.transcript_head or not self.transcript_feedback,
                "transcript_feedback needs transcript_head: set transcript_feedback = false too",
            ),
            (
                self.byte_history or not self.copy_lookup,
                "copy_lookup needs byte_history: set copy_lookup = false too",
            ),
            (
                self.lookup_bytes in (2, 3),
                f"lookup_bytes={self.lookup_bytes}: expected 2 or 3",
            ),
            (
                self.flow_steps >= 1 and self.flow_draws >= 1,
                "flow_steps and flow_draws must be >= 1",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"model: {msg}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def window_tokens(self) -> int:
        """Key slots per session: sink turns and a ring of window + 1 turns (see model.window)."""
        return (self.sink_turns + self.window_turns + 1) * self.layout.tokens_per_turn

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json.loads(text)
        data.setdefault("transcript_head", False)  # stored before the head existed: it has none
        data.setdefault("transcript_feedback", False)  # likewise
        data.setdefault("byte_history", False)  # likewise
        data.setdefault("copy_lookup", False)
        data.setdefault("lookup_bytes", 2)  # stored before three-byte keys
        return _build(cls, data, "model")


@dataclass(frozen=True)
class EngineConfig:
    """Serving: how many sessions fit, and default sampling."""

    max_sessions: int = 16
    temperature: float = 0.8  # the control: when to speak
    top_k: int = 40
    flow_noise: float = 0.8  # scale of the flow head's starting noise
    text_temperature: float = 0.8  # the words

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ConfigError(f"engine.max_sessions={self.max_sessions}: expected >= 1")
        for name in ("temperature", "text_temperature"):
            if getattr(self, name) < 0:
                raise ConfigError(f"engine.{name}={getattr(self, name)}: expected >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """`microturn train`: the synthetic world it trains on, the optimiser and the schedule."""

    steps: int = 2000
    batch_size: int = 8  # sequences per step, over all processes
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    episodes: int = 2000  # training episodes rendered (and cached), cycled through
    eval_episodes: int = 28  # held-out episodes (eval split), for the periodic eval loss
    episode_seconds: float = 16.0
    families: tuple[str, ...] = ()  # () = every world family
    eval_every: int = 250
    checkpoint_every: int = 100
    seed: int = 0
    fast_gemm: bool = True  # plain GEMMs while training (same weights; the engine stays bitwise)
    cache_dir: str = ".cache/microturn"
    render_workers: int = 0  # processes rendering episodes; 0: one per core
    data: str = ""  # optional: a directory of real recordings (stereo WAV + alignment JSON)
    init_from: str = ""
    dtype: str = "bf16"  # autocast for the forward pass (fp32 master weights): "bf16" or "fp32"
    compile: bool = False  # torch.compile the training forward (pays back after ~100 CPU steps)
    pad_weight: float = 1.0  # a PAD slot of text/transcript counts this much of a real token
    own_voice_noise: float = 0.0  # share of speaking turns heard with noise (train.exposure)
    own_voice_lag: float = 0.0  # share of sequences that hear their own voice late
    own_voice_max_lag: int = 6  # ... by 1 to this many audio slots (train.exposure)
    text_noise: float = 0.0  # share of its written letters read back wrong (train.exposure)
    # 0: each transcript byte is due at exactly one slot (cross-entropy); n > 0: it may come
    # anywhere from its word's start to n slots after that one, once and in order (aligned)
    transcript_window: int = 0
    loss_weights: dict = field(default_factory=dict)  # stream -> weight in the total (default 1)
    family_weights: dict = field(default_factory=dict)  # family -> relative share of episodes
    drills: dict = field(default_factory=dict)  # training-only drill -> share, as family_weights
    # parameter-name prefix -> multiple of lr (new tables in a trained model learn faster)
    lr_scales: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.families, list):
            object.__setattr__(self, "families", tuple(self.families))
        checks = [
            (self.steps >= 1, "steps"),
            (self.batch_size >= 1, "batch_size"),
            (self.lr > 0, "lr"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio"),
            (self.warmup_steps >= 0, "warmup_steps"),
            (self.episodes >= 1, "episodes"),
            (self.render_workers >= 0, "render_workers"),
            (self.episode_seconds >= 2, "episode_seconds"),
            (self.checkpoint_every >= 1, "checkpoint_every"),
            (self.eval_every >= 1, "eval_every"),
            (self.dtype in ("bf16", "fp32"), "dtype"),
            (0 <= self.pad_weight <= 1, "pad_weight"),
            (0 <= self.own_voice_noise <= 1, "own_voice_noise"),
            (0 <= self.own_voice_lag <= 1, "own_voice_lag"),
            (isinstance(self.own_voice_max_lag, int) and self.own_voice_max_lag >= 1,
             "own_voice_max_lag"),
            (0 <= self.text_noise <= 1, "text_noise"),
            (isinstance(self.transcript_window, int) and self.transcript_window >= 0,
             "transcript_window"),
            (
                all(isinstance(v, (int, float)) and v >= 0 for v in self.loss_weights.values()),
                "loss_weights",
            ),
            (
                all(isinstance(v, (int, float)) and v > 0 for v in self.family_weights.values()),
                "family_weights",
            ),
            (all(isinstance(v, (int, float)) and v > 0 for v in self.drills.values()), "drills"),
            (
                all(isinstance(v, (int, float)) and v > 0 for v in self.lr_scales.values()),
                "lr_scales",
            ),
        ]
        for ok, key in checks:
            if not ok:
                raise ConfigError(f"train.{key}={getattr(self, key)!r}: out of range")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "custom"


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate a config dataclass from a mapping, naming any unknown key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"unknown config key '{where}.{key}'; expected one of: {', '.join(sorted(known))}"
            )
    kwargs = {}
    for key, value in data.items():
        default = getattr(cls(), key) if key != "layout" else None
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if (
            default is not None
            and not isinstance(value, type(default))
            and not (isinstance(default, float) and isinstance(value, int))
        ):
            raise ConfigError(
                f"config key '{where}.{key}' = {value!r}: expected {type(default).__name__}"
            )
        kwargs[key] = float(value) if isinstance(default, float) else value
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded above
        raise ConfigError(f"{where}: {e}") from e


# Named sizes, from a CPU toy to multi-GPU MoE. `microturn configs` prints their sizes.
NAMED_MODELS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        d_model=256,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=704,
        window_turns=50,
        flow_width=256,
        flow_depth=3,
        hmlp_width=256,
    ),
    "small": dict(
        d_model=512,
        n_layers=8,
        n_heads=8,
        n_kv_heads=4,
        ffn_hidden=1408,
        window_turns=150,
        flow_width=512,
        flow_depth=4,
        hmlp_width=512,
    ),
    "base": dict(
        d_model=1024,
        n_layers=16,
        n_heads=16,
        n_kv_heads=8,
        ffn_hidden=2816,
        window_turns=300,
        flow_width=768,
        flow_depth=6,
        hmlp_width=1024,
        batch_invariant=False,
    ),
    "large-moe": dict(
        d_model=2048,
        n_layers=24,
        n_heads=16,
        n_kv_heads=4,
        ffn_hidden=1408,
        moe_experts=32,
        moe_top_k=4,
        window_turns=600,
        flow_width=1024,
        flow_depth=6,
        hmlp_width=1024,
        batch_invariant=False,
    ),
    "xl-moe": dict(
        d_model=4096,
        n_layers=40,
        n_heads=32,
        n_kv_heads=8,
        ffn_hidden=2048,
        moe_experts=64,
        moe_top_k=4,
        window_turns=900,
        flow_width=1024,
        flow_depth=6,
        hmlp_width=1024,
        batch_invariant=False,
    ),
}


def named_config(name: str) -> Config:
    if name not in NAMED_MODELS:
        raise ConfigError(
            f"unknown config name '{name}'; expected one of: {', '.join(NAMED_MODELS)}"
        )
    return Config(model=ModelConfig(**NAMED_MODELS[name]), name=name)


def load_config(source: str | Path) -> Config:
    """A named config ('tiny') or a TOML file with [model], [model.layout] and [engine] tables."""
    path = Path(source)
    if str(source) in NAMED_MODELS and not path.exists():
        return named_config(str(source))
    if not path.is_file():
        raise ConfigError(
            f"config '{source}': no such file, and not one of {', '.join(NAMED_MODELS)}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config '{path}': not valid TOML: {e}") from e
    for key in data:
        if key not in ("model", "engine", "train", "name", "base"):
            raise ConfigError(
                f"unknown config key '{key}' in {path}; expected model, engine, train, name, base"
            )
    if "base" in data and data["base"] not in NAMED_MODELS:
        raise ConfigError(
            f"config key 'base' = {data['base']!r}: expected one of {', '.join(NAMED_MODELS)}"
        )
    model = dict(NAMED_MODELS[data["base"]]) if "base" in data else {}
    model.update(data.get("model", {}))
    return Config(
        model=_build(ModelConfig, model, "model"),
        engine=_build(EngineConfig, data.get("engine", {}), "engine"),
        train=_build(TrainConfig, data.get("train", {}), "train"),
        name=str(data.get("name", path.stem)),
    )
