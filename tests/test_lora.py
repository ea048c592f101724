"""Large-actor options: LoRA adapters (``config.actor.lora_rank``), rematerialised
blocks (``config.actor.remat``, ``config.critic.remat``) and bfloat16 weights (``config.actor.param_dtype``)."""

import dataclasses
import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from jax.sharding import NamedSharding, PartitionSpec

from archer_jax import config_checks, sharding, train_state, trainer
from archer_jax.algorithms import archer
from archer_jax.models import gpt2, layers, llama, registry, roberta
from experiments import export
from experiments.configs import guess_city

LORA = layers.LoRA(4, 8.0, ("q_proj", "v_proj", "o_proj", "query", "out", "fc"))
IDS = np.array([[3, 9, 4, 1, 7, 2], [0, 0, 5, 6, 8, 1]])
MASK = IDS > 0


def _model(family: str, **options) -> nn.Module:
    if family == "llama":
        return llama.LlamaForCausalLM(llama.LlamaConfig(
            vocab_size=16, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=16, **options))
    return gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=16, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                                **options))


def _init(module: nn.Module, seed: int = 0) -> dict:
    return nn.meta.unbox(module.init(jax.random.key(seed), *layers.token_init_inputs())["params"])


def _flat(params) -> dict:
    return traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")


def _logits(module: nn.Module, params) -> np.ndarray:
    return np.asarray(module.apply({"params": params}, IDS, MASK).logits)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_adapters_start_at_the_base_model_and_merge_into_it(family):
    base, adapted = _model(family), _model(family, lora=LORA)
    base_params = _init(base)
    params = train_state._overlay(_init(adapted, seed=1), base_params)
    flat = _flat(params)
    adapters = sorted(k for k in flat if layers.is_adapter(k.split("/")))
    assert adapters and all(k.rsplit("/", 2)[-2].removesuffix("_lora") in LORA.targets for k in adapters)
    assert set(flat) - set(adapters) == set(_flat(base_params))  # the base's paths are unchanged
    np.testing.assert_array_equal(_logits(adapted, params), _logits(base, base_params))  # B = 0
    # Trained adapters (B != 0) change the output, and fold into the kernels exactly.
    rng = np.random.default_rng(0)
    moved = {k: (rng.normal(size=v.shape).astype(np.float32) * 0.3 if k.endswith("lora_b") else v)
             for k, v in flat.items()}
    moved = traverse_util.unflatten_dict(moved, sep="/")
    ours = _logits(adapted, moved)
    assert np.abs(ours - _logits(base, base_params)).max() > 1e-2
    np.testing.assert_allclose(_logits(base, layers.merge_lora(moved, LORA)), ours, atol=2e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_rematerialised_blocks_compute_the_same_values_and_gradients(family):
    plain, remat = _model(family, lora=LORA), _model(family, lora=LORA, remat=True)
    params = _init(plain)

    def loss(module, p):
        return jnp.mean(jax.nn.log_softmax(module.apply({"params": p}, IDS, MASK).logits)[..., 3])

    np.testing.assert_array_equal(_logits(remat, params), _logits(plain, params))
    ours, theirs = jax.grad(lambda p: loss(remat, p))(params), jax.grad(lambda p: loss(plain, p))(params)
    for (path, a), b in zip(_flat(ours).items(), _flat(theirs).values()):
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=path)


def _wide(family: str, remat: bool) -> nn.Module:
    """4 layers, 64 wide, for a gradient whose activations outweigh its weights."""
    if family == "roberta":
        return roberta.RobertaModel(roberta.RobertaConfig(
            vocab_size=64, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
            max_position_embeddings=80, remat=remat))
    if family == "llama":
        return llama.LlamaForCausalLM(llama.LlamaConfig(
            vocab_size=64, hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=64, remat=remat))
    return gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=64, n_positions=64, n_embd=64, n_layer=4, n_head=4,
                                                remat=remat))


@pytest.mark.parametrize("family", ["gpt2", "llama", "roberta"])
def test_rematerialised_blocks_hold_fewer_temporaries_in_a_jitted_phase(family):
    """``archer.jit_phase`` keeps a rematerialising model's checkpoints
    (``sharding.compiler_options``): on CPU, where XLA otherwise drops jax.checkpoint's
    barriers and merges the recomputation back into the forward pass (so remat saved
    nothing), its gradient step holds well under the plain one's temporaries, and
    computes the same values."""
    mesh = sharding.make_mesh((-1, 1, 1))
    replicated = NamedSharding(mesh, PartitionSpec())
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, (8, 64)), jnp.int32)
    mask = jnp.ones(ids.shape, bool)

    def loss(module, params):
        out = module.apply({"params": params}, ids, mask)
        return jnp.mean(jnp.square(out.hidden if family == "roberta" else out.logits))

    def compiled(module, params):
        def phase(params, data):
            grads = jax.grad(lambda p: loss(module, p))(params)
            return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), {"loss": loss(module, params)}

        return archer.jit_phase(phase, replicated, replicated, mesh, (module,)).lower(params, ids).compile()

    plain, remat = _wide(family, remat=False), _wide(family, remat=True)
    params = nn.meta.unbox(plain.init(jax.random.key(0), ids, mask)["params"])
    programs = {name: compiled(m, params) for name, m in (("plain", plain), ("remat", remat))}
    temps = {name: program.memory_analysis().temp_size_in_bytes for name, program in programs.items()}
    assert temps["remat"] < 0.7 * temps["plain"], temps
    # (the phase donates its state: each call gets a copy)
    (new_plain, plain_loss), (new_remat, remat_loss) = (programs[name](jax.tree.map(jnp.copy, params), ids)
                                                        for name in ("plain", "remat"))
    np.testing.assert_allclose(remat_loss["loss"], plain_loss["loss"], rtol=1e-6)
    for (path, a), b in zip(_flat(new_remat).items(), _flat(new_plain).values()):
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=path)


def test_the_optimizer_updates_only_the_adapters_with_float32_moments():
    module = _model("llama", lora=LORA, param_dtype=jnp.bfloat16)
    params = _init(module)
    flat = _flat(params)
    assert {v.dtype for k, v in flat.items() if not layers.is_adapter(k.split("/"))} == {jnp.dtype(jnp.bfloat16)}
    assert {v.dtype for k, v in flat.items() if layers.is_adapter(k.split("/"))} == {jnp.dtype(jnp.float32)}
    tx = train_state.make_optimizer(1e-2, 1.0, trainable=layers.is_adapter)
    state = tx.init(params)
    moments = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    # Adam's two moments of the adapters only, in float32
    assert len(moments) == 2 * sum(layers.is_adapter(k.split("/")) for k in flat)
    assert {x.dtype for x in moments} == {jnp.dtype(jnp.float32)}
    new = params
    for _ in range(3):
        grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, IDS, MASK).logits[..., 5]))(new)
        updates, state = tx.update(grads, state, new)
        new = optax.apply_updates(new, updates)
    for path, value in _flat(new).items():
        same = np.array_equal(np.asarray(value).view(np.uint8), np.asarray(flat[path]).view(np.uint8))
        assert same != layers.is_adapter(path.split("/")), path  # the base bit for bit, every adapter moved
    # Without adapters every weight trains, and bfloat16 weights still get float32 moments.
    tx = train_state.make_optimizer(1e-2, 1.0)
    assert {x.dtype for x in jax.tree.leaves(tx.init(_init(_model("gpt2", param_dtype=jnp.bfloat16))))
            if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}


def _smoke(**actor) -> object:
    config = guess_city.get_config("smoke")
    config.actor.update(kind="llama", **actor)
    config.bc.iterations, config.archer.iterations, config.archer.warmup_iter = 1, 1, 0
    return config


def test_a_lora_run_trains_only_the_adapters_resumes_and_exports(tmp_path):
    """A bfloat16 base (a from-scratch Llama actor, exported as a Hugging Face folder)
    under LoRA: BC and ArCHer (with a KL anchor) train the adapters only, the base
    weights stay the checkpoint's bit for bit through a resume, the anchor keeps a copy
    of the adapters alone, and the export folds the adapters in."""
    untrained = _smoke()
    untrained.bc.iterations = untrained.archer.iterations = 0
    base_run = trainer.train(untrained, tmp_path / "base")
    export.export(base_run, tmp_path / "base_hf")
    config = _smoke(checkpoint=str(tmp_path / "base_hf"), param_dtype="bfloat16", lora_rank=4, remat=True,
                    lora_targets=("q_proj", "v_proj"))
    config.archer.iterations, config.archer.kl_coef = 2, 0.1
    run = trainer.train(config, tmp_path / "lora")
    base = registry.load_pretrained(str(tmp_path / "base_hf"), param_dtype=jnp.bfloat16)

    def check(run):
        flat, loaded = _flat(jax.device_get(run.state.actor_params)), _flat(base.params)
        adapters = {k for k in flat if layers.is_adapter(k.split("/"))}
        assert set(flat) - adapters == set(loaded)
        assert len(adapters) == 2 * 2  # (1 layer) x q, v x A, B
        for path, value in loaded.items():
            assert flat[path].dtype == jnp.bfloat16
            np.testing.assert_array_equal(flat[path].view(np.uint16), np.asarray(value).view(np.uint16), path)
        assert all(np.abs(flat[k]).max() > 0 for k in adapters if k.endswith("lora_b"))  # B left its zero init
        # The KL anchor: BC's adapters (ArCHer has moved the actor's since), over the shared base.
        anchor = _flat(jax.device_get(run.state.ref_actor_params))
        assert set(anchor) == adapters and any(not np.array_equal(anchor[k], flat[k]) for k in adapters)
        full = _flat(jax.device_get(train_state.reference_params(run.state)))
        assert all(np.array_equal(full[k], anchor[k] if k in adapters else flat[k]) for k in flat)
        return flat

    final = check(run)
    # Killed before its last checkpoint: the resumed run restores iteration 1 and redoes 2.
    checkpoints = tmp_path / "lora" / "checkpoints"
    shutil.rmtree(checkpoints / str(max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())))
    resumed = trainer.train(config, tmp_path / "lora")
    again = check(resumed)
    rows = [json.loads(line) for line in (tmp_path / "lora" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if r["stage"] == "archer"] == [0, 1, 2]
    for path, value in final.items():
        np.testing.assert_array_equal(np.asarray(again[path]).view(np.uint8), np.asarray(value).view(np.uint8), path)
    # The checkpoints keep the actor's adapters, not its base weights.
    stored = resumed.checkpointer.stored_shapes(resumed.checkpointer.latest_step())
    for field in ("actor_params", "ref_actor_params"):
        kept = {p for p in stored if p.startswith(f"state/{field}/")}
        assert kept and all(layers.is_adapter(p.split("/")) for p in kept), field
    assert any(p.startswith("state/critic_params/") for p in stored)
    # ... and refuse to resume on other base weights than the run started from.
    other = tmp_path / "other_hf"
    shutil.copytree(tmp_path / "base_hf", other)
    changed = registry.load_pretrained(str(other))
    registry.save_pretrained(changed.module, jax.tree.map(lambda x: x * 1.5, changed.params), other)
    config.actor.checkpoint = str(other)
    with pytest.raises(trainer.USER_ERRORS, match="other base weights than config.actor.checkpoint holds now"):
        trainer.setup(config, tmp_path / "lora", read_only=True)
    config.actor.checkpoint = str(tmp_path / "base_hf")
    export.export(resumed, tmp_path / "lora_hf")
    loaded = _flat(registry.load_pretrained(str(tmp_path / "lora_hf"), param_dtype=jnp.bfloat16).params)
    merged = _flat(layers.merge_lora(jax.device_get(resumed.state.actor_params), config_lora(config)))
    assert set(loaded) == set(merged)
    for path, value in merged.items():
        np.testing.assert_array_equal(np.asarray(loaded[path]).view(np.uint16), np.asarray(value).view(np.uint16))


def config_lora(config) -> layers.LoRA:
    return layers.LoRA(config.actor.lora_rank, config.actor.lora_alpha, tuple(config.actor.lora_targets))


@pytest.mark.parametrize("field,value,message", [
    ("lora_rank", -1, "config.actor.lora_rank = -1: a rank >= 0"),
    ("param_dtype", "float16", "config.actor.param_dtype = 'float16': choose one of"),
    ("lora_targets", ("q_proj", "attn"), r"config.actor.lora_targets = \['q_proj', 'attn'\]: \['attn'\] name no dense "
                                         r"layer of this llama actor; its dense layers: \[.*'down_proj'"),
])
def test_bad_large_actor_fields_are_named(tmp_path, field, value, message):
    config = _smoke(lora_rank=2)
    config.actor[field] = value
    with pytest.raises(config_checks.ConfigError, match=message):
        trainer.setup(config, tmp_path)


def test_from_scratch_actors_take_the_options():
    from archer_jax.data import tokenization

    config = _smoke(lora_rank=2, remat=True, param_dtype="bfloat16")
    words = tokenization.build_word_tokenizer(["Is it? Yes.\n"])
    module, params = registry.build_actor(config, words, sharding.make_mesh(config.mesh.shape))
    assert params is None
    assert dataclasses.asdict(module.config)["lora"] == {"rank": 2, "alpha": 16.0,
                                                       "targets": ("q_proj", "k_proj", "v_proj", "o_proj")}
    assert module.config.remat and module.config.param_dtype == jnp.bfloat16


def test_the_critic_takes_remat_from_its_config(tmp_path):
    from archer_jax.data import tokenization

    config = _smoke()
    config.critic.remat = True
    words = tokenization.build_word_tokenizer(["Is it? Yes.\n"])
    mesh = sharding.make_mesh(config.mesh.shape)
    actor, _ = registry.build_actor(config, words, mesh)
    critic, _, _ = registry.build_critic(config, actor, words, mesh)
    assert critic.encoder.config.remat
    # (phases that run it keep its checkpoints; those that run only the plain actor do not)
    assert sharding.rematerialises(actor, critic) and not sharding.rematerialises(actor, None)
    mesh_options = sharding.compiler_options(mesh, sharding.rematerialises(critic))
    assert mesh_options == {"xla_disable_hlo_passes": "cse_barrier_expander"}
    assert sharding.compiler_options(mesh, sharding.rematerialises(actor)) is None
    config.critic.kind = "actor"
    with pytest.raises(config_checks.ConfigError, match="config.critic.remat = True: .*set config.actor.remat"):
        trainer.setup(config, tmp_path)
