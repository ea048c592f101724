"""A run killed (SIGKILL, in either stage) or preempted (SIGTERM), then resumed with the same
command, ends exactly where an uninterrupted run ends: the same train state (every leaf of
params and optimizer states), the same replay buffer (rows, pointer, size), the same progress,
metrics rows (all but timing) and transcripts.

Kill points are deterministic, not timing races. The test plants a full named pipe (FIFO)
where the run will write one evaluation's transcript: the run opens it and blocks writing, at a
known point of a known iteration (after the iteration's update, in its evaluation, before its
metrics row, checkpoint and SIGTERM check), until the test drains it.
The test sees the run holding the pipe open in /proc/<pid>/fd (Linux), then

- SIGKILL: kills it there once the previous checkpoint is complete on disk, so what is on disk at
  the kill is the same every time;
- SIGTERM: signals it there and drains the pipe, so the run finishes exactly that iteration,
  writes its final checkpoint and exits.

Each interruption's effect on disk (latest checkpoint, metrics rows) is asserted, so a change
that stops the pipes from blocking fails loudly instead of killing at a random point.

The subprocesses share the session's persistent XLA compilation cache (conftest.py), so each
resume skips most compiling; cached executables are the same programs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archer_jax import trainer
import runs
from runs import Pipe, final, logged, steps, without_timing

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="kill points read /proc/<pid>/fd (Linux)")

ROOT = Path(__file__).parent.parent
S = trainer.STAGE_STRIDE
BC_ITERATIONS, ARCHER_ITERATIONS, EVAL_EVERY, CHECKPOINT_EVERY = 10, 10, 2, 5
# The smoke config, longer, so each stage has a middle; evaluations (hence transcripts) on
# even iterations and checkpoints every 5 never coincide with the preemption points below.
OVERRIDES = (f"--config.bc.iterations={BC_ITERATIONS}", f"--config.archer.iterations={ARCHER_ITERATIONS}",
             f"--config.archer.eval_every={EVAL_EVERY}", f"--config.checkpoint_every={CHECKPOINT_EVERY}")
TIMEOUT = 600.0


def _command(workdir: Path, overrides: tuple[str, ...] = OVERRIDES) -> list[str]:
    return [sys.executable, "-m", "experiments.run", "--config=guess_city.py:smoke", f"--workdir={workdir}",
            *overrides]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The session's environment: its persistent XLA compilation cache (conftest.py) is
    shared with every other smoke run of the suite."""
    return dict(os.environ)


def _launch(workdir: Path, env: dict[str, str], overrides: tuple[str, ...] = OVERRIDES) -> subprocess.Popen:
    # stderr (progress bars) goes to a file beside the workdir: a pipe nobody reads could fill and block the run.
    log = (workdir.parent / f"{workdir.name}.stderr").open("a")
    proc = subprocess.Popen(_command(workdir, overrides), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.log = Path(log.name)
    log.close()
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    return proc.log.read_text()[-3000:]


def _finish(proc: subprocess.Popen) -> None:
    proc.wait(timeout=TIMEOUT)
    assert proc.returncode == 0, _stderr(proc)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    _finish(_launch(workdir, env))
    return workdir


# ----------------------------------------------------------------------------- kill points


def _wait(proc: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}:\n{_stderr(proc)}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _sigkill_at(workdir: Path, env: dict[str, str], stage: str, iteration: int, checkpoint: int,
                overrides: tuple[str, ...] = OVERRIDES) -> None:
    """kill -9 while the run is held in ``stage`` iteration ``iteration``'s evaluation (its
    update done, not logged), once checkpoint step ``checkpoint`` is complete on disk."""
    pipe = Pipe(workdir, stage, iteration)
    proc = _launch(workdir, env, overrides)
    _wait(proc, lambda: pipe.reached(proc) and checkpoint in steps(workdir),
          f"{stage} iteration {iteration} with checkpoint {checkpoint} on disk")
    proc.kill()
    proc.wait(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    pipe.remove()


def _sigterm_at(workdir: Path, env: dict[str, str], stage: str, iteration: int) -> None:
    """SIGTERM while the run is held in ``stage`` iteration ``iteration``'s evaluation: the run
    finishes that iteration, writes a final checkpoint and exits."""
    pipe = Pipe(workdir, stage, iteration)
    proc = _launch(workdir, env)
    _wait(proc, lambda: pipe.reached(proc), f"{stage} iteration {iteration}")
    proc.send_signal(signal.SIGTERM)
    pipe.release()
    _finish(proc)


def test_killed_and_preempted_runs_resume_to_the_uninterrupted_result(uninterrupted, env, tmp_path):
    # SIGKILL mid-BC: blocked at BC iteration 6 (its update done); checkpoint 5 is the latest.
    _sigkill_at(tmp_path, env, "bc", 6, checkpoint=5)
    assert steps(tmp_path)[-1] == 5 and logged(tmp_path, "bc") == [1, 2, 3, 4, 5]
    assert not logged(tmp_path, "archer")

    # SIGKILL mid-ArCHer: resumes from 5 (iteration 6 of BC again), BC finishes; blocked at ArCHer iteration 6 (its update done), after
    # rows 0-5; the latest checkpoint (S + 5) holds iterations 1-5, so iteration 6 is redone.
    _sigkill_at(tmp_path, env, "archer", 6, checkpoint=S + 5)
    assert steps(tmp_path)[-1] == S + 5 and logged(tmp_path, "archer") == list(range(6))
    assert logged(tmp_path, "bc") == list(range(1, BC_ITERATIONS + 1))

    # SIGTERM mid-ArCHer: resumes at 6, stops after iteration 8 with a final checkpoint.
    _sigterm_at(tmp_path, env, "archer", 8)
    assert steps(tmp_path)[-1] == S + 8 and logged(tmp_path, "archer") == list(range(9))

    # The same command once more finishes the run.
    _finish(_launch(tmp_path, env))

    assert final(tmp_path)[0] == S + ARCHER_ITERATIONS
    _assert_same_run(tmp_path, uninterrupted)


def _assert_same_run(got_dir: Path, want_dir: Path, *, uses_buffer: bool = True) -> None:
    """The same final checkpoint (state, buffer, progress), metrics rows and transcripts."""
    want, got = final(want_dir), final(got_dir)
    assert got[0] == want[0]
    runs.assert_trees_equal(got[1], want[1], "train state")
    runs.assert_trees_equal(got[2], want[2], "replay buffer")
    assert (int(got[2]["size"]) > 0) == uses_buffer  # PPO learns on-policy: its replay buffer stays empty
    assert got[3] == want[3]  # progress: stage, iteration, env steps, finished (PPO: its KL coefficient)
    assert [without_timing(r) for r in runs.rows(got_dir)] == [without_timing(r) for r in runs.rows(want_dir)]
    transcripts = sorted(p.name for p in (want_dir / "transcripts").iterdir())
    assert sorted(p.name for p in (got_dir / "transcripts").iterdir()) == transcripts
    for name in transcripts:
        assert (got_dir / "transcripts" / name).read_text() == (want_dir / "transcripts" / name).read_text(), name


def test_the_uninterrupted_run_compiles_only_in_its_first_iterations(uninterrupted):
    """time/compiles counts (the first evaluation and ArCHer's first iteration compile) and is
    0 in every other row, evaluating (even) or not (odd)."""
    metrics = runs.rows(uninterrupted)
    bc = [r for r in metrics if r["stage"] == "bc"]
    archer = [r for r in metrics if r["stage"] == "archer"]
    assert [r["iteration"] for r in bc] == list(range(1, BC_ITERATIONS + 1))
    assert [r["iteration"] for r in archer] == list(range(ARCHER_ITERATIONS + 1))
    assert ["eval/return_mean" in r for r in archer] == [i % EVAL_EVERY == 0 for i in range(ARCHER_ITERATIONS + 1)]
    # The BC phase is compiled before its first row; its first evaluation (row 2) compiles greedy decoding.
    assert [r["time/compiles"] > 0 for r in bc] == [i == EVAL_EVERY for i in range(1, BC_ITERATIONS + 1)]
    # ArCHer's row 0 evaluates with BC's compiled greedy decoding; its first iteration compiles.
    assert archer[0]["time/compiles"] == 0 and archer[1]["time/compiles"] > 0
    assert [r["time/compiles"] for r in archer[2:]] == [0] * (ARCHER_ITERATIONS - 1)


@pytest.mark.parametrize("algorithm, extra", [("ppo", ("--config.ppo.kl_target=0.5",))])
def test_other_online_algorithms_killed_resume_to_the_uninterrupted_result(algorithm, extra, env, tmp_path):
    """The same for an online stage whose state is not ArCHer's: PPO's value model, both
    optimizer states and its adaptive KL coefficient (kept in the progress; PPO learns
    on-policy, its buffer stays empty) survive a kill -9 between checkpoints. (Filtered
    BC's state is an actor, its optimizer state and the replay buffer, which ArCHer's
    test above already carries through every kill.)"""
    overrides = (f"--config.algorithm={algorithm}", *extra, "--config.bc.iterations=2", "--config.archer.iterations=6",
                 f"--config.archer.eval_every={EVAL_EVERY}", "--config.checkpoint_every=3")
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    _finish(_launch(uninterrupted, env, overrides))
    _sigkill_at(interrupted, env, algorithm, 4, checkpoint=S + 3, overrides=overrides)
    assert steps(interrupted)[-1] == S + 3 and logged(interrupted, algorithm) == [0, 1, 2, 3]
    _finish(_launch(interrupted, env, overrides))
    assert final(interrupted)[0] == S + 6
    _assert_same_run(interrupted, uninterrupted, uses_buffer=algorithm != "ppo")
    if algorithm == "ppo":
        kl_coefs = [r["ppo/kl_coef"] for r in runs.rows(uninterrupted) if r["stage"] == "ppo" and r["iteration"] > 0]
        assert len(set(kl_coefs)) == len(kl_coefs)  # it adapted every iteration
