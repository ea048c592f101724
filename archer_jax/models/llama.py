"""Llama-family causal LMs (Llama 2 / 3 / 3.1 / 3.2, Mistral) as Flax modules that load
Hugging Face weights: the scale-up actor.

Pre-norm decoder blocks with RMSNorm, rotary position embeddings (HF's rotate-half
layout), grouped-query attention, a SwiGLU MLP and a tied or untied LM head. Mistral
adds a sliding attention window. Batches are left-padded, so positions come from the
attention mask. With a ``KVCache`` the model runs incrementally: prefill a prompt, then
decode token by token.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from archer_jax.models import hf_loading, layers
from archer_jax.models.layers import CausalLMOutput, KVCache
from archer_jax.models.registry import Family

_MODEL_TYPES = ("llama", "mistral")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """How RoPE frequencies are rescaled for long contexts.

    ``kind`` 'linear' divides every frequency by ``factor`` (position interpolation);
    'llama3' (Llama 3.1+) divides only the low frequencies (wavelength above
    ``original_max_position_embeddings / low_freq_factor``) by ``factor``, keeps the
    high ones (wavelength below ``original / high_freq_factor``) and blends in between.
    """

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "llama3"):
            raise ValueError(f"RopeScaling: kind '{self.kind}' is not supported; supported: 'linear', 'llama3'")
        if self.kind == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(f"RopeScaling: high_freq_factor={self.high_freq_factor} must exceed "
                             f"low_freq_factor={self.low_freq_factor}")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Llama / Mistral hyper-parameters (Hugging Face names).

    ``head_dim`` None means hidden_size // num_attention_heads (Mistral checkpoints may
    give one that differs); after construction it always holds the resolved int.
    ``sliding_window`` None means full causal attention; otherwise a query sees only the
    last ``sliding_window`` tokens (itself included), as in Mistral.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    attention_bias: bool = False  # biases on q/k/v/o projections
    mlp_bias: bool = False  # biases on gate/up/down projections
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    # Training options, not architecture (never read from or written to config.json):
    # low-rank adapters on the named dense layers, and rematerialised blocks (their
    # activations recomputed in the backward pass instead of kept).
    lora: layers.LoRA | None = None
    remat: bool = False

    def __post_init__(self) -> None:
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"LlamaConfig: hidden_size={self.hidden_size} is not divisible by "
                                 f"num_attention_heads={self.num_attention_heads}; give head_dim")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig: head_dim={self.head_dim} must be even for rotary embeddings")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"LlamaConfig: num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"LlamaConfig: sliding_window={self.sliding_window} must be positive or None")

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.num_attention_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_key_value_heads

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings

    @classmethod
    def from_hf(cls, hf_config: Mapping[str, Any], dtype: Any = jnp.float32,
                param_dtype: Any = jnp.float32) -> LlamaConfig:
        """From a Hugging Face ``config.json`` dict of model_type 'llama' or 'mistral',
        written by any transformers version (top-level 'rope_theta' + 'rope_scaling', or
        transformers 5's 'rope_parameters')."""
        model_type = hf_config.get("model_type")
        if model_type not in _MODEL_TYPES:
            raise hf_loading.CheckpointError(f"LlamaConfig: model_type '{model_type}' is not one of {_MODEL_TYPES}")
        act = hf_config.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise hf_loading.CheckpointError(f"{model_type} config.json: hidden_act '{act}' is not supported "
                                             "(only silu)")
        try:
            hidden = hf_config["hidden_size"]
            heads = hf_config["num_attention_heads"]
            theta, scaling = _rope_from_hf(hf_config)
            return cls(
                vocab_size=hf_config["vocab_size"],
                hidden_size=hidden,
                intermediate_size=hf_config["intermediate_size"],
                num_hidden_layers=hf_config["num_hidden_layers"],
                num_attention_heads=heads,
                # Absent in Llama 1 configs, which are plain multi-head attention.
                num_key_value_heads=hf_config.get("num_key_value_heads") or heads,
                # Some configs write head_dim null; that means hidden / heads.
                head_dim=hf_config.get("head_dim") or None,
                rms_norm_eps=hf_config.get("rms_norm_eps", 1e-6),
                rope_theta=theta,
                rope_scaling=scaling,
                max_position_embeddings=hf_config.get("max_position_embeddings", 2048),
                tie_word_embeddings=hf_config.get("tie_word_embeddings", False),
                sliding_window=hf_config.get("sliding_window") if model_type == "mistral" else None,
                attention_bias=hf_config.get("attention_bias", False),
                mlp_bias=hf_config.get("mlp_bias", False),
                dtype=dtype,
                param_dtype=param_dtype,
            )
        except KeyError as e:
            raise hf_loading.CheckpointError(f"{model_type} config.json lacks the field {e}") from e
        except ValueError as e:
            raise hf_loading.CheckpointError(f"{model_type} config.json: {e}") from e

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict of this config (``from_hf``'s inverse):
        model_type 'mistral' with a sliding window, else 'llama'; RoPE in the
        top-level ``rope_theta`` / ``rope_scaling`` layout every transformers version reads."""
        mistral = self.sliding_window is not None
        s = self.rope_scaling
        scaling = None if s is None else {"rope_type": s.kind, "factor": s.factor} if s.kind == "linear" else {
            "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings}
        return {
            "model_type": "mistral" if mistral else "llama",
            "architectures": ["MistralForCausalLM" if mistral else "LlamaForCausalLM"],
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "hidden_act": "silu", "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta, "rope_scaling": scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "sliding_window": self.sliding_window,
            "attention_bias": self.attention_bias, "mlp_bias": self.mlp_bias,
            "dtype": jnp.dtype(self.param_dtype).name,
        }

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty cache of ``max_len`` slots, in the compute dtype."""
        return KVCache.init(batch, max_len, self.num_layers, self.num_kv_heads, self.head_dim, self.dtype)


def _rope_from_hf(hf_config: Mapping[str, Any]) -> tuple[float, RopeScaling | None]:
    """(rope_theta, scaling) from either config layout.

    transformers 5 writes ``rope_parameters`` {rope_type, rope_theta, factor, ...};
    older versions a top-level ``rope_theta`` and ``rope_scaling`` (whose type key was
    'type' before it became 'rope_type'; None for plain RoPE).
    """
    params = hf_config.get("rope_parameters") or hf_config.get("rope_scaling") or {}
    theta = params.get("rope_theta", hf_config.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind not in ("linear", "llama3"):
        raise ValueError(f"rope type '{kind}' is not supported; supported: 'default', 'linear', 'llama3'")
    if kind == "linear":
        return float(theta), RopeScaling("linear", float(params["factor"]))
    return float(theta), RopeScaling(
        "llama3",
        float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        # HF falls back to max_position_embeddings when the scaling dict omits it.
        original_max_position_embeddings=int(params.get("original_max_position_embeddings",
                                                        hf_config["max_position_embeddings"])),
    )


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """Inverse frequencies [head_dim / 2] (float32) of the rotary embedding, scaled."""
    d = config.head_dim
    inv = 1.0 / (config.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    s = config.rope_scaling
    if s is None:
        return inv.astype(np.float32)
    if s.kind == "linear":
        return (inv / s.factor).astype(np.float32)
    wavelen = 2 * math.pi / inv
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * inv / s.factor + smooth * inv
    out = np.where(wavelen > low_wavelen, inv / s.factor, np.where(wavelen < high_wavelen, inv, blended))
    return out.astype(np.float32)


def _rotary_tables(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """cos, sin [B, L, 1, head_dim] in float32; each frequency fills both halves of
    the head, matching rotate-half (the first half pairs with the second)."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x [B, L, H, D] by position (HF rotate-half convention), in float32."""
    x32 = x.astype(jnp.float32)
    first, second = jnp.split(x32, 2, axis=-1)
    rotated = jnp.concatenate([-second, first], axis=-1)
    return (x32 * cos + rotated * sin).astype(x.dtype)


def _rms_norm(config: LlamaConfig, name: str) -> layers.RMSNorm:
    return layers.RMSNorm(config.rms_norm_eps, config.dtype, config.param_dtype, name=name)


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with RoPE, optionally reading and writing a KV cache
    (keys are cached after rotation)."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, bias: jax.Array,
                 kv: tuple[jax.Array, jax.Array] | None = None,
                 index: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, use_bias=cfg.attention_bias, lora=cfg.lora)
        q = layers.dense((cfg.num_heads, cfg.head_dim), ("embed", "heads", "head_dim"), name="q_proj", **kw)(x)
        k = layers.dense((cfg.num_kv_heads, cfg.head_dim), ("embed", "kv_heads", "head_dim"), name="k_proj", **kw)(x)
        v = layers.dense((cfg.num_kv_heads, cfg.head_dim), ("embed", "kv_heads", "head_dim"), name="v_proj", **kw)(x)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        k, v, kv = layers.cached_kv(k, v, kv, index)
        out = layers.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), bias)
        out = layers.dense(cfg.hidden_size, ("heads", "head_dim", "embed"), axis=(-2, -1), name="o_proj", **kw)(out)
        return out, kv


class LlamaMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, use_bias=cfg.mlp_bias, lora=cfg.lora)
        gate = layers.dense(cfg.intermediate_size, ("embed", "mlp"), name="gate_proj", **kw)(x)
        up = layers.dense(cfg.intermediate_size, ("embed", "mlp"), name="up_proj", **kw)(x)
        h = layers.recompute_in_backward(lambda g, u: jax.nn.silu(g) * u)(gate, up)
        return layers.dense(cfg.hidden_size, ("mlp", "embed"), name="down_proj", **kw)(h)


class LlamaDecoderLayer(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, bias: jax.Array,
                 kv: tuple[jax.Array, jax.Array] | None = None,
                 index: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        h = _rms_norm(self.config, "input_layernorm")(x)
        h, kv = LlamaAttention(self.config, name="self_attn")(h, cos, sin, bias, kv, index)
        x = x + h
        h = _rms_norm(self.config, "post_attention_layernorm")(x)
        return x + LlamaMLP(self.config, name="mlp")(h), kv


class LlamaForCausalLM(nn.Module):
    """A Llama / Mistral decoder with its LM head (tied to the embedding or not).

    ``__call__(input_ids [B, L], attention_mask [B, L], positions=None, cache=None)``.
    Without a cache, positions default to each row's real-token count (left padding).
    With a cache, the L new tokens go to slots ``cache.index ...`` and attend to every
    filled slot (within the sliding window, if any); positions continue after the
    tokens already cached; the returned cache has ``index + L``.
    """

    config: LlamaConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, positions: jax.Array | None = None,
                 cache: KVCache | None = None, logits_start: int = 0) -> CausalLMOutput:
        cfg = self.config
        length = input_ids.shape[1]
        if positions is None:
            positions = (layers.positions_from_mask(attention_mask) if cache is None
                         else cache.next_positions(attention_mask))
        cos, sin = _rotary_tables(positions, rope_inv_freq(cfg))

        embed_tokens = layers.embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), dtype=cfg.dtype,
                                    param_dtype=cfg.param_dtype, name="embed_tokens")
        x = embed_tokens(input_ids)

        if cache is None:
            bias = layers.attention_bias(attention_mask, length, causal=True, sliding_window=cfg.sliding_window)
        else:
            key_mask = layers.extend_mask(cache, attention_mask)
            bias = layers.attention_bias(key_mask, length, causal=True, query_offset=cache.index,
                                         sliding_window=cfg.sliding_window)
        new_k, new_v = [], []
        block = nn.remat(LlamaDecoderLayer) if cfg.remat else LlamaDecoderLayer
        for i in range(cfg.num_layers):
            kv = None if cache is None else (cache.k[i], cache.v[i])
            x, kv = block(cfg, name=f"layers_{i}")(
                x, cos, sin, bias, kv, None if cache is None else cache.index)
            if kv is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
        hidden = _rms_norm(cfg, "norm")(x)
        # Only positions >= logits_start (static) get logits: see GPT2LMHeadModel.
        head_in = hidden[:, logits_start:]
        if cfg.tie_word_embeddings:
            logits = layers.attend(embed_tokens, head_in)
        else:
            logits = layers.dense(cfg.vocab_size, ("embed", "vocab"), use_bias=False, dtype=cfg.dtype,
                                  param_dtype=cfg.param_dtype, name="lm_head", lora=cfg.lora)(head_in)
        new_cache = None
        if cache is not None:
            new_cache = KVCache(k=tuple(new_k), v=tuple(new_v), mask=key_mask, index=cache.index + length)
        return CausalLMOutput(logits=logits.astype(jnp.float32), hidden=hidden, cache=new_cache)


def weight_spec(config: LlamaConfig) -> dict[str, hf_loading.Source]:
    """Flax param path -> HF tensor (names without the 'model.' prefix; lm_head.weight
    never has it). torch Linear weights [out, in] become kernels [in, out], with the
    per-head projections split into [E, heads, D] and o_proj into [heads, D, E]."""
    e, h, kh, d = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
    src, tr, rs = hf_loading.source, hf_loading.transposed, hf_loading.reshaped
    spec = {"embed_tokens/embedding": src("embed_tokens.weight"), "norm/scale": src("norm.weight")}
    if not config.tie_word_embeddings:
        spec["lm_head/kernel"] = tr("lm_head.weight")
    for i in range(config.num_layers):
        p, f = f"layers_{i}", f"layers.{i}"
        heads = {"q_proj": h, "k_proj": kh, "v_proj": kh}
        for name, n in heads.items():
            spec[f"{p}/self_attn/{name}/kernel"] = tr(f"{f}.self_attn.{name}.weight", (e, n, d))
            if config.attention_bias:
                spec[f"{p}/self_attn/{name}/bias"] = rs(f"{f}.self_attn.{name}.bias", (n, d))
        spec[f"{p}/self_attn/o_proj/kernel"] = tr(f"{f}.self_attn.o_proj.weight", (h, d, e), in_axes=2)
        if config.attention_bias:
            spec[f"{p}/self_attn/o_proj/bias"] = src(f"{f}.self_attn.o_proj.bias")
        for name in ("gate_proj", "up_proj", "down_proj"):
            spec[f"{p}/mlp/{name}/kernel"] = tr(f"{f}.mlp.{name}.weight")
            if config.mlp_bias:
                spec[f"{p}/mlp/{name}/bias"] = src(f"{f}.mlp.{name}.bias")
        for name in ("input_layernorm", "post_attention_layernorm"):
            spec[f"{p}/{name}/scale"] = src(f"{f}.{name}.weight")
    return spec


FAMILY = Family(
    name="llama",
    config_from_hf=LlamaConfig.from_hf,
    build=LlamaForCausalLM,
    init_inputs=layers.token_init_inputs,
    weight_spec=weight_spec,
    config_to_hf=LlamaConfig.to_hf,
    prefixes=("model.", ""),
    unprefixed=(r"^lm_head\.",),
    # Old checkpoints store the rotary inverse-frequency buffers; some tied ones also
    # store an lm_head.weight copy of the embedding (an untied model still requires it).
    ignore=(r"(^|\.)rotary_emb\.inv_freq$", r"^lm_head\.weight$"),
)
