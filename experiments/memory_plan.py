"""Bytes per device of an ArCHer run, before paying for the slice: parameters, optimizer
states, the replay buffer, and the working memory of each jitted program.

    python -m experiments.memory_plan --config=twenty_questions_subset.py:mistral --devices=8 --device_gib=16
    python -m experiments.memory_plan --config=guess_city.py:demo --devices=1
    python -m experiments.memory_plan --config=twenty_questions_subset.py:mistral --native   # on the slice's VM

Nothing is downloaded or allocated. The run's models are built as the trainer builds
them (``registry``, ``train_state``, ``replay``, ``algorithms.archer``) and sized with
``jax.eval_shape`` on ``--devices`` fake CPU devices arranged by ``config.mesh.shape``: a
leaf's bytes on one device are those of its shard under the run's sharding rules, so
the state and buffer rows are exact. The programs (rollout generation, the critic
phase, the actor phase) are lowered on those shapes and compiled for the CPU backend;
their ``temp`` is XLA's buffer assignment there, per device. A TPU compile fuses, lays
out and pads differently, so read ``temp`` and ``peak`` as estimates. ``peak`` =
arguments + temp + outputs not aliased to a donated argument. The CPU backend's
scheduling, fusion and bfloat16 handling are not a TPU's (a 34M-parameter Llama's actor
phase measures 9.7 GiB of temp in bfloat16 against 11.9 GiB in float32, not half), so
for a 7B actor read its program numbers as a CPU's, not a TPU's; on the slice's own VM
``--native`` compiles for the chips themselves (still nothing allocated).

A checkpoint's architecture comes from its ``config.json`` (a local folder, or the
Hugging Face hub: its config and tokenizer files, never its weights); for the public
models the configs name (GPT-2, RoBERTa-base, Mistral-7B-Instruct-v0.2) a copy of that
file's architecture fields is built in, so the plan runs offline. The actor's template
(``config.tokens.actor_template``) lengthens each prompt by its tokens: counted with the
actor's tokenizer when it is at hand, else one per character (an upper bound). The last
stdout line is one JSON object.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from typing import Any

from absl import app, flags
from ml_collections import config_flags



def _define_flags() -> tuple[Any, ...]:
    """The command's flags, defined only when it runs (importing ``plan`` defines none)."""
    config = config_flags.DEFINE_config_file("config", None, "run config file[:variant]", lock_config=False)
    devices = flags.DEFINE_integer("devices", 8, "accelerator chips to plan for (fake CPU devices)")
    device_gib = flags.DEFINE_float("device_gib", 0.0, "memory of one chip in GiB; > 0 adds fits / does not fit lines")
    compile_programs = flags.DEFINE_bool("compile", True, "also compile the programs for their working memory "
                                         "(slower)")
    native = flags.DEFINE_bool("native", False, "plan on this machine's own devices (e.g. on the TPU VM of the "
                               "slice: the programs compiled for the real backend, nothing allocated); --devices is "
                               "ignored")
    flags.mark_flags_as_required(["config"])
    return config, devices, device_gib, compile_programs, native


# The architecture fields of the public config.json files the configs name (Hugging Face).
KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt2": dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                 activation_function="gelu_new", layer_norm_epsilon=1e-5),
    "roberta-base": dict(model_type="roberta", vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                         max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1),
    "mistralai/Mistral-7B-Instruct-v0.2": dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, hidden_act="silu", max_position_embeddings=32768,
        rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None, tie_word_embeddings=False),
}


class PlanError(Exception):
    pass


class _Vocabulary:
    """What ``registry.build_critic`` reads of a tokenizer (its size and pad id), for a
    from-scratch critic beside a checkpoint actor whose tokenizer is not at hand."""

    def __init__(self, size: int, pad_token_id: int) -> None:
        self.size, self.pad_token_id = size, pad_token_id

    def __len__(self) -> int:
        return self.size


def architecture(checkpoint: str, field: str) -> dict[str, Any]:
    """The config.json dict of ``checkpoint``: its folder's when it is local (or cached),
    else the built-in copy."""
    from archer_jax.models import hf_loading

    try:
        return hf_loading.read_config(hf_loading.resolve_folder(checkpoint, hf_loading.METADATA_PATTERNS))
    except hf_loading.CheckpointError as e:
        if checkpoint in KNOWN_ARCHITECTURES:
            return dict(KNOWN_ARCHITECTURES[checkpoint])
        raise PlanError(f"config.{field} = {checkpoint!r}: no config.json at hand ({e}); pass a folder holding "
                        f"at least its config.json, or one of {sorted(KNOWN_ARCHITECTURES)}") from e


def build_models(config: Any, mesh: Any) -> dict[str, Any]:
    """The run's actor, critic, bridge, token-level value model, phase settings and
    algorithm, as ``trainer.setup`` builds them, without weights."""
    import numpy as np

    from archer_jax import algorithms, tasks, token_bridge, trainer
    from archer_jax.algorithms import archer
    from archer_jax.models import registry, value_heads

    algorithm = algorithms.get(config.algorithm)
    if not algorithm.critic or algorithm.stage_names[-1] != "archer":
        raise PlanError(f"config.algorithm = {config.algorithm!r}: the plan sizes ArCHer's phases; use 'archer' "
                        "or 'archer_baseline'")
    c = config.actor
    tokenizer = None
    if c.checkpoint:
        options = registry.actor_options(config)
        actor = registry.module_from_hf_config(architecture(c.checkpoint, "actor.checkpoint"), c.dtype,
                                               c.get("param_dtype", "float32"), **options)
        if "lora" in options:
            registry.check_lora_targets(actor, options["lora"])
    else:
        tokenizer = trainer.word_tokenizer(config, tasks.get(config.task))
        actor, _ = registry.build_actor(config, tokenizer, mesh)
    vocab = actor.config.vocab_size
    bridge = token_bridge.TokenBridge(kind="identity", critic_length=None, bos_id=None, pad_id=0, unk_id=0)
    if config.critic.kind != "actor" and config.critic.checkpoint:
        cc = config.critic
        encoder = registry.module_from_hf_config(architecture(cc.checkpoint, "critic.checkpoint"), cc.dtype)
        critic = value_heads.DoubleCritic(encoder=encoder, hidden_size=encoder.config.hidden_size,
                                          pooling=cc.pooling, joint=cc.joint)
        # The id table the real tokenizer pair gives has this shape (a pretrained
        # RoBERTa reads <s> first): its values do not change the memory.
        table = (np.arange(vocab) % encoder.config.vocab_size).astype(np.int32)
        bridge = token_bridge.TokenBridge(kind="table", critic_length=None, bos_id=0, pad_id=1, unk_id=3, table=table)
    else:
        critic, _, _ = registry.build_critic(config, actor, tokenizer or _Vocabulary(vocab, 0), mesh)
    prompt, template_exact = template_stand_in(config, tokenizer)
    hp = archer.hparams(config, stop_ids=(1,), pad_id=0, prompt=prompt)
    baseline = value_heads.TokenValue(lm=actor) if algorithm.token_value else None
    return dict(actor=actor, critic=critic, bridge=bridge, hp=hp, baseline=baseline, algorithm=algorithm,
                template_exact=template_exact)


def template_stand_in(config: Any, tokenizer: Any) -> tuple[Any, bool]:
    """(``config.tokens.actor_template`` as ids of its length, whether that length is
    exact): the actor tokenizer's count when it is at hand (the word tokenizer, or a
    checkpoint's files), else one token per character, an upper bound for ASCII text
    (every token covers a character or more)."""
    from archer_jax.data import tokenization
    from archer_jax.models import hf_loading

    template = config.tokens.actor_template
    if not template:
        return tokenization.PromptTemplate(), True
    if tokenizer is None:
        try:
            import transformers

            folder = hf_loading.resolve_folder(config.actor.checkpoint, hf_loading.METADATA_PATTERNS)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        except (hf_loading.CheckpointError, OSError, ValueError):
            sides = template.split(tokenization.OBS_SLOT)
            return tokenization.PromptTemplate(tuple([0] * len(sides[0])), tuple([0] * len(sides[1]))), False
    return tokenization.prompt_template(tokenizer, template, 0), True


def per_device_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes one device holds of ``abstract`` (ShapeDtypeStructs) under ``shardings``."""
    import jax

    leaves = jax.tree.leaves(abstract)
    placed = jax.tree.leaves(shardings)
    if len(leaves) != len(placed):
        raise ValueError(f"{len(leaves)} leaves but {len(placed)} shardings")
    return sum(math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize for x, s in zip(leaves, placed))


def plan(config: Any, *, compile_programs: bool = True) -> dict[str, Any]:
    """The plan of ``config`` on the devices this process has: {'devices', 'mesh',
    'resident': {part: bytes per device}, 'programs': {name: {arguments, temp, outputs,
    peak}}} (programs only with ``compile_programs``)."""
    import jax
    import jax.numpy as jnp

    from archer_jax import replay, sampling, sharding, train_state
    from archer_jax.algorithms import archer

    mesh = sharding.make_mesh(config.mesh.shape)
    rules = config.mesh.rules
    m = build_models(config, mesh)
    actor_tx = train_state.actor_optimizer(config)
    critic_tx = train_state.make_optimizer(config.critic.lr, config.critic.max_grad_norm)
    baseline_tx = archer.baseline_optimizer(config) if m["baseline"] is not None else None
    state, state_shardings = train_state.abstract_state(
        jax.random.key(0), actor=m["actor"], critic=m["critic"], actor_tx=actor_tx, critic_tx=critic_tx, mesh=mesh,
        rules=rules, reference=m["algorithm"].reference(config), baseline=m["baseline"], baseline_tx=baseline_tx)
    data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
    capacity = -(-config.archer.capacity // data_parallel) * data_parallel
    make_buffer = functools.partial(replay.ReplayBuffer.create, capacity, config.tokens.obs_len,
                                    config.tokens.action_len, config.critic.privileged_len)
    buffer = jax.eval_shape(make_buffer)
    buffer_shardings = replay.buffer_shardings(buffer, mesh, rules)

    resident = {}
    for field in ("actor_params", "actor_opt_state", "ref_actor_params", "critic_params", "critic_opt_state",
                  "target_critic_params", "baseline_params", "baseline_opt_state"):
        if getattr(state, field) is not None:
            resident[field] = per_device_bytes(getattr(state, field), getattr(state_shardings, field))
    resident["replay_buffer"] = per_device_bytes(buffer, buffer_shardings)
    resident["total"] = sum(resident.values())
    trainable = sum(x.size for path, x in jax.tree_util.tree_flatten_with_path(state.actor_params)[0]
                    if not getattr(m["actor"].config, "lora", None) or _is_adapter(path))
    out: dict[str, Any] = {
        "devices": jax.device_count(), "platform": jax.devices()[0].platform, "mesh": dict(mesh.shape),
        "resident": resident,
        "actor_params": sum(x.size for x in jax.tree.leaves(state.actor_params)), "actor_trainable": trainable,
        "template_tokens": len(m["hp"].prompt), "template_exact": m["template_exact"],  # obs_len + these per prompt
        "critic_params": sum(x.size for x in jax.tree.leaves(state.critic_params)),
    }
    if not compile_programs:
        return out
    phases = archer.make_phases(actor=m["actor"], critic=m["critic"], hp=m["hp"], bridge=m["bridge"],
                                actor_tx=actor_tx, critic_tx=critic_tx, state_shardings=state_shardings,
                                buffer_shardings=buffer_shardings, mesh=mesh, rules=rules, baseline=m["baseline"],
                                baseline_tx=baseline_tx)
    b, hp = config.archer.rollout_batch, m["hp"]
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    generate = jax.jit(functools.partial(sampling.generate, m["actor"], max_new_tokens=hp.max_new_tokens,
                                         stop_ids=hp.stop_ids, pad_id=hp.pad_id),
                       in_shardings=(state_shardings.actor_params, replicated, replicated, replicated, replicated))
    prompt = jax.ShapeDtypeStruct((b, config.tokens.obs_len + len(hp.prompt)), jnp.int32)
    programs = {
        "generate": generate.lower(state.actor_params, prompt, prompt, jax.eval_shape(lambda: jax.random.key(0)),
                                   jax.ShapeDtypeStruct((b,), jnp.float32)),
        "critic_phase": phases.critic.lower(state, buffer),
        "actor_phase": phases.actor.lower(state, buffer),
    }
    out["programs"] = {}
    for name, lowered in programs.items():
        stats = lowered.compile().memory_analysis()
        outputs = stats.output_size_in_bytes - stats.alias_size_in_bytes
        out["programs"][name] = {"arguments": stats.argument_size_in_bytes, "temp": stats.temp_size_in_bytes,
                                 "outputs": outputs,
                                 "peak": stats.argument_size_in_bytes + stats.temp_size_in_bytes + outputs}
    return out


def _is_adapter(path: Any) -> bool:
    from archer_jax.models import layers

    return layers.is_adapter(path)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _size(n: int) -> str:
    return _gib(n) if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def print_plan(result: dict[str, Any], device_gib: float) -> None:
    print(f"memory plan: {result['devices']} devices, mesh {result['mesh']}; actor {result['actor_params']:,} "
          f"params ({result['actor_trainable']:,} trained), critic {result['critic_params']:,}"
          + (f"; the actor's template adds {result['template_tokens']} tokens to each prompt"
             + ("" if result["template_exact"] else " (one per character, an upper bound: its tokenizer is not at "
                "hand)") if result.get("template_tokens") else ""))
    print("| per device | bytes |\n|---|---|")
    for name, n in result["resident"].items():
        print(f"| {name} | {_gib(n)} |")
    for name, p in result.get("programs", {}).items():
        print(f"| {name}: temp (activations, workspace) | {_size(p['temp'])} |")
        print(f"| {name}: peak | {_size(p['peak'])} |")
    if device_gib > 0:
        def verdict(n: int) -> str:
            return f"{_size(n)} of {device_gib:g} GiB per device: {'fits' if n <= device_gib * 2**30 else 'does NOT fit'}"

        print(f"state and buffer (exact): {verdict(result['resident']['total'])}")
        if result.get("programs"):
            worst = max(p["peak"] for p in result["programs"].values())
            backend = result.get("platform", "cpu")
            what = "an estimate" if backend == "cpu" else "XLA's buffer assignment"
            print(f"largest program peak (as compiled for {backend}, {what}): {verdict(worst)}")


def main(argv: list[str]) -> None:
    del argv
    if not _NATIVE.value:  # read when the backend starts (on first use, after this)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={_DEVICES.value}").strip()
        import jax

        jax.config.update("jax_platforms", "cpu")
    from archer_jax import config_checks
    from archer_jax.models import hf_loading

    try:
        result = plan(_CONFIG.value, compile_programs=_COMPILE.value)
    except (PlanError, config_checks.ConfigError, hf_loading.CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    result["config"] = {"actor": _CONFIG.value.actor.to_dict(), "critic": _CONFIG.value.critic.to_dict(),
                        "mesh_shape": list(_CONFIG.value.mesh.shape)}
    result["device_gib"] = _DEVICE_GIB.value
    print_plan(result, _DEVICE_GIB.value)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    _CONFIG, _DEVICES, _DEVICE_GIB, _COMPILE, _NATIVE = _define_flags()
    from experiments.configs import resolve_config_path  # the same bare config names as experiments.run

    sys.argv = resolve_config_path(sys.argv)
    app.run(main)
