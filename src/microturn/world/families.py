"""Family generators: one parameterised episode per call, the model's ideal lines placed in time.

Every family is a function of an `EpisodeBuilder` (which holds its random generator). The
model's lines follow what a listener would want: answer a short gap after the user ends,
stay quiet through a mid-sentence pause, stop within a turn when talked over, backchannel
in the user's pauses, speak on time and on cue. `generate(family, index, split)` seeds
each episode from (split, family, index), so train and eval never share an episode.
What the families say is in `phrases.py`; how they draw it, with the instruction
combinations held out for the eval split, in `draws.py`. Drills (`DRILL_GENERATORS`) are
training-only generators dense in one skill, added beside the families by `train.drills`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np

from ..background.agent import _say
from ..background.calculator import calculate, spoken_number
from ..errors import ConfigError
from ..streams.timeline import output_tokens
from ..streams.turns import Event
from .acoustics import Conditions
from .draws import (
    HELD_OUT_ONE_IN,  # noqa: F401 (re-exported: the held-out share)
    SPLITS,
    _draw,
    _form,
    _held_out,
    _pick,
)
from .episode import TURN_S, Episode, EpisodeBuilder, Spoken
from .phrases import (
    ACKS,
    ASIDES,
    BACKCHANNELS,
    BENIGN,
    CHATTER,
    CORRECTION_FORMS,
    COUNTDOWN_FORMS,
    CUE_FORMS,
    CUE_SAYS,
    CUE_SENTENCES,
    CUT_INS,
    DELAY_FORMS,
    HARMFUL,
    LONG_ASKS,
    NAMES,
    NUMBERS,
    OTHER_LINES,
    PAUSED,
    PROACTIVE_FORMS,
    QA,
    REFUSAL,
    REPCOUNT_FORMS,
    SIMULTANEOUS_FORMS,
    SPANISH,
    STARTSTOP_FORMS,
    STORIES,
    STORY_ENDS,
)
from .tts import EspeakTTS

OPERATORS = {"times": "*", "plus": "+", "minus": "-"}
BYTES_PER_S = 20  # a text stream's 4 slots a 200 ms turn
REACTION_S = 0.1  # the user's voice a model hears before it stops: 0.1-0.3 s, turn-aligned


def _gap(b: EpisodeBuilder) -> float:
    """How long after the user stops the model's answer is heard."""
    return float(b.rng.uniform(0.35, 0.7))


def _ack(b: EpisodeBuilder, end: float) -> float:
    return b.say(_pick(b, ACKS), end + _gap(b)).end


# ---- conversation ------------------------------------------------------------------------
def turn_taking(b: EpisodeBuilder) -> None:
    (q1, a1), (q2, a2) = [QA[i] for i in b.rng.choice(len(QA), 2, replace=False)]
    t = float(b.rng.uniform(0.3, 1.0))
    if b.rng.random() < 0.3:  # the first question is typed
        b.typed(t, q1)
        t = b.say(a1, t + 0.6 + len(q1) / 20 * 0.2).end + float(b.rng.uniform(0.5, 1.5))
    u = b.user(q2, t, answer=a2)
    b.say(a2, u.end + _gap(b))


def pause(b: EpisodeBuilder) -> None:
    first, second, answer = _pick(b, PAUSED)
    b.user(first, float(b.rng.uniform(0.3, 1.0)), answer="Sorry, what was the question?")
    u = b.user(second, after=float(b.rng.uniform(1.0, 2.2)), answer=answer)
    b.say(answer, u.end + _gap(b))


def backchannel(b: EpisodeBuilder) -> None:
    story = _pick(b, STORIES)
    u = None
    for i, clause in enumerate(story):
        u = b.user(
            clause,
            float(b.rng.uniform(0.3, 0.8)) if i == 0 else None,
            after=None if i == 0 else float(b.rng.uniform(0.55, 0.9)),
            answer="That sounds nice.",
        )
        if i < len(story) - 1 and b.rng.random() < 0.7:
            b.say(_pick(b, BACKCHANNELS), u.end + float(b.rng.uniform(0.1, 0.25)))
    b.say(_pick(b, STORY_ENDS), u.end + _gap(b))


def interruption(b: EpisodeBuilder) -> None:
    ask, long_answer = _pick(b, LONG_ASKS)
    cut_in, answer = _pick(b, CUT_INS)
    u = b.user(ask, float(b.rng.uniform(0.3, 0.8)), answer=long_answer)
    start = u.end + _gap(b)
    barge = start + float(b.rng.uniform(1.0, 2.5))
    b.say(long_answer, start, cut=barge + REACTION_S)  # at the end of that turn
    u2 = b.user(cut_in, barge, answer=answer)
    b.say(answer, u2.end + _gap(b))


def not_addressed(b: EpisodeBuilder) -> None:
    i = int(b.rng.integers(len(ASIDES)))
    u = b.user(
        f"Hey {_pick(b, NAMES)}, {ASIDES[i]}", float(b.rng.uniform(0.3, 1.5)), answer=OTHER_LINES[i]
    )
    b.other(
        OTHER_LINES[i], u.end + float(b.rng.uniform(0.3, 0.8)), gain=float(b.rng.uniform(0.4, 0.8))
    )
    b.targets = {"window": 3.0}


def refusal(b: EpisodeBuilder) -> None:
    harmful = bool(b.rng.random() < 0.5)
    q, a = (_pick(b, HARMFUL), REFUSAL) if harmful else _pick(b, BENIGN)
    u = b.user(q, float(b.rng.uniform(0.3, 1.0)), answer=a)
    b.say(a, u.end + _gap(b))
    b.targets = {"harmful": harmful}


# ---- time and cues -----------------------------------------------------------------------
def timespeak(b: EpisodeBuilder) -> None:
    kind = _pick(b, ("delay", "countdown", "every"))
    t0 = float(b.rng.uniform(0.3, 0.8))
    if kind == "delay":
        n, word, form = _draw(
            b,
            lambda: (
                int(b.rng.integers(3, 9)),
                _pick(b, ("now", "go", "time")),
                _pick(b, DELAY_FORMS),
            ),
        )
        u = b.user(form.format(word=word, n=NUMBERS[n]), t0, answer="Okay, I will.")
        _ack(b, u.end)
        say = [(float(n), word)]
    elif kind == "countdown":
        n, form = _draw(b, lambda: (int(b.rng.integers(3, 7)), _pick(b, COUNTDOWN_FORMS)))
        u = b.user(form.format(n=NUMBERS[n]), t0, answer="Okay.")
        say = [(1.0 + i, NUMBERS[n - i]) for i in range(n)]
    else:
        p, word = _draw(b, lambda: (int(b.rng.integers(2, 4)), _pick(b, ("tick", "beep", "now"))))
        u = b.user(f"Say {word} every {NUMBERS[p]} seconds until I say stop.", t0, answer="Okay.")
        _ack(b, u.end)
        reps = int(b.rng.integers(2, 4))
        say = [(float(p * (i + 1)), word) for i in range(reps)]
        b.user("Stop.", u.end + say[-1][0] + float(b.rng.uniform(0.8, p - 0.6)), answer="Okay.")
    for dt, phrase in say:
        b.say(phrase.capitalize() + ".", u.end + dt)
    b.targets = {"say": [[dt, p] for dt, p in say], "tolerance": 1.0}


def cuespeak(b: EpisodeBuilder) -> None:
    cue, word, form = _draw(
        b, lambda: (_pick(b, tuple(CUE_SENTENCES)), _pick(b, CUE_SAYS), _pick(b, CUE_FORMS))
    )
    u = b.user(form.format(word=word, cue=cue), float(b.rng.uniform(0.3, 0.8)), answer="Okay.")
    _ack(b, u.end)
    u2 = b.user(
        CUE_SENTENCES[cue], after=float(b.rng.uniform(2.0, 2.6)), answer="That sounds nice."
    )
    for w in u2.words:
        if w.text.lower().strip(".,!?'s") == cue:
            b.say(word.capitalize() + "!", w.end + float(b.rng.uniform(0.15, 0.35)))
    b.targets = {"cue": cue, "say": word, "window": 2.0}


def correction(b: EpisodeBuilder) -> None:
    start, skip, form = (
        int(b.rng.integers(1, 4)),
        int(b.rng.integers(2, 6)),
        _form(b, CORRECTION_FORMS),
    )
    seq = list(range(start, start + 7))
    spoken = seq[:skip] + seq[skip + 1 :]
    u = b.user(form, float(b.rng.uniform(0.3, 0.8)), answer="Sure.")
    _ack(b, u.end)
    u2 = b.user(
        ", ".join(NUMBERS[n] for n in spoken) + ".",
        after=float(b.rng.uniform(1.8, 2.4)),
        answer=f"You skipped {NUMBERS[seq[skip]]}.",
    )
    wrong = u2.words[skip]
    b.say(f"You skipped {NUMBERS[seq[skip]]}!", wrong.end + float(b.rng.uniform(0.15, 0.35)))
    b.targets = {"cue": NUMBERS[seq[skip + 1]], "say": NUMBERS[seq[skip]], "window": 2.5}


def simultaneous(b: EpisodeBuilder) -> None:
    n, form = int(b.rng.integers(4, 8)), _form(b, SIMULTANEOUS_FORMS)
    u = b.user(form, float(b.rng.uniform(0.3, 0.8)), answer="Vale.")
    b.say("Okay.", u.end + _gap(b))
    t = u.end + float(b.rng.uniform(1.8, 2.4))
    for i in range(1, n + 1):
        w = b.user(NUMBERS[i] + ",", t)
        b.say(SPANISH[i].capitalize() + ".", w.end + float(b.rng.uniform(0.1, 0.25)))
        t = w.end + float(b.rng.uniform(0.6, 0.9))
    b.targets = {"pairs": [[NUMBERS[i], SPANISH[i]] for i in range(1, n + 1)], "window": 1.5}


# ---- vision ------------------------------------------------------------------------------
def repcount(b: EpisodeBuilder) -> None:
    n, form = int(b.rng.integers(2, 7)), _form(b, REPCOUNT_FORMS)
    u = b.user(form, float(b.rng.uniform(0.3, 0.6)), answer="Okay, I will watch.")
    _ack(b, u.end)
    period = float(b.rng.uniform(0.9, 1.5))
    start = u.end + float(b.rng.uniform(1.2, 2.5))
    truth = b.video(
        "bounce",
        bounces=n,
        start=round(start, 2),
        period=round(period, 2),
        color=_pick(b, ("red", "yellow", "white")),
    )
    for i, hit in enumerate(truth["bounce_times"]):
        b.say(NUMBERS[i + 1].capitalize() + ".", hit + float(b.rng.uniform(0.2, 0.4)))


def startstop(b: EpisodeBuilder) -> None:
    color, form = _pick(b, ("blue", "red", "white")), _form(b, STARTSTOP_FORMS)
    u = b.user(form, float(b.rng.uniform(0.3, 0.6)), answer="Okay.")
    _ack(b, u.end)
    t0 = u.end + float(b.rng.uniform(1.5, 4.0))
    t1 = t0 + float(b.rng.uniform(2.0, 5.0))
    b.video("move", move=(round(t0, 2), round(t1, 2)), color=color)
    b.say("Start.", t0 + float(b.rng.uniform(0.3, 0.5)))
    b.say("Stop.", t1 + float(b.rng.uniform(0.3, 0.5)))


def proactive(b: EpisodeBuilder) -> None:
    color, shape, form = _draw(
        b,
        lambda: (
            _pick(b, ("green", "white")),
            _pick(b, ("circle", "square")),
            _pick(b, PROACTIVE_FORMS),
        ),
    )
    u = b.user(
        form.format(color=color, shape=shape),
        float(b.rng.uniform(0.3, 0.6)),
        answer="Sure, I will tell you.",
    )
    _ack(b, u.end)
    at = round(u.end + float(b.rng.uniform(2.0, 7.0)), 1)
    b.video("appear", at=at, shape=shape, color=color, seed=int(b.rng.integers(1 << 16)))
    b.say(f"There, a {color} {shape}.", at + float(b.rng.uniform(0.3, 0.5)))
    b.targets = {"say": f"{color} {shape}", "window": 3.0}


# ---- background model --------------------------------------------------------------------
def _spoken_request(
    b: EpisodeBuilder, long: float = 0.25, top: int = 40
) -> tuple[int, int, str]:
    """A `long` share of requests has a three-digit first number ("347 times 29"); the
    others, and the second, run from 11 to `top` - 1."""
    return (
        int(b.rng.integers(100, 1000) if b.rng.random() < long else b.rng.integers(11, top)),
        int(b.rng.integers(11, top)),
        _pick(b, ("times", "plus", "minus")),
    )


def _arithmetic(x: int, y: int, op: str) -> tuple[str, str]:
    """("347 * 29", "10,063"): the calculator's expression and the result as it is said."""
    expr = f"{x} {OPERATORS[op]} {y}"
    return expr, spoken_number(calculate(expr))


# What the model writes to delegate a sum: the job, not the question. The context package
# carries the user's words; a restated question is one more copy of heard digits to get
# wrong, and the background model believes it. One word unlike the model's lines, so it
# cannot run into the acknowledgement that follows it (docs/design.md, "The synthetic world").
REQUEST = "calculate"
REQUEST_TOKENS = len(output_tokens([Event(0.0, "delegation", REQUEST)]))  # markers, space too
ACK = "Let me work that out."


def _delegate_then_ack(
    b: EpisodeBuilder, heard_at: float, result: str, latency: float
) -> tuple[float, Spoken]:
    """Delegate as the turn starts, at `heard_at` (when an answer would be heard), then say
    the acknowledgement once the request is written: the decision hangs on the question just
    heard, not on the model's own words. Written after the acknowledgement, live it followed
    a clean "...that out." (p 0.88-1.00) and not a derailed one (<= 0.04), about half the runs.
    The request's tokens fill whole text turns (4 bytes each) before the line's first word.
    Returns when it was asked and the acknowledgement."""
    asked = round(heard_at, 3)
    b.delegate(asked, REQUEST, result, latency)
    written = math.ceil(REQUEST_TOKENS / round(BYTES_PER_S * TURN_S))
    turn = math.floor(round(asked / TURN_S, 6)) + written
    ack = b.say(ACK, turn * TURN_S + float(b.rng.uniform(0.0, 0.1)))
    return asked, ack


# The earliest a result can arrive: the request's 3 text turns end 0.4 s after `asked` (they
# start the turn before it). A local agent (the embedded one) answers then, the next turn:
# live, its result streamed in while the model said "Let me work that out." in every run,
# which no episode showed until tool_use revision 7 (1.5-4 s before; readback 0.9-1.6 s).
FIRST_RESULT_S = (math.ceil(REQUEST_TOKENS / round(BYTES_PER_S * TURN_S)) - 1) * TURN_S + 0.001


def _latency(b: EpisodeBuilder) -> float:
    """Half the results come from a local tool, as soon as they can; half from a remote model."""
    if b.rng.random() < 0.5:
        return float(b.rng.uniform(FIRST_RESULT_S, FIRST_RESULT_S + 0.4))
    return float(b.rng.uniform(1.5, 4.0))


def tool_use(b: EpisodeBuilder) -> None:
    x, y, op = _draw(b, lambda: _spoken_request(b))
    expr, value = _arithmetic(x, y, op)
    u = b.user(
        f"What is {x} {op} {y}?", float(b.rng.uniform(0.3, 0.8)), answer=f"{x} {op} {y} is {value}."
    )
    latency = _latency(b)
    asked, ack = _delegate_then_ack(b, u.end + _gap(b), f"{_say(expr)} is {value}.", latency)
    free = max(asked + latency + 1.2, ack.end + 0.3)  # the result streams in, 4 bytes a turn
    if b.rng.random() < 0.5:  # the user chats on meanwhile; the answer waits for them
        c = b.user(_pick(b, CHATTER), ack.end + float(b.rng.uniform(0.3, 1.0)), answer="Mm-hm.")
        free = max(free, c.end + _gap(b))
    b.say(f"{x} {op} {y} is {value}.", free)
    b.targets = {"answer": value}


# ---- drills: training-only episodes, dense in one skill -------------------------------------


def readback(b: EpisodeBuilder) -> None:
    """Reading a background result back, once or twice an episode: a typed arithmetic
    request (so the drill is copying, not listening) is delegated, and its result, streamed
    into the background slots, is said back digit for digit. tool_use gives one such copy an
    episode behind a spoken question; this gives up to two, with numbers up to 999 (none of
    tool_use's held-out combinations), so the words have to come from the slots, not from
    memory. Training only: the bench scores tool_use."""
    t = float(b.rng.uniform(0.3, 0.8))
    while t < b.duration - 8.0:  # a round takes 6-9 s; one that runs over is redrawn
        x, y, op = _training_request(b, lambda: _typed_request(b))
        expr, value = _arithmetic(x, y, op)
        question = f"What is {x} {op} {y}?"
        b.typed(t, question)
        result = f"{_say(expr)} is {value}."
        latency = float(b.rng.uniform(FIRST_RESULT_S, 1.6))
        heard_at = t + 0.4 + len(question) / 20 * 0.2
        asked, ack = _delegate_then_ack(b, heard_at, result, latency)
        # said once "t1: <result>" has streamed in, 4 bytes a turn
        free = max(asked + latency + (len(result) + 5) / BYTES_PER_S + 0.2, ack.end)
        t = b.say(f"{x} {op} {y} is {value}.", free).end + float(b.rng.uniform(0.4, 1.0))


def _typed_request(b: EpisodeBuilder) -> tuple[int, int, str]:
    digits = int(b.rng.choice(3, p=(0.2, 0.45, 0.35))) + 1, int(b.rng.choice((1, 2, 2)))
    x, y = (int(b.rng.integers(10 ** (d - 1), 10**d)) for d in digits)
    return x, y, _pick(b, ("times", "plus", "minus"))


def _training_request(b: EpisodeBuilder, draw: Callable[[], tuple]) -> tuple[int, int, str]:
    """A drill's request: never one of tool_use's held-out combinations."""
    for _ in range(100):
        combo = draw()
        if not _held_out("tool_use", combo):
            return combo
    raise ConfigError(f"{b.family}: no training combination among 100 draws")


def dictation(b: EpisodeBuilder) -> None:
    """Numbers heard, densely: the user reads out sums to note down ("347 times 29."), drawn
    as tool_use's spoken requests are but with three-digit numbers half the time and every
    tens word (two-digit numbers up to 99: with tool_use's 11-39, "forty" came only inside a
    three-digit number), and the model backchannels between them. The listening transcript
    writes each as digits: the hearing half of tool_use, four or five times an episode
    instead of once. Training only."""
    t = float(b.rng.uniform(0.3, 0.8))
    while t < b.duration - 4.0:  # a slow three-digit sum takes up to 3.5 s
        x, y, op = _training_request(b, lambda: _spoken_request(b, long=0.5, top=100))
        u = b.user(f"{x} {op} {y}.", t)
        if b.rng.random() < 0.7:
            b.say(_pick(b, BACKCHANNELS), u.end + float(b.rng.uniform(0.1, 0.25)))
        t = u.end + float(b.rng.uniform(0.6, 1.1))


# Raised when a family's generator (or stream code only its episodes use) changes what its
# episodes render to: the training cache then re-renders that family alone (train.data).
REVISIONS: dict[str, int] = {"tool_use": 7, "readback": 5, "dictation": 4, "interruption": 2}

DRILL_GENERATORS: dict[str, Callable[[EpisodeBuilder], None]] = {
    "readback": readback,
    "dictation": dictation,
}

FAMILY_GENERATORS: dict[str, Callable[[EpisodeBuilder], None]] = {
    "turn_taking": turn_taking,
    "pause": pause,
    "backchannel": backchannel,
    "interruption": interruption,
    "not_addressed": not_addressed,
    "timespeak": timespeak,
    "cuespeak": cuespeak,
    "correction": correction,
    "simultaneous": simultaneous,
    "repcount": repcount,
    "startstop": startstop,
    "proactive": proactive,
    "tool_use": tool_use,
    "refusal": refusal,
}


def generate(
    family: str,
    index: int,
    split: str = "train",
    duration: float = 16.0,
    tts: EspeakTTS | None = None,
    extras: bool = True,
    conditions: Conditions | None = None,
) -> Episode:
    """Episode `index` of a family's split. `extras` adds a distant second speaker to some
    episodes; `conditions` fixes the acoustics (default: drawn, `world.acoustics.sample`).
    A draw that does not fit in `duration` is redrawn."""
    make = FAMILY_GENERATORS.get(family) or DRILL_GENERATORS.get(family)
    if make is None:
        raise ConfigError(
            f"unknown family {family!r}; expected one of {', '.join(FAMILY_GENERATORS)}"
            f" (or a training drill: {', '.join(DRILL_GENERATORS)})"
        )
    if family in DRILL_GENERATORS and split != "train":
        raise ConfigError(f"{family} is a training drill: it has no {split} split")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    tts = tts or EspeakTTS()
    for attempt in range(20):
        rng = np.random.default_rng([SPLITS[split], zlib.crc32(family.encode()), index, attempt])
        b = EpisodeBuilder(
            family,
            f"{split}_{family}_{index:05d}",
            duration,
            tts,
            rng,
            split,
            conditions=conditions,
        )
        try:
            make(b)
            if extras and family != "not_addressed" and rng.random() < 0.15:
                b.other(_pick(b, OTHER_LINES), float(rng.uniform(0.0, duration - 3.0)), gain=0.15)
        except ConfigError:
            continue
        return b.build()
    raise ConfigError(
        f"{family}: no episode fits in {duration:g} s after 20 draws; give a longer duration"
    )


def eval_split(
    per_family: int,
    families: list[str] | None = None,
    duration: float = 16.0,
    progress: bool = False,
) -> list:
    """The held-out episodes the bench runs (`--suite eval`), rendered: `per_family` of each."""
    from tqdm import tqdm

    tts = EspeakTTS()
    jobs = [(f, i) for f in (families or FAMILY_GENERATORS) for i in range(per_family)]
    return [
        generate(f, i, "eval", duration, tts).rendered
        for f, i in tqdm(jobs, desc="rendering eval split", unit="ep", disable=not progress)
    ]
