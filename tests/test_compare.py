"""experiments.compare on run folders written as the trainer writes them (run_info.jsonl,
metrics.jsonl): the table's numbers by hand, the JSON, the PNG, and refusals."""

import json

import pytest

from experiments import compare


def _run(folder, algorithm, seed, evaluations, *, stage=None, online=True):
    """A run folder: run_info.jsonl and the metrics rows of its evaluations
    [(iteration, env_steps, return)], each row taking 30 seconds."""
    folder.mkdir(parents=True)
    config = {"algorithm": algorithm, "seed": seed, "archer": {"iterations": 10}}
    (folder / "run_info.jsonl").write_text(json.dumps({"config": config, "argv": []}) + "\n")
    stage = stage or {"archer": "archer", "filtered_bc": "filtered_bc", "bc": "bc"}[algorithm]
    rows = [{"stage": "bc", "iteration": 1, "env_steps": 0, "time/iteration_s": 30.0}]
    rows += [{"stage": stage, "iteration": k, "env_steps": steps if online else 0, "eval/return_mean": ret,
              "time/iteration_s": 30.0} for k, steps, ret in evaluations]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_table_json_and_plot_by_hand(tmp_path):
    dirs = [
        _run(tmp_path / "a0", "archer", 0, [(0, 0, -10.0), (5, 100, -8.0), (10, 200, -6.0)]),
        _run(tmp_path / "a1", "archer", 1, [(0, 0, -12.0), (5, 110, -9.0), (10, 210, -8.0)]),
        _run(tmp_path / "f0", "filtered_bc", 0, [(0, 0, -10.0), (5, 100, -10.0), (10, 200, -9.0)]),
        _run(tmp_path / "b0", "bc", 0, [(1, 0, -11.0), (2, 0, -10.5)], online=False),
    ]
    out = tmp_path / "out" / "cmp"
    assert compare.main([str(d) for d in dirs] + ["--out", str(out), "--threshold", "-8.5"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    archer, filtered, bc = result["algorithms"]
    assert (archer["algorithm"], archer["runs"], archer["seeds"]) == ("archer", 2, [0, 1])
    # start -11 +- 1 (SE of two seeds: std 1.414 / sqrt 2), final -7 +- 1, gain +4 +- 0 (each gained 4)
    assert archer["start"] == pytest.approx([-11.0, 1.0]) and archer["final"] == pytest.approx([-7.0, 1.0])
    assert archer["gain"] == pytest.approx([4.0, 0.0]) and archer["every_run_gained"]
    # the mean curve (-11, -8.5, -7) first reaches -8.5 at the mean env steps of evaluation 2: 105
    assert archer["steps_to_threshold"] == 105 and archer["final_env_steps"] == 205
    assert archer["curve"]["min"] == [-12.0, -9.0, -8.0] and archer["minutes"] == pytest.approx(2.0)
    assert filtered["steps_to_threshold"] is None and filtered["gain"] == pytest.approx([1.0, 0.0])
    assert not bc["online"] and bc["steps_to_threshold"] is None and bc["start"][0] == -11.0
    assert bc["gain"] == pytest.approx([0.5, 0.0])
    table = out.with_suffix(".md").read_text()
    row = "| `archer` | 2 | -11.00 ± 1.00 | -7.00 ± 1.00 | -7.00 ± 1.00 | +4.00 ± 0.00 | yes | 105 | 205 |"
    assert row in table
    assert "| `filtered_bc` | 1 |" in table and "| - |" in table
    png = out.with_suffix(".png")
    pytest.importorskip("matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_evaluated_once_has_no_gain(tmp_path):
    run = _run(tmp_path / "b", "bc", 0, [(8, 0, -5.5)], online=False)
    assert compare.main([str(run), "--out", str(tmp_path / "x")]) == 0
    group = json.loads((tmp_path / "x.json").read_text())["algorithms"][0]
    assert group["gain"] is None and group["every_run_gained"] is None
    assert "| `bc` | 1 | -5.50 ± 0.00 | -5.50 ± 0.00 | -5.50 ± 0.00 | - | - | - | 0 |" in (tmp_path / "x.md").read_text()


def test_unreadable_folders_are_one_error_line(tmp_path, capsys):
    assert compare.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no run_info.jsonl" in err and err.count("\n") == 1
    a = _run(tmp_path / "a", "archer", 0, [(0, 0, -1.0), (5, 10, -1.0)])
    b = _run(tmp_path / "b", "archer", 1, [(0, 0, -1.0), (4, 10, -1.0)])
    assert compare.main([str(a), str(b), "--out", str(tmp_path / "x")]) == 2
    assert "evaluate at different iterations" in capsys.readouterr().err


def _evaluation(run, stage, iteration, returns, hidden):
    folder = run / "evaluations"
    folder.mkdir(exist_ok=True)
    record = {"stage": stage, "iteration": iteration, "seeds": list(range(100, 100 + len(returns))),
              "returns": returns, "successes": [r > -5 for r in returns], "hidden": hidden}
    (folder / f"{stage}_{iteration:05d}.json").write_text(json.dumps(record))


def test_final_evaluations_paired_seed_by_seed_against_the_first_algorithm(tmp_path):
    a0 = _run(tmp_path / "a0", "archer", 0, [(0, 0, -10.0), (10, 200, -7.0)])
    a1 = _run(tmp_path / "a1", "archer", 1, [(0, 0, -10.0), (10, 200, -7.0)])
    f0 = _run(tmp_path / "f0", "filtered_bc", 0, [(0, 0, -10.0), (10, 200, -6.0)])
    f1 = _run(tmp_path / "f1", "filtered_bc", 1, [(0, 0, -10.0), (10, 200, -6.0)])
    f2 = _run(tmp_path / "f2", "filtered_bc", 2, [(0, 0, -10.0), (10, 200, -6.0)])
    _evaluation(a0, "archer", 10, [-8.0, -6.0, -7.0, -7.0], ["dog", "pen", "dog", "pen"])
    _evaluation(f0, "filtered_bc", 10, [-6.0, -5.0, -7.0, -6.0], ["dog", "pen", "dog", "pen"])
    _evaluation(a1, "archer", 10, [-7.0, -7.0], ["dog", "pen"])
    _evaluation(f1, "filtered_bc", 10, [-6.0, -6.0], ["pen", "pen"])  # seed 100 hides another item
    out = tmp_path / "x"
    assert compare.main([str(d) for d in (a0, a1, f0, f1, f2)] + ["--out", str(out)]) == 0
    pairs = json.loads(out.with_suffix(".json").read_text())["paired"]
    assert pairs["reference"] == "archer" and [r["algorithm"] for r in pairs["rows"]] == ["filtered_bc"]
    cells = pairs["rows"][0]["seeds"]
    # differences +2, +1, 0, +1: mean +1, std(ddof=1) 0.8165 / sqrt 4
    assert cells["0"] == pytest.approx([1.0, 0.40825, 4], rel=1e-4)
    assert cells["1"] is None and cells["2"] is None  # different games; no archer run of seed 2
    assert any("seed 1 of filtered_bc" in n and "different items" in n for n in pairs["notes"])
    table = out.with_suffix(".md").read_text()
    assert "| `filtered_bc` | +1.00 (0.41, 4) | - | - |" in table
