"""RoBERTa encoder: the critic's text encoder in ArCHer (roberta-base in the paper).

Post-LN BERT layers over word + learned absolute position + token-type embeddings.
Positions follow RoBERTa's scheme (real tokens count up from ``pad_token_id + 1``,
padding slots sit at ``pad_token_id``) but are computed from the attention mask, so
left- and right-padded batches give the same states at real tokens. ``pooled`` is
the pooler (dense + tanh) on the first REAL token, which is Hugging Face's
``pooler_output`` for right-padded or unpadded rows and the same value for
left-padded ones (where HF would read a padding slot). No dropout: the critic runs
with eval semantics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from archer_jax.models import layers
from archer_jax.models.hf_loading import CheckpointError, Source, reshaped, source, transposed
from archer_jax.models.registry import Family

# Hugging Face activation names -> functions ("gelu" is the exact, erf-based one).
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class RobertaConfig:
    """Hyperparameters of a RoBERTa encoder (defaults: roberta-base)."""

    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    # A training option, not architecture (never read from or written to config.json):
    # rematerialised layers (their activations recomputed in the backward pass instead of kept).
    remat: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act '{self.hidden_act}' is not supported; supported: {sorted(_ACTIVATIONS)}")
        if self.max_positions < 1:
            raise ValueError(f"max_position_embeddings {self.max_position_embeddings} leaves no usable position "
                             f"after pad_token_id {self.pad_token_id}")

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_positions(self) -> int:
        """The longest input: rows 0..pad_token_id of the position table are never
        used by real tokens (RoBERTa counts from pad_token_id + 1)."""
        return self.max_position_embeddings - self.pad_token_id - 1

    @classmethod
    def from_hf(cls, hf_config: Mapping[str, Any], dtype: Any = jnp.float32,
                param_dtype: Any = jnp.float32) -> RobertaConfig:
        """From a Hugging Face ``config.json`` dict (any transformers version)."""
        # Configs written before transformers 5 may name relative position schemes,
        # which this absolute-position model would silently get wrong.
        kind = hf_config.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise CheckpointError(f"config.json: position_embedding_type '{kind}' is not supported (only 'absolute')")
        if hf_config.get("is_decoder", False):
            raise CheckpointError("config.json: is_decoder=true (a causal RoBERTa); only the bidirectional "
                                  "encoder is supported")
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size", "max_position_embeddings") if k not in hf_config]
        if missing:
            raise CheckpointError(f"config.json: missing fields {missing} for a RoBERTa model")
        if hf_config.get("pad_token_id", 1) is None:
            raise CheckpointError("config.json: pad_token_id is null; RoBERTa positions count from it")
        try:
            return cls(
                vocab_size=hf_config["vocab_size"],
                hidden_size=hf_config["hidden_size"],
                num_hidden_layers=hf_config["num_hidden_layers"],
                num_attention_heads=hf_config["num_attention_heads"],
                intermediate_size=hf_config["intermediate_size"],
                # Defaults below are Hugging Face's RobertaConfig defaults.
                hidden_act=hf_config.get("hidden_act", "gelu"),
                max_position_embeddings=hf_config["max_position_embeddings"],
                type_vocab_size=hf_config.get("type_vocab_size", 2),
                layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
                pad_token_id=hf_config.get("pad_token_id", 1),
                dtype=dtype,
                param_dtype=param_dtype,
            )
        except ValueError as e:
            raise CheckpointError(f"config.json: {e}") from e


def positions_from_mask(attention_mask: jax.Array, pad_token_id: int) -> jax.Array:
    """RoBERTa position ids from a left- or right-padded mask [B, L]: the k-th real
    token (k = 1, 2, ...) gets ``pad_token_id + k``; padding slots get ``pad_token_id``."""
    mask = attention_mask.astype(jnp.int32)
    return pad_token_id + jnp.cumsum(mask, axis=-1) * mask


def first_real_index(attention_mask: jax.Array) -> jax.Array:
    """Column of each row's first real token [B] (0 for an all-padding row)."""
    return jnp.argmax(attention_mask.astype(jnp.bool_), axis=-1)


def _layer_norm(config: RobertaConfig, name: str, x: jax.Array) -> jax.Array:
    """LayerNorm (a submodule of the calling module) with float32 statistics whatever
    the compute dtype; the result is cast back to the compute dtype."""
    y = nn.LayerNorm(
        epsilon=config.layer_norm_eps,
        dtype=jnp.float32,
        param_dtype=config.param_dtype,
        scale_init=layers.logical_init(nn.initializers.ones_init(), ("norm",)),
        bias_init=layers.logical_init(nn.initializers.zeros_init(), ("norm",)),
        name=name,
    )(x.astype(jnp.float32))
    return y.astype(config.dtype)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention over the real tokens."""

    config: RobertaConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        cfg = self.config
        shape = (cfg.num_attention_heads, cfg.head_dim)
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        q = layers.dense(shape, ("embed", "heads", "head_dim"), name="query", **kw)(x)
        k = layers.dense(shape, ("embed", "heads", "head_dim"), name="key", **kw)(x)
        v = layers.dense(shape, ("embed", "heads", "head_dim"), name="value", **kw)(x)
        out = layers.dot_product_attention(q, *layers.heads_first(k, v), bias)
        return layers.dense(cfg.hidden_size, ("heads", "head_dim", "embed"), axis=(-2, -1), name="out", **kw)(out)


class Layer(nn.Module):
    """One post-LN BERT layer: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    config: RobertaConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        attn = SelfAttention(cfg, name="attention")(x, bias)
        x = _layer_norm(cfg, "attention_norm", x + attn)
        h = layers.dense(cfg.intermediate_size, ("embed", "mlp"), name="intermediate", **kw)(x)
        h = layers.recompute_in_backward(_ACTIVATIONS[cfg.hidden_act])(h)
        h = layers.dense(cfg.hidden_size, ("mlp", "embed"), name="output", **kw)(h)
        return _layer_norm(cfg, "output_norm", x + h)


class RobertaModel(nn.Module):
    """RoBERTa encoder with its pooler; see the module docstring for padding."""

    config: RobertaConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> layers.EncoderOutput:
        """input_ids, attention_mask: [B, L] (mask 1 at real tokens, any padding side).

        Returns hidden [B, L, hidden_size] and pooled [B, hidden_size], both float32;
        hidden at padding slots is meaningless.
        """
        cfg = self.config
        if input_ids.shape[-1] > cfg.max_positions:
            raise ValueError(f"input length {input_ids.shape[-1]} exceeds the model's {cfg.max_positions} "
                             f"positions (max_position_embeddings {cfg.max_position_embeddings} - pad_token_id "
                             f"{cfg.pad_token_id} - 1); truncate the inputs")
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        word = layers.embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), name="word_embeddings", **kw)
        position = layers.embed(cfg.max_position_embeddings, cfg.hidden_size, ("positions", "embed"),
                                name="position_embeddings", **kw)
        # Token types are always 0 (RoBERTa has no segment ids), so only row 0 is read.
        token_type = layers.embed(cfg.type_vocab_size, cfg.hidden_size, (None, "embed"),
                                  name="token_type_embeddings", **kw)
        x = (word(input_ids) + position(positions_from_mask(attention_mask, cfg.pad_token_id))
             + token_type(jnp.zeros((1,), jnp.int32)))
        x = _layer_norm(cfg, "embeddings_norm", x)

        bias = layers.attention_bias(attention_mask, input_ids.shape[-1], causal=False)
        layer = nn.remat(Layer) if cfg.remat else Layer
        for i in range(cfg.num_hidden_layers):
            x = layer(cfg, name=f"layers_{i}")(x, bias)

        first = jnp.take_along_axis(x, first_real_index(attention_mask)[:, None, None], axis=1)[:, 0]
        # The pooler's square kernel splits its output dim like an MLP's.
        pooled = jnp.tanh(layers.dense(cfg.hidden_size, ("embed", "mlp"), name="pooler", **kw)(first))
        return layers.EncoderOutput(hidden=x.astype(jnp.float32), pooled=pooled.astype(jnp.float32))


def weight_spec(config: RobertaConfig) -> dict[str, Source]:
    """Flax param path -> Hugging Face tensor (names without the 'roberta.' prefix)."""
    e, h, d = config.hidden_size, config.num_attention_heads, config.head_dim

    def norm(flax_name: str, hf_name: str) -> dict[str, Source]:
        return {f"{flax_name}/scale": source(f"{hf_name}.weight"), f"{flax_name}/bias": source(f"{hf_name}.bias")}

    def linear(flax_name: str, hf_name: str) -> dict[str, Source]:
        return {f"{flax_name}/kernel": transposed(f"{hf_name}.weight"), f"{flax_name}/bias": source(f"{hf_name}.bias")}

    spec = {
        "word_embeddings/embedding": source("embeddings.word_embeddings.weight"),
        "position_embeddings/embedding": source("embeddings.position_embeddings.weight"),
        "token_type_embeddings/embedding": source("embeddings.token_type_embeddings.weight"),
        **norm("embeddings_norm", "embeddings.LayerNorm"),
        **linear("pooler", "pooler.dense"),
    }
    for i in range(config.num_hidden_layers):
        ours, theirs = f"layers_{i}", f"encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            name = f"{theirs}.attention.self.{proj}"
            spec[f"{ours}/attention/{proj}/kernel"] = transposed(f"{name}.weight", (e, h, d))
            spec[f"{ours}/attention/{proj}/bias"] = reshaped(f"{name}.bias", (h, d))
        spec[f"{ours}/attention/out/kernel"] = transposed(f"{theirs}.attention.output.dense.weight", (h, d, e), in_axes=2)
        spec[f"{ours}/attention/out/bias"] = source(f"{theirs}.attention.output.dense.bias")
        spec.update(norm(f"{ours}/attention_norm", f"{theirs}.attention.output.LayerNorm"))
        spec.update(linear(f"{ours}/intermediate", f"{theirs}.intermediate.dense"))
        spec.update(linear(f"{ours}/output", f"{theirs}.output.dense"))
        spec.update(norm(f"{ours}/output_norm", f"{theirs}.output.LayerNorm"))
    return spec


FAMILY = Family(
    name="roberta",
    config_from_hf=RobertaConfig.from_hf,
    build=RobertaModel,
    init_inputs=layers.token_init_inputs,
    weight_spec=weight_spec,
    prefixes=("", "roberta."),
    # RobertaForMaskedLM checkpoints (roberta-base) carry an MLM head the encoder does
    # not use; old transformers versions saved the position-id buffer.
    ignore=(r"^lm_head\.", r"^embeddings\.position_ids$"),
    kind="encoder",
)
