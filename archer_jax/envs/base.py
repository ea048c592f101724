"""The environment protocol every task speaks, and the task description object.

A task (Twenty Questions, Guess My City, Detective, a user's own) is one ``Task``: it
builds batched environments (``BatchedEnv``) from the run's ``config.env`` and owns
everything else about the task that the trainer, the data builders and the tools need
(its scripted players, the texts its tokenizer is built from, its LM-oracle format and
LMRL-Gym dataset where it has them). Rollout, evaluation, data simulation and the
trainer see only these two protocols, so a new task is its environment module, its
players and a config file. ``archer_jax.tasks.get`` finds a task by name, or by the
dotted path of a user's own ``Task`` object (``config.task = "my_pkg.my_env:TASK"``).

Over these protocols, for every task alike: ``simulate_episodes`` (the scripted players'
offline data, as ``Episode`` records) and ``play_seeds`` (one player on given games).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

# act(observation, rng) -> utterance: a scripted player, a pure function of the
# observation text and a numpy Generator (its only source of randomness).
Player = Callable[[str, np.random.Generator], str]


@runtime_checkable
class BatchedEnv(Protocol):
    """``batch_size`` episodes stepped together.

    ``reset(seeds)`` starts one episode per seed (the same seed always starts the same
    episode) and returns the observations; ``step(actions)`` takes one utterance per
    row and returns (observations, rewards float [B], dones bool [B]). A finished row
    ignores its actions (reward 0, done stays True) until the next ``reset``; every row
    is done after ``max_turns`` steps at the latest. After (or during) an episode,
    ``successes`` [B] says which rows won and ``hidden`` names what each episode was
    about (the hidden item, the game), for transcripts and paired evaluations.
    ``dones`` [B] is the current done mask. Optional: ``oracle_failures``, a count of
    faults that were retried (logged per iteration when present).
    """

    batch_size: int
    max_turns: int
    reward_range: tuple[float, float]  # every step's reward lies in [low, high]

    def reset(self, seeds: Sequence[int]) -> list[str]: ...

    def step(self, actions: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]: ...

    @property
    def successes(self) -> np.ndarray: ...

    @property
    def dones(self) -> np.ndarray: ...

    @property
    def hidden(self) -> list[str]: ...


@runtime_checkable
class Task(Protocol):
    """Everything about one task.

    Attributes:
      name: the task's name (``config.task`` for a built-in task; stored with its data).
      players: name -> scripted ``Player``, who play the simulated offline episodes.
      default_mix: player name -> weight of the simulated data when the config says none.
      informative: the name of the best scripted player (the results' reference line),
        or None.
      oracle_format: how an LM oracle is prompted and read (``lm_oracle``), or None when
        the task has no oracle.
      lmrl_gym: the title of the task's LMRL-Gym dataset (``data.lmrl_gym``), or None.

    Optional: ``hidden_texts(env_config) -> list[str]``, every text ``env.hidden`` can
    hold, which a from-scratch tokenizer adds to ``corpus`` when the critic reads it
    (``config.critic.privileged_len``). ``word_marks``: markup strings of the task's
    texts that a from-scratch word tokenizer keeps as one token each
    (``tokenization.build_word_tokenizer``'s ``marks``).
    """

    name: str
    players: Mapping[str, Player]
    default_mix: Mapping[str, float]
    informative: str | None
    oracle_format: Any
    lmrl_gym: str | None

    def make_env(self, env_config: Mapping[str, Any], batch_size: int, oracle: Any = None) -> BatchedEnv:
        """``batch_size`` environments as ``config.env`` says (``oracle``: an LM oracle
        that replaces the task's own, for tasks with ``oracle_format``)."""
        ...

    def corpus(self, env_config: Mapping[str, Any]) -> Iterable[str]:
        """Every text the environment and the scripted players produce, as far as the
        task can enumerate them: a word tokenizer built from it covers the demo's
        vocabulary without any download."""
        ...

    def one_turn_observation(self, env_config: Mapping[str, Any]) -> str:
        """A short observation that holds one whole turn (the observation window must
        fit at least this much)."""
        ...


class Episode(TypedDict):
    """One played episode, as the offline datasets store it.

    ``observations`` has one more entry than ``actions``: the observation each action
    answered, then the one after the last action. ``player``: who played it (a scripted
    player's name, or the dataset's label).
    """

    task: str
    hidden: str
    observations: list[str]
    actions: list[str]
    rewards: list[float]
    success: bool
    player: str


def simulate_episodes(task: Task, env_config: Mapping[str, Any], mix: Mapping[str, float], n: int, seed: int,
                      batch_size: int = 256, first_episode: int = 0) -> list[Episode]:
    """Episodes first_episode .. first_episode + n - 1 of ``task``'s scripted players,
    each by a player drawn from ``mix`` (weights, normalized), in environments built
    from ``env_config``.

    Episode i depends only on (seed, i): its own Generator draws the player, the
    environment seed and every random choice of the player, so the result does not
    depend on ``batch_size`` or on how a long run is split into calls.
    """
    names = sorted(mix)
    unknown = [name for name in names if name not in task.players]
    if unknown:
        raise ValueError(f"unknown players in mix: {unknown}; task {task.name!r} has {sorted(task.players)}")
    weights = np.array([mix[name] for name in names], dtype=np.float64)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"mix weights must be >= 0 with a positive sum, got {dict(mix)}")
    weights /= weights.sum()

    episodes: list[Episode] = []
    for start in range(first_episode, first_episode + n, batch_size):
        rows = range(start, min(start + batch_size, first_episode + n))
        rngs = [np.random.default_rng([seed, i]) for i in rows]
        players = [names[int(rng.choice(len(names), p=weights))] for rng in rngs]
        env_seeds = [int(rng.integers(2**31)) for rng in rngs]
        env = task.make_env(env_config, len(rows))
        observations = env.reset(env_seeds)
        seen = [[o] for o in observations]
        actions: list[list[str]] = [[] for _ in rows]
        rewards: list[list[float]] = [[] for _ in rows]
        while not np.asarray(env.dones).all():
            active = ~np.asarray(env.dones)
            step = [task.players[p](obs, rng) if live else "" for p, obs, rng, live
                    in zip(players, observations, rngs, active)]
            observations, step_rewards, _ = env.step(step)
            for j in np.flatnonzero(active):
                seen[j].append(observations[j])
                actions[j].append(step[j])
                rewards[j].append(float(step_rewards[j]))
        hidden = list(env.hidden)
        episodes.extend(Episode(task=task.name, hidden=hidden[j], observations=seen[j], actions=actions[j],
                                rewards=rewards[j], success=bool(env.successes[j]), player=players[j])
                        for j in range(len(rows)))
        close = getattr(env, "close", None)
        if close is not None:
            close()
    return episodes


def play_seeds(task: Task, env_config: Mapping[str, Any], player: Player, seeds: Sequence[int],
               rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(returns [n], successes [n], hidden) of ``player`` playing one episode per
    environment seed: the episodes a policy evaluated on the same seeds met. Episode i's
    random choices come from its own Generator([rng_seed, seeds[i]])."""
    env = task.make_env(env_config, len(seeds))
    observations = env.reset([int(s) for s in seeds])
    rngs = [np.random.default_rng([rng_seed, int(s)]) for s in seeds]
    returns = np.zeros(len(seeds), np.float64)
    while not np.asarray(env.dones).all():
        active = ~np.asarray(env.dones)
        actions = [player(obs, rng) if live else "" for obs, rng, live in zip(observations, rngs, active)]
        observations, rewards, _ = env.step(actions)
        returns += np.where(active, rewards, 0.0)
    return returns, np.asarray(env.successes, bool).copy(), list(env.hidden)


def summarize(episodes: Sequence[Episode]) -> dict[str, dict[str, float]]:
    """Win rate, mean return and mean length per player and for "all"."""
    groups: dict[str, list[Episode]] = {"all": list(episodes)}
    for ep in episodes:
        groups.setdefault(ep["player"], []).append(ep)
    return {
        name: {
            "episodes": len(eps),
            "win_rate": float(np.mean([ep["success"] for ep in eps])),
            "mean_return": float(np.mean([sum(ep["rewards"]) for ep in eps])),
            "mean_turns": float(np.mean([len(ep["actions"]) for ep in eps])),
        }
        for name, eps in groups.items() if eps
    }
