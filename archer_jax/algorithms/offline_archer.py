"""Offline ArCHer (the paper's offline variant, as in OfflineArcher): an IQL double
critic and an AWR actor trained together on the offline episodes only, no environment.

Each step draws one minibatch of dataset turns (s, a, r, s', done) and makes

- a critic step (``losses.iql_critic_loss``): Q_i -> r + gamma (1 - done) Vbar_i(s'),
  V_i -> Qbar_i(s, a) by expectile regression (``config.offline.expectile``), then the
  Polyak update of the target critic (``config.archer.tau``);
- an actor step (``losses.awr_loss``) with the updated online critic's advantage
  A = min(Q1, Q2)(s, a) - min(V1, V2)(s): -mean(w * log pi(a | s)),
  w = min(exp(``config.offline.beta`` * A), ``config.offline.max_weight``).

No utterance is ever sampled: both losses read only the dataset's actions, which is
what keeps offline RL on the data's support (IQL + REINFORCE collapses offline).
The budget is BC's (``config.bc``: iterations, steps, batch size; the AWR actor uses
BC's learning rate, as weighted BC), so offline ArCHer, offline filtered BC and BC
take the same number of updates on the same data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from archer_jax import config_checks, losses, replay, train_state
from archer_jax import sharding as sharding_lib
from archer_jax.algorithms import Stage, archer, bc
from archer_jax.algorithms.archer import ArcherHParams, Bridge, Metrics, action_logprobs, jit_phase, scan_steps
from archer_jax.train_state import ArcherState, step_key


def offline_step(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, critic: nn.Module,
                 hp: ArcherHParams, bridge: Bridge, critic_tx: optax.GradientTransformation,
                 actor_tx: optax.GradientTransformation, batch_size: int, expectile: float, beta: float,
                 max_weight: float, mesh: Mesh | None = None,
                 rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> tuple[ArcherState, Metrics]:
    """One IQL critic step and one AWR actor step on one minibatch of dataset turns."""
    batch = archer.sample_batch(buffer, step_key(state), batch_size, mesh, rules)
    obs, obs_mask = archer.critic_view(bridge, batch.obs, batch.obs_mask, batch.hidden, batch.hidden_mask)
    act, act_mask = bridge(batch.action, batch.action_mask)
    next_obs, next_mask = archer.critic_view(bridge, batch.next_obs, batch.next_obs_mask, batch.hidden,
                                             batch.hidden_mask)
    target = state.target_critic_params
    target_data = archer.critic_apply(critic, target, obs, obs_mask, act, act_mask, **hp.rows)  # Qbar_i(s, a_data)
    target_v1_next, target_v2_next = archer.critic_values(critic, target, next_obs, next_mask, **hp.rows)

    def critic_loss(params: Any) -> tuple[jax.Array, Metrics]:
        out = archer.critic_apply(critic, params, obs, obs_mask, act, act_mask, **hp.rows)
        return losses.iql_critic_loss(out.q1, out.q2, out.v1, out.v2, target_data.q1, target_data.q2,
                                      target_v1_next, target_v2_next, batch.reward, batch.done, hp.gamma, expectile)

    state, metrics = archer.critic_update(state, critic_loss, tx=critic_tx, tau=hp.tau)

    values = archer.critic_apply(critic, state.critic_params, obs, obs_mask, act, act_mask, **hp.rows)
    advantage = losses.advantages(values.q1, values.q2, values.v1, values.v2)
    weight = losses.awr_weights(advantage, beta, max_weight)

    def actor_loss(params: Any) -> tuple[jax.Array, jax.Array]:
        logp = action_logprobs(actor, params, batch.obs, batch.obs_mask, batch.action, batch.action_mask,
                               **hp.actor_rows)
        return losses.awr_loss(logp, batch.action_mask, weight), logp

    (loss, logp), grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor_params)
    updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
    state = state.replace(step=state.step + 1, actor_params=optax.apply_updates(state.actor_params, updates),
                          actor_opt_state=actor_opt_state)
    metrics.update({
        "actor/awr_loss": loss,
        "actor/advantage_mean": jnp.mean(advantage),
        "actor/advantage_std": jnp.std(advantage),
        "actor/weight_mean": jnp.mean(weight),
        "actor/weight_clipped": jnp.mean(weight >= max_weight),
        "actor/logp_mean": jnp.sum(logp) / jnp.maximum(jnp.sum(batch.action_mask), 1),
        "actor/grad_norm": optax.tree.norm(grads),
    })
    return state, metrics


def make_offline_phase(*, actor: nn.Module, critic: nn.Module, hp: ArcherHParams, bridge: Bridge,
                       critic_tx: optax.GradientTransformation, actor_tx: optax.GradientTransformation,
                       steps: int, batch_size: int, expectile: float, beta: float, max_weight: float,
                       state_shardings: ArcherState, buffer_shardings: replay.ReplayBuffer, mesh: Mesh,
                       rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                       ) -> Callable[[ArcherState, replay.ReplayBuffer], tuple[ArcherState, Metrics]]:
    """``steps`` ``offline_step``s in one lax.scan, jitted once (state donated)."""
    step = functools.partial(offline_step, actor=actor, critic=critic, hp=hp, bridge=bridge, critic_tx=critic_tx,
                             actor_tx=actor_tx, batch_size=batch_size, expectile=expectile, beta=beta,
                             max_weight=max_weight, mesh=mesh, rules=rules)
    return jit_phase(lambda state, buffer: scan_steps(step, state, buffer, steps), state_shardings,
                     buffer_shardings, mesh, (actor, critic))


def check_config(config: Any) -> None:
    """config.offline: IQL's expectile in (0, 1), AWR's beta >= 0 and its weight clip > 0."""
    if not 0.0 < config.offline.expectile < 1.0:
        raise config_checks.ConfigError(f"config.offline.expectile = {config.offline.expectile}: must lie in (0, 1) "
                                        "(0.9 = IQL's)")
    config_checks.positive(config, "offline.max_weight")
    config_checks.positive(config, "offline.beta", allow_zero=True)


def stage(run: Any) -> Stage:
    """Offline ArCHer on the episodes of ``config.data.source`` (``config.offline``;
    the budget of ``config.bc``)."""
    c = run.config
    actor_tx = train_state.actor_optimizer(c, c.bc.lr)
    critic_tx = train_state.make_optimizer(c.critic.lr, c.critic.max_grad_norm)

    def prepare() -> None:  # a critic of kind 'actor' reads with the actor's (initial) weights
        archer.transform_state(run, functools.partial(archer.start_state, actor_tx=actor_tx, critic_tx=critic_tx,
                                                      critic_from_actor=c.critic.kind == "actor"))

    return bc.dataset_stage(run, "offline_archer", lambda shardings: make_offline_phase(
        actor=run.actor, critic=run.critic, hp=run.hp, bridge=run.bridge, critic_tx=critic_tx, actor_tx=actor_tx,
        steps=c.bc.steps, batch_size=c.bc.batch_size, expectile=c.offline.expectile, beta=c.offline.beta,
        max_weight=c.offline.max_weight, state_shardings=run.state_shardings, buffer_shardings=shardings,
        mesh=run.mesh, rules=c.mesh.rules), prepare=prepare)


def stages(run: Any) -> list[Stage]:
    """Offline ArCHer alone (from ``config.actor.checkpoint`` or a random init, as BC)."""
    return [stage(run)]
