"""Token-level PPO, the paper's online baseline, as LMRL-Gym runs it: every token of an
utterance is an action; a token-level value model V(s, a_<t) (``value_heads.TokenValue``
on the actor's architecture, started from the BC actor, ``state.baseline_params``) is
trained beside the policy.

Per iteration, after the BC warm start:
1. ``rollout_size`` episodes on-policy: every turn sampled from pi_T, T =
   ``config.archer.actor_temperature`` (the temperature ArCHer's actor trains at), the
   same seeds as ArCHer's rollouts; the replay buffer is not used.
2. One jitted phase: the behaviour log-probs log pi_T,old, the reference log-probs
   (the BC policy) and the old values of every token; per-token rewards: the turn's
   environment reward on its last token, minus ``kl_coef * (log pi_old - log pi_ref)``
   on every token; GAE over each episode's tokens in order (``losses.gae_advantages``,
   gamma 1, lambda 0.95: the last token of a turn bootstraps from the first of the
   next); advantages whitened over the batch, returns = advantages + old values; then
   ``epochs`` passes over the batch's turns in shuffled minibatches of ``batch_size``
   turns, each one clipped-surrogate step of the actor and one clipped-value step of
   the value model, each with its own optimizer (the actor's and the critic's settings).
3. With ``kl_target`` > 0 the KL coefficient adapts (Ziegler et al., 2019) toward a
   KL(pi_old || pi_ref) of ``kl_target`` nats per utterance; it is kept in the run's
   progress, so a resumed run continues with it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from archer_jax import config_checks, length_buckets, losses, replay, rollout, train_state
from archer_jax import sharding as sharding_lib
from archer_jax.algorithms import Iterate, PhaseClock, Stage, archer, bc
from archer_jax.algorithms.archer import Metrics
from archer_jax.data.tokenization import PromptTemplate
from archer_jax.train_state import ArcherState, step_key

# The per-episode arrays a phase reads, [episodes, turns, ...], and their dtypes.
FIELDS = {"obs": np.int32, "obs_mask": np.bool_, "action": np.int32, "action_mask": np.bool_,
          "reward": np.float32, "valid": np.bool_}


@dataclasses.dataclass(frozen=True)
class PPOHParams:
    """Static hyper-parameters of the PPO phase (the KL coefficient is an input)."""

    temperature: float = 1.0  # T of the policy pi_T sampled and differentiated
    gamma: float = 1.0  # discount per token
    lam: float = 0.95  # GAE's lambda
    clip: float = 0.2  # ratio clip
    value_clip: float = 0.2  # value clip around the old values
    epochs: int = 4  # passes over each on-policy batch
    batch_size: int = 32  # turns per minibatch
    whiten: bool = True  # advantages to mean 0, std 1 over the batch's tokens
    reference: bool = True  # the KL term reads state.ref_actor_params
    # Rows grouped by length for every model call (``length_buckets.apply``; as ArCHer's).
    length_buckets: tuple[int, ...] = ()
    bucket_chunks: int = 1
    prompt: PromptTemplate = PromptTemplate()  # the actor's framing of observations, as ArCHer's

    @property
    def rows(self) -> dict[str, Any]:
        """The length grouping as keyword arguments (``buckets``, ``chunks``), as ``ArcherHParams.rows``."""
        return {"buckets": self.length_buckets, "chunks": self.bucket_chunks}

    @property
    def actor_rows(self) -> dict[str, Any]:
        """``rows`` and the actor's ``prompt``, as ``ArcherHParams.actor_rows``."""
        return {**self.rows, "prompt": self.prompt}

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"PPOHParams.temperature = {self.temperature}: must be > 0")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"PPOHParams gamma = {self.gamma}, lam = {self.lam}: must lie in [0, 1]")
        if self.epochs < 1 or self.batch_size < 1 or self.bucket_chunks < 1:
            raise ValueError(f"PPOHParams epochs = {self.epochs}, batch_size = {self.batch_size}, bucket_chunks = "
                             f"{self.bucket_chunks}: must be >= 1")


def episodes(results: Sequence[rollout.Rollout], max_turns: int) -> dict[str, np.ndarray]:
    """The rollout batches as episode-major arrays [E, max_turns, ...] (``FIELDS``)."""
    def field(result: rollout.Rollout, name: str) -> np.ndarray:
        value = result.valid if name == "valid" else result.transitions[name]
        return value.reshape(max_turns, -1, *value.shape[1:])  # rows are turn-major

    return {name: np.concatenate([field(r, name) for r in results], axis=1).swapaxes(0, 1).astype(dtype)
            for name, dtype in FIELDS.items()}


def episode_shapes(num_episodes: int, max_turns: int, obs_len: int, action_len: int) -> dict[str, Any]:
    """The shapes and dtypes ``episodes`` returns (to compile the phase before any rollout)."""
    tail = {"obs": (obs_len,), "obs_mask": (obs_len,), "action": (action_len,), "action_mask": (action_len,)}
    return {name: jax.ShapeDtypeStruct((num_episodes, max_turns, *tail.get(name, ())), dtype)
            for name, dtype in FIELDS.items()}


def token_rewards(reward: jax.Array, token_mask: jax.Array, kl: jax.Array, kl_coef: jax.Array) -> jax.Array:
    """[N, T]: each turn's environment reward (``reward`` [N]) on its last real token,
    minus ``kl_coef * kl`` (per-token log pi_old - log pi_ref) on every real token."""
    last = jnp.arange(token_mask.shape[1]) == jnp.sum(token_mask, axis=1, keepdims=True) - 1
    return jnp.where(token_mask, jnp.where(last, reward[:, None], 0.0) - kl_coef * kl, 0.0)


def chunked(fn: Callable[[Any], Any], xs: Any, size: int) -> Any:
    """``fn`` over the leading axis of ``xs`` in chunks of ``size`` rows (one at a time, a
    ``lax.map``; the last chunk padded), its outputs concatenated back to the rows."""
    n = jax.tree.leaves(xs)[0].shape[0]
    chunks = -(-n // size)
    pad = lambda x: jnp.pad(x, [(0, chunks * size - n)] + [(0, 0)] * (x.ndim - 1))  # noqa: E731
    out = jax.lax.map(fn, jax.tree.map(lambda x: pad(x).reshape(chunks, size, *x.shape[1:]), xs))
    return jax.tree.map(lambda y: y.reshape(chunks * size, *y.shape[2:])[:n], out)


def ppo_phase(state: ArcherState, data: dict[str, jax.Array], kl_coef: jax.Array, *, actor: nn.Module,
              value: nn.Module, hp: PPOHParams, tx: optax.GradientTransformation,
              value_tx: optax.GradientTransformation, mesh: Mesh | None = None,
              rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> tuple[ArcherState, Metrics]:
    """One PPO iteration's updates on ``data`` (``episodes``); see the module docstring."""
    e, t = data["valid"].shape
    n, mb = e * t, hp.batch_size
    rows = {k: v.reshape(n, *v.shape[2:]) for k, v in data.items()}
    inputs = (rows["obs"], rows["obs_mask"], rows["action"], rows["action_mask"])
    mask = rows["action_mask"] & rows["valid"][:, None]  # [N, L] the tokens said

    def logp(params: Any, o: jax.Array, om: jax.Array, a: jax.Array, am: jax.Array) -> jax.Array:
        return archer.action_logprobs(actor, params, o, om, a, am, hp.temperature, **hp.actor_rows)

    def values(params: Any, o: jax.Array, om: jax.Array, a: jax.Array, am: jax.Array) -> jax.Array:
        def call(width: int, o: jax.Array, om: jax.Array, a: jax.Array, am: jax.Array) -> jax.Array:
            return value.apply({"params": params}, o[:, -width:], om[:, -width:], a, am)

        # The value model reads the observation as the actor does.
        o, om, buckets = archer.actor_view(hp.prompt, o, om, hp.length_buckets)
        return length_buckets.apply(call, om, (o, om, a, am), buckets=buckets, chunks=hp.bucket_chunks)

    def measure(x: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array, jax.Array]:
        old = logp(state.actor_params, *x)
        ref = logp(train_state.reference_params(state), *x) if hp.reference else old
        return old, ref, values(state.baseline_params, *x)

    old_logp, ref_logp, old_values = chunked(measure, inputs, mb)
    kl = jnp.where(mask, old_logp - ref_logp, 0.0)
    rewards = token_rewards(rows["reward"], mask, kl, kl_coef)
    length = t * mask.shape[1]  # an episode's tokens in the order said: turn by turn
    adv = losses.gae_advantages(rewards.reshape(e, length), old_values.reshape(e, length), mask.reshape(e, length),
                                hp.gamma, hp.lam).reshape(n, -1)
    returns = jnp.where(mask, adv + old_values, 0.0)
    train_adv = losses.whiten(adv, mask) if hp.whiten else adv

    batches = -(-n // mb)
    said = rows["valid"] & jnp.any(mask, axis=1)

    def update(state: ArcherState, idx: jax.Array, real: jax.Array) -> tuple[ArcherState, Metrics]:
        batch = replay.constrain_batch((*(x[idx] for x in inputs), mask[idx] & real[:, None], old_logp[idx],
                                        train_adv[idx], old_values[idx], returns[idx]), mesh, rules)
        o, om, a, am, m, b_old_logp, b_adv, b_old_values, b_returns = batch

        def policy_loss(params: Any) -> tuple[jax.Array, Metrics]:
            return losses.ppo_policy_loss(logp(params, o, om, a, am), b_old_logp, b_adv, m, hp.clip)

        def value_loss(params: Any) -> jax.Array:
            return losses.ppo_value_loss(values(params, o, om, a, am), b_old_values, b_returns, m, hp.value_clip)

        (pg_loss, pg_metrics), grads = jax.value_and_grad(policy_loss, has_aux=True)(state.actor_params)
        updates, opt_state = tx.update(grads, state.actor_opt_state, state.actor_params)
        v_loss, v_grads = jax.value_and_grad(value_loss)(state.baseline_params)
        v_updates, v_opt_state = value_tx.update(v_grads, state.baseline_opt_state, state.baseline_params)
        state = state.replace(step=state.step + 1, actor_params=optax.apply_updates(state.actor_params, updates),
                              actor_opt_state=opt_state,
                              baseline_params=optax.apply_updates(state.baseline_params, v_updates),
                              baseline_opt_state=v_opt_state)
        return state, {"ppo/pg_loss": pg_loss, "ppo/value_loss": v_loss, "ppo/grad_norm": optax.tree.norm(grads),
                       "ppo/value_grad_norm": optax.tree.norm(v_grads),
                       **{f"ppo/{k}": x for k, x in pg_metrics.items()}}

    zero_metrics = jax.eval_shape(lambda s: update(s, jnp.zeros(mb, jnp.int32), jnp.ones(mb, bool))[1], state)
    zero_metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_metrics)

    def minibatch(carry: tuple[ArcherState, Metrics, jax.Array], x: tuple[jax.Array, jax.Array]) -> tuple[Any, None]:
        state, sums, count = carry
        idx, real = x
        real = real & said[idx]
        ran = jnp.any(real)
        state, metrics = jax.lax.cond(ran, update, lambda s, i, r: (s, zero_metrics), state, idx, real)
        sums = jax.tree.map(lambda acc, m: acc + jnp.where(ran, m, 0.0), sums, metrics)
        return (state, sums, count + ran), None

    def epoch(carry: tuple[ArcherState, Metrics, jax.Array], key: jax.Array) -> tuple[Any, None]:
        # The turns said, in a random order, first; minibatches of padding rows are skipped.
        order = jnp.argsort(jnp.where(said, jax.random.uniform(key, (n,)), 2.0))
        order = jnp.concatenate([order, jnp.zeros(batches * mb - n, order.dtype)])
        real = jnp.arange(batches * mb) < n
        return jax.lax.scan(minibatch, carry, (order.reshape(batches, mb), real.reshape(batches, mb)))

    keys = jax.random.split(step_key(state), hp.epochs)
    (state, sums, count), _ = jax.lax.scan(epoch, (state, zero_metrics, jnp.int32(0)), keys)
    metrics = jax.tree.map(lambda s: s / jnp.maximum(count, 1), sums)
    tokens = jnp.maximum(jnp.sum(mask), 1)
    turns = jnp.maximum(jnp.sum(said), 1)
    adv_mean = jnp.sum(jnp.where(mask, adv, 0.0)) / tokens  # GAE's, before whitening
    return state, {**metrics, "ppo/updates": count,
                   "ppo/kl_ref": jnp.sum(kl) / turns,  # nats of log pi_old - log pi_ref per utterance
                   "ppo/value_mean": jnp.sum(jnp.where(mask, old_values, 0.0)) / tokens,
                   "ppo/return_mean": jnp.sum(returns) / tokens,
                   "ppo/advantage_mean": adv_mean,
                   "ppo/advantage_std": jnp.sqrt(jnp.sum(jnp.where(mask, jnp.square(adv - adv_mean), 0.0)) / tokens)}


def make_ppo_phase(*, actor: nn.Module, value: nn.Module, hp: PPOHParams, tx: optax.GradientTransformation,
                   value_tx: optax.GradientTransformation, state_shardings: ArcherState, mesh: Mesh,
                   rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> Callable[..., Any]:
    """``ppo_phase`` jitted once (state donated, data and KL coefficient replicated):
    ``state, metrics = fn(state, data, kl_coef)``."""
    replicated = NamedSharding(mesh, PartitionSpec())
    phase = functools.partial(ppo_phase, actor=actor, value=value, hp=hp, tx=tx, value_tx=value_tx, mesh=mesh,
                              rules=rules)
    return jax.jit(phase, in_shardings=(state_shardings, replicated, replicated),
                   out_shardings=(state_shardings, replicated), donate_argnums=0,
                   compiler_options=sharding_lib.compiler_options(mesh, sharding_lib.rematerialises(actor, value)))


def adapt_kl(coef: float, kl: float, *, target: float, horizon: int, steps: int) -> float:
    """The adaptive KL controller of Ziegler et al. (2019): coef * (1 + e * steps /
    horizon), e = clip(kl / target - 1, -0.2, 0.2)."""
    return coef * (1.0 + float(np.clip(kl / target - 1.0, -0.2, 0.2)) * steps / horizon)


def check_config(config: Any) -> None:
    """config.ppo: counts and clips positive, KL settings >= 0, discounts in [0, 1]."""
    for path in ("ppo.epochs", "ppo.batch_size", "ppo.clip", "ppo.value_clip", "ppo.kl_horizon"):
        config_checks.positive(config, path)
    for path in ("ppo.kl_coef", "ppo.kl_target"):
        config_checks.positive(config, path, allow_zero=True)
    for path in ("ppo.gamma", "ppo.gae_lambda"):
        config_checks.unit_interval(config, path)


def stage(run: Any) -> Stage:
    """Online PPO (``config.ppo``). It shares ArCHer's online loop and budget
    (``config.archer``: iterations, rollout_size, rollout_batch, evaluation), samples at
    ``config.archer.actor_temperature``, and trains the actor at ``config.actor.lr`` and
    the value model with the critic's optimizer settings."""
    c, p = run.config, run.config.ppo
    hp = PPOHParams(temperature=c.archer.actor_temperature, gamma=p.gamma, lam=p.gae_lambda, clip=p.clip,
                    value_clip=p.value_clip, epochs=p.epochs, batch_size=p.batch_size, whiten=p.whiten,
                    reference=p.kl_coef > 0, length_buckets=tuple(c.tokens.length_buckets),
                    bucket_chunks=c.tokens.bucket_chunks, prompt=run.hp.prompt)

    def start(done: int) -> Iterate:
        tx = train_state.actor_optimizer(c)
        value_tx = archer.baseline_optimizer(c)
        if done == 0:
            run.progress["ppo_kl_coef"] = float(p.kl_coef)
            critic_tx = train_state.make_optimizer(c.critic.lr, c.critic.max_grad_norm)
            archer.transform_state(run, functools.partial(archer.start_state, actor_tx=tx, critic_tx=critic_tx,
                                                          critic_from_actor=False, baseline_tx=value_tx))
        shapes = episode_shapes(c.archer.rollout_size, c.env.max_turns, c.tokens.obs_len, c.tokens.action_len)
        phase = make_ppo_phase(actor=run.actor, value=run.baseline, hp=hp, tx=tx, value_tx=value_tx,
                               state_shardings=run.state_shardings, mesh=run.mesh, rules=c.mesh.rules,
                               ).lower(run.state, shapes, jax.ShapeDtypeStruct((), jnp.float32)).compile()

        def iterate(k: int, clock: PhaseClock) -> Metrics:
            row, results = archer.collect(run, k - 1, None, temperature=hp.temperature)
            clock.lap("rollout")
            coef = run.progress["ppo_kl_coef"]
            run.state, metrics = phase(run.state, episodes(results, c.env.max_turns), np.float32(coef))
            clock.lap("ppo", metrics)
            row.update(jax.device_get(metrics))
            row["ppo/kl_coef"] = coef
            if p.kl_target > 0:
                run.progress["ppo_kl_coef"] = adapt_kl(coef, float(row["ppo/kl_ref"]), target=p.kl_target,
                                                       horizon=p.kl_horizon, steps=c.archer.rollout_size)
            return row

        return iterate

    return Stage("ppo", c.archer.iterations, evaluate_start=True, start=start)


def stages(run: Any) -> list[Stage]:
    """A BC warm start (``config.bc``; skipped at 0 iterations), then online PPO."""
    return [bc.stage(run), stage(run)]
