"""Server counters in the Prometheus text format (`/metrics`)."""

from __future__ import annotations

from dataclasses import dataclass, field

BUCKETS_MS = (10, 20, 40, 80, 120, 160, 200, 300, 500, 1000)


@dataclass
class Metrics:
    turns: int = 0
    deadline_misses: int = 0
    refused: int = 0
    dropped_audio_s: float = 0.0
    input_audio_s: float = 0.0
    dropped_messages: int = 0
    bad_messages: int = 0
    live_sessions: int = 0
    turn_ms_sum: float = 0.0
    turn_ms_buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))

    def turn(self, ms: float, missed: bool, sessions: int) -> None:
        self.turns += 1
        self.deadline_misses += int(missed)
        self.turn_ms_sum += ms
        self.turn_ms_buckets[
            next((i for i, b in enumerate(BUCKETS_MS) if ms <= b), len(BUCKETS_MS))
        ] += 1

    def render(self, live: int) -> str:
        out = [
            "# HELP microturn_live_sessions Conversations being served.",
            "# TYPE microturn_live_sessions gauge",
            f"microturn_live_sessions {live}",
            "# HELP microturn_turn_compute_ms Compute time of one batched engine step.",
            "# TYPE microturn_turn_compute_ms histogram",
        ]
        acc = 0
        for b, n in zip(BUCKETS_MS, self.turn_ms_buckets):
            acc += n
            out.append(f'microturn_turn_compute_ms_bucket{{le="{b}"}} {acc}')
        out += [
            f'microturn_turn_compute_ms_bucket{{le="+Inf"}} {self.turns}',
            f"microturn_turn_compute_ms_sum {self.turn_ms_sum:.3f}",
            f"microturn_turn_compute_ms_count {self.turns}",
        ]
        for name, value, help_ in (
            (
                "deadline_misses_total",
                self.deadline_misses,
                "Turns whose compute ran past the next tick.",
            ),
            (
                "sessions_refused_total",
                self.refused,
                "Sessions refused because the server was full.",
            ),
            (
                "input_audio_seconds_total",
                round(self.input_audio_s, 3),
                "Input audio received from clients.",
            ),
            (
                "dropped_audio_seconds_total",
                self.dropped_audio_s,
                "Input audio dropped: sent faster than real time.",
            ),
            (
                "dropped_messages_total",
                self.dropped_messages,
                "Output messages dropped for slow readers.",
            ),
            ("bad_messages_total", self.bad_messages, "Client messages answered with an error."),
        ):
            out += [
                f"# HELP microturn_{name} {help_}",
                f"# TYPE microturn_{name} counter",
                f"microturn_{name} {value}",
            ]
        return "\n".join(out) + "\n"
