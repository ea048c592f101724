"""Offline ArCHer (IQL critic + AWR actor) and offline filtered BC: on a one-state dataset whose two utterances end
the episode with reward 0 and -1, the critic learns Q of each and V at the expectile, and
the actor comes to prefer the better utterance where BC would split evenly; then the
algorithm as the trainer runs it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from archer_jax import replay, sharding, train_state, trainer
from archer_jax.algorithms import archer, offline_archer
from archer_jax.models.gpt2 import GPT2Config, GPT2LMHeadModel
from archer_jax.models.roberta import RobertaConfig, RobertaModel
from archer_jax.models.value_heads import DoubleCritic
from experiments.configs import guess_city

OBS_LEN, ACTION_LEN, VOCAB, GOOD, BAD = 4, 2, 16, 7, 11


def _dataset(n: int) -> replay.Transitions:
    good = np.arange(n) % 2 == 0
    action = np.where(good, GOOD, BAD)
    return replay.Transitions(
        obs=jnp.full((n, OBS_LEN), 3, jnp.int32), obs_mask=jnp.ones((n, OBS_LEN), bool),
        action=jnp.asarray(np.stack([action, np.full(n, 2)], 1), jnp.int32),
        action_mask=jnp.ones((n, ACTION_LEN), bool),
        next_obs=jnp.full((n, OBS_LEN), 4, jnp.int32), next_obs_mask=jnp.ones((n, OBS_LEN), bool),
        reward=jnp.asarray(np.where(good, 0.0, -1.0), jnp.float32), done=jnp.ones((n,), bool),
        mc_return=jnp.asarray(np.where(good, 0.0, -1.0), jnp.float32),
        episode_return=jnp.asarray(np.where(good, 0.0, -1.0), jnp.float32), turn=jnp.zeros((n,), jnp.int32))


@pytest.mark.parametrize("expectile,v_want", [(0.9, -0.1), (0.5, -0.5)])
def test_iql_awr_learns_the_expectile_and_prefers_the_better_utterance(expectile, v_want):
    actor = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    critic = DoubleCritic(RobertaModel(RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32,
                                                     max_position_embeddings=12)), hidden_size=16)
    # One device: this test is about what the losses learn (300 steps); the sharded phase
    # runs in the trainer test below.
    mesh = sharding.make_mesh((-1, 1, 1), jax.devices()[:1])
    actor_tx, critic_tx = optax.adam(3e-3), optax.adam(3e-3)
    state, state_shardings = train_state.create_state(jax.random.key(0), actor=actor, critic=critic,
                                                      actor_tx=actor_tx, critic_tx=critic_tx, mesh=mesh)
    buffer, buffer_shardings = replay.create_sharded(32, OBS_LEN, ACTION_LEN, mesh)
    buffer = replay.make_insert(buffer_shardings, mesh)(buffer, _dataset(32))
    hp = archer.ArcherHParams(gamma=0.9, tau=0.5, max_new_tokens=ACTION_LEN, stop_ids=(2,), pad_id=0)
    phase = offline_archer.make_offline_phase(
        actor=actor, critic=critic, hp=hp, bridge=lambda i, m: (i, m), critic_tx=critic_tx, actor_tx=actor_tx,
        steps=300, batch_size=64, expectile=expectile, beta=3.0, max_weight=100.0, state_shardings=state_shardings,
        buffer_shardings=buffer_shardings, mesh=mesh)
    state, metrics = phase(state, buffer)
    assert float(metrics["actor/weight_clipped"]) == 0.0

    rows = replay.gather(buffer, jnp.array([0, 1]))  # the good and the bad utterance
    q, v = archer.critic_scores(state, rows, critic=critic, bridge=lambda i, m: (i, m))
    np.testing.assert_allclose(np.asarray(q), [0.0, -1.0], atol=0.05)  # Q = the reward (terminal)
    # V = the expectile of {0, -1} (each minibatch draws its own share of the two: SD 0.06)
    np.testing.assert_allclose(np.asarray(v), [v_want, v_want], atol=0.1)
    logp = archer.action_logprobs(actor, state.actor_params, rows.obs, rows.obs_mask, rows.action, rows.action_mask)
    first = np.exp(np.asarray(logp[:, 0]))  # pi(GOOD | s), pi(BAD | s)
    # BC would give 1/2 each; AWR weighs them exp(3 A): with A = (0.1, -0.9) at the 0.9
    # expectile that is 1.35 : 0.07, and at the mean (A = +-0.5) 4.5 : 0.22.
    assert first[0] > 0.8 and first[1] < 0.15, first


@pytest.mark.parametrize("algorithm,keys", [
    ("offline_archer", {"critic/v1_loss", "actor/awr_loss", "actor/weight_mean"}),
    ("offline_filtered_bc", {"bc/loss", "filtered_bc/cutoff", "filtered_bc/episodes"}),
])
def test_offline_algorithms_run_in_the_trainer_on_the_bc_data(tmp_path, algorithm, keys):
    config = guess_city.get_config("smoke")
    config.algorithm, config.bc.iterations = algorithm, 2
    trainer.train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["iteration"]) for r in rows] == [(algorithm, 1), (algorithm, 2)]
    for r in rows:
        assert keys | {"eval/return_mean"} <= set(r)
        assert r["env_steps"] == 0  # offline: no environment step but the evaluations'
    assert rows[1]["time/compiles"] == 0
