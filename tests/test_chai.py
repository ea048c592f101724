"""Online CHAI: its acting rule (best of k samples by the critic), checked against the same
samples scored by hand, and the algorithm run by the trainer: the actor stays the BC actor,
the critic learns, and evaluations play the best-of-k agent."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from archer_jax import algorithms, sampling, trainer
from archer_jax.algorithms import archer
from archer_jax.models.gpt2 import GPT2Config, GPT2LMHeadModel
from archer_jax.models.value_heads import CriticOutput
from experiments.configs import guess_city

VOCAB, STOP, PAD, NEW = 12, 2, 0, 5


class TokenSumCritic(nn.Module):
    """Q1 = the sum of the utterance's real token ids, Q2 = Q1 + 1 on even sums: min(Q1, Q2)
    is Q1, a score the test can compute from the tokens."""

    @nn.compact
    def __call__(self, obs, obs_mask, action, action_mask):
        q1 = jnp.sum(jnp.where(action_mask, action, 0), axis=1).astype(jnp.float32)
        q2 = q1 + (q1 % 2 == 0)
        return CriticOutput(q1=q1, q2=q2, v1=jnp.zeros_like(q1), v2=jnp.zeros_like(q1))


def test_best_of_k_says_the_sample_the_critic_scores_highest():
    actor = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    params = actor.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), bool))["params"]
    obs = jnp.array([[0, 3, 4, 5], [6, 7, 8, 9], [3, 3, 3, 3]], jnp.int32)
    mask = jnp.array([[False, True, True, True], [True] * 4, [True] * 4])
    hp = archer.ArcherHParams(max_new_tokens=NEW, stop_ids=(STOP,), pad_id=PAD)
    k, rng, temperature = 4, jax.random.key(3), jnp.array([1.0, 2.0, 1.5])
    def identity(ids, mask):
        return ids, mask

    best = jax.jit(lambda p, o, m, r, t: archer.best_of_k(actor, TokenSumCritic(), p, {}, o, m, r, t, k=k, hp=hp,
                                                          bridge=identity))(params, obs, mask, rng, temperature)
    # The same k samples per row (same key, rows repeated k times), scored by hand.
    every = sampling.generate(actor, params, jnp.repeat(obs, k, 0), jnp.repeat(mask, k, 0), rng,
                              jnp.repeat(temperature, k), max_new_tokens=NEW, stop_ids=(STOP,), pad_id=PAD)
    tokens, real = np.asarray(every.tokens).reshape(3, k, NEW), np.asarray(every.mask).reshape(3, k, NEW)
    scores = np.where(real, tokens, 0).sum(-1)
    assert all(len(set(row)) > 1 for row in scores)  # the k samples of every state differ
    pick = scores.argmax(1)
    np.testing.assert_array_equal(np.asarray(best.tokens), tokens[np.arange(3), pick])
    np.testing.assert_array_equal(np.asarray(best.mask), real[np.arange(3), pick])


def test_chai_trains_the_critic_keeps_the_bc_actor_and_evaluates_best_of_k(tmp_path):
    config = guess_city.get_config("smoke")
    config.algorithm, config.archer.iterations = "chai", 2
    run = trainer.setup(config, tmp_path)
    bc_stage, chai_stage = algorithms.stages("chai", run)
    with run.logger:
        assert trainer.run_stage(run, bc_stage)
        bc_actor = jax.device_get(run.state.actor_params)
        assert trainer.run_stage(run, chai_stage)
    run.checkpointer.close()
    same = jax.tree.map(np.array_equal, jax.device_get(run.state.actor_params), bc_actor)
    assert all(jax.tree.leaves(same)), "CHAI's actor changed"
    runner, (actor_params, critic_params) = chai_stage.act()
    assert runner.policy is not run.runner.policy and critic_params is run.state.target_critic_params
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    chai_rows = [r for r in rows if r["stage"] == "chai"]
    assert [r["iteration"] for r in chai_rows] == [0, 1, 2]
    assert all("critic/loss" in r and "probe/q_mc_corr" in r for r in chai_rows[1:])
    assert not any(k.startswith("actor/") for r in rows for k in r)
    assert run.progress["finished"] == ["bc", "chai"] and run.progress["env_steps"] > 0
