"""Attention computed over blocks of batch rows (the CPU backend's path) equals attention
over the whole batch, values and gradients, for every bias shape the model families pass."""

import jax
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


@pytest.mark.parametrize("hkv, bias_shape", [
    (H, (B, 1, L, S)),  # GPT-2, RoBERTa: one mask per row
    (2, (B, 1, 1, S)),  # grouped-query heads (Llama), a key mask only
    (H, (1, H, L, S)),  # T5: a relative-position bias shared by the batch
    (H, (B, H, L, S)),
])
@pytest.mark.parametrize("rows", [1, 2, 4])
def test_row_blocks_equal_the_whole_batch(hkv, bias_shape, rows):
    q, k, v, bias = _inputs(hkv, bias_shape)

    def loss(row_block):
        def f(q, k, v):
            out = layers.dot_product_attention(q, k, v, bias, row_block=row_block)
            return jnp.sum(out * jnp.cos(jnp.arange(out.size).reshape(out.shape))), out
        return jax.jit(jax.grad(f, argnums=(0, 1, 2), has_aux=True))(q, k, v)

    (grads, out), (grads_whole, out_whole) = loss(rows), loss(B)
    np.testing.assert_allclose(out, out_whole, atol=1e-6, rtol=0)
    for g, g_whole in zip(grads, grads_whole):
        np.testing.assert_allclose(g, g_whole, atol=1e-5, rtol=0)


def test_the_row_block_fits_the_cpu_budget_and_accelerators_take_the_whole_batch():
    per_row = 4 * 218 * 218 * 4  # fp32 scores of one row: 4 heads, 218 x 218
    rows = layers.attention_row_block(32, 4, 218, 218, backend="cpu")
    assert 32 % rows == 0 and rows * per_row <= layers.CPU_SCORES_BLOCK_BYTES < 2 * rows * per_row
    assert layers.attention_row_block(32, 4, 1, 218, backend="cpu") == 32  # a decode step: no blocking
    assert layers.attention_row_block(6, 64, 512, 512, backend="cpu") == 1  # one row already outgrows it
    assert layers.attention_row_block(12, 4, 160, 160, backend="cpu") == 4  # 5 rows fit; 4 divides 12
    for backend in ("gpu", "tpu"):
        assert layers.attention_row_block(32, 4, 218, 218, backend=backend) == 32


def test_row_blocks_of_a_batch_split_over_devices_equal_the_unsplit_result():
    mesh = sharding.make_mesh((jax.device_count(), 1, 1))
    q, k, v, bias = _inputs(H, (B, 1, L, S))
    rows = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    fn = jax.jit(lambda *a: layers.dot_product_attention(*a, row_block=2))
    out = fn(*(jax.device_put(x, rows) for x in (q, k, v, bias)))
    np.testing.assert_allclose(out, layers.dot_product_attention(q, k, v, bias, row_block=B), atol=1e-6, rtol=0)
