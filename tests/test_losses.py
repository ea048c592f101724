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


def test_critic_loss_mixed_monte_carlo_target():
    """mc_mix = beta: each Q head regresses on (1 - beta) (its TD target) + beta G; V unchanged."""
    q1, q2, v1, v2 = jnp.array([1.0, 0.0]), jnp.array([2.0, -1.0]), jnp.array([0.5, 1.0]), jnp.array([0.0, 3.0])
    targets = (jnp.array([1.5, 2.0]), jnp.array([-1.0, 1.0]), jnp.array([10.0, 4.0]), jnp.array([20.0, 8.0]))
    reward, done, g = jnp.array([-1.0, 0.0]), jnp.array([False, True]), jnp.array([2.0, 6.0])
    _, m = losses.critic_loss(q1, q2, v1, v2, *targets, reward, done, 0.5, g, 0.25)
    # TD targets as above: Q1 [4, 0], Q2 [9, 0]; mixed with G = [2, 6] at beta 0.25:
    # Q1 [3.5, 1.5] -> ((1-3.5)^2 + (0-1.5)^2) / 2 = 4.25; Q2 [7.25, 1.5] -> (5.25^2 + 2.5^2) / 2 = 16.90625
    np.testing.assert_allclose(m["q1_loss"], 4.25, rtol=1e-6)
    np.testing.assert_allclose(m["q2_loss"], 16.90625, rtol=1e-6)
    np.testing.assert_allclose(m["v1_loss"], 1.0, rtol=1e-6)
    # beta 1: Q is plain Monte-Carlo regression, whatever the target critic says.
    _, m = losses.critic_loss(q1, q2, v1, v2, *targets, reward, done, 0.5, g, 1.0)
    np.testing.assert_allclose(m["q1_loss"], ((1 - 2) ** 2 + 6 ** 2) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["q2_loss"], ((2 - 2) ** 2 + 7 ** 2) / 2, rtol=1e-6)


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


def test_sequence_kl_sample_sums_the_log_ratio_over_real_tokens():
    logp = jnp.array([[-1.0, -1.0, -3.0], [-0.5, -2.0, -9.0]])
    ref = jnp.array([[-1.0, -2.0, -0.5], [-1.5, -1.0, -1.0]])
    mask = jnp.array([[True, True, False], [True, True, False]])
    # [0 + 1, 1 - 1]; the masked column does not count
    np.testing.assert_allclose(losses.sequence_kl_sample(logp, ref, mask), [1.0, 0.0], rtol=1e-6)


def _categorical_grad(weight_fn, logits):
    """The exact expectation over a ~ softmax(logits) of weight(a) * grad log pi(a),
    by enumeration: what the policy-gradient loss gives on average."""
    def expected_surrogate(z):
        logp = jax.nn.log_softmax(z)
        p = jax.lax.stop_gradient(jnp.exp(logp))
        w = jax.lax.stop_gradient(weight_fn(logp))
        # policy_gradient_loss on every action as a one-token utterance, weighted by p.
        per_action = jax.vmap(lambda lp, wa: losses.policy_gradient_loss(lp[None, None], jnp.ones((1, 1), bool),
                                                                         wa[None]))(logp, w)
        return jnp.sum(p * per_action)
    return jax.grad(expected_surrogate)(logits)


def test_kl_weight_gives_the_exact_gradient_of_kl_pi_to_the_reference():
    logits, ref_logits = jnp.array([0.3, -1.2, 2.0, 0.1]), jnp.array([1.0, 0.0, -0.5, 0.2])
    ref = jax.nn.log_softmax(ref_logits)

    def kl(z):
        logp = jax.nn.log_softmax(z)
        return jnp.sum(jnp.exp(logp) * (logp - ref))

    def weight(logp):  # the penalty a sampled utterance carries: log pi - log pi_ref
        return losses.sequence_kl_sample(logp[:, None], ref[:, None], jnp.ones((4, 1), bool))

    # The loss with the reward -(log pi - log pi_ref) has, on average, the gradient of
    # KL(pi || pi_ref): descending it descends the KL.
    np.testing.assert_allclose(_categorical_grad(lambda lp: -weight(lp), logits), jax.grad(kl)(logits),
                               rtol=1e-5, atol=1e-6)


def test_identical_sample_fraction_hand_worked():
    # Two states, 2 samples each: state 0's samples differ only past the end (the same
    # utterance), state 1's differ in a real token.
    tokens = jnp.array([[5, 6, 9], [5, 6, 7], [5, 6, 0], [5, 8, 0]])
    mask = jnp.array([[True, True, False], [True, True, False], [True, True, False], [True, True, False]])
    assert float(losses.identical_sample_fraction(tokens, mask, 2)) == 0.5
    # A shorter utterance is another utterance, even where the longer one agrees.
    mask = mask.at[1, 1].set(False)
    assert float(losses.identical_sample_fraction(tokens, mask, 2)) == 0.0


def test_leave_one_out_advantages_hand_worked():
    q = jnp.array([[1.0, 3.0, 5.0], [0.0, 0.0, 6.0]])
    # row 0: 1 - 4, 3 - 3, 5 - 2; row 1: 0 - 3, 0 - 3, 6 - 0
    np.testing.assert_allclose(losses.leave_one_out_advantages(q), [[-3.0, 0.0, 3.0], [-3.0, -3.0, 6.0]])
    with pytest.raises(ValueError, match=">= 2 samples"):
        losses.leave_one_out_advantages(jnp.zeros((3, 1)))


def test_leave_one_out_policy_gradient_is_unbiased():
    """Over every pair (a_1, a_2) drawn from pi, the leave-one-out weighted gradient
    averages to grad E_pi[Q(a)]: the baseline costs no bias."""
    logits, q = jnp.array([0.5, -0.7, 1.1]), jnp.array([2.0, -1.0, 0.5])
    logp = jax.nn.log_softmax(logits)
    p = jnp.exp(logp)
    want = jax.grad(lambda z: jnp.sum(jax.nn.softmax(z) * q))(logits)

    def pair_surrogate(z):
        lp = jax.nn.log_softmax(z)
        total = 0.0
        for i in range(3):
            for j in range(3):
                adv = losses.leave_one_out_advantages(jnp.array([[q[i], q[j]]]))[0]
                tokens = jnp.array([[lp[i]], [lp[j]]])
                # one state, two samples: the mean over samples of -log pi(a) * A
                total += p[i] * p[j] * losses.policy_gradient_loss(tokens, jnp.ones((2, 1), bool), adv)
        return total

    np.testing.assert_allclose(-jax.grad(pair_surrogate)(logits), want, rtol=1e-5, atol=1e-6)


def test_expectile_loss_weighs_under_estimates_by_the_expectile():
    diff = jnp.array([2.0, -1.0, 0.0])  # target - prediction
    # mean(0.9 * 4, 0.1 * 1, 0) = 3.7 / 3
    np.testing.assert_allclose(losses.expectile_loss(diff, 0.9), 3.7 / 3, rtol=1e-6)
    np.testing.assert_allclose(losses.expectile_loss(diff, 0.5), 0.5 * 5 / 3, rtol=1e-6)  # half the MSE
    # Minimised over a constant prediction, it gives the upper expectile: for targets
    # {0, 1}, 0.9 weight on the 1: v = 0.9 / (0.9 + 0.1) = 0.9.
    targets = jnp.array([0.0, 1.0])
    v = jnp.linspace(0, 1, 1001)
    losses_v = jax.vmap(lambda x: losses.expectile_loss(targets - x, 0.9))(v)
    assert float(v[jnp.argmin(losses_v)]) == pytest.approx(0.9, abs=1e-3)


def test_iql_critic_loss_by_hand():
    one = jnp.ones((2,))
    q1, q2, v1, v2 = jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), jnp.array([0.0, 0.0]), jnp.array([2.0, 2.0])
    tq1, tq2 = jnp.array([1.0, -1.0]), jnp.array([1.0, 1.0])  # target Q at the DATASET action
    tv1n, tv2n = jnp.array([2.0, 2.0]), jnp.array([4.0, 4.0])
    reward, done = -one, jnp.array([False, True])
    loss, m = losses.iql_critic_loss(q1, q2, v1, v2, tq1, tq2, tv1n, tv2n, reward, done, gamma=0.5, expectile=0.9)
    # Q1 targets: -1 + 0.5 * 2 = 0 (not done), -1 (done) -> MSE of (0, 2) = 2
    # Q2 targets: -1 + 0.5 * 4 = 1, -1 -> MSE of (0, 2) = 2
    # V1: diffs (1 - 0, -1 - 0) = (1, -1) -> mean(0.9 * 1, 0.1 * 1) = 0.5
    # V2: diffs (1 - 2, 1 - 2) = (-1, -1) -> mean(0.1, 0.1) = 0.1
    np.testing.assert_allclose([m["q1_loss"], m["q2_loss"], m["v1_loss"], m["v2_loss"]], [2.0, 2.0, 0.5, 0.1],
                               rtol=1e-6)
    np.testing.assert_allclose(loss, 4.6, rtol=1e-6)
    # No gradient reaches the targets.
    for argnum in (4, 5, 6, 7):
        g = jax.grad(lambda *a: losses.iql_critic_loss(*a, reward, done, 0.5, 0.9)[0], argnums=argnum)(
            q1, q2, v1, v2, tq1, tq2, tv1n, tv2n)
        np.testing.assert_array_equal(g, 0.0)


def test_awr_weights_are_clipped_exponentials_and_the_loss_is_weighted_sequence_nll():
    w = losses.awr_weights(jnp.array([0.0, 1.0, 10.0]), beta=2.0, max_weight=20.0)
    np.testing.assert_allclose(w, [1.0, np.exp(2.0), 20.0], rtol=1e-6)
    logp = jnp.array([[-1.0, -2.0], [-0.5, -9.0]])
    mask = jnp.array([[True, True], [True, False]])
    weight = jnp.array([2.0, 4.0])
    # -mean(2 * (-3), 4 * (-0.5)) = -mean(-6, -2) = 4
    np.testing.assert_allclose(losses.awr_loss(logp, mask, weight), 4.0, rtol=1e-6)
    g = jax.grad(losses.awr_loss)(logp, mask, weight)
    np.testing.assert_allclose(g, [[-1.0, -1.0], [-2.0, 0.0]])  # -w_b / B on real tokens
    np.testing.assert_array_equal(jax.grad(losses.awr_loss, argnums=2)(logp, mask, weight), 0.0)


def test_token_policy_gradient_and_value_losses_by_hand():
    logp = jnp.array([[-1.0, -2.0], [-0.5, -9.0]])
    mask = jnp.array([[True, True], [True, False]])
    adv = jnp.array([[2.0, 1.0], [-4.0, 100.0]])  # the masked 100 counts for nothing
    # -mean(-1 * 2 + -2 * 1, -0.5 * -4) = -mean(-4, 2) = 1
    np.testing.assert_allclose(losses.token_policy_gradient_loss(logp, mask, adv), 1.0, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(losses.token_policy_gradient_loss)(logp, mask, adv),
                               [[-1.0, -0.5], [2.0, 0.0]])
    np.testing.assert_array_equal(jax.grad(losses.token_policy_gradient_loss, argnums=2)(logp, mask, adv), 0.0)
    values, target = jnp.array([[1.0, 3.0], [0.0, 7.0]]), jnp.array([2.0, -1.0])
    # errors 1, 1, 1 over the three real tokens
    np.testing.assert_allclose(losses.token_value_loss(values, mask, target), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(jax.grad(losses.token_value_loss, argnums=2)(values, mask, target), 0.0)


def test_a_token_baseline_of_the_prefix_leaves_the_policy_gradient_unbiased():
    """Every two-token utterance of a 3-token vocabulary, weighted by its probability:
    with A_t = Q(a) - b(a_<t) for an arbitrary b of the prefix, the expected gradient is
    grad E_pi[Q], as with A = Q alone."""
    # row 0: the logits of a_0; row 1 + a_0: those of a_1 after a_0
    logits = jnp.array([[0.3, -0.2, 0.9], [1.0, 0.1, -0.5], [-0.3, 0.4, 0.0], [0.2, 0.2, -1.0]])
    q = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [2.0, 2.5, -0.5]])  # Q(a_0, a_1)
    b0, b1 = 0.7, jnp.array([-1.0, 4.0, 0.3])  # b() and b(a_0)

    def probs(z):
        first = jax.nn.softmax(z[0])
        return first[:, None] * jax.nn.softmax(z[1:], axis=-1)

    want = jax.grad(lambda z: jnp.sum(probs(z) * q))(logits)

    def surrogate(z, baseline: bool):
        lp0, lp1 = jax.nn.log_softmax(z[0]), jax.nn.log_softmax(z[1:], axis=-1)
        p = jax.lax.stop_gradient(probs(z))
        total = 0.0
        for i in range(3):
            for j in range(3):
                token_logp = jnp.array([[lp0[i], lp1[i, j]]])
                adv = jnp.array([[q[i, j] - b0, q[i, j] - b1[i]]]) if baseline else jnp.full((1, 2), q[i, j])
                total += p[i, j] * losses.token_policy_gradient_loss(token_logp, jnp.ones((1, 2), bool), adv)
        return total

    for baseline in (False, True):
        np.testing.assert_allclose(-jax.grad(surrogate)(logits, baseline), want, rtol=1e-5, atol=1e-6)
