"""RoBERTa encoder: parity with the Hugging Face reference, padding on either side,
checkpoint layouts (prefix, MLM head, old buffers, missing pooler).

The fixture's row 0 is LEFT-padded, where HF's ``pooler_output`` reads the padding
slot at column 0; ours reads the first real token instead. So the pooled output is
compared with HF's ``pooler_output`` on row 1 (unpadded), and on row 0 with what HF
gives for the same row right-padded: tanh(dense(h)) of the reference hidden state h
at the first real token (HF's hidden states at real tokens do not depend on the
padding side, since its positions count real tokens).
"""

from __future__ import annotations

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
from archer_jax.models import hf_loading, layers, registry, roberta

# docs/guide.md: GPT-2, Llama, Mistral and RoBERTa match PyTorch within 2e-6 (measured: 6e-7 here).
ATOL = 2e-6


@pytest.fixture(scope="module")
def reference(hf_fixtures: Path) -> dict[str, np.ndarray]:
    return dict(np.load(hf_fixtures / "roberta" / "reference.npz"))


@pytest.fixture(scope="module")
def model(hf_fixtures: Path) -> registry.Pretrained:
    return registry.load_pretrained(str(hf_fixtures / "roberta"))


_forward = jax.jit(lambda module, params, ids, mask: module.apply({"params": params}, ids, mask), static_argnums=0)


def _expected_pooled(folder: Path, reference: dict[str, np.ndarray]) -> np.ndarray:
    """HF's pooler_output with every row right-padded, from the checkpoint's pooler."""
    reader = hf_loading.CheckpointReader(folder)
    weight, bias = reader.get("pooler.dense.weight"), reader.get("pooler.dense.bias")
    first = reference["attention_mask"].argmax(axis=1)
    hidden = reference["last_hidden_state"][np.arange(len(first)), first]
    return np.tanh(hidden @ weight.T + bias)


def _assert_matches(out: layers.EncoderOutput, reference: dict[str, np.ndarray], folder: Path,
                    atol: float) -> None:
    real = reference["attention_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(out.hidden)[real], reference["last_hidden_state"][real], atol=atol, rtol=0)
    np.testing.assert_allclose(np.asarray(out.pooled)[1], reference["pooler_output"][1], atol=atol, rtol=0)
    np.testing.assert_allclose(np.asarray(out.pooled), _expected_pooled(folder, reference), atol=atol, rtol=0)


def test_matches_reference(model: registry.Pretrained, reference: dict[str, np.ndarray], hf_fixtures: Path) -> None:
    cfg = model.config
    assert isinstance(cfg, roberta.RobertaConfig)
    assert (cfg.num_layers, cfg.head_dim, cfg.pad_token_id, cfg.max_positions) == (2, 8, 1, 38)
    assert reference["attention_mask"][0, 0] == 0  # row 0 really is left-padded
    out = _forward(model.module, model.params, reference["input_ids"], reference["attention_mask"])
    assert out.hidden.dtype == jnp.float32 and out.hidden.shape == reference["last_hidden_state"].shape
    assert out.pooled.dtype == jnp.float32 and out.pooled.shape == reference["pooler_output"].shape
    _assert_matches(out, reference, hf_fixtures / "roberta", ATOL)


def test_padding_side_does_not_matter(model: registry.Pretrained, reference: dict[str, np.ndarray]) -> None:
    sentence = reference["input_ids"][1, :6]
    pad = model.config.pad_token_id
    length = 10
    left = np.concatenate([np.full(length - 6, pad), sentence])
    right = np.concatenate([sentence, np.full(length - 6, pad)])
    ids = np.stack([left, right, np.concatenate([sentence, sentence[:4]])])
    mask = np.stack([left != pad, right != pad, np.arange(length) < 6]).astype(np.int32)
    out = _forward(model.module, model.params, ids, mask)
    hidden, pooled = np.asarray(out.hidden), np.asarray(out.pooled)
    # Row 2 holds real tokens in its "padding" slots: the mask alone must hide them.
    np.testing.assert_allclose(hidden[0, length - 6:], hidden[1, :6], atol=1e-5, rtol=0)
    np.testing.assert_allclose(hidden[2, :6], hidden[1, :6], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pooled[0], pooled[1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pooled[2], pooled[1], atol=1e-5, rtol=0)
    unpadded = _forward(model.module, model.params, sentence[None], np.ones((1, 6), np.int32))
    np.testing.assert_allclose(np.asarray(unpadded.pooled)[0], pooled[1], atol=1e-5, rtol=0)


def test_positions_from_mask() -> None:
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(roberta.positions_from_mask(mask, 1), [[1, 1, 2, 3, 4], [2, 3, 4, 1, 1]])
    np.testing.assert_array_equal(roberta.first_real_index(mask), [2, 0])


def test_bf16_compute_stays_close(hf_fixtures: Path, reference: dict[str, np.ndarray]) -> None:
    model = registry.load_pretrained(str(hf_fixtures / "roberta"), dtype=jnp.bfloat16)
    out = _forward(model.module, model.params, reference["input_ids"], reference["attention_mask"])
    assert out.hidden.dtype == jnp.float32 and out.pooled.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(model.params))
    _assert_matches(out, reference, hf_fixtures / "roberta", atol=0.05)


def test_sharded_load_matches(hf_fixtures: Path, reference: dict[str, np.ndarray]) -> None:
    mesh = sharding.make_mesh((2, 2, 2))
    model = registry.load_pretrained(str(hf_fixtures / "roberta"), mesh=mesh)
    spec = model.params["layers_0"]["attention"]["query"]["kernel"].sharding.spec
    assert spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    out = _forward(model.module, model.params, reference["input_ids"], reference["attention_mask"])
    _assert_matches(out, reference, hf_fixtures / "roberta", ATOL)


def _rewrite(src: Path, dst: Path, edit) -> Path:
    tensors = load_file(src / "model.safetensors")
    edit(tensors)
    dst.mkdir()
    save_file(tensors, dst / "model.safetensors")
    shutil.copy(src / "config.json", dst / "config.json")
    return dst


def test_loads_masked_lm_checkpoint(hf_fixtures: Path, tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    """roberta-base's layout: a 'roberta.' prefix, an MLM head and (old saves) the
    position-id buffer."""
    src = hf_fixtures / "roberta"

    def to_masked_lm(t: dict[str, np.ndarray]) -> None:
        for k in list(t):
            t[f"roberta.{k}"] = t.pop(k)
        e, v = t["roberta.embeddings.word_embeddings.weight"].shape[::-1]
        t["roberta.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
        t["lm_head.dense.weight"] = np.zeros((e, e), np.float32)
        t["lm_head.dense.bias"] = np.zeros((e,), np.float32)
        t["lm_head.layer_norm.weight"] = np.ones((e,), np.float32)
        t["lm_head.layer_norm.bias"] = np.zeros((e,), np.float32)
        t["lm_head.bias"] = np.zeros((v,), np.float32)

    model = registry.load_pretrained(str(_rewrite(src, tmp_path / "mlm", to_masked_lm)))
    out = _forward(model.module, model.params, reference["input_ids"], reference["attention_mask"])
    _assert_matches(out, reference, src, ATOL)


def test_missing_pooler_is_reported(hf_fixtures: Path, tmp_path: Path) -> None:
    """Some RobertaForMaskedLM saves have no pooler; its weights are not invented."""

    def drop_pooler(t: dict[str, np.ndarray]) -> None:
        del t["pooler.dense.weight"], t["pooler.dense.bias"]

    folder = _rewrite(hf_fixtures / "roberta", tmp_path / "no_pooler", drop_pooler)
    missing = r"missing tensors \(2\): pooler.dense.bias, pooler.dense.weight"
    with pytest.raises(hf_loading.CheckpointError, match=missing):
        registry.load_pretrained(str(folder))


def test_mismatched_config_is_reported(hf_fixtures: Path, tmp_path: Path) -> None:
    dst = tmp_path / "bad"
    shutil.copytree(hf_fixtures / "roberta", dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(hf_loading.CheckpointError, match="encoder.layer.2.attention.self.query.weight"):
        registry.load_pretrained(str(dst))


def test_from_hf(hf_fixtures: Path) -> None:
    base = json.loads((hf_fixtures / "roberta" / "config.json").read_text())
    # roberta-base's config (written by transformers 3) names the position scheme.
    cfg = roberta.RobertaConfig.from_hf({**base, "position_embedding_type": "absolute"}, jnp.bfloat16, jnp.float32)
    assert (cfg.hidden_act, cfg.type_vocab_size, cfg.layer_norm_eps, cfg.dtype) == ("gelu", 1, 1e-12, jnp.bfloat16)
    with pytest.raises(hf_loading.CheckpointError, match="relative_key"):
        roberta.RobertaConfig.from_hf({**base, "position_embedding_type": "relative_key"})
    with pytest.raises(hf_loading.CheckpointError, match="is_decoder"):
        roberta.RobertaConfig.from_hf({**base, "is_decoder": True})
    with pytest.raises(hf_loading.CheckpointError, match="hidden_size"):
        roberta.RobertaConfig.from_hf({k: v for k, v in base.items() if k != "hidden_size"})
    with pytest.raises(hf_loading.CheckpointError, match="hidden_act 'swish2'"):
        roberta.RobertaConfig.from_hf({**base, "hidden_act": "swish2"})


def test_too_long_input_is_refused(model: registry.Pretrained) -> None:
    n = model.config.max_positions
    ids = jnp.full((1, n), 5, jnp.int32)
    assert model.module.apply({"params": model.params}, ids, jnp.ones_like(ids)).hidden.shape == (1, n, 32)
    ids = jnp.full((1, n + 1), 5, jnp.int32)
    with pytest.raises(ValueError, match="exceeds the model's 38 positions"):
        model.module.apply({"params": model.params}, ids, jnp.ones_like(ids))


def test_from_scratch_tiny_model() -> None:
    config = roberta.RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=24, max_position_embeddings=20, type_vocab_size=2)
    abstract = registry.abstract_params(roberta.FAMILY, config)
    leaves = jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
    flat = traverse_util.flatten_dict(abstract, sep="/", is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
    assert set(flat) == set(roberta.weight_spec(config))
    assert flat["layers_0/attention/key/kernel"].names == ("embed", "heads", "head_dim")
    assert flat["layers_1/attention/out/kernel"].value.shape == (4, 4, 16)
    assert flat["token_type_embeddings/embedding"].value.shape == (2, 16)

    module = roberta.RobertaModel(config)
    ids = jnp.ones((2, 7), jnp.int32)
    mask = jnp.array([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    params = nn.meta.unbox(module.init(jax.random.key(0), ids, mask)["params"])
    out = module.apply({"params": params}, ids, mask)
    assert out.hidden.shape == (2, 7, 16) and out.pooled.shape == (2, 16)
    assert np.isfinite(np.asarray(out.hidden)).all() and np.isfinite(np.asarray(out.pooled)).all()
