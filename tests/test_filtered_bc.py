"""Online filtered BC: which rows it keeps (hand-worked against numpy's quantile), that its
phase trains on those rows only, and the whole algorithm as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from archer_jax import replay, sharding, train_state
from archer_jax.algorithms import bc, filtered_bc
from archer_jax.models.gpt2 import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).parent.parent
OBS_LEN, ACTION_LEN, VOCAB = 4, 3, 20


def _rows(episode_return: list[float], turn: list[int], action: list[int] | None = None) -> replay.Transitions:
    n = len(turn)
    action = np.full(n, 7) if action is None else np.asarray(action)
    return replay.Transitions(
        obs=jnp.full((n, OBS_LEN), 3, jnp.int32), obs_mask=jnp.ones((n, OBS_LEN), bool),
        action=jnp.asarray(np.repeat(action[:, None], ACTION_LEN, 1), jnp.int32),
        action_mask=jnp.ones((n, ACTION_LEN), bool),
        next_obs=jnp.full((n, OBS_LEN), 4, jnp.int32), next_obs_mask=jnp.ones((n, OBS_LEN), bool),
        reward=-jnp.ones((n,), jnp.float32), done=jnp.zeros((n,), bool), mc_return=jnp.zeros((n,), jnp.float32),
        episode_return=jnp.asarray(episode_return, jnp.float32), turn=jnp.asarray(turn, jnp.int32))


# Four whole episodes (returns -3, 0, -1, -2 over 3, 1, 2, 3 turns) and the last two turns
# of an episode (return 0.5) whose first turn the ring overwrote: 11 rows in a buffer of 14,
# whose 3 empty rows hold return 0 (above any cutoff here), turn 0.
RETURNS = [-3, -3, -3, 0, -1, -1, -2, -2, -2, 0.5, 0.5]
TURNS = [0, 1, 2, 0, 0, 1, 0, 1, 2, 1, 2]


@pytest.mark.parametrize("top_fraction,cutoff,kept", [
    (0.5, -1.5, [3, 4, 5, 9, 10]),  # median of (-3, 0, -1, -2): episodes 0 and -1, and the orphan turns
    (0.1, -0.3, [3, 9, 10]),  # 0.9 quantile, interpolated between -1 and 0
    (1.0, -3.0, list(range(11))),  # every filled row, none of the empty ones
])
def test_selection_keeps_the_episodes_at_or_above_the_quantile_of_episode_returns(top_fraction, cutoff, kept):
    buffer = replay.insert(replay.ReplayBuffer.create(14, OBS_LEN, ACTION_LEN), _rows(RETURNS, TURNS))
    got_cutoff, selected = jax.jit(filtered_bc.selection, static_argnums=1)(buffer, top_fraction)
    # One value per episode (its first turn), numpy's default (linear) quantile, as the reference.
    assert float(got_cutoff) == pytest.approx(np.quantile([-3, 0, -1, -2], 1 - top_fraction)) == pytest.approx(cutoff)
    assert np.flatnonzero(np.asarray(selected)).tolist() == kept


def test_selection_without_a_first_turn_keeps_every_filled_row():
    buffer = replay.insert(replay.ReplayBuffer.create(4, OBS_LEN, ACTION_LEN), _rows([-2.0, -5.0], [1, 2]))
    cutoff, selected = filtered_bc.selection(buffer, 0.1)
    assert float(cutoff) == -np.inf and np.asarray(selected).tolist() == [True, True, False, False]


def test_the_phase_trains_on_the_selected_rows_only():
    """Every row shares one observation; the top episode's rows say token 7, the others
    token 11. With a learning rate of 0 every step's loss is the NLL of the rows it drew:
    the phase's mean loss equals the NLL of token 7's rows to float precision."""
    actor = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    mesh = sharding.make_mesh((-1, 1, 1))
    tx = optax.sgd(0.0)
    state, state_shardings = train_state.create_state(jax.random.key(0), actor=actor, critic=None, actor_tx=tx,
                                                      critic_tx=None, mesh=mesh)
    buffer, buffer_shardings = replay.create_sharded(16, OBS_LEN, ACTION_LEN, mesh)
    rows = _rows([-3, -3, 0, 0, -2, -2], [0, 1, 0, 1, 0, 1], action=[11, 11, 7, 7, 11, 11])
    buffer = replay.make_insert(buffer_shardings, mesh)(buffer, rows)

    _, want = bc.bc_update(state, replay.gather(buffer, jnp.array([2, 3])), actor=actor, tx=tx)
    _, other = bc.bc_update(state, replay.gather(buffer, jnp.array([0, 1])), actor=actor, tx=tx)
    # One wrong draw among the 32 would move the mean by (difference) / 32, far above 1e-5.
    assert abs(float(want["bc/loss"]) - float(other["bc/loss"])) > 0.01
    phase = filtered_bc.make_filtered_bc_phase(actor=actor, batch_size=4, steps=8, top_fraction=0.1, tx=tx,
                                               state_shardings=state_shardings, buffer_shardings=buffer_shardings,
                                               mesh=mesh)
    _, metrics = phase(state, buffer)
    assert float(metrics["bc/loss"]) == pytest.approx(float(want["bc/loss"]), abs=1e-5)
    assert float(metrics["filtered_bc/cutoff"]) == pytest.approx(np.quantile([-3, 0, -2], 0.9))
    assert (int(metrics["filtered_bc/rows"]), int(metrics["filtered_bc/episodes"])) == (2, 1)


def test_online_filtered_bc_runs_from_the_command_line_and_resumes(tmp_path):
    command = [sys.executable, "-m", "experiments.run", "--config=guess_city.py:smoke", f"--workdir={tmp_path}",
               "--config.algorithm=filtered_bc", "--config.archer.iterations=3"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["iteration"]) for r in rows] == [("bc", 1)] + [("filtered_bc", k) for k in range(4)]
    first, later = rows[2], rows[3:]
    assert "bc/loss" not in first  # warm-up (smoke: 1 iteration) only collects
    assert not any(k.startswith(("critic/", "actor/", "probe/")) for r in rows for k in r)  # no critic
    for r in later:
        assert {"bc/loss", "filtered_bc/cutoff", "filtered_bc/rows", "eval/return_mean"} <= set(r)
        assert r["time/compiles"] == 0
    assert [r["env_steps"] for r in rows[1:]] == list(np.cumsum([0] + [r["rollout/turns"] for r in rows[2:]]))
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(rows)  # nothing redone
