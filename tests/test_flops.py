"""experiments.flops: matmul FLOPs counted on a jaxpr (loops multiplied out), checked by
hand on small programs and against the closed form of a GPT-2 forward pass."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import pytest

from archer_jax.models import gpt2
from experiments import flops


def test_a_matmul_and_a_batched_einsum_count_two_flops_per_multiply_add():
    a, b = jnp.ones((3, 5)), jnp.ones((5, 7))
    assert flops.count_flops(jnp.dot, a, b) == 2 * 3 * 5 * 7
    q, k = jnp.ones((2, 4, 6, 8)), jnp.ones((2, 4, 9, 8))
    assert flops.count_flops(lambda q, k: jnp.einsum("bhld,bhsd->bhls", q, k), q, k) == 2 * 2 * 4 * 6 * 9 * 8


def test_loops_branches_and_gradients():
    w = jnp.ones((4, 4))

    def scanned(x):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=6)[0]

    x = jnp.ones((2, 4))
    assert flops.count_flops(scanned, x) == 6 * 2 * 2 * 4 * 4
    assert flops.count_flops(jax.jit(scanned), x) == 6 * 2 * 2 * 4 * 4  # through pjit

    def looped(x):
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] @ w, c[1] + 1), (x, 0))[0]

    with pytest.raises(ValueError, match="while_trips"):
        flops.count_flops(looped, x)
    assert flops.count_flops(looped, x, while_trips=3) == 3 * 2 * 2 * 4 * 4

    def branch(p, x):
        return jax.lax.cond(p, lambda x: x @ w @ w, lambda x: x, x)

    assert flops.count_flops(branch, True, x) == 2 * (2 * 2 * 4 * 4)  # the costlier branch
    # The gradient of x @ w w.r.t. both: two more matmuls of the same size.
    assert flops.count_flops(jax.grad(lambda x, w: (x @ w).sum(), argnums=(0, 1)), x, w) == 3 * 2 * 2 * 4 * 4


def test_a_gpt2_forward_matches_its_closed_form():
    cfg = gpt2.GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    model = gpt2.GPT2LMHeadModel(cfg)
    b, t = 3, 10
    ids = jnp.zeros((b, t), jnp.int32)
    params = model.init(jax.random.key(0), ids, jnp.ones((b, t), jnp.int32))["params"]
    counted = flops.count_flops(lambda p: model.apply({"params": p}, ids, jnp.ones((b, t), jnp.int32)).logits,
                                params)
    d, tokens = cfg.n_embd, b * t
    per_layer = 2 * tokens * (3 * d * d + d * d + 8 * d * d) + 2 * 2 * b * t * t * d  # projections + QK^T, AV
    assert counted == cfg.n_layer * per_layer + 2 * tokens * d * cfg.vocab_size  # + the LM head


def test_matmul_rate_and_peaks():
    assert flops.matmul_rate("float32", n=64, repeats=1) > 0
    assert flops.peak_flops(types.SimpleNamespace(device_kind="TPU v5 lite"), "bfloat16") == 197e12
    assert flops.peak_flops(types.SimpleNamespace(device_kind="TPU v5"), "bfloat16") == 459e12
    assert flops.peak_flops(types.SimpleNamespace(device_kind="NVIDIA H100 80GB HBM3"), "float32") == 494e12
    assert flops.peak_flops(jax.devices()[0], "float32") is None  # a CPU: no published peak
