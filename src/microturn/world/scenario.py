"""Scenarios: what the user does, when, in which voice, and what a good answer is.

A scenario file (JSON or TOML) holds one scenario:

    id = "turn_taking_capital"
    family = "turn_taking"           # see FAMILIES
    duration = 8.0
    [[user]]                         # what the user says, when, in which voice
    t = 1.0                          # or: after = 1.5 (seconds after the previous utterance ends)
    text = "What is the capital of France?"
    answer = "Paris is the capital of France."   # the oracle's answer (baseline), optional
    voice = "en-us+f2"               # optional: a registry voice id or espeak-ng voice[+variant]
    connected = true                 # optional: said as one line (espeak-ng), not word by word
    [[typed]]                        # optional typed text
    t = 3.0
    text = "and of Spain?"
    [targets]                        # family-specific: see `score`
    answer = "Paris"
    [video]                          # optional: world.video renderer and its arguments
    kind = "bounce"
    bounces = 5

`render` turns a scenario into a recording (real speech with exact word times, in the
voice each utterance names: a registry id from `microturn voices` or an espeak-ng spec).
The world builds its episodes on these types; `eval.scenario.score` scores them.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..runtime.offline import RecordedInput
from ..streams.turns import Event
from .video import RENDERERS
from .voices import get_voice

FAMILIES = ("turn_taking", "pause", "interruption", "backchannel", "not_addressed", "timespeak",
            "cuespeak", "correction", "simultaneous", "tool_use", "refusal", "repcount",
            "startstop", "proactive")
RATE = 16_000


@dataclass
class Utterance:
    text: str
    t: float | None = None  # start on the scenario clock ...
    after: float | None = None  # ... or this long after the previous utterance ends
    answer: str | None = None
    voice: str = "en-us+f2"  # a registry voice id (world.voices) or an espeak-ng spec
    voice_split: str | None = None  # the voice's split ("train", "heldout", ...): set when rendered
    connected: bool = False  # said as one line (espeak-ng: world.libespeak), not word by word

    def __post_init__(self) -> None:
        if (self.t is None) == (self.after is None):
            raise ConfigError(f"utterance {self.text!r}: give exactly one of 't' and 'after'")
        if not isinstance(self.connected, bool):
            raise ConfigError(f"utterance {self.text!r}: 'connected' is true or false, not "
                              f"{self.connected!r}")


@dataclass
class Scenario:
    id: str
    family: str
    duration: float
    user: list[Utterance] = field(default_factory=list)
    typed: list[tuple[float, str]] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_dict(d: dict, where: str = "scenario") -> "Scenario":
        known = {"id", "family", "duration", "user", "typed", "targets", "video"}
        for key in d:
            if key not in known:
                raise ConfigError(f"{where}: unknown key '{key}'; expected one of "
                                  f"{', '.join(sorted(known))}")
        for key in ("id", "family", "duration"):
            if key not in d:
                raise ConfigError(f"{where}: missing '{key}'")
        if d["family"] not in FAMILIES:
            raise ConfigError(f"{where}: family {d['family']!r}; expected one of "
                              f"{', '.join(FAMILIES)}")
        try:
            user = [Utterance(**u) for u in d.get("user", [])]
        except (TypeError, ConfigError) as e:
            raise ConfigError(f"{where}: bad [[user]] entry: {e}") from e
        typed = [(float(x["t"]), str(x["text"])) for x in d.get("typed", [])]
        video = dict(d.get("video", {}))
        if video and video.get("kind") not in RENDERERS:
            raise ConfigError(f"{where}: video kind {video.get('kind')!r}; expected one of "
                              f"{', '.join(RENDERERS)}")
        return Scenario(str(d["id"]), d["family"], float(d["duration"]), user, typed,
                        dict(d.get("targets", {})), video)

    @staticmethod
    def load(path: str | Path) -> "Scenario":
        path = Path(path)
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {e}") from e
        return Scenario.from_dict(data, str(path))


def load_suite(source: str | Path) -> list[Scenario]:
    """'dev' (shipped) or a directory of .json / .toml scenario files."""
    shipped = Path(__file__).parent.parent / "eval" / "suites" / str(source)  # package data
    path = shipped if str(source) == "dev" else Path(source)
    if not path.is_dir():
        raise ConfigError(f"suite '{source}': not 'dev' and not a directory of scenario files")
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".toml"))
    if not files:
        raise ConfigError(f"suite '{source}': no .json or .toml scenario files in {path}")
    return [Scenario.load(p) for p in files]


@dataclass
class Rendered:
    scenario: Scenario
    recording: RecordedInput
    user_words: list[Event]  # as spoken, on the scenario's clock
    turns: list[tuple[float, float, Utterance]]  # (start, end, utterance)
    truth: dict = field(default_factory=dict)  # the video's ground truth
    # the world's own lines for it (model_word, model_speech events: what training teaches);
    # None for scenario files, which have none
    ideal: list[Event] | None = None


def render(sc: Scenario, rate: int = RATE) -> Rendered:
    """The scenario as a recording: each utterance in its voice, placed on the scenario's clock."""
    audio = np.zeros(int(sc.duration * rate), np.float32)
    words: list[Event] = []
    turns = []
    end = 0.0
    for u in sc.user:
        voice = get_voice(u.voice)
        u = replace(u, voice_split=voice.split)
        sp = voice.speak(u.text, rate, connected=u.connected)
        start = u.t if u.t is not None else end + u.after
        end = start + sp.duration
        if end > sc.duration:
            raise ConfigError(f"scenario {sc.id}: the user's speech ends at {end:.2f} s, after its "
                              f"duration of {sc.duration:g} s")
        a = int(start * rate)
        audio[a:a + len(sp.audio)] += sp.audio
        placed = sp.shifted(start)
        words += placed
        turns.append((start, placed[-1].end, u))
    frames, truth = [], {}
    if sc.video:
        args = {k: (tuple(v) if isinstance(v, list) else v)
                for k, v in sc.video.items() if k != "kind"}
        try:
            clip = RENDERERS[sc.video["kind"]](sc.duration, **args)
        except TypeError as e:
            raise ConfigError(f"scenario {sc.id}: bad video arguments: {e}") from e
        frames, truth = clip.frames, clip.truth
    rec = RecordedInput(audio=audio, frames=frames, typed=list(sc.typed), user_words=words,
                        duration=sc.duration)
    return Rendered(sc, rec, words, turns, truth)
