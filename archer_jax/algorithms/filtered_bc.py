"""Online filtered BC, the paper's baseline: after the BC warm start, each iteration
collects trajectories with the current actor into the replay buffer, then clones the
best of them: BC on the turns of the episodes whose undiscounted return reaches the
(1 - ``top_fraction``) quantile of the returns of the episodes in the buffer (as the
reference: ``np.quantile(returns, 0.9)``, ties included, every episode counted once).

The cutoff and the row selection are computed on device from the buffer's
``episode_return`` and ``turn`` columns, once per phase; every step of the phase draws
its minibatch uniformly from the selected rows. No critic is trained.
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

from archer_jax import config_checks, replay, train_state
from archer_jax import sharding as sharding_lib
from archer_jax.algorithms import Iterate, PhaseClock, Stage, archer, bc
from archer_jax.algorithms.archer import Metrics, jit_phase, scan_steps
from archer_jax.train_state import ArcherState, step_key


def selection(buffer: replay.ReplayBuffer, top_fraction: float) -> tuple[jax.Array, jax.Array]:
    """(cutoff, selected [C] bool): the (1 - ``top_fraction``) quantile, linearly
    interpolated, of the returns of the episodes whose first turn is in the buffer,
    and the filled rows whose episode return reaches it. An episode's later turns
    still in the buffer after its first turn was overwritten are selected by their
    episode's return too; with no first turn in the buffer every filled row is."""
    filled = jnp.arange(buffer.capacity) < buffer.size
    first = filled & (buffer.turn == 0)
    returns = jnp.where(first, buffer.episode_return, jnp.nan)
    cutoff = jnp.where(jnp.any(first), jnp.nanquantile(returns, 1.0 - top_fraction), -jnp.inf)
    return cutoff, filled & (buffer.episode_return >= cutoff)


def filtered_bc_phase(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, batch_size: int,
                      steps: int, top_fraction: float, tx: optax.GradientTransformation, mesh: Mesh | None = None,
                      rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                      rows: dict[str, Any] | None = None) -> tuple[ArcherState, Metrics]:
    """``steps`` BC updates of the actor (``bc.bc_update``), each on ``batch_size`` rows
    drawn uniformly, with replacement, from the rows ``selection`` keeps. The buffer
    must hold at least one row. ``rows``: the length grouping and prompt (``ArcherHParams.actor_rows``)."""
    cutoff, selected = selection(buffer, top_fraction)
    p = selected.astype(jnp.float32) / jnp.sum(selected)

    def step(state: ArcherState, buffer: replay.ReplayBuffer) -> tuple[ArcherState, Metrics]:
        idx = jax.random.choice(step_key(state), buffer.capacity, (batch_size,), p=p)
        batch = replay.constrain_batch(replay.gather(buffer, idx), mesh, rules)
        return bc.bc_update(state, batch, actor=actor, tx=tx, **(rows or {}))

    state, metrics = scan_steps(step, state, buffer, steps)
    first = selected & (buffer.turn == 0)
    return state, {**metrics, "filtered_bc/cutoff": cutoff, "filtered_bc/rows": jnp.sum(selected),
                   "filtered_bc/episodes": jnp.sum(first)}


def make_filtered_bc_phase(*, actor: nn.Module, batch_size: int, steps: int, top_fraction: float,
                           tx: optax.GradientTransformation, state_shardings: ArcherState,
                           buffer_shardings: replay.ReplayBuffer, mesh: Mesh,
                           rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                           rows: dict[str, Any] | None = None,
                           ) -> Callable[[ArcherState, replay.ReplayBuffer], tuple[ArcherState, Metrics]]:
    """``filtered_bc_phase`` jitted once (state donated): ``state, metrics = fn(state, buffer)``."""
    phase = functools.partial(filtered_bc_phase, actor=actor, batch_size=batch_size, steps=steps,
                              top_fraction=top_fraction, tx=tx, mesh=mesh, rules=rules, rows=rows)
    return jit_phase(phase, state_shardings, buffer_shardings, mesh, (actor,))


def check_config(config: Any) -> None:
    """config.filtered_bc: the kept fraction of episodes lies in (0, 1]."""
    top = config.filtered_bc.top_fraction
    if not isinstance(top, int | float) or isinstance(top, bool) or not 0.0 < top <= 1.0:
        raise config_checks.ConfigError(f"config.filtered_bc.top_fraction = {top!r}: a fraction in (0, 1] (0.1 = "
                                        "the best 10% of episodes, the paper's)")


def stage(run: Any) -> Stage:
    """Online filtered BC. It shares ArCHer's online loop and its budget
    (``config.archer``: iterations, rollouts, buffer, evaluation, ``warmup_iter``
    iterations that only collect) and its actor's (``actor_epochs`` steps of
    ``actor_batch_size`` rows per iteration at ``config.actor.lr``);
    ``config.filtered_bc.top_fraction`` is its own."""
    c = run.config

    def start(done: int) -> Iterate:
        tx = train_state.actor_optimizer(c)
        if done == 0:  # BC's Adam moments (another learning rate) do not carry over
            archer.transform_state(run, lambda s: s.replace(actor_opt_state=tx.init(s.actor_params)))
        phase = make_filtered_bc_phase(
            actor=run.actor, batch_size=c.archer.actor_batch_size, steps=max(c.archer.actor_epochs, 1),
            top_fraction=c.filtered_bc.top_fraction, tx=tx, state_shardings=run.state_shardings,
            buffer_shardings=run.buffer_shardings, mesh=run.mesh, rules=c.mesh.rules, rows=run.hp.actor_rows,
        ).lower(run.state, run.buffer).compile()
        insert = replay.make_insert(run.buffer_shardings, run.mesh, c.mesh.rules)

        def iterate(k: int, clock: PhaseClock) -> Metrics:
            row, _ = archer.collect(run, k - 1, insert)
            clock.lap("rollout")
            if k > c.archer.warmup_iter and c.archer.actor_epochs > 0:
                run.state, metrics = phase(run.state, run.buffer)
                clock.lap("filtered_bc", metrics)
                row.update(jax.device_get(metrics))
            return row

        return iterate

    return Stage("filtered_bc", c.archer.iterations, evaluate_start=True, start=start)


def stages(run: Any) -> list[Stage]:
    """A BC warm start (``config.bc``; skipped at 0 iterations), then online filtered BC."""
    return [bc.stage(run), stage(run)]


def offline_stage(run: Any) -> Stage:
    """Offline filtered BC: BC as ``config.bc`` runs it (iterations, steps, batch size,
    learning rate), on the dataset's episodes whose return reaches the
    (1 - ``config.filtered_bc.top_fraction``) quantile of the dataset's returns."""
    c = run.config
    tx = train_state.actor_optimizer(c, c.bc.lr)
    return bc.dataset_stage(run, "offline_filtered_bc", lambda shardings: make_filtered_bc_phase(
        actor=run.actor, batch_size=c.bc.batch_size, steps=c.bc.steps, top_fraction=c.filtered_bc.top_fraction,
        tx=tx, state_shardings=run.state_shardings, buffer_shardings=shardings, mesh=run.mesh, rules=c.mesh.rules,
        rows=run.hp.actor_rows))


def offline_stages(run: Any) -> list[Stage]:
    """Offline filtered BC alone."""
    return [offline_stage(run)]
