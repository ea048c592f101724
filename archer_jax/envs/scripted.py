"""Scripted questioners for the question games (the episodes they play are simulated by
`envs.base.simulate_episodes`, as every task's players are).

A player is `act(observation, rng) -> question`: a pure function of the dialogue so far
and a numpy Generator. Every task supplies a `ProbeTable` (the template questions its
players ask, what each answer reveals about every item, and one guess per item) and
builds its players from the strategies here: `best_split` (informative), `repeating`
(redundant), `random_questions` (noisy) and `early_guessing`. Players know the item
table (world knowledge a person has) but learn about the hidden item only from the
oracle's answers in the observation.

Questions come from the task's small fixed template set, so a tiny LM trained from
scratch on the simulated dialogues can learn them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from archer_jax.envs.base import Player
from archer_jax.envs.question_game import WIN_ANSWER, parse_observation

Questioner = Player  # a question game's scripted player


@dataclasses.dataclass(frozen=True)
class Probe:
    """A template question a player can ask and read the answer of.

    `feature(item)` is what the answer reveals; `read(answer)` recovers it from the
    oracle's text (None when the answer says nothing usable, e.g. a refusal).
    """

    question: str
    feature: Callable[[Any], Hashable]
    read: Callable[[str], Hashable | None]


def read_yes_no(answer: str) -> bool | None:
    first = answer.strip().lower()
    return True if first.startswith("yes") else False if first.startswith("no") else None


class ProbeTable:
    """A task's probes over its item table, coded so narrowing and scoring are array ops.

    `records[i]` is what `Probe.feature` reads for item i; `guesses[i]` is the question
    that guesses item i.
    """

    def __init__(self, records: Sequence[Any], probes: Sequence[Probe], guesses: Sequence[str]):
        if len(records) != len(guesses):
            raise ValueError(f"{len(records)} records but {len(guesses)} guesses")
        self.probes = tuple(probes)
        self.guesses = tuple(guesses)
        self._probe_index = {p.question: i for i, p in enumerate(self.probes)}
        self._value_codes = [{v: k for k, v in enumerate(dict.fromkeys(p.feature(r) for r in records))}
                             for p in self.probes]
        self._codes = np.array([[codes[p.feature(r)] for r in records]
                                for p, codes in zip(self.probes, self._value_codes)])
        self._guess_index = {g: i for i, g in enumerate(self.guesses)}

    def index(self, question: str) -> int:
        return self._probe_index[question]

    def is_guess(self, question: str) -> bool:
        return question in self._guess_index

    def consistent(self, turns: Sequence[tuple[str, str]], use_guesses: bool = True) -> np.ndarray:
        """Boolean mask over the items: those every answer so far agrees with."""
        mask = np.ones(len(self.guesses), dtype=bool)
        for question, answer in turns:
            if question in self._probe_index:
                p = self._probe_index[question]
                value = self.probes[p].read(answer)
                if value is not None:
                    mask &= self._codes[p] == self._value_codes[p].get(value, -1)
            elif use_guesses and question in self._guess_index and answer != WIN_ANSWER:
                mask[self._guess_index[question]] = False
        return mask

    def entropies(self, probes: Sequence[int], mask: np.ndarray) -> np.ndarray:
        """Entropy of each probe's answer over the candidate items (uniform prior)."""
        codes = self._codes[np.asarray(probes)][:, mask]
        width = self._codes.max() + 1
        offsets = np.arange(len(probes))[:, None] * width
        counts = np.bincount((codes + offsets).ravel(), minlength=len(probes) * width).reshape(len(probes), width)
        p = counts / mask.sum()
        return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)

    def guess(self, mask: np.ndarray, rng: np.random.Generator) -> str:
        """A guess at one of the items in `mask`, uniformly."""
        return self.guesses[int(rng.choice(np.flatnonzero(mask)))]


def best_split(table: ProbeTable, narrowing: Sequence[str], opening: str | None = None) -> Questioner:
    """The informative player: `opening` first (when given), then the narrowing question
    whose answer best splits the items still possible; a guess once two or fewer are
    left or no question splits them."""
    narrowing_ids = [table.index(q) for q in narrowing]

    def act(observation: str, rng: np.random.Generator) -> str:
        turns = parse_observation(observation)
        asked = {q for q, _ in turns}
        if opening is not None and opening not in asked:
            return opening
        mask = table.consistent(turns)
        if not mask.any():
            # The answers contradict the table (an erring LM oracle): trust only the guesses.
            mask = table.consistent([t for t in turns if table.is_guess(t[0])])
        open_probes = [i for i in narrowing_ids if table.probes[i].question not in asked]
        scores = table.entropies(open_probes, mask) if open_probes else np.zeros(0)
        # With two candidates left a guess is never worse than a question.
        if mask.sum() <= 2 or not open_probes or scores.max() <= 0:
            return table.guess(mask, rng)
        best = np.flatnonzero(scores >= scores.max() - 1e-9)
        return table.probes[open_probes[int(rng.choice(best))]].question

    return act


def repeating(player: Questioner, repeat_prob: float = 0.5) -> Questioner:
    """The redundant player: `player`, but it often repeats a question it already asked."""

    def act(observation: str, rng: np.random.Generator) -> str:
        asked = [q for q, _ in parse_observation(observation)]
        if asked and rng.random() < repeat_prob:
            return asked[int(rng.integers(len(asked)))]
        return player(observation, rng)

    return act


def random_questions(table: ProbeTable, groups: Sequence[Sequence[str]], guess_prob: float = 0.2) -> Questioner:
    """The noisy player: random guesses, else a random question of a random group; it
    ignores the answers."""

    def act(observation: str, rng: np.random.Generator) -> str:
        if rng.random() < guess_prob:
            return table.guesses[int(rng.integers(len(table.guesses)))]
        group = groups[int(rng.integers(len(groups)))]
        return group[int(rng.integers(len(group)))]

    return act


def early_guessing(player: Questioner, table: ProbeTable, questions: int) -> Questioner:
    """Plays `player` for the first `questions` turns, then only guesses among the items
    the answers allow, forgetting which it already tried."""

    def act(observation: str, rng: np.random.Generator) -> str:
        turns = parse_observation(observation)
        if len(turns) < questions:
            return player(observation, rng)
        return table.guess(table.consistent(turns, use_guesses=False), rng)

    return act
