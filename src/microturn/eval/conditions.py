"""`microturn bench --suite eval --conditions`: the robustness table.

The eval split's episodes of the families where hearing matters most are generated once,
dry, and each acoustic preset (`world.acoustics.PRESETS`) renders what the microphone
sends; microturn and the VAD harness then hear that same degraded input, and both are
scored as in `bench`. Echo leak plays the world's reference model lines (what a good
listener says, in the model's voice) back into the mic, not the system's own output: the
offline runner takes its input before the run, so the echo is open-loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..engine.engine import Engine
from ..world.acoustics import PRESETS, Conditions
from ..world.families import generate
from ..world.tts import EspeakTTS
from .baseline import SERVER_VAD, VadSettings
from .bench import SYSTEMS, BenchResult, run_bench_parallel
from .report import BETTER

ROBUSTNESS_FAMILIES = ("turn_taking", "pause", "interruption", "backchannel", "not_addressed")
EPISODE_S = 16.0  # the eval split's episode length
TABLE_METRICS = (
    "turn_taking_tor",
    "turn_taking_latency_s",
    "pause_tor",
    "stop_latency_s",
    "interruption_tor",
    "backchannel_freq",
    "not_addressed_response_rate",
    "transcript_cer",
    "answer_cer",
)
LOWER_IS_BETTER = {m for m in TABLE_METRICS if BETTER.get(m) == "lower"}


@dataclass
class ConditionsResult:
    per_family: int
    families: tuple[str, ...]
    results: dict[str, BenchResult]  # preset name -> the bench on that preset's input

    def summary(self) -> dict:
        return {
            "suite": "eval",
            "per_family": self.per_family,
            "families": list(self.families),
            "conditions": {name: r.summary()["systems"] for name, r in self.results.items()},
        }


def run_conditions(
    make_engine: Callable[[], Engine],
    per_family: int,
    presets: dict[str, Conditions] | None = None,
    families: tuple[str, ...] | None = None,
    seed: int = 0,
    vad: VadSettings = SERVER_VAD,
    progress: bool = True,
    workers: int = 1,
    temperature: float = 0.8,
    text_temperature: float = 0.8,
) -> ConditionsResult:
    """`per_family` eval episodes of each of `families` (default ROBUSTNESS_FAMILIES), heard
    under each of `presets` (default: every preset) by both systems, in `workers` processes
    (`make_engine` builds each one's engine; see `run_bench_parallel`)."""
    presets = PRESETS if presets is None else presets
    families = ROBUSTNESS_FAMILIES if families is None else families
    tts = EspeakTTS()
    jobs = [(f, i) for f in families for i in range(per_family)]
    episodes = [
        generate(f, i, "eval", EPISODE_S, tts)
        for f, i in tqdm(jobs, desc="rendering eval episodes", unit="ep", disable=not progress)
    ]
    heard = [ep.heard_under(c, seed) for c in presets.values() for ep in episodes]
    every = run_bench_parallel(
        make_engine,
        heard,
        workers,
        seed=seed,
        vad=vad,
        progress=progress,
        intelligibility=False,  # the table does not report it; the plain bench does
        temperature=temperature,
        text_temperature=text_temperature,
    )
    n = len(episodes)
    results = {
        name: BenchResult(
            f"eval:{name}",
            every.rendered[k * n : (k + 1) * n],
            # the world's own lines (bench.REFERENCE) are the same under every condition
            {s: every.runs[s][k * n : (k + 1) * n] for s in SYSTEMS},
        )
        for k, name in enumerate(presets)
    }
    return ConditionsResult(per_family, tuple(families), results)


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def format_conditions_table(result: ConditionsResult) -> str:
    """One row per condition and system, one column per metric (the JSON's figures)."""
    summary = result.summary()["conditions"]
    short = [
        m.replace("_latency_s", "_lat").replace("not_addressed_response_rate", "not_addr_rate")
        for m in TABLE_METRICS
    ]
    lines = [f"{'condition':<16} {'system':<12} " + " ".join(f"{s:>15}" for s in short)]
    for name, systems in summary.items():
        for s in SYSTEMS:
            lines.append(
                f"{name:<16} {s:<12} "
                + " ".join(f"{_fmt(systems[s].get(m)):>15}" for m in TABLE_METRICS)
            )
    lines.append("lower is better: " + ", ".join(sorted(LOWER_IS_BETTER)) + "; higher: the rest")
    return "\n".join(lines)


def plot_conditions(result: ConditionsResult, path: str | Path) -> Path:
    """A panel per metric: each condition's figure for both systems, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = result.summary()["conditions"]
    names = list(summary)
    fig, axes = plt.subplots(3, 3, figsize=(15, 10), squeeze=False)
    x = np.arange(len(names))
    for ax, metric in zip(axes.flat, TABLE_METRICS):
        for j, (system, color) in enumerate(zip(SYSTEMS, ("#2a9d8f", "#e76f51"))):
            vals = [summary[n][system].get(metric) for n in names]
            ax.bar(x + (j - 0.5) * 0.4, [v or 0.0 for v in vals], 0.4, color=color, label=system)
            for xi, v in zip(x, vals):
                if v is None:  # not measured: say so rather than draw a zero
                    ax.text(xi + (j - 0.5) * 0.4, 0, "—", ha="center", va="bottom", fontsize=8)
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{metric} ({better} is better)", fontsize=10)
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        f"robustness: eval split, {result.per_family} per family ({', '.join(result.families)})"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
