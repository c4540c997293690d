"""What more compute buys: per-family held-out scores against training tokens, over stages.

Reads the `log.jsonl` of consecutive training stages (each continuing from the last), puts
their evaluations on one axis of cumulative training tokens, fits each family's error
(1 - score) as a power law of tokens (a line in log-log, least squares over every
evaluation), and extrapolates the tokens, and the hours at the last stage's median
tokens/s, at which the error reaches the target. The scores are the trainer's
teacher-forced ones (`fam/FAMILY/SCORE`), not the free-running bench's: a floor on what
the bench needs, not a promise of it.

    python benchmarks/compute_to_target.py runs/default_stage4 runs/default_stage5 \
        runs/default_stage6 --score text_acc --target 0.95 --png docs/compute_to_target.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np


def load_stages(runs: list[Path]) -> tuple[list[dict], float]:
    """Every evaluation row with `tokens_seen` (cumulative over the stages), and the last
    stage's median tokens/s."""
    evals, offset, speed = [], 0.0, 0.0
    for run in runs:
        rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
        seen = offset
        for r in rows:
            seen += r.get("tokens", 0)
            if any(k.startswith("fam/") for k in r):
                evals.append(r | {"tokens_seen": seen, "stage": run.name})
        offset = seen
        speed = statistics.median(r["tokens_per_s"] for r in rows if r.get("tokens_per_s"))
    return evals, speed


def fit(points: list[tuple[float, float]], target: float) -> dict:
    """log(err) = a + b log(tokens); the tokens at which err reaches 1 - target."""
    t = np.log([p[0] for p in points])
    e = np.log([max(1.0 - p[1], 1e-3) for p in points])
    b, a = np.polyfit(t, e, 1)
    want = np.log(1.0 - target)
    reach = float(np.exp((want - a) / b)) if b < 0 else float("inf")
    return {"a": float(a), "b": float(b), "tokens_to_target": reach}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders, in training order")
    ap.add_argument(
        "--score", default="text_acc", help="text_acc | onset_acc | switch_acc | transcript_acc"
    )
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--png", type=Path, help="draw the fits here")
    ap.add_argument("--json", type=Path, help="write the table here")
    args = ap.parse_args()
    evals, speed = load_stages(args.runs)
    families = sorted({k.split("/")[1] for r in evals for k in r if k.endswith(f"/{args.score}")})
    total = evals[-1]["tokens_seen"]
    table = {}
    print(
        f"{args.score} -> {args.target} (teacher-forced, held-out); {total / 1e6:.1f} M tokens "
        f"so far, last stage {speed:,.0f} tokens/s"
    )
    print(f"{'family':15s} {'now':>6s} {'slope':>7s} {'M tokens to target':>19s} {'hours':>7s}")
    for fam in families:
        key = f"fam/{fam}/{args.score}"
        pts = [(r["tokens_seen"], r[key]) for r in evals if key in r]
        if len(pts) < 3:
            continue
        f = fit(pts, args.target)
        more = max(0.0, f["tokens_to_target"] - total)
        hours = more / speed / 3600 if speed else float("nan")
        table[fam] = {"now": pts[-1][1], "slope": f["b"], "more_tokens": more, "hours": hours} | f
        print(f"{fam:15s} {pts[-1][1]:6.2f} {f['b']:7.2f} {more / 1e6:19,.0f} {hours:7,.1f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "score": args.score,
                    "target": args.target,
                    "tokens_seen": total,
                    "families": table,
                },
                indent=2,
            )
        )
    if args.png:
        _plot(evals, families, table, args)


def _plot(evals: list[dict], families: list[str], table: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for i, fam in enumerate(families):
        key = f"fam/{fam}/{args.score}"
        pts = [(r["tokens_seen"], 1.0 - r[key]) for r in evals if key in r]
        if fam not in table:
            continue
        color = plt.cm.tab20(i % 20)
        ax.plot(*zip(*pts), "o", color=color, ms=3)
        f = table[fam]
        end = min(f["tokens_to_target"], pts[-1][0] * 100)
        xs = np.geomspace(pts[0][0], max(end, pts[-1][0]), 50)
        ax.plot(xs, np.exp(f["a"]) * xs ** f["b"], "-", color=color, lw=1, label=fam)
    ax.axhline(1.0 - args.target, color="k", ls="--", lw=0.8, label=f"target {args.target}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens (cumulative over stages)")
    ax.set_ylabel(f"1 - held-out {args.score}")
    ax.set_title(f"{args.score}: power-law fits per family, extrapolated to the target")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.png, dpi=80)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
