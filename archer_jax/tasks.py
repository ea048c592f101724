"""The registry of conversation tasks: one entry per task, used by the trainer, the
data builders and the configs (no per-task copies of the training code)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from archer_jax import config_checks
from archer_jax.envs import (
    guess_city,
    guess_city_players,
    scripted,
    twenty_questions,
    twenty_questions_players,
)
from archer_jax.envs.question_game import (
    OBSERVATION_HEADER,
    BatchedQuestionGame,
    OracleFormat,
    QuestionTask,
    format_observation,
)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """make(max_turns=...) -> QuestionTask with its knowledge-base oracle;
    questioners / default_mix: the scripted players that simulate offline episodes;
    question_pool() -> every templated question those players ask; table: the players'
    item table (which items the answers so far allow; one guess question per item);
    oracle_format: how an LM oracle is prompted and read for the task (None: no LM
    oracle); lmrl_gym: the title of the task's LMRL-Gym dataset, which
    ``data.lmrl_gym`` imports (None: LMRL-Gym has none)."""

    make: Callable[..., QuestionTask]
    questioners: Mapping[str, scripted.Questioner]
    default_mix: Mapping[str, float]
    question_pool: Callable[[], Sequence[str]]
    table: scripted.ProbeTable
    oracle_format: OracleFormat | None = None
    lmrl_gym: str | None = None


_TWENTY_QUESTIONS_PLAYERS = (twenty_questions_players.QUESTIONERS, twenty_questions_players.DEFAULT_MIX,
                             twenty_questions_players.question_pool, twenty_questions_players.TABLE,
                             twenty_questions.LM_ORACLE_FORMAT)
TASKS: dict[str, TaskSpec] = {
    "guess_city": TaskSpec(guess_city.guess_city_task, guess_city_players.QUESTIONERS,
                           guess_city_players.DEFAULT_MIX, guess_city_players.question_pool,
                           guess_city_players.TABLE, guess_city.LM_ORACLE_FORMAT, lmrl_gym="Guess My City"),
    "twenty_questions": TaskSpec(twenty_questions.twenty_questions_task, *_TWENTY_QUESTIONS_PLAYERS,
                                 lmrl_gym="Twenty Questions"),
    # The Subset is the same game with the same players; only the hidden items differ.
    "twenty_questions_subset": TaskSpec(twenty_questions.twenty_questions_subset_task, *_TWENTY_QUESTIONS_PLAYERS),
}


def spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (config.task); known: {sorted(TASKS)}")
    return TASKS[name]


def make_task(name: str, *, max_turns: int = 20, num_items: int = 0) -> QuestionTask:
    """The task with its KB oracle; ``num_items`` > 0 hides only a fixed subset of the
    items (seeded, so every run and dataset agrees on it), as the paper's Twenty
    Questions Subset does. Players and the oracle still know every item."""
    task = spec(name).make(max_turns=max_turns)
    if num_items:
        if not 0 < num_items <= len(task.items):
            raise config_checks.ConfigError(
                f"config.env.num_items = {num_items}: must lie in [1, {len(task.items)}] for task {name!r} "
                "(hide only that many of its items), or be 0 for all items")
        chosen = np.sort(np.random.default_rng(0).permutation(len(task.items))[:num_items])
        task = dataclasses.replace(task, items=tuple(task.items[i] for i in chosen))
    return task


def make_batched_env(task: QuestionTask, batch_size: int) -> BatchedQuestionGame:
    return BatchedQuestionGame(task, batch_size)


def corpus(task: QuestionTask) -> Iterator[str]:
    """Every text a templated player can meet: each pooled question and the oracle's
    answer to it for every hidden item (one batched oracle call per item), plus the
    observation header and the win answer. A word tokenizer built from this covers the
    demo's whole vocabulary without any download."""
    questions = list(spec(task.name).question_pool())
    yield OBSERVATION_HEADER
    yield task.win_answer
    for item in task.items:
        answers = task.oracle.answer([item] * len(questions), questions)
        for question, answer in zip(questions, answers):
            yield f"{question} {answer}\n"


def one_turn_observation(task: QuestionTask) -> str:
    """The shortest observation that holds one whole turn: the header, the task's shortest
    pooled question and the oracle's answer to it about the first hidden item."""
    question = min(spec(task.name).question_pool(), key=len)
    return format_observation([(question, task.oracle.answer([task.items[0]], [question])[0])])
