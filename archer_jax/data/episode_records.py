"""The episode record every episode dataset stores (simulated, LMRL-Gym import), and
everything around it that the datasets share: the TFDS builder base that writes
ArrayRecord without TensorFlow, the example encoding, reading back through data
sources, and turning episodes into the transitions BC and the replay buffer consume.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from archer_jax.envs.base import Episode


class EpisodeDataError(RuntimeError):
    """A dataset file is missing, unreadable or malformed."""


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    """DatasetInfo of a dataset that exists only where it is built.

    TFDS looks every unprepared dataset up in its public GCS bucket, through a temporary
    folder it never removes (one empty ``/tmp/tmp*tfds`` per dataset built) and over the
    network; these datasets are never there.
    """

    def initialize_from_bucket(self) -> None:
        pass


class EpisodeBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A TFDS builder of `envs.base.Episode` records; subclasses yield `encode_episode` examples."""

    def __init__(self, *, file_format: str | None = None, **kwargs):
        # ArrayRecord by default: TFDS's default, TFRecord, needs TensorFlow to write, and
        # `tfds.data_source(...)` should work without it.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10's default resolves package builders through the `importlib_resources`
        # backport, which it only requires on Python < 3.9; this is its own fallback.
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: `dataset_info_from_configs` wants a dataset package folder.
        return _LocalDatasetInfo(
            builder=self,
            description=self.builder_config.description,
            features=tfds.features.FeaturesDict({
                "episode_id": np.int64,
                "task": tfds.features.Text(),
                "hidden": tfds.features.Text(),
                "player": tfds.features.Text(),
                # Observation t is the first observation_shared[t] characters of
                # observation t - 1 followed by observation_tails[t]: a dialogue that only
                # grows stores each turn once.
                "observation_shared": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                "observation_tails": tfds.features.Sequence(tfds.features.Text()),
                "actions": tfds.features.Sequence(tfds.features.Text()),
                "rewards": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "success": np.bool_,
            }),
            metadata=self._metadata(),
        )

    def _metadata(self) -> tfds.core.Metadata | None:
        """What a dataset stores beside its episodes (saved with dataset_info.json)."""
        return None


def encode_episode(episode_id: int, episode: Episode) -> dict:
    """The example `EpisodeBuilder` writes for `episode`."""
    observations = episode["observations"]
    shared = [0] + [len(os.path.commonprefix([prev, obs])) for prev, obs in zip(observations, observations[1:])]
    return {
        "episode_id": episode_id,
        "task": episode["task"],
        "hidden": episode["hidden"],
        "player": episode["player"],
        "observation_shared": np.asarray(shared, dtype=np.int64),
        "observation_tails": [obs[k:] for obs, k in zip(observations, shared)],
        "actions": list(episode["actions"]),
        "rewards": np.asarray(episode["rewards"], dtype=np.float32),
        "success": episode["success"],
    }


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _episode(record: Mapping) -> Episode:
    actions = [_text(a) for a in record["actions"]]
    rewards = [float(r) for r in np.asarray(record["rewards"])]
    shared = [int(k) for k in np.asarray(record["observation_shared"])]
    tails = [_text(t) for t in record["observation_tails"]]
    if not (len(actions) == len(rewards) == len(shared) - 1 == len(tails) - 1):
        raise ValueError(f"{len(actions)} actions, {len(rewards)} rewards, {len(tails)} observations")
    observations: list[str] = []
    for k, tail in zip(shared, tails):
        observations.append((observations[-1][:k] if observations else "") + tail)
    return Episode(task=_text(record["task"]), hidden=_text(record["hidden"]), observations=observations,
                   actions=actions, rewards=rewards, success=bool(record["success"]), player=_text(record["player"]))


def rebuild_hint(folder: epath.Path) -> str:
    return f"The data is corrupt or incomplete: delete the folder {folder} and run again to rebuild it."


def open_builder(builder_cls: type[EpisodeBuilder], data_dir: epath.PathLike,
                 config: tfds.core.BuilderConfig) -> EpisodeBuilder:
    """`builder_cls` for `config` in `data_dir`; unreadable stored metadata is an EpisodeDataError."""
    folder = epath.Path(data_dir) / builder_cls.name / config.name / str(config.version or builder_cls.VERSION)
    try:
        return builder_cls(config=config, data_dir=data_dir)
    except Exception as error:
        if not folder.exists():
            raise
        # An existing folder whose metadata TFDS cannot parse.
        raise EpisodeDataError(f"cannot read {folder / 'dataset_info.json'} ({error!r}). "
                               + rebuild_hint(folder)) from error


def read_episodes(builder: EpisodeBuilder, split: str, num_episodes: int) -> list[Episode]:
    """The prepared `split` in episode order, read through a TFDS data source (no TensorFlow).

    Raises EpisodeDataError naming the files unless it holds episodes 0..num_episodes-1.
    """
    episodes = sorted(_read_episodes(builder, split, None), key=lambda pair: pair[0])
    if [i for i, _ in episodes] != list(range(num_episodes)):
        raise EpisodeDataError(f"episodes missing or duplicated in {_files(builder, split)}. "
                               + rebuild_hint(epath.Path(builder.data_dir)))
    return [ep for _, ep in episodes]


def _files(builder: EpisodeBuilder, split: str) -> str:
    return ", ".join(str(path) for path in builder.info.splits[split].filepaths)


def _read_episodes(builder: EpisodeBuilder, split: str,
                   positions: Iterable[int] | None) -> list[tuple[int, Episode]]:
    """(episode id, episode) of the records at ``positions`` of the prepared ``split``
    (None: all, in file order); an EpisodeDataError names its files."""
    try:
        source = builder.as_data_source(split=split)
        wanted = range(len(source)) if positions is None else [int(p) for p in positions]
        return [(int(r["episode_id"]), _episode(r)) for r in source.__getitems__(wanted)]
    except Exception as error:
        raise EpisodeDataError(f"cannot read {builder.name} episodes from {_files(builder, split)} ({error!r}). "
                               + rebuild_hint(epath.Path(builder.data_dir))) from error


class Transition(NamedTuple):
    """One turn, as BC and the replay buffer consume it."""

    observation: str
    action: str
    reward: float
    next_observation: str
    done: bool
    mc_return: float
    episode_return: float  # undiscounted sum of the episode's rewards
    turn: int  # index of the turn in its episode (0 = first)
    hidden: str  # what the episode hides (its item, city, ...): a privileged critic's input


def episode_transitions(episode: Episode, gamma: float) -> list[Transition]:
    """The episode's turns as transitions; mc_return is the discounted return from that turn.

    The last turn is done (the episode's end or the turn cap).
    """
    observations, actions, rewards = episode["observations"], episode["actions"], episode["rewards"]
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return [
        Transition(observation=observations[t], action=actions[t], reward=float(rewards[t]),
                   next_observation=observations[t + 1], done=t == len(actions) - 1,
                   mc_return=float(returns[t]), episode_return=float(np.sum(rewards)), turn=t,
                   hidden=episode["hidden"])
        for t in range(len(actions))
    ]


def transition_columns(episodes: Iterable[Episode], gamma: float) -> dict[str, list]:
    """Every turn of `episodes` as columns named like `Transition`'s fields
    (observation, action, reward, next_observation, done, mc_return, episode_return, turn, hidden)."""
    rows = [t for episode in episodes for t in episode_transitions(episode, gamma)]
    return {field: [getattr(t, field) for t in rows] for field in Transition._fields}


INDEX_FILE = "episode_index.npy"  # per split, beside its record files: "<split>-episode_index.npy"


def episode_index(builder: EpisodeBuilder, split: str, num_episodes: int) -> np.ndarray:
    """[num_episodes, 2] int64: per episode, in episode order, the position of its record
    and its number of turns. Read from ``<split>-episode_index.npy`` in the dataset's
    folder; the first call reads every record once, checks it holds episodes
    0..num_episodes-1, and writes that file (a new file, renamed into place)."""
    folder = epath.Path(builder.data_dir)
    path = folder / f"{split}-{INDEX_FILE}"
    if path.exists():
        try:
            index = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
        except Exception as error:
            raise EpisodeDataError(f"cannot read {path} ({error!r}). " + rebuild_hint(folder)) from error
        if index.shape != (num_episodes, 2) or index.dtype != np.int64:
            raise EpisodeDataError(f"{path} indexes {index.shape} {index.dtype}, not {num_episodes} episodes. "
                                   + rebuild_hint(folder))
        return index
    episodes = _read_episodes(builder, split, None)
    ids = np.asarray([i for i, _ in episodes], np.int64)
    if sorted(ids.tolist()) != list(range(num_episodes)):
        raise EpisodeDataError(f"episodes missing or duplicated in {_files(builder, split)}. " + rebuild_hint(folder))
    index = np.zeros((num_episodes, 2), np.int64)
    index[ids, 0] = np.arange(len(episodes))
    index[ids, 1] = [len(episode["actions"]) for _, episode in episodes]
    buffer = io.BytesIO()
    np.save(buffer, index, allow_pickle=False)
    partial = folder / f".{path.name}.{os.getpid()}"
    partial.write_bytes(buffer.getvalue())
    partial.rename(path)
    return index


class Turns:
    """Every turn of a prepared split's episodes, in episode order, as the columns
    ``transition_columns`` makes (``len``: the turn count), read by row range: ``columns(
    start, stop)`` reads and decodes only the episodes those rows belong to, so a host
    reads the rows its own devices hold and no others (``episode_index`` maps rows to
    records)."""

    def __init__(self, builder: EpisodeBuilder, split: str, num_episodes: int, gamma: float) -> None:
        self._builder, self._split, self._gamma = builder, split, gamma
        index = episode_index(builder, split, num_episodes)
        self._records = index[:, 0]
        self._starts = np.concatenate([[0], np.cumsum(index[:, 1])])  # the first row of each episode

    def __len__(self) -> int:
        return int(self._starts[-1])

    def columns(self, start: int, stop: int) -> dict[str, list]:
        """Rows [start, stop) (clipped to the turns there are)."""
        start, stop = max(start, 0), min(stop, len(self))
        if start >= stop:
            return {field: [] for field in Transition._fields}
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop, side="left"))  # one past the last episode read
        episodes = _read_episodes(self._builder, self._split, self._records[first:last])
        if [i for i, _ in episodes] != list(range(first, last)):
            raise EpisodeDataError(f"{_files(self._builder, self._split)} no longer match "
                                   f"{self._split}-{INDEX_FILE}. " + rebuild_hint(epath.Path(self._builder.data_dir)))
        columns = transition_columns((episode for _, episode in episodes), self._gamma)
        offset = start - int(self._starts[first])
        return {field: values[offset:offset + stop - start] for field, values in columns.items()}
