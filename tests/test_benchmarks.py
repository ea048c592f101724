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

import pytest

import runs
from experiments import benchmark_archer, side_by_side

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=runs.with_devices(dict(os.environ), 2), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # the last line is the JSON result


def _positive(result: dict, keys: list[str]) -> None:
    for key in keys:
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, (key, result[key])


def test_benchmark_archer_tiny_runs_every_phase_on_a_two_device_mesh():
    """With rows of mixed lengths (grouped by length, --length_buckets, its phases and
    generate are tests/test_length_buckets.py's)."""
    r = _run("experiments.benchmark_archer", "--preset=tiny", "--repeats=1", "--max_turns=2", "--steps_per_phase=1",
             "--rollout_batch=8", "--rollout_size=8", "--capacity=64", "--mesh=2,1,1", "--matmul_n=256",
             "--lengths=mixed")
    assert r["preset"] == "tiny" and r["device_count"] == 2
    assert r["settings"]["max_turns"] == 2 and r["settings"]["critic_steps"] == 1
    assert r["settings"]["length_buckets"] == [] and r["settings"]["lengths"] == "mixed"
    _positive(r, ["generate_s", "critic_phase_s", "actor_phase_s", "iteration_s", "matmul_flops_per_s"])
    assert r["recompiles_in_timed_calls"] == 0  # every timed call reuses its compiled program
    # CPU seconds per wall second: positive, and at most the cores there are (a little slack
    # for the clocks' granularity).
    assert set(r["cores_busy"]) == {"generate", "critic_phase", "actor_phase", "iteration"}
    assert all(0 < busy <= r["cpu_count"] * 1.1 for busy in r["cores_busy"].values()), r["cores_busy"]
    memory = r["peak_memory_bytes"]
    assert 0 < memory["after_start"] <= memory["after_init"] <= memory["after_critic_phase"]
    # Each part's own peak (Linux: the high-water mark restarted per part), under the run's.
    if benchmark_archer.HOST_RSS.available:
        assert set(r["host_rss_by_part"]) == {"generate", "critic_phase", "actor_phase", "iteration"}
        for part in r["host_rss_by_part"].values():
            assert 0 < part["start"] <= part["peak"] <= max(memory.values())
    parts = r["flops"]
    assert set(parts) == {"generate", "generate_prefill", "generate_update_batch", "critic_phase", "actor_phase",
                          "iteration"}
    for part in parts.values():
        assert part["flops"] > 0 and part["limit_s"] > 0 and part["matmul_fraction"] > 0
    # generate = prefill + decode steps; an iteration = 2 turns of generate + both phases.
    assert parts["generate"]["flops"] > parts["generate_prefill"]["flops"]
    assert parts["iteration"]["flops"] == (2 * parts["generate"]["flops"] + parts["critic_phase"]["flops"]
                                           + parts["actor_phase"]["flops"])
    assert r["peak_flops_per_s"] is None and "mfu" not in parts["generate"]  # a CPU has no published peak

    # The side-by-side command's reading of this result beside a recorded reference run
    # (tests/fixtures/ref_archer_bench_tiny.json: ../shared/bench/ref_archer_bench.py
    # --size tiny, torch 2.13 on this project's 2-core machine).
    ref = json.loads((ROOT / "tests" / "fixtures" / "ref_archer_bench_tiny.json").read_text())
    table = side_by_side.compare(ref, r)
    assert [row["phase"].split()[0] for row in table["phases"]] == ["rollout", "critic", "actor"]
    critic = table["phases"][1]
    assert critic["reference_s"] == ref["summary"]["critic_update_s"] and critic["ours_s"] == r["critic_step_s"]
    assert critic["speedup"] == pytest.approx(critic["reference_s"] / critic["ours_s"])
    assert table["memory"]["ours_after_start_bytes"] == memory["after_start"]
    assert table["memory"]["ours_by_part"] == r["host_rss_by_part"]
    assert table["memory"]["ours_over_reference"] == pytest.approx(
        max(r["peak_memory_bytes"].values()) / (ref["summary"]["peak_rss_mib"] * 2**20))


def test_side_by_side_runs_ours_at_the_shapes_the_reference_recorded():
    ref = json.loads((ROOT / "tests" / "fixtures" / "ref_archer_bench_tiny.json").read_text())
    s = benchmark_archer.settings_from(benchmark_archer.parse_args(side_by_side.our_flags(ref)))
    cfg = ref["config"]
    assert (s.obs_len, s.new_tokens, s.batch, s.rollout_batch, s.repeats) == (
        cfg["obs_tokens"], cfg["max_new_tokens"], cfg["batch_size"], cfg["rollout_batch"], cfg["reps"])
    assert (s.actor["n_layer"], s.actor["n_embd"], s.actor["vocab_size"], s.critic_vocab) == (
        cfg["actor_layers"], cfg["actor_embd"], cfg["vocab_size"], cfg["vocab_size"])
    assert (s.critic["num_hidden_layers"], s.critic["hidden_size"], s.critic["intermediate_size"]) == (
        cfg["critic_layers"], cfg["critic_hidden"], cfg["critic_intermediate"])


@pytest.mark.parametrize("case,named", [
    ("no_code", "has no archer/ folder"),
    ("no_bench", "--ref_bench="),
    ("failing_ref", "the reference harness failed"),
])
def test_side_by_side_setup_errors_are_one_message(tmp_path, case, named):
    code = tmp_path / "ArCHer"
    (code / "archer").mkdir(parents=True)
    bench = ROOT.parent / "shared" / "bench" / "ref_archer_bench.py"
    args = ["--ref_code", str(code), "--ref_bench", str(bench)]
    if case == "no_code":
        args[1] = str(tmp_path)
    elif case == "no_bench":
        args[3] = str(tmp_path / "missing.py")
    elif not bench.is_file():
        pytest.skip("../shared/bench is not beside this checkout")
    # failing_ref: the real harness, run by this venv's python (no torch, or an empty
    # archer/): it exits non-zero and the command says so with the end of its stderr.
    proc = subprocess.run([sys.executable, "-m", "experiments.side_by_side", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and named in proc.stderr, proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr.split("its stderr:")[0]


def test_benchmark_models_tiny_times_forward_and_generate():
    r = _run("experiments.benchmark_models", "--preset=tiny", "--repeats=1", "--batch=2", "--prompt_len=16",
             "--new_tokens=4")
    assert r["preset"] == "tiny" and (r["batch"], r["prompt_len"], r["new_tokens"]) == (2, 16, 4)
    _positive(r, ["forward_s", "generate_s", "forward_tokens_per_s", "decode_tokens_per_s"])
