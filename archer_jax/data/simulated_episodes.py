"""Simulated episodes of a task's scripted players as a TFDS dataset (ArrayRecord), and readers.

The builder plays a task's scripted players in its environment and writes one record
per episode with `file_format="array_record"`. It is read back through
`tfds.data_source` / `builder.as_data_source()`, which needs no TensorFlow.

    config = episodes_config("guess_city", num_episodes=20_000, seed=0)
    episodes = load_episodes(data_dir, config)          # builds on first use
    transitions = [t for ep in episodes for t in episode_transitions(ep, gamma=0.95)]

The record format, the builder base and the transition helpers live in
`episode_records` (shared with the LMRL-Gym import); their names stay importable here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar

import tensorflow_datasets as tfds
from etils import epath

from archer_jax import tasks
from archer_jax.data.episode_records import (
    EpisodeBuilder,
    EpisodeDataError,
    Transition,
    Turns,
    encode_episode,
    episode_transitions,
    open_builder,
    read_episodes,
    transition_columns,
)
from archer_jax.envs import base

__all__ = ["EpisodeDataError", "SimulatedEpisodes", "SimulatedEpisodesConfig", "Transition", "dataset_dir",
           "episode_transitions", "episodes_config", "load_episodes", "load_transitions", "open_turns", "task_corpus"]

_CHUNK = 5_000  # episodes simulated at a time while writing (bounds memory)


@dataclasses.dataclass(eq=False)
class SimulatedEpisodesConfig(tfds.core.BuilderConfig):
    """Which episodes to simulate. Build with `episodes_config`, which names it."""

    task: str = "guess_city"
    num_episodes: int = 100_000
    seed: int = 0
    # (player, weight) pairs; empty means the task's default mix.
    mix: tuple[tuple[str, float], ...] = ()
    max_turns: int = 20  # turn cap of the simulated games
    num_items: int = 0  # hidden items drawn from the task's first-N subset (0 = all)
    # Every other config.env field the task's environment reads, as sorted (name, value) pairs.
    env: tuple[tuple[str, object], ...] = ()

    def env_config(self) -> dict:
        return {"max_turns": self.max_turns, "num_items": self.num_items, **dict(self.env)}

    def mix_dict(self) -> dict[str, float]:
        return dict(self.mix) if self.mix else dict(tasks.get(self.task).default_mix)


def episodes_config(task: str = "guess_city", num_episodes: int = 100_000, seed: int = 0,
                    mix: Mapping[str, float] | None = None, max_turns: int = 20,
                    num_items: int = 0, env: Mapping[str, object] | None = None) -> SimulatedEpisodesConfig:
    """A config whose name encodes every parameter, so different data never share a folder."""
    tasks.get(task)  # unknown task names fail here, naming the known ones
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    pairs = tuple(sorted((str(k), float(v)) for k, v in (mix or {}).items()))
    name = f"{task}_n{num_episodes}_s{seed}"
    if pairs:
        name += "_mix" + hashlib.sha1(json.dumps(pairs).encode()).hexdigest()[:8]
    if max_turns != 20:
        name += f"_t{max_turns}"
    if num_items:
        name += f"_k{num_items}"
    env_pairs = tuple(sorted((str(k), v) for k, v in (env or {}).items()))
    if env_pairs:
        name += "_env" + hashlib.sha1(json.dumps(env_pairs).encode()).hexdigest()[:8]
    return SimulatedEpisodesConfig(name=name, version="2.0.0", task=task, num_episodes=num_episodes,
                                   seed=seed, mix=pairs, max_turns=max_turns, num_items=num_items, env=env_pairs,
                                   description=f"{num_episodes} scripted {task} episodes, seed {seed}, "
                                               f"mix {dict(pairs) or 'default'}, {max_turns} turns, "
                                               f"{num_items or 'all'} items")


class SimulatedEpisodes(EpisodeBuilder):
    """Episodes of a task's scripted players in its environment."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release.",
                                               "2.0.0": "Generic episodes: observations and actions, not (question, "
                                                        "answer) turns; 'questioner' becomes 'player'."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [episodes_config("guess_city", 100_000, 0), episodes_config("guess_city", 10_000, 0)]

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        config = self.builder_config
        task = tasks.get(config.task)
        env_config = config.env_config()
        for first in range(0, config.num_episodes, _CHUNK):
            n = min(_CHUNK, config.num_episodes - first)
            episodes = base.simulate_episodes(task, env_config, config.mix_dict(), n, config.seed,
                                              first_episode=first)
            for i, ep in enumerate(episodes, start=first):
                yield i, encode_episode(i, ep)


def dataset_dir(data_dir: epath.PathLike, config: SimulatedEpisodesConfig) -> epath.Path:
    """The folder TFDS writes `config`'s files to (delete it to rebuild)."""
    return epath.Path(data_dir) / SimulatedEpisodes.name / config.name / str(config.version)


def load_episodes(data_dir: epath.PathLike, config: SimulatedEpisodesConfig | None = None,
                  split: str = "train", build: bool = True) -> list[base.Episode]:
    """The episodes of `config` in episode order, built first if absent and `build`.

    Raises EpisodeDataError naming the file when stored data cannot be read.
    """
    config = config or episodes_config()
    return read_episodes(_prepared(data_dir, config, build), split, config.num_episodes)


def _prepared(data_dir: epath.PathLike, config: SimulatedEpisodesConfig, build: bool) -> SimulatedEpisodes:
    builder = open_builder(SimulatedEpisodes, data_dir, config)
    if build:
        builder.download_and_prepare()
    elif not builder.is_prepared():
        raise EpisodeDataError(f"no prepared dataset in {dataset_dir(data_dir, config)}; "
                               "call load_episodes(..., build=True)")
    return builder


def load_transitions(task: str, data_dir: epath.PathLike, num_episodes: int, seed: int, gamma: float,
                     mix: Mapping[str, float] | None = None, max_turns: int = 20,
                     num_items: int = 0, env: Mapping[str, object] | None = None) -> dict[str, list]:
    """Every turn of the simulated episodes as columns named like `Transition`'s fields
    (observation, action, reward, next_observation, done, mc_return), built if absent."""
    episodes = load_episodes(data_dir, episodes_config(task, num_episodes, seed, mix, max_turns, num_items, env))
    return transition_columns(episodes, gamma)


def open_turns(task: str, data_dir: epath.PathLike, num_episodes: int, seed: int, gamma: float,
               mix: Mapping[str, float] | None = None, max_turns: int = 20, num_items: int = 0,
               env: Mapping[str, object] | None = None) -> Turns:
    """``load_transitions``'s rows, read by row range (``episode_records.Turns``), built if absent."""
    config = episodes_config(task, num_episodes, seed, mix, max_turns, num_items, env)
    return Turns(_prepared(data_dir, config, build=True), "train", config.num_episodes, gamma)


def task_corpus(episodes: Iterable[base.Episode]) -> Iterator[str]:
    """Texts to train a demo tokenizer on: each episode's last observation (a question
    game's whole dialogue), then its actions."""
    for episode in episodes:
        yield episode["observations"][-1]
        yield from episode["actions"]

