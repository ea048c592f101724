"""How far a benchmark is from the machine's limit: the matmul FLOPs a jitted function
executes, this machine's matmul rate measured in the same process, and a peak table for
MFU on accelerators.

``count_flops`` traces the function (no compile, nothing runs) and sums the FLOPs of every
``dot_general`` in its jaxpr: 2 x the product of the output dims x the contracted dims.
A ``scan`` body counts ``length`` times; a ``while`` body counts ``while_trips`` times (the
caller knows the trip count, e.g. ``max_new_tokens - 1`` for ``sampling.generate`` with
no stop ids), and a function with a while loop that has matmuls and no ``while_trips`` is
refused rather than under-counted; a ``cond`` counts its most expensive branch. These are
the FLOPs the program executes, masked work included (a causal attention computes its
whole score matrix here), not a model's "useful" FLOPs; element-wise work (softmax,
layer norm, Adam) is not counted: it is memory-bound and small next to the matmuls at the
shapes benchmarked.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

# Dense matmul peak per chip, FLOP/s, by dtype: the figures the vendors publish (TPU:
# cloud.google.com/tpu/docs/system-architecture; NVIDIA: the product data sheets, dense,
# no sparsity). Matched against ``device.device_kind`` by substring, longest key first.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "TPU v4": {"bfloat16": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12},
    "TPU v5e": {"bfloat16": 197e12},
    "TPU v5p": {"bfloat16": 459e12},
    "TPU v5": {"bfloat16": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12},
    "TPU v6e": {"bfloat16": 918e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},  # float32 = TF32 tensor cores
    "H100": {"bfloat16": 989e12, "float32": 494e12},
    "H200": {"bfloat16": 989e12, "float32": 494e12},
}


def _subjaxprs(value: Any):
    if isinstance(value, jex_core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex_core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _subjaxprs(v)


def _dot_flops(eqn: Any) -> int:
    (lhs_contract, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
    # lhs = batch x free x contracted, so 2 * |lhs| * |rhs free| = 2 * |out| * |contracted|.
    return 2 * math.prod(lhs) * math.prod(rhs_free)


def jaxpr_flops(jaxpr: Any, while_trips: int | None = None) -> int:
    """Matmul FLOPs of a jaxpr (see the module docstring for loops and branches)."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"].jaxpr, while_trips)
        elif name == "while":
            body = jaxpr_flops(eqn.params["body_jaxpr"].jaxpr, while_trips)
            cond = jaxpr_flops(eqn.params["cond_jaxpr"].jaxpr, while_trips)
            if body + cond and while_trips is None:
                raise ValueError("the function has a while loop with matmuls: pass while_trips (its trip count)")
            total += (while_trips or 0) * (body + cond)
        elif name == "cond":
            total += max(jaxpr_flops(b.jaxpr, while_trips) for b in eqn.params["branches"])
        else:  # pjit, custom_jvp/vjp calls, remat, shard_map, ...: their inner jaxprs once
            for value in eqn.params.values():
                for sub in _subjaxprs(value):
                    total += jaxpr_flops(sub, while_trips)
    return total


def count_flops(fn: Callable[..., Any], *args: Any, while_trips: int | None = None, **kwargs: Any) -> int:
    """Matmul FLOPs of one call ``fn(*args, **kwargs)``, counted on its jaxpr (traced
    only: donated arguments are not consumed). A jitted ``fn`` is traced as the top-level
    program it is (a jit with ``compiler_options`` cannot be nested in ``make_jaxpr``)."""
    if hasattr(fn, "trace"):
        return jaxpr_flops(fn.trace(*args, **kwargs).jaxpr.jaxpr, while_trips)
    return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr, while_trips)


def matmul_rate(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n ``jnp.dot`` on the default device, accumulated in float32 as
    the models' layers do (``layers.float32_accumulation``: XLA:CPU's bfloat16 path),
    best of ``repeats`` timed calls after a compile: what a FLOP-bound phase could reach
    on this machine."""
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    dot = jax.jit(functools.partial(jnp.dot, preferred_element_type=jnp.float32))
    jax.block_until_ready(dot(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_flops(device: Any, dtype: str) -> float | None:
    """The published dense peak of ``device`` for ``dtype``, or None when unknown (CPUs)."""
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key.lower() in device.device_kind.lower():
            return PEAK_FLOPS[key].get(dtype)
    return None
