"""Building blocks shared by the model families: dense layers with logical axes,
the KV cache, masking and grouped-query dot-product attention.

Conventions every family follows:
- attention projections are ``DenseGeneral`` with kernels [embed, heads, head_dim]
  (logical ('embed', 'heads', 'head_dim')) and outputs [heads, head_dim, embed];
- ``dtype`` is the compute dtype, ``param_dtype`` the stored (master) dtype;
- masks are 1 for real tokens; batches may be left-padded, so positions come from
  the mask (``positions_from_mask``), never from the column index.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def logical_init(init: nn.initializers.Initializer, names: Sequence[str | None]) -> nn.initializers.Initializer:
    return nn.with_logical_partitioning(init, tuple(names))


@dataclasses.dataclass(frozen=True)
class LoRA:
    """Low-rank adapters (Hu et al. 2021) on the dense layers named in ``targets``
    (the family's module names: 'q_proj', 'v_proj', ...): each adds
    ``alpha / rank * (x A) B`` to its frozen layer, A [in..., rank] at a
    Kaiming-uniform init, B [rank, out...] at zero, so a model starts as its base.
    The adapters sit beside their layer (``q_proj_lora/lora_a``), so a base
    checkpoint's param paths are unchanged, and are float32 whatever the base's
    ``param_dtype``."""

    rank: int
    alpha: float
    targets: tuple[str, ...]

    def on(self, name: str | None) -> LoRA | None:
        return self if self.rank > 0 and name in self.targets else None


ADAPTERS = ("lora_a", "lora_b")


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
    """A ``jax.tree_util`` key path (dict keys, attribute names) or a sequence of names,
    as names."""
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def is_adapter(path: Sequence[Any]) -> bool:
    """Whether a param path (``jax.tree_util`` keys or names) ends in a LoRA adapter."""
    return any(n in ADAPTERS for n in path_names(path))


class LoRAAdapter(nn.Module):
    """The low-rank term of one DenseGeneral (``LoRA``), contracting the same input axes."""

    lora: LoRA
    features: tuple[int, ...]
    axis: tuple[int, ...]
    kernel_axes: tuple[str | None, ...]
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        axis = tuple(a % x.ndim for a in self.axis)
        n_in, rank = len(axis), self.lora.rank
        in_shape = tuple(x.shape[a] for a in axis)
        a_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=tuple(range(n_in)),
                                                  out_axis=-1)  # torch's kaiming_uniform(a=sqrt(5)), as PEFT
        a = self.param("lora_a", logical_init(a_init, (*self.kernel_axes[:n_in], None)), (*in_shape, rank),
                       jnp.float32)
        b = self.param("lora_b", logical_init(nn.initializers.zeros_init(), (None, *self.kernel_axes[n_in:])),
                       (rank, *self.features), jnp.float32)
        # x's free axes first, in order, then the features: DenseGeneral's layout.
        h = jnp.tensordot(x.astype(self.dtype), a.astype(self.dtype), axes=(axis, tuple(range(n_in))))
        return jnp.tensordot(h, b.astype(self.dtype), axes=1) * (self.lora.alpha / rank)


def merge_lora(params: Any, lora: LoRA) -> Any:
    """The params of a model with adapters (``LoRA``) as its base model's: each adapted
    kernel becomes W + alpha / rank * A B (in float32, stored back in W's dtype) and the
    adapters are dropped; what an export writes."""
    flat = flax.traverse_util.flatten_dict(nn.meta.unbox(params))
    merged = {}
    for path, value in flat.items():
        if path[-1] in ADAPTERS:
            continue
        adapter = (*path[:-2], f"{path[-2]}_lora") if len(path) > 1 and path[-1] == "kernel" else None
        if adapter is not None and (*adapter, "lora_a") in flat:
            delta = jnp.tensordot(jnp.asarray(flat[(*adapter, "lora_a")], jnp.float32),
                                  jnp.asarray(flat[(*adapter, "lora_b")], jnp.float32), axes=1)
            value = (jnp.asarray(value, jnp.float32) + delta * (lora.alpha / lora.rank)).astype(value.dtype)
        merged[path] = value
    return flax.traverse_util.unflatten_dict(merged)


def float32_accumulation(dtype: Dtype) -> Callable[..., jax.Array]:
    """A ``lax.dot_general`` that accumulates in float32 and returns ``dtype``: for
    bfloat16 operands the TPU's MXU does so anyway, and XLA:CPU takes its bfloat16
    instructions (AVX512-BF16) only for a float32 result: a bfloat16-output dot ran at
    the float32 rate there, 182-198 GFLOP/s, a float32-output one at 394-420 (docs/
    benchmarks.md). For float32 operands it is the plain product."""

    def dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, precision: Any = None,
                    preferred_element_type: Any = None) -> jax.Array:
        del preferred_element_type
        out = jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                  preferred_element_type=jnp.float32)
        return out.astype(dtype)

    return dot_general


def recompute_in_backward(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``fn``, an element-wise activation (GELU, or SwiGLU's silu(gate) * up), under
    ``jax.checkpoint``: a gradient keeps only its inputs and recomputes its inner terms
    in the backward pass. Autodiff otherwise keeps the inner terms too (the erfc or tanh
    term, exp, products): 6, 4 and 6 [B, L, mlp] arrays per layer for GPT-2, RoBERTa and
    Llama instead of 2, 2 and 3, until the backward pass reaches that layer: in the
    small preset's critic phase (RoBERTa-base, 8 x 232 tokens) XLA's temporaries drop
    from 2.40 to 1.99 GiB without them, in its actor phase (GPT-2) from 2.15 to 1.89 GiB
    (docs/benchmarks.md). The recomputation is
    element-wise work beside the layer's products; the values are the same, and for
    GPT-2's tanh GELU the gradients too, bit for bit."""
    return jax.checkpoint(fn)


def attend(embedding: nn.Embed, x: jax.Array) -> jax.Array:
    """Logits of a head tied to ``embedding``, float32: ``embedding.attend`` accumulated in float32."""
    table = jnp.asarray(embedding.embedding, embedding.dtype)
    return jnp.dot(x.astype(embedding.dtype), table.T, preferred_element_type=jnp.float32)


def dense(
    features: int | Sequence[int],
    kernel_axes: Sequence[str | None],
    *,
    axis: int | Sequence[int] = -1,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    init_std: float = 0.02,
    name: str | None = None,
    lora: LoRA | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """A DenseGeneral whose kernel (and bias) carry logical axis names.

    ``kernel_axes`` names the kernel's dims (input dims first, then output dims).
    ``lora``: when it targets ``name`` (``LoRA.on``), the layer's output also gets its
    adapter's (a ``LoRAAdapter`` named ``<name>_lora``).
    """
    out_ndim = 1 if isinstance(features, int) else len(features)
    base = nn.DenseGeneral(
        features=features,
        axis=axis,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=logical_init(nn.initializers.normal(init_std), kernel_axes),
        bias_init=logical_init(nn.initializers.zeros_init(), tuple(kernel_axes)[-out_ndim:]),
        dot_general=float32_accumulation(dtype),
        name=name,
    )
    if lora is None or lora.on(name) is None:
        return base
    adapter = LoRAAdapter(lora, (features,) if isinstance(features, int) else tuple(features),
                          (axis,) if isinstance(axis, int) else tuple(axis), tuple(kernel_axes), dtype,
                          name=f"{name}_lora")
    return lambda x: base(x) + adapter(x).astype(dtype)


def embed(num: int, features: int, axes: Sequence[str | None], *, param_dtype: Dtype, dtype: Dtype,
          init_std: float = 0.02, name: str | None = None) -> nn.Embed:
    return nn.Embed(
        num_embeddings=num,
        features=features,
        dtype=dtype,
        param_dtype=param_dtype,
        embedding_init=logical_init(nn.initializers.normal(init_std), axes),
        name=name,
    )


class RMSNorm(nn.Module):
    """Root-mean-square norm (Llama, T5), statistics in float32.

    ``scale_in_float32``: T5 multiplies by the scale before casting back; Llama casts
    the normalised input to the compute dtype first (each as its reference does).
    """

    eps: float
    dtype: Dtype
    param_dtype: Dtype
    scale_in_float32: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", logical_init(nn.initializers.ones_init(), ("norm",)), (x.shape[-1],),
                           self.param_dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        if self.scale_in_float32:
            return (normed * scale.astype(jnp.float32)).astype(self.dtype)
        return normed.astype(self.dtype) * scale.astype(self.dtype)


def token_init_inputs(config: object = None) -> tuple[jax.Array, jax.Array]:
    """Dummy (ids, mask) of one token: enough to initialise any ids -> outputs model."""
    del config
    ids = jnp.zeros((1, 1), jnp.int32)
    return ids, jnp.ones_like(ids)


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """0-based position of each real token in a left- or right-padded row."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


@flax.struct.dataclass
class KVCache:
    """Keys and values of every layer for incremental decoding, stored in the layout
    ``dot_product_attention`` reads (``heads_first``), so a decoding step reads the cache
    as it is instead of transposing all of it.

    ``k[i]``: [B, kv_heads, head_dim, S]; ``v[i]``: [B, kv_heads, S, head_dim]; ``mask``:
    [B, S], True where a slot holds a real token; ``index``: the next slot to write (same
    for all rows, since prompts are left-padded to one length).
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    mask: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, batch: int, max_len: int, num_layers: int, num_kv_heads: int, head_dim: int,
             dtype: Dtype = jnp.float32) -> KVCache:
        k = jnp.zeros((batch, num_kv_heads, head_dim, max_len), dtype)
        v = jnp.zeros((batch, num_kv_heads, max_len, head_dim), dtype)
        return cls(
            k=tuple(k for _ in range(num_layers)),
            v=tuple(v for _ in range(num_layers)),
            mask=jnp.zeros((batch, max_len), jnp.bool_),
            index=jnp.zeros((), jnp.int32),
        )

    @property
    def max_len(self) -> int:
        return self.mask.shape[1]

    def next_positions(self, attention_mask: jax.Array) -> jax.Array:
        """Positions of new tokens [B, L]: continue after each row's cached real tokens,
        counting only the new tokens' real ones (a left-padded prefill starts at 0)."""
        count = jnp.sum(self.mask, axis=-1, dtype=jnp.int32)
        return count[:, None] + positions_from_mask(attention_mask)


def heads_first(k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys and values [B, S, kv_heads, head_dim] (as the projections give them) in the
    layout ``dot_product_attention`` and ``KVCache`` use: keys [B, kv_heads, head_dim, S],
    values [B, kv_heads, S, head_dim], so both products are plain batched matmuls."""
    return k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)


def write_cache(kv: tuple[jax.Array, jax.Array], k: jax.Array, v: jax.Array, index: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    """Heads-first keys and values of new tokens written into the cache buffers ``kv`` at
    slot ``index`` (in place under ``jit`` when the buffers are donated or loop-carried)."""
    return (jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), (0, 0, 0, index)),
            jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), (0, 0, index, 0)))


def cached_kv(k: jax.Array, v: jax.Array, kv: tuple[jax.Array, jax.Array] | None, index: jax.Array | None
              ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array] | None]:
    """Keys and values [B, S, kv_heads, head_dim] made ``heads_first``: without a cache,
    (k, v, None); with one, written at ``index``, and attention then reads the whole
    buffers, which are also returned."""
    k, v = heads_first(k, v)
    if kv is None:
        return k, v, None
    k, v = write_cache(kv, k, v, index)
    return k, v, (k, v)


def extend_mask(cache: KVCache, attention_mask: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice(cache.mask, attention_mask.astype(jnp.bool_), (0, cache.index))


def attention_bias(key_mask: jax.Array, query_len: int, *, causal: bool, query_offset: jax.Array | int = 0,
                   sliding_window: int | None = None, dtype: Dtype = jnp.float32) -> jax.Array:
    """Additive bias [B, 1, Lq, Lk] from a key mask [B, Lk].

    Query i sits at slot ``query_offset + i``; a causal query sees keys at slots <= its
    own (and, with a sliding window, within ``sliding_window`` slots). A finite large
    negative keeps fully masked (padding) rows NaN-free.
    """
    visible = key_mask[:, None, None, :].astype(jnp.bool_)
    if causal:
        q_slot = query_offset + jnp.arange(query_len)[:, None]
        k_slot = jnp.arange(key_mask.shape[-1])[None, :]
        allowed = k_slot <= q_slot
        if sliding_window is not None:
            allowed = allowed & (k_slot > q_slot - sliding_window)
        visible = visible & allowed[None, None]
    return jnp.where(visible, 0.0, jnp.finfo(dtype).min).astype(dtype)


# Keys per block of ``dot_product_attention`` on the CPU backend: past 256 keys XLA's CPU
# fusion of a product, a softmax and a product runs 2-3x slower per key (docs/benchmarks.md).
CPU_KEY_BLOCK = 256


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, *,
                          scale: float | None = None, key_block: int | None = None) -> jax.Array:
    """Grouped-query attention. q [B,L,H,D]; k [B,Hkv,D,S] and v [B,Hkv,S,D] (``heads_first``,
    the ``KVCache`` layout); bias [B or 1, H or 1, L or 1, S]. Softmax in fp32 whatever the
    compute dtype. Returns [B,L,H,D].

    Heads lead and the query heads of one kv head share one axis with the queries, so
    both products are plain [B, Hkv] batches of matrices ([G*L, D] x [D, S], then
    [G*L, S] x [S, D]). On the CPU backend this runs the demos' update steps about 1.5x
    faster than einsums that keep the head axes between the sequence axes
    (docs/benchmarks.md); taking k and v in that layout lets a decoding step read its
    cache without transposing it.

    The softmax is normalised after the second product, as flash attention does: the
    unnormalised weights exp(scores - max) multiply v and the [G*L, D] result is divided
    by their sum, rather than dividing every one of the [G*L, S] weights. The keys go in
    blocks of at most ``key_block`` (default: ``CPU_KEY_BLOCK`` on the CPU backend, all
    keys elsewhere) that share one max and one sum, so the result is the softmax's
    whatever the blocks.

    The scale multiplies q ([B, L, H, D]), not the scores ([B, H, L, S]): equal in exact
    arithmetic, and bit-equal where the scale is a power of two (head_dim 16, 64, 256);
    the CPU backend's fused attention otherwise reads the scale as a materialized
    [B, H, L, S] operand, and the backward pass runs about 20% faster without it."""
    # Under a gradient the [B, H, L, S] weights are recomputed in the backward pass from
    # q, k, v and the bias rather than kept from the forward pass, as flash attention
    # does: two products of L x S x D per head instead of keeping L x S floats per layer
    # (the small preset's update phases: no slower, 46-63 MiB fewer temporaries).
    return jax.checkpoint(functools.partial(_attention, scale=scale, key_block=key_block))(q, k, v, bias)


def _attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, *, scale: float | None,
               key_block: int | None) -> jax.Array:
    b, l, h, d = q.shape
    s_len, hkv = k.shape[3], k.shape[1]
    groups = h // hkv
    if scale is None:
        scale = d ** -0.5
    if scale != 1.0:
        q = q * jnp.asarray(scale, q.dtype)
    if key_block is None:
        key_block = CPU_KEY_BLOCK if jax.default_backend() == "cpu" else s_len
    blocks = -(-s_len // key_block)
    bounds = [(i * s_len // blocks, (i + 1) * s_len // blocks) for i in range(blocks)]  # near-equal blocks
    qt = q.transpose(0, 2, 1, 3).reshape(b, hkv, groups * l, d)  # head h: kv head h // G, group h % G
    f32 = jnp.float32  # products accumulate in fp32 whatever the compute dtype
    scores = [jnp.matmul(qt, k[..., lo:hi], preferred_element_type=f32).reshape(b, h, l, hi - lo)
              + bias[..., lo:hi].astype(f32) for lo, hi in bounds]  # [B, H, L, block]
    # The max only keeps exp finite: the result does not depend on it (no gradient).
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, [jnp.max(s, axis=-1, keepdims=True) for s in scores]))
    weights = [jnp.exp(s - top) for s in scores]
    total = functools.reduce(jnp.add, [jnp.sum(w, axis=-1, keepdims=True) for w in weights])  # [B, H, L, 1]
    out = functools.reduce(jnp.add, [
        jnp.matmul(w.astype(v.dtype).reshape(b, hkv, groups * l, hi - lo), v[:, :, lo:hi], preferred_element_type=f32)
        for w, (lo, hi) in zip(weights, bounds)])  # [B, Hkv, G*L, D]
    out = out.reshape(b, h, l, d) / total
    return out.astype(v.dtype).transpose(0, 2, 1, 3)


@flax.struct.dataclass
class CausalLMOutput:
    logits: jax.Array  # [B, L - logits_start, vocab], float32
    hidden: jax.Array  # [B, L, embed], final (normed) hidden states
    cache: KVCache | None = None


@flax.struct.dataclass
class EncoderOutput:
    hidden: jax.Array  # [B, L, embed]
    pooled: jax.Array  # [B, embed]
