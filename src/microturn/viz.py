"""Conversation timelines a person can look at: lanes of speech spans and words on one time axis.

Used by `microturn demo` (PNG and HTML of the scripted conversation) and by `microturn
bench --timeline` (one scenario, both systems).
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

COLORS = {"user": "#264653", "microturn": "#2a9d8f", "model": "#2a9d8f", "vad_harness": "#e76f51",
          "background": "#8d99ae", "other": "#b08968", "heard": "#6d597a"}


@dataclass
class Lane:
    label: str
    spans: list[tuple[float, float]] = field(default_factory=list)
    words: list[tuple[float, str]] = field(default_factory=list)
    color: str = ""

    def __post_init__(self) -> None:
        self.color = self.color or COLORS.get(self.label, "#555")


def timeline_html(
    title: str, duration: float, lanes: list[Lane], notes: list[str] = (), px: float = 90.0
) -> str:
    """A self-contained HTML page: one SVG row per lane, words as labels (time on hover)."""
    x = lambda t: 110 + t * px
    rows, height = [], 60 * len(lanes) + 30
    for i, ln in enumerate(lanes):
        y = 10 + 60 * i
        rows.append(f'<text x="4" y="{y + 16}" class="lane">{html.escape(ln.label)}</text>')
        for a, b in ln.spans:
            rows.append(
                f'<rect x="{x(a):.1f}" y="{y}" width="{max((b - a) * px, 2):.1f}" height="22" '
                f'fill="{ln.color}" opacity="0.35"/>'
            )
        for t, text in ln.words:
            rows.append(
                f'<text x="{x(t):.1f}" y="{y + 36}" class="w"><title>{t:.2f}s</title>'
                f"{html.escape(text)}</text>"
            )
    ticks = "".join(
        f'<line x1="{x(t)}" y1="0" x2="{x(t)}" y2="{height - 20}" class="tick"/>'
        f'<text x="{x(t) + 2}" y="{height - 8}" class="w">{t:g}s</text>'
        for t in range(int(duration) + 1)
    )
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    style = (
        "body{font:13px sans-serif} .lane{font-weight:bold} .w{font-size:10px} .tick{stroke:#ddd}"
    )
    svg = f'<svg width="{x(duration) + 40:.0f}" height="{height}">{ticks}{"".join(rows)}</svg>'
    return f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{style}</style>
<h3>{html.escape(title)}</h3>
<div style="overflow-x:auto">{svg}</div>
<ul>{items}</ul>"""


def write_html(path: str | Path, *args, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(timeline_html(*args, **kwargs))
    return path


def write_png(
    path: str | Path, title: str, duration: float, lanes: list[Lane], rows_s: float = 30.0
) -> Path:
    """The same lanes as a PNG, wrapped every `rows_s` seconds so long conversations stay
    legible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(1, int(-(-duration // rows_s)))
    fig, axes = plt.subplots(
        n_rows, 1, figsize=(16, 0.9 * len(lanes) * n_rows + 0.8), squeeze=False
    )
    for r, ax in enumerate(axes[:, 0]):
        t0, t1 = r * rows_s, min(duration, (r + 1) * rows_s)
        for i, ln in enumerate(lanes):
            y = len(lanes) - 1 - i
            for a, b in ln.spans:
                if b > t0 and a < t1:
                    ax.barh(
                        y,
                        min(b, t1) - max(a, t0),
                        left=max(a, t0),
                        height=0.5,
                        color=ln.color,
                        alpha=0.45,
                    )
            shown = -1.0
            for t, text in ln.words:
                if t0 <= t < t1:
                    dy = 0.3 if t - shown > 0.35 else -0.38  # alternate rows when words crowd
                    ax.text(
                        t,
                        y + dy,
                        text[:40],
                        fontsize=6.5,
                        va="center",
                        parse_math=False,
                        clip_on=True,
                    )
                    shown = t if dy > 0 else shown
        ax.set_xlim(t0, t0 + rows_s)
        ax.set_yticks(range(len(lanes)), [ln.label for ln in reversed(lanes)])
        ax.set_ylim(-0.7, len(lanes) - 0.3)
        ax.grid(axis="x", color="#ddd")
        ax.set_axisbelow(True)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        warnings.catch_warnings()
    ):  # a model's odd bytes may have no glyph in the font: drawn as boxes
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
