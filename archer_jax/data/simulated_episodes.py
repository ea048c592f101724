"""Simulated question-game episodes as a TFDS dataset (ArrayRecord), and readers.

The builder plays scripted questioners against a task's KB oracle and writes one record
per episode with `file_format="array_record"`. It is read back through
`tfds.data_source` / `builder.as_data_source()`, which needs no TensorFlow.

    config = episodes_config("guess_city", num_episodes=20_000, seed=0)
    episodes = load_episodes(data_dir, config)          # builds on first use
    transitions = [t for ep in episodes for t in episode_transitions(ep, gamma=0.95)]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Iterable, Iterator, Mapping, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from archer_jax import tasks
from archer_jax.envs import scripted
from archer_jax.envs.question_game import format_observation

_CHUNK = 5_000  # episodes simulated at a time while writing (bounds memory)


class EpisodeDataError(RuntimeError):
    """A dataset file is missing or unreadable."""


@dataclasses.dataclass(eq=False)
class SimulatedEpisodesConfig(tfds.core.BuilderConfig):
    """Which episodes to simulate. Build with `episodes_config`, which names it."""

    task: str = "guess_city"
    num_episodes: int = 100_000
    seed: int = 0
    # (questioner, weight) pairs; empty means the task's default mix.
    mix: tuple[tuple[str, float], ...] = ()
    max_turns: int = 20  # turn cap of the simulated games
    num_items: int = 0  # hidden items drawn from the task's first-N subset (0 = all)

    def mix_dict(self) -> dict[str, float]:
        return dict(self.mix) if self.mix else dict(tasks.spec(self.task).default_mix)


def episodes_config(task: str = "guess_city", num_episodes: int = 100_000, seed: int = 0,
                    mix: Mapping[str, float] | None = None, max_turns: int = 20,
                    num_items: int = 0) -> SimulatedEpisodesConfig:
    """A config whose name encodes every parameter, so different data never share a folder."""
    tasks.spec(task)  # unknown task names fail here, naming the known ones
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
    return SimulatedEpisodesConfig(name=name, version="1.0.0", task=task, num_episodes=num_episodes,
                                   seed=seed, mix=pairs, max_turns=max_turns, num_items=num_items,
                                   description=f"{num_episodes} scripted {task} episodes, seed {seed}, "
                                               f"mix {dict(pairs) or 'default'}, {max_turns} turns, "
                                               f"{num_items or 'all'} items")


class SimulatedEpisodes(tfds.core.GeneratorBasedBuilder):
    """Episodes of scripted questioners playing a question game against its KB oracle."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [episodes_config("guess_city", 100_000, 0), episodes_config("guess_city", 10_000, 0)]

    def __init__(self, *, file_format: str | None = None, **kwargs):
        # ArrayRecord by default: TFDS's default, TFRecord, needs TensorFlow to write, and
        # `tfds.data_source("simulated_episodes/...")` should work without it.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10's default resolves package builders through the `importlib_resources`
        # backport, which it only requires on Python < 3.9; this is its own fallback.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: `dataset_info_from_configs` wants a dataset package folder.
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.builder_config.description,
            features=tfds.features.FeaturesDict({
                "episode_id": np.int64,
                "task": tfds.features.Text(),
                "hidden": tfds.features.Text(),
                "questioner": tfds.features.Text(),
                "questions": tfds.features.Sequence(tfds.features.Text()),
                "answers": tfds.features.Sequence(tfds.features.Text()),
                "rewards": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "success": np.bool_,
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        config = self.builder_config
        task = tasks.make_task(config.task, max_turns=config.max_turns, num_items=config.num_items)
        questioners = tasks.spec(config.task).questioners
        for first in range(0, config.num_episodes, _CHUNK):
            n = min(_CHUNK, config.num_episodes - first)
            episodes = scripted.simulate_episodes(task, config.mix_dict(), n, config.seed,
                                                  questioners=questioners, first_episode=first)
            for i, ep in enumerate(episodes, start=first):
                yield i, {
                    "episode_id": i,
                    "task": ep["task"],
                    "hidden": ep["hidden"],
                    "questioner": ep["questioner"],
                    "questions": [q for q, _ in ep["turns"]],
                    "answers": [a for _, a in ep["turns"]],
                    "rewards": np.asarray(ep["rewards"], dtype=np.float32),
                    "success": ep["success"],
                }


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _episode(record: Mapping) -> scripted.Episode:
    questions = [_text(q) for q in record["questions"]]
    answers = [_text(a) for a in record["answers"]]
    rewards = [float(r) for r in np.asarray(record["rewards"])]
    if not (len(questions) == len(answers) == len(rewards)):
        raise ValueError(f"{len(questions)} questions, {len(answers)} answers, {len(rewards)} rewards")
    return scripted.Episode(task=_text(record["task"]), hidden=_text(record["hidden"]),
                            turns=list(zip(questions, answers)), rewards=rewards,
                            success=bool(record["success"]), questioner=_text(record["questioner"]))


def dataset_dir(data_dir: epath.PathLike, config: SimulatedEpisodesConfig) -> epath.Path:
    """The folder TFDS writes `config`'s files to (delete it to rebuild)."""
    return epath.Path(data_dir) / SimulatedEpisodes.name / config.name / str(config.version)


def _rebuild_hint(folder: epath.Path) -> str:
    return f"The data is corrupt or incomplete: delete the folder {folder} and run again to rebuild it."


def load_episodes(data_dir: epath.PathLike, config: SimulatedEpisodesConfig | None = None,
                  split: str = "train", build: bool = True) -> list[scripted.Episode]:
    """The episodes of `config` in episode order, built first if absent and `build`.

    Raises EpisodeDataError naming the file when stored data cannot be read.
    """
    config = config or episodes_config()
    folder = dataset_dir(data_dir, config)
    try:
        builder = SimulatedEpisodes(config=config, data_dir=data_dir)
    except Exception as error:  # noqa: BLE001
        if not folder.exists():
            raise
        # An existing folder whose metadata TFDS cannot parse.
        raise EpisodeDataError(f"cannot read {folder / 'dataset_info.json'} ({error!r}). "
                               + _rebuild_hint(folder)) from error
    if build:
        builder.download_and_prepare()
    elif not builder.is_prepared():
        raise EpisodeDataError(f"no prepared dataset in {folder}; call load_episodes(..., build=True)")
    files = ", ".join(str(path) for path in builder.info.splits[split].filepaths)
    try:
        source = tfds.data_source(builder.name, split=split, data_dir=data_dir, download=False,
                                  builder_kwargs={"config": config})
        records = source.__getitems__(range(len(source)))
        episodes = sorted(((int(r["episode_id"]), _episode(r)) for r in records), key=lambda pair: pair[0])
    except Exception as error:  # noqa: BLE001 - any failure here means unreadable files
        raise EpisodeDataError(f"cannot read simulated episodes from {files} ({error!r}). "
                               + _rebuild_hint(folder)) from error
    if [i for i, _ in episodes] != list(range(config.num_episodes)):
        raise EpisodeDataError(f"episodes missing or duplicated in {files}. " + _rebuild_hint(folder))
    return [ep for _, ep in episodes]


class Transition(NamedTuple):
    """One turn, as BC and the replay buffer consume it."""

    observation: str
    action: str
    reward: float
    next_observation: str
    done: bool
    mc_return: float


def episode_transitions(episode: scripted.Episode, gamma: float) -> list[Transition]:
    """The episode's turns as transitions; mc_return is the discounted return from that turn.

    The last turn is done (a win or the turn cap).
    """
    turns, rewards = episode["turns"], episode["rewards"]
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return [
        Transition(observation=format_observation(turns[:t]), action=turns[t][0], reward=float(rewards[t]),
                   next_observation=format_observation(turns[:t + 1]), done=t == len(turns) - 1,
                   mc_return=float(returns[t]))
        for t in range(len(turns))
    ]


def load_transitions(task: str, data_dir: epath.PathLike, num_episodes: int, seed: int, gamma: float,
                     mix: Mapping[str, float] | None = None, max_turns: int = 20,
                     num_items: int = 0) -> dict[str, list]:
    """Every turn of the simulated episodes as columns named like `Transition`'s fields
    (observation, action, reward, next_observation, done, mc_return), built if absent."""
    episodes = load_episodes(data_dir, episodes_config(task, num_episodes, seed, mix, max_turns, num_items))
    rows = [t for episode in episodes for t in episode_transitions(episode, gamma)]
    return {field: [getattr(t, field) for t in rows] for field in Transition._fields}


def task_corpus(episodes: Iterable[scripted.Episode]) -> Iterator[str]:
    """Texts to train a demo tokenizer on: each episode's full dialogue, then its questions."""
    for episode in episodes:
        yield format_observation(episode["turns"])
        for question, _ in episode["turns"]:
            yield question

