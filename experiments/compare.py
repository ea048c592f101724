"""Algorithms side by side: greedy evaluation return against environment steps.

    python -m experiments.compare DIR... [--out docs/compare/tqs] [--threshold -15]

Reads run folders (the ``--workdir`` of ``experiments.run``, any algorithms, any seeds),
groups them by ``config.algorithm`` (from ``run_info.jsonl``) and writes

- ``OUT.md``: per algorithm, the runs, the start (the first evaluation of its last
  stage: for online algorithms the BC policy it starts from), the final and the best
  evaluation, the gain over the start, each as the mean over seeds with its standard
  error across seeds, the environment steps at which the mean curve first reaches
  ``--threshold`` (online algorithms; '-' if never), and the wall minutes of the
  iterations (setup and data excluded); a run evaluated once (an offline run shorter
  than ``config.archer.eval_every``) has no gain ('-');
- ``OUT.json``: the same, plus every run's curve;
- in both, each algorithm's final evaluation against the first algorithm's, seed by
  seed, on the episodes both played (``evaluations/``: the same episode seeds must
  hide the same items): the mean difference of the returns and its paired standard
  error, which is far smaller than the spread across seeds when the games are shared;
- ``OUT.png``: mean return over seeds against environment steps (online) or updates
  (offline), with the seeds' range shaded (needs matplotlib:
  ``pip install -e '.[compare]'``; without it the PNG is skipped and said so).

Runs of one algorithm must share their evaluation points (the same config but the seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from etils import epath

from archer_jax import algorithms, provenance
from experiments import report

RETURN = "eval/return_mean"


class CompareError(ValueError):
    """A run folder that cannot be read; the message names it."""


def read_curve(workdir: str | Path) -> dict[str, Any]:
    """One run: its algorithm, seed, and the evaluations of its last stage as
    (env_steps, updates = iteration, return). A local or gs:// folder."""
    workdir = epath.Path(workdir)
    try:
        info = provenance.read_run_info(workdir)
    except ValueError as e:
        raise CompareError(str(e)) from e
    if not info:
        raise CompareError(f"{workdir}: no run_info.jsonl; pass the --workdir of an experiments.run run")
    config = info[-1].get("config", {})
    algorithm = config.get("algorithm", "archer")
    if algorithm not in algorithms.ALGORITHMS:
        raise CompareError(f"{workdir}: unknown algorithm {algorithm!r}")
    stage = algorithms.ALGORITHMS[algorithm].stage_names[-1]
    path = workdir / "metrics.jsonl"
    if not path.exists():
        raise CompareError(f"{path}: no such file; has the run started?")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not JSON lines ({e})") from e
    evals = [r for r in rows if r.get("stage") == stage and RETURN in r]
    if not evals:
        raise CompareError(f"{path}: no evaluation of stage {stage!r} yet")
    seconds = sum(r.get("time/iteration_s", 0.0) for r in rows)
    final_eval = report.evaluation_path(workdir, stage, int(evals[-1]["iteration"]))
    return {"workdir": str(workdir), "algorithm": algorithm, "seed": config.get("seed"), "stage": stage,
            "final_eval": str(final_eval) if final_eval.exists() else None,
            "online": bool(config.get("archer")) and evals[-1].get("env_steps", 0) > 0,
            "env_steps": [int(r.get("env_steps", 0)) for r in evals],
            "iterations": [int(r["iteration"]) for r in evals],
            "returns": [float(r[RETURN]) for r in evals], "minutes": seconds / 60}


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    x = np.asarray(values, float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def summarize(curves: Sequence[dict[str, Any]], threshold: float | None) -> list[dict[str, Any]]:
    """Per algorithm (in the order first seen): the table's numbers."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for curve in curves:
        groups.setdefault(curve["algorithm"], []).append(curve)
    out = []
    for algorithm, runs in groups.items():
        points = {tuple(r["iterations"]) for r in runs}
        if len(points) > 1:
            raise CompareError(f"{algorithm}: its runs evaluate at different iterations "
                               f"({[r['workdir'] for r in runs]}); compare runs of one config")
        returns = np.array([r["returns"] for r in runs])  # [seeds, evaluations]
        steps = np.array([r["env_steps"] for r in runs]).mean(axis=0)
        mean_curve = returns.mean(axis=0)
        reached = None
        if threshold is not None and runs[0]["online"]:
            hits = np.flatnonzero(mean_curve >= threshold)
            reached = int(steps[hits[0]]) if len(hits) else None
        start, final = returns[:, 0], returns[:, -1]
        out.append({
            "algorithm": algorithm, "runs": len(runs), "seeds": [r["seed"] for r in runs],
            "online": runs[0]["online"], "start": _mean_se(start), "final": _mean_se(final),
            "best": _mean_se(returns.max(axis=1)),
            # One evaluation (an offline run evaluated only at its end) has no gain.
            "gain": _mean_se(final - start) if returns.shape[1] > 1 else None,
            "every_run_gained": bool(np.all(final > start)) if returns.shape[1] > 1 else None,
            "steps_to_threshold": reached,
            "final_env_steps": int(steps[-1]), "minutes": float(np.mean([r["minutes"] for r in runs])),
            "curve": {"env_steps": steps.tolist(), "iterations": runs[0]["iterations"],
                      "mean": mean_curve.tolist(), "min": returns.min(axis=0).tolist(),
                      "max": returns.max(axis=0).tolist()},
        })
    return out


def paired(curves: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each later algorithm's final evaluation minus the first algorithm's, per seed both
    ran, on the episodes both evaluations played: {"reference", "rows": [{"algorithm",
    "seeds": {seed: [mean, paired SE, episodes] or None}}], "notes": [why a cell is
    missing]}."""
    order = list(dict.fromkeys(c["algorithm"] for c in curves))
    by_seed = {(c["algorithm"], c["seed"]): c for c in curves}
    rows, notes = [], []
    for algorithm in order[1:]:
        cells = {}
        for curve in (c for c in curves if c["algorithm"] == algorithm):
            seed, base = curve["seed"], by_seed.get((order[0], curve["seed"]))
            cells[str(seed)] = None
            if base is None:
                continue
            if curve["final_eval"] is None or base["final_eval"] is None:
                notes.append(f"seed {seed} of {algorithm}: no evaluation file in "
                             f"{curve['workdir'] if curve['final_eval'] is None else base['workdir']}")
                continue
            try:
                cells[str(seed)] = list(report.paired_gain(report.read_evaluation(epath.Path(base["final_eval"])),
                                                           report.read_evaluation(epath.Path(curve["final_eval"]))))
            except report.ReportError as e:
                notes.append(f"seed {seed} of {algorithm}: {e}")
        rows.append({"algorithm": algorithm, "seeds": cells})
    return {"reference": order[0], "rows": rows, "notes": notes}


def paired_markdown(pairs: dict[str, Any]) -> str:
    if not pairs["rows"]:
        return ""
    seeds = sorted({s for r in pairs["rows"] for s in r["seeds"]}, key=lambda s: (len(s), s))
    lines = ["", f"Final evaluation minus `{pairs['reference']}`'s, seed by seed, on the episodes both played "
             "(mean difference of the returns, its paired SE, episodes):", "",
             "| algorithm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|" + "---|" * len(seeds)]
    for r in pairs["rows"]:
        cells = [r["seeds"].get(s) for s in seeds]
        lines.append(f"| `{r['algorithm']}` | " + " | ".join(
            "-" if c is None else f"{c[0]:+.2f} ({c[1]:.2f}, {c[2]})" for c in cells) + " |")
    if pairs["notes"]:
        lines += [""] + [f"- {n}" for n in pairs["notes"]]
    return "\n".join(lines) + "\n"


def _cell(pair: tuple[float, float], sign: bool = False) -> str:
    mean, se = pair
    return f"{mean:+.2f} ± {se:.2f}" if sign else f"{mean:.2f} ± {se:.2f}"


def markdown(groups: Sequence[dict[str, Any]], threshold: float | None, command: str) -> str:
    lines = [f"Made by `{command}`. Each cell: mean over seeds ± its standard error across seeds.", "",
             f"| algorithm | runs | start | final | best | gain | every run gained | env steps to "
             f"{'the threshold' if threshold is None else threshold} "
             "| env steps in all | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        reach = g["steps_to_threshold"]
        lines.append(
            f"| `{g['algorithm']}` | {g['runs']} | {_cell(g['start'])} | {_cell(g['final'])} | {_cell(g['best'])} "
            f"| {'-' if g['gain'] is None else _cell(g['gain'], sign=True)} "
            f"| {'-' if g['every_run_gained'] is None else 'yes' if g['every_run_gained'] else 'no'} "
            f"| {reach if reach is not None else '-'} | {g['final_env_steps']} | {g['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(groups: Sequence[dict[str, Any]], path: Path) -> bool:
    """The PNG; False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    online = [g for g in groups if g["online"]]
    offline = [g for g in groups if not g["online"]]
    panels = [(gs, x, label) for gs, x, label in ((online, "env_steps", "environment steps"),
                                                  (offline, "iterations", "updates (iterations)")) if gs]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (gs, x, label) in zip(axes[0], panels):
        for g in gs:
            xs = g["curve"][x]
            ax.plot(xs, g["curve"]["mean"], marker="o", label=f"{g['algorithm']} ({g['runs']} seeds)")
            ax.fill_between(xs, g["curve"]["min"], g["curve"]["max"], alpha=0.2)
        ax.set_xlabel(label)
        ax.set_ylabel("greedy evaluation return")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", help="run folders (--workdir of experiments.run)")
    parser.add_argument("--out", default="compare", help="output path prefix: OUT.md, OUT.json, OUT.png")
    parser.add_argument("--threshold", type=float, default=None,
                        help="the return whose first crossing by the mean curve is reported, in env steps")
    args = parser.parse_args(argv)
    try:
        curves = [read_curve(w) for w in args.workdirs]
        groups = summarize(curves, args.threshold)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m experiments.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    pairs = paired(curves)
    table = markdown(groups, args.threshold, command) + paired_markdown(pairs)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "threshold": args.threshold,
                                                    "algorithms": groups, "paired": pairs}, indent=1) + "\n")
    drawn = plot(groups, out.with_suffix(".png"))
    print(table)
    print(f"wrote {out.with_suffix('.md')}, {out.with_suffix('.json')}"
          + (f", {out.with_suffix('.png')}" if drawn else " (no PNG: pip install matplotlib)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
