"""Every benchmark runs, as a user runs it (its own process), at its smallest preset with
the fewest repeats, so an interface change cannot break one silently. The timings are
not checked (performance targets live in the benchmarks, never in tests); that each
phase was timed and reported is."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # the last line is the JSON result


def _positive(result: dict, keys: list[str]) -> None:
    for key in keys:
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, (key, result[key])


def test_benchmark_archer_tiny_runs_every_phase_on_a_two_device_mesh():
    r = _run("experiments.benchmark_archer", "--preset=tiny", "--repeats=1", "--max_turns=2", "--steps_per_phase=1",
             "--rollout_batch=8", "--rollout_size=8", "--capacity=64", "--mesh=2,1,1")
    assert r["preset"] == "tiny" and r["device_count"] == 2
    assert r["settings"]["max_turns"] == 2 and r["settings"]["critic_steps"] == 1
    _positive(r, ["generate_s", "critic_phase_s", "actor_phase_s", "iteration_s"])
    assert r["recompiles_in_timed_calls"] == 0  # every timed call reuses its compiled program


def test_benchmark_models_tiny_times_forward_and_generate():
    r = _run("experiments.benchmark_models", "--preset=tiny", "--repeats=1", "--batch=2", "--prompt_len=16",
             "--new_tokens=4")
    assert r["preset"] == "tiny" and (r["batch"], r["prompt_len"], r["new_tokens"]) == (2, 16, 4)
    _positive(r, ["forward_s", "generate_s", "forward_tokens_per_s", "decode_tokens_per_s"])
