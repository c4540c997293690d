"""Background agents: the protocol, and the embedded default agent (no network, no weights).

The embedded agent's planner maps a request (and the conversation: "that" and "it" are the
last result; a request with nothing to compute falls back on the user's last words) to one
tool call and says the result in a short sentence.
"""

from __future__ import annotations

import difflib
import re
from typing import AsyncIterator, Protocol, runtime_checkable

from .calculator import CalculatorError, calculate, normalise, spoken_number
from .context import ContextPackage
from .tools import UNITS, TEMPERATURES, Clock, Knowledge, Tool, ToolError, default_tools


@runtime_checkable
class BackgroundAgent(Protocol):
    """Takes a context package, yields result chunks. Cancelled by cancelling its task; the
    task manager fails it when no chunk comes for `timeout_s` seconds."""

    name: str
    timeout_s: float

    def run(self, ctx: ContextPackage) -> AsyncIterator[str]: ...


ARITH = re.compile(
    r"[-+*/().%^×÷\d\s]*\d[-+*/().%^×÷\d\s]*"
    r"|\b(?:sqrt|log|sin|cos|tan|factorial|abs)\b\s*\([^)]*\)"
)
TIMER = re.compile(r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|hours?|h)\b")
CONVERT = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*(?:degrees\s+)?([a-z/]+)\s+(?:to|in|into)\s+(?:degrees\s+)?([a-z/]+)"
)
REFERENCE = re.compile(r"\b(that|it|the result|the answer)\b")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class EmbeddedAgent:
    name = "embedded"

    def __init__(
        self,
        clock: Clock | None = None,
        knowledge: Knowledge | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.clock = clock or Clock()
        self.tools: dict[str, Tool] = default_tools(self.clock, knowledge)
        self.timeout_s = timeout_s

    def plan(self, ctx: ContextPackage) -> tuple[str, dict]:
        """(tool name, arguments) for a request."""
        text = ctx.request.lower().strip()
        if (m := TIMER.search(text)) and re.search(r"\b(timer|remind|alarm|wake)\b", text):
            unit = m.group(2)[0]
            seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
            label = (
                re.sub(r"^.*\b(?:to|for)\b\s+", "", text)
                if re.search(r"\b(to|for)\b", text)
                else "timer"
            )
            return "set_timer", {"seconds": seconds, "label": label.strip(" .?!") or "timer"}
        if (m := CONVERT.search(text)) and _is_unit(m.group(2)) and _is_unit(m.group(3)):
            return "convert_units", {
                "value": float(m.group(1)),
                "from_unit": m.group(2),
                "to_unit": m.group(3),
            }
        if re.search(r"\bwhat time\b|\bthe time\b|\bclock\b", text):
            return "current_time", {}
        if re.search(r"\b(date|what day)\b|\btoday\b", text):
            return "current_date", {}
        if (expr := self._arithmetic(text, ctx)) is not None:
            return "calculate", {"expression": expr}
        # the model's request is garbled or bare ("work that out", "look that up"): the user's
        # own last words, as the model heard them, say what to work out or look up
        words = _last_user_words(ctx)
        heard = [mend_operators(w.lower()) for w in words]
        for asked in heard:
            if (expr := self._arithmetic(asked, ctx)) is not None:
                return "calculate", {"expression": expr}
        if (unclear := _sum_like(heard)) is not None:
            # a sum whose numbers were misheard ("3 47 times 29"): said to be unclear, not
            # looked up ("times" once found a fact about heartbeats) nor guessed at
            return "calculate", {"expression": unclear}
        return "lookup", {"query": " ".join([ctx.request, *words[-1:]])}

    def _arithmetic(self, text: str, ctx: ContextPackage) -> str | None:
        if REFERENCE.search(text):  # "what's that times three": the last number a result gave
            last = next(
                (
                    NUMBER.findall(r["text"])
                    for r in reversed(ctx.transcript)
                    if r["kind"] == "result" and NUMBER.search(r["text"])
                ),
                None,
            )
            if last:
                text = REFERENCE.sub(last[-1].replace(",", ""), text)
        norm = normalise(text)
        start = re.search(r"[-(\d]|\b(?:sqrt|log|sin|cos|tan|factorial|abs)\b", norm)
        tail = norm[start.start() :].rstrip(" ?.!") if start else ""
        spans = ([tail] if tail else []) + sorted(
            (s.strip() for s in ARITH.findall(norm) if s.strip()), key=len, reverse=True
        )
        for span in spans:
            if re.search(r"[-+*/%^()]", span.strip("()")) or span.startswith(
                ("sqrt", "log", "sin", "cos", "tan", "fact", "abs")
            ):
                try:
                    calculate(span)
                    return span
                except CalculatorError:
                    continue
        return None

    async def run(self, ctx: ContextPackage) -> AsyncIterator[str]:
        name, args = self.plan(ctx)
        if name == "calculate":  # say it, rather than print it
            try:
                value = calculate(args["expression"])
            except CalculatorError:
                yield f"I could not make out the numbers in '{_say(args['expression'])}'."
                return
            yield f"{_say(args['expression'])} is {spoken_number(value)}."
            return
        async for chunk in self.tools[name].run(**args):
            yield chunk


def _last_user_words(ctx: ContextPackage) -> list[str]:
    """The user's last utterance, then all their words since the last exchange with the
    background model. A heard word is stamped when the transcript writes it, up to two turns
    after it was said, so the model's reply can land between the words of one question
    ("347 times" / "Let" / "29")."""
    since: list[str] = []
    for r in ctx.transcript:
        if r["kind"] == "result" or (r["kind"] == "delegation" and r["t"] < ctx.now):
            since = []
        elif r["kind"] in ("user_word", "user_text"):
            since.append(r["text"])
    return since[-1:] + ([" ".join(since)] if len(since) > 1 else [])


OPERATOR_WORDS = ("times", "plus", "minus", "over")


def mend_operators(heard: str) -> str:
    """Heard words with a misheard operator read as a listener would: "347 timss 29" ->
    "347 times 29". Only a word standing between two numbers and close to one operator word
    (difflib ratio >= 0.75) changes, so the numbers stay exactly as heard. Applied to the
    listening transcript, never to the model's own request (a restated question is trusted
    less than the user's words, `_last_user_words`)."""
    words = heard.split()
    for i in range(1, len(words) - 1):
        if NUMBER.fullmatch(words[i - 1]) and NUMBER.fullmatch(words[i + 1]):
            close = difflib.get_close_matches(words[i], OPERATOR_WORDS, n=1, cutoff=0.75)
            words[i] = close[0] if close else words[i]
    return " ".join(words)


SUM = re.compile(r"\d\s*[-+*/]\s*\d")


def _sum_like(heard: list[str]) -> str | None:
    """The longest stretch of heard words (lower case, operators mended) that reads as a sum
    (numbers around an operator) without being one, or None."""
    for words in heard:
        spans = [s.strip() for s in ARITH.findall(normalise(words))]
        if sums := [s for s in spans if SUM.search(s)]:
            return max(sums, key=len)
    return None


def _is_unit(word: str) -> bool:
    w = word.lower()
    return w in UNITS or w in TEMPERATURES or (w.endswith("s") and w[:-1] in UNITS)


def _say(expr: str) -> str:
    spoken = {
        "**": " to the power of ",
        "*": " times ",
        "/": " divided by ",
        "+": " plus ",
        "-": " minus ",
        "%": " modulo ",
    }
    out = expr
    for sym, word in spoken.items():
        out = out.replace(sym, word)
    return re.sub(r"\s+", " ", out).strip()


__all__ = ["BackgroundAgent", "EmbeddedAgent", "ToolError"]
