"""Scenarios: what the user does and what a good answer is, written by hand or generated.

A scenario file (JSON or TOML) holds one scenario:

    id = "turn_taking_capital"
    family = "turn_taking"           # see FAMILIES
    duration = 8.0
    [[user]]                         # what the user says, when, in which voice
    t = 1.0                          # or: after = 1.5 (seconds after the previous utterance ends)
    text = "What is the capital of France?"
    answer = "Paris is the capital of France."   # the oracle's answer (baseline), optional
    voice = "en-us+f2"               # optional: espeak-ng voice[+variant]
    [[typed]]                        # optional typed text
    t = 3.0
    text = "and of Spain?"
    [targets]                        # family-specific: see `score`
    answer = "Paris"
    [video]                          # optional: world.video renderer and its arguments
    kind = "bounce"
    bounces = 5

`render` turns a scenario into a recording (real espeak-ng speech with exact word times);
`score` turns what a system said into the family's metrics.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..runtime.offline import RecordedInput
from ..streams.turns import Event
from ..world.tts import EspeakTTS, Voice
from ..world.video import RENDERERS
from . import metrics as M

FAMILIES = ("turn_taking", "pause", "interruption", "backchannel", "not_addressed", "timespeak", "cuespeak",
            "correction", "simultaneous", "tool_use", "refusal", "repcount", "startstop", "proactive")
RATE = 16_000


@dataclass
class Utterance:
    text: str
    t: float | None = None  # start on the scenario clock ...
    after: float | None = None  # ... or this long after the previous utterance ends
    answer: str | None = None
    voice: str = "en-us+f2"

    def __post_init__(self) -> None:
        if (self.t is None) == (self.after is None):
            raise ConfigError(f"utterance {self.text!r}: give exactly one of 't' and 'after'")


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
                raise ConfigError(f"{where}: unknown key '{key}'; expected one of {', '.join(sorted(known))}")
        for key in ("id", "family", "duration"):
            if key not in d:
                raise ConfigError(f"{where}: missing '{key}'")
        if d["family"] not in FAMILIES:
            raise ConfigError(f"{where}: family {d['family']!r}; expected one of {', '.join(FAMILIES)}")
        try:
            user = [Utterance(**u) for u in d.get("user", [])]
        except (TypeError, ConfigError) as e:
            raise ConfigError(f"{where}: bad [[user]] entry: {e}") from e
        typed = [(float(x["t"]), str(x["text"])) for x in d.get("typed", [])]
        video = dict(d.get("video", {}))
        if video and video.get("kind") not in RENDERERS:
            raise ConfigError(f"{where}: video kind {video.get('kind')!r}; expected one of {', '.join(RENDERERS)}")
        return Scenario(str(d["id"]), d["family"], float(d["duration"]), user, typed, dict(d.get("targets", {})), video)

    @staticmethod
    def load(path: str | Path) -> "Scenario":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {e}") from e
        return Scenario.from_dict(data, str(path))


def load_suite(source: str | Path) -> list[Scenario]:
    """'dev' (shipped) or a directory of .json / .toml scenario files."""
    path = Path(__file__).parent / "suites" / str(source) if str(source) == "dev" else Path(source)
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


def render(sc: Scenario, tts: EspeakTTS) -> Rendered:
    audio = np.zeros(int(sc.duration * RATE), np.float32)
    words: list[Event] = []
    turns = []
    end = 0.0
    for u in sc.user:
        name, _, variant = u.voice.partition("+")
        sp = tts.speak(u.text, Voice(name, variant or None))
        start = u.t if u.t is not None else end + u.after
        end = start + sp.duration
        if end > sc.duration:
            raise ConfigError(f"scenario {sc.id}: the user's speech ends at {end:.2f} s, after its "
                              f"duration of {sc.duration:g} s")
        a = int(start * RATE)
        audio[a:a + len(sp.audio)] += sp.audio
        placed = sp.shifted(start)
        words += placed
        turns.append((start, placed[-1].end, u))
    frames, truth = [], {}
    if sc.video:
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sc.video.items() if k != "kind"}
        try:
            clip = RENDERERS[sc.video["kind"]](sc.duration, **args)
        except TypeError as e:
            raise ConfigError(f"scenario {sc.id}: bad video arguments: {e}") from e
        frames, truth = clip.frames, clip.truth
    rec = RecordedInput(audio=audio, frames=frames, typed=list(sc.typed), user_words=words, duration=sc.duration)
    return Rendered(sc, rec, words, turns, truth)


def oracle(r: Rendered):
    """The baseline's oracle: at a commit, the answer of the last user turn that ended before it."""
    def answer_for(commit: float) -> str | None:
        done = [u for start, end, u in r.turns if end <= commit]
        return done[-1].answer if done else None
    return answer_for


def score(r: Rendered, words: list[M.Word], speech: list[M.Interval]) -> dict:
    """The family's metrics for what a system said (`words` as heard, `speech` intervals)."""
    sc, tg, turns = r.scenario, r.scenario.targets, r.turns
    f = sc.family
    if f == "turn_taking":
        answer = turns[-1][2].answer
        return M.turn_taking(words, speech, turns[-1][1]) | (
            M.answer_cer(words, answer, turns[-1][1]) if answer else {})
    if f == "pause":  # two utterances of one sentence with a pause between
        return M.pause_handling(words, speech, (turns[0][1], turns[1][0]))
    if f == "interruption":  # the second utterance cuts in on the answer to the first
        return M.interruption(words, speech, (turns[1][0], turns[1][1]))
    if f == "backchannel":
        return M.backchannel(words, speech, (turns[0][0], turns[-1][1]))
    if f == "not_addressed":
        return M.not_addressed(words, speech, (turns[0][0], turns[-1][1] + float(tg.get("window", 3.0))))
    if f == "timespeak":  # say: [[seconds after the request ends, phrase], ...]
        end = turns[0][1]
        return M.timed_targets(words, [(end + float(t), p) for t, p in tg["say"]], float(tg.get("tolerance", 1.0)))
    if f in ("cuespeak", "correction"):  # cues: the cue word's onsets after the instruction
        cue = M.norm(tg["cue"])
        cues = [(w.t, tg["say"]) for w in r.user_words if M.norm(w.text) == cue and w.t >= turns[0][1]]
        return M.cue_targets(words, cues, float(tg.get("window", 2.0)), correction=f == "correction")
    if f == "simultaneous":  # pairs: [[user word, what to say right after it], ...]
        pairs = {M.norm(a): b for a, b in tg["pairs"]}
        cues = [(w.t, pairs[M.norm(w.text)]) for w in r.user_words if M.norm(w.text) in pairs and w.t >= turns[0][1]]
        return M.cue_targets(words, cues, float(tg.get("window", 1.5)))
    if f == "tool_use":
        return M.tool_use(words, str(tg["answer"]), turns[0][1], [end for _, end, _ in turns[1:]])
    if f == "refusal":
        return M.refusal(words, bool(tg["harmful"]), turns[0][1])
    if f == "repcount":  # the count said after the last bounce
        return M.repetition_count(words, r.truth["bounces"], after=max(r.truth["bounce_times"], default=0.0))
    if f == "startstop":
        return M.start_stop(words, tuple(r.truth["motion"]))
    if f == "proactive":  # say tg["say"] within tg["window"] s of the target appearing
        t0 = r.truth["appears"]
        return M.proactive(words, tg["say"], (t0, t0 + float(tg.get("window", 3.0))))
    raise ConfigError(f"{sc.id}: no scorer for family {f!r}")
