"""Did ArCHer beat its BC start, by how much, and is that beyond the evaluation noise?

    python -m experiments.report /tmp/gc_0 /tmp/gc_1 /tmp/gc_2 [--write] [--allow-mixed-commits]

Reads run folders (the ``--workdir`` of ``experiments.run``), groups them by config
(from ``run_info.jsonl``; runs that differ only in ``config.seed`` form one group) and
prints, per group, one row per run:

- the BC start: the greedy evaluation ArCHer starts from (``archer`` row 0 of
  ``metrics.jsonl``), return and success rate;
- the final greedy evaluation (the last ``archer`` row with ``eval/return_mean``);
- the gain (final - start) and its PAIRED standard error: both evaluations play the
  same games (the same episode seeds, from ``evaluations/<stage>_<iteration:05d>.json``),
  so SE = std(final_i - start_i, ddof=1) / sqrt(n) over those seeds;
- the standard error of one evaluation, std(returns, ddof=1) / sqrt(n): the root mean
  square of the start's and the final's (from ``eval/return_std`` when a run has no
  ``evaluations/`` folder, and then no paired SE).

Per group: the mean gain over the runs, the mean gain divided by the SE of one
evaluation (the mean of the runs' SEs), whether every run gained, and the return of the
task's informative scripted questioner on the same evaluation games (knowledge-base
oracle only).

Runs made at different commits are refused (each is named) unless
``--allow-mixed-commits``. An invocation that wrote no metrics row (one refused for a
changed config) counts for nothing: not its config, commit or command.

``--write`` regenerates ``docs/results.md`` (every number with the commands that made the
runs, the commit and the package versions) and the README's results table between
``<!-- results:begin -->`` and ``<!-- results:end -->``; it also refuses runs without
``run_info.jsonl``, without a git commit, and unfinished runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from etils import epath

from archer_jax import provenance, tasks
from archer_jax.envs import base

ROOT = Path(__file__).resolve().parent.parent  # the checkout --write rewrites by default
RESULTS_DOC = Path("docs") / "results.md"
README = Path("README.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
EVALUATIONS_DIR = "evaluations"
STAGE = "archer"
RETURN, SUCCESS, RETURN_STD = "eval/return_mean", "eval/success_rate", "eval/return_std"
_FIELDS = {"stage": str, "iteration": int, "seeds": list, "returns": list, "successes": list, "hidden": list}


class ReportError(Exception):
    """A run folder or file the report cannot use; the message names it."""


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The per-episode results of one greedy evaluation (evaluations/<stage>_<iteration:05d>.json)."""

    path: str
    stage: str
    iteration: int
    seeds: tuple[int, ...]
    returns: np.ndarray  # [n] float
    successes: np.ndarray  # [n] bool
    hidden: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def se(self) -> float:
        """Standard error of the mean return: std(ddof=1) / sqrt(n)."""
        return _se(self.returns)


def _se(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def evaluation_path(workdir: epath.Path, stage: str, iteration: int) -> epath.Path:
    return workdir / EVALUATIONS_DIR / f"{stage}_{iteration:05d}.json"


def read_evaluation(path: epath.Path) -> Evaluation:
    """Reads and checks one evaluation file; a wrong field raises ReportError naming it."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: cannot read ({e})") from e
    if not isinstance(record, Mapping):
        raise ReportError(f"{path}: expected a JSON object with fields {sorted(_FIELDS)}")
    for field, kind in _FIELDS.items():
        if not isinstance(record.get(field), kind):
            raise ReportError(f"{path}: field {field!r} must be a {kind.__name__}, got {record.get(field)!r:.60}")
    n = len(record["seeds"])
    for field in ("returns", "successes", "hidden"):
        if len(record[field]) != n:
            raise ReportError(f"{path}: {len(record[field])} {field} but {n} seeds")
    if len(set(record["seeds"])) != n:
        raise ReportError(f"{path}: repeated seeds")
    return Evaluation(str(path), record["stage"], record["iteration"], tuple(int(s) for s in record["seeds"]),
                      np.asarray(record["returns"], np.float64), np.asarray(record["successes"], bool),
                      tuple(record["hidden"]))


def paired_gain(start: Evaluation, final: Evaluation) -> tuple[float, float, int]:
    """(mean of final_i - start_i, its SE std(ddof=1) / sqrt(n), n) over the episode seeds
    both evaluations played; the same seed must hide the same item in both."""
    index = {seed: i for i, seed in enumerate(start.seeds)}
    pairs = [(index[seed], j) for j, seed in enumerate(final.seeds) if seed in index]
    if not pairs:
        raise ReportError(f"{start.path} and {final.path} share no episode seeds: nothing to pair")
    i, j = (np.array(side) for side in zip(*pairs))
    differ = [start.seeds[a] for a, b in zip(i, j) if start.hidden[a] != final.hidden[b]]
    if differ:
        raise ReportError(f"{start.path} and {final.path} hide different items for seeds {differ[:5]}: "
                          "the games changed between the two evaluations")
    diff = final.returns[j] - start.returns[i]
    return float(diff.mean()), _se(diff), len(diff)


@dataclasses.dataclass
class RunResult:
    """One run folder's start, final evaluation and gain."""

    workdir: epath.Path
    # run_info.jsonl entries of the invocations that wrote metrics, oldest first ([] for
    # runs made before run_info.jsonl existed)
    info: list[dict[str, Any]]
    start: dict[str, float]  # {RETURN, SUCCESS, RETURN_STD?} of archer row 0
    final: dict[str, float]  # the same for the last archer row with an evaluation
    final_iteration: int
    start_eval: Evaluation | None
    final_eval: Evaluation | None
    paired_se: float | None  # SE of the gain over paired episodes; None without evaluation files
    paired_n: int | None
    minutes: float | None  # wall time summed over the invocations (from run_info and metrics times)

    @property
    def config(self) -> dict[str, Any] | None:
        return self.info[-1]["config"] if self.info else None

    @property
    def seed(self) -> int | None:
        return self.config.get("seed") if self.config else None

    @property
    def iterations(self) -> int | None:
        """The ArCHer iterations the run's config asks for (its final row's iteration)."""
        return self.config.get("archer", {}).get("iterations") if self.config else None

    @property
    def finished(self) -> bool | None:
        return None if self.iterations is None else self.final_iteration >= self.iterations

    @property
    def gain(self) -> float:
        return self.final[RETURN] - self.start[RETURN]

    @property
    def eval_se(self) -> float | None:
        """SE of one evaluation: the root mean square of the start's and the final's SE."""
        ses = [self._one_se(e, row) for e, row in ((self.start_eval, self.start), (self.final_eval, self.final))]
        if any(s is None for s in ses):
            return None
        return math.sqrt((ses[0] ** 2 + ses[1] ** 2) / 2)

    def _one_se(self, evaluation: Evaluation | None, row: Mapping[str, float]) -> float | None:
        if evaluation is not None:
            return evaluation.se
        n = self.config.get("archer", {}).get("eval_size") if self.config else None
        if RETURN_STD not in row or not n or n < 2:
            return None
        return row[RETURN_STD] / math.sqrt(n - 1)  # eval/return_std is the ddof=0 std

    @property
    def commits(self) -> set[str | None]:
        return {(e.get("git") or {}).get("commit") for e in self.info} or {None}

    @property
    def dirty(self) -> bool:
        return any((e.get("git") or {}).get("dirty") for e in self.info)


def _metric_rows(workdir: epath.Path) -> list[dict[str, Any]]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        raise ReportError(f"{path}: no such file; pass the --workdir of a finished run")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ReportError(f"{path}:{number}: not a JSON line ({e})") from e
    return rows


def _check_against_metrics(evaluation: Evaluation, row: Mapping[str, float], stage: str, iteration: int) -> None:
    if evaluation.stage != stage or evaluation.iteration != iteration:
        raise ReportError(f"{evaluation.path}: says stage {evaluation.stage!r} iteration {evaluation.iteration}, "
                          f"its name says {stage!r} iteration {iteration}")
    mean = float(evaluation.returns.mean())
    if abs(mean - row[RETURN]) > 1e-4 * max(1.0, abs(row[RETURN])):
        raise ReportError(f"{evaluation.path}: mean return {mean:.4f} but metrics.jsonl says {row[RETURN]:.4f} at "
                          f"{stage} iteration {iteration}; the file is stale (left by an earlier run in this folder?)")


def _invocation_seconds(info: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[float | None]:
    """Per invocation: seconds from its start to its last metrics row before the next
    invocation started; None for one that wrote no row (refused, or killed before its
    first) or when the times are missing."""
    try:
        starts = [datetime.datetime.fromisoformat(e["time"]).timestamp() for e in info]
    except (KeyError, TypeError, ValueError):
        return [None] * len(info)
    times = sorted(row["time"] for row in rows if isinstance(row.get("time"), (int, float)))
    spans: list[float | None] = []
    for k, begin in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else math.inf
        inside = [t for t in times if begin <= t < stop]
        spans.append(inside[-1] - begin if inside else None)
    return spans


def read_run(workdir: str | Path) -> RunResult:
    """The start, the final evaluation and the gain of one run folder (local or gs://)."""
    workdir = epath.Path(workdir)
    rows = _metric_rows(workdir)
    evals = {row["iteration"]: row for row in rows if row.get("stage") == STAGE and RETURN in row}
    if 0 not in evals or len(evals) < 2:
        raise ReportError(f"{workdir / 'metrics.jsonl'}: needs ArCHer's iteration-0 evaluation and a later one; "
                          "is the run finished?")
    last = max(evals)
    try:
        info = provenance.read_run_info(workdir)
    except ValueError as e:
        raise ReportError(str(e)) from e
    # Invocations that wrote no metrics row (e.g. refused for a changed config) made none
    # of these numbers: their config, commit and command do not count.
    seconds = _invocation_seconds(info, rows)
    if any(t is not None for t in seconds):
        info = [e for e, t in zip(info, seconds) if t is not None]
    minutes = sum(t for t in seconds if t is not None) / 60 if any(t is not None for t in seconds) else None
    loaded = []
    for iteration in (0, last):
        path = evaluation_path(workdir, STAGE, iteration)
        evaluation = read_evaluation(path) if path.exists() else None
        if evaluation is not None:
            _check_against_metrics(evaluation, evals[iteration], STAGE, iteration)
        loaded.append(evaluation)
    start_eval, final_eval = loaded
    paired_se = paired_n = None
    if start_eval is not None and final_eval is not None:
        _, paired_se, paired_n = paired_gain(start_eval, final_eval)
    keys = (RETURN, SUCCESS, RETURN_STD)
    return RunResult(workdir, info, {k: evals[0][k] for k in keys if k in evals[0]},
                     {k: evals[last][k] for k in keys if k in evals[last]}, last, start_eval, final_eval,
                     paired_se, paired_n, minutes)


# ----------------------------------------------------------------------------- groups


def command(argv: Sequence[str]) -> str:
    """The shell command of a recorded argv (``python -m experiments.run ...`` for the entry point)."""
    argv = list(argv)
    if argv and Path(argv[0]).name == "run.py" and Path(argv[0]).parent.name == "experiments":
        argv = ["python", "-m", "experiments.run", *argv[1:]]
    return shlex.join(argv)


def _label(run: RunResult) -> str:
    """``<config file>:<variant>`` and the overrides of the run's last command, but the seed."""
    if not run.info:
        return "runs without run_info.jsonl"
    argv = run.info[-1].get("argv", [])
    spec = next((a[len("--config="):] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        config = run.config or {}
        spec = f"{config.get('task')}.py:{config.get('variant')}"
    else:
        path, sep, variant = spec.partition(":")
        spec = f"{Path(path).name}{sep}{variant}"
    overrides = [a for a in argv if a.startswith("--config.") and not a.startswith("--config.seed=")]
    return " ".join([spec, *overrides])


def _group_key(run: RunResult) -> str:
    if run.config is None:
        return ""
    return json.dumps({k: v for k, v in run.config.items() if k != "seed"}, sort_keys=True)


@dataclasses.dataclass
class Group:
    """Runs whose configs differ at most in ``config.seed``."""

    label: str
    runs: list[RunResult]
    informative: dict[str, Any] | None = None  # the informative questioner on the evaluation games

    @property
    def config(self) -> dict[str, Any] | None:
        return self.runs[0].config

    @property
    def mean_gain(self) -> float:
        return float(np.mean([r.gain for r in self.runs]))

    @property
    def eval_se(self) -> float | None:
        """SE of one evaluation: the mean over runs of each run's (RMS of its two)."""
        ses = [r.eval_se for r in self.runs]
        return None if any(s is None or math.isnan(s) for s in ses) else float(np.mean(ses))

    @property
    def gain_over_se(self) -> float | None:
        se = self.eval_se
        return None if not se else self.mean_gain / se

    @property
    def deterministic(self) -> bool:
        """Every evaluation of every run scored all its games alike (SE 0): the task and the
        greedy policy are deterministic from one start (Detective), the gain has no noise."""
        return self.eval_se == 0.0

    @property
    def every_run_gained(self) -> bool:
        return all(r.gain > 0 for r in self.runs)

    def mean(self, which: str, key: str) -> float:
        return float(np.mean([getattr(r, which)[key] for r in self.runs]))


def group_runs(runs: Sequence[RunResult]) -> list[Group]:
    """Runs grouped by config minus the seed, in the order first seen; each group sorted by seed."""
    groups: dict[str, Group] = {}
    for run in runs:
        key = _group_key(run)
        if key not in groups:
            groups[key] = Group(_label(run), [])
        groups[key].runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, str(r.workdir)))
    return list(groups.values())


def check_commits(runs: Sequence[RunResult]) -> None:
    """Raises ReportError naming each run and its commit(s) unless every run (every
    invocation of it) was made at one and the same known commit."""
    commits = set().union(*(r.commits for r in runs))
    if len(commits) > 1:
        lines = [f"  {r.workdir}: {', '.join(sorted(str(c)[:12] for c in r.commits))}" for r in runs]
        raise ReportError("the runs were made at different commits (None: no run_info.jsonl or no git); "
                          "rerun them at one commit or pass --allow-mixed-commits:\n" + "\n".join(lines))


def informative_on(config: Mapping[str, Any], seeds: Sequence[int],
                   hidden: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The task's informative scripted questioner on the games of these episode seeds
    (the knowledge-base oracle answers), or None when the runs used another oracle or
    the task has no such player. ``hidden``: what the evaluation says each seed hid; a
    mismatch (the game changed since the runs) raises ReportError."""
    if config.get("env", {}).get("oracle", "kb") != "kb":
        return None
    task = tasks.get(config["task"])
    if task.informative is None:
        return None
    returns, successes, items = base.play_seeds(task, config["env"], task.players[task.informative], seeds)
    if hidden is not None and list(hidden) != items:
        raise ReportError("the evaluation's hidden items differ from what the same seeds hide at this commit: "
                          "the task changed since these runs; report them at their own commit")
    return {"episodes": len(seeds), "return_mean": float(returns.mean()), "se": _se(returns),
            "success_rate": float(successes.mean())}


def _evaluation_seeds(group: Group) -> tuple[list[int], list[str] | None]:
    """The episode seeds of the group's evaluations (from a file, else as the trainer draws them)."""
    for run in group.runs:
        if run.start_eval is not None:
            return list(run.start_eval.seeds), list(run.start_eval.hidden)
    from archer_jax import rollout  # heavy (jax); only for runs without evaluation files

    return [rollout.EVAL_SEED_BASE + i for i in range(group.config["archer"]["eval_size"])], None


def add_informative(groups: Sequence[Group]) -> None:
    for group in groups:
        if group.config is not None:
            seeds, hidden = _evaluation_seeds(group)
            group.informative = informative_on(group.config, seeds, hidden)


# ----------------------------------------------------------------------------- text


def _num(x: float | None, sign: bool = False, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _eval_cell(row: Mapping[str, float]) -> str:
    return f"{row[RETURN]:.2f} ({row[SUCCESS]:.1%})" if SUCCESS in row else f"{row[RETURN]:.2f}"


def _gain_over_se_cell(group: Group) -> str:
    return "exact (SE 0)" if group.deterministic else _num(group.gain_over_se)


def group_summary(group: Group) -> str:
    gained = "yes" if group.every_run_gained else "no"
    text = (f"Mean gain {_num(group.mean_gain, sign=True)} over {len(group.runs)} run(s); SE of one evaluation "
            f"{_num(group.eval_se)}; mean gain / SE {_num(group.gain_over_se)}; every run gained: {gained}.")
    if group.deterministic:
        text += (" Every game of every evaluation scored the same: greedy play from the task's one start is "
                 "deterministic, so each evaluation is exact and its gain has no evaluation noise.")
    return text


def informative_line(group: Group) -> str:
    info = group.informative
    if info is None:
        return "Informative scripted questioner: not computed (the runs did not use the knowledge-base oracle)."
    return (f"Informative scripted questioner on the same {info['episodes']} evaluation games: "
            f"{info['return_mean']:.2f} (SE {_num(info['se'])}), success {info['success_rate']:.1%}.")


def group_table(group: Group) -> str:
    lines = ["| seed | BC start: return (success) | final iteration | final: return (success) | gain "
             "| paired SE of the gain (episodes) | SE of one evaluation | minutes | run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in group.runs:
        paired = f"{_num(r.paired_se)} ({r.paired_n})" if r.paired_se is not None else "n/a"
        final_it = str(r.final_iteration) + ("" if r.finished in (True, None) else f" of {r.iterations}")
        seed = "?" if r.seed is None else str(r.seed)
        minutes = _num(r.minutes, digits=1)
        lines.append(f"| {seed} | {_eval_cell(r.start)} | {final_it} | {_eval_cell(r.final)} | {_num(r.gain, True)} "
                     f"| {paired} | {_num(r.eval_se)} | {minutes} | `{r.workdir}` |")
    return "\n".join(lines)


def group_section(group: Group, *, commands: bool) -> str:
    parts = [f"## `{group.label}`", ""]
    if commands:
        invocations = [command(e["argv"]) for r in group.runs for e in r.info if e.get("argv")]
        parts += ["The commands that made these runs, in order (a repeated command resumed its run):", "",
                  "```bash", *invocations, "```", ""]
    parts += [group_table(group), "", group_summary(group), "", informative_line(group), ""]
    return "\n".join(parts)


def _versions_text(runs: Sequence[RunResult]) -> list[str]:
    seen = {json.dumps(e.get("packages"), sort_keys=True) for r in runs for e in r.info}
    if not seen:
        return ["unknown."]
    if len(seen) == 1:
        packages = json.loads(seen.pop()) or {}
        return [", ".join(f"{k} {v}" for k, v in packages.items()) + "."]
    lines = ["Package versions differ between runs:"]
    for r in runs:
        for e in r.info:
            packages = e.get("packages") or {}
            lines.append(f"- `{r.workdir}` ({e.get('time')}): " + ", ".join(f"{k} {v}" for k, v in packages.items()))
    return lines


def _machine_text(runs: Sequence[RunResult]) -> str:
    machines = set()
    for r in runs:
        for e in r.info:
            m = e.get("machine") or {}
            devices, cpu = m.get("devices") or {}, m.get("cpu")
            # The CPU's SIMD features (recorded since 9d8143d) decide XLA's CPU code.
            cpu = f" ({cpu.get('model')}: {' '.join(cpu.get('simd', [])) or 'no SIMD flags'})" if cpu else ""
            machines.add(f"{m.get('platform')}, {m.get('cpus')} CPUs{cpu}, "
                         f"{devices.get('count', '?')} x {devices.get('kind', devices.get('platform', '?'))}")
    return "; ".join(sorted(machines))


def _commit_text(runs: Sequence[RunResult]) -> str:
    commits = sorted(str(c) for c in set().union(*(r.commits for r in runs)))
    text = ", ".join(f"`{c}`" for c in commits)
    dirty = [r for r in runs if r.dirty]
    if dirty:
        changed = sorted({p for r in dirty for e in r.info for p in ((e.get("git") or {}).get("changed") or [])})
        text += f" with uncommitted changes to {', '.join(changed) or 'tracked files'} (in {len(dirty)} run(s))"
    return text


def results_markdown(groups: Sequence[Group], report_command: str) -> str:
    runs = [r for g in groups for r in g.runs]
    pythons = sorted({str(e.get("python")) for r in runs for e in r.info})
    parts = [
        "# Results", "",
        "Generated by `experiments/report.py`; do not edit by hand. Regenerate with:", "",
        "```bash", report_command, "```", "",
        f"- Commit of every run: {_commit_text(runs)}.",
        f"- Machine: {_machine_text(runs)}.",
        f"- Python {', '.join(pythons)}; " + "\n  ".join(_versions_text(runs)),
        "",
        "Each row is one run. *BC start* is the greedy evaluation ArCHer starts from (archer row 0 of "
        "`metrics.jsonl`); *final* is its last greedy evaluation. Both play the same games (the same episode "
        "seeds), so the gain's standard error is paired: std(final_i - start_i, ddof=1) / sqrt(n) over the "
        "episodes. *SE of one evaluation* is std(returns, ddof=1) / sqrt(n), the root mean square of the "
        "start's and the final's; the group's is the mean over its runs. *Minutes*: wall time from each "
        "invocation's start to its last metrics row, summed over invocations.",
        "",
    ]
    parts += [group_section(g, commands=True) for g in groups]
    return "\n".join(parts).rstrip() + "\n"


def readme_table(groups: Sequence[Group]) -> str:
    runs = [r for g in groups for r in g.runs]
    lines = ["| demo | runs | BC start: return (success) | final | mean gain | gain / SE of one evaluation "
             "| every run gained | informative questioner |",
             "|---|---|---|---|---|---|---|---|"]
    for g in groups:
        info = g.informative
        scripted = f"{info['return_mean']:.2f} ({info['success_rate']:.1%})" if info else "n/a"
        lines.append(f"| `{g.label}` | {len(g.runs)} | {g.mean('start', RETURN):.2f} ({g.mean('start', SUCCESS):.1%}) "
                     f"| {g.mean('final', RETURN):.2f} ({g.mean('final', SUCCESS):.1%}) | {_num(g.mean_gain, True)} "
                     f"| {_gain_over_se_cell(g)} | {'yes' if g.every_run_gained else 'no'} | {scripted} |")
    commits = ", ".join(f"`{str(c)[:12]}`" for c in sorted(str(c) for c in set().union(*(r.commits for r in runs))))
    lines += ["", f"Runs made at commit {commits}; per-run numbers, paired standard errors, the commands and the "
                  f"package versions: [docs/results.md](docs/results.md)."]
    return "\n".join(lines)


def replace_between_markers(text: str, block: str, where: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(f"{where}: needs exactly one {BEGIN} followed by one {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def write_results(groups: Sequence[Group], root: Path, report_command: str) -> list[Path]:
    """Rewrites root/docs/results.md and the README's marked table; returns the paths."""
    runs = [r for g in groups for r in g.runs]
    problems = [f"  {r.workdir}: no run_info.jsonl (made before provenance was recorded)" for r in runs if not r.info]
    problems += [f"  {r.workdir}: unfinished (last evaluation at iteration {r.final_iteration} of {r.iterations})"
                 for r in runs if r.info and r.finished is False]
    problems += [f"  {r.workdir}: no git commit recorded (made outside a git checkout)"
                 for r in runs if r.info and None in r.commits]
    if problems:
        raise ReportError("--write publishes only finished runs that record their command:\n" + "\n".join(problems))
    readme = root / README
    text = replace_between_markers(readme.read_text(), readme_table(groups), str(readme))
    doc = root / RESULTS_DOC
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(results_markdown(groups, report_command))
    readme.write_text(text)
    return [doc, readme]


# ----------------------------------------------------------------------------- main


def report(run_dirs: Sequence[str | Path], *, allow_mixed_commits: bool = False) -> list[Group]:
    runs = [read_run(d) for d in run_dirs]
    if not allow_mixed_commits:
        check_commits(runs)
    groups = group_runs(runs)
    add_informative(groups)
    return groups


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="--workdir of a run of experiments.run")
    parser.add_argument("--write", action="store_true", help="regenerate docs/results.md and the README's table")
    parser.add_argument("--allow-mixed-commits", action="store_true", help="report runs made at different commits")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout --write rewrites (default: this one)")
    args = parser.parse_args(argv)
    try:
        groups = report(args.run_dirs, allow_mixed_commits=args.allow_mixed_commits)
        for group in groups:
            print(group_section(group, commands=False))
        if args.write:
            report_command = shlex.join(["python", "-m", "experiments.report", "--write",
                                         *(["--allow-mixed-commits"] if args.allow_mixed_commits else []),
                                         *map(str, args.run_dirs)])
            for path in write_results(groups, args.root, report_command):
                print(f"wrote {path}")
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
