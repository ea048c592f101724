"""Utterance generation for causal LMs: one jitted call, a KV cache, early stop.

``generate`` prefills the left-padded prompts, then runs a ``lax.while_loop`` that
emits one token per row per step and stops as soon as every row has emitted one of
the terminator ids (or ``max_new_tokens`` is reached). Shapes are fixed, so rollouts,
evaluation and the update phases all share one compiled program per prompt length.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Generation:
    tokens: jax.Array  # [B, T] int32; pad_id after a row's terminator
    mask: jax.Array  # [B, T] bool; True up to and including the terminator
    logprobs: jax.Array  # [B, T] float32, log pi(token) at temperature 1; 0 where masked


def first_argmax(x: jax.Array) -> jax.Array:
    """``jnp.argmax(x, axis=-1)`` for rows without NaN (the first index of the maximum), as a
    max and a min over indices: two plain reductions, which the CPU backend runs about 2.5x
    faster than argmax's (value, index) reduction (docs/benchmarks.md)."""
    top = jnp.max(x, axis=-1, keepdims=True)
    index = jnp.arange(x.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(x == top, index, x.shape[-1]), axis=-1)


def _pick(logits: jax.Array, rng: jax.Array, temperature: jax.Array) -> jax.Array:
    """Samples at ``temperature`` (> 0) or takes the argmax (temperature == 0);
    ``temperature`` is a scalar or one value per row ([B]).

    Sampling is ``jax.random.categorical``'s Gumbel-max, argmax(g + logits / T), with the
    same noise g; greedy rows take the argmax of the logits themselves, so one argmax
    serves both."""
    scaled = logits / jnp.maximum(temperature, 1e-6)[..., None]
    noisy = jax.random.gumbel(rng, logits.shape, logits.dtype) + scaled
    return first_argmax(jnp.where((temperature > 0)[..., None], noisy, logits))


def generate(
    module: nn.Module,
    params: Any,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    rng: jax.Array,
    temperature: jax.Array | float,
    *,
    max_new_tokens: int,
    stop_ids: tuple[int, ...],
    pad_id: int,
) -> Generation:
    """Generates up to ``max_new_tokens`` for each left-padded prompt row, at
    ``temperature`` (a scalar, or [B] for one per row; 0 = greedy).

    Call it inside ``jax.jit`` (``max_new_tokens``, ``stop_ids`` and ``pad_id`` static).
    ``module.config.init_cache(batch, max_len)`` must give an empty KV cache.
    """
    batch, prompt_len = prompt_ids.shape
    cache = module.config.init_cache(batch, prompt_len + max_new_tokens)
    out = module.apply({"params": params}, prompt_ids, prompt_mask, cache=cache, logits_start=prompt_len - 1)
    temperature = jnp.asarray(temperature, jnp.float32)
    stops = jnp.asarray(stop_ids, jnp.int32)

    def emit(t, logits, rng, done, tokens, mask, logprobs):
        token = _pick(logits, rng, temperature)
        token = jnp.where(done, pad_id, token)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
        tokens = tokens.at[:, t].set(token)
        mask = mask.at[:, t].set(~done)
        logprobs = logprobs.at[:, t].set(jnp.where(done, 0.0, logp))
        done = done | jnp.isin(token, stops)
        return token, done, tokens, mask, logprobs

    rng, first = jax.random.split(rng)
    tokens = jnp.full((batch, max_new_tokens), pad_id, jnp.int32)
    mask = jnp.zeros((batch, max_new_tokens), jnp.bool_)
    logprobs = jnp.zeros((batch, max_new_tokens), jnp.float32)
    token, done, tokens, mask, logprobs = emit(
        0, out.logits[:, -1], first, jnp.zeros((batch,), jnp.bool_), tokens, mask, logprobs)

    def cond(carry):
        t, _, _, done, *_ = carry
        return (t < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        t, cache, token, done, rng, tokens, mask, logprobs = carry
        # The token fed back is real only if its row had not finished before it.
        fed_mask = jax.lax.dynamic_slice_in_dim(mask, t - 1, 1, axis=1)
        step = module.apply({"params": params}, token[:, None], fed_mask, cache=cache)
        rng, key = jax.random.split(rng)
        token, done, tokens, mask, logprobs = emit(t, step.logits[:, -1], key, done, tokens, mask, logprobs)
        return t + 1, step.cache, token, done, rng, tokens, mask, logprobs

    carry = (jnp.int32(1), out.cache, token, done, rng, tokens, mask, logprobs)
    _, _, _, _, _, tokens, mask, logprobs = jax.lax.while_loop(cond, body, carry)
    return Generation(tokens=tokens, mask=mask, logprobs=logprobs)
