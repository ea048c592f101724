"""Token-level PPO: its losses and estimators worked by hand, the episode layout, the
adaptive KL controller, one phase that learns a rewarded token, and the algorithm run by
the trainer (kill -9 and resume: tests/test_resume.py)."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from archer_jax import config_checks, losses, rollout, trainer
from archer_jax.algorithms import ppo
from archer_jax.models import value_heads
from archer_jax.models.gpt2 import GPT2Config, GPT2LMHeadModel
from archer_jax.train_state import ArcherState
from experiments.configs import guess_city


def test_gae_by_hand_skips_padding_and_ends_with_the_episode():
    rewards = jnp.array([[1.0, 0.0, 5.0, 2.0], [0.0, 1.0, 0.0, 0.0]])
    values = jnp.array([[0.5, 0.2, 9.0, 0.1], [0.3, 0.4, 0.0, 0.0]])
    mask = jnp.array([[True, True, False, True], [True, True, False, False]])
    adv = losses.gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
    # Row 0, real tokens 0, 1, 3 (token 2 is padding: token 1 bootstraps from token 3):
    a3 = 2.0 - 0.1
    a1 = 0.0 + 0.9 * 0.1 - 0.2 + 0.72 * a3
    a0 = 1.0 + 0.9 * 0.2 - 0.5 + 0.72 * a1
    # Row 1 ends at token 1.
    b1 = 1.0 - 0.4
    b0 = 0.0 + 0.9 * 0.4 - 0.3 + 0.72 * b1
    np.testing.assert_allclose(adv, [[a0, a1, 0.0, a3], [b0, b1, 0.0, 0.0]], rtol=1e-6)


def test_gae_at_lambda_one_is_the_monte_carlo_return_minus_the_value():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(3, 7)).astype(np.float32), rng.normal(size=(3, 7)).astype(np.float32)
    mask = rng.random((3, 7)) < 0.7
    adv = np.asarray(losses.gae_advantages(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), 0.9, 1.0))
    for b in range(3):
        real = np.flatnonzero(mask[b])
        for i, s in enumerate(real):
            later = real[i:]
            mc = sum(0.9 ** j * rewards[b, t] for j, t in enumerate(later))
            np.testing.assert_allclose(adv[b, s], mc - values[b, s], rtol=1e-5, atol=1e-5)


def test_whiten_over_the_real_entries_only():
    x, mask = jnp.array([[1.0, 3.0, 100.0], [5.0, -7.0, 7.0]]), jnp.array([[True, True, False], [True, False, True]])
    w = np.asarray(losses.whiten(x, mask))
    real = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(w[np.asarray(mask)], (real - real.mean()) / real.std(), rtol=1e-5)
    assert w[0, 2] == 0.0 and w[1, 1] == 0.0


def test_ppo_policy_loss_by_hand_and_no_gradient_where_the_clip_binds():
    old = jnp.zeros((1, 4))
    # ratios e^0.1, e^0.5, e^-0.5, e^0.5 against advantages +1, +1, -1, -1.
    logp = jnp.array([[0.1, 0.5, -0.5, 0.5]])
    adv = jnp.array([[1.0, 1.0, -1.0, -1.0]])
    mask = jnp.ones((1, 4), bool)
    loss, metrics = losses.ppo_policy_loss(logp, old, adv, mask, clip=0.2)
    r = np.exp([0.1, 0.5, -0.5, 0.5])
    # min(r A, clip(r) A): token 0 inside the clip; token 1 clipped at 1.2 (A > 0);
    # token 2 clipped at 0.8 (A < 0, the pessimistic side); token 3 unclipped (r A < 1.2 A).
    expected = -np.mean([r[0], 1.2, -0.8, -r[3]])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert metrics["clip_fraction"] == pytest.approx(0.5)
    np.testing.assert_allclose(metrics["approx_kl"], np.mean(r - 1 - np.array([0.1, 0.5, -0.5, 0.5])), rtol=1e-6)
    grad = jax.grad(lambda lp: losses.ppo_policy_loss(lp, old, adv, mask, clip=0.2)[0])(logp)
    np.testing.assert_allclose(grad, [[-r[0] / 4, 0.0, 0.0, r[3] / 4]], rtol=1e-6)
    # Padding counts for nothing.
    padded, _ = losses.ppo_policy_loss(jnp.pad(logp, ((0, 0), (0, 2)), constant_values=9.0),
                                       jnp.zeros((1, 6)), jnp.pad(adv, ((0, 0), (0, 2)), constant_values=9.0),
                                       jnp.pad(mask, ((0, 0), (0, 2))), clip=0.2)
    np.testing.assert_allclose(padded, expected, rtol=1e-5)


def test_ppo_value_loss_by_hand():
    values, old, returns = jnp.array([[1.0, 0.5, -1.0]]), jnp.array([[0.0, 0.4, 0.0]]), jnp.array([[2.0, 0.0, 1.0]])
    loss = losses.ppo_value_loss(values, old, returns, jnp.ones((1, 3), bool), clip=0.2)
    # Token 0: V moved +1 past the clip toward R = 2: (1 - 2)^2 = 1 vs (0.2 - 2)^2 = 3.24 -> 3.24.
    # Token 1: inside the clip: 0.25. Token 2: moved away from R: (-1 - 1)^2 = 4 vs (-0.2 - 1)^2 -> 4.
    np.testing.assert_allclose(loss, 0.5 * np.mean([3.24, 0.25, 4.0]), rtol=1e-6)
    grad = jax.grad(lambda v: losses.ppo_value_loss(v, old, returns, jnp.ones((1, 3), bool), clip=0.2))(values)
    np.testing.assert_allclose(grad, [[0.0, 0.5 / 3, -2.0 / 3]], rtol=1e-6)  # the clipped token is frozen


def test_token_rewards_put_the_turn_reward_on_its_last_token():
    mask = jnp.array([[True, True, True, False], [True, False, False, False]])
    kl = jnp.array([[0.5, -0.5, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    out = ppo.token_rewards(jnp.array([-1.0, 3.0]), mask, kl, jnp.float32(0.1))
    np.testing.assert_allclose(out, [[-0.05, 0.05, -1.1, 0.0], [2.8, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_episodes_turn_the_turn_major_rollout_rows_into_episodes():
    t, b, obs, act = 3, 2, 4, 2

    def batch(offset):
        n = t * b
        rows = offset + np.arange(n)  # row = turn * b + game
        transitions = {"obs": np.repeat(rows[:, None], obs, 1), "obs_mask": np.ones((n, obs), bool),
                       "action": np.repeat(rows[:, None], act, 1), "action_mask": np.ones((n, act), bool),
                       "reward": rows.astype(np.float32)}
        return rollout.Rollout(transitions, rows % 3 != 2, np.zeros(b), np.zeros(b, bool), np.zeros(b), [], [])

    out = ppo.episodes([batch(0), batch(100)], max_turns=t)
    assert out["obs"].shape == (4, t, obs) and out["reward"].shape == (4, t) and out["obs"].dtype == np.int32
    # Episode e of batch k holds rows e, e + b, e + 2b of that batch, in turn order.
    np.testing.assert_array_equal(out["reward"], [[0, 2, 4], [1, 3, 5], [100, 102, 104], [101, 103, 105]])
    np.testing.assert_array_equal(out["valid"][0], [True, False, True])


def test_adaptive_kl_controller_by_hand():
    assert ppo.adapt_kl(0.1, kl=2.0, target=1.0, horizon=100, steps=10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    assert ppo.adapt_kl(0.1, kl=0.9, target=1.0, horizon=100, steps=10) == pytest.approx(0.1 * (1 - 0.1 * 0.1))


VOCAB, GOOD = 8, 3


def _tiny_phase_inputs(episodes, turns):
    """A one-token action space: each turn says one token; a turn that says GOOD is worth 1."""
    actor = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    value = value_heads.TokenValue(lm=actor)
    ids = jnp.ones((1, 4), jnp.int32)
    actor_params = actor.init(jax.random.key(0), ids, jnp.ones((1, 4), bool))["params"]
    value_params = value.init(jax.random.key(1), ids, jnp.ones((1, 4), bool), ids[:, :1], jnp.ones((1, 1), bool))
    rng = np.random.default_rng(0)
    action = rng.integers(1, VOCAB, size=(episodes, turns, 1)).astype(np.int32)
    data = {"obs": np.tile(np.array([0, 5, 6, 7], np.int32), (episodes, turns, 1)),
            "obs_mask": np.tile(np.array([False, True, True, True]), (episodes, turns, 1)),
            "action": action, "action_mask": np.ones((episodes, turns, 1), bool),
            "reward": (action[..., 0] == GOOD).astype(np.float32),
            "valid": np.ones((episodes, turns), bool)}
    data["valid"][0, 1:] = False  # one episode ended after its first turn
    return actor, value, actor_params, value_params["params"], data


def _state(actor_params, value_params, tx, value_tx):
    return ArcherState(step=jnp.int32(0), rng=jax.random.key_data(jax.random.key(2)), actor_params=actor_params,
                       actor_opt_state=tx.init(actor_params), critic_params={}, target_critic_params={},
                       critic_opt_state=(), ref_actor_params=jax.tree.map(jnp.copy, actor_params),
                       baseline_params=value_params, baseline_opt_state=value_tx.init(value_params))


def test_a_ppo_phase_raises_the_probability_of_the_rewarded_token_and_fits_the_value():
    actor, value, actor_params, value_params, data = _tiny_phase_inputs(episodes=16, turns=2)
    tx, value_tx = optax.adam(3e-2), optax.adam(3e-2)
    hp = ppo.PPOHParams(epochs=4, batch_size=8)
    phase = jax.jit(functools.partial(ppo.ppo_phase, actor=actor, value=value, hp=hp, tx=tx, value_tx=value_tx))
    state = _state(actor_params, value_params, tx, value_tx)

    def p_good(params):
        logits = actor.apply({"params": params}, jnp.asarray(data["obs"][0, :1]),
                             jnp.asarray(data["obs_mask"][0, :1])).logits[0, -1]
        return float(jax.nn.softmax(logits)[GOOD])

    before = p_good(actor_params)
    new, metrics = phase(state, data, jnp.float32(0.001))
    # 31 turns said, minibatches of 8: 4 per epoch (the empty padding rows are skipped).
    assert int(metrics["ppo/updates"]) == 4 * 4 and int(new.step) == 16
    assert p_good(new.actor_params) > before + 0.05
    assert float(metrics["ppo/approx_kl"]) > 0.0
    # The value model moved: its parameters changed and its loss is finite.
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.device_get(new.baseline_params),
                                                jax.device_get(value_params))))
    assert np.isfinite(float(metrics["ppo/value_loss"]))


def test_the_first_minibatch_of_a_phase_is_on_policy():
    """One epoch, one minibatch over every turn: the ratio is 1 at the step, so the clip
    never binds and the surrogate's gradient is the policy gradient."""
    actor, value, actor_params, value_params, data = _tiny_phase_inputs(episodes=4, turns=2)
    tx, value_tx = optax.sgd(0.0), optax.sgd(0.0)
    hp = ppo.PPOHParams(epochs=1, batch_size=8)
    state = _state(actor_params, value_params, tx, value_tx)
    new, metrics = jax.jit(functools.partial(ppo.ppo_phase, actor=actor, value=value, hp=hp, tx=tx,
                                             value_tx=value_tx))(state, data, jnp.float32(0.0))
    assert int(metrics["ppo/updates"]) == 1
    assert float(metrics["ppo/clip_fraction"]) == 0.0 and abs(float(metrics["ppo/approx_kl"])) < 1e-7
    chex.assert_trees_all_close(jax.device_get(new.actor_params), jax.device_get(actor_params))
    # The advantage metrics describe GAE's estimates before whitening: one token per turn,
    # so each episode's tokens are its turns, valued by the value model turn by turn.
    values = value.apply({"params": value_params}, *(jnp.asarray(data[k].reshape(8, -1))
                                                      for k in ("obs", "obs_mask", "action", "action_mask")))
    adv = np.asarray(losses.gae_advantages(data["reward"], values.reshape(4, 2), data["valid"], 1.0, 0.95))
    said = adv[data["valid"]]
    np.testing.assert_allclose(float(metrics["ppo/advantage_mean"]), said.mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["ppo/advantage_std"]), said.std(), rtol=1e-4, atol=1e-6)


def test_ppo_runs_in_the_trainer_from_the_bc_actor(tmp_path):
    config = guess_city.get_config("smoke")
    config.algorithm = "ppo"
    config.ppo.kl_target = 0.5
    run = trainer.train(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    ppo_rows = [r for r in rows if r["stage"] == "ppo"]
    assert [r["iteration"] for r in ppo_rows] == [0, 1, 2]
    assert all(k in ppo_rows[1] for k in ("ppo/pg_loss", "ppo/value_loss", "ppo/clip_fraction", "ppo/kl_ref",
                                          "eval/return_mean", "rollout/return_mean"))
    assert ppo_rows[2]["time/compiles"] == 0
    # Every turn trained on was played on-policy: the rollouts and the updates count the same turns.
    assert ppo_rows[1]["env_steps"] == ppo_rows[1]["rollout/turns"]
    # The adaptive coefficient moved after the first iteration and is kept for a resume.
    assert ppo_rows[1]["ppo/kl_coef"] == pytest.approx(0.001) and ppo_rows[2]["ppo/kl_coef"] != 0.001
    assert run.progress["ppo_kl_coef"] != ppo_rows[2]["ppo/kl_coef"]
    assert run.progress["finished"] == ["bc", "ppo"]
    # The value model and the KL anchor started from the BC actor; the actor moved away.
    assert run.state.baseline_params is not None and run.state.ref_actor_params is not None
    # PPO has no utterance-level critic: none is built, allocated or checkpointed.
    assert run.critic is None and run.bridge is None
    assert run.state.critic_params is None and run.state.target_critic_params is None
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.device_get(run.state.actor_params),
                                                jax.device_get(run.state.ref_actor_params))))


@pytest.mark.parametrize("field, value", [("ppo.gae_lambda", 1.5), ("ppo.epochs", 0), ("ppo.clip", -0.1)])
def test_bad_ppo_fields_are_named(field, value):
    config = guess_city.get_config("smoke")
    config.algorithm = "ppo"
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(config_checks.ConfigError, match=f"config.{field} = "):
        config_checks.check_config(config)
