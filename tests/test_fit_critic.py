"""experiments.fit_critic: its read-out by hand, the regression on a smoke run's buffer,
and the command."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from archer_jax import trainer
from experiments import fit_critic, probe_critic

ROOT = Path(__file__).parent.parent


@pytest.fixture
def smoke_run(archer_smoke_run):
    return archer_smoke_run


def test_read_out_by_hand():
    q = np.array([0.0, -1.0, -2.0, -1.0])
    v = np.array([-1.0, -1.0, -1.0, -1.0])
    g = np.array([0.0, -2.0, -2.0, 0.0])
    best_end = np.array([True, False, False, True])
    got = fit_critic.read_out(q, v, g, best_end)
    # Q - G = [0, 1, 0, -1]: mse 0.5; var(G) = 1: explained 0.5.
    assert got["mse"] == pytest.approx(0.5) and got["explained_variance"] == pytest.approx(0.5)
    # Q - V = [1, 0, -1, 0] against G - V = [1, -1, -1, 1]: corr = 2 / sqrt(2 * 4).
    assert got["adv_corr"] == pytest.approx(2 / np.sqrt(8))
    assert got["best_end_adv"] == pytest.approx(0.5) and got["other_adv"] == pytest.approx(-0.5)
    assert got["best_end_rows"] == 2
    none = fit_critic.read_out(q, v, np.zeros(4), np.zeros(4, bool))
    assert none["explained_variance"] is None and none["best_end_adv"] is None


def test_best_ending_rows_are_the_terminal_rows_with_the_top_reward():
    reward = np.array([-1.0, 0.0, -1.0, -1.0, 0.0])
    done = np.array([False, True, True, False, False])  # row 4's reward 0 is not terminal
    np.testing.assert_array_equal(fit_critic.best_ending_rows(reward, done), [False, True, False, False, False])
    tie = np.array([False, False, True, True, False])  # both episodes end on -1
    assert not fit_critic.best_ending_rows(reward, tie).any()
    assert not fit_critic.best_ending_rows(reward, np.zeros(5, bool)).any()


def test_regression_fits_the_held_out_returns_and_leaves_the_run_alone(smoke_run):
    run, _ = smoke_run
    before = jax.device_get(run.state.critic_params)
    n = int(jax.device_get(run.buffer.size))
    out = fit_critic.fit(run, steps=40, read_every=20, batch_size=8, lr=3e-3, holdout=0.25, seed=0)
    assert out["rows"] == n and out["held_out"] == round(0.25 * n) // 8 * 8 >= 8  # whole batches of the rounded 25%
    assert [r["step"] for r in out["reads"]] == [0, 20, 40]
    first, last = out["reads"][0], out["reads"][-1]
    assert last["mse"] < first["mse"], out["reads"]
    assert first["train_loss"] is None and last["train_loss"] > 0 and last["seconds"] > 0
    # The best-ending rows read out are those of the held-out rows (the seeded permutation's
    # first `held_out`): none where every episode ends alike, as a random actor's mostly do.
    host = jax.device_get(run.buffer)
    best_end = fit_critic.best_ending_rows(host.reward[:n], host.done[:n])
    held_out = np.random.default_rng(0).permutation(n)[:out["held_out"]]
    assert last["best_end_rows"] == int(best_end[held_out].sum())
    assert (last["best_end_adv"] is None) == (last["best_end_rows"] == 0)
    # The run's own critic is untouched (the fit trains a copy).
    jax.tree.map(np.testing.assert_array_equal, before, jax.device_get(run.state.critic_params))
    with pytest.raises(probe_critic.ProbeError, match="too few"):
        fit_critic.fit(run, steps=1, read_every=1, batch_size=n, lr=1e-3, holdout=0.5, seed=0)


def test_command_writes_its_read_outs_and_refuses_bad_flags(smoke_run):
    _, workdir = smoke_run

    def fit(*args):
        return subprocess.run([sys.executable, "-m", "experiments.fit_critic", "--config=guess_city.py:smoke",
                               "--config.bc.iterations=0", f"--workdir={workdir}", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)

    out = fit("--steps=4", "--read_every=2", "--batch_size=8", "--holdout=0.25")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["step"] for r in summary["reads"]] == [0, 2, 4]
    step = trainer.STAGE_STRIDE + 2  # the smoke run's last checkpoint: after its 2 ArCHer iterations
    path = workdir / "probe" / f"critic_fit_{step}.json"
    assert summary["file"] == str(path) and summary["checkpoint_step"] == step and summary["stage"] == "archer"
    assert json.loads(path.read_text())["reads"] == summary["reads"]
    bad = fit("--holdout=1.5")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: --holdout=1.5: must be in (0, 1)"
