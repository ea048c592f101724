"""Model families and ``load_pretrained``: a Hugging Face folder (or hub name) in,
a Flax module with sharded params out."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh

from archer_jax import config_checks
from archer_jax import sharding as sharding_lib
from archer_jax.data import tokenization
from archer_jax.models import hf_loading, layers


@dataclasses.dataclass(frozen=True)
class Family:
    """What the loader needs to know about one architecture.

    config_from_hf(hf_config_dict, dtype, param_dtype) -> the family's config;
    build(config) -> the Flax module; init_inputs(config) -> dummy args for init;
    weight_spec(config) -> {flax param path 'a/b/kernel': Source};
    prefixes: names a checkpoint may put before every tensor ('transformer.', ...);
    ignore: regexes of checkpoint buffers that carry no weights;
    kind: 'causal_lm' (ids, mask -> CausalLMOutput), 'encoder' (ids, mask ->
    EncoderOutput) or 'seq2seq' (ids, mask, decoder ids -> logits);
    adapt_config(config, tensor_names): where config.json alone cannot tell the
    architecture (transformers 5 marks every T5 tied), settle it from the tensors;
    config_to_hf(config) -> the config.json dict (the inverse of config_from_hf), for
    families a trained model can be exported from (``save_pretrained``);
    unprefixed: regexes of tensor names that sit outside the model's prefix (an untied
    LM head: 'lm_head.weight', never 'model.lm_head.weight').
    """

    name: str
    config_from_hf: Callable[[Mapping[str, Any], Any, Any], Any]
    build: Callable[[Any], nn.Module]
    init_inputs: Callable[[Any], tuple[Any, ...]]
    weight_spec: Callable[[Any], Mapping[str, hf_loading.Source]]
    prefixes: tuple[str, ...] = ("",)
    ignore: tuple[str, ...] = ()
    kind: str = "causal_lm"
    adapt_config: Callable[[Any, Collection[str]], Any] | None = None
    config_to_hf: Callable[[Any], dict[str, Any]] | None = None
    unprefixed: tuple[str, ...] = ()


def _families() -> dict[str, Family]:
    # Imported lazily so that each model file can import this module.
    from archer_jax.models import gpt2, llama, roberta, t5

    return {
        "gpt2": gpt2.FAMILY,
        "llama": llama.FAMILY,
        "mistral": llama.FAMILY,
        "roberta": roberta.FAMILY,
        "t5": t5.FAMILY,
    }


def family_for(model_type: str) -> Family:
    families = _families()
    if model_type not in families:
        raise hf_loading.CheckpointError(
            f"model_type '{model_type}' is not supported; supported: {sorted(families)}")
    return families[model_type]


@dataclasses.dataclass(frozen=True)
class Pretrained:
    family: Family
    config: Any
    module: nn.Module
    params: Any
    folder: str


def abstract_params(family: Family, config: Any) -> Any:
    """The boxed (logically annotated) param shapes, without allocating anything."""
    module = family.build(config)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *family.init_inputs(config)))["params"]


def load_pretrained(
    path_or_name: str,
    *,
    mesh: Mesh | None = None,
    rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
) -> Pretrained:
    """Loads a Hugging Face GPT-2 / Llama / Mistral / RoBERTa / T5 folder or hub name."""
    folder = hf_loading.resolve_folder(path_or_name)
    hf_config = hf_loading.read_config(folder)
    model_type = hf_config.get("model_type")
    if model_type is None:
        raise hf_loading.CheckpointError(f"{folder / 'config.json'}: no 'model_type' field")
    family = family_for(model_type)
    config = family.config_from_hf(hf_config, jnp.dtype(dtype), jnp.dtype(param_dtype))
    reader = hf_loading.CheckpointReader(folder)
    if family.adapt_config is not None:
        config = family.adapt_config(config, reader.keys())
    params = hf_loading.load_params(
        reader, family.weight_spec(config), abstract_params(family, config),
        prefixes=family.prefixes, ignore=family.ignore, mesh=mesh, rules=rules)
    return Pretrained(family, config, family.build(config), params, str(folder))


def family_of(module: nn.Module) -> Family:
    """The family whose ``build`` made ``module``."""
    for family in _families().values():
        if isinstance(family.build, type) and isinstance(module, family.build):
            return family
    raise hf_loading.CheckpointError(f"{type(module).__name__} belongs to no model family; supported: "
                                     f"{sorted(_families())}")


def save_pretrained(module: nn.Module, params: Any, folder: str | os.PathLike,
                    extra_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Writes ``module``'s ``params`` as a Hugging Face folder: config.json (the
    family's ``config_to_hf`` plus ``extra_config``, e.g. the tokenizer's special ids)
    and model.safetensors (float tensors as the params hold them), which
    ``load_pretrained`` and ``transformers``' ``from_pretrained`` read. The tensors
    come from the family's loading spec, inverted (``hf_loading.export_params``).
    Returns the config written."""
    from safetensors.numpy import save_file  # a dependency of transformers

    family = family_of(module)
    if family.config_to_hf is None:
        raise hf_loading.CheckpointError(f"model family {family.name!r} cannot be exported (no config_to_hf)")
    config = module.config
    if getattr(config, "lora", None) is not None:  # the adapters folded into their kernels
        params = layers.merge_lora(params, config.lora)
    flat = traverse_util.flatten_dict(params, sep="/", is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
    tensors = hf_loading.export_params(family.weight_spec(config), flat)
    unprefixed = [re.compile(p) for p in family.unprefixed]
    prefix = family.prefixes[0]
    named = {(k if any(r.search(k) for r in unprefixed) else prefix + k): np.ascontiguousarray(v)
             for k, v in tensors.items()}
    hf_config = {**family.config_to_hf(config), **(extra_config or {})}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(named, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    return hf_config


def load_tokenizer(path_or_name: str) -> Any:
    """The folder's tokenizer (transformers is used for tokenizers and configs only)."""
    from transformers import AutoTokenizer

    folder = hf_loading.resolve_folder(path_or_name)
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise hf_loading.CheckpointError(f"{folder}: no usable tokenizer files ({e})") from e


# ----------------------------------------------------------------------------- a run's models


def build_actor(config: ml_collections.ConfigDict, tokenizer: Any, mesh: jax.sharding.Mesh) -> tuple[Any, Any]:
    """The actor of ``config.actor``: (module, params), params loaded from its checkpoint,
    or None (initialise at random) when it has none. Its training options (``param_dtype``,
    LoRA adapters, ``remat``) go into the family's config; loaded params then lack the
    adapters, which ``train_state.create_state`` initialises."""
    from archer_jax.models import gpt2, llama  # lazily: each model file imports this module

    c = config.actor
    dtype, param_dtype = jnp.dtype(c.dtype), jnp.dtype(c.get("param_dtype", "float32"))
    options = actor_options(config)
    if c.checkpoint:
        loaded = load_pretrained(c.checkpoint, mesh=mesh, rules=config.mesh.rules, dtype=dtype,
                                 param_dtype=param_dtype)
        module, params = loaded.family.build(dataclasses.replace(loaded.config, **options)), loaded.params
    else:
        positions = config.tokens.obs_len + config.tokens.action_len
        positions += len(tokenization.prompt_template(tokenizer, config.tokens.actor_template, 0))
        if config.critic.kind == "actor":  # the critic of the actor's architecture also reads the hidden text
            positions += config.critic.privileged_len
        if c.kind == "gpt2":
            cfg = gpt2.GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=c.n_embd, n_layer=c.n_layer,
                                  n_head=c.n_head, dtype=dtype, param_dtype=param_dtype, **options)
            module, params = gpt2.GPT2LMHeadModel(cfg), None
        else:
            cfg = llama.LlamaConfig(vocab_size=len(tokenizer), hidden_size=c.n_embd, intermediate_size=4 * c.n_embd,
                                    num_hidden_layers=c.n_layer, num_attention_heads=c.n_head,
                                    num_key_value_heads=c.n_head, max_position_embeddings=positions,
                                    tie_word_embeddings=True, dtype=dtype, param_dtype=param_dtype, **options)
            module, params = llama.LlamaForCausalLM(cfg), None
    if "lora" in options:
        check_lora_targets(module, options["lora"])
    return module, params


def actor_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The training options of ``config.actor`` as the family config's fields (``remat``,
    ``lora``)."""
    c = config.actor
    options: dict[str, Any] = dict(remat=bool(c.get("remat", False)))
    if c.get("lora_rank", 0):
        options["lora"] = layers.LoRA(int(c.lora_rank), float(c.lora_alpha), tuple(c.lora_targets))
    return options


def module_from_hf_config(hf_config: Mapping[str, Any], dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                          **options: Any) -> nn.Module:
    """The module a ``config.json`` dict describes (no weights), with ``options`` set on
    its family's config (``actor_options``)."""
    family = family_for(hf_config.get("model_type"))
    config = family.config_from_hf(hf_config, jnp.dtype(dtype), jnp.dtype(param_dtype))
    return family.build(dataclasses.replace(config, **options) if options else config)


def check_lora_targets(module: nn.Module, lora: Any) -> None:
    """Every name in config.actor.lora_targets names a dense layer of ``module``."""
    family = family_of(module)
    paths = [layers.path_names(path)
             for path, _ in jax.tree_util.tree_flatten_with_path(nn.meta.unbox(abstract_params(family, module.config)))[0]]
    dense = {p[-2] for p in paths if len(p) > 1 and p[-1] == "kernel" and not p[-2].endswith("_lora")}
    missing = [t for t in lora.targets if t not in dense]
    if missing:
        raise config_checks.ConfigError(
            f"config.actor.lora_targets = {list(lora.targets)}: {missing} name no dense layer of this "
            f"{family.name} actor; its dense layers: {sorted(dense)}")


def build_critic(config: ml_collections.ConfigDict, actor: Any, actor_tokenizer: Any,
                 mesh: jax.sharding.Mesh) -> tuple[Any, Any, Any]:
    """The critic of ``config.critic``: (DoubleCritic module, pretrained encoder params or
    None, the critic's tokenizer)."""
    from archer_jax.models import roberta, value_heads

    c = config.critic
    dtype = jnp.dtype(c.dtype)
    if c.kind == "actor":
        # The actor's architecture and tokenizer; its weights arrive when ArCHer starts
        # (``algorithms.archer.start_state``), after the BC warm start trained them.
        critic = value_heads.DoubleCritic(encoder=value_heads.CausalEncoder(actor), hidden_size=actor.config.hidden_size,
                                          pooling=c.pooling, joint=c.joint)
        return critic, None, actor_tokenizer
    remat = bool(c.get("remat", False))
    if c.checkpoint:
        loaded = load_pretrained(c.checkpoint, mesh=mesh, rules=config.mesh.rules, dtype=dtype)
        encoder = loaded.family.build(dataclasses.replace(loaded.config, remat=remat)) if remat else loaded.module
        critic = value_heads.DoubleCritic(encoder=encoder, hidden_size=loaded.config.hidden_size,
                                          pooling=c.pooling, joint=c.joint)
        return critic, loaded.params, load_tokenizer(c.checkpoint)
    # From scratch the critic shares the actor's tokenizer (identity bridge).
    pad_id = actor_tokenizer.pad_token_id
    cfg = roberta.RobertaConfig(
        vocab_size=len(actor_tokenizer), hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, intermediate_size=c.mlp_dim, pad_token_id=pad_id,
        max_position_embeddings=config_checks.critic_length(config) + pad_id + 2, dtype=dtype, remat=remat)
    critic = value_heads.DoubleCritic(encoder=roberta.RobertaModel(cfg), hidden_size=c.hidden_size, pooling=c.pooling,
                                      joint=c.joint)
    return critic, None, actor_tokenizer
