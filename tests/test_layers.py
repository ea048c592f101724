"""Attention against a plain per-head reference (keys and values of a kv head repeated
for its query heads), values and gradients, for every bias shape the model families
pass, with the keys in one block or several, and with the batch split over devices."""


import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from archer_jax import sharding
from archer_jax.models import layers

B, L, S, H, D = 8, 5, 7, 4, 3


def _inputs(hkv: int, bias_shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(B, L, H, D)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(B, S, hkv, D)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(B, S, hkv, D)), jnp.float32)
    # Each row masks its own keys, so a row put back in the wrong place changes the output.
    bias = jnp.asarray(np.where(rng.random(bias_shape) < 0.3, np.finfo(np.float32).min, rng.normal(size=bias_shape)),
                       jnp.float32)
    bias = bias.at[..., 0].set(0.0)  # every query sees at least one key
    return q, k, v, bias


def _reference(q, k, v, bias, scale):
    """softmax(q_h k_{h // G}^T * scale + bias_h) v_{h // G}, one head at a time."""
    groups = q.shape[2] // k.shape[2]
    bias = jnp.broadcast_to(bias, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
    heads = []
    for h in range(q.shape[2]):
        scores = q[:, :, h] @ k[:, :, h // groups].swapaxes(1, 2) * scale + bias[:, h]
        heads.append(jax.nn.softmax(scores, axis=-1) @ v[:, :, h // groups])
    return jnp.stack(heads, axis=2)


@pytest.mark.parametrize("hkv, bias_shape", [
    (H, (B, 1, L, S)),  # GPT-2, RoBERTa: one mask per row
    (2, (B, 1, 1, S)),  # grouped-query heads (Llama), a key mask only
    (1, (B, 1, L, S)),  # multi-query
    (H, (1, H, L, S)),  # T5: a relative-position bias shared by the batch
    (2, (B, H, L, S)),
])
@pytest.mark.parametrize("key_block", [S, 3])  # all keys in one block; blocks of 2, 2 and 3 keys
def test_attention_equals_the_per_head_reference(hkv, bias_shape, key_block):
    q, k, v, bias = _inputs(hkv, bias_shape)
    if key_block < S:  # a query whose first block is all masked: its weights come from the later blocks
        bias = bias.at[..., 0, :3].set(np.finfo(np.float32).min).at[..., 0, 5].set(0.0)
    def attention(q, k, v, bias):  # k, v as the projections give them, [B, S, Hkv, D]
        return layers.dot_product_attention(q, *layers.heads_first(k, v), bias, key_block=key_block)

    weights = jnp.cos(jnp.arange(B * L * H * D, dtype=jnp.float32).reshape(B, L, H, D))

    def grads(fn):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v, bias) * weights), argnums=(0, 1, 2)))(
            q, k, v)

    np.testing.assert_allclose(attention(q, k, v, bias), _reference(q, k, v, bias, D ** -0.5), atol=1e-6, rtol=0)
    (value, g), (value_ref, g_ref) = grads(attention), grads(
        lambda q, k, v, bias: _reference(q, k, v, bias, D ** -0.5))
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    for x, x_ref in zip(g, g_ref):
        np.testing.assert_allclose(x, x_ref, atol=1e-5, rtol=0)


def test_attention_of_a_batch_split_over_devices_equals_the_unsplit_result():
    mesh = sharding.make_mesh((jax.device_count(), 1, 1))
    q, k, v, bias = _inputs(H, (B, 1, L, S))
    rows = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    k, v = layers.heads_first(k, v)
    out = jax.jit(layers.dot_product_attention)(*(jax.device_put(x, rows) for x in (q, k, v, bias)))
    np.testing.assert_allclose(out, layers.dot_product_attention(q, k, v, bias), atol=1e-6, rtol=0)


def _dot_output_dtypes(jaxpr) -> list:
    """The result dtypes of every dot_general in ``jaxpr``, nested calls included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn.outvars[0].aval.dtype)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _dot_output_dtypes(sub)
    return found


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_bfloat16_models_accumulate_every_product_in_float32(kind):
    """A bfloat16 model's matrix products (dense layers, attention, the tied head) all
    accumulate to float32 (``layers.float32_accumulation``: XLA:CPU's fast bfloat16 path,
    the MXU's own); float32 models are unchanged by it (the demos' results, bit for bit)."""
    from archer_jax.models import gpt2, llama

    if kind == "gpt2":
        model = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                                     dtype=jnp.bfloat16))
    else:
        model = llama.LlamaForCausalLM(llama.LlamaConfig(
            vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=16, tie_word_embeddings=True, dtype=jnp.bfloat16))
    ids, mask = jnp.ones((2, 8), jnp.int32), jnp.ones((2, 8), bool)
    params = model.init(jax.random.key(0), ids, mask)["params"]
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, ids, mask).logits)(params).jaxpr
    dtypes = _dot_output_dtypes(jaxpr)
    assert len(dtypes) >= 7 and set(dtypes) == {jnp.dtype(jnp.float32)}, dtypes


@pytest.mark.parametrize("kind, kept", [("gpt2", 2), ("roberta", 2), ("llama", 3)])
def test_a_gradient_keeps_only_the_mlp_activation_inputs_and_output(kind, kept, capsys):
    """``layers.recompute_in_backward``: of the [B, L, mlp] arrays a gradient keeps for
    its backward pass, each layer holds only the activation's inputs (GELU's one,
    SwiGLU's gate and up) and its output (the next product's input); autodiff through
    GELU or silu otherwise keeps their inner terms too (6, 4 and 6 per layer)."""
    from jax.ad_checkpoint import print_saved_residuals

    from archer_jax.models import gpt2, llama, roberta

    b, length, mlp, n_layers = 2, 8, 48, 2
    model = {
        "gpt2": lambda: gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=50, n_positions=16, n_embd=16,
                                                             n_layer=n_layers, n_head=2, n_inner=mlp)),
        "roberta": lambda: roberta.RobertaModel(roberta.RobertaConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=n_layers, num_attention_heads=2, intermediate_size=mlp)),
        "llama": lambda: llama.LlamaForCausalLM(llama.LlamaConfig(
            vocab_size=50, hidden_size=16, intermediate_size=mlp, num_hidden_layers=n_layers, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=16)),
    }[kind]()
    ids, mask = jnp.ones((b, length), jnp.int32), jnp.ones((b, length), bool)
    params = model.init(jax.random.key(0), ids, mask)["params"]

    def loss(p):
        out = model.apply({"params": p}, ids, mask)
        return jnp.sum(out.logits if kind != "roberta" else out.hidden)

    capsys.readouterr()
    print_saved_residuals(loss, params)
    lines = capsys.readouterr().out.splitlines()
    wide = [line for line in lines if line.startswith(f"f32[{b},{length},{mlp}]") and "argument" not in line]
    assert len(wide) == kept * n_layers, "\n".join(lines)


def test_recompute_in_backward_keeps_values_and_gradients():
    x = jnp.linspace(-4.0, 4.0, 97)
    for fn in (lambda v: jax.nn.gelu(v, approximate=True), lambda v: jax.nn.gelu(v, approximate=False)):
        wrapped = layers.recompute_in_backward(fn)
        np.testing.assert_array_equal(jax.jit(wrapped)(x), jax.jit(fn)(x))
        np.testing.assert_allclose(jax.jit(jax.grad(lambda v: jnp.sum(wrapped(v))))(x),
                                   jax.jit(jax.grad(lambda v: jnp.sum(fn(v))))(x), rtol=1e-6, atol=1e-7)
