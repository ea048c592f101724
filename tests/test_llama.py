"""Llama / Mistral: parity with Hugging Face, cached decoding, config parsing, init."""

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
from safetensors.numpy import save_file

from archer_jax import sharding
from archer_jax.models import hf_loading, llama, registry

CAUSAL = ["llama", "llama_tied", "mistral"]
# docs/guide.md: GPT-2, Llama, Mistral and RoBERTa match PyTorch within 2e-6 (measured: 1.5e-7 here).
ATOL = 2e-6


def _reference(folder: Path) -> dict[str, np.ndarray]:
    return dict(np.load(folder / "reference.npz"))


def _forward(pre: registry.Pretrained, ref: dict[str, np.ndarray]) -> np.ndarray:
    fn = jax.jit(lambda p, ids, mask: pre.module.apply({"params": p}, ids, mask).logits)
    return np.asarray(fn(pre.params, ref["input_ids"], ref["attention_mask"]))


def _assert_close_on_real(logits: np.ndarray, ref: dict[str, np.ndarray], atol: float) -> None:
    real = ref["attention_mask"] == 1
    np.testing.assert_allclose(logits[real], ref["logits"][real], atol=atol, rtol=0)


@pytest.mark.parametrize("name", CAUSAL)
def test_matches_hf_reference(hf_fixtures: Path, name: str) -> None:
    pre = registry.load_pretrained(str(hf_fixtures / name))
    assert isinstance(pre.config, llama.LlamaConfig)
    ref = _reference(hf_fixtures / name)
    logits = _forward(pre, ref)
    assert logits.dtype == np.float32
    _assert_close_on_real(logits, ref, atol=ATOL)


def test_fixture_configs_parsed(hf_fixtures: Path) -> None:
    big = registry.load_pretrained(str(hf_fixtures / "llama")).config
    assert (big.num_heads, big.num_kv_heads, big.head_dim, big.tie_word_embeddings) == (6, 2, 8, False)
    assert big.rope_theta == 500000.0
    assert big.rope_scaling == llama.RopeScaling("llama3", 8.0, 1.0, 4.0, 16)
    tied = registry.load_pretrained(str(hf_fixtures / "llama_tied"))
    assert tied.config.tie_word_embeddings and tied.config.rope_scaling is None
    assert "lm_head" not in tied.params
    mistral = registry.load_pretrained(str(hf_fixtures / "mistral")).config
    assert (mistral.num_heads, mistral.num_kv_heads, mistral.head_dim, mistral.sliding_window) == (4, 1, 16, 4)


def test_mistral_reference_applies_the_sliding_window(hf_fixtures: Path) -> None:
    """The fixture's 9 tokens exceed the window of 4, so HF's output must differ from
    full causal attention exactly at positions >= 4 of each row."""
    pre = registry.load_pretrained(str(hf_fixtures / "mistral"))
    ref = _reference(hf_fixtures / "mistral")
    full = dataclasses.replace(pre.config, sliding_window=None)
    module = llama.LlamaForCausalLM(full)
    logits = np.asarray(module.apply({"params": pre.params}, ref["input_ids"], ref["attention_mask"]).logits)
    diff = np.abs(logits - ref["logits"]).max(-1)
    positions = np.maximum(np.cumsum(ref["attention_mask"], -1) - 1, 0)
    real = ref["attention_mask"] == 1
    inside = real & (positions < 4)
    beyond = real & (positions >= 4)
    assert diff[inside].max() < 1e-4
    assert diff[beyond].min() > 1e-3


@pytest.mark.parametrize("name", CAUSAL)
def test_bf16_compute_stays_close(hf_fixtures: Path, name: str) -> None:
    pre = registry.load_pretrained(str(hf_fixtures / name), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(pre.params))
    ref = _reference(hf_fixtures / name)
    logits = _forward(pre, ref)
    assert logits.dtype == np.float32
    _assert_close_on_real(logits, ref, atol=2e-2)


@pytest.mark.parametrize("name,cache_len", [("llama", 9), ("llama", 16), ("mistral", 9), ("mistral", 13),
                                            ("llama_tied", 12)])
def test_cached_decoding_matches_full_forward(hf_fixtures: Path, name: str, cache_len: int) -> None:
    """Prefill the first 5 columns of the left-padded batch (row 0 holds 3 pads), then
    feed the remaining tokens one at a time; every real position's logits must equal
    the full forward's."""
    pre = registry.load_pretrained(str(hf_fixtures / name))
    ref = _reference(hf_fixtures / name)
    ids, mask = jnp.asarray(ref["input_ids"]), jnp.asarray(ref["attention_mask"])
    batch, length = ids.shape
    prefill_len = 5

    traces = []

    @jax.jit
    def run(params: dict, ids: jax.Array, mask: jax.Array, cache: llama.KVCache) -> tuple[jax.Array, llama.KVCache]:
        traces.append(ids.shape)
        out = pre.module.apply({"params": params}, ids, mask, cache=cache)
        return out.logits, out.cache

    full = _forward(pre, ref)
    cache = pre.config.init_cache(batch, cache_len)
    logits, cache = run(pre.params, ids[:, :prefill_len], mask[:, :prefill_len], cache)
    steps = [np.asarray(logits)]
    for t in range(prefill_len, length):
        logits, cache = run(pre.params, ids[:, t:t + 1], mask[:, t:t + 1], cache)
        steps.append(np.asarray(logits))
    assert traces == [(batch, prefill_len), (batch, 1)]  # every decode step reuses one trace
    assert int(cache.index) == length
    np.testing.assert_array_equal(np.asarray(cache.mask[:, :length]), ref["attention_mask"] == 1)
    assert not np.asarray(cache.mask[:, length:]).any()
    decoded = np.concatenate(steps, axis=1)
    real = ref["attention_mask"] == 1
    np.testing.assert_allclose(decoded[real], full[real], atol=1e-4, rtol=0)


def test_loads_sharded_on_a_mesh(hf_fixtures: Path) -> None:
    mesh = sharding.make_mesh((2, 2, 2))
    pre = registry.load_pretrained(str(hf_fixtures / "llama"), mesh=mesh)
    # vocab 128 splits over 'tensor', embed 48 over 'fsdp'.
    assert pre.params["embed_tokens"]["embedding"].sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    ref = _reference(hf_fixtures / "llama")
    _assert_close_on_real(_forward(pre, ref), ref, atol=ATOL)


def test_loads_without_prefix_and_with_old_buffers(hf_fixtures: Path, tmp_path: Path) -> None:
    """A bare LlamaModel-style naming (no 'model.'), rotary inv_freq buffers and a
    redundant lm_head copy in a tied checkpoint all load."""
    src = hf_fixtures / "llama_tied"
    reader = hf_loading.CheckpointReader(src)
    tensors = {k.removeprefix("model."): np.array(reader.get(k)) for k in reader.keys()}
    tensors["layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4, np.float32)
    tensors["lm_head.weight"] = tensors["embed_tokens.weight"].copy()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    shutil.copy(src / "config.json", tmp_path / "config.json")
    pre = registry.load_pretrained(str(tmp_path))
    ref = _reference(src)
    _assert_close_on_real(_forward(pre, ref), ref, atol=ATOL)


def test_missing_lm_head_is_reported(hf_fixtures: Path, tmp_path: Path) -> None:
    src = hf_fixtures / "llama_tied"
    reader = hf_loading.CheckpointReader(src)
    save_file({k: np.array(reader.get(k)) for k in reader.keys()}, str(tmp_path / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(hf_loading.CheckpointError, match="lm_head.weight"):
        registry.load_pretrained(str(tmp_path))


def _hf_base(**extra: object) -> dict:
    config = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 128}
    config.update(extra)
    return config


def test_from_hf_reads_old_and_new_rope_layouts(hf_fixtures: Path) -> None:
    new = json.loads((hf_fixtures / "llama" / "config.json").read_text())
    old = dict(new)
    params = dict(old.pop("rope_parameters"))
    old["rope_theta"] = params.pop("rope_theta")
    old["rope_scaling"] = params
    assert llama.LlamaConfig.from_hf(old) == llama.LlamaConfig.from_hf(new)

    plain = llama.LlamaConfig.from_hf(_hf_base(rope_theta=1e4, rope_scaling=None))
    assert plain.rope_scaling is None and plain.head_dim == 8
    linear = llama.LlamaConfig.from_hf(_hf_base(rope_theta=1e4, rope_scaling={"type": "linear", "factor": 4.0}))
    assert linear.rope_scaling == llama.RopeScaling("linear", 4.0)
    np.testing.assert_allclose(llama.rope_inv_freq(linear), llama.rope_inv_freq(plain) / 4.0, rtol=1e-6)
    v5_linear = llama.LlamaConfig.from_hf(
        _hf_base(rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4}))
    assert v5_linear == linear
    # Without original_max_position_embeddings HF falls back to max_position_embeddings.
    l3 = llama.LlamaConfig.from_hf(_hf_base(rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}))
    assert l3.rope_scaling.original_max_position_embeddings == 128


def test_llama3_inv_freq_bands() -> None:
    """High frequencies untouched, low ones divided by the factor, a blend between."""
    cfg = llama.LlamaConfig(hidden_size=256, num_attention_heads=2, num_key_value_heads=2, rope_theta=500000.0,
                            rope_scaling=llama.RopeScaling("llama3", 8.0, 1.0, 4.0, 8192))
    base = llama.rope_inv_freq(dataclasses.replace(cfg, rope_scaling=None))
    scaled = llama.rope_inv_freq(cfg)
    wavelen = 2 * np.pi / base
    high, low = wavelen < 8192 / 4, wavelen > 8192
    assert high.any() and low.any() and (~high & ~low).any()
    np.testing.assert_allclose(scaled[high], base[high], rtol=1e-6)
    np.testing.assert_allclose(scaled[low], base[low] / 8.0, rtol=1e-6)
    mid = ~high & ~low
    assert np.all(scaled[mid] < base[mid]) and np.all(scaled[mid] > base[mid] / 8.0)


@pytest.mark.parametrize("extra,match", [
    ({"model_type": "gpt2"}, "model_type"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "yarn"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
])
def test_from_hf_rejects_unsupported(extra: dict, match: str) -> None:
    with pytest.raises(hf_loading.CheckpointError, match=match):
        llama.LlamaConfig.from_hf(_hf_base(**extra))


def test_from_hf_names_a_missing_field() -> None:
    config = _hf_base()
    del config["intermediate_size"]
    with pytest.raises(hf_loading.CheckpointError, match="intermediate_size"):
        llama.LlamaConfig.from_hf(config)


@pytest.mark.parametrize("tied,biases", [(False, True), (True, False)])
def test_from_scratch_init(tied: bool, biases: bool) -> None:
    """head_dim differing from hidden/heads, GQA, sliding window and optional biases."""
    cfg = llama.LlamaConfig(vocab_size=50, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=10, max_position_embeddings=32,
                            tie_word_embeddings=tied, sliding_window=3, attention_bias=biases, mlp_bias=biases)
    model = llama.LlamaForCausalLM(cfg)
    boxed = registry.abstract_params(llama.FAMILY, cfg)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(leaf, nn.Partitioned) for leaf in leaves)
    flat = traverse_util.flatten_dict(boxed, sep="/", is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
    assert set(flat) == set(llama.weight_spec(cfg))
    assert flat["layers_0/self_attn/q_proj/kernel"].value.shape == (24, 4, 10)
    assert flat["layers_0/self_attn/k_proj/kernel"].names == ("embed", "kv_heads", "head_dim")
    assert flat["layers_0/self_attn/o_proj/kernel"].value.shape == (4, 10, 24)
    assert ("lm_head/kernel" in flat) != tied
    assert ("layers_1/mlp/down_proj/bias" in flat) == biases

    mesh = sharding.make_mesh((2, 2, 2))
    ids = jnp.ones((4, 7), jnp.int32)
    mask = jnp.ones((4, 7), jnp.int32).at[0, :2].set(0)
    params, _ = sharding.init_sharded(lambda: model.init(jax.random.key(0), ids, mask)["params"], mesh,
                                      sharding.DEFAULT_RULES)
    out = jax.jit(lambda p: model.apply({"params": p}, ids, mask))(params)
    assert out.logits.shape == (4, 7, 50) and out.logits.dtype == jnp.float32
    assert out.hidden.shape == (4, 7, 24)
    assert np.isfinite(np.asarray(out.logits)).all()
    cache = cfg.init_cache(4, 9)
    assert cache.k[0].shape == (4, 2, 10, 9) and cache.v[0].shape == (4, 2, 9, 10) and len(cache.v) == 2
