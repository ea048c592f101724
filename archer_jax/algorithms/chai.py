"""Online CHAI (Verma et al., 2022), the paper's baseline: ArCHer's utterance-level
critic, trained the same way, and an actor frozen at its BC warm start. The agent acts
by sampling ``config.chai.candidates`` utterances from the actor and saying the one
the target critic scores highest (min(Q1, Q2)), in rollouts, in evaluations and in the
critic's own V targets (the value of the policy that acts), as the reference's agent.

CHAI has no greedy decoding: its deterministic choice is the argmax over candidates,
so rows asked to play at temperature 0 (evaluations, ``greedy_rollouts``) sample their
candidates at ``config.archer.temperature``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from archer_jax import config_checks, replay, rollout, train_state
from archer_jax.algorithms import Iterate, PhaseClock, Stage, archer, bc


def make_policy(run: Any, *, candidates: int, temperature: float) -> rollout.PolicyFn:
    """The jitted acting rule ``policy((actor_params, critic_params), ids, mask, rng,
    temperatures [B])`` (``archer.best_of_k``); a row's temperature 0 samples at
    ``temperature``."""
    if temperature <= 0:
        raise ValueError(f"CHAI samples its candidates: config.archer.temperature = {temperature} must be > 0")

    def policy(params: Any, ids: jax.Array, mask: jax.Array, rng: jax.Array, temperatures: jax.Array) -> Any:
        temperatures = jnp.where(temperatures > 0, temperatures, temperature)
        return archer.best_of_k(run.actor, run.critic, *params, ids, mask, rng, temperatures, k=candidates,
                                hp=run.hp, bridge=run.bridge)

    return jax.jit(policy)


def check_config(config: Any) -> None:
    """config.chai: at least one candidate utterance."""
    config_checks.positive(config, "chai.candidates")


def stage(run: Any) -> Stage:
    """Online CHAI: per iteration, rollouts of the best-of-k agent into the replay buffer
    and ArCHer's critic phase with best-of-k V targets; the actor never changes.
    ``config.archer`` gives the online loop and the critic's settings (its actor fields
    are unused), ``config.chai.candidates`` the k."""
    c = run.config
    k = c.chai.candidates
    hp = dataclasses.replace(run.hp, candidates=k)
    runner = run.runner.with_policy(make_policy(run, candidates=k, temperature=c.archer.temperature))

    def act() -> tuple[rollout.RolloutRunner, Any]:
        return runner, (run.state.actor_params, run.state.target_critic_params)

    def start(done: int) -> Iterate:
        actor_tx = train_state.actor_optimizer(c)  # never steps
        critic_tx = train_state.make_optimizer(c.critic.lr, c.critic.max_grad_norm)
        if done == 0:
            archer.transform_state(run, functools.partial(archer.start_state, actor_tx=actor_tx, critic_tx=critic_tx,
                                                          critic_from_actor=c.critic.kind == "actor"))
        critic = archer.jit_phase(functools.partial(
            archer.critic_phase, actor=run.actor, critic=run.critic, hp=hp, bridge=run.bridge, tx=critic_tx,
            mesh=run.mesh, rules=c.mesh.rules), run.state_shardings, run.buffer_shardings, run.mesh,
            (run.actor, run.critic)).lower(run.state, run.buffer).compile()
        insert = replay.make_insert(run.buffer_shardings, run.mesh, c.mesh.rules)
        scores = archer.probe_scores(run)

        def iterate(k: int, clock: PhaseClock) -> dict[str, Any]:
            row, _ = archer.collect(run, k - 1, insert, scores, act)
            clock.lap("rollout")
            run.state, metrics = critic(run.state, run.buffer)
            clock.lap("critic", metrics)
            row.update(jax.device_get(metrics))
            return row

        return iterate

    return Stage("chai", c.archer.iterations, evaluate_start=True, start=start, act=act)


def stages(run: Any) -> list[Stage]:
    """A BC warm start (``config.bc``; skipped at 0 iterations), then online CHAI."""
    return [bc.stage(run), stage(run)]

