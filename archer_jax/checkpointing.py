"""Checkpoints of a whole run (train state, replay buffer, progress) and preemption.

One Orbax ``CheckpointManager`` under ``<workdir>/checkpoints``; each step folder
holds three items: ``state`` and ``buffer`` (pytrees of sharded arrays, Orbax's
standard format) and ``progress`` (JSON: stage, iteration, env steps, host env seeds,
finished stages...). Saves are asynchronous: ``save`` returns once the arrays are
copied off the devices (so the caller may donate them to the next step right away)
and the files are written in a background thread.

Nothing is lost when a run dies: Orbax writes a step into
``<step>.orbax-checkpoint-tmp*`` and renames it when complete, so a run killed with
``kill -9`` mid-save leaves an unfinished tmp folder that is ignored (and removed at
the next start) while the previous complete step restores. A checkpoint that does
not fit the run's structure (a config change altered shapes) stops the run with a
message naming the folder and the leaves; the Checkpointer then refuses to write
into that folder.

SIGTERM (TPU preemption): ``install_sigterm_handler()`` turns it into a flag; the
training loop checks ``preemption_requested()`` at safe points (between iterations),
writes a final checkpoint and exits.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
ITEMS = ("state", "buffer", "progress")
_MAX_LISTED = 12  # mismatching leaves listed in an error


def _array_tree_handler() -> ocp.PyTreeCheckpointHandler:
    """Orbax's pytree handler (the standard on-disk format). On the CPU backend, without
    replica-parallel saving: every device's copy of a replicated array is already in host
    memory, so splitting its write across the replicas buys nothing and costs one
    device-side slice per replica per array (measured, the smoke state on 8 CPU devices:
    4.6 s for the first save, compiling those slices, then 1.3-1.4 s per save; 0.1 s and
    0.55 s without). Elsewhere Orbax's default (parallel on TPU, not on GPU)."""
    if jax.default_backend() != "cpu":
        return ocp.PyTreeCheckpointHandler()
    handlers = [(ty, ocp.type_handlers.get_type_handler(ty)) for ty in (int, float, bytes, np.number, np.ndarray, str)]
    arrays = ocp.type_handlers.ArrayHandler(use_replica_parallel=False)
    return ocp.PyTreeCheckpointHandler(
        type_handler_registry=ocp.type_handlers.create_type_handler_registry((jax.Array, arrays), *handlers))


class CheckpointMismatchError(ValueError):
    """The workdir holds a checkpoint that cannot be restored into this run's structure."""


def abstract_tree(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` leaves (keeping ``.sharding``) for a tree of arrays or
    of ShapeDtypeStructs: what ``restore_latest`` restores into."""

    def one(x: Any) -> Any:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree.map(one, tree)


def _stored_columns(buffer: Any) -> Any:
    """The buffer as it is written: a dataclass buffer (``replay.ReplayBuffer``) as the
    dict of the fields it keeps, without the optional columns it does not (None), so
    a checkpoint written before a column existed restores into a buffer without it."""
    if not dataclasses.is_dataclass(buffer):
        return buffer
    return {f.name: getattr(buffer, f.name) for f in dataclasses.fields(buffer) if getattr(buffer, f.name) is not None}


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _path(prefix: str, path: tuple[Any, ...]) -> str:
    return "/".join((prefix, *(_key_name(p) for p in path)))


def _stored_shape(leaf: Any) -> tuple[int, ...]:
    """The shape a leaf has on disk (typed PRNG keys are stored as their key data)."""
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return tuple(jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)).shape)
    return tuple(leaf.shape)


_VERSION_CAUSE = ("{what} differ between versions of archer_jax: the checkpoint was written by another version "
                  "(its commit is in the workdir's run_info.jsonl), which can resume it")


def _hint(path: str, saved: tuple[int, ...] | None, wanted: tuple[int, ...] | None,
          config_hints: Mapping[str, str] | None = None) -> str:
    """The likely config change behind one mismatching leaf: the longest matching
    prefix in ``config_hints`` (from the trainer, naming config fields), else a guess
    from where the leaf lives."""
    if path.startswith("buffer/") and (saved is None or wanted is None):
        # No config adds or removes a replay buffer field: only the code does.
        return _VERSION_CAUSE.format(what="the replay buffer's fields")
    matches = [prefix for prefix in (config_hints or {}) if path == prefix or path.startswith(prefix.rstrip("/") + "/")]
    if matches:
        return config_hints[max(matches, key=len)]
    if saved is None or wanted is None:
        return ("the layout of the train state or buffer changed (a different algorithm, model family, "
                "optimizer or stage, or a code change)")
    axes = [i for i, (a, b) in enumerate(zip(saved, wanted)) if a != b] if len(saved) == len(wanted) else []
    if path.startswith("buffer/"):
        if axes == [0]:
            return "the replay buffer capacity changed"
        return "a token length changed (prompt / observation length, max new tokens / action length) or the tokenizer"
    if any("opt" in part for part in path.split("/")[1:]):
        return "the optimizer settings or the model they optimise changed"
    return "the model changed (model name or size, vocabulary, value-head width, max positions)"


class Checkpointer:
    """Asynchronous checkpoints of (state, buffer, progress) in ``<workdir>/checkpoints``.

    ``max_to_keep``: complete checkpoints kept (older ones are deleted);
    ``async_save``: write files in the background (``async`` is a Python keyword);
    ``config_hints``: {leaf path prefix: the config change that alters it}, used in
    mismatch errors, e.g. {"buffer/obs": "config.rollout.prompt_len changed",
    "state/actor_params": "config.actor.model changed"} (paths as in the error:
    'state/...' and 'buffer/...' joined by '/'). ``workdir`` may be a local folder
    or a gs:// path (handled by Orbax's epath). Every process of a multi-host run must make the same calls.
    ``read_only``: restore only; nothing in the folder is created, removed or written
    (for tools that read a run, possibly while it trains: its save in progress looks
    like an unfinished one and must survive).
    """

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 2, async_save: bool = True,
                 config_hints: Mapping[str, str] | None = None, read_only: bool = False) -> None:
        workdir = os.fspath(workdir)
        self.directory = epath.Path(workdir if "://" in workdir else os.path.abspath(workdir)) / CHECKPOINT_DIR
        self.config_hints = dict(config_hints or {})
        self.read_only = read_only
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,  # unfinished saves of a killed run
            create=not read_only,
            read_only=read_only,
        )
        handlers = {
            "state": _array_tree_handler(),
            "buffer": _array_tree_handler(),
            "progress": ocp.JsonCheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        self._refusal: str | None = None

    # -- saving -------------------------------------------------------------------

    def save(self, step: int, *, state: Any, buffer: Any, progress: Mapping[str, Any]) -> bool:
        """Starts an asynchronous save of step ``step``; returns False when that step
        is already saved (e.g. a preemption right after a periodic save).

        ``buffer`` may be None (stages without a replay buffer); ``progress`` must be
        JSON-serialisable. Raises if this folder holds a checkpoint that did not fit
        (see ``restore_latest``) or a later step than ``step``.
        """
        if self._refusal is not None:
            raise CheckpointMismatchError(self._refusal)
        if self.read_only:
            raise ValueError(f"{self.directory}: opened read-only; cannot save step {step}")
        step = int(step)
        try:
            progress = json.loads(json.dumps(dict(progress)))
        except (TypeError, ValueError) as e:
            raise TypeError(f"checkpoint progress must be JSON-serialisable (plain ints, floats, strings, "
                            f"lists, dicts): {e}") from e
        latest = self.latest_step()
        if latest is not None and step < latest:
            raise ValueError(f"{self.directory}: cannot save step {step}, the folder already holds step {latest} "
                             "from a later point; restore it first (restore_latest) or use a new workdir")
        if latest == step:
            return False
        items = {"state": ocp.args.PyTreeSave(state), "progress": ocp.args.JsonSave(progress)}
        if buffer is not None:
            items["buffer"] = ocp.args.PyTreeSave(_stored_columns(buffer))
        return bool(self._manager.save(step, args=ocp.args.Composite(**items)))

    def wait(self) -> None:
        """Blocks until the last asynchronous save is on disk."""
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (unfinished saves do not count)."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- restoring ------------------------------------------------------------------

    def restore_latest(self, abstract_state: Any, abstract_buffer: Any = None) -> tuple[int, Any, Any, dict] | None:
        """(step, state, buffer, progress) of the newest complete checkpoint that can be
        read, or None when there is none.

        ``abstract_state`` / ``abstract_buffer``: trees of ``jax.ShapeDtypeStruct``
        with ``.sharding`` (``abstract_tree`` makes them from arrays); every array is
        read straight into its sharding. Pass ``abstract_buffer=None`` to skip the
        buffer (then None is returned for it). Raises ``CheckpointMismatchError``
        naming the folder when the newest checkpoint does not fit these structures.

        A checkpoint whose metadata fits but whose files cannot be read (truncated or
        damaged on disk) is reported and the one before it is restored; the unreadable
        one is kept, renamed ``<step>.unreadable`` (unless read-only), so the run can
        save that step again. When none can be read, ``CheckpointMismatchError`` names
        each and nothing is moved.
        """
        self._manager.reload()
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return None
        abstract_state = abstract_tree(abstract_state)
        abstract_buffer = None if abstract_buffer is None else abstract_tree(abstract_buffer)
        wanted = {"state": abstract_state}
        if abstract_buffer is not None:
            wanted["buffer"] = _stored_columns(abstract_buffer)
        unreadable: list[tuple[int, Exception]] = []
        for step in steps:
            try:
                problems = self._structure_problems(step, wanted)
            except Exception as e:  # noqa: BLE001 - metadata missing or damaged: any reader error
                unreadable.append((step, e))
                continue
            if problems:
                self._refuse(step, problems)
            items = {name: ocp.args.PyTreeRestore(tree, ocp.checkpoint_utils.construct_restore_args(tree))
                     for name, tree in wanted.items()}
            items["progress"] = ocp.args.JsonRestore()
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # noqa: BLE001 - the structure fits, so the files are at fault
                unreadable.append((step, e))
                continue
            if unreadable:
                self._set_aside(unreadable, step)
            buffer = None
            if abstract_buffer is not None:
                buffer = restored["buffer"]
                if dataclasses.is_dataclass(abstract_buffer):
                    buffer = dataclasses.replace(abstract_buffer, **buffer)
            return step, restored["state"], buffer, dict(restored["progress"] or {})
        listed = "\n".join(f"  {self.directory / str(step)}: {type(e).__name__}: {str(e)[:300]}"
                           for step, e in unreadable)
        self._refusal = (f"{self.directory}: no checkpoint can be read:\n{listed}\nNothing was removed. Start afresh "
                         f"with a new --workdir (or move {self.directory} away).")
        raise CheckpointMismatchError(self._refusal)

    def _set_aside(self, unreadable: list[tuple[int, Exception]], restored: int) -> None:
        for step, error in unreadable:
            folder = self.directory / str(step)
            kept = folder
            if not self.read_only and jax.process_index() == 0:
                kept = self.directory / f"{step}.unreadable"
                suffix = 1
                while kept.exists():
                    kept, suffix = self.directory / f"{step}.unreadable.{suffix}", suffix + 1
                folder.rename(kept)
            log.warning("checkpoint %s cannot be read (%s: %s); resuming from step %d instead; the unreadable one "
                        "is kept in %s", folder, type(error).__name__, str(error)[:300], restored, kept)
        if not self.read_only:
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils
                multihost_utils.sync_global_devices("checkpointing.set_aside")
            self._manager.reload()

    def stored_shapes(self, step: int, item: str = "state") -> dict[str, tuple[int, ...]] | None:
        """{'state/actor_params/...': shape} of the arrays step ``step`` holds in ``item``
        ('state' or 'buffer'), from its metadata; None when it has no such item."""
        metadata = self._manager.item_metadata(step)
        stored = metadata.get(item) if hasattr(metadata, "get") else None
        if stored is None:
            return None
        return {_path(item, p): tuple(leaf.shape)
                for p, leaf in jax.tree_util.tree_flatten_with_path(getattr(stored, "tree", stored))[0]
                if getattr(leaf, "shape", None) is not None}

    def _structure_problems(self, step: int, wanted: Mapping[str, Any]) -> list[tuple[str, str]]:
        """[(description, likely cause)] for leaves whose path or shape differ."""
        problems: list[tuple[str, str]] = []
        for name, tree in wanted.items():
            on_disk = self.stored_shapes(step, name)
            hint = functools.partial(_hint, config_hints=self.config_hints)
            if on_disk is None:
                problems.append((f"{name}: not in the checkpoint", hint(name, None, None)))
                continue
            here = {_path(name, p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
            for path in sorted(set(on_disk) | set(here)):
                if path not in here:
                    problems.append((f"{path}: in the checkpoint {on_disk[path]}, not in this run",
                                     hint(path, None, None)))
                elif path not in on_disk:
                    problems.append((f"{path}: in this run {tuple(here[path].shape)}, not in the checkpoint",
                                     hint(path, None, None)))
                elif on_disk[path] != _stored_shape(here[path]):
                    problems.append((f"{path}: checkpoint shape {on_disk[path]}, this run {tuple(here[path].shape)}",
                                     hint(path, on_disk[path], _stored_shape(here[path]))))
        return problems

    def _refuse(self, step: int, problems: list[tuple[str, str]]) -> None:
        listed = "\n".join(f"  {what}" for what, _ in problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        causes = "; ".join(dict.fromkeys(cause for _, cause in problems))
        self._refusal = (
            f"{self.directory / str(step)}: this checkpoint does not fit the run's train state / replay buffer:\n"
            f"{listed}{more}\n"
            f"Likely cause: {causes}. "
            f"The run refuses to overwrite it, so nothing already trained or collected is lost: restore the "
            f"old config value (or version) to resume, or start afresh with a new --workdir (or move "
            f"{self.directory} away).")
        raise CheckpointMismatchError(self._refusal)


# -- preemption -----------------------------------------------------------------------

_PREEMPTED = threading.Event()


def install_sigterm_handler(callback: Callable[[], None] | None = None) -> Callable[[], None]:
    """Turns SIGTERM (TPU preemption notice) into the flag ``preemption_requested()``
    reads; the training loop checks it between iterations, writes a final checkpoint
    and exits cleanly. ``callback`` (cheap: it runs inside the signal handler) is
    called on the first SIGTERM; a second SIGTERM goes to the previous handler (by
    default: terminate at once). Call from the main thread. Returns a function that
    restores the previous handler.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # installed outside Python: fall back to the default
        previous = signal.SIG_DFL

    def handler(signum: int, frame: Any) -> None:
        if _PREEMPTED.is_set():
            signal.signal(signal.SIGTERM, previous)
            signal.raise_signal(signum)
            return
        _PREEMPTED.set()
        log.warning("SIGTERM received: a final checkpoint will be written at the next safe point")
        if callback is not None:
            callback()

    signal.signal(signal.SIGTERM, handler)

    def uninstall() -> None:
        signal.signal(signal.SIGTERM, previous)

    return uninstall


def preemption_requested(*, sync: bool = True) -> bool:
    """True once SIGTERM arrived. With several processes (``sync``) the flags are
    OR-ed across them (one small all-gather), so every host stops at the same step;
    then every process must call this at the same point of the loop."""
    local = _PREEMPTED.is_set()
    if sync and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return bool(np.asarray(multihost_utils.process_allgather(np.int32(local))).any())
    return local


def clear_preemption() -> None:
    """Resets the flag (tests, or a loop that handled it and carries on)."""
    _PREEMPTED.clear()
