"""The generic question game shared by Guess My City and Twenty Questions.

A hidden item is drawn per episode; the agent asks one question per turn; an oracle
answers it. The observation is the whole dialogue so far:

    Questions:
    <question> <answer>
    <question> <answer>

Reward is -1 per turn and 0 on the winning turn; an episode ends on a win or after
`max_turns` turns, so returns lie in [-max_turns, 0]. Everything task specific (the
items, the oracle, what counts as a win) lives in a `QuestionTask`; the task object the
trainer sees (`envs.base.Task`: the game, its players, its texts) is a `QuestionGame`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Protocol, Sequence

import numpy as np

OBSERVATION_HEADER = "Questions:\n"
MAX_TURNS = 20
WIN_ANSWER = "Yes, you guessed it!"


class Oracle(Protocol):
    """Answers a batch of questions, one per hidden item."""

    def answer(self, hidden_items: Sequence[str], questions: Sequence[str]) -> list[str]:
        ...


@dataclasses.dataclass(frozen=True)
class OracleFormat:
    """How a task talks to an LM oracle (``lm_oracle.LMOracle``).

    prompt(hidden_item, question) -> encoder text;
    postprocess(hidden_item, decoded_reply) -> the answer the game shows;
    max_new_tokens: the reference's answer length for the task.
    """

    prompt: Callable[[str, str], str]
    postprocess: Callable[[str, str], str]
    max_new_tokens: int


class OracleError(RuntimeError):
    """The oracle kept failing after all retries."""


@dataclasses.dataclass(frozen=True)
class QuestionTask:
    """What distinguishes one question game from another.

    Attributes:
      name: task name, e.g. "guess_city"; stored with simulated episodes.
      items: the hidden items an episode draws from (uniformly).
      oracle: answers questions about the hidden item.
      is_success: `(hidden_item, question) -> bool`, the win condition.
      win_answer: the answer shown on the winning turn (the oracle is not asked).
      max_turns: turn cap.
    """

    name: str
    items: tuple[str, ...]
    oracle: Oracle
    is_success: Callable[[str, str], bool]
    win_answer: str = WIN_ANSWER
    max_turns: int = MAX_TURNS

    def with_oracle(self, oracle: Oracle) -> "QuestionTask":
        """The same task answered by another oracle (e.g. an LM instead of the KB)."""
        return dataclasses.replace(self, oracle=oracle)


def clean_question(action: str) -> str:
    """The question an action asks: its first line, stripped.

    The observation keeps one turn per line, so anything after a newline (a model that
    kept generating) cannot be part of the question.
    """
    lines = action.strip().splitlines()
    return lines[0].strip() if lines else ""


def format_turn(question: str, answer: str) -> str:
    return f"{question} {answer}\n"


def format_observation(turns: Sequence[tuple[str, str]]) -> str:
    return OBSERVATION_HEADER + "".join(format_turn(q, a) for q, a in turns)


def parse_observation(observation: str) -> list[tuple[str, str]]:
    """Inverse of `format_observation` for questions that end at their first "? ".

    Used by scripted players, which only ask such questions. A line without "? " is
    returned as (line, "").
    """
    if not observation.startswith(OBSERVATION_HEADER):
        raise ValueError(f"observation must start with {OBSERVATION_HEADER!r}: {observation[:40]!r}")
    turns = []
    for line in observation[len(OBSERVATION_HEADER):].splitlines():
        question, sep, answer = line.partition("? ")
        turns.append((question + "?", answer) if sep else (line, ""))
    return turns


def hidden_index(seed: int, num_items: int) -> int:
    """The item an episode with this seed hides (numpy Generator: stable across versions)."""
    return int(np.random.default_rng(seed).integers(num_items))


class BatchedQuestionGame:
    """`batch_size` games stepped together; the oracle is called at most once per step.

    Finished games ignore their actions (reward 0, done stays True) until the next
    `reset`. Oracle exceptions (and malformed replies) are retried up to `max_tries`
    times per step and counted in `oracle_failures`; only a step that fails every try
    raises `OracleError`.
    """

    def __init__(self, task: QuestionTask, batch_size: int, max_tries: int = 3):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.task = task
        self.batch_size = batch_size
        self.max_tries = max_tries
        self.oracle_failures = 0
        self.hidden: list[str] = []
        self.dones = np.ones(batch_size, dtype=bool)
        self.successes = np.zeros(batch_size, dtype=bool)
        self._turns: list[list[tuple[str, str]]] = [[] for _ in range(batch_size)]

    def reset(self, seeds: Sequence[int], hidden_items: Sequence[str] | None = None) -> list[str]:
        """Starts a new game per row; `seeds[i]` picks row i's hidden item.

        `hidden_items`, when given, overrides the draw (evaluation over every item).
        """
        self._check_len("seeds", seeds)
        if hidden_items is None:
            n = len(self.task.items)
            hidden_items = [self.task.items[hidden_index(int(s), n)] for s in seeds]
        else:
            self._check_len("hidden_items", hidden_items)
            unknown = [h for h in hidden_items if h not in self.task.items]
            if unknown:
                raise ValueError(f"hidden_items not in task {self.task.name!r}: {unknown[:5]}")
        self.hidden = list(hidden_items)
        self.dones = np.zeros(self.batch_size, dtype=bool)
        self.successes = np.zeros(self.batch_size, dtype=bool)
        self._turns = [[] for _ in range(self.batch_size)]
        return self.observations

    def step(self, actions: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """One turn for every unfinished row. Returns (observations, rewards, dones)."""
        if not self.hidden:
            raise RuntimeError("call reset() before step()")
        self._check_len("actions", actions)
        rewards = np.zeros(self.batch_size, dtype=np.float32)
        active = [i for i in range(self.batch_size) if not self.dones[i]]
        questions = {i: clean_question(actions[i]) for i in active}
        wins = {i for i in active if self.task.is_success(self.hidden[i], questions[i])}
        asked = [i for i in active if i not in wins]
        answers = dict(zip(asked, self._ask([self.hidden[i] for i in asked], [questions[i] for i in asked])))
        for i in active:
            won = i in wins
            self._turns[i].append((questions[i], self.task.win_answer if won else answers[i]))
            rewards[i] = 0.0 if won else -1.0
            self.successes[i] = won
            self.dones[i] = won or len(self._turns[i]) >= self.task.max_turns
        return self.observations, rewards, self.dones.copy()

    @property
    def observations(self) -> list[str]:
        return [format_observation(turns) for turns in self._turns]

    @property
    def max_turns(self) -> int:
        return self.task.max_turns

    reward_range = (-1.0, 0.0)

    def history(self, i: int) -> list[tuple[str, str]]:
        """Row i's (question, answer) turns since its last reset."""
        return list(self._turns[i])

    def _ask(self, hidden: list[str], questions: list[str]) -> list[str]:
        if not questions:
            return []
        last_error: Exception | None = None
        for _ in range(self.max_tries):
            try:
                answers = list(self.task.oracle.answer(hidden, questions))
                if len(answers) != len(questions) or not all(isinstance(a, str) for a in answers):
                    raise OracleError(f"expected {len(questions)} str answers, got {answers!r:.200}")
                # One turn per observation line: an answer must not break the format.
                return [" ".join(a.split()) for a in answers]
            # Any oracle failure (an LM oracle may hit a transient device or I/O error) is
            # worth a retry; a run must not die on one bad call.
            except Exception as error:  # noqa: BLE001
                self.oracle_failures += 1
                last_error = error
        raise OracleError(
            f"oracle {type(self.task.oracle).__name__} of task {self.task.name!r} failed "
            f"{self.max_tries} times in a row; last error: {last_error!r}"
        ) from last_error

    def _check_len(self, what: str, values: Sequence) -> None:
        if len(values) != self.batch_size:
            raise ValueError(f"{what} has {len(values)} entries, batch_size is {self.batch_size}")


class QuestionGameEnv:
    """One game: `reset(seed) -> observation`, `step(action) -> (observation, reward, done)`."""

    def __init__(self, task: QuestionTask, max_tries: int = 3):
        self._batch = BatchedQuestionGame(task, 1, max_tries=max_tries)

    def reset(self, seed: int, hidden_item: str | None = None) -> str:
        return self._batch.reset([seed], None if hidden_item is None else [hidden_item])[0]

    def step(self, action: str) -> tuple[str, float, bool]:
        observations, rewards, dones = self._batch.step([action])
        return observations[0], float(rewards[0]), bool(dones[0])

    @property
    def hidden(self) -> str:
        return self._batch.hidden[0]

    @property
    def success(self) -> bool:
        return bool(self._batch.successes[0])

    @property
    def oracle_failures(self) -> int:
        return self._batch.oracle_failures


@dataclasses.dataclass(frozen=True)
class QuestionGame:
    """The task object (``envs.base.Task``) of a question game: Guess My City, Twenty
    Questions and its Subset are each one of these, defined beside their players.

    Attributes:
      name: the task's name.
      make_game: ``(max_turns=...) -> QuestionTask`` with the knowledge-base oracle.
      players: name -> scripted questioner; ``default_mix``: their weights in the data.
      question_pool: ``() -> every question a scripted player can ask``.
      table: the players' ``scripted.ProbeTable`` (which items the answers so far allow).
      informative: the best scripted player's name.
      oracle_format: the LM-oracle format (None: the task has no LM oracle).
      lmrl_gym: the title of its LMRL-Gym dataset (None: LMRL-Gym has none).
    """

    name: str
    make_game: Callable[..., QuestionTask]
    players: Mapping[str, Callable[[str, np.random.Generator], str]]
    default_mix: Mapping[str, float]
    question_pool: Callable[[], Sequence[str]]
    table: Any
    informative: str | None = "informative"
    oracle_format: OracleFormat | None = None
    lmrl_gym: str | None = None

    def game(self, env_config: Mapping[str, Any], oracle: Oracle | None = None) -> QuestionTask:
        """The game ``config.env`` describes: its turn cap, and with ``num_items`` > 0
        only a fixed subset of the items hidden (seeded, so every run and dataset agrees
        on it), as the paper's Twenty Questions Subset does; players and the oracle still
        know every item. ``oracle`` replaces the knowledge-base oracle."""
        task = self.make_game(max_turns=int(env_config.get("max_turns", MAX_TURNS)))
        num_items = int(env_config.get("num_items", 0))
        if num_items:
            if not 0 < num_items <= len(task.items):
                raise ValueError(f"config.env.num_items = {num_items}: must lie in [1, {len(task.items)}] for task "
                                 f"{self.name!r} (hide only that many of its items), or be 0 for all items")
            chosen = np.sort(np.random.default_rng(0).permutation(len(task.items))[:num_items])
            task = dataclasses.replace(task, items=tuple(task.items[i] for i in chosen))
        return task if oracle is None else task.with_oracle(oracle)

    def make_env(self, env_config: Mapping[str, Any], batch_size: int, oracle: Oracle | None = None
                 ) -> BatchedQuestionGame:
        return BatchedQuestionGame(self.game(env_config, oracle), batch_size)

    def corpus(self, env_config: Mapping[str, Any]) -> Iterator[str]:
        """Every text a templated player can meet: each pooled question and the oracle's
        answer to it for every hidden item (one batched oracle call per item), plus the
        observation header and the win answer."""
        task = self.game(env_config)
        questions = list(self.question_pool())
        yield OBSERVATION_HEADER
        yield task.win_answer
        for item in task.items:
            answers = task.oracle.answer([item] * len(questions), questions)
            for question, answer in zip(questions, answers):
                yield format_turn(question, answer)

    def hidden_texts(self, env_config: Mapping[str, Any]) -> list[str]:
        """Every text ``env.hidden`` can hold: the items (``envs.base.Task``)."""
        return list(self.game(env_config).items)

    def one_turn_observation(self, env_config: Mapping[str, Any]) -> str:
        """The header, the shortest pooled question and the oracle's answer to it about
        the first hidden item."""
        task = self.game(env_config)
        question = min(self.question_pool(), key=len)
        return format_observation([(question, task.oracle.answer([task.items[0]], [question])[0])])
