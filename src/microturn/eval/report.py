"""Bench reports: the side-by-side table, a PNG per family, an HTML timeline per scenario."""

from __future__ import annotations

from pathlib import Path

from ..viz import Lane, write_html
from .bench import REFERENCE, SYSTEMS, BenchResult

BETTER = {
    "pause_tor": "lower",
    "backchannel_tor": "lower",
    "not_addressed_response_rate": "lower",
    "over_refusal_rate": "lower",
    "stray_delegation_rate": "lower",
    "stop_latency_s": "lower",
    "turn_taking_latency_s": "lower",
    "interruption_latency_s": "lower",
    "correction_latency_s": "lower",
    "tool_answer_latency_s": "lower",
    "answer_cer": "lower",
    "transcript_cer": "lower",
}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def _columns(result: BenchResult) -> list[str]:
    """The two systems, and the world's own lines where the scenarios had them."""
    return [*SYSTEMS, *([REFERENCE] if REFERENCE in result.runs else [])]


def format_table(result: BenchResult) -> str:
    """Per family and metric, each system beside the other, and the world's own lines
    (`bench.REFERENCE`: the metric's ceiling as training teaches it) where there are some."""
    names = _columns(result)
    widths = [max(len(n), 10) for n in names]
    head = " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
    lines = [f"{'family':<14} {'metric':<28} {head}  better"]
    for fam, systems in sorted(result.by_family().items()):
        keys = sorted({k for s in systems.values() for k in s} - {"vad_agreement"})
        for i, k in enumerate(keys):
            row = " ".join(f"{_fmt(systems.get(n, {}).get(k)):>{w}}" for n, w in zip(names, widths))
            lines.append(f"{fam if i == 0 else '':<14} {k:<28} {row}  {BETTER.get(k, 'higher')}")
    checks = result.summary()["systems"]
    row = " ".join(
        f"{_fmt(checks[n].get('vad_agreement')) if n in SYSTEMS else '':>{w}}"
        for n, w in zip(names, widths)
    )
    lines.append(
        f"{'(check)':<14} {'vad_agreement':<28} {row}  logged speech vs VAD on the output audio"
    )
    return "\n".join(lines)


def write_plots(result: BenchResult, out: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fam, systems in sorted(result.by_family().items()):
        keys = sorted({k for s in systems.values() for k in s} - {"vad_agreement"})
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False)
        for ax, k in zip(axes[0], keys):
            vals = [systems.get(s, {}).get(k) for s in SYSTEMS]
            ax.bar(SYSTEMS, [v or 0.0 for v in vals], color=["#2a9d8f", "#e76f51"])
            for x, v in enumerate(vals):
                ax.text(x, (v or 0.0), _fmt(v), ha="center", va="bottom", fontsize=9)
            ax.set_title(f"{k}\n({BETTER.get(k, 'higher')} is better)", fontsize=9)
        fig.suptitle(f"{fam} ({result.suite})")
        fig.tight_layout()
        path = out / f"{fam}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_timeline_html(result: BenchResult, scenario_id: str, path: str | Path) -> Path:
    """User, microturn and harness lanes on one time axis, words on hover and as labels."""
    idx = next((i for i, r in enumerate(result.rendered) if r.scenario.id == scenario_id), None)
    if idx is None:
        have = ", ".join(r.scenario.id for r in result.rendered)
        raise KeyError(f"no scenario {scenario_id!r}; have: {have}")
    r = result.rendered[idx]
    lanes = [
        Lane("user", [(w.t, w.end) for w in r.user_words], [(w.t, w.text) for w in r.user_words])
    ]
    heard = [(e.t, e.text) for e in result.runs["microturn"][idx].extra if e.kind == "heard_word"]
    lanes.append(Lane("heard", [], heard))  # microturn's listening transcript
    names = _columns(result)
    for name in names:
        run = result.runs[name][idx]
        lanes.append(Lane(name, run.speech, [(w.t, w.text) for w in run.words]))
    tasks = [e for e in result.runs["microturn"][idx].extra if e.kind != "heard_word"]
    lanes.append(Lane("background", [], [(e.t, f"{e.kind}: {e.text}") for e in tasks]))
    notes = [f"{n}: {result.runs[n][idx].scores}" for n in names]
    return write_html(
        path, f"{scenario_id} — {r.scenario.family}", r.scenario.duration, lanes, notes
    )
