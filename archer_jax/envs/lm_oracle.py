"""Language-model oracles: a Flax T5 (the paper's fine-tuned flan-t5) that answers a
whole batch of questions in one jitted, KV-cached greedy decode on the devices.

Per task, the prompt and the answer post-processing (the task's ``OracleFormat``:
``guess_city.LM_ORACLE_FORMAT``, ``twenty_questions.LM_ORACLE_FORMAT``, reached through
``tasks.get(name).oracle_format``) follow the reference implementation (github.com/YifeiZhou02/ArCHer, archer/environment/*.py), so that its
released oracle checkpoints (converted by ``models.convert_reference_oracle``) see
the inputs they were trained on:

- Twenty Questions (and its subset): ``"The object is {word}." + question``, where word
  is the item's first synonym in lower case and no space precedes the question; the
  decoded reply becomes "Yes." if it says yes, else "No." if it says no, else
  "Invalid Question.". The reference tests substrings ("eyes" reads as yes, "know" as
  no); here only whole words count.
- Guess My City: ``"Your home town is {city}." + question``; a reply that names the
  city becomes "I can't answer that question.". The reference tests a lower-cased
  substring (so "Cali" censored every "California"); here the city's names and aliases
  count as whole words.

Shapes are bucketed so that rollouts with any number of active games reuse a few
compiled decodes: the batch is padded to a power of two (at least ``min_batch``),
prompts to a power-of-two length (at most ``max_prompt_len`` tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from archer_jax import sharding as sharding_lib
from archer_jax.envs.question_game import OracleFormat
from archer_jax.models import hf_loading, registry, t5

_MIN_PROMPT_BUCKET = 16


def _next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def batch_bucket(n: int, min_batch: int, multiple: int = 1) -> int:
    """Rows a batch of n is padded to: a power of two >= min_batch, rounded up to a
    multiple of the devices the batch is split over."""
    rows = max(min_batch, _next_power_of_two(n))
    return -(-rows // multiple) * multiple


def length_bucket(n: int, max_len: int) -> int:
    """Columns a prompt of n tokens is padded to (n <= max_len)."""
    return min(max_len, max(_MIN_PROMPT_BUCKET, _next_power_of_two(n)))


class LMOracle:
    """The `Oracle` protocol answered by a T5 model: `answer(hidden_items, questions)`.

    Args:
      module, params: the T5 model (params already placed, e.g. by
        `registry.load_pretrained`, sharded when `mesh` is given).
      tokenizer: its Hugging Face tokenizer.
      oracle_format: the task's prompt and post-processing (`tasks.get(name).oracle_format`).
      max_new_tokens: answer length cap, in tokens.
      max_prompt_len: prompts longer than this many tokens lose their end (the hidden
        item comes first and stays).
      min_batch: smallest batch bucket; fewer questions are padded up to it.
      mesh: when given, each batch is split over its ('data', 'fsdp') axes.
    """

    def __init__(self, module: t5.T5ForConditionalGeneration, params: Any, tokenizer: Any,
                 oracle_format: OracleFormat, *, max_new_tokens: int, max_prompt_len: int = 256,
                 min_batch: int = 8, mesh: Mesh | None = None):
        for field, value in (("max_new_tokens", max_new_tokens), ("max_prompt_len", max_prompt_len),
                             ("min_batch", min_batch)):
            if value < 1:
                raise ValueError(f"LMOracle: {field}={value} must be positive")
        self.module = module
        self.params = params
        self.tokenizer = tokenizer
        self.format = oracle_format
        self.max_new_tokens = max_new_tokens
        self.max_prompt_len = max_prompt_len
        self.min_batch = min_batch
        self._input_sharding = None if mesh is None else sharding_lib.batch_sharding(mesh, 2)
        self._batch_multiple = 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]

    def answer(self, hidden_items: Sequence[str], questions: Sequence[str]) -> list[str]:
        if len(hidden_items) != len(questions):
            raise ValueError(f"{len(hidden_items)} hidden items but {len(questions)} questions")
        replies = self.generate([self.format.prompt(h, q) for h, q in zip(hidden_items, questions)])
        return [self.format.postprocess(h, r) for h, r in zip(hidden_items, replies)]

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """The model's greedy replies to encoder texts, before post-processing."""
        if not prompts:
            return []
        rows = self.tokenizer(list(prompts), truncation=True, max_length=self.max_prompt_len)["input_ids"]
        shape = (batch_bucket(len(rows), self.min_batch, self._batch_multiple),
                 length_bucket(max(map(len, rows)), self.max_prompt_len))
        # Right padding, as HF's T5 tokenizer pads; padded rows are masked out entirely.
        ids = np.full(shape, self.module.config.pad_token_id, np.int32)
        mask = np.zeros(shape, np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        if self._input_sharding is not None:
            ids, mask = jax.device_put((ids, mask), self._input_sharding)
        out = t5.greedy_generate(self.module, self.params, ids, mask, self.max_new_tokens)
        return self.tokenizer.batch_decode(np.asarray(out)[:len(rows)], skip_special_tokens=True)


def make_lm_oracle(oracle_format: OracleFormat, checkpoint: str, *, max_new_tokens: int | None = None, dtype: Any = jnp.float32,
                   mesh: Mesh | None = None, max_prompt_len: int = 256, min_batch: int = 8) -> LMOracle:
    """An LM oracle speaking ``oracle_format`` (a task's, ``tasks.get(name).oracle_format``)
    from a Hugging Face T5 folder (or hub name) with a tokenizer.

    `max_new_tokens` defaults to the reference's length for the task (16 for Twenty
    Questions, 64 for Guess My City). `dtype` is both the compute and the param dtype:
    an oracle never trains, so it needs no float32 master weights.
    """
    folder = hf_loading.resolve_folder(checkpoint)
    model_type = hf_loading.read_config(folder).get("model_type")
    if model_type != "t5":
        raise hf_loading.CheckpointError(
            f"{folder / 'config.json'}: model_type {model_type!r}; an LM oracle needs a T5 / flan-t5 checkpoint")
    if not any((folder / name).exists() for name in t5.TOKENIZER_FILES):
        raise hf_loading.CheckpointError(
            f"{folder}: no tokenizer ({' or '.join(t5.TOKENIZER_FILES)}); copy the tokenizer files of the flan-t5 "
            "model the oracle was fine-tuned from into it (convert_reference_oracle --base does this)")
    tokenizer = registry.load_tokenizer(str(folder))
    model = registry.load_pretrained(str(folder), mesh=mesh, dtype=dtype, param_dtype=dtype)
    if len(tokenizer) > model.config.vocab_size:
        raise hf_loading.CheckpointError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size} "
            "embeddings; the tokenizer files belong to another model")
    return LMOracle(model.module, model.params, tokenizer, oracle_format,
                    max_new_tokens=oracle_format.max_new_tokens if max_new_tokens is None else max_new_tokens,
                    max_prompt_len=max_prompt_len, min_batch=min_batch, mesh=mesh)
