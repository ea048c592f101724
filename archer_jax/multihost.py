"""What a run does differently on several processes (the hosts of a pod, or CPU
processes on one machine): each function is the identity, or the plain one-process
operation, when ``jax.process_count() == 1``.

The contract the trainer keeps: every process runs the same program; the host-side
work a process does alone (stepping its share of the environments, tokenizing its
share of a dataset) is exchanged with ``gather_rows`` / ``gather_texts`` so that
what enters a jitted function is the same global batch on every process, in the
order a single process would have made it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


def count() -> int:
    return jax.process_count()


def index() -> int:
    return jax.process_index()


def is_main() -> bool:
    """Process 0: the one that writes metrics, transcripts and shared files."""
    return jax.process_index() == 0


def process_slice(n: int) -> slice:
    """This process's contiguous share of ``n`` global rows (process p holds rows
    [p * n / P, (p + 1) * n / P)); ``n`` must divide evenly."""
    p = count()
    if n % p:
        raise ValueError(f"{n} rows cannot be split evenly over {p} processes")
    share = n // p
    return slice(index() * share, (index() + 1) * share)


def barrier(name: str) -> None:
    """Every process waits here until all have arrived."""
    if count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def main_first(name: str, fn: Callable[[], T]) -> T:
    """``fn()`` on process 0, then (after a barrier) on the others: for work that
    creates shared files (a dataset, a tokenizer folder), so the others find them
    made instead of racing to make them."""
    if count() == 1:
        return fn()
    result = fn() if is_main() else None
    barrier(name)
    return result if is_main() else fn()


def gather_rows(tree: Any, axis: int = 0) -> Any:
    """Host arrays of this process's rows -> the global arrays (every process's rows
    concatenated along ``axis`` in process order), the same on every process. Every
    process must pass arrays of the same shapes."""
    if count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def gather(x: Any) -> np.ndarray:
        x = np.moveaxis(np.asarray(x), axis, 0)
        return np.moveaxis(np.asarray(multihost_utils.process_allgather(x, tiled=True)), 0, axis)

    return jax.tree.map(gather, tree)


def gather_texts(texts: Sequence[str]) -> list[str]:
    """Every process's texts (the same number on each), concatenated in process order."""
    if count() == 1:
        return list(texts)
    encoded = [t.encode("utf-8") for t in texts]
    longest = int(gather_rows(np.asarray([max(map(len, encoded), default=0)])).max())
    buffer = np.zeros((len(encoded), longest), np.uint8)
    lengths = np.asarray([len(e) for e in encoded], np.int32)
    for row, e in zip(buffer, encoded):
        row[:len(e)] = np.frombuffer(e, np.uint8)
    buffer, lengths = gather_rows((buffer, lengths))
    return [bytes(row[:n]).decode("utf-8") for row, n in zip(buffer, lengths)]


def total(x: float) -> float:
    """The sum of ``x`` over processes."""
    return float(gather_rows(np.asarray([x], np.float64)).sum())


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any."""
    return bool(gather_rows(np.asarray([flag])).any()) if count() > 1 else bool(flag)


def to_host(tree: Any) -> Any:
    """Device arrays -> host numpy; a global array that spans processes is gathered
    whole on every process (``jax.device_get`` refuses it)."""
    if count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def fetch(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(fetch, tree)


def global_array(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A host array that every process holds whole, placed as one global array in
    ``sharding`` (each process transfers only the pieces its devices hold)."""
    if count() == 1:
        return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
