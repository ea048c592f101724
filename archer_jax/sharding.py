"""Device mesh, logical-axis rules and sharded state creation.

Parameters carry logical axis names (``nn.with_logical_partitioning``); the config
holds the logical -> mesh rules. A logical axis maps to mesh axes only where the
dimension divides evenly (GPT-2's 12 heads on a tensor axis of 8 stay replicated
rather than failing), so any checkpoint runs on any mesh.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. 'batch' and 'capacity' (the replay buffer's rows) split
# across the data-parallel axes; weights split their large dims across fsdp/tensor.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("capacity", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("positions", None),
    ("relpos_buckets", None),
    ("norm", None),
)


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a ('data', 'fsdp', 'tensor') mesh; one entry may be -1 (the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = list(mesh_shape)
    if len(shape) != len(MESH_AXES):
        raise ValueError(f"mesh_shape must have {len(MESH_AXES)} entries {MESH_AXES}, got {shape}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh_shape may hold at most one -1, got {shape}")
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh_shape {shape}: {len(devices)} devices are not divisible by {known}")
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) != len(devices):
        raise ValueError(
            f"mesh_shape {shape} needs {math.prod(shape)} devices but {len(devices)} are available; "
            "use -1 for one axis to take the rest"
        )
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def _mesh_axes_for(logical: str | None, rules: Sequence[tuple[str, Any]]) -> tuple[str, ...]:
    if logical is None:
        return ()
    for name, target in rules:
        if name == logical:
            if target is None:
                return ()
            return (target,) if isinstance(target, str) else tuple(target)
    raise KeyError(f"logical axis {logical!r} has no rule in the sharding rules {[r[0] for r in rules]}")


def logical_to_spec(
    logical_axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Sequence[tuple[str, Any]]
) -> PartitionSpec:
    """Maps logical names to a PartitionSpec, keeping only mesh axes that divide the dim."""
    used: set[str] = set()
    spec = []
    for logical, dim in zip(logical_axes, shape, strict=True):
        kept = []
        size = 1
        for axis in _mesh_axes_for(logical, rules):
            n = mesh.shape[axis]
            if axis in used or n == 1 or dim % (size * n):
                continue
            kept.append(axis)
            size *= n
        used.update(kept)
        spec.append(tuple(kept) if len(kept) > 1 else (kept[0] if kept else None))
    return PartitionSpec(*spec)


def tree_shardings(abstract_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> Any:
    """NamedShardings for a (possibly boxed) abstract tree; unannotated leaves are replicated."""

    def one(leaf: Any) -> NamedSharding:
        if isinstance(leaf, nn.Partitioned):
            value = leaf.value
            if not hasattr(value, "shape"):  # a box around no array (an optimizer's MaskedNode of a frozen param)
                return value
            return NamedSharding(mesh, logical_to_spec(leaf.names, value.shape, mesh, rules))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, abstract_tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def rematerialises(*modules: nn.Module | None) -> bool:
    """Whether one of ``modules`` (or a module it wraps: a critic's encoder, a value
    head's LM) rematerialises its blocks (``config.remat``)."""
    def walk(module: Any) -> bool:
        if not isinstance(module, nn.Module):
            return False
        if getattr(getattr(module, "config", None), "remat", False):
            return True
        return any(walk(getattr(module, f.name)) for f in dataclasses.fields(module) if f.name != "parent")

    return any(walk(m) for m in modules)


def compiler_options(mesh: Mesh, keep_barriers: bool) -> dict[str, str] | None:
    """XLA options for a program on ``mesh``; ``keep_barriers``: for the programs
    whose memory depends on optimization barriers (a model that rematerialises,
    ``rematerialises``; ``create_state``'s one-model-after-the-other init). On CPU,
    XLA drops optimization barriers (its ``cse_barrier_expander`` pass) before
    common-subexpression elimination, which then merges ``jax.checkpoint``'s
    recomputed forward pass with the original one: remat saves nothing and no barrier
    orders anything (a 4-layer toy MLP: the same dots and temporaries with and without
    ``jax.checkpoint`` on every layer; with the pass disabled 151 -> 34 MB). Disabling
    it makes both hold there as on TPU and GPU: the small benchmark preset's critic
    phase takes 1.08 instead of 1.94 GiB of temporaries with its encoder's layers
    rematerialised (docs/benchmarks.md). It is not the default because the
    recomputation it keeps costs compile time (the test suite's tiny phases compile
    10-30% slower) and run time where nothing needed the memory. The values are the
    same either way."""
    if keep_barriers and mesh.devices.flat[0].platform == "cpu":
        return {"xla_disable_hlo_passes": "cse_barrier_expander"}
    return None


def init_sharded(
    init_fn: Callable[..., Any], mesh: Mesh, rules: Sequence[tuple[str, Any]], *args: Any
) -> tuple[Any, Any]:
    """Runs ``init_fn(*args)`` already sharded; returns (unboxed tree, its shardings).

    ``jax.eval_shape`` gives the logical annotations without allocating, then one jit
    with ``out_shardings`` materialises every leaf straight into its layout.
    """
    abstract = jax.eval_shape(init_fn, *args)
    shardings = tree_shardings(abstract, mesh, rules)
    init = jax.jit(lambda *a: nn.meta.unbox(init_fn(*a)), out_shardings=shardings)
    return init(*args), shardings


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading axis split over ('data', 'fsdp'); the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
