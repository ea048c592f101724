"""Online ArCHer's two update phases, each one jitted call with no host round trip.

``critic_phase`` runs ``hp.critic_epochs`` double-critic steps and ``actor_phase``
``hp.actor_epochs`` token-level policy-gradient steps, each phase as one
``lax.scan`` over steps. Every step samples its own minibatch from the on-device
replay buffer and a fresh utterance a ~ pi(.|s) from the current actor.

Both are module-level pure functions ``(state, buffer) -> (state, metrics)``; the
models, optimizer, hyper-parameters and token bridge are bound with
``functools.partial`` and ``make_phases`` jits them once with explicit shardings,
donating the state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from archer_jax import critic_probe, length_buckets, losses, multihost, replay, rollout, sampling
from archer_jax import train_state
from archer_jax import sharding as sharding_lib
from archer_jax.algorithms import Iterate, PhaseClock, Stage
from archer_jax.data.tokenization import PromptTemplate
from archer_jax.train_state import ArcherState, step_key

# (ids [B, L], mask [B, L]) in the actor's vocabulary -> the same in the critic's.
Bridge = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
Metrics = dict[str, jax.Array]
# Rollout seeds: config.seed * SEED_STRIDE + iteration * rollout_size + game (never an
# evaluation seed, rollout.EVAL_SEED_BASE + game).
SEED_STRIDE = 1_000_000


@dataclasses.dataclass(frozen=True)
class ArcherHParams:
    """Static hyper-parameters of the update phases (hashable, so safe to bind into jit)."""

    gamma: float = 0.95  # discount per turn
    tau: float = 0.1  # Polyak step of the target critic, after every critic step
    critic_batch_size: int = 256  # transitions per critic step
    actor_batch_size: int = 256  # states per actor step
    critic_epochs: int = 50  # critic steps per phase
    actor_epochs: int = 3  # actor steps per phase
    max_new_tokens: int = 32  # length of a sampled utterance
    temperature: float = 1.0  # sampling temperature of a ~ pi(.|s) in the critic phase (V targets)
    # Temperature T > 0 of the policy the actor phase trains: it samples a ~ pi_T(.|s)
    # and differentiates log pi_T(a|s) (logits / T), so the update is an unbiased
    # policy gradient of pi_T at every T. 1 = the paper's.
    actor_temperature: float = 1.0
    # Utterances sampled per state in the actor phase. 1 = the paper's advantage
    # min(Q1, Q2)(s, a) - min(V1, V2)(s); k >= 2 = leave-one-out: A_i = Q(s, a_i) minus
    # the mean Q of the other k - 1 samples at s, so only the critic's ranking within
    # a state reaches the actor (unbiased, and free of V's error).
    actor_samples: int = 1
    stop_ids: tuple[int, ...] = ()  # utterance terminator ids (e.g. the id of "\n")
    pad_id: int = 0  # actor pad id written after a sampled utterance's terminator
    # Weight of KL(pi_T || pi_ref,T) toward the policy ArCHer started from
    # (state.ref_actor_params), summed per utterance: each sample's weight is
    # penalised by kl_coef * (log pi_T(a|s) - log pi_ref,T(a|s)), whose expected
    # policy gradient is exactly kl_coef * grad KL. 0 = none, as in the paper.
    kl_coef: float = 0.0
    # Weight of the mass-covering KL(pi_ref,T || pi_T), summed per utterance: at each
    # actor state one utterance a ~ pi_ref,T(.|s) and the loss -forward_kl_coef *
    # log pi_T(a|s), whose expected gradient is exactly forward_kl_coef * grad KL.
    # KL(pi || pi_ref) alone is mode-seeking: a policy sitting on one of pi_ref's modes
    # pays little for it, and its score-function gradient cannot reach modes pi no
    # longer samples, so a policy that follows a critic's error onto a bad mode never
    # comes back. This term keeps every mode of pi_ref within reach. 0 = none, as in
    # the paper.
    forward_kl_coef: float = 0.0
    # The policy whose V the critic learns: 1 = a ~ pi (ArCHer); k > 1 = CHAI's, the
    # best of k utterances a ~ pi by the target critic's min(Q1, Q2) (``best_of_k``).
    candidates: int = 1
    # beta of the critic's mixed Monte-Carlo Q target (1 - beta) (r + gamma V(s')) + beta G,
    # G the row's discounted return (``losses.critic_loss``); 0 = the paper's TD target.
    mc_mix: float = 0.0
    # Weight of an advantage-weighted regression term on the replay buffer's own turns
    # (AWAC; the actor of offline ArCHer, ``offline_archer``): -mean(w log pi_T(a|s)) over
    # the sampled (s, a) of the buffer, w = min(exp(awr_beta * A), awr_max_weight), A =
    # min(Q1, Q2)(s, a) - min(V1, V2)(s) by the online critic, V the current policy's value.
    # It moves pi_T toward the buffer's better-than-pi actions even where pi_T's own
    # samples coincide (a peaked policy's policy gradient is zero there). 0 = none, as in the paper.
    awr_coef: float = 0.0
    awr_beta: float = 1.0
    awr_max_weight: float = 20.0
    # Widths the update phases cut observations to, per group of rows of similar length
    # (``length_buckets.apply``): () = every row at the full width. ``bucket_chunks``:
    # the groups a batch is split into.
    length_buckets: tuple[int, ...] = ()
    bucket_chunks: int = 1
    # The actor's framing of each observation (config.tokens.actor_template): ids read
    # before and after it by the actor only; the buffer and the critic keep the bare one.
    prompt: PromptTemplate = PromptTemplate()

    @property
    def rows(self) -> dict[str, Any]:
        """The length grouping as keyword arguments (``buckets``, ``chunks``) of the
        row-wise calls below."""
        return {"buckets": self.length_buckets, "chunks": self.bucket_chunks}

    @property
    def actor_rows(self) -> dict[str, Any]:
        """``rows`` and the actor's ``prompt``: the keyword arguments of the actor's calls."""
        return {**self.rows, "prompt": self.prompt}

    def __post_init__(self) -> None:
        for name in ("critic_batch_size", "actor_batch_size", "critic_epochs", "actor_epochs", "max_new_tokens",
                     "actor_samples", "candidates", "bucket_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"ArcherHParams.{name} = {getattr(self, name)}: must be >= 1")
        if not 0.0 <= self.mc_mix <= 1.0:
            raise ValueError(f"ArcherHParams.mc_mix = {self.mc_mix}: must lie in [0, 1]")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"ArcherHParams.gamma = {self.gamma}: must lie in [0, 1]")
        if self.temperature < 0:
            raise ValueError(f"ArcherHParams.temperature = {self.temperature}: must be >= 0")
        if self.actor_temperature <= 0:
            raise ValueError(f"ArcherHParams.actor_temperature = {self.actor_temperature}: must be > 0 (the "
                             "policy gradient differentiates log pi_T, which T = 0 does not define)")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"ArcherHParams.tau = {self.tau}: must lie in (0, 1]")
        if self.awr_max_weight <= 0:
            raise ValueError(f"ArcherHParams.awr_max_weight = {self.awr_max_weight}: must be > 0")
        for name in ("kl_coef", "forward_kl_coef", "awr_coef", "awr_beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"ArcherHParams.{name} = {getattr(self, name)}: must be >= 0")


def hparams(config: Any, stop_ids: Sequence[int], pad_id: int,
            prompt: PromptTemplate = PromptTemplate()) -> ArcherHParams:
    """The phases' hyper-parameters of a run config (``config.archer``, ``config.tokens``;
    ``prompt``: ``config.tokens.actor_template`` in the actor's ids)."""
    a = config.archer
    return ArcherHParams(
        gamma=a.gamma, tau=a.tau, critic_batch_size=a.batch_size, actor_batch_size=a.actor_batch_size,
        critic_epochs=a.critic_epochs, actor_epochs=max(a.actor_epochs, 1), max_new_tokens=config.tokens.action_len,
        temperature=a.temperature, actor_temperature=a.actor_temperature, actor_samples=a.actor_samples,
        kl_coef=a.kl_coef, forward_kl_coef=a.forward_kl_coef, mc_mix=a.mc_mix, awr_coef=a.awr_coef,
        awr_beta=a.awr_beta, awr_max_weight=a.awr_max_weight, stop_ids=tuple(stop_ids), pad_id=pad_id,
        length_buckets=tuple(config.tokens.length_buckets), bucket_chunks=config.tokens.bucket_chunks, prompt=prompt)


def sample_batch(buffer: replay.ReplayBuffer, rng: jax.Array, batch_size: int, mesh: Mesh | None,
                 rules: Sequence[tuple[str, Any]]) -> replay.Transitions:
    """A uniform minibatch of filled rows, split over the data axes when ``mesh`` is given."""
    idx = replay.sample_indices(rng, buffer.size, batch_size)
    return replay.constrain_batch(replay.gather(buffer, idx), mesh, rules)


def action_logits(actor: nn.Module, params: Any, obs: jax.Array, obs_mask: jax.Array,
                  action: jax.Array, action_mask: jax.Array, *, buckets: Sequence[int] = (),
                  chunks: int = 1, prompt: PromptTemplate = PromptTemplate()) -> jax.Array:
    """The logits [B, T, V] that predict each action token given obs, from ONE forward
    pass over [obs (left-padded); action (right-padded)] (rows grouped by length over
    ``buckets`` in ``chunks`` groups: ``length_buckets.apply``); the observation framed
    by ``prompt`` (``actor_view``).

    Positions come from the joint mask, so the action continues right after the
    observation's last real token; logits at column P - 1 + t predict action token t.
    """
    action_len = action.shape[1]
    obs, obs_mask, buckets = actor_view(prompt, obs, obs_mask, buckets)

    def logits(width: int, obs: jax.Array, obs_mask: jax.Array, action: jax.Array, action_mask: jax.Array):
        ids = jnp.concatenate([obs[:, -width:], action], axis=1)
        mask = jnp.concatenate([obs_mask[:, -width:], action_mask], axis=1)
        return actor.apply({"params": params}, ids, mask, logits_start=width - 1).logits[:, :action_len]

    return length_buckets.apply(logits, obs_mask, (obs, obs_mask, action, action_mask), buckets=buckets,
                                chunks=chunks)


def action_logprobs(actor: nn.Module, params: Any, obs: jax.Array, obs_mask: jax.Array,
                    action: jax.Array, action_mask: jax.Array, temperature: float = 1.0, *,
                    buckets: Sequence[int] = (), chunks: int = 1,
                    prompt: PromptTemplate = PromptTemplate()) -> jax.Array:
    """log pi_T(action tokens | obs) with pi_T = softmax(logits / T), [B, T], 0 at
    padding (see ``action_logits``)."""
    logits = action_logits(actor, params, obs, obs_mask, action, action_mask, buckets=buckets, chunks=chunks,
                           prompt=prompt)
    if temperature != 1.0:
        logits = logits.astype(jnp.float32) / temperature
    return losses.sequence_logprobs(logits, action, action_mask)


def generate(actor: nn.Module, params: Any, obs: jax.Array, obs_mask: jax.Array, rng: jax.Array,
             temperature: jax.Array | float, hp: ArcherHParams) -> sampling.Generation:
    """Utterances a ~ pi_T(.|s) of ``hp``'s length, the rows grouped by length, each
    observation framed by ``hp.prompt``."""
    obs, obs_mask, buckets = actor_view(hp.prompt, obs, obs_mask, hp.length_buckets)
    return length_buckets.generate(actor, params, obs, obs_mask, rng, temperature, max_new_tokens=hp.max_new_tokens,
                                   stop_ids=hp.stop_ids, pad_id=hp.pad_id, buckets=buckets, chunks=hp.bucket_chunks)


def actor_view(prompt: PromptTemplate, obs: jax.Array, obs_mask: jax.Array,
               buckets: Sequence[int]) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """An observation as the actor reads it: framed by the ``prompt``'s ids (still
    left-padded), with the length ``buckets`` widened to match. The critic reads the
    bare observation (``critic_view``)."""
    obs, obs_mask = prompt.wrap(obs, obs_mask)
    return obs, obs_mask, prompt.widen(buckets)


def critic_apply(critic: nn.Module, params: Any, obs: jax.Array, obs_mask: jax.Array, act: jax.Array,
                 act_mask: jax.Array, *, buckets: Sequence[int] = (), chunks: int = 1) -> Any:
    """The critic's ``CriticOutput`` (Q and V heads) of (obs, act), rows grouped by length."""
    def call(width: int, obs: jax.Array, obs_mask: jax.Array, act: jax.Array, act_mask: jax.Array) -> Any:
        return critic.apply({"params": params}, obs[:, -width:], obs_mask[:, -width:], act, act_mask)

    return length_buckets.apply(call, obs_mask, (obs, obs_mask, act, act_mask), buckets=buckets, chunks=chunks)


def critic_values(critic: nn.Module, params: Any, obs: jax.Array, obs_mask: jax.Array, *,
                  buckets: Sequence[int] = (), chunks: int = 1) -> tuple[jax.Array, jax.Array]:
    """The critic's (V1, V2) of obs, rows grouped by length."""
    def call(width: int, obs: jax.Array, obs_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        return critic.apply({"params": params}, obs[:, -width:], obs_mask[:, -width:], method="values")

    return length_buckets.apply(call, obs_mask, (obs, obs_mask), buckets=buckets, chunks=chunks)


def _sample_actions(actor: nn.Module, params: Any, batch: replay.Transitions, rng: jax.Array,
                    hp: ArcherHParams, temperature: float) -> sampling.Generation:
    return generate(actor, params, batch.obs, batch.obs_mask, rng, temperature, hp)


def critic_view(bridge: Bridge, obs: jax.Array, obs_mask: jax.Array, hidden: jax.Array | None = None,
                hidden_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """A state as the critic reads it, in its vocabulary: the observation, preceded by
    what the environment hides (``hidden`` [B, H], a privileged critic's input) when
    given.

    A critic Q(h, s, a) of the history h and the hidden state s keeps the actor's
    gradient unbiased: the rollouts draw s from its posterior given h, and E over s of
    Q(h, s, a) is the history critic's Q(h, a) (Baisero and Amato, AAMAS 2022). The
    actor never reads ``hidden``. The two left-padded halves are packed into one
    left-padded row: the hidden text right before the observation's first token, every
    padding column to the left (the critic reads positions and pooling from the mask, so
    only the float rounding depends on where padding sits). A row then spans its real
    tokens only, which the length groups (``length_buckets``) need to cut anything.
    """
    if hidden is not None:
        obs, obs_mask = jnp.concatenate([hidden, obs], axis=1), jnp.concatenate([hidden_mask, obs_mask], axis=1)
        order = jnp.argsort(obs_mask.astype(jnp.int8), axis=1, stable=True)  # padding first, each part in order
        obs, obs_mask = jnp.take_along_axis(obs, order, axis=1), jnp.take_along_axis(obs_mask, order, axis=1)
    return bridge(obs, obs_mask)


def best_of_k(actor: nn.Module, critic: nn.Module, actor_params: Any, critic_params: Any, obs: jax.Array,
              obs_mask: jax.Array, rng: jax.Array, temperature: jax.Array | float, *, k: int, hp: ArcherHParams,
              bridge: Bridge) -> sampling.Generation:
    """CHAI's acting rule: k utterances a ~ pi_T(.|s) per state (``temperature``: a
    scalar or [B]), and of them the one with the highest min(Q1, Q2)(s, a) under
    ``critic_params``; ties go to the first sampled."""
    b = obs.shape[0]
    many_obs, many_mask = jnp.repeat(obs, k, axis=0), jnp.repeat(obs_mask, k, axis=0)
    temperature = jnp.asarray(temperature, jnp.float32)
    if temperature.ndim:
        temperature = jnp.repeat(temperature, k)
    gen = generate(actor, actor_params, many_obs, many_mask, rng, temperature, hp)
    c_obs, c_mask = bridge(many_obs, many_mask)
    act, act_mask = bridge(gen.tokens, gen.mask)
    out = critic_apply(critic, critic_params, c_obs, c_mask, act, act_mask, **hp.rows)
    best = jnp.argmax(jnp.minimum(out.q1, out.q2).reshape(b, k), axis=1)
    return jax.tree.map(lambda x: x[jnp.arange(b) * k + best], gen)


def _critic_step(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, critic: nn.Module,
                 hp: ArcherHParams, bridge: Bridge, tx: optax.GradientTransformation,
                 mesh: Mesh | None, rules: Sequence[tuple[str, Any]]) -> tuple[ArcherState, Metrics]:
    k_batch, k_action = jax.random.split(step_key(state))
    batch = sample_batch(buffer, k_batch, hp.critic_batch_size, mesh, rules)
    if hp.candidates > 1:
        if batch.hidden is not None:  # best_of_k picks what the agent says: it must not read the hidden state
            raise ValueError("CHAI's best-of-k acting (ArcherHParams.candidates > 1) cannot use a privileged critic")
        pi = best_of_k(actor, critic, state.actor_params, state.target_critic_params, batch.obs, batch.obs_mask,
                       k_action, hp.temperature, k=hp.candidates, hp=hp, bridge=bridge)
    else:
        pi = _sample_actions(actor, state.actor_params, batch, k_action, hp, hp.temperature)

    obs, obs_mask = critic_view(bridge, batch.obs, batch.obs_mask, batch.hidden, batch.hidden_mask)
    act, act_mask = bridge(batch.action, batch.action_mask)
    next_obs, next_mask = critic_view(bridge, batch.next_obs, batch.next_obs_mask, batch.hidden, batch.hidden_mask)
    pi_act, pi_mask = bridge(pi.tokens, pi.mask)
    target = state.target_critic_params
    # V_i(s) regresses on the TARGET Q_i of an utterance the current actor would say.
    target_pi = critic_apply(critic, target, obs, obs_mask, pi_act, pi_mask, **hp.rows)
    target_v1_next, target_v2_next = critic_values(critic, target, next_obs, next_mask, **hp.rows)

    def loss_fn(params: Any) -> tuple[jax.Array, Metrics]:
        out = critic_apply(critic, params, obs, obs_mask, act, act_mask, **hp.rows)
        return losses.critic_loss(out.q1, out.q2, out.v1, out.v2, target_pi.q1, target_pi.q2,
                                  target_v1_next, target_v2_next, batch.reward, batch.done, hp.gamma,
                                  batch.mc_return, hp.mc_mix)

    state, metrics = critic_update(state, loss_fn, tx=tx, tau=hp.tau)
    return state.replace(step=state.step + 1), metrics


def critic_update(state: ArcherState, loss_fn: Callable[[Any], tuple[jax.Array, Metrics]], *,
                  tx: optax.GradientTransformation, tau: float) -> tuple[ArcherState, Metrics]:
    """One optimizer step of the critic on ``loss_fn(params) -> (loss, metrics)``, then
    the Polyak step of the target critic; metrics prefixed ``critic/``, with the
    gradient norm. ``state.step`` is the caller's to advance."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.critic_params)
    updates, opt_state = tx.update(grads, state.critic_opt_state, state.critic_params)
    params = optax.apply_updates(state.critic_params, updates)
    state = state.replace(critic_params=params, critic_opt_state=opt_state,
                          target_critic_params=optax.incremental_update(params, state.target_critic_params, tau))
    metrics = {f"critic/{k}": v for k, v in metrics.items()}
    metrics["critic/grad_norm"] = optax.tree.norm(grads)
    return state, metrics


def _actor_step(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, critic: nn.Module,
                hp: ArcherHParams, bridge: Bridge, tx: optax.GradientTransformation,
                mesh: Mesh | None, rules: Sequence[tuple[str, Any]], baseline: nn.Module | None = None,
                baseline_tx: optax.GradientTransformation | None = None) -> tuple[ArcherState, Metrics]:
    k_batch, k_action = jax.random.split(step_key(state))
    batch = sample_batch(buffer, k_batch, hp.actor_batch_size, mesh, rules)
    k = hp.actor_samples
    # k utterances a ~ pi_T(.|s) per state: rows b*k ... b*k + k - 1 share state b.
    obs, obs_mask = replay.constrain_batch((jnp.repeat(batch.obs, k, axis=0),
                                            jnp.repeat(batch.obs_mask, k, axis=0)), mesh, rules)
    pi = generate(actor, state.actor_params, obs, obs_mask, k_action, hp.actor_temperature, hp)

    # The ONLINE critic scores every fresh utterance (no normalisation).
    hidden = (None, None) if batch.hidden is None else replay.constrain_batch(
        (jnp.repeat(batch.hidden, k, axis=0), jnp.repeat(batch.hidden_mask, k, axis=0)), mesh, rules)
    c_obs, c_obs_mask = critic_view(bridge, obs, obs_mask, *hidden)
    pi_act, pi_mask = bridge(pi.tokens, pi.mask)
    values = critic_apply(critic, state.critic_params, c_obs, c_obs_mask, pi_act, pi_mask, **hp.rows)
    q = jnp.minimum(values.q1, values.q2)

    if (hp.kl_coef or hp.forward_kl_coef) and state.ref_actor_params is None:
        raise ValueError("ArcherHParams.kl_coef / forward_kl_coef > 0 need the reference actor: "
                         "create_state(..., reference=True)")
    ref_params = train_state.reference_params(state) if state.ref_actor_params is not None else None
    ref_logp = (action_logprobs(actor, ref_params, obs, obs_mask, pi.tokens, pi.mask,
                                hp.actor_temperature, **hp.actor_rows) if hp.kl_coef else None)
    # One utterance of the reference policy per state, and its log pi_ref,T (the
    # mass-covering anchor's samples; their log-probs only feed its metric).
    ref = (_sample_actions(actor, ref_params, batch, jax.random.fold_in(k_action, 1), hp,
                           hp.actor_temperature) if hp.forward_kl_coef else None)
    ref_self_logp = (action_logprobs(actor, ref_params, batch.obs, batch.obs_mask, ref.tokens, ref.mask,
                                     hp.actor_temperature, **hp.actor_rows) if ref is not None else None)

    awr_weight = None
    if hp.awr_coef:  # AWR on the buffer's own turns: the online critic's advantage of the stored action
        d_obs, d_obs_mask = critic_view(bridge, batch.obs, batch.obs_mask, batch.hidden, batch.hidden_mask)
        d_act, d_act_mask = bridge(batch.action, batch.action_mask)
        d_values = critic_apply(critic, state.critic_params, d_obs, d_obs_mask, d_act, d_act_mask, **hp.rows)
        awr_advantage = losses.advantages(d_values.q1, d_values.q2, d_values.v1, d_values.v2)
        awr_weight = losses.awr_weights(awr_advantage, hp.awr_beta, hp.awr_max_weight)

    def weights(logp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(the policy-gradient weight of each sample, its KL sample), both constants."""
        kl = (losses.sequence_kl_sample(jax.lax.stop_gradient(logp), ref_logp, pi.mask) if hp.kl_coef
              else jnp.zeros_like(q))
        reward = q - hp.kl_coef * kl
        if k == 1:
            return reward - jnp.minimum(values.v1, values.v2), kl
        return losses.leave_one_out_advantages(reward.reshape(-1, k)).reshape(-1), kl

    token_values = None
    if baseline is not None:
        # The token-level baseline V(s, a_<t) of every sampled utterance (read before its
        # own update), then one regression step of it toward the utterance's min Q.
        def baseline_loss(params: Any) -> tuple[jax.Array, jax.Array]:
            values = baseline.apply({"params": params}, obs, obs_mask, pi.tokens, pi.mask)
            return losses.token_value_loss(values, pi.mask, q), values

        (b_loss, token_values), b_grads = jax.value_and_grad(baseline_loss, has_aux=True)(state.baseline_params)
        b_updates, b_opt_state = baseline_tx.update(b_grads, state.baseline_opt_state, state.baseline_params)
        state = state.replace(baseline_params=optax.apply_updates(state.baseline_params, b_updates),
                              baseline_opt_state=b_opt_state)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        logp = action_logprobs(actor, params, obs, obs_mask, pi.tokens, pi.mask, hp.actor_temperature,
                               **hp.actor_rows)
        weight, kl = weights(logp)
        if token_values is None:
            pg = losses.policy_gradient_loss(logp, pi.mask, weight)
        else:  # A_t = (Q - kl_coef * kl) - V(s, a_<t): the baseline replaces the utterance-level one
            reward = q - hp.kl_coef * kl
            pg = losses.token_policy_gradient_loss(logp, pi.mask, reward[:, None] - token_values)
            weight = reward - token_values[:, 0]
        forward_kl = jnp.zeros(())
        if ref is not None:  # KL(pi_ref || pi) per utterance, up to pi_ref's (constant) entropy in the loss
            ref_logp_pi = action_logprobs(actor, params, batch.obs, batch.obs_mask, ref.tokens, ref.mask,
                                          hp.actor_temperature, **hp.actor_rows)
            forward_kl = jnp.mean(losses.sequence_kl_sample(ref_self_logp, ref_logp_pi, ref.mask))
            pg = pg + hp.forward_kl_coef * forward_kl
        awr = jnp.zeros(())
        if awr_weight is not None:
            data_logp = action_logprobs(actor, params, batch.obs, batch.obs_mask, batch.action, batch.action_mask,
                                        hp.actor_temperature, **hp.actor_rows)
            awr = losses.awr_loss(data_logp, batch.action_mask, awr_weight)
            pg = pg + hp.awr_coef * awr
        return pg, (weight, kl, logp, forward_kl, awr)

    (loss, (advantage, kl, logp, forward_kl, awr)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.actor_params)
    updates, opt_state = tx.update(grads, state.actor_opt_state, state.actor_params)
    state = state.replace(step=state.step + 1, actor_params=optax.apply_updates(state.actor_params, updates),
                          actor_opt_state=opt_state)
    metrics = {
        "actor/pg_loss": loss,
        "actor/advantage_mean": jnp.mean(advantage),
        "actor/advantage_std": jnp.std(advantage),
        "actor/logp_mean": jnp.sum(logp) / jnp.maximum(jnp.sum(pi.mask), 1),
        "actor/grad_norm": optax.tree.norm(grads),
    }
    if k > 1:  # how far apart the critic puts the samples of one state, and how often they coincide
        metrics["actor/q_within_std"] = jnp.mean(jnp.std(q.reshape(-1, k), axis=1))
        metrics["actor/identical_samples"] = losses.identical_sample_fraction(pi.tokens, pi.mask, k)
    if hp.kl_coef:
        metrics["actor/kl"] = jnp.mean(kl)  # nats per utterance
    if hp.forward_kl_coef:
        metrics["actor/forward_kl"] = forward_kl  # KL(pi_ref || pi), nats per utterance
    if awr_weight is not None:
        metrics["actor/awr_loss"] = awr
        metrics["actor/awr_advantage_std"] = jnp.std(awr_advantage)
        metrics["actor/awr_weight_mean"] = jnp.mean(awr_weight)
        metrics["actor/awr_weight_clipped"] = jnp.mean(awr_weight >= hp.awr_max_weight)
    if baseline is not None:
        metrics["baseline/loss"] = b_loss
        metrics["baseline/value_mean"] = jnp.sum(jnp.where(pi.mask, token_values, 0.0)) / jnp.maximum(
            jnp.sum(pi.mask), 1)
    return state, metrics


def critic_scores(state: ArcherState, batch: replay.Transitions, *, critic: nn.Module, bridge: Bridge,
                  buckets: Sequence[int] = (), chunks: int = 1) -> tuple[jax.Array, jax.Array]:
    """(min(Q1, Q2)(s, a), min(V1, V2)(s)) of the ONLINE critic on a batch of
    transitions, [B] each: what the actor phase would read. The rows run in ``chunks``
    groups, one after another, each cut to the shortest of ``buckets`` that holds it
    (``critic_apply``; without buckets, at the full width: ``length_buckets.in_groups``)."""
    obs, obs_mask = critic_view(bridge, batch.obs, batch.obs_mask, batch.hidden, batch.hidden_mask)
    act, act_mask = bridge(batch.action, batch.action_mask)
    rows = (obs, obs_mask, act, act_mask)
    score = functools.partial(critic_apply, critic, state.critic_params, buckets=buckets, chunks=chunks)
    grouped = len(length_buckets.widths(buckets, obs.shape[1])) > 1  # critic_apply groups the rows itself
    out = score(*rows) if grouped else length_buckets.in_groups(score, rows, chunks)
    return jnp.minimum(out.q1, out.q2), jnp.minimum(out.v1, out.v2)


def probe_scores(run: Any) -> Callable[[ArcherState, replay.Transitions], tuple[jax.Array, jax.Array]]:
    """``critic_scores`` jitted for ``collect``'s probe of a rollout batch's rows
    ([max_turns * rollout_batch]): in groups of one critic minibatch, grouped by length as
    the phases' rows. One call on every row at the full width cost 1.8-2.0 s on the Subset
    demo's 640 rows, in groups 0.4 s (docs/benchmarks.md)."""
    rows = run.runner.max_turns * run.config.archer.rollout_batch
    return jax.jit(functools.partial(critic_scores, critic=run.critic, bridge=run.bridge,
                                     buckets=run.hp.length_buckets, chunks=max(1, rows // run.hp.critic_batch_size)))


def scan_steps(step_fn: Callable[[ArcherState, Any], tuple[ArcherState, Metrics]], state: ArcherState,
               buffer: Any, length: int) -> tuple[ArcherState, Metrics]:
    """``length`` steps in one lax.scan; metrics averaged over the steps."""
    state, metrics = jax.lax.scan(lambda s, _: step_fn(s, buffer), state, length=length)
    return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)


def critic_phase(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, critic: nn.Module,
                 hp: ArcherHParams, bridge: Bridge, tx: optax.GradientTransformation, mesh: Mesh | None = None,
                 rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> tuple[ArcherState, Metrics]:
    """``hp.critic_epochs`` critic steps (sample, a ~ pi, targets, clipped Adam, Polyak).

    ``tx``: the critic optimizer. ``mesh``: when given, minibatches are split over its
    data axes ('batch' in ``rules``). The buffer must hold at least one transition.
    """
    step = functools.partial(_critic_step, actor=actor, critic=critic, hp=hp, bridge=bridge, tx=tx, mesh=mesh,
                             rules=rules)
    return scan_steps(step, state, buffer, hp.critic_epochs)


def actor_phase(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, critic: nn.Module,
                hp: ArcherHParams, bridge: Bridge, tx: optax.GradientTransformation, mesh: Mesh | None = None,
                rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES, baseline: nn.Module | None = None,
                baseline_tx: optax.GradientTransformation | None = None) -> tuple[ArcherState, Metrics]:
    """``hp.actor_epochs`` token-level REINFORCE steps of pi_T (T = hp.actor_temperature)
    weighted by the online critic's utterance-level advantage (``hp.actor_samples``
    decides its baseline). ``tx``: the actor optimizer. ``baseline`` (a
    ``value_heads.TokenValue``, trained by ``baseline_tx`` in the same steps): the
    paper's variant with a token-level baseline, A_t = Q(s, a) - V(s, a_<t)."""
    step = functools.partial(_actor_step, actor=actor, critic=critic, hp=hp, bridge=bridge, tx=tx, mesh=mesh,
                             rules=rules, baseline=baseline, baseline_tx=baseline_tx)
    return scan_steps(step, state, buffer, hp.actor_epochs)


class Phases(NamedTuple):
    critic: Callable[[ArcherState, replay.ReplayBuffer], tuple[ArcherState, Metrics]]
    actor: Callable[[ArcherState, replay.ReplayBuffer], tuple[ArcherState, Metrics]]


def jit_phase(phase: Callable[..., tuple[ArcherState, Metrics]], state_shardings: ArcherState,
              data_shardings: Any, mesh: Mesh, models: Sequence[nn.Module | None] = (),
              ) -> Callable[..., tuple[ArcherState, Metrics]]:
    """Jits ``phase(state, data)`` once: explicit shardings, the state donated, metrics
    replicated (one ``device_get`` per iteration reads them). ``models``: those the
    phase runs; where one rematerialises, ``sharding.compiler_options`` keeps its
    checkpoints."""
    keep = sharding_lib.rematerialises(*models)
    return jax.jit(phase, in_shardings=(state_shardings, data_shardings),
                   out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())), donate_argnums=0,
                   compiler_options=sharding_lib.compiler_options(mesh, keep))


def make_phases(*, actor: nn.Module, critic: nn.Module, hp: ArcherHParams, bridge: Bridge,
                actor_tx: optax.GradientTransformation, critic_tx: optax.GradientTransformation,
                state_shardings: ArcherState, buffer_shardings: replay.ReplayBuffer, mesh: Mesh,
                rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES, baseline: nn.Module | None = None,
                baseline_tx: optax.GradientTransformation | None = None) -> Phases:
    """The critic and actor phases, each jitted once; call as ``state, metrics =
    phases.critic(state, buffer)``. The state passed in is donated (do not reuse it).
    ``baseline``/``baseline_tx``: the actor phase's token-level baseline (``actor_phase``)."""
    common = dict(actor=actor, critic=critic, hp=hp, bridge=bridge, mesh=mesh, rules=rules)
    return Phases(
        critic=jit_phase(functools.partial(critic_phase, tx=critic_tx, **common), state_shardings,
                         buffer_shardings, mesh, (actor, critic)),
        actor=jit_phase(functools.partial(actor_phase, tx=actor_tx, baseline=baseline, baseline_tx=baseline_tx,
                                          **common), state_shardings, buffer_shardings, mesh,
                        (actor, critic, baseline)),
    )


# ----------------------------------------------------------------------------- the stages


def start_state(state: ArcherState, *, actor_tx: optax.GradientTransformation,
                critic_tx: optax.GradientTransformation, critic_from_actor: bool,
                baseline_tx: optax.GradientTransformation | None = None) -> ArcherState:
    """The state ArCHer's first iteration starts from. BC's Adam moments (another loss,
    another learning rate) do not carry over; the KL anchor (when kept) becomes the BC
    actor; a critic of kind 'actor' starts from the BC-trained actor's weights (heads
    stay as initialised), as RLHF value models start from the policy: it already reads
    the task's text. A token-level baseline starts from the BC actor's weights too
    (its head as initialised), with fresh ``baseline_tx`` moments."""
    state = state.replace(actor_opt_state=actor_tx.init(state.actor_params))
    if state.ref_actor_params is not None:
        state = state.replace(ref_actor_params=train_state.reference_of(state.actor_params))
    if critic_from_actor:
        critic_params = {**state.critic_params, "encoder": {"lm": state.actor_params}}
        state = state.replace(critic_params=critic_params, target_critic_params=critic_params,
                              critic_opt_state=critic_tx.init(critic_params))
    if state.baseline_params is not None:  # the token-level baseline reads with the BC actor's weights
        baseline_params = {**state.baseline_params, "lm": state.actor_params}
        state = state.replace(baseline_params=baseline_params, baseline_opt_state=baseline_tx.init(baseline_params))
    return state


def transform_state(run: Any, fn: Callable[[ArcherState], ArcherState]) -> None:
    """``run.state = fn(run.state)``, jitted in the state's shardings, the old state
    donated (a stage's preparation of a fresh start)."""
    run.state = jax.jit(fn, in_shardings=(run.state_shardings,), out_shardings=run.state_shardings,
                        donate_argnums=0)(run.state)


def with_offline_turns(run: Any, insert: Callable[..., replay.ReplayBuffer]) -> replay.ReplayBuffer:
    """``run.buffer`` with every turn of the offline episodes (``config.data``, the BC
    data) written into it, as a fresh online stage starts (``config.archer.offline_data``).

    The critic is off-policy: its Q targets r + gamma V(s') and V targets Q(s, a ~ pi)
    hold for turns of any behaviour, so the offline players' turns give it the
    alternatives the policy's own rollouts seldom try (hybrid RL: the replay buffer
    starts with the offline data, Song et al. 2023; Ball et al. 2023). They stay in the
    ring until newer rollouts overwrite them (the newest ``capacity`` rows when the data
    holds more)."""
    from archer_jax.algorithms import bc

    dataset = bc.dataset_buffer(run)
    valid = np.arange(dataset.capacity) < int(multihost.to_host(dataset.size))
    return insert(run.buffer, dataset.rows, valid)


def collect(run: Any, iteration: int, insert: Callable[..., replay.ReplayBuffer] | None, scores: Any = None,
            act: Callable[[], tuple[Any, Any]] | None = None, *,
            temperature: float | None = None) -> tuple[dict[str, float], list[rollout.Rollout]]:
    """``rollout_size`` trajectories of ``run``'s actor (0-based ``iteration`` picks the
    seeds): sampled at ``config.archer.temperature``, but for the ``greedy_rollouts``
    fraction of each batch, which is played greedily; or, given ``temperature``, all
    sampled at it (on-policy for the policy pi_T). Returns the rollout metrics and the
    batches played. ``insert``: the jitted ``replay.make_insert`` that adds them to the
    replay buffer (None: they are not kept). ``scores``: the jitted ``critic_scores``,
    which probes the critic on the fresh turns before it trains on them
    (``probe_metrics``); None (an algorithm without a critic) probes nothing.
    ``act() -> (runner, params)``: who plays (the stage's ``act``); None = the actor."""
    c = run.config
    runner, params = act() if act else (run.runner, run.state.actor_params)
    batch = c.archer.rollout_batch
    if temperature is None:
        greedy = np.arange(batch) < round(c.archer.greedy_rollouts * batch)
        temperatures = np.where(greedy, 0.0, c.archer.temperature)
    else:
        greedy, temperatures = np.zeros(batch, bool), np.full(batch, temperature)
    returns, successes, turns, probe, results, generate_s = [], [], 0, [], [], 0.0
    failures = runner.oracle_failures
    rng = jax.random.fold_in(jax.random.key(c.seed + 1), iteration)
    for start in range(0, c.archer.rollout_size, batch):
        seeds = [c.seed * SEED_STRIDE + iteration * c.archer.rollout_size + start + i for i in range(batch)]
        rng, key = jax.random.split(rng)
        result = runner.run(params, seeds, key, temperatures)
        results.append(result)
        transitions = replay.Transitions(**result.transitions)
        if scores is not None:
            probe.append((*scores(run.state, transitions), result.transitions["mc_return"], result.valid))
        if insert is not None:
            run.buffer = insert(run.buffer, transitions, result.valid)
        returns.append(result.returns)
        successes.append(result.successes)
        turns += result.num_turns
        generate_s += result.generate_s
    run.progress["env_steps"] += turns
    returns, successes = np.stack(returns), np.stack(successes)  # [batches, B]
    # Oracle calls that failed and were retried (the episodes played on regardless).
    # time/rollout_generate_s: the part of the iteration's time/rollout_s spent waiting for
    # generation; the rest is the host's (environments, tokenizing), the critic probe and
    # the buffer insert.
    row = {"rollout/turns": float(turns),
           "rollout/oracle_failures": float(runner.oracle_failures - failures), "time/rollout_generate_s": generate_s}
    groups = {"": np.ones_like(greedy)}
    if greedy.any():  # the greedy rows are a cheap greedy evaluation on fresh seeds
        groups.update(sampled_=~greedy, greedy_=greedy)
    for name, rows in groups.items():
        if not rows.any():
            continue
        played = returns[:, rows]
        row[f"rollout/{name}return_mean"] = float(played.mean())
        if played.size > 1:
            row[f"rollout/{name}return_se"] = rollout.standard_error(played)
        row[f"rollout/{name}success_rate"] = float(successes[:, rows].mean())
    if probe:
        q, v, mc_return, valid = (np.concatenate(x) for x in zip(*multihost.to_host(probe)))
        row.update(probe_metrics(q[valid], v[valid], mc_return[valid]))
    return row, results


def probe_metrics(q: np.ndarray, v: np.ndarray, mc_return: np.ndarray) -> dict[str, float]:
    """How the critic, before it trains on them, scores the turns just played, against
    their Monte-Carlo returns G (discounted, on-policy):

    - ``probe/q_mc_corr``: correlation of min Q(s, a) with G over the turns;
    - ``probe/adv_mc_corr``: correlation of Q(s, a) - V(s) with G - V(s), positive when
      the critic's advantage points the way the outcomes went (V's own error also
      enters both sides: read it beside q_mc_corr, and the full within-state ranking
      from ``python -m experiments.probe_critic``);
    - ``probe/q_mc_bias``: mean of Q(s, a) - G (0 for an unbiased critic).
    """
    if len(q) < 3:
        return {}

    def corr(x: np.ndarray, y: np.ndarray) -> float:  # 0 where either side is constant (finite rows)
        r = critic_probe.pearson(x, y)
        return 0.0 if np.isnan(r) else r

    return {"probe/q_mc_corr": corr(q, mc_return), "probe/adv_mc_corr": corr(q - v, mc_return - v),
            "probe/q_mc_bias": float(np.mean(q - mc_return))}


def stage(run: Any) -> Stage:
    """Online ArCHer (``config.archer``): per iteration, rollouts into the replay buffer,
    the critic phase, and after ``warmup_iter`` iterations the actor phase."""
    c = run.config

    def start(done: int) -> Iterate:
        actor_tx = train_state.actor_optimizer(c)
        critic_tx = train_state.make_optimizer(c.critic.lr, c.critic.max_grad_norm)
        baseline_tx = baseline_optimizer(c) if run.baseline is not None else None
        insert = replay.make_insert(run.buffer_shardings, run.mesh, c.mesh.rules)
        if done == 0:
            transform_state(run, functools.partial(start_state, actor_tx=actor_tx, critic_tx=critic_tx,
                                                   critic_from_actor=c.critic.kind == "actor",
                                                   baseline_tx=baseline_tx))
            if c.archer.offline_data:
                run.buffer = with_offline_turns(run, insert)
        phases = make_phases(actor=run.actor, critic=run.critic, hp=run.hp, bridge=run.bridge, actor_tx=actor_tx,
                             critic_tx=critic_tx, state_shardings=run.state_shardings,
                             buffer_shardings=run.buffer_shardings, mesh=run.mesh, rules=c.mesh.rules,
                             baseline=run.baseline, baseline_tx=baseline_tx)
        # Compiled ahead of time: no iteration (not even the first actor one) compiles.
        critic = phases.critic.lower(run.state, run.buffer).compile()
        actor = phases.actor.lower(run.state, run.buffer).compile()
        scores = probe_scores(run)

        def iterate(k: int, clock: PhaseClock) -> dict[str, Any]:
            row, _ = collect(run, k - 1, insert, scores)
            clock.lap("rollout")
            run.state, critic_m = critic(run.state, run.buffer)
            clock.lap("critic", critic_m)
            actor_m = {}
            if k > c.archer.warmup_iter and c.archer.actor_epochs > 0:
                run.state, actor_m = actor(run.state, run.buffer)
                clock.lap("actor", actor_m)
            row.update(jax.device_get({**critic_m, **actor_m}))
            return row

        return iterate

    return Stage("archer", c.archer.iterations, evaluate_start=True, start=start)


def baseline_optimizer(config: Any) -> optax.GradientTransformation:
    """The token-level baseline's optimizer: a value function, so the critic's settings."""
    return train_state.make_optimizer(config.critic.lr, config.critic.max_grad_norm)


def stages(run: Any) -> list[Stage]:
    """ArCHer as the paper runs it (``archer``; ``archer_baseline`` the same with the
    token-level baseline ``run.baseline``): a BC warm start (skipped when ``config.bc.iterations``
    is 0), then online ArCHer."""
    from archer_jax.algorithms import bc

    return [bc.stage(run), stage(run)]
