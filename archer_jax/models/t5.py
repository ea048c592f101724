"""T5 / Flan-T5 encoder-decoder as a Flax module that loads Hugging Face weights: the
language-model oracles of the paper's tasks.

T5 differs from the other families in ways that all matter for parity:
- RMS-style layer norm (no mean subtraction, no bias), statistics in fp32;
- no 1/sqrt(head_dim) attention scaling (it is folded into the initialisation);
- no position embeddings: a learned bias per head over bucketed relative positions,
  computed once per stack (in HF by its first block) and added in every layer; the
  encoder buckets both directions, the decoder only the past. Relative positions are
  differences of column indices, so a padded encoder row (left or right) sees the
  same biases as the unpadded row;
- the LM head is either the shared embedding (tied) or a separate ``lm_head``; original
  T5 scales the decoder output by d_model**-0.5 before a tied head, T5 v1.1 / Flan-T5
  does not.

Incremental decoding keeps a ``T5DecoderCache``: the decoder self-attention
``KVCache`` plus the cross-attention keys/values of every decoder layer, projected once
from the encoder output by ``init_cache``. Re-projecting them at each step would cost
2 * encoder_len * d_model * heads * d_kv per layer per token, which for an oracle's
question (tens to hundreds of tokens) dwarfs the rest of a one-token decoder step.
``greedy_generate`` is the jitted batched greedy decoder that oracles call.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from archer_jax.models import hf_loading, layers
from archer_jax.models.layers import KVCache
from archer_jax.models.registry import Family

# Either file makes a (flan-)T5 tokenizer. A folder with neither must be refused by
# name: transformers 5 then silently builds an empty T5 tokenizer of special tokens.
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")

# Activations by the names HF configs use in ``feed_forward_proj`` ('relu',
# 'gated-gelu', ...). HF maps 'gated-gelu' to the tanh approximation ('gelu_new') for
# backward compatibility, while a plain 'gelu' is the exact one.
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
    """T5 hyper-parameters (Hugging Face names).

    ``feed_forward_proj``: 'ACT' (one input projection ``wi``) or 'gated-ACT'
    (``act(wi_0 x) * wi_1 x``), ACT one of relu, gelu, gelu_new, silu, swish;
    'gated-gelu' means the tanh-approximate gelu, as in HF.
    ``tie_word_embeddings``: the LM head is the shared embedding (no ``lm_head`` param).
    ``scale_decoder_outputs``: multiply the decoder output by d_model**-0.5 before the
    head (original T5 with its tied head; not T5 v1.1 / Flan-T5).
    ``decoder_start_token_id`` starts every decoder sequence; ``pad_token_id`` fills
    generated rows after their ``eos_token_id``.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool = True
    layer_norm_epsilon: float = 1e-6
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        parts = self.feed_forward_proj.split("-")
        if not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "gated")) or parts[-1] not in _ACTIVATIONS:
            raise ValueError(f"T5Config: feed_forward_proj '{self.feed_forward_proj}' is not supported; use 'ACT' "
                             f"or 'gated-ACT' with ACT in {sorted(_ACTIVATIONS)}")
        if self.relative_attention_num_buckets < 4:
            raise ValueError(f"T5Config: relative_attention_num_buckets={self.relative_attention_num_buckets} "
                             "must be at least 4 (half per direction, half of that exact)")

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> Callable[[jax.Array], jax.Array]:
        name = self.feed_forward_proj.split("-")[-1]
        return _ACTIVATIONS["gelu_new" if self.feed_forward_proj == "gated-gelu" else name]

    @classmethod
    def from_hf(cls, hf_config: Mapping[str, Any], dtype: Any = jnp.float32,
                param_dtype: Any = jnp.float32) -> T5Config:
        """From a Hugging Face ``config.json`` dict of model_type 't5' by any transformers
        version. Before v5, ``tie_word_embeddings`` (default true) chose both the tied head
        and the output scaling; v5 always writes it true and adds ``scale_decoder_outputs``,
        so such a config only says whether to scale; whether its checkpoint holds a
        separate ``lm_head.weight`` only the tensor names tell (``config_for_tensors``)."""
        if hf_config.get("model_type") != "t5":
            raise hf_loading.CheckpointError(f"T5Config: model_type '{hf_config.get('model_type')}' is not 't5'")
        try:
            num_layers = hf_config["num_layers"]
            tied = bool(hf_config.get("tie_word_embeddings", True))
            # Some configs write the special ids as null or eos as a list.
            pad = hf_config.get("pad_token_id")
            pad = 0 if pad is None else int(pad)
            eos = hf_config.get("eos_token_id")
            eos = 1 if eos is None else int(eos[0] if isinstance(eos, list | tuple) else eos)
            start = hf_config.get("decoder_start_token_id")
            return cls(
                vocab_size=hf_config["vocab_size"],
                d_model=hf_config["d_model"],
                d_kv=hf_config["d_kv"],
                d_ff=hf_config["d_ff"],
                num_layers=num_layers,
                # null or absent means a decoder as deep as the encoder.
                num_decoder_layers=hf_config.get("num_decoder_layers") or num_layers,
                num_heads=hf_config["num_heads"],
                relative_attention_num_buckets=hf_config.get("relative_attention_num_buckets", 32),
                relative_attention_max_distance=hf_config.get("relative_attention_max_distance", 128),
                feed_forward_proj=hf_config.get("feed_forward_proj", "relu"),
                tie_word_embeddings=tied,
                scale_decoder_outputs=bool(hf_config.get("scale_decoder_outputs", tied)),
                layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-6),
                pad_token_id=pad,
                eos_token_id=eos,
                decoder_start_token_id=pad if start is None else int(start),
                dtype=dtype,
                param_dtype=param_dtype,
            )
        except KeyError as e:
            raise hf_loading.CheckpointError(f"t5 config.json: missing field {e}") from e
        except ValueError as e:
            raise hf_loading.CheckpointError(f"t5 config.json: {e}") from e


def config_for_tensors(config: T5Config, tensor_names: Collection[str]) -> T5Config:
    """The config with its head tied exactly when the checkpoint has no ``lm_head.weight``.

    transformers 5 writes ``tie_word_embeddings: true`` into every T5 config, also when
    it saves a separate (untied) ``lm_head.weight``, so only the tensor names tell.
    Meant as the loader's hook between reading the config and the tensor names."""
    has_head = any(n == "lm_head.weight" or n.endswith(".lm_head.weight") for n in tensor_names)
    return dataclasses.replace(config, tie_word_embeddings=not has_head)


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> jax.Array:
    """T5's bucket of each relative position (key position - query position).

    Half the buckets (per direction, when bidirectional) hold exact small distances, the
    rest grow logarithmically up to ``max_distance``; farther distances share the last
    bucket. A causal stack maps every future position to bucket 0 (masked anyway).
    """
    if bidirectional:
        num_buckets //= 2
        offset = jnp.where(relative_position > 0, num_buckets, 0)
        distance = jnp.abs(relative_position)
    else:
        offset = 0
        distance = jnp.maximum(-relative_position, 0)
    max_exact = num_buckets // 2
    # Same float32 formula and truncation as the reference, so boundary distances land
    # in the same bucket; the maximum only keeps log(0) out of the unused branch.
    scaled = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
              / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    far = jnp.minimum(max_exact + scaled.astype(jnp.int32), num_buckets - 1)
    return offset + jnp.where(distance < max_exact, distance, far)


@flax.struct.dataclass
class T5DecoderCache:
    """Decoder state for incremental decoding.

    ``self_attn``: the decoder self-attention cache (slots = decoder positions);
    ``cross_k[i]`` / ``cross_v[i]``: layer i's cross-attention keys/values of the
    encoder output, ``layers.heads_first`` ([B, heads, d_kv, Le] and [B, heads, Le, d_kv]),
    fixed for the whole generation.
    """

    self_attn: KVCache
    cross_k: tuple[jax.Array, ...]
    cross_v: tuple[jax.Array, ...]


class T5Attention(nn.Module):
    """Multi-head attention without scaling; keys/values projected separately so a
    caller can cache them (decoder self-attention, cross-attention)."""

    config: T5Config

    def setup(self) -> None:
        c = self.config
        kw = dict(use_bias=False, dtype=c.dtype, param_dtype=c.param_dtype)
        # T5's own initialisation: the missing 1/sqrt(d_kv) attention scaling lives in q.
        self.q = layers.dense((c.num_heads, c.d_kv), ("embed", "heads", "head_dim"),
                              init_std=(c.d_model * c.d_kv) ** -0.5, **kw)
        self.k = layers.dense((c.num_heads, c.d_kv), ("embed", "kv_heads", "head_dim"),
                              init_std=c.d_model ** -0.5, **kw)
        self.v = layers.dense((c.num_heads, c.d_kv), ("embed", "kv_heads", "head_dim"),
                              init_std=c.d_model ** -0.5, **kw)
        self.o = layers.dense(c.d_model, ("heads", "head_dim", "embed"), axis=(-2, -1),
                              init_std=(c.num_heads * c.d_kv) ** -0.5, **kw)

    def project_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Keys and values of ``x`` [B, S, d_model], ``layers.heads_first`` ([B, heads, d_kv, S]
        and [B, heads, S, d_kv])."""
        return layers.heads_first(self.k(x), self.v(x))

    def __call__(self, x: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        """Queries from ``x`` [B, L, d_model] attend to ``k``/``v``; ``bias`` [B|1, H|1, L, S]
        holds masks and relative-position biases."""
        out = layers.dot_product_attention(self.q(x), k, v, bias, scale=1.0)
        return self.o(out)


class T5FeedForward(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        kw = dict(use_bias=False, dtype=c.dtype, param_dtype=c.param_dtype)

        def wi(name: str) -> jax.Array:
            return layers.dense(c.d_ff, ("embed", "mlp"), init_std=c.d_model ** -0.5, name=name, **kw)(x)

        if c.is_gated:
            h = layers.recompute_in_backward(lambda g, u: c.activation(g) * u)(wi("wi_0"), wi("wi_1"))
        else:
            h = layers.recompute_in_backward(c.activation)(wi("wi"))
        return layers.dense(c.d_model, ("mlp", "embed"), init_std=c.d_ff ** -0.5, name="wo", **kw)(h)


class RelativePositionBias(nn.Module):
    """Learned per-head bias [1, H, Lq, Lk] over bucketed relative positions."""

    config: T5Config
    bidirectional: bool

    @nn.compact
    def __call__(self, query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
        c = self.config
        buckets = relative_position_bucket(
            key_positions[None, :] - query_positions[:, None], bidirectional=self.bidirectional,
            num_buckets=c.relative_attention_num_buckets, max_distance=c.relative_attention_max_distance)
        # fp32 whatever the compute dtype: it is added to fp32 attention logits.
        table = layers.embed(c.relative_attention_num_buckets, c.num_heads, ("relpos_buckets", "heads"),
                             param_dtype=c.param_dtype, dtype=jnp.float32, init_std=c.d_model ** -0.5,
                             name="embedding")
        return jnp.transpose(table(buckets), (2, 0, 1))[None]


def _norm(c: T5Config, name: str | None = None) -> layers.RMSNorm:
    return layers.RMSNorm(c.layer_norm_epsilon, c.dtype, c.param_dtype, scale_in_float32=True, name=name)


class T5EncoderBlock(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        c = self.config
        attn = T5Attention(c, name="self_attn")
        h = _norm(c, "ln_self")(x)
        x = x + attn(h, *attn.project_kv(h), bias)
        h = _norm(c, "ln_ff")(x)
        return x + T5FeedForward(c, name="ff")(h)


class T5Encoder(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        c = self.config
        positions = jnp.arange(x.shape[1])
        bias = (layers.attention_bias(mask, x.shape[1], causal=False)
                + RelativePositionBias(c, bidirectional=True, name="relpos_bias")(positions, positions))
        for i in range(c.num_layers):
            x = T5EncoderBlock(c, name=f"block_{i}")(x, bias)
        return _norm(c, "final_ln")(x)


class T5DecoderBlock(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c = self.config
        self.ln_self = _norm(c)
        self.self_attn = T5Attention(c)
        self.ln_cross = _norm(c)
        self.cross_attn = T5Attention(c)
        self.ln_ff = _norm(c)
        self.ff = T5FeedForward(c)

    def cross_kv(self, encoder_hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.cross_attn.project_kv(encoder_hidden)

    def __call__(self, x: jax.Array, self_bias: jax.Array, cross_k: jax.Array, cross_v: jax.Array,
                 cross_bias: jax.Array, cache: tuple[jax.Array, jax.Array, jax.Array] | None = None,
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One block; ``cache`` = (k buffer, v buffer, write index) for incremental
        decoding. Returns the output and the self-attention keys/values (the updated
        buffers with a cache, this call's otherwise)."""
        h = self.ln_self(x)
        k, v = self.self_attn.project_kv(h)
        if cache is not None:
            k_buf, v_buf, index = cache
            k, v = layers.write_cache((k_buf, v_buf), k, v, index)
        x = x + self.self_attn(h, k, v, self_bias)
        x = x + self.cross_attn(self.ln_cross(x), cross_k, cross_v, cross_bias)
        return x + self.ff(self.ln_ff(x)), k, v


class T5Decoder(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c = self.config
        self.relpos_bias = RelativePositionBias(c, bidirectional=False)
        self.block = [T5DecoderBlock(c) for _ in range(c.num_decoder_layers)]
        self.final_ln = _norm(c)

    def cross_kv(self, encoder_hidden: jax.Array) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        kvs = [blk.cross_kv(encoder_hidden) for blk in self.block]
        return tuple(k for k, _ in kvs), tuple(v for _, v in kvs)

    def __call__(self, x: jax.Array, cross_k: tuple[jax.Array, ...], cross_v: tuple[jax.Array, ...],
                 encoder_mask: jax.Array, cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
        length = x.shape[1]
        cross_bias = layers.attention_bias(encoder_mask, length, causal=False)
        if cache is None:
            positions = jnp.arange(length)
            self_bias = (layers.attention_bias(jnp.ones((1, length), jnp.bool_), length, causal=True)
                         + self.relpos_bias(positions, positions))
        else:
            # Decoder rows are never padded, so a slot is a position and query i sits at
            # cache.index + i.
            key_mask = layers.extend_mask(cache, jnp.ones((x.shape[0], length), jnp.bool_))
            self_bias = (layers.attention_bias(key_mask, length, causal=True, query_offset=cache.index)
                         + self.relpos_bias(cache.index + jnp.arange(length), jnp.arange(cache.max_len)))
        ks, vs = [], []
        for i, blk in enumerate(self.block):
            layer_cache = None if cache is None else (cache.k[i], cache.v[i], cache.index)
            x, k, v = blk(x, self_bias, cross_k[i], cross_v[i], cross_bias, layer_cache)
            ks.append(k)
            vs.append(v)
        if cache is not None:
            cache = KVCache(k=tuple(ks), v=tuple(vs), mask=key_mask, index=cache.index + length)
        return self.final_ln(x), cache


class T5ForConditionalGeneration(nn.Module):
    """T5 with its LM head. Methods (use ``module.apply(..., method=...)``):
    ``encode``, ``init_cache``, ``decode``; calling the module runs both stacks."""

    config: T5Config

    def setup(self) -> None:
        c = self.config
        # std 1: the tied head's d_model**-0.5 output scaling (or an untied head's own
        # init) keeps logits O(1), as in T5's initialisation.
        self.shared = layers.embed(c.vocab_size, c.d_model, ("vocab", "embed"), param_dtype=c.param_dtype,
                                   dtype=c.dtype, init_std=1.0)
        self.encoder = T5Encoder(c)
        self.decoder = T5Decoder(c)
        if not c.tie_word_embeddings:
            self.lm_head = layers.dense(c.vocab_size, ("embed", "vocab"), use_bias=False, dtype=c.dtype,
                                        param_dtype=c.param_dtype, init_std=1.0)

    def encode(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """Encoder output [B, Le, d_model] (after its final norm) of padded ids [B, Le]."""
        return self.encoder(self.shared(input_ids), attention_mask)

    def init_cache(self, encoder_hidden: jax.Array, max_len: int) -> T5DecoderCache:
        """An empty decoder cache for up to ``max_len`` decoder tokens, with the
        cross-attention keys/values of ``encoder_hidden`` projected once."""
        c = self.config
        cross_k, cross_v = self.decoder.cross_kv(encoder_hidden)
        self_attn = KVCache.init(encoder_hidden.shape[0], max_len, c.num_decoder_layers, c.num_heads, c.d_kv,
                                 c.dtype)
        return T5DecoderCache(self_attn=self_attn, cross_k=cross_k, cross_v=cross_v)

    def decode(self, decoder_input_ids: jax.Array, encoder_hidden: jax.Array | None, encoder_mask: jax.Array,
               cache: T5DecoderCache | None = None) -> tuple[jax.Array, T5DecoderCache | None]:
        """Logits [B, L, vocab] (float32) of decoder ids [B, L] and the updated cache.

        Without a cache the whole (unpadded, or right-padded) decoder sequence runs at
        once from ``encoder_hidden``, and the returned cache is None. With a cache from
        ``init_cache`` the ids continue the cached sequence; its cross-attention
        keys/values stand in for ``encoder_hidden``, which is not read (may be None).
        """
        if cache is None:
            cross_k, cross_v = self.decoder.cross_kv(encoder_hidden)
            hidden, _ = self.decoder(self.shared(decoder_input_ids), cross_k, cross_v, encoder_mask)
            return self._logits(hidden), None
        hidden, self_attn = self.decoder(self.shared(decoder_input_ids), cache.cross_k, cache.cross_v,
                                         encoder_mask, cache.self_attn)
        return self._logits(hidden), cache.replace(self_attn=self_attn)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, decoder_input_ids: jax.Array) -> jax.Array:
        """Teacher-forced logits [B, Ld, vocab] (float32)."""
        logits, _ = self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)
        return logits

    def _logits(self, hidden: jax.Array) -> jax.Array:
        c = self.config
        if c.scale_decoder_outputs:
            hidden = hidden * c.d_model ** -0.5
        logits = self.shared.attend(hidden) if c.tie_word_embeddings else self.lm_head(hidden)
        return logits.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("module", "max_new_tokens"))
def greedy_generate(module: T5ForConditionalGeneration, params: Any, input_ids: jax.Array,
                    attention_mask: jax.Array, max_new_tokens: int) -> jax.Array:
    """Greedy answers [B, max_new_tokens] (int32) to padded encoder inputs [B, Le].

    One dispatch for a whole batch: encode, project the cross-attention keys/values
    once, then a ``lax.while_loop`` of one-token cached decoder steps that stops as soon
    as every row has emitted ``eos_token_id``. A row's eos is kept and everything after
    it is ``pad_token_id``; the decoder start token is not part of the output.
    """
    if max_new_tokens < 1:
        raise ValueError(f"greedy_generate: max_new_tokens={max_new_tokens} must be positive")
    c = module.config
    variables = {"params": params}
    batch = input_ids.shape[0]
    encoder_hidden = module.apply(variables, input_ids, attention_mask, method="encode")
    cache = module.apply(variables, encoder_hidden, max_new_tokens, method="init_cache")

    def cond(carry):
        t, _, _, done, _ = carry
        return (t < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        t, token, cache, done, out = carry
        logits, cache = module.apply(variables, token[:, None], None, attention_mask, cache, method="decode")
        token = jnp.where(done, c.pad_token_id, jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32))
        out = jax.lax.dynamic_update_slice(out, token[:, None], (0, t))
        return t + 1, token, cache, done | (token == c.eos_token_id), out

    carry = (jnp.int32(0), jnp.full((batch,), c.decoder_start_token_id, jnp.int32), cache,
             jnp.zeros((batch,), jnp.bool_), jnp.full((batch, max_new_tokens), c.pad_token_id, jnp.int32))
    return jax.lax.while_loop(cond, body, carry)[-1]


def weight_spec(config: T5Config) -> dict[str, hf_loading.Source]:
    """Flax param path -> HF tensor (HF's T5 layout, no model prefix)."""
    e, h, d = config.d_model, config.num_heads, config.d_kv
    spec: dict[str, hf_loading.Source] = {"shared/embedding": hf_loading.source("shared.weight")}

    def attention(path: str, hf: str) -> None:
        for name in "qkv":
            spec[f"{path}/{name}/kernel"] = hf_loading.transposed(f"{hf}.{name}.weight", (e, h, d))
        spec[f"{path}/o/kernel"] = hf_loading.transposed(f"{hf}.o.weight", (h, d, e), in_axes=2)

    def feed_forward(path: str, hf: str) -> None:
        for name in (("wi_0", "wi_1") if config.is_gated else ("wi",)) + ("wo",):
            spec[f"{path}/{name}/kernel"] = hf_loading.transposed(f"{hf}.{name}.weight")

    def norm(path: str, hf: str) -> None:
        spec[f"{path}/scale"] = hf_loading.source(f"{hf}.weight")

    for stack, n in (("encoder", config.num_layers), ("decoder", config.num_decoder_layers)):
        spec[f"{stack}/relpos_bias/embedding/embedding"] = hf_loading.source(
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        norm(f"{stack}/final_ln", f"{stack}.final_layer_norm")
        for i in range(n):
            path, hf = f"{stack}/block_{i}", f"{stack}.block.{i}.layer"
            attention(f"{path}/self_attn", f"{hf}.0.SelfAttention")
            norm(f"{path}/ln_self", f"{hf}.0.layer_norm")
            ff = 1
            if stack == "decoder":
                attention(f"{path}/cross_attn", f"{hf}.1.EncDecAttention")
                norm(f"{path}/ln_cross", f"{hf}.1.layer_norm")
                ff = 2
            feed_forward(f"{path}/ff", f"{hf}.{ff}.DenseReluDense")
            norm(f"{path}/ln_ff", f"{hf}.{ff}.layer_norm")
    if not config.tie_word_embeddings:
        spec["lm_head/kernel"] = hf_loading.transposed("lm_head.weight")
    return spec


def _init_inputs(config: T5Config) -> tuple[jax.Array, ...]:
    ids = jnp.zeros((1, 4), jnp.int32)
    return ids, jnp.ones((1, 4), jnp.int32), jnp.zeros((1, 2), jnp.int32)


FAMILY = Family(
    name="t5",
    config_from_hf=T5Config.from_hf,
    build=T5ForConditionalGeneration,
    init_inputs=_init_inputs,
    weight_spec=weight_spec,
    ignore=(
        # Older checkpoints repeat the shared embedding under both stacks.
        r"^(encoder|decoder)\.embed_tokens\.weight$",
        # Some old checkpoints carry an unused relative bias on the first cross-attention.
        r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",
    ),
    kind="seq2seq",
    adapt_config=config_for_tensors,
)
