"""The public PyTorch ArCHer and this project's benchmark at the same shapes, in one
invocation, one after the other on the same machine: the ratio per phase and for memory.

    python -m experiments.side_by_side --preset=tiny --ref_code=/src/ArCHer --ref_python=/venvs/ref/bin/python
    python -m experiments.side_by_side --preset=small --ref_code=/src/ArCHer --ref_python=... --json_out=small.json

The reference side is the harness ``../shared/bench/ref_archer_bench.py`` (``--ref_bench``;
its README says how to set up its venv and the ArCHer work tree, the folder that holds
``archer/``). It runs first; this project's ``experiments.benchmark_archer`` then runs at
the shapes the reference recorded (models, vocabulary, observation and new tokens, update
and rollout batch, repeats), without its whole-iteration, breakdown and environment parts
so that both processes do the same work and their peak memory compares like with like.
Ratios are reference / ours for time (above 1: ours is faster) and ours / reference for
memory (below 100%: ours holds less). Timings on a shared or noisy machine vary between
invocations: compare only the two sides of one invocation. The last stdout line is one
JSON object with both sides' results.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BENCH = ROOT.parent / "shared" / "bench" / "ref_archer_bench.py"

# Reference config field -> benchmark_archer flag.
SHAPE_FLAGS = {"actor_layers": "actor_layers", "actor_embd": "actor_width", "actor_heads": "actor_heads",
               "critic_layers": "critic_layers", "critic_hidden": "critic_width", "critic_heads": "critic_heads",
               "critic_intermediate": "critic_mlp", "vocab_size": "actor_vocab", "obs_tokens": "obs_len",
               "max_new_tokens": "new_tokens", "batch_size": "batch", "rollout_batch": "rollout_batch",
               "reps": "repeats"}

# (label, the reference's summary key, ours) for the phases both sides time.
PHASES = [("rollout generate (rollout batch)", "rollout_s", "generate_s"),
          ("critic step (incl. sampling a ~ pi)", "critic_update_s", "critic_step_s"),
          ("actor step (incl. sampling a ~ pi)", "actor_update_s", "actor_step_s")]


class SideBySideError(Exception):
    """A setup problem the user fixes (a path, a failed side); one message, no traceback."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["tiny", "small"], default="tiny", help="both sides' preset")
    p.add_argument("--ref_code", default=os.environ.get("ARCHER_REF"),
                   help="the ArCHer work tree (the folder that contains archer/); default $ARCHER_REF")
    p.add_argument("--ref_python", default=sys.executable,
                   help="the Python of the reference's venv (torch, transformers, accelerate)")
    p.add_argument("--ref_bench", default=str(DEFAULT_BENCH), help="the reference timing harness")
    p.add_argument("--ref_args", default="", help="extra flags for the harness, e.g. '--obs-tokens 150'")
    p.add_argument("--our_args", default="", help="extra flags for experiments.benchmark_archer")
    p.add_argument("--json_out", help="also write the final JSON here")
    return p.parse_args(argv)


def check_paths(args: argparse.Namespace) -> None:
    if not args.ref_code:
        raise SideBySideError("--ref_code is not set (nor $ARCHER_REF): give the ArCHer work tree, the folder "
                              "that contains archer/ (../shared/bench/README.md says how to make one)")
    if not (Path(args.ref_code) / "archer").is_dir():
        raise SideBySideError(f"--ref_code={args.ref_code} has no archer/ folder: give the ArCHer work tree "
                              "(../shared/bench/README.md says how to make one)")
    if not Path(args.ref_bench).is_file():
        raise SideBySideError(f"--ref_bench={args.ref_bench} does not exist: give the path of ref_archer_bench.py")
    if not Path(args.ref_python).is_file():
        raise SideBySideError(f"--ref_python={args.ref_python} does not exist: give the reference venv's python")


def last_json(stdout: str, what: str) -> dict[str, Any]:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise SideBySideError(f"{what} printed no JSON result")
    return json.loads(lines[-1])


def run_side(cmd: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    print(f"[side_by_side] {what}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SideBySideError(f"{what} failed (exit {proc.returncode}); the end of its stderr:\n{tail}")
    return last_json(proc.stdout, what)


def our_flags(ref: dict[str, Any]) -> list[str]:
    """benchmark_archer flags that reproduce the reference run's recorded shapes."""
    cfg = ref["config"]
    flags = [f"--preset={ref['size']}"]
    flags += [f"--{ours}={cfg[field]}" for field, ours in SHAPE_FLAGS.items()]
    return flags + ["--skip_iteration", "--skip_breakdown", "--skip_env"]


def compare(ref: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Per phase: both times and reference / ours; memory: both peaks and ours / reference."""
    summary = ref["summary"]
    rows = [{"phase": label, "reference_s": summary[rk], "ours_s": ours[ok], "speedup": summary[rk] / ours[ok]}
            for label, rk, ok in PHASES]
    ref_mem = summary["peak_rss_mib"] * 2**20
    our_mem = max(ours["peak_memory_bytes"].values())
    return {"phases": rows,
            "memory": {"reference_bytes": ref_mem, "ours_bytes": our_mem, "ours_over_reference": our_mem / ref_mem,
                       "ours_kind": ours["memory_kind"],
                       # Python, JAX's runtime and the package, before any state or program
                       "ours_after_start_bytes": ours["peak_memory_bytes"].get("after_start"),
                       # each part's RSS when its timed calls start and at their highest
                       "ours_by_part": ours.get("host_rss_by_part", {})}}


def print_table(table: dict[str, Any], ref: dict[str, Any], ours: dict[str, Any]) -> None:
    v = ref.get("versions", {})
    print(f"side by side, preset {ref['size']}: reference ArCHer {v.get('archer_ref_commit') or '?'} "
          f"(torch {v.get('torch', '?')}, {ref.get('host', {}).get('torch_threads', '?')} threads) | "
          f"archer_jax (jax {ours['jax_version']}, {ours['device_count']} x {ours['device_kind']})")
    print(f"  {'phase':40s} {'reference':>11s} {'ours':>11s} {'ref / ours':>11s}")
    for row in table["phases"]:
        print(f"  {row['phase']:40s} {row['reference_s']:10.4f}s {row['ours_s']:10.4f}s {row['speedup']:10.2f}x")
    m = table["memory"]
    print(f"  {'peak memory (RSS)':40s} {m['reference_bytes'] / 2**30:8.2f}GiB {m['ours_bytes'] / 2**30:8.2f}GiB "
          f"{m['ours_over_reference']:10.0%} (ours / ref)")
    if m["ours_after_start_bytes"] is not None:
        start = m["ours_after_start_bytes"] / 2**30
        print(f"  {'  of which ours at start-up (no state)':40s} {'':>11s} {start:8.2f}GiB")
    for part, rss in m["ours_by_part"].items():
        print(f"  {'  ours, ' + part.replace('_', ' ') + ': start -> highest':40s} {'':>11s} "
              f"{rss['start'] / 2**30:8.2f}GiB -> {rss['peak'] / 2**30:.2f}GiB")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        check_paths(args)
        ref = run_side([args.ref_python, args.ref_bench, "--size", args.preset, *shlex.split(args.ref_args)],
                       "the reference harness", env={**os.environ, "ARCHER_REF": str(args.ref_code)})
        ours = run_side([sys.executable, "-m", "experiments.benchmark_archer", *our_flags(ref),
                         *shlex.split(args.our_args)], "experiments.benchmark_archer", cwd=ROOT)
    except SideBySideError as e:
        raise SystemExit(f"side_by_side: {e}") from None
    table = compare(ref, ours)
    print_table(table, ref, ours)
    result = {"comparison": table, "reference": ref, "ours": ours}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
