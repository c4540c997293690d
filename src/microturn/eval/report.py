"""Bench reports: the side-by-side table, a PNG per family, an HTML timeline per scenario."""

from __future__ import annotations

import html
from pathlib import Path

from .bench import SYSTEMS, BenchResult

BETTER = {"pause_tor": "lower", "backchannel_tor": "lower", "not_addressed_response_rate": "lower",
          "over_refusal_rate": "lower", "stop_latency_s": "lower", "turn_taking_latency_s": "lower",
          "interruption_latency_s": "lower", "correction_latency_s": "lower", "tool_answer_latency_s": "lower"}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def format_table(result: BenchResult) -> str:
    lines = [f"{'family':<14} {'metric':<28} {'microturn':>10} {'vad_harness':>12}  better"]
    checks = {n: result.summary()["systems"][n].get("vad_agreement") for n in SYSTEMS}
    for fam, systems in sorted(result.by_family().items()):
        keys = sorted({k for s in systems.values() for k in s} - {"vad_agreement"})
        for i, k in enumerate(keys):
            row = [systems.get(s, {}).get(k) for s in SYSTEMS]
            lines.append(f"{fam if i == 0 else '':<14} {k:<28} {_fmt(row[0]):>10} {_fmt(row[1]):>12}  "
                         f"{BETTER.get(k, 'higher')}")
    lines.append(f"{'(check)':<14} {'vad_agreement':<28} {_fmt(checks['microturn']):>10} "
                 f"{_fmt(checks['vad_harness']):>12}  logged speech vs VAD on the output audio")
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
        raise KeyError(f"no scenario {scenario_id!r}; have: {', '.join(r.scenario.id for r in result.rendered)}")
    r = result.rendered[idx]
    dur, px = r.scenario.duration, 90.0
    x = lambda t: 110 + t * px
    rows = []

    def lane(y: int, label: str, spans, words, color: str) -> None:
        rows.append(f'<text x="4" y="{y + 16}" class="lane">{html.escape(label)}</text>')
        for a, b in spans:
            rows.append(f'<rect x="{x(a):.1f}" y="{y}" width="{max((b - a) * px, 2):.1f}" height="22" fill="{color}" opacity="0.35"/>')
        for t, text in words:
            rows.append(f'<text x="{x(t):.1f}" y="{y + 36}" class="w"><title>{t:.2f}s</title>{html.escape(text)}</text>')

    lane(10, "user", [(w.t, w.end) for w in r.user_words], [(w.t, w.text) for w in r.user_words], "#264653")
    for j, name in enumerate(SYSTEMS):
        run = result.runs[name][idx]
        lane(70 + 60 * j, name, run.speech, [(w.t, w.text) for w in run.words], "#2a9d8f" if j == 0 else "#e76f51")
    tasks = result.runs["microturn"][idx].extra
    lane(190, "background", [], [(e.t, f"{e.kind}: {e.text}") for e in tasks], "#8d99ae")
    ticks = "".join(f'<line x1="{x(t)}" y1="0" x2="{x(t)}" y2="250" class="tick"/><text x="{x(t) + 2}" y="262" class="w">{t:g}s</text>'
                    for t in range(int(dur) + 1))
    scores = "".join(f"<li><b>{n}</b>: {html.escape(str(result.runs[n][idx].scores))}</li>" for n in SYSTEMS)
    doc = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(scenario_id)}</title>
<style>body{{font:13px sans-serif}} .lane{{font-weight:bold}} .w{{font-size:10px}} .tick{{stroke:#ddd}}</style>
<h3>{html.escape(scenario_id)} — {html.escape(r.scenario.family)}</h3>
<svg width="{x(dur) + 40:.0f}" height="270">{ticks}{''.join(rows)}</svg><ul>{scores}</ul>"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
