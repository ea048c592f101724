"""experiments.fit_contrast: its read-out by hand, the labels against games replayed by
hand, the fit on a smoke run, and the command."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from archer_jax import critic_probe, tasks, trainer
from experiments import fit_contrast, probe_critic

ROOT = Path(__file__).parent.parent


def _contrast(labels, expert, state, groups):
    n = len(labels)
    return fit_contrast.Contrast(observations=[""] * n, actions=[""] * n, labels=np.asarray(labels, np.float32),
                                 state=np.asarray(state), expert=np.asarray(expert, bool), group=np.asarray(groups),
                                 env_seeds=[0] * len(groups), prefixes=[[]] * len(groups), mismatches=0, env_steps=0)


def test_read_out_by_hand():
    data = _contrast(labels=[1.0, 0.5, 0.5, 0.2, 0.8], expert=[1, 0, 0, 1, 0], state=[0, 0, 0, 1, 1], groups=[0, 1])
    q = np.array([0.9, 0.2, 0.4, 0.5, 0.1])
    got = fit_contrast.read_out(q, data, np.arange(5))
    # Pairs with different labels: (1.0, 0.5) twice, ranked right; (0.2, 0.8), ranked wrong.
    assert got["pairs"] == 3 and got["pair_accuracy"] == pytest.approx(2 / 3)
    # The expert's candidate minus the others' mean: Q 0.9 - 0.3 and 0.5 - 0.1; labels 1.0 - 0.5 and 0.2 - 0.8.
    assert got["expert_gap"] == pytest.approx(0.5) and got["true_expert_gap"] == pytest.approx(-0.05)
    assert got["expert_sign"] == 0.5 and got["expert_states"] == 2
    assert got["mse"] == pytest.approx(np.mean((q - data.labels) ** 2))
    demeaned_q = [0.4, -0.3, -0.1, 0.2, -0.2]
    demeaned_labels = [1 / 3, -1 / 6, -1 / 6, -0.3, 0.3]
    assert got["within_corr"] == pytest.approx(critic_probe.pearson(np.array(demeaned_q), np.array(demeaned_labels)))
    # A subset of whole states reads those states only.
    one = fit_contrast.read_out(q[3:], data, np.arange(3, 5))
    assert one["pairs"] == 1 and one["pair_accuracy"] == 0.0 and one["expert_sign"] == 0.0


def test_labels_are_the_returns_of_the_replayed_games(archer_smoke_run):
    run, _ = archer_smoke_run
    c = run.config
    task = tasks.get(c.task)
    data = fit_contrast.build(task, c, episodes=6, seed=0, batch=c.archer.rollout_batch)
    assert data.mismatches == 0 and data.env_steps > 0
    states = data.group.size
    assert states == len(data.env_seeds) == len(data.prefixes) and sorted(set(data.state)) == list(range(states))
    for s in range(states):  # every state kept has something to rank, and at most one expert row
        rows = data.state == s
        assert np.ptp(data.labels[rows]) > 0 and data.expert[rows].sum() <= 1
        assert len(set(np.asarray(data.actions)[rows])) == rows.sum()
    # Two rows by hand: replay the prefix, say the candidate, continue with the informative
    # player (Guess My City's asks by a fixed rule, so its Generator does not matter).
    expert = task.players[task.informative]
    for r in (0, len(data.labels) - 1):
        s = data.state[r]
        env = task.make_env(c.env, 1)
        obs = env.reset([data.env_seeds[s]])
        for action in data.prefixes[s]:
            obs, _, _ = env.step([action])
        assert obs[0] == data.observations[r]
        ret, discount, action = 0.0, 1.0, data.actions[r]
        while not env.dones[0]:
            obs, reward, _ = env.step([action])
            ret += discount * float(reward[0])
            discount *= c.archer.gamma
            action = expert(obs[0], np.random.default_rng(0))
        assert data.labels[r] == pytest.approx(ret, abs=1e-5)


def test_fit_learns_the_labels_and_leaves_the_run_alone(archer_smoke_run):
    run, _ = archer_smoke_run
    c = run.config
    before = jax.device_get(run.state.critic_params)
    data = fit_contrast.build(tasks.get(c.task), c, episodes=8, seed=0, batch=c.archer.rollout_batch)
    out = fit_contrast.fit(run, data, steps=30, read_every=15, batch_size=8, lr=3e-3, holdout=0.3, seed=0,
                           obs_len=c.tokens.obs_len)
    assert [r["step"] for r in out["reads"]] == [0, 15, 30]
    assert out["reads"][-1]["train_mse"] < out["reads"][0]["train_mse"], out["reads"]
    # Held out by hidden item: no item on both sides.
    items = np.unique(data.group)
    held = np.random.default_rng(0).permutation(items)[:round(0.3 * items.size)]
    assert out["held_out_states"] == int(np.isin(data.group, held).sum()) > 0
    jax.tree.map(np.testing.assert_array_equal, before, jax.device_get(run.state.critic_params))
    with pytest.raises(probe_critic.ProbeError, match="leaves no states"):
        fit_contrast.fit(run, data, steps=1, read_every=1, batch_size=8, lr=1e-3, holdout=0.01, seed=0,
                         obs_len=c.tokens.obs_len)


def test_command_writes_its_read_outs_and_refuses_bad_flags(archer_smoke_run):
    _, workdir = archer_smoke_run

    def fit(*args):
        return subprocess.run([sys.executable, "-m", "experiments.fit_contrast", "--config=guess_city.py:smoke",
                               "--config.bc.iterations=0", f"--workdir={workdir}", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)

    out = fit("--episodes=4", "--steps=4", "--read_every=2", "--batch_size=8", "--holdout=0.5")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["step"] for r in summary["reads"]] == [0, 2, 4] and summary["replay_mismatches"] == 0
    step = trainer.STAGE_STRIDE + 2
    path = workdir / "probe" / f"critic_contrast_{step}.json"
    assert summary["file"] == str(path) and summary["checkpoint_step"] == step
    assert json.loads(path.read_text())["reads"] == summary["reads"]
    bad = fit("--episodes=0")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: --episodes=0: must be >= 1"
