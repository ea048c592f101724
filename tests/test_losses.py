"""ArCHer's losses against hand-worked numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from archer_jax import losses


def test_td_targets_mask_terminal_transitions():
    r = jnp.array([-1.0, 0.0, -1.0])
    done = jnp.array([False, True, False])
    v_next = jnp.array([2.0, 5.0, -4.0])
    # -1 + 0.9 * 2 = 0.8;  0 (done: no bootstrap);  -1 + 0.9 * -4 = -4.6
    np.testing.assert_allclose(losses.td_targets(r, done, v_next, 0.9), [0.8, 0.0, -4.6], rtol=1e-6)


def test_td_targets_rejects_mismatched_shapes():
    with pytest.raises(AssertionError):
        losses.td_targets(jnp.zeros(3), jnp.zeros(3, bool), jnp.zeros(2), 0.9)


def test_critic_loss_matches_each_head_to_its_own_target_head():
    q1, q2 = jnp.array([1.0, 0.0]), jnp.array([2.0, -1.0])
    v1, v2 = jnp.array([0.5, 1.0]), jnp.array([0.0, 3.0])
    target_q1, target_q2 = jnp.array([1.5, 2.0]), jnp.array([-1.0, 1.0])  # Qbar_i(s, a ~ pi)
    target_v1_next, target_v2_next = jnp.array([10.0, 4.0]), jnp.array([20.0, 8.0])  # Vbar_i(s')
    reward, done = jnp.array([-1.0, 0.0]), jnp.array([False, True])
    loss, m = losses.critic_loss(q1, q2, v1, v2, target_q1, target_q2, target_v1_next, target_v2_next,
                                 reward, done, 0.5)
    # Q1 targets: [-1 + 0.5 * 10, 0] = [4, 0]   -> ((1-4)^2 + 0^2) / 2 = 4.5
    # Q2 targets: [-1 + 0.5 * 20, 0] = [9, 0]   -> ((2-9)^2 + (-1)^2) / 2 = 25
    # V1 targets: [1.5, 2]                      -> (1 + 1) / 2 = 1.0
    # V2 targets: [-1, 1]                       -> (1 + 4) / 2 = 2.5
    np.testing.assert_allclose(m["q1_loss"], 4.5, rtol=1e-6)
    np.testing.assert_allclose(m["q2_loss"], 25.0, rtol=1e-6)
    np.testing.assert_allclose(m["v1_loss"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["v2_loss"], 2.5, rtol=1e-6)
    np.testing.assert_allclose(loss, 33.0, rtol=1e-6)
    np.testing.assert_allclose(m["loss"], 33.0, rtol=1e-6)
    np.testing.assert_allclose(m["q_mean"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(m["v_mean"], 1.125, rtol=1e-6)


def test_critic_loss_does_not_train_through_targets():
    args = [jnp.array([1.0, 2.0])] * 8 + [jnp.array([0.5, 0.5]), jnp.array([False, False])]

    def f(targets):
        return losses.critic_loss(*args[:4], *targets, *args[8:], 0.9)[0]

    grads = jax.grad(f)(tuple(jnp.array([3.0, -1.0]) for _ in range(4)))
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)


def test_advantages_take_the_min_of_each_pair():
    a = losses.advantages(jnp.array([1.0, 5.0]), jnp.array([3.0, 2.0]),
                          jnp.array([0.0, -1.0]), jnp.array([2.0, 4.0]))
    np.testing.assert_allclose(a, [1.0 - 0.0, 2.0 - (-1.0)])


def test_policy_gradient_loss_sign_and_masking():
    logp = jnp.array([[-1.0, -2.0, -7.0], [-0.5, -9.0, -9.0]])
    mask = jnp.array([[True, True, False], [True, False, False]])
    adv = jnp.array([2.0, -4.0])
    # -mean([(-1 - 2) * 2, (-0.5) * -4]) = -mean([-6, 2]) = 2
    np.testing.assert_allclose(losses.policy_gradient_loss(logp, mask, adv), 2.0, rtol=1e-6)
    # Descending the loss raises the log-prob of a positive-advantage action and
    # lowers that of a negative one; masked tokens get no gradient.
    g = jax.grad(losses.policy_gradient_loss)(logp, mask, adv)
    np.testing.assert_allclose(g, [[-1.0, -1.0, 0.0], [2.0, 0.0, 0.0]])
    # The advantage is a constant signal, never trained through.
    np.testing.assert_array_equal(jax.grad(losses.policy_gradient_loss, argnums=2)(logp, mask, adv), 0.0)


def test_bc_loss_is_token_mean_nll():
    logp = jnp.array([[-1.0, -3.0], [-2.0, -100.0]])
    mask = jnp.array([[True, True], [True, False]])
    np.testing.assert_allclose(losses.bc_loss(logp, mask), 2.0, rtol=1e-6)


def test_sequence_logprobs_gathers_and_masks():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]]))
    out = losses.sequence_logprobs(logits, jnp.array([[1, 2]]), jnp.array([[True, False]]))
    np.testing.assert_allclose(out, [[np.log(0.25), 0.0]], rtol=1e-6)


def test_polyak_with_tau_point_one():
    online = {"a": jnp.array([1.0, 2.0])}
    target = {"a": jnp.array([11.0, -8.0])}
    new = optax.incremental_update(online, target, 0.1)
    # 0.9 * target + 0.1 * online
    np.testing.assert_allclose(new["a"], [10.0, -7.0], rtol=1e-6)


def test_kl_penalty_k3_per_real_token_and_gradient_toward_the_reference():
    logp = jnp.array([[-1.0, -1.0, -3.0]])
    ref = jnp.array([[-1.0, -2.0, -0.5]])
    mask = jnp.array([[True, True, False]])
    # d = ref - logp: 0 -> 0; -1 -> e^-1 + 1 - 1 = e^-1; the masked token does not count.
    np.testing.assert_allclose(losses.kl_penalty(logp, ref, mask), np.exp(-1.0) / 2, rtol=1e-6)
    grad = jax.grad(lambda x: losses.kl_penalty(x, ref, mask))(logp)
    # d/dlogp (e^d - d - 1) = 1 - e^d: lowers a token the reference finds less likely.
    np.testing.assert_allclose(grad, [[0.0, (1 - np.exp(-1.0)) / 2, 0.0]], rtol=1e-6)
