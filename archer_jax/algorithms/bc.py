"""Behaviour cloning of the actor on dataset turns stored in a ReplayBuffer.

Simulated or offline episodes are loaded into the same buffer struct ArCHer uses, so
BC pre-training shares the sampling, gathering and sharding code of the RL phases.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from etils import epath
from jax.sharding import Mesh

from archer_jax import config_checks, losses, metrics, multihost, replay, train_state
from archer_jax import sharding as sharding_lib
from archer_jax.algorithms import Iterate, PhaseClock, Stage
from archer_jax.algorithms.archer import ArcherHParams, Metrics, action_logits, jit_phase, sample_batch, scan_steps
from archer_jax.data import sources
from archer_jax.data.tokenization import PromptTemplate
from archer_jax.train_state import ArcherState, step_key


def bc_update(state: ArcherState, batch: replay.Transitions, *, actor: nn.Module,
              tx: optax.GradientTransformation, buckets: Sequence[int] = (),
              chunks: int = 1, prompt: PromptTemplate = PromptTemplate()) -> tuple[ArcherState, Metrics]:
    """One BC step of the actor on ``batch``: the token-mean NLL of its actions given
    their observations (framed by ``prompt``, rows grouped by length over ``buckets``:
    ``action_logits``). ``tx``: the actor optimizer."""

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        logits = action_logits(actor, params, batch.obs, batch.obs_mask, batch.action, batch.action_mask,
                               buckets=buckets, chunks=chunks, prompt=prompt)
        logp = losses.sequence_logprobs(logits, batch.action, batch.action_mask)
        return losses.bc_loss(logp, batch.action_mask), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
    updates, opt_state = tx.update(grads, state.actor_opt_state, state.actor_params)
    state = state.replace(step=state.step + 1, actor_params=optax.apply_updates(state.actor_params, updates),
                          actor_opt_state=opt_state)
    hits = (jnp.argmax(logits, axis=-1) == batch.action) & batch.action_mask
    accuracy = jnp.sum(hits) / jnp.maximum(jnp.sum(batch.action_mask), 1)
    return state, {"bc/loss": loss, "bc/token_accuracy": accuracy, "bc/grad_norm": optax.tree.norm(grads)}


def _bc_step(state: ArcherState, buffer: replay.ReplayBuffer, *, actor: nn.Module, hp: ArcherHParams,
             tx: optax.GradientTransformation, mesh: Mesh | None,
             rules: Sequence[tuple[str, Any]]) -> tuple[ArcherState, Metrics]:
    batch = sample_batch(buffer, step_key(state), hp.actor_batch_size, mesh, rules)
    return bc_update(state, batch, actor=actor, tx=tx, **hp.actor_rows)


def bc_phase(state: ArcherState, dataset_buffer: replay.ReplayBuffer, *, actor: nn.Module, hp: ArcherHParams,
             tx: optax.GradientTransformation, steps: int, mesh: Mesh | None = None,
             rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> tuple[ArcherState, Metrics]:
    """``steps`` BC updates of the actor (token-mean NLL of the dataset actions given
    their observations), ``hp.actor_batch_size`` rows each. ``tx``: the actor optimizer."""
    step = functools.partial(_bc_step, actor=actor, hp=hp, tx=tx, mesh=mesh, rules=rules)
    return scan_steps(step, state, dataset_buffer, steps)


def make_bc_phase(*, actor: nn.Module, hp: ArcherHParams, tx: optax.GradientTransformation, steps: int,
                  state_shardings: ArcherState, buffer_shardings: replay.ReplayBuffer, mesh: Mesh,
                  rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                  ) -> Callable[[ArcherState, replay.ReplayBuffer], tuple[ArcherState, Metrics]]:
    """``bc_phase`` jitted once (state donated): ``state, metrics = fn(state, dataset_buffer)``."""
    phase = functools.partial(bc_phase, actor=actor, hp=hp, tx=tx, steps=steps, mesh=mesh, rules=rules)
    return jit_phase(phase, state_shardings, buffer_shardings, mesh, (actor,))


# config.env fields every task's data shares (the question games' oracle fields do not
# change what the scripted players meet: their data always uses the knowledge base).
_SHARED_ENV_FIELDS = ("max_turns", "num_items", "oracle", "oracle_checkpoint")


def task_env_fields(config: Any) -> dict[str, Any]:
    """The task's own config.env fields (Detective's game file, ...), which shape its data."""
    return {k: v for k, v in config.env.items() if k not in _SHARED_ENV_FIELDS}


def data_dir(config: Any, workdir: epath.Path) -> str:
    """Where the offline episodes are built and read: ``config.data.dir``, else the
    workdir's ``data/``; for a bucket workdir a local cache (TFDS writes its record
    files with local I/O only; the data is rebuilt from the config wherever it is
    missing, so nothing is lost with the VM)."""
    if config.data.dir:
        return config.data.dir
    if metrics.is_remote(workdir):
        return os.path.join(os.path.expanduser("~"), ".cache", "archer_jax", "data")
    return os.fspath(workdir / "data")


def dataset_buffer(run: Any) -> replay.ReplayBuffer:
    """The offline episodes of ``config.data.source``, every turn in one sharded device
    buffer of exactly their rows (``replay.from_dataset``): each process reads and
    tokenizes only the episodes of the rows its devices hold."""
    c = run.config
    # Process 0 builds the dataset files and their index; the others read them once built.
    transitions = multihost.main_first("bc.dataset", lambda: sources.turns_from(
        c.data.source, task=c.task, data_dir=data_dir(c, run.workdir),
        manual_dir=c.data.manual_dir, num_episodes=c.data.num_episodes, seed=c.data.seed, gamma=c.archer.gamma,
        max_turns=c.env.max_turns, num_items=c.env.num_items, env=task_env_fields(c),
        mix=config_checks.data_mix(c) or None))
    return replay.from_dataset(transitions, run.tokenizer, obs_len=c.tokens.obs_len, action_len=c.tokens.action_len,
                               pad_id=run.hp.pad_id, terminator_ids=run.hp.stop_ids, mesh=run.mesh,
                               rules=c.mesh.rules, hidden_len=c.critic.privileged_len,
                               reward_scale=c.archer.reward_scale)


def dataset_stage(run: Any, name: str, build_phase: Callable[[replay.ReplayBuffer], Any], *,
                  prepare: Callable[[], None] | None = None) -> Stage:
    """A stage of ``config.bc.iterations`` iterations on the offline episodes
    (``dataset_buffer``), each one dispatch of the phase ``build_phase(dataset
    shardings)`` returns (jitted ``(state, dataset) -> (state, metrics)``), timed as
    ``time/<name>_s``. ``prepare()``: run once on a fresh stage, before compiling."""
    c = run.config

    def start(done: int) -> Iterate:
        if prepare is not None and done == 0:
            prepare()
        dataset = dataset_buffer(run)
        shardings = replay.buffer_shardings(dataset, run.mesh, c.mesh.rules)
        phase = build_phase(shardings).lower(run.state, dataset).compile()

        def iterate(k: int, clock: PhaseClock) -> Metrics:
            del k
            run.state, metrics = phase(run.state, dataset)
            clock.lap(name, metrics)
            return jax.device_get(metrics)

        return iterate

    return Stage(name, c.bc.iterations, evaluate_start=False, start=start)


def stage(run: Any) -> Stage:
    """BC of the run's actor on the offline episodes of ``config.data.source``
    (``config.bc``: iterations of ``steps`` updates, one jitted dispatch each)."""
    c = run.config
    hp = dataclasses.replace(run.hp, actor_batch_size=c.bc.batch_size)
    tx = train_state.actor_optimizer(c, c.bc.lr)
    return dataset_stage(run, "bc", lambda shardings: make_bc_phase(
        actor=run.actor, hp=hp, tx=tx, steps=c.bc.steps, state_shardings=run.state_shardings,
        buffer_shardings=shardings, mesh=run.mesh, rules=c.mesh.rules))


def stages(run: Any) -> list[Stage]:
    """BC alone, the offline baseline."""
    return [stage(run)]
