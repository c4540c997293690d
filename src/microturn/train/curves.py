"""Learning curves of a run (`log.jsonl`) as one PNG: losses, held-out losses, per-family
held-out scores. Redrawn at every evaluation, so the run folder always shows where it is."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCORES = ("text_acc", "onset_acc", "switch_acc", "transcript_acc", "transcript_cer")


def plot_curves(log_path: str | Path, out: str | Path) -> Path:
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    evals = [r for r in rows if any(k.startswith("eval_") for k in r)]
    families = sorted({k.split("/")[1] for r in evals for k in r if k.startswith("fam/")})
    fig, axes = plt.subplots(1, 2 + len(SCORES), figsize=(5 * (2 + len(SCORES)), 4.2))
    steps = [r["step"] for r in rows]
    for key in ("control", "text", "audio", "transcript"):
        axes[0].plot(steps, [r.get(key, 0.0) for r in rows], label=key, lw=0.8)
        axes[1].plot([r["step"] for r in evals], [r.get(f"eval_{key}", 0.0) for r in evals],
                     marker="o", label=key)
    axes[0].set_title("training loss")
    axes[1].set_title("held-out loss")
    for ax, score in zip(axes[2:], SCORES):
        for fam in families:
            pts = [(r["step"], r[f"fam/{fam}/{score}"]) for r in evals if f"fam/{fam}/{score}" in r]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=fam)
        ax.set_title(f"held-out {score} per family")
        ax.set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
