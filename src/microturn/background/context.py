"""The context package: what a background task knows about the conversation.

Not a bare query: the whole transcript so far (user words where known, typed text, the
model's words, earlier delegations and their results, each with its time), the current
time, and the request itself.

In a live session nobody knows the user's words but the model: its listening transcript
("heard_word" events) stands in for them. Where the words are known exactly (a recording
with an alignment) those are used and the transcript is left out, so no word is doubled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..streams.turns import Event

TRANSCRIPT_KINDS = ("user_word", "user_text", "model_word", "delegation", "result")
SYSTEM_PROMPT = (
    "You are the background model of a real-time voice assistant. The assistant is still talking "
    "with the user while you work; it will say your answer when the moment suits. Use the tools "
    "when they help, answer in one or two short spoken sentences, and never ask questions back.")


@dataclass
class ContextPackage:
    task_id: str
    request: str
    now: float  # seconds since the conversation started
    transcript: list[dict] = field(default_factory=list)  # {"t", "kind", "text"} in time order

    @staticmethod
    def from_events(
        task_id: str, request: str, now: float, events: list[Event]
    ) -> "ContextPackage":
        known = any(e.kind == "user_word" for e in events)
        rows = [
            {
                "t": round(e.t, 3),
                "kind": "user_word" if e.kind == "heard_word" else e.kind,
                "text": e.text,
            }
            for e in sorted(events, key=lambda e: e.t)
            if (e.kind in TRANSCRIPT_KINDS or (e.kind == "heard_word" and not known)) and e.t <= now
        ]
        return ContextPackage(task_id, request, round(now, 3), _merge_words(rows))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> "ContextPackage":
        return ContextPackage(**json.loads(text))

    def to_messages(self) -> list[dict]:
        """Chat-completions messages: the conversation as user/assistant turns, then the task."""
        msgs: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
        for row in self.transcript:
            stamp = f"[{row['t']:.1f}s]"
            if row["kind"] in ("user_word", "user_text"):
                msgs.append({"role": "user", "content": f"{stamp} {row['text']}"})
            elif row["kind"] == "model_word":
                msgs.append({"role": "assistant", "content": f"{stamp} {row['text']}"})
            elif row["kind"] == "delegation":
                msgs.append(
                    {
                        "role": "assistant",
                        "content": f"{stamp} (asked the background model: {row['text']})",
                    }
                )
            else:
                msgs.append(
                    {"role": "user", "content": f"{stamp} (background result: {row['text']})"}
                )
        msgs.append(
            {
                "role": "user",
                "content": f"[{self.now:.1f}s] Background task {self.task_id}: {self.request}",
            }
        )
        return msgs


def _merge_words(rows: list[dict]) -> list[dict]:
    """Consecutive words of one speaker become one utterance (stamped with its first word)."""
    out: list[dict] = []
    for row in rows:
        if out and row["kind"] in ("user_word", "model_word") and out[-1]["kind"] == row["kind"]:
            out[-1] = {**out[-1], "text": f"{out[-1]['text']} {row['text']}"}
        else:
            out.append(dict(row))
    return out
