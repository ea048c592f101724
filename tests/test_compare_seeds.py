"""experiments.compare_seeds: per-seed gain of ArCHer's last greedy evaluation over its
BC start, and whether the mean gain beats the seed-to-seed spread."""

import json

import pytest

from experiments import compare_seeds


def _write_run(folder, start, end):
    folder.mkdir()
    rows = [{"stage": "bc", "iteration": 8, "eval/return_mean": -99.0, "eval/success_rate": 0.0},
            {"stage": "archer", "iteration": 0, "eval/return_mean": start, "eval/success_rate": 0.4},
            {"stage": "archer", "iteration": 5, "rollout/return_mean": -3.0},
            {"stage": "archer", "iteration": 10, "eval/return_mean": end, "eval/success_rate": 0.5}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_gains_and_spread_by_hand(tmp_path):
    runs = [_write_run(tmp_path / f"s{i}", -7.0, end) for i, end in enumerate((-6.0, -5.0, -5.5))]
    got = compare_seeds.compare(runs)
    assert got["gain_mean"] == pytest.approx(1.5)
    assert got["gain_spread"] == pytest.approx(0.5)  # stdev of (1.0, 2.0, 1.5)
    assert got["beats_spread"]
    runs.append(_write_run(tmp_path / "s3", -7.0, -7.5))  # one seed lost ground
    assert not compare_seeds.compare(runs)["beats_spread"]


def test_an_unfinished_run_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit, match="run/metrics.jsonl: no such file"):
        compare_seeds.compare([tmp_path / "run"])
