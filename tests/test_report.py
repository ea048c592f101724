"""experiments.report: per-seed gains over the BC start with paired standard errors,
grouping by config, the commit check, and the regenerated results files.

The two runs of tests/fixtures/report (made by make_report_fixtures.py) play the same
4 games at the start and the end:
  seed 0: start -10 -4 -6 -8 (mean -7.0), final -5 -4 -3 -8 (mean -5.0): gain +2.0;
          differences 5 0 3 0: sample variance 18/3 = 6, paired SE sqrt(6)/2;
          SE of the start sqrt(20/3)/2, of the final sqrt(14/3)/2, their RMS sqrt(17/12).
  seed 1: start -6 -6 -10 -2 (mean -6.0), final -6 -5 -9 -2 (mean -5.5): gain +0.5;
          differences 0 1 1 0: variance 1/3, paired SE sqrt(1/3)/2;
          SE of the start sqrt(32/3)/2, of the final sqrt(25/3)/2, their RMS sqrt(57/24).
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from archer_jax import tasks
from archer_jax.envs import base
from experiments import report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
SE_0, SE_1 = math.sqrt(17 / 12), math.sqrt(57 / 24)


@pytest.fixture
def runs(tmp_path):
    """Copies of the two fixture runs (tests may change them)."""
    for name in ("gc_0", "gc_1"):
        shutil.copytree(FIXTURES / name, tmp_path / name)
    return [tmp_path / "gc_0", tmp_path / "gc_1"]


def _edit_jsonl(path, edit):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(edit(row) or row) + "\n" for row in rows))


def test_gains_and_standard_errors_by_hand(runs):
    r0, r1 = (report.read_run(d) for d in runs)
    assert (r0.seed, r0.final_iteration, r0.finished) == (0, 10, True)
    assert r0.start[report.RETURN] == -7.0 and r0.start[report.SUCCESS] == 0.75
    assert r0.gain == pytest.approx(2.0)
    assert r0.paired_se == pytest.approx(math.sqrt(6) / 2) and r0.paired_n == 4
    assert r0.start_eval.se == pytest.approx(math.sqrt(20 / 3) / 2)
    assert r0.eval_se == pytest.approx(SE_0)
    assert r1.gain == pytest.approx(0.5)
    assert r1.paired_se == pytest.approx(math.sqrt(1 / 3) / 2)
    assert r1.eval_se == pytest.approx(SE_1)
    assert r0.minutes == pytest.approx(10.0)  # started at 00:00, last metrics row at 00:10


def test_group_summary_by_hand(runs):
    (group,) = report.group_runs([report.read_run(d) for d in reversed(runs)])
    assert [r.seed for r in group.runs] == [0, 1]  # sorted by seed
    assert group.label == "guess_city.py:demo"
    assert group.mean_gain == pytest.approx(1.25)
    assert group.eval_se == pytest.approx((SE_0 + SE_1) / 2)
    assert group.gain_over_se == pytest.approx(1.25 / ((SE_0 + SE_1) / 2))
    assert group.every_run_gained
    text = report.group_section(group, commands=False)
    assert "| 0 | -7.00 (75.0%) | 10 | -5.00 (100.0%) | +2.00 | 1.22 (4) | 1.19 | 10.0 |" in text
    assert "Mean gain +1.25 over 2 run(s)" in text


def test_paired_se_pairs_episodes_by_seed(runs):
    """The final evaluation listing the same games in another order pairs the same way."""
    path = runs[0] / "evaluations" / "archer_00010.json"
    record = json.loads(path.read_text())
    for field in ("seeds", "returns", "successes", "hidden"):
        record[field] = record[field][::-1]
    path.write_text(json.dumps(record))
    assert report.read_run(runs[0]).paired_se == pytest.approx(math.sqrt(6) / 2)


def test_resumed_and_refused_invocations(runs):
    """Invocations at 00:00 (rows at 00:02 and 00:03), 00:04 (refused: no row before the
    next one; another config and commit) and 00:05 (resumed: rows at 00:06 and 00:10):
    3 + 5 minutes of work; the refused one counts for nothing."""
    path = runs[0] / "run_info.jsonl"
    (first,) = [json.loads(line) for line in path.read_text().splitlines()]
    refused = {**first, "time": "2026-01-01T00:04:00+00:00", "git": {"commit": "f" * 40},
               "config": {**first["config"], "archer": {**first["config"]["archer"], "iterations": 99}}}
    resumed = {**first, "time": "2026-01-01T00:05:00+00:00"}
    path.write_text("".join(json.dumps(e) + "\n" for e in (first, refused, resumed)))
    run = report.read_run(runs[0])
    assert run.minutes == pytest.approx(8.0)
    assert run.info == [first, resumed] and run.finished
    (group,) = report.report(runs)  # no mixed commits, one group
    assert report.group_section(group, commands=True).count("--config.seed=0 --workdir=/tmp/gc_0") == 2


def test_runs_group_by_config_but_seed(runs, tmp_path):
    other = tmp_path / "gc_long"
    shutil.copytree(runs[0], other)
    _edit_jsonl(other / "run_info.jsonl", lambda e: e["config"]["archer"].update(eval_every=5)
                or e["argv"].append("--config.archer.eval_every=5"))
    groups = report.group_runs([report.read_run(d) for d in (*runs, other)])
    assert [g.label for g in groups] == ["guess_city.py:demo", "guess_city.py:demo --config.archer.eval_every=5"]
    assert [len(g.runs) for g in groups] == [2, 1]


def test_mixed_commits_are_refused_by_name(runs):
    _edit_jsonl(runs[1] / "run_info.jsonl", lambda e: e["git"].update(commit="feedbeef" * 5))
    with pytest.raises(report.ReportError, match=r"different commits(.|\n)*gc_1: feedbeeffeed"):
        report.report(runs)
    assert len(report.report(runs, allow_mixed_commits=True)) == 1


def test_a_stale_or_malformed_evaluation_is_named(runs):
    path = runs[0] / "evaluations" / "archer_00010.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "returns": [-9.0] * 4}))
    with pytest.raises(report.ReportError, match="archer_00010.json: mean return -9.0000 but metrics.jsonl says -5"):
        report.read_run(runs[0])
    path.write_text(json.dumps({**record, "successes": [True]}))
    with pytest.raises(report.ReportError, match="archer_00010.json: 1 successes but 4 seeds"):
        report.read_run(runs[0])
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "hidden"}))
    with pytest.raises(report.ReportError, match="archer_00010.json: field 'hidden' must be a list"):
        report.read_run(runs[0])


def test_runs_without_evaluation_files_or_run_info(runs):
    """Older runs: the SE of one evaluation comes from eval/return_std (ddof 0) and the
    config's eval_size; no paired SE; no run_info.jsonl still reports, unless --write."""
    shutil.rmtree(runs[0] / "evaluations")
    r0 = report.read_run(runs[0])
    assert r0.paired_se is None and r0.gain == pytest.approx(2.0)
    assert r0.eval_se == pytest.approx(SE_0)
    (runs[1] / "run_info.jsonl").unlink()
    r1 = report.read_run(runs[1])
    assert r1.seed is None and r1.minutes is None and r1.eval_se == pytest.approx(SE_1)
    assert [g.label for g in report.group_runs([r0, r1])] == ["guess_city.py:demo", "runs without run_info.jsonl"]
    with pytest.raises(report.ReportError, match="gc_1: no run_info.jsonl"):
        report.write_results(report.group_runs([r1]), runs[1], "cmd")


def test_an_unfinished_run_is_named(tmp_path, runs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(report.ReportError, match="empty/metrics.jsonl: no such file"):
        report.read_run(tmp_path / "empty")
    _edit_jsonl(runs[0] / "run_info.jsonl", lambda e: e["config"]["archer"].update(iterations=20))
    run = report.read_run(runs[0])
    assert run.finished is False
    with pytest.raises(report.ReportError, match=r"gc_0: unfinished \(last evaluation at iteration 10 of 20\)"):
        report.write_results(report.group_runs([run]), tmp_path, "cmd")


def test_informative_questioner_plays_the_evaluation_games(runs):
    (group,) = report.report(runs)
    task, env = tasks.get("guess_city"), {"max_turns": 10, "num_items": 20}
    seeds = list(group.runs[0].start_eval.seeds)
    returns, successes, hidden = base.play_seeds(task, env, task.players["informative"], seeds)
    assert hidden == list(group.runs[0].start_eval.hidden)  # the same games
    assert group.informative == {"episodes": 4, "return_mean": pytest.approx(returns.mean()),
                                 "se": pytest.approx(np.std(returns, ddof=1) / 2),
                                 "success_rate": pytest.approx(successes.mean())}
    assert successes.all() and (returns > -10).all()  # it wins every game before the cap
    # Deterministic: the same seeds give the same games and choices.
    again = base.play_seeds(task, env, task.players["informative"], seeds)
    np.testing.assert_array_equal(again[0], returns)
    # Another oracle than the knowledge base: not comparable, not computed.
    assert report.informative_on({**group.config, "env": {**group.config["env"], "oracle": "lm"}}, seeds) is None


def test_write_regenerates_results_doc_and_readme_table(runs, tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "README.md").write_text(f"# x\n\n## Results\n\n{report.BEGIN}\nold table\n{report.END}\n\n## After\n")
    report.main([*map(str, runs), "--write", f"--root={root}"])
    readme = (root / "README.md").read_text()
    assert "old table" not in readme and readme.endswith(f"{report.END}\n\n## After\n")
    assert ("| `guess_city.py:demo` | 2 | -6.50 (75.0%) | -5.25 (100.0%) | +1.25 | "
            f"{1.25 / ((SE_0 + SE_1) / 2):.2f} | yes |") in readme
    assert "commit `0123456789ab`" in readme
    doc = (root / "docs" / "results.md").read_text()
    assert "python -m experiments.run --config=guess_city.py:demo --config.seed=1 --workdir=/tmp/gc_1" in doc
    assert f"python -m experiments.report --write {runs[0]} {runs[1]}" in doc
    assert "`0123456789abcdef0123456789abcdef01234567`" in doc
    assert "jax 0.10.2" in doc and "Python 3.11.7" in doc
    assert "Informative scripted questioner on the same 4 evaluation games" in doc
    # Rewriting from the same runs changes nothing.
    report.main([*map(str, runs), "--write", f"--root={root}"])
    assert (root / "README.md").read_text() == readme


def test_write_needs_the_readme_markers(runs, tmp_path, capsys):
    (tmp_path / "README.md").write_text("# no markers\n")
    with pytest.raises(SystemExit) as exit_info:
        report.main([*map(str, runs), "--write", f"--root={tmp_path}"])
    assert exit_info.value.code == 2
    assert "README.md: needs exactly one <!-- results:begin -->" in capsys.readouterr().err


def test_the_machine_line_names_the_cpu_where_the_run_recorded_it():
    from types import SimpleNamespace
    old = {"machine": {"platform": "Linux-x86_64", "cpus": 2, "devices": {"count": 1, "kind": "cpu"}}}
    new = {"machine": {"platform": "Linux-x86_64", "cpus": 2, "devices": {"count": 1, "kind": "cpu"},
                       "cpu": {"model": "Xeon", "simd": ["avx2", "avx512f"]}}}
    text = report._machine_text([SimpleNamespace(info=[old]), SimpleNamespace(info=[new])])
    assert text == "Linux-x86_64, 2 CPUs (Xeon: avx2 avx512f), 1 x cpu; Linux-x86_64, 2 CPUs, 1 x cpu"


def test_a_deterministic_evaluation_is_exact(runs):
    """Every game of every evaluation alike (Detective's greedy game from its one start):
    SE 0, no ratio to divide by, and the summary and the README table say the gain is exact."""
    for run, (start, final) in zip(runs, ((-7.0, -5.0), (-6.0, -5.5))):
        for name, value in (("archer_00000.json", start), ("archer_00010.json", final)):
            path = run / "evaluations" / name
            record = json.loads(path.read_text())
            path.write_text(json.dumps({**record, "returns": [value] * len(record["returns"])}))
    (group,) = report.group_runs([report.read_run(d) for d in runs])
    assert group.eval_se == 0.0 and group.gain_over_se is None and group.deterministic
    assert "each evaluation is exact" in report.group_summary(group)
    assert "| +1.25 | exact (SE 0) | yes |" in report.readme_table([group])
