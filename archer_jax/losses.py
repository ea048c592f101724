"""ArCHer's losses as small pure functions (rlax style).

Names carry the time step: ``r_t`` and ``done_t`` belong to the transition taken at
``s_t``, ``v_tp1`` is a value of ``s_{t+1}``. Every function works on a batch, checks
its shapes with chex, and stops gradients through targets itself, so callers cannot
forget to.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def td_targets(r_t: chex.Array, done_t: chex.Array, v_tp1: chex.Array, gamma: float) -> jax.Array:
    """One-step targets r_t + gamma * (1 - done_t) * v_tp1, all [B]."""
    chex.assert_rank([r_t, done_t, v_tp1], 1)
    chex.assert_equal_shape([r_t, done_t, v_tp1])
    not_done = 1.0 - done_t.astype(jnp.float32)
    return r_t.astype(jnp.float32) + gamma * not_done * v_tp1.astype(jnp.float32)


def _mse(x: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(x - jax.lax.stop_gradient(target)))


def critic_loss(
    q1: chex.Array, q2: chex.Array, v1: chex.Array, v2: chex.Array,
    target_q1: chex.Array, target_q2: chex.Array,
    target_v1_next: chex.Array, target_v2_next: chex.Array,
    reward: chex.Array, done: chex.Array, gamma: float, mc_return: chex.Array | None = None, mc_mix: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ArCHer's double-critic loss, the sum of four MSE terms (all inputs [B]).

    ``q_i``/``v_i``: the online heads at (s, a_data) and s. ``target_q_i``: the target
    critic's Q heads at (s, a ~ pi(.|s)); ``target_v_i_next``: its V heads at s'.
    Each head regresses on its OWN target head, with no min across heads:
    Q_i -> r + gamma (1 - done) Vbar_i(s'),  V_i -> Qbar_i(s, a~pi).

    ``mc_mix`` = beta > 0 (with ``mc_return``, the row's discounted return G to the
    episode's end): the mixed Monte-Carlo target (Bellemare et al. 2016)
    Q_i -> (1 - beta) (r + gamma (1 - done) Vbar_i(s')) + beta G. A one-step backup
    moves a terminal reward back one turn per fit of the target critic; G carries it
    to every turn at once, at the bias of the return being the behaviour policy's (the
    rollouts' and the data's players') rather than pi's. 0 = the paper's TD target.
    """
    chex.assert_rank([q1, q2, v1, v2, target_q1, target_q2, target_v1_next, target_v2_next, reward, done], 1)
    chex.assert_equal_shape([q1, q2, v1, v2, target_q1, target_q2, target_v1_next, target_v2_next, reward, done])
    targets = [td_targets(reward, done, v_next, gamma) for v_next in (target_v1_next, target_v2_next)]
    if mc_mix:
        if mc_return is None:
            raise ValueError("critic_loss: mc_mix > 0 needs mc_return (each row's discounted return)")
        chex.assert_equal_shape([reward, mc_return])
        targets = [(1.0 - mc_mix) * y + mc_mix * mc_return.astype(jnp.float32) for y in targets]
    q1_loss = _mse(q1, targets[0])
    q2_loss = _mse(q2, targets[1])
    v1_loss = _mse(v1, target_q1)
    v2_loss = _mse(v2, target_q2)
    loss = q1_loss + q2_loss + v1_loss + v2_loss
    metrics = {
        "q1_loss": q1_loss,
        "q2_loss": q2_loss,
        "v1_loss": v1_loss,
        "v2_loss": v2_loss,
        "loss": loss,
        "q_mean": 0.5 * jnp.mean(q1 + q2),
        "v_mean": 0.5 * jnp.mean(v1 + v2),
    }
    return loss, metrics


def advantages(q1: chex.Array, q2: chex.Array, v1: chex.Array, v2: chex.Array) -> jax.Array:
    """Utterance-level advantage min(Q1, Q2) - min(V1, V2), [B]; no normalisation."""
    chex.assert_rank([q1, q2, v1, v2], 1)
    chex.assert_equal_shape([q1, q2, v1, v2])
    return jnp.minimum(q1, q2) - jnp.minimum(v1, v2)


def sequence_logprobs(logits: chex.Array, tokens: chex.Array, mask: chex.Array) -> jax.Array:
    """log pi(tokens[b, t]) from ``logits[b, t]`` (the logits that predict that token),
    [B, T] float32, 0 where ``mask`` is False."""
    chex.assert_rank(logits, 3)
    chex.assert_rank([tokens, mask], 2)
    chex.assert_equal_shape([tokens, mask])
    chex.assert_equal_shape_prefix([logits, tokens], 2)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # A one-hot contraction rather than take_along_axis: with the vocab dim sharded
    # over 'tensor', XLA partitions the contraction cleanly but would replicate the
    # activations for the gather (and XLA fuses the one-hot away).
    token_logp = jnp.sum(logp * jax.nn.one_hot(tokens, logits.shape[-1], dtype=logp.dtype), axis=-1)
    return jnp.where(mask, token_logp, 0.0)


def policy_gradient_loss(token_logp: chex.Array, token_mask: chex.Array, advantage: chex.Array) -> jax.Array:
    """Token-level REINFORCE: -mean_b(sum_t log pi(a_t) * A_b) over real tokens.

    The advantage is a constant reward signal for the actor, never trained through.
    """
    chex.assert_rank([token_logp, token_mask], 2)
    chex.assert_rank(advantage, 1)
    chex.assert_equal_shape([token_logp, token_mask])
    chex.assert_equal_shape_prefix([token_logp, advantage], 1)
    seq_logp = jnp.sum(jnp.where(token_mask, token_logp, 0.0), axis=-1)
    return -jnp.mean(seq_logp * jax.lax.stop_gradient(advantage))


def leave_one_out_advantages(q: chex.Array) -> jax.Array:
    """A_i = q_i - mean_{j != i} q_j over the k utterances sampled at each state, [B, k].

    ``q``: [B, k] scores of k >= 2 utterances sampled independently from pi(.|s_b). The
    baseline of sample i is built from the other samples only, so it does not depend
    on a_i and the policy gradient stays unbiased (RLOO); only the critic's ranking
    WITHIN a state reaches the actor, whatever its error on the state's value.
    """
    chex.assert_rank(q, 2)
    k = q.shape[1]
    if k < 2:
        raise ValueError(f"leave_one_out_advantages needs >= 2 samples per state, got {k}")
    q = q.astype(jnp.float32)
    return q - (jnp.sum(q, axis=1, keepdims=True) - q) / (k - 1)


def identical_sample_fraction(tokens: chex.Array, mask: chex.Array, k: int) -> jax.Array:
    """The fraction of states whose k sampled utterances are all the same token sequence.

    ``tokens``/``mask``: [B * k, L], rows b*k .. b*k + k - 1 sampled at state b; tokens
    past an utterance's end (mask False) do not count. At such a state every sample gets
    the same score, so the leave-one-out advantage is 0 and the state moves nothing but
    the KL anchor.
    """
    chex.assert_rank([tokens, mask], 2)
    seqs = jnp.where(mask, tokens, -1).reshape(-1, k, tokens.shape[-1])
    return jnp.mean(jnp.all(seqs == seqs[:, :1], axis=(1, 2)).astype(jnp.float32))


def sequence_kl_sample(token_logp: chex.Array, ref_token_logp: chex.Array, token_mask: chex.Array) -> jax.Array:
    """log pi(a|s) - log pi_ref(a|s) summed over the real tokens of each utterance, [B].

    For a ~ pi its mean is the utterance-level KL(pi || pi_ref). Used as a penalty on
    the policy-gradient weight (stop-gradient), E[(log pi - log pi_ref) grad log pi] is
    exactly grad KL(pi || pi_ref): the KL it names, summed per utterance like the
    policy-gradient term.
    """
    chex.assert_rank([token_logp, ref_token_logp, token_mask], 2)
    chex.assert_equal_shape([token_logp, ref_token_logp, token_mask])
    return jnp.sum(jnp.where(token_mask, token_logp - ref_token_logp, 0.0), axis=-1)


def bc_loss(token_logp: chex.Array, token_mask: chex.Array) -> jax.Array:
    """Token-mean negative log-likelihood over the real tokens of the batch."""
    chex.assert_rank([token_logp, token_mask], 2)
    chex.assert_equal_shape([token_logp, token_mask])
    count = jnp.maximum(jnp.sum(token_mask), 1)
    return -jnp.sum(jnp.where(token_mask, token_logp, 0.0)) / count


def expectile_loss(diff: chex.Array, expectile: float) -> jax.Array:
    """Mean of |expectile - 1[diff < 0]| * diff^2, [B] -> scalar (IQL's value loss, with
    ``diff`` = target - prediction): above 0.5 it weighs under-estimates more, so the
    prediction tends to an upper expectile of the target's distribution."""
    chex.assert_rank(diff, 1)
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return jnp.mean(weight * jnp.square(diff))


def iql_critic_loss(
    q1: chex.Array, q2: chex.Array, v1: chex.Array, v2: chex.Array,
    target_q1_data: chex.Array, target_q2_data: chex.Array,
    target_v1_next: chex.Array, target_v2_next: chex.Array,
    reward: chex.Array, done: chex.Array, gamma: float, expectile: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Offline ArCHer's IQL double critic (all inputs [B]): the sum of
    Q_i -> r + gamma (1 - done) Vbar_i(s') (MSE) and V_i -> Qbar_i(s, a_data) by
    expectile regression, each head toward its own target head. Unlike ``critic_loss``
    V never sees an action the dataset does not hold (``target_q_i_data``: the target
    critic at the dataset's (s, a))."""
    chex.assert_rank([q1, q2, v1, v2, target_q1_data, target_q2_data, target_v1_next, target_v2_next, reward, done],
                     1)
    chex.assert_equal_shape([q1, q2, v1, v2, target_q1_data, target_q2_data, target_v1_next, target_v2_next, reward,
                             done])
    q1_loss = _mse(q1, td_targets(reward, done, target_v1_next, gamma))
    q2_loss = _mse(q2, td_targets(reward, done, target_v2_next, gamma))
    v1_loss = expectile_loss(jax.lax.stop_gradient(target_q1_data) - v1, expectile)
    v2_loss = expectile_loss(jax.lax.stop_gradient(target_q2_data) - v2, expectile)
    loss = q1_loss + q2_loss + v1_loss + v2_loss
    return loss, {"q1_loss": q1_loss, "q2_loss": q2_loss, "v1_loss": v1_loss, "v2_loss": v2_loss, "loss": loss,
                  "q_mean": 0.5 * jnp.mean(q1 + q2), "v_mean": 0.5 * jnp.mean(v1 + v2)}


def awr_weights(advantage: chex.Array, beta: float, max_weight: float) -> jax.Array:
    """AWR's per-sample weights min(exp(beta * A), max_weight), [B], constants."""
    chex.assert_rank(advantage, 1)
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(beta * advantage.astype(jnp.float32)), max_weight))


def awr_loss(token_logp: chex.Array, token_mask: chex.Array, weight: chex.Array) -> jax.Array:
    """Advantage-weighted regression: -mean_b(w_b * sum_t log pi(a_t | s_b)) over the real
    tokens of each dataset utterance (``weight`` from ``awr_weights``)."""
    chex.assert_rank([token_logp, token_mask], 2)
    chex.assert_equal_shape([token_logp, token_mask])
    chex.assert_equal_shape_prefix([token_logp, weight], 1)
    seq_logp = jnp.sum(jnp.where(token_mask, token_logp, 0.0), axis=-1)
    return -jnp.mean(jax.lax.stop_gradient(weight) * seq_logp)


def token_policy_gradient_loss(token_logp: chex.Array, token_mask: chex.Array,
                               token_advantage: chex.Array) -> jax.Array:
    """Token-level REINFORCE with a per-token advantage:
    -mean_b(sum_t log pi(a_t | s, a_<t) * A_bt) over real tokens, A a constant.

    With A_bt = Q(s, a) - b(s, a_<t), any b that does not read a_t leaves the expected
    gradient that of ``policy_gradient_loss`` with A = Q (the baseline's term has mean 0
    under a_t ~ pi), and a b close to E[Q | a_<t] lowers its variance.
    """
    chex.assert_rank([token_logp, token_mask, token_advantage], 2)
    chex.assert_equal_shape([token_logp, token_mask, token_advantage])
    weighted = jnp.where(token_mask, token_logp * jax.lax.stop_gradient(token_advantage), 0.0)
    return -jnp.mean(jnp.sum(weighted, axis=-1))


def token_value_loss(values: chex.Array, token_mask: chex.Array, target: chex.Array) -> jax.Array:
    """Mean over real tokens of (V(s, a_<t) - target_b)^2: every prefix of an utterance
    regresses on the utterance's value (``values`` [B, T], ``target`` [B], a constant)."""
    chex.assert_rank([values, token_mask], 2)
    chex.assert_rank(target, 1)
    chex.assert_equal_shape([values, token_mask])
    err = jnp.square(values - jax.lax.stop_gradient(target)[:, None])
    return jnp.sum(jnp.where(token_mask, err, 0.0)) / jnp.maximum(jnp.sum(token_mask), 1)


def gae_advantages(rewards: chex.Array, values: chex.Array, mask: chex.Array, gamma: float,
                   lam: float) -> jax.Array:
    """Generalized advantage estimates over the real tokens of whole episodes, [B, S].

    ``rewards``/``values``/``mask`` [B, S]: row b holds episode b's action tokens in the
    order they were said (padding anywhere, ``mask`` False, is skipped: the token before
    it bootstraps from the next real token). ``values[b, s]`` = V(state before token s).
    A_s = delta_s + gamma * lam * A_next, delta_s = r_s + gamma * V_next - V_s, with
    V_next = A_next = 0 after an episode's last real token (it ended). 0 at padding.
    """
    chex.assert_rank([rewards, values, mask], 2)
    chex.assert_equal_shape([rewards, values, mask])
    rewards = jax.lax.stop_gradient(rewards.astype(jnp.float32))
    values = jax.lax.stop_gradient(values.astype(jnp.float32))

    def step(carry: tuple[jax.Array, jax.Array], x: tuple[jax.Array, ...]) -> tuple[tuple[jax.Array, jax.Array],
                                                                                   jax.Array]:
        next_value, next_adv = carry
        r, v, m = x
        adv = r + gamma * next_value - v + gamma * lam * next_adv
        carry = (jnp.where(m, v, next_value), jnp.where(m, adv, next_adv))
        return carry, jnp.where(m, adv, 0.0)

    zeros = jnp.zeros(rewards.shape[0], jnp.float32)
    _, adv = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    return adv.T


def whiten(x: chex.Array, mask: chex.Array) -> jax.Array:
    """(x - mean) / std over the entries where ``mask`` holds (0 elsewhere), a constant."""
    chex.assert_equal_shape([x, mask])
    x = jax.lax.stop_gradient(x.astype(jnp.float32))
    n = jnp.maximum(jnp.sum(mask), 1)
    mean = jnp.sum(jnp.where(mask, x, 0.0)) / n
    var = jnp.sum(jnp.where(mask, jnp.square(x - mean), 0.0)) / n
    return jnp.where(mask, (x - mean) * jax.lax.rsqrt(var + 1e-8), 0.0)


def ppo_policy_loss(token_logp: chex.Array, old_token_logp: chex.Array, advantage: chex.Array,
                    token_mask: chex.Array, clip: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO's clipped surrogate, -mean over real tokens of
    min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A), ratio = pi / pi_old per token
    (all [B, T]; ``old_token_logp`` and ``advantage`` constants). Metrics: the fraction
    of tokens the clip binds, and the k3 estimate of KL(pi_old || pi) per token."""
    chex.assert_rank([token_logp, old_token_logp, advantage, token_mask], 2)
    chex.assert_equal_shape([token_logp, old_token_logp, advantage, token_mask])
    n = jnp.maximum(jnp.sum(token_mask), 1)
    log_ratio = jnp.where(token_mask, token_logp - jax.lax.stop_gradient(old_token_logp), 0.0)
    ratio = jnp.exp(log_ratio)
    advantage = jax.lax.stop_gradient(advantage)
    unclipped, clipped = -advantage * ratio, -advantage * jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
    loss = jnp.sum(jnp.where(token_mask, jnp.maximum(unclipped, clipped), 0.0)) / n
    ratio, log_ratio = jax.lax.stop_gradient(ratio), jax.lax.stop_gradient(log_ratio)
    return loss, {"clip_fraction": jnp.sum(token_mask & (clipped > unclipped)) / n,
                  "approx_kl": jnp.sum(jnp.where(token_mask, ratio - 1.0 - log_ratio, 0.0)) / n}


def ppo_value_loss(values: chex.Array, old_values: chex.Array, returns: chex.Array, token_mask: chex.Array,
                   clip: float) -> jax.Array:
    """PPO's clipped value loss, 0.5 * mean over real tokens of
    max((V - R)^2, (V_old + clip(V - V_old, -clip, clip) - R)^2), all [B, T]
    (``old_values`` and ``returns`` constants)."""
    chex.assert_rank([values, old_values, returns, token_mask], 2)
    chex.assert_equal_shape([values, old_values, returns, token_mask])
    old_values, returns = jax.lax.stop_gradient(old_values), jax.lax.stop_gradient(returns)
    clipped = old_values + jnp.clip(values - old_values, -clip, clip)
    err = jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns))
    return 0.5 * jnp.sum(jnp.where(token_mask, err, 0.0)) / jnp.maximum(jnp.sum(token_mask), 1)
