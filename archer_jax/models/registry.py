"""Model families and ``load_pretrained``: a Hugging Face folder (or hub name) in,
a Flax module with sharded params out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from archer_jax import sharding as sharding_lib
from archer_jax.models import hf_loading


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
    architecture (transformers 5 marks every T5 tied), settle it from the tensors.
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


def load_tokenizer(path_or_name: str) -> Any:
    """The folder's tokenizer (transformers is used for tokenizers and configs only)."""
    from transformers import AutoTokenizer

    folder = hf_loading.resolve_folder(path_or_name)
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise hf_loading.CheckpointError(f"{folder}: no usable tokenizer files ({e})") from e
