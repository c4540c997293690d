"""One synthetic episode: the user's side and the model's ideal side on one clock.

A family generator (world/families.py) drives an `EpisodeBuilder`: it places user speech
(real synthesis engines, exact word times, a voice from world/voices.py drawn for the
episode's split), a second speaker, noise, typed text, video, and the model's own lines in
its identity voice (Piper joe), each at the moment a good interaction model would speak.
`build` returns both views of the same episode:

* `Rendered` (eval): the recording a system hears, the user's words and the video's truth;
* `Timeline` (training): the same inputs plus the model's words, speech, delegations and
  background results, which `streams.timeline.timeline_to_turns` turns into tensors.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from ..config import TurnLayout
from ..errors import ConfigError
from ..runtime.offline import RecordedInput
from ..streams.timeline import Timeline
from ..streams.turns import Event
from . import acoustics
from .acoustics import Conditions, Tracks
from .scenario import RATE, Rendered, Scenario, Utterance
from .tts import EspeakTTS
from .video import RENDERERS
from .voices import TEMPOS, Voice, draw_user_voice, get_voice, model_voice, user_voices

FADE_S = 0.03  # a cut-off line fades out rather than clicks
TURN_S = TurnLayout().turn_ms / 1000  # the model speaks whole turns: a cut line ends on one
# Episodes whose espeak-ng voices say each line connected (`world.libespeak`) rather than word
# by word: people talk in connected lines, and a model that only ever heard joined words
# misheard them live. Drawn apart from the episode's own draws (`EpisodeBuilder.connected`),
# so the other half of a split is the episodes it always was.
CONNECTED_SHARE = 0.5


@dataclass
class Spoken:
    start: float
    end: float
    words: list[Event]


@dataclass
class Episode:
    family: str
    split: str
    scenario: Scenario
    rendered: Rendered
    timeline: Timeline
    voice: str = ""  # the user's voice id (world.voices) ...
    voice_split: str = ""  # ... and its split: "train", "heldout" (never trained on) or "custom"
    tracks: Tracks | None = None  # the sources, dry: `heard_under` renders them again
    conditions: Conditions | None = None  # the acoustics `rendered` and `timeline` were heard in

    def heard_under(self, c: Conditions, seed: int = 0) -> Rendered:
        """The same episode as a system hears it under other acoustic conditions."""
        if self.tracks is None:
            raise ConfigError(f"{self.scenario.id}: no dry tracks to render under {c.name!r}")
        rng = np.random.default_rng([seed, zlib.crc32(self.scenario.id.encode())])
        mic = acoustics.render_mic(c, self.tracks, rng, _babble(c))
        return replace(self.rendered, recording=replace(self.rendered.recording, audio=mic))


@dataclass
class EpisodeBuilder:
    family: str
    id: str
    duration: float
    tts: EspeakTTS  # its rate is every voice's rate
    rng: np.random.Generator
    split: str = "train"
    user_voice: str = ""  # a registry voice id or espeak-ng spec; drawn for the split if empty
    conditions: Conditions | None = None  # None: drawn from `acoustics.sample` at build
    user_audio: np.ndarray = field(init=False)  # the user's voice, dry
    connected: bool = field(init=False)  # espeak-ng lines said connected, not word by word
    other_audio: np.ndarray = field(init=False)  # other people in the room, dry
    other_spans: list[tuple[float, float]] = field(default_factory=list)
    model_audio: np.ndarray = field(init=False)
    events: list[Event] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    turns: list[tuple[float, float, Utterance]] = field(default_factory=list)
    typed_text: list[tuple[float, str]] = field(default_factory=list)
    targets: dict = field(default_factory=dict)
    video_spec: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)
    truth: dict = field(default_factory=dict)
    _tasks: int = 0

    def __post_init__(self) -> None:
        n = int(round(self.duration * RATE))
        self.user_audio = np.zeros(n, np.float32)
        self.other_audio = np.zeros(n, np.float32)
        self.model_audio = np.zeros(n, np.float32)
        voice = (get_voice(self.user_voice) if self.user_voice
                 else draw_user_voice(self.rng, self.split))
        self.user_voice, self.voice = voice.id, voice
        self.tempo = float(self.rng.choice(TEMPOS))  # the user's pace in this episode
        coin = np.random.default_rng([zlib.crc32(self.id.encode()), 1]).random()
        self.connected = bool(coin < CONNECTED_SHARE)  # how this episode's lines are said

    def _place(self, track: np.ndarray, audio: np.ndarray, t: float, gain: float = 1.0) -> None:
        a = int(round(t * RATE))
        if t < 0 or a + len(audio) > len(track):
            raise ConfigError(
                f"{self.id}: audio at {t:.2f} s runs past the episode's {self.duration:g} s"
            )
        track[a : a + len(audio)] += gain * audio

    def user(
        self,
        text: str,
        t: float | None = None,
        after: float | None = None,
        answer: str | None = None,
    ) -> Spoken:
        """The user says `text` at `t`, or `after` seconds after their last utterance ends."""
        if t is None:
            t = (self.turns[-1][1] if self.turns else 0.0) + (after or 0.0)
        t = round(t, 3)
        sp = self.voice.speak(text, self.tts.rate, tempo=self.tempo, connected=self.connected)
        self._place(self.user_audio, sp.audio, t)
        words = sp.shifted(t, "user_word")
        u = Utterance(
            text=text, t=t, answer=answer, voice=self.user_voice, voice_split=self.voice.split,
            connected=self.connected,
        )
        self.utterances.append(u)
        self.turns.append((t, words[-1].end, u))
        self.events += words
        return Spoken(t, words[-1].end, words)

    def other(self, text: str, t: float, gain: float = 0.5) -> Spoken:
        """A second speaker, not talking to the model: heard, never answered."""
        voice: Voice = draw_user_voice(self.rng, self.split, exclude=(self.user_voice,))
        sp = voice.speak(text, self.tts.rate, tempo=float(self.rng.choice(TEMPOS)),
                         connected=self.connected)
        self._place(self.other_audio, sp.audio, t, gain)
        self.other_spans.append((t, t + sp.duration))
        return Spoken(t, t + sp.duration, sp.shifted(t, "other_word"))

    def typed(self, t: float, text: str) -> None:
        self.typed_text.append((round(t, 3), text))
        self.events.append(Event(round(t, 3), "user_text", text))

    def video(self, kind: str, **args) -> dict:
        clip = RENDERERS[kind](self.duration, **args)
        self.video_spec = {
            "kind": kind,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
        }
        self.frames, self.truth = clip.frames, clip.truth
        return clip.truth

    # ---- the model side ---------------------------------------------------------------
    def say(self, text: str, t: float, cut: float | None = None) -> Spoken:
        """The model says `text` from `t` (as heard); with `cut` it stops mid-line, at the end
        of the turn `cut` falls in.

        The model speaks whole turns: a turn's sound is drawn the turn before it plays, so a
        stop mid-turn would be in the model's own voice before it could have heard why, and
        teacher-forced it would learn to stop when its voice does (it never does live). Its
        text keeps the words that start before the stop (written while it still spoke);
        ending the text at the cut taught the same shortcut through the text."""
        t = round(t, 3)
        sp = model_voice().speak(text, self.tts.rate, kind="model_word")
        audio, words = sp.audio, sp.shifted(t)
        if cut is not None:
            cut = math.ceil(round(cut / TURN_S, 6)) * TURN_S
        if cut is not None and cut < t + sp.duration:
            n = max(0, int(round((cut - t) * RATE)))
            audio = audio[:n].copy()
            fade = min(n, int(FADE_S * RATE))
            audio[n - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
            words = [w for w in words if w.t < cut]
        if not words:
            return Spoken(t, t, [])
        end = round(t + len(audio) / RATE, 3)
        self._place(self.model_audio, audio, t)
        self.events += words + [Event(t, "model_speech", text, end)]
        return Spoken(t, end, words)

    def delegate(self, t: float, request: str, result: str, latency: float) -> str:
        """The model asks the background model at `t`; its result arrives `latency` s later."""
        self._tasks += 1
        task = f"t{self._tasks}"
        self.events.append(Event(round(t, 3), "delegation", request))
        self.events.append(Event(round(t + latency, 3), "result", f"{task}: {result}"))
        return task

    # ---- out ----------------------------------------------------------------------------
    def build(self) -> Episode:
        sc = Scenario(
            self.id,
            self.family,
            self.duration,
            list(self.utterances),
            list(self.typed_text),
            dict(self.targets),
            dict(self.video_spec),
        )
        user_words = [e for e in self.events if e.kind == "user_word"]
        tracks = Tracks(
            self.user_audio,
            self.other_audio,
            self.model_audio,
            [(a, b) for a, b, _ in self.turns] + self.other_spans,
            [(e.t, e.end) for e in self.events if e.kind == "model_speech"],
        )
        arng = np.random.default_rng(int(self.rng.integers(1 << 63)))  # after every content draw
        cond = self.conditions or acoustics.sample(arng)
        mic = acoustics.render_mic(cond, tracks, arng, _babble(cond))
        rec = RecordedInput(
            audio=mic,
            frames=list(self.frames),
            typed=list(self.typed_text),
            user_words=user_words,
            duration=self.duration,
        )
        ideal = [e for e in self.events if e.kind in ("model_word", "model_speech")]
        rendered = Rendered(sc, rec, user_words, list(self.turns), dict(self.truth), ideal)
        tl = Timeline(
            self.duration,
            sorted(self.events, key=lambda e: (e.t, e.kind)),
            mic,
            self.model_audio,
            list(self.frames),
        )
        return Episode(
            self.family,
            self.split,
            sc,
            rendered,
            tl,
            self.user_voice,
            self.voice.split,
            tracks,
            cond,
        )


def _babble(c: Conditions) -> list[np.ndarray]:
    """The babble bank when `c` asks for it: the first espeak-ng training voices (fast, and
    never a held-out voice) saying `acoustics.BABBLE_LINES`."""
    if c.noise != "babble":
        return []
    talkers = [v for v in user_voices("train") if v.engine == "espeak-ng"]
    speak = lambda text, i: talkers[i % len(talkers)].speak(text, RATE).audio  # noqa: E731
    return acoustics.babble_bank("espeak-train", speak)
