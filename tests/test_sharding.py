"""Mesh construction, logical -> mesh rules, sharded forwards equal unsharded ones, and
the params fingerprint that sees any change but not the layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from archer_jax import sharding, train_state
from archer_jax.models import check, hf_loading, registry


def test_make_mesh_fills_the_rest():
    mesh = sharding.make_mesh((2, -1, 2))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}


@pytest.mark.parametrize("shape", [(3, -1, 1), (2, 2, 3), (-1, -1, 1)])
def test_make_mesh_rejects_impossible_shapes(shape):
    with pytest.raises(ValueError, match="mesh_shape"):
        sharding.make_mesh(shape)


def test_logical_to_spec_skips_axes_that_do_not_divide():
    mesh = sharding.make_mesh((2, 2, 2))
    rules = sharding.DEFAULT_RULES
    # 3 heads cannot split over tensor=2: replicated on that dim, embed still on fsdp.
    assert sharding.logical_to_spec(("embed", "heads", "head_dim"), (24, 3, 8), mesh, rules) == \
        PartitionSpec("fsdp", None, None)
    assert sharding.logical_to_spec(("batch", None), (8, 5), mesh, rules) == PartitionSpec(("data", "fsdp"), None)
    assert sharding.logical_to_spec(("batch", None), (6, 5), mesh, rules) == PartitionSpec("data", None)


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "roberta", "t5"])
def test_sharded_forward_equals_unsharded(hf_fixtures, name):
    folder = str(hf_fixtures / name)
    single = registry.load_pretrained(folder)
    mesh = sharding.make_mesh((2, 2, 2))
    sharded = registry.load_pretrained(folder, mesh=mesh)
    specs = {leaf.sharding.spec for leaf in jax.tree.leaves(sharded.params)}
    assert any(spec != PartitionSpec(*([None] * len(spec))) for spec in specs), "nothing was sharded"
    hf_config = hf_loading.read_config(hf_fixtures / name)
    inputs = check._inputs(single.family.kind, single.config, hf_config, batch=4, length=8, seed=1)
    want = check.run_flax(single, inputs)
    got = check.run_flax(sharded, inputs)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5, rtol=1e-5)


def test_fingerprint_sees_any_change_and_not_the_layout():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(8, 6)), jnp.float32),
              "e": jnp.asarray(rng.normal(size=(4, 8)), jnp.bfloat16),
              "n": jnp.arange(5, dtype=jnp.int32), "flag": jnp.asarray(True)}
    base = int(train_state.fingerprint(params))
    assert int(train_state.fingerprint(jax.tree.map(jnp.copy, params))) == base
    # Every single-element change, even the smallest float step, moves it.
    for name in ("w", "e"):
        x = params[name]
        for index in [(0, 0), (3, 5), (x.shape[0] - 1, x.shape[1] - 1)]:
            nudged = x.at[index].set(jnp.nextafter(x[index], jnp.asarray(jnp.inf, x.dtype)))
            assert int(train_state.fingerprint({**params, name: nudged})) != base, (name, index)
    # Two elements swapped (the same multiset of values) and the leaves swapped move it too.
    w = params["w"]
    swapped = w.at[0, 0].set(w[1, 1]).at[1, 1].set(w[0, 0])
    assert int(train_state.fingerprint({**params, "w": swapped})) != base
    assert int(train_state.fingerprint({**params, "w": params["w"].T.T, "n": params["n"][::-1]})) != base
    # A sharded copy over the 8 devices has the unsharded fingerprint.
    mesh = sharding.make_mesh((2, 2, 2))
    sharded = {**params, "w": jax.device_put(params["w"], NamedSharding(mesh, PartitionSpec(("data", "fsdp"), "tensor")))}
    assert int(train_state.fingerprint(sharded)) == base
