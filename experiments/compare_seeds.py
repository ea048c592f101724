"""Did ArCHer beat its BC start? Reads the metrics.jsonl of runs that differ only in
``--config.seed`` and compares, per seed, the greedy evaluation ArCHer started from
(archer row 0, the BC policy) with the last one (the final row).

    python -m experiments.compare_seeds /tmp/gc_s0 /tmp/gc_s1 /tmp/gc_s2

Prints one line per run, then one JSON object: the mean gain, its seed-to-seed spread
(sample standard deviation of the per-seed gains) and ``beats_spread``: every seed
gained and the mean gain exceeds the spread.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

KEYS = ("eval/return_mean", "eval/success_rate")


def greedy_start_and_end(workdir: Path) -> tuple[dict[str, float], dict[str, float], int]:
    """(row 0's eval, the last eval, its iteration) of the run's ArCHer stage."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"{path}: no such file; pass the --workdir of a finished run")
    evals = {}
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            if row.get("stage") == "archer" and KEYS[0] in row:
                evals[row["iteration"]] = {k: row[k] for k in KEYS}
    if 0 not in evals or len(evals) < 2:
        raise SystemExit(f"{path}: needs ArCHer's iteration-0 evaluation and a later one; is the run finished?")
    last = max(evals)
    return evals[0], evals[last], last


def compare(workdirs: list[Path]) -> dict[str, float | bool | int]:
    gains = []
    for workdir in workdirs:
        start, end, last = greedy_start_and_end(workdir)
        gain = end[KEYS[0]] - start[KEYS[0]]
        gains.append(gain)
        print(f"{workdir}: BC {start[KEYS[0]]:.2f} ({start[KEYS[1]]:.1%}) -> ArCHer iteration {last} "
              f"{end[KEYS[0]]:.2f} ({end[KEYS[1]]:.1%}): {gain:+.2f}")
    mean = statistics.fmean(gains)
    spread = statistics.stdev(gains) if len(gains) > 1 else float("nan")
    return {"seeds": len(gains), "gain_mean": mean, "gain_spread": spread,
            "beats_spread": bool(min(gains) > 0 and mean > spread)}


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    print(json.dumps(compare([Path(a) for a in argv[1:]])))


if __name__ == "__main__":
    main(sys.argv)
