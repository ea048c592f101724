"""T5: parity with the Hugging Face reference, cached decoding, batched greedy
generation with early stop, checkpoint layouts of several transformers versions."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from archer_jax import sharding
from archer_jax.models import hf_loading, registry, t5

# docs/guide.md: the T5s match PyTorch within 1e-4 (measured: 3.4e-5; their fixtures, briefly trained
# to copy, have logits up to 14).
ATOL = 1e-4
FIXTURES = ("t5", "t5_tied")


@pytest.fixture(scope="module", params=FIXTURES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def loaded(hf_fixtures: Path) -> dict[str, tuple[registry.Pretrained, dict[str, np.ndarray]]]:
    return {n: (registry.load_pretrained(str(hf_fixtures / n)), dict(np.load(hf_fixtures / n / "reference.npz")))
            for n in FIXTURES}


_forward = jax.jit(lambda module, params, ids, mask, dec: module.apply({"params": params}, ids, mask, dec),
                   static_argnums=0)
_encode = jax.jit(lambda module, params, ids, mask: module.apply({"params": params}, ids, mask, method="encode"),
                  static_argnums=0)


def _flat(params) -> dict[str, jax.Array]:
    return traverse_util.flatten_dict(params, sep="/")


def test_matches_reference(loaded, name: str) -> None:
    model, ref = loaded[name]
    assert isinstance(model.config, t5.T5Config)
    # The 't5' fixture was written by transformers 5 from a tie_word_embeddings=False
    # config: no lm_head tensor, an unscaled head on the shared embedding.
    assert model.config.is_gated == (name == "t5")
    assert model.config.scale_decoder_outputs == (name == "t5_tied")
    assert not any(k.startswith("lm_head") for k in _flat(model.params))
    logits = _forward(model.module, model.params, ref["input_ids"], ref["attention_mask"], ref["decoder_input_ids"])
    assert logits.dtype == jnp.float32 and logits.shape == ref["logits"].shape
    np.testing.assert_allclose(np.asarray(logits), ref["logits"], atol=ATOL, rtol=0)
    hidden = _encode(model.module, model.params, ref["input_ids"], ref["attention_mask"])
    real = ref["attention_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(hidden)[real], ref["encoder_last_hidden_state"][real], atol=ATOL, rtol=0)


def test_cached_decode_matches_full(loaded, name: str) -> None:
    model, ref = loaded[name]
    module, variables = model.module, {"params": model.params}
    mask, dec = ref["attention_mask"], ref["decoder_input_ids"]

    @jax.jit
    def run(variables):
        hidden = module.apply(variables, ref["input_ids"], mask, method="encode")
        full, none = module.apply(variables, dec, hidden, mask, method="decode")
        assert none is None
        # Longer than needed: unwritten slots must stay invisible.
        cache = module.apply(variables, hidden, dec.shape[1] + 3, method="init_cache")
        steps = []
        for lo, hi in [(0, 2)] + [(i, i + 1) for i in range(2, dec.shape[1])]:
            logits, cache = module.apply(variables, dec[:, lo:hi], None, mask, cache, method="decode")
            steps.append(logits)
        return full, jnp.concatenate(steps, axis=1), cache.self_attn.index

    full, cached, index = run(variables)
    assert int(index) == dec.shape[1]
    np.testing.assert_allclose(np.asarray(cached), np.asarray(full), atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(full), ref["logits"], atol=ATOL, rtol=0)


def test_greedy_batched_equals_hf_and_rows_alone(loaded, name: str) -> None:
    model, ref = loaded[name]
    ids, mask = ref["input_ids"], ref["attention_mask"]
    out = t5.greedy_generate(model.module, model.params, ids, mask, 6)
    assert out.dtype == jnp.int32 and out.shape == (2, 6)
    np.testing.assert_array_equal(np.asarray(out), ref["greedy"][:, 1:])
    for row in range(ids.shape[0]):
        real = mask[row].astype(bool)
        alone = t5.greedy_generate(model.module, model.params, ids[row:row + 1, real], mask[row:row + 1, real], 6)
        np.testing.assert_array_equal(np.asarray(alone), np.asarray(out[row:row + 1]))
    # Relative positions are column differences, so left padding changes nothing either;
    # an all-padding row (a batch filled up to its fixed size) disturbs no other row.
    shift = int((mask[0] == 0).sum())
    left_ids, left_mask = ids.copy(), mask.copy()  # row 0's right padding moved to its left
    left_ids[0], left_mask[0] = np.roll(ids[0], shift), np.roll(mask[0], shift)
    left = t5.greedy_generate(model.module, model.params, np.concatenate([left_ids, 0 * ids[:1]]),
                              np.concatenate([left_mask, 0 * mask[:1]]), 6)
    np.testing.assert_array_equal(np.asarray(left)[:2], np.asarray(out))
    # An equal module (same config) reuses the compiled program.
    compiled = t5.greedy_generate._cache_size()
    t5.greedy_generate(t5.T5ForConditionalGeneration(model.config), model.params, ids, mask, 6)
    assert t5.greedy_generate._cache_size() == compiled


_DECODE_CALLS: list[int] = []


class _CountingT5(t5.T5ForConditionalGeneration):
    """Counts the decoder steps that actually run inside the generation loop."""

    def decode(self, *args, **kwargs):
        jax.debug.callback(lambda: _DECODE_CALLS.append(1))
        return super().decode(*args, **kwargs)


def test_greedy_stops_early_and_pads(loaded) -> None:
    # Make a token a row emits mid-way its terminator: the row ends there and pads after.
    model, ref = loaded["t5"]
    greedy = ref["greedy"][:, 1:]  # [[35, 89, 29, 25, 72, 72], [12, 40, 83, 42, 79, 34]]
    eos = int(greedy[0, 2])
    assert eos not in greedy[0, :2] and eos not in greedy[1]
    config = dataclasses.replace(model.config, eos_token_id=eos, pad_token_id=5)
    _DECODE_CALLS.clear()
    out = t5.greedy_generate(_CountingT5(config), model.params, ref["input_ids"], ref["attention_mask"], 6)
    jax.effects_barrier()
    expect = greedy.copy()
    expect[0, 3:] = 5
    np.testing.assert_array_equal(np.asarray(out), expect)
    assert len(_DECODE_CALLS) == 6  # row 1 runs on

    model, ref = loaded["t5_tied"]
    greedy = ref["greedy"][:, 1:]  # [[88, 71, 26, 77, 71, 89], [42, 99, 23, 94, 12, 63]]
    eos = int(greedy[0, 1])
    assert eos != greedy[0, 0]
    config = dataclasses.replace(model.config, eos_token_id=eos)
    _DECODE_CALLS.clear()
    out = t5.greedy_generate(_CountingT5(config), model.params, ref["input_ids"][:1], ref["attention_mask"][:1], 16)
    jax.effects_barrier()
    np.testing.assert_array_equal(np.asarray(out), [[greedy[0, 0], eos] + [0] * 14])
    assert len(_DECODE_CALLS) == 2  # every row done after two steps of 16: the loop stopped


def _tiny_config(**overrides) -> t5.T5Config:
    fields = dict(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_decoder_layers=3, num_heads=4,
                  relative_attention_num_buckets=8, relative_attention_max_distance=6, feed_forward_proj="gated-silu",
                  tie_word_embeddings=False, scale_decoder_outputs=False, eos_token_id=1)
    return t5.T5Config(**(fields | overrides))


def test_greedy_matches_uncached_argmax() -> None:
    """Against recomputing the whole decoder each step, on a random model whose greedy
    sequences vary (the fixtures' repeat one token), with eos mid-sequence."""
    config = _tiny_config()
    module = t5.T5ForConditionalGeneration(config)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, config.vocab_size, (3, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, 9:] = 0
    params = jax.jit(module.init)(jax.random.key(1), ids, mask, ids[:, :2])["params"]
    steps = 10

    # The decoder is causal, so the logits at column t only read columns <= t: one
    # fixed-shape program re-run on the growing sequence.
    dec = np.full((3, steps), config.decoder_start_token_id, np.int32)
    for t in range(steps - 1):
        dec[:, t + 1] = np.argmax(np.asarray(_forward(module, params, ids, mask, dec))[:, t], -1)
    last = np.argmax(np.asarray(_forward(module, params, ids, mask, dec))[:, -1], -1)
    expect = np.concatenate([dec[:, 1:], last[:, None]], axis=1)
    assert len(set(expect.ravel().tolist())) > 3
    np.testing.assert_array_equal(np.asarray(t5.greedy_generate(module, params, ids, mask, steps)), expect)
    # A token that some row emits mid-sequence becomes eos: that row is cut after it.
    eos = int(expect[1, 4])
    first = [int(np.argmax(r == eos)) if (r == eos).any() else steps for r in expect]
    padded = np.where(np.arange(steps)[None] > np.asarray(first)[:, None], 0, expect)
    module = t5.T5ForConditionalGeneration(dataclasses.replace(config, eos_token_id=eos))
    np.testing.assert_array_equal(np.asarray(t5.greedy_generate(module, params, ids, mask, steps)), padded)


def test_bf16_compute_stays_close(hf_fixtures: Path, loaded, name: str) -> None:
    _, ref = loaded[name]
    model = registry.load_pretrained(str(hf_fixtures / name), dtype=jnp.bfloat16)
    logits = _forward(model.module, model.params, ref["input_ids"], ref["attention_mask"], ref["decoder_input_ids"])
    assert logits.dtype == jnp.float32
    # bf16 keeps 8 mantissa bits: through the layers of the (briefly trained) fixtures the
    # logits stay within 0.4% of the largest one on average and rank the same token first.
    # The worst of their 1,200 logits is a tail that moves with the order of the fp32
    # reductions (1-3% with attention as einsums, 2-7% as batched matmuls, which are the
    # more accurate of the two on random inputs), so it gets a looser bound.
    scale = np.abs(ref["logits"]).max()
    error = np.abs(np.asarray(logits) - ref["logits"])
    assert error.max() < 0.1 * scale and error.mean() < 0.005 * scale, (error.max() / scale, error.mean() / scale)
    np.testing.assert_array_equal(np.asarray(logits).argmax(-1), ref["logits"].argmax(-1))
    out = t5.greedy_generate(model.module, model.params, ref["input_ids"], ref["attention_mask"], 3)
    assert out.shape == (2, 3)


def test_from_scratch_init_is_annotated() -> None:
    config = _tiny_config()
    abstract = registry.abstract_params(t5.FAMILY, config)
    flat = traverse_util.flatten_dict(abstract, sep="/", is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
    allowed = {r[0] for r in sharding.DEFAULT_RULES}
    for path, leaf in flat.items():
        assert isinstance(leaf, nn.Partitioned), path
        assert set(leaf.names) <= allowed and len(leaf.names) == leaf.value.ndim, path
    shapes = {k: v.value.shape for k, v in flat.items()}
    assert shapes["shared/embedding"] == (40, 16)
    assert shapes["lm_head/kernel"] == (16, 40)
    assert shapes["encoder/relpos_bias/embedding/embedding"] == (8, 4)
    assert shapes["decoder/block_2/cross_attn/k/kernel"] == (16, 4, 4)
    assert shapes["decoder/block_2/cross_attn/o/kernel"] == (4, 4, 16)
    assert shapes["encoder/block_1/ff/wi_1/kernel"] == (16, 24)
    assert "encoder/block_2/ln_ff/scale" not in shapes and "decoder/block_2/ln_cross/scale" in shapes
    # The weight spec names every param and nothing else.
    assert set(t5.weight_spec(config)) == set(flat)
    tied = _tiny_config(num_decoder_layers=1, feed_forward_proj="relu", tie_word_embeddings=True)
    assert set(t5.weight_spec(tied)) == set(_flat(registry.abstract_params(t5.FAMILY, tied)))
    assert "lm_head/kernel" not in t5.weight_spec(tied)


_FLAN_T5_CONFIG = {  # as google/flan-t5-small's config.json (written by transformers 4)
    "model_type": "t5", "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8,
    "num_decoder_layers": 8, "num_heads": 6, "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
    "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
}


def test_config_from_hf_across_versions(hf_fixtures: Path) -> None:
    flan = t5.T5Config.from_hf(_FLAN_T5_CONFIG)
    assert not flan.tie_word_embeddings and not flan.scale_decoder_outputs and flan.is_gated
    # Original T5 configs give neither tie_word_embeddings nor feed_forward_proj.
    old = {k: v for k, v in _FLAN_T5_CONFIG.items() if k not in ("tie_word_embeddings", "feed_forward_proj")}
    old = t5.T5Config.from_hf(old | {"num_decoder_layers": None, "eos_token_id": [1]}, jnp.bfloat16)
    assert old.tie_word_embeddings and old.scale_decoder_outputs and not old.is_gated
    assert (old.num_decoder_layers, old.eos_token_id, old.dtype) == (8, 1, jnp.bfloat16)
    new = t5.T5Config.from_hf(json.loads((hf_fixtures / "t5" / "config.json").read_text()))
    assert new.tie_word_embeddings and not new.scale_decoder_outputs
    # transformers 5 writes tie_word_embeddings true even above an untied lm_head.weight.
    assert not t5.config_for_tensors(new, ["shared.weight", "lm_head.weight"]).tie_word_embeddings
    assert t5.config_for_tensors(flan, ["shared.weight"]).tie_word_embeddings
    with pytest.raises(hf_loading.CheckpointError, match="feed_forward_proj"):
        t5.T5Config.from_hf(_FLAN_T5_CONFIG | {"feed_forward_proj": "gated-tanhh"})
    with pytest.raises(hf_loading.CheckpointError, match="d_kv"):
        t5.T5Config.from_hf({k: v for k, v in _FLAN_T5_CONFIG.items() if k != "d_kv"})
    with pytest.raises(hf_loading.CheckpointError, match="model_type"):
        t5.T5Config.from_hf(_FLAN_T5_CONFIG | {"model_type": "bart"})


def test_loads_old_and_untied_layouts(hf_fixtures: Path, loaded, tmp_path: Path) -> None:
    _, ref = loaded["t5"]
    folder = tmp_path / "flan"
    shutil.copytree(hf_fixtures / "t5", folder)
    tensors = load_file(folder / "model.safetensors")
    # An older checkpoint: the shared embedding three times, a stray cross-attention
    # relative bias, and (flan-t5) a separate head, here twice the embedding.
    tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"]
    tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"]
    tensors["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = np.zeros((8, 4), np.float32)
    tensors["lm_head.weight"] = 2 * tensors["shared.weight"]
    save_file(tensors, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = False
    del config["scale_decoder_outputs"]
    (folder / "config.json").write_text(json.dumps(config))
    model = registry.load_pretrained(str(folder))
    assert "lm_head/kernel" in _flat(model.params)
    logits = _forward(model.module, model.params, ref["input_ids"], ref["attention_mask"], ref["decoder_input_ids"])
    np.testing.assert_allclose(np.asarray(logits), 2 * ref["logits"], atol=2 * ATOL, rtol=0)


def test_loads_untied_head_saved_by_transformers_5(hf_fixtures: Path, loaded, tmp_path: Path) -> None:
    # transformers 5 writes tie_word_embeddings: true even beside a separate lm_head
    # (a fine-tuned flan-t5 re-saved): the tensors decide, through Family.adapt_config.
    _, ref = loaded["t5"]
    folder = tmp_path / "resaved"
    shutil.copytree(hf_fixtures / "t5", folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["lm_head.weight"] = 2 * tensors["shared.weight"]
    save_file(tensors, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["scale_decoder_outputs"] is False
    model = registry.load_pretrained(str(folder))
    logits = _forward(model.module, model.params, ref["input_ids"], ref["attention_mask"], ref["decoder_input_ids"])
    np.testing.assert_allclose(np.asarray(logits), 2 * ref["logits"], atol=2 * ATOL, rtol=0)


def test_sharded_params_generate(hf_fixtures: Path, loaded) -> None:
    _, ref = loaded["t5"]
    mesh = sharding.make_mesh((2, 2, 2))
    model = registry.load_pretrained(str(hf_fixtures / "t5"), mesh=mesh)
    assert len(model.params["shared"]["embedding"].sharding.device_set) == 8
    out = t5.greedy_generate(model.module, model.params, ref["input_ids"], ref["attention_mask"], 6)
    np.testing.assert_array_equal(np.asarray(out), ref["greedy"][:, 1:])
