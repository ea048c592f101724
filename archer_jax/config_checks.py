"""Config validation: every user-caused problem is reported before expensive work,
with the field to fix."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ml_collections

from archer_jax import algorithms
from archer_jax.models import hf_loading

# 'actor': the critic encoder is the actor's architecture, started from its BC weights.
_MODEL_KINDS = {"actor": ("gpt2", "llama"), "critic": ("roberta", "actor")}
_DTYPES = ("float32", "bfloat16")
_DATA_SOURCES = ("simulated", "lmrl_gym")  # data.sources.SOURCES, without importing TFDS here


class ConfigError(ValueError):
    """A config field with an unusable value."""


def positive(config: ml_collections.ConfigDict, path: str, *, allow_zero: bool = False) -> None:
    """Refuses ``config.<path>`` unless it is a number > 0 (>= 0 with ``allow_zero``)."""
    value = _get(config, path)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config.{path} = {value!r}: must be a {'non-negative' if allow_zero else 'positive'} number")


def unit_interval(config: ml_collections.ConfigDict, path: str) -> None:
    """Refuses ``config.<path>`` unless it lies in [0, 1] (a discount, GAE's lambda)."""
    value = _get(config, path)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"config.{path} = {value!r}: must lie in [0, 1]")


def _get(config: ml_collections.ConfigDict, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node[part]
    return node


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first bad field."""
    if config.get("algorithm") not in algorithms.NAMES:
        raise ConfigError(f"config.algorithm = {config.get('algorithm')!r}: choose one of {algorithms.NAMES}")
    for path in ("tokens.obs_len", "tokens.action_len", "env.max_turns", "archer.rollout_size",
                 "archer.rollout_batch", "archer.capacity", "archer.critic_epochs", "archer.batch_size",
                 "archer.actor_batch_size", "archer.actor_samples", "archer.actor_temperature", "archer.eval_size",
                 "archer.eval_every", "archer.tau", "archer.reward_scale", "actor.lr",
                 "critic.lr", "checkpoint_every", "data.num_episodes", "bc.steps",
                 "bc.batch_size", "bc.lr", "archer.awr_max_weight"):
        positive(config, path)
    for path in ("archer.iterations", "archer.actor_epochs", "archer.warmup_iter", "bc.iterations",
                 "archer.temperature", "archer.kl_coef", "archer.forward_kl_coef", "archer.awr_coef",
                 "archer.awr_beta", "transcripts"):
        positive(config, path, allow_zero=True)
    positive(config, "tokens.bucket_chunks")
    buckets = config.tokens.length_buckets
    if not isinstance(buckets, (tuple, list)) or not all(isinstance(b, int) and b > 0 for b in buckets):
        raise ConfigError(f"config.tokens.length_buckets = {buckets!r}: a tuple of token widths > 0, e.g. "
                          "'(64, 128, 256)', or () for none")
    template = config.tokens.actor_template
    if not isinstance(template, str) or (template and template.count("{obs}") != 1):
        raise ConfigError(f"config.tokens.actor_template = {template!r}: a text with one '{{obs}}' where the "
                          "observation goes (the actor's framing, e.g. an instruct model's '[INST] ... {obs} ... "
                          "[/INST]'), or '' for none")
    unit_interval(config, "archer.gamma")
    unit_interval(config, "archer.mc_mix")
    if not 0.0 < config.archer.tau <= 1.0:
        raise ConfigError(f"config.archer.tau = {config.archer.tau}: must lie in (0, 1]")
    if not 0.0 <= config.archer.greedy_rollouts <= 1.0:
        raise ConfigError(f"config.archer.greedy_rollouts = {config.archer.greedy_rollouts}: a fraction in [0, 1]")
    if config.archer.rollout_size % config.archer.rollout_batch:
        raise ConfigError(f"config.archer.rollout_size = {config.archer.rollout_size} must be a multiple of "
                          f"config.archer.rollout_batch = {config.archer.rollout_batch}")
    if config.archer.eval_size % config.archer.rollout_batch:
        raise ConfigError(f"config.archer.eval_size = {config.archer.eval_size} must be a multiple of "
                          f"config.archer.rollout_batch = {config.archer.rollout_batch}")
    if config.data.source not in _DATA_SOURCES:
        raise ConfigError(f"config.data.source = {config.data.source!r}: choose one of {_DATA_SOURCES}")
    data_mix(config)
    if config.data.source == "lmrl_gym":
        from archer_jax.data import lmrl_gym  # TFDS: imported only by runs that read its data

        if config.task not in lmrl_gym.TASKS:
            raise ConfigError(f"config.data.source = 'lmrl_gym' has no data for config.task = {config.task!r}: "
                              f"use it with one of {tuple(lmrl_gym.TASKS)}, or 'simulated'")
    _check_privileged(config)
    _check_xla_cache(config)
    _check_logging(config.logging)
    if config.critic.pooling not in ("pooled", "mean"):
        raise ConfigError(f"config.critic.pooling = {config.critic.pooling!r}: choose 'pooled' or 'mean'")
    if config.critic.get("remat", False) and config.critic.kind == "actor":
        raise ConfigError("config.critic.remat = True: a critic of the actor's architecture (config.critic.kind = "
                          "'actor') rematerialises with the actor's blocks; set config.actor.remat instead")
    if config.env.oracle not in ("kb", "lm"):
        raise ConfigError(f"config.env.oracle = {config.env.oracle!r}: choose 'kb' (knowledge-base oracle) or "
                          "'lm' (a T5 oracle from config.env.oracle_checkpoint)")
    if config.env.oracle == "lm":
        if not config.env.oracle_checkpoint:
            raise ConfigError("config.env.oracle = 'lm' needs config.env.oracle_checkpoint: a Hugging Face T5 folder "
                              "with its tokenizer (python -m archer_jax.models.convert_reference_oracle writes one "
                              "from the reference's .pt)")
        _check_checkpoint("env.oracle_checkpoint", config.env.oracle_checkpoint)
    for role, kinds in _MODEL_KINDS.items():
        model = config[role]
        if model.kind not in kinds:
            raise ConfigError(f"config.{role}.kind = {model.kind!r}: choose one of {kinds}")
        if model.dtype not in _DTYPES:
            raise ConfigError(f"config.{role}.dtype = {model.dtype!r}: choose one of {_DTYPES}")
        if model.checkpoint:
            _check_checkpoint(f"{role}.checkpoint", model.checkpoint)
    _check_large_actor(config.actor)
    algorithms.check_config(config.algorithm, config)  # the algorithm's own block


def data_mix(config: ml_collections.ConfigDict) -> dict[str, float]:
    """``config.data.mix`` ('player=weight,...') as player -> weight ({} = the task's
    default mix); ConfigError naming the field, and the task's players, when a name or a
    weight is wrong."""
    text = config.data.get("mix", "")
    if not isinstance(text, str):
        raise ConfigError(f"config.data.mix = {text!r}: a text 'player=weight,...' ('' = the task's default mix)")
    if not text.strip():
        return {}
    from archer_jax import tasks  # the task's players (tasks imports every environment)

    players = tuple(tasks.get(config.task).players)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        try:
            value = float(weight)
        except ValueError:
            value = float("nan")
        if name not in players or not value > 0 or name in mix:
            raise ConfigError(f"config.data.mix = {text!r}: {part.strip()!r} is not 'player=weight' with a weight > 0 "
                              f"and a player of task {config.task!r} named once; its players: {players}")
        mix[name] = value
    if config.data.source != "simulated":
        raise ConfigError(f"config.data.mix = {text!r} chooses scripted players, but config.data.source = "
                          f"{config.data.source!r} reads recorded episodes; set it to ''")
    return mix


def _check_xla_cache(config: ml_collections.ConfigDict) -> None:
    folder = config.get("xla_cache_dir", "")
    if folder and "://" not in folder and os.path.isfile(os.path.expanduser(folder)):
        raise ConfigError(f"config.xla_cache_dir = {folder!r} is a file: give a folder (or '' for no cache)")


def _check_logging(logging: ml_collections.ConfigDict) -> None:
    """config.logging: W&B is optional, so a project without the package is refused here."""
    for field in ("wandb_project", "wandb_entity"):
        if not isinstance(logging[field], str):
            raise ConfigError(f"config.logging.{field} = {logging[field]!r}: a name ('' = off / your default)")
    if logging.wandb_project and importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"config.logging.wandb_project = {logging.wandb_project!r} needs Weights & Biases: "
                          "pip install 'archer_jax[wandb]' (or leave the field '')")


def _check_large_actor(actor: ml_collections.ConfigDict) -> None:
    """config.actor's training options: stored dtype and LoRA (its targets are checked
    against the model when it is built, ``registry.build_actor``)."""
    if actor.get("param_dtype", "float32") not in _DTYPES:
        raise ConfigError(f"config.actor.param_dtype = {actor.param_dtype!r}: choose one of {_DTYPES}")
    rank = actor.get("lora_rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise ConfigError(f"config.actor.lora_rank = {rank!r}: a rank >= 0 (0 = no adapters, every weight trains)")
    if rank:
        alpha = actor.lora_alpha
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or alpha <= 0:
            raise ConfigError(f"config.actor.lora_alpha = {alpha!r}: must be a positive number")
        if not actor.lora_targets or isinstance(actor.lora_targets, str):
            raise ConfigError(f"config.actor.lora_targets = {actor.lora_targets!r}: a tuple of the actor's dense "
                              "layer names, e.g. ('q_proj', 'v_proj')")


def _check_privileged(config: ml_collections.ConfigDict) -> None:
    """config.critic.privileged_len: a token count, for an algorithm whose utterance
    critic only trains (never acts)."""
    length = config.critic.privileged_len
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ConfigError(f"config.critic.privileged_len = {length!r}: a number of tokens >= 0 (0 = a critic of the "
                          "conversation alone)")
    if length and (why := privileged_unusable(config.algorithm)):
        raise ConfigError(f"config.critic.privileged_len = {length}: {why}; set it to 0")


def privileged_unusable(algorithm: str) -> str | None:
    """Why ``algorithm`` cannot give its critic what the environment hides
    (``config.critic.privileged_len``), or None when it can."""
    if not algorithms.ALGORITHMS[algorithm].critic:
        return f"config.algorithm = {algorithm!r} has no utterance-level critic to read the hidden state"
    return algorithms.ALGORITHMS[algorithm].privileged_unusable


def _check_checkpoint(field: str, checkpoint: str) -> None:
    try:
        hf_loading.resolve_folder(checkpoint)
    except hf_loading.CheckpointError as e:
        raise ConfigError(
            f"config.{field} = {checkpoint!r} cannot be loaded: {e}\n"
            f"Set --config.{field}=/path/to/hf_folder (config.json + model.safetensors), or "
            f"try the CPU demo, which needs no downloads: --config=<task>.py:demo"
        ) from e


def check_context_lengths(config: ml_collections.ConfigDict, actor_max_positions: int | None,
                          critic_max_positions: int | None, bridge_extra: int = 0, template_len: int = 0) -> None:
    """Prompt (``template_len`` tokens of the actor's template around the observation)
    + utterance must fit the actor's context; observations the critic's."""
    need = config.tokens.obs_len + config.tokens.action_len + template_len
    if actor_max_positions is not None and need > actor_max_positions:
        raise ConfigError(
            f"config.tokens.obs_len + config.tokens.action_len"
            f"{f' + the {template_len} tokens of config.tokens.actor_template' if template_len else ''} = {need} "
            f"exceeds the actor's context of {actor_max_positions} positions; lower config.tokens.obs_len")
    critic_need = critic_length(config) + bridge_extra
    if critic_max_positions is not None and critic_need > critic_max_positions:
        raise ConfigError(
            f"the critic reads {critic_need} tokens (config.tokens.obs_len"
            f"{' + config.critic.privileged_len' if config.critic.privileged_len else ''}"
            f"{' + config.tokens.action_len with config.critic.joint' if config.critic.joint else ''}"
            f"{' + 1 BOS' if bridge_extra else ''}), more than its context of {critic_max_positions} positions; "
            "lower config.tokens.obs_len")


def check_observation_window(config: ml_collections.ConfigDict, one_turn: int) -> None:
    """The observation window must hold one turn (``one_turn`` tokens: the task's
    ``one_turn_observation``, e.g. the header, a question and its answer); a smaller one
    keeps no answer, and the agent plays blind."""
    if config.tokens.obs_len < one_turn:
        raise ConfigError(
            f"config.tokens.obs_len = {config.tokens.obs_len} cannot hold one turn (the shortest whole observation of "
            f"task {config.task!r} takes {one_turn} tokens), so the agent would never read what the environment "
            "answered; raise it, best to the tokens of a whole dialogue at the turn cap (the demos' windows do)")


def critic_length(config: ml_collections.ConfigDict) -> int:
    """The longest token sequence the critic's encoder reads."""
    obs = config.tokens.obs_len + config.critic.privileged_len
    if config.critic.joint:
        return obs + config.tokens.action_len
    return max(obs, config.tokens.action_len)
