"""Built-in tools of the background model. None reaches the network.

Each tool is an async generator of result chunks, so slow tools (a timer) can report
progress and finish later. The same tools are offered to an LLM backend as functions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any, AsyncIterator, Callable

import bm25s

from ..errors import MicroturnError
from .calculator import calculate, spoken_number


KEEPALIVE_S = 1.0


class ToolError(MicroturnError, ValueError):
    """A tool was called with arguments it cannot use."""


class Clock:
    """The conversation's clock (seconds since the session started).

    The runtime advances it once per turn, so timers fire on conversation time both live and
    in offline runs that go faster than real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._waiters: list[tuple[float, asyncio.Future]] = []

    def advance(self, now: float) -> None:
        """Call on the clock's event loop."""
        self.now = now
        due = [w for w in self._waiters if w[0] <= now]
        self._waiters = [w for w in self._waiters if w[0] > now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

    def waiting(self) -> list[float]:
        """Times that sleepers wait for (read from any thread)."""
        return [t for t, fut in list(self._waiters) if not fut.done()]

    async def sleep_until(self, t: float) -> None:
        if t <= self.now:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((t, fut))
        await fut


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments
    run: Callable[..., AsyncIterator[str]]

    def schema(self) -> dict[str, Any]:
        """The OpenAI chat-completions function declaration."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


def _params(**props: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": t, "description": d} for k, (t, d) in props.items()},
        "required": list(props),
    }


# ---- units ------------------------------------------------------------------------------
UNITS: dict[str, tuple[str, float]] = {}
for dim, table in {
    "length": {
        "m": 1,
        "meter": 1,
        "metre": 1,
        "km": 1000,
        "kilometer": 1000,
        "kilometre": 1000,
        "cm": 0.01,
        "centimeter": 0.01,
        "mm": 0.001,
        "mi": 1609.344,
        "mile": 1609.344,
        "ft": 0.3048,
        "foot": 0.3048,
        "feet": 0.3048,
        "in": 0.0254,
        "inch": 0.0254,
        "inches": 0.0254,
        "yd": 0.9144,
        "yard": 0.9144,
    },
    "mass": {
        "kg": 1,
        "kilogram": 1,
        "g": 0.001,
        "gram": 0.001,
        "lb": 0.45359237,
        "pound": 0.45359237,
        "oz": 0.028349523125,
        "ounce": 0.028349523125,
        "t": 1000,
        "tonne": 1000,
    },
    "volume": {
        "l": 1,
        "liter": 1,
        "litre": 1,
        "ml": 0.001,
        "milliliter": 0.001,
        "millilitre": 0.001,
        "cup": 0.24,
        "gal": 3.785411784,
        "gallon": 3.785411784,
    },
    "time": {
        "s": 1,
        "second": 1,
        "min": 60,
        "minute": 60,
        "h": 3600,
        "hour": 3600,
        "day": 86400,
        "week": 604800,
    },
    "speed": {"m/s": 1, "km/h": 1 / 3.6, "kph": 1 / 3.6, "mph": 0.44704, "knot": 0.514444},
}.items():
    for name, factor in table.items():
        UNITS[name] = (dim, factor)
TEMPERATURES = {"c": "C", "celsius": "C", "f": "F", "fahrenheit": "F", "k": "K", "kelvin": "K"}


def _unit(name: str) -> str:
    u = name.strip().lower().removeprefix("degrees ").removeprefix("degree ")
    if u in UNITS or u in TEMPERATURES:
        return u
    if u.endswith("s") and u[:-1] in UNITS:
        return u[:-1]
    raise ToolError(f"unknown unit {name!r}")


def convert(value: float, from_unit: str, to_unit: str) -> float:
    a, b = _unit(from_unit), _unit(to_unit)
    if a in TEMPERATURES and b in TEMPERATURES:
        kelvin = {
            "C": lambda v: v + 273.15,
            "F": lambda v: (v - 32) * 5 / 9 + 273.15,
            "K": lambda v: v,
        }
        back = {
            "C": lambda k: k - 273.15,
            "F": lambda k: (k - 273.15) * 9 / 5 + 32,
            "K": lambda k: k,
        }
        return back[TEMPERATURES[b]](kelvin[TEMPERATURES[a]](value))
    if a in TEMPERATURES or b in TEMPERATURES or UNITS[a][0] != UNITS[b][0]:
        raise ToolError(f"cannot convert {from_unit} to {to_unit}: different kinds of quantity")
    return value * UNITS[a][1] / UNITS[b][1]


# ---- knowledge --------------------------------------------------------------------------
@dataclass
class Knowledge:
    """BM25 over the sentences of the bundled documents (or a user's own)."""

    passages: list[str] = field(default_factory=list)

    @staticmethod
    def bundled() -> "Knowledge":
        texts = [
            p.read_text(encoding="utf-8")
            for p in resources.files(__package__).joinpath("knowledge").iterdir()
            if p.name.endswith(".md")
        ]
        passages = [
            s.strip()
            for t in texts
            for line in t.splitlines()
            if not line.startswith("#")
            for s in re.split(r"(?<=\.)\s+", line)
            if s.strip()
        ]
        return Knowledge(passages)

    @cached_property
    def _index(self) -> bm25s.BM25:
        index = bm25s.BM25()
        index.index(
            bm25s.tokenize(self.passages, stopwords="en", show_progress=False), show_progress=False
        )
        return index

    def search(self, query: str, k: int = 2) -> list[tuple[str, float]]:
        if not self.passages:
            return []
        docs, scores = self._index.retrieve(
            bm25s.tokenize([query], stopwords="en", show_progress=False),
            k=min(k, len(self.passages)),
            show_progress=False,
        )
        return [(self.passages[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]


def default_tools(clock: Clock, knowledge: Knowledge | None = None) -> dict[str, Tool]:
    know = knowledge or Knowledge.bundled()

    async def calc(expression: str) -> AsyncIterator[str]:
        yield f"{expression.strip()} = {spoken_number(calculate(expression))}"

    async def time_now() -> AsyncIterator[str]:
        yield f"It is {dt.datetime.now().strftime('%H:%M')}."

    async def date_today() -> AsyncIterator[str]:
        yield f"Today is {dt.date.today().strftime('%A, %d %B %Y')}."

    async def timer(seconds: float, label: str = "timer") -> AsyncIterator[str]:
        seconds = float(seconds)
        if not 0 < seconds <= 24 * 3600:
            raise ToolError(f"timer of {seconds} s: expected 0 < seconds <= 86400")
        due = clock.now + seconds
        yield f"Timer set: {label}, {spoken_number(seconds)} seconds."
        waiting = asyncio.ensure_future(clock.sleep_until(due))
        try:
            while not waiting.done():
                await asyncio.wait([waiting], timeout=KEEPALIVE_S)
                if not waiting.done():
                    # alive, only waiting: keeps the task manager's inactivity timeout away
                    yield ""
        finally:
            waiting.cancel()
        yield f"Time is up: {label}."

    async def units(value: float, from_unit: str, to_unit: str) -> AsyncIterator[str]:
        converted = round(convert(float(value), from_unit, to_unit), 4)
        yield f"{spoken_number(float(value))} {from_unit} is {spoken_number(converted)} {to_unit}."

    async def lookup(query: str) -> AsyncIterator[str]:
        hits = know.search(query, k=1)
        yield hits[0][0] if hits else f"I found nothing about {query!r}."

    return {
        t.name: t
        for t in [
            Tool(
                "calculate",
                "Evaluate arithmetic exactly (+ - * / // % **, sqrt, log, sin, ...).",
                _params(expression=("string", "the arithmetic, e.g. '2**32 / 7'")),
                calc,
            ),
            Tool("current_time", "The current local time.", _params(), time_now),
            Tool("current_date", "Today's date.", _params(), date_today),
            Tool(
                "set_timer",
                "Start a timer; reports when it is set and again when it is up.",
                _params(
                    seconds=("number", "duration in seconds"),
                    label=("string", "what the timer is for"),
                ),
                timer,
            ),
            Tool(
                "convert_units",
                "Convert a quantity between units "
                "(length, mass, volume, time, speed, temperature).",
                _params(
                    value=("number", "the amount"),
                    from_unit=("string", "e.g. 'mile'"),
                    to_unit=("string", "e.g. 'km'"),
                ),
                units,
            ),
            Tool(
                "lookup",
                "Look a fact up in the bundled reference documents.",
                _params(query=("string", "what to look up")),
                lookup,
            ),
        ]
    }
