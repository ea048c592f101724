"""GPT-2 (the ArCHer paper's actor) as a Flax module that loads Hugging Face weights.

Pre-norm decoder blocks, learned absolute positions and an LM head tied to the token
embedding. Batches are left-padded, so positions come from the attention mask. With a
``KVCache`` the model runs incrementally: prefill a prompt, then decode token by token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from archer_jax.models import hf_loading, layers
from archer_jax.models.layers import CausalLMOutput, KVCache
from archer_jax.models.registry import Family

# Hugging Face activation names GPT-2 checkpoints use. 'gelu_new', 'gelu_fast' and
# 'gelu_pytorch_tanh' are all the tanh approximation of GELU.
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """GPT-2 hyper-parameters (Hugging Face names). ``n_inner`` None means 4 * n_embd."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
    activation: str = "gelu_new"
    # Attention logits are scaled by head_dim**-0.5 (when scale_attn_weights) and, in
    # some checkpoints (Stanford CRFM's Mistral runs) also by 1 / (layer index + 1).
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    # Training options, not architecture (never read from or written to config.json):
    # low-rank adapters on the named dense layers, and rematerialised blocks (their
    # activations recomputed in the backward pass instead of kept).
    lora: layers.LoRA | None = None
    remat: bool = False

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"GPT2Config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"GPT2Config: activation '{self.activation}' is not supported; "
                             f"supported: {sorted(_ACTIVATIONS)}")

    @property
    def num_layers(self) -> int:
        return self.n_layer

    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @property
    def num_kv_heads(self) -> int:
        return self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def max_positions(self) -> int:
        return self.n_positions

    @property
    def mlp_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_hf(cls, hf_config: Mapping[str, Any], dtype: Any = jnp.float32,
                param_dtype: Any = jnp.float32) -> GPT2Config:
        """From a Hugging Face ``config.json`` dict (any transformers version)."""
        if hf_config.get("add_cross_attention", False):
            raise hf_loading.CheckpointError(
                "GPT-2 config has add_cross_attention=true (an encoder-decoder's decoder); not supported")
        try:
            return cls(
                vocab_size=hf_config["vocab_size"],
                n_positions=hf_config["n_positions"],
                n_embd=hf_config["n_embd"],
                n_layer=hf_config["n_layer"],
                n_head=hf_config["n_head"],
                n_inner=hf_config.get("n_inner"),
                layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-5),
                activation=hf_config.get("activation_function", "gelu_new"),
                scale_attn_weights=hf_config.get("scale_attn_weights", True),
                scale_attn_by_inverse_layer_idx=hf_config.get("scale_attn_by_inverse_layer_idx", False),
                dtype=dtype,
                param_dtype=param_dtype,
            )
        except KeyError as e:
            raise hf_loading.CheckpointError(f"GPT-2 config.json lacks the field {e}") from e
        except ValueError as e:
            raise hf_loading.CheckpointError(str(e)) from e

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict of this config (``from_hf``'s inverse;
        the LM head is always tied to the token embedding)."""
        return {
            "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": self.vocab_size,
            "n_positions": self.n_positions, "n_ctx": self.n_positions, "n_embd": self.n_embd,
            "n_layer": self.n_layer, "n_head": self.n_head, "n_inner": self.n_inner,
            "layer_norm_epsilon": self.layer_norm_epsilon, "activation_function": self.activation,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "reorder_and_upcast_attn": False, "tie_word_embeddings": True,
            "dtype": jnp.dtype(self.param_dtype).name,
        }

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty cache of ``max_len`` slots, in the compute dtype."""
        return KVCache.init(batch, max_len, self.num_layers, self.num_kv_heads, self.head_dim, self.dtype)


def _layer_norm(config: GPT2Config, name: str) -> nn.LayerNorm:
    # Statistics in float32 whatever the compute dtype (callers cast the input).
    return nn.LayerNorm(
        epsilon=config.layer_norm_epsilon,
        dtype=jnp.float32,
        param_dtype=config.param_dtype,
        scale_init=layers.logical_init(nn.initializers.ones_init(), ("norm",)),
        bias_init=layers.logical_init(nn.initializers.zeros_init(), ("norm",)),
        name=name,
    )


def _residual_std(config: GPT2Config) -> float:
    # GPT-2's init: projections into the residual stream shrink with depth so that the
    # stream's variance does not grow with the number of layers (matters from scratch).
    return 0.02 / (2 * config.n_layer) ** 0.5


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention, optionally reading and writing a KV cache."""

    config: GPT2Config
    layer_idx: int

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array,
                 kv: tuple[jax.Array, jax.Array] | None = None,
                 index: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        cfg = self.config
        heads = (cfg.n_head, cfg.head_dim)
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, lora=cfg.lora)
        q = layers.dense(heads, ("embed", "heads", "head_dim"), name="query", **kw)(x)
        k = layers.dense(heads, ("embed", "kv_heads", "head_dim"), name="key", **kw)(x)
        v = layers.dense(heads, ("embed", "kv_heads", "head_dim"), name="value", **kw)(x)
        k, v, kv = layers.cached_kv(k, v, kv, index)
        scale = cfg.head_dim ** -0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= self.layer_idx + 1
        out = layers.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), bias, scale=scale)
        out = layers.dense(cfg.n_embd, ("heads", "head_dim", "embed"), axis=(-2, -1), init_std=_residual_std(cfg),
                           name="out", **kw)(out)
        return out, kv


class GPT2MLP(nn.Module):
    """Position-wise feed-forward: embed -> mlp_dim -> activation -> embed."""

    config: GPT2Config

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, lora=cfg.lora)
        h = layers.dense(cfg.mlp_dim, ("embed", "mlp"), name="fc", **kw)(x)
        h = layers.recompute_in_backward(_ACTIVATIONS[cfg.activation])(h)
        return layers.dense(cfg.n_embd, ("mlp", "embed"), init_std=_residual_std(cfg), name="proj", **kw)(h)


class GPT2Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). Returns the updated
    (k, v) cache buffers of this layer, or None without a cache."""

    config: GPT2Config
    layer_idx: int

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array,
                 kv: tuple[jax.Array, jax.Array] | None = None,
                 index: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        dtype = self.config.dtype
        h = _layer_norm(self.config, "ln_1")(x.astype(jnp.float32)).astype(dtype)
        h, kv = GPT2Attention(self.config, self.layer_idx, name="attn")(h, bias, kv, index)
        x = x + h
        h = _layer_norm(self.config, "ln_2")(x.astype(jnp.float32)).astype(dtype)
        return x + GPT2MLP(self.config, name="mlp")(h), kv


class GPT2LMHeadModel(nn.Module):
    """GPT-2 with its tied LM head.

    ``__call__(input_ids [B, L], attention_mask [B, L], positions=None, cache=None)``.
    Without a cache, a token's position is the number of real tokens before it in its
    row (so left padding does not shift positions).
    With a cache, the L new tokens go to slots ``cache.index ...`` and attend to every
    filled slot; positions continue after the tokens already cached; the returned
    cache has ``index + L``.
    """

    config: GPT2Config

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, positions: jax.Array | None = None,
                 cache: KVCache | None = None, logits_start: int = 0) -> CausalLMOutput:
        cfg = self.config
        length = input_ids.shape[1]
        if positions is None:
            positions = (layers.positions_from_mask(attention_mask) if cache is None
                         else cache.next_positions(attention_mask))
        wte = layers.embed(cfg.vocab_size, cfg.n_embd, ("vocab", "embed"), dtype=cfg.dtype,
                           param_dtype=cfg.param_dtype, name="wte")
        wpe = layers.embed(cfg.n_positions, cfg.n_embd, ("positions", "embed"), dtype=cfg.dtype,
                           param_dtype=cfg.param_dtype, name="wpe")
        x = wte(input_ids) + wpe(positions)

        if cache is None:
            bias = layers.attention_bias(attention_mask, length, causal=True)
        else:
            key_mask = layers.extend_mask(cache, attention_mask)
            bias = layers.attention_bias(key_mask, length, causal=True, query_offset=cache.index)
        new_k, new_v = [], []
        block = nn.remat(GPT2Block) if cfg.remat else GPT2Block
        for i in range(cfg.n_layer):
            kv = None if cache is None else (cache.k[i], cache.v[i])
            x, kv = block(cfg, i, name=f"h_{i}")(x, bias, kv, None if cache is None else cache.index)
            if kv is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
        hidden = _layer_norm(cfg, "ln_f")(x.astype(jnp.float32)).astype(cfg.dtype)
        # Only positions >= logits_start get logits (static): generation needs the
        # last one, the policy gradient the action's; the vocab projection dominates
        # the cost of every other position.
        logits = layers.attend(wte, hidden[:, logits_start:])
        new_cache = None
        if cache is not None:
            new_cache = KVCache(k=tuple(new_k), v=tuple(new_v), mask=key_mask, index=cache.index + length)
        return CausalLMOutput(logits=logits, hidden=hidden, cache=new_cache)


def weight_spec(config: GPT2Config) -> dict[str, hf_loading.Source]:
    """Flax param path -> HF tensor. HF's Conv1D weights are already [in, out]; the
    fused c_attn [E, 3E] splits into q, k, v (in that order), each [E, H, D]."""
    e, h, d = config.n_embd, config.n_head, config.head_dim

    def qkv(key: str, part: int, shape: tuple[int, ...]) -> hf_loading.Source:
        def fn(w: np.ndarray) -> np.ndarray:
            return w[..., part * e:(part + 1) * e].reshape(shape)

        def shapes(target: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
            return ((*target[:-2], 3 * e),)  # the fused tensor: [E, 3E] or [3E]

        return hf_loading.Source((key,), fn, shapes)

    spec = {
        "wte/embedding": hf_loading.source("wte.weight"),
        "wpe/embedding": hf_loading.source("wpe.weight"),
        "ln_f/scale": hf_loading.source("ln_f.weight"),
        "ln_f/bias": hf_loading.source("ln_f.bias"),
    }
    for i in range(config.n_layer):
        p, f = f"h_{i}", f"h.{i}"
        for j, name in enumerate(("query", "key", "value")):
            spec[f"{p}/attn/{name}/kernel"] = qkv(f"{f}.attn.c_attn.weight", j, (e, h, d))
            spec[f"{p}/attn/{name}/bias"] = qkv(f"{f}.attn.c_attn.bias", j, (h, d))
        spec[f"{p}/attn/out/kernel"] = hf_loading.reshaped(f"{f}.attn.c_proj.weight", (h, d, e), merged=2)
        spec[f"{p}/attn/out/bias"] = hf_loading.source(f"{f}.attn.c_proj.bias")
        spec[f"{p}/mlp/fc/kernel"] = hf_loading.source(f"{f}.mlp.c_fc.weight")
        spec[f"{p}/mlp/fc/bias"] = hf_loading.source(f"{f}.mlp.c_fc.bias")
        spec[f"{p}/mlp/proj/kernel"] = hf_loading.source(f"{f}.mlp.c_proj.weight")
        spec[f"{p}/mlp/proj/bias"] = hf_loading.source(f"{f}.mlp.c_proj.bias")
        for ln in ("ln_1", "ln_2"):
            spec[f"{p}/{ln}/scale"] = hf_loading.source(f"{f}.{ln}.weight")
            spec[f"{p}/{ln}/bias"] = hf_loading.source(f"{f}.{ln}.bias")
    return spec


FAMILY = Family(
    name="gpt2",
    config_from_hf=GPT2Config.from_hf,
    build=GPT2LMHeadModel,
    init_inputs=layers.token_init_inputs,
    weight_spec=weight_spec,
    config_to_hf=GPT2Config.to_hf,
    prefixes=("transformer.", ""),
    # Old checkpoints store the causal-mask buffers, and some an lm_head.weight copy of
    # the (always tied) token embedding.
    ignore=(r"(^|\.)attn\.bias$", r"(^|\.)attn\.masked_bias$", r"^lm_head\.weight$"),
)
