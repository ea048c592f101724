"""Row-wise model calls on left-padded batches, each group of rows cut to the columns it needs.

A replay or dataset batch holds observations of very different lengths, all left-padded to
``config.tokens.obs_len``: on WebShop a start page is about 50 tokens, an item page
100-140, a results page 270-360, so most of a batch's columns are padding, and every
layer pays for them (attention twice over). ``apply`` sorts the rows by the span of
columns they use, splits them into ``chunks`` groups of equal size, and calls the model
on each group with its observation cut to the shortest of ``buckets`` that holds the
group's longest row (one compiled branch per bucket, chosen on device with
``lax.switch``; the groups run one after another in a ``lax.map``). The results are put
back in the rows' order.

Exact wherever the model reads a row through its mask alone (positions from the mask,
padding keys masked out, pooling over real tokens or at the last column): the columns
cut are padding of every row of the group. Up to float rounding, the outputs equal one
call on the whole batch, and so do their gradients (the calls differentiate like any
``lax.map``). Rows are independent of each other: nothing in the model may mix rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from archer_jax import sampling


def spans(mask: jax.Array) -> jax.Array:
    """[B] int32: columns from each row's first real token to the end of ``mask`` [B, W]
    (0 for a row with none). Left-padded rows use exactly these last columns, gaps
    inside them included (a privileged critic's hidden text, then the observation)."""
    width = mask.shape[1]
    return jnp.where(jnp.any(mask, axis=1), width - jnp.argmax(mask, axis=1), 0).astype(jnp.int32)


def widths(buckets: Sequence[int], width: int) -> tuple[int, ...]:
    """The cut widths actually used for columns of ``width``: the buckets below it,
    sorted and deduplicated, then ``width`` itself (every row fits the last)."""
    return tuple(sorted({int(b) for b in buckets if 0 < b < width})) + (width,)


def in_groups(fn: Callable[..., Any], args: Sequence[jax.Array], chunks: int) -> Any:
    """``fn(*args)`` on gcd(``chunks``, B) equal groups of consecutive rows, one after
    another (``lax.map``), the results concatenated in the rows' order: one call's numbers
    (up to float rounding) with one group's working set. ``chunks`` = 1: one plain call."""
    batch = args[0].shape[0]
    chunks = math.gcd(max(chunks, 1), batch)
    if chunks == 1:
        return fn(*args)
    out = jax.lax.map(lambda rows: fn(*rows), [x.reshape(chunks, batch // chunks, *x.shape[1:]) for x in args])
    return jax.tree.map(lambda x: x.reshape(batch, *x.shape[2:]), out)


def apply(fn: Callable[..., Any], mask: jax.Array, args: Sequence[jax.Array], *,
          buckets: Sequence[int], chunks: int) -> Any:
    """``fn(width, *args)`` row by row, the rows grouped by the span of ``mask``.

    ``fn(width, *rows)`` gets the rows of one group (every array of ``args``, [B / chunks,
    ...] each) and the static ``width`` it may cut them to (the last ``width`` columns of
    the arrays laid out like ``mask``, which hold every real token of the group's rows);
    it returns a pytree of arrays with the rows as leading axis. With no bucket below
    ``mask``'s width it is one plain call ``fn(mask.shape[1], *args)``. The batch is
    split into gcd(``chunks``, B) groups.

    Each branch is rematerialised (``jax.checkpoint``): under a gradient the branches
    of a switch would otherwise all keep residuals of the widest one's shapes, which
    costs more than the columns cut save; recomputing the chosen branch's forward pass
    costs less.
    """
    batch, full = mask.shape
    cuts = widths(buckets, full)
    if len(cuts) == 1:
        return fn(full, *args)
    if chunks < 1:
        raise ValueError(f"length_buckets.apply: chunks = {chunks} must be >= 1")
    chunks = math.gcd(chunks, batch)
    span = spans(mask)
    order = jnp.argsort(span)  # shortest rows first; ties keep the batch order
    groups = order.reshape(chunks, batch // chunks)
    bounds = jnp.asarray(cuts[:-1], jnp.int32)
    branches = [jax.checkpoint(lambda rows, w=w: fn(w, *rows)) for w in cuts]

    def group(rows_index: jax.Array) -> Any:
        rows = [x[rows_index] for x in args]
        branch = jnp.sum(jnp.max(span[rows_index]) > bounds)  # the first width that holds every row
        return jax.lax.switch(branch, branches, rows)

    out = jax.lax.map(group, groups)  # [chunks, B / chunks, ...]
    inverse = jnp.argsort(order)
    return jax.tree.map(lambda x: x.reshape(batch, *x.shape[2:])[inverse], out)


def generate(module: Any, params: Any, prompt_ids: jax.Array, prompt_mask: jax.Array, rng: jax.Array,
             temperature: jax.Array | float, *, buckets: Sequence[int] = (), chunks: int = 1,
             **kwargs: Any) -> sampling.Generation:
    """``sampling.generate`` with the prompts grouped by length (``apply``): each group's
    prefill and KV cache span only its bucket's width, so decoding reads a shorter cache
    too. Each group samples with its own key (the keys of its rows, split from
    ``rng``): the same distribution as one call, not the same draws. Without a bucket
    below the prompt width it is exactly ``sampling.generate``."""
    batch, width = prompt_ids.shape
    if len(widths(buckets, width)) == 1:
        return sampling.generate(module, params, prompt_ids, prompt_mask, rng, temperature, **kwargs)
    rows_t = jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), (batch,))

    def call(w: int, ids: jax.Array, mask: jax.Array, keys: jax.Array, t: jax.Array) -> Any:
        return sampling.generate(module, params, ids[:, -w:], mask[:, -w:], keys[0], t, **kwargs)

    return apply(call, prompt_mask, (prompt_ids, prompt_mask, jax.random.split(rng, batch), rows_t),
                 buckets=buckets, chunks=chunks)
