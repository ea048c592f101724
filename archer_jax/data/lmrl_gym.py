"""LMRL-Gym's offline Twenty Questions / Guess My City data as a TFDS dataset of our episodes.

LMRL-Gym publishes each task's episodes as a JSON list of conversations,

    {"lines": ["Is it an animal? Yes.", ..., "Is it a lion? Yes."], "correct": true, "word": ["Lion"]}

one line per turn: the question, "? ", the oracle's answer (split on the LAST "? ", as
LMRL-Gym's own `split_question_answer` does); "correct" says whether the last question
guessed the hidden item; "word" lists the item's name variants ("Television", "TV").
The builder (`lmrl_gym_episodes`, one config per task) reads them from TFDS's manual
folder, turns every conversation into the same episode record as the simulated dataset
(reward -1 per turn and 0 on the winning turn, hidden = the first name variant,
player "lmrl_gym"), writes ArrayRecord and reads back through data sources, so
everything that reads simulated episodes reads these too:

    columns = load_transitions("twenty_questions", data_dir, gamma=0.95, manual_dir=manual_dir)

The JSON alone defines the episodes: the task name is only a label, so importing needs
no task registered in `archer_jax.tasks`.
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import tensorflow_datasets as tfds
from etils import epath

from archer_jax.data.episode_records import (
    EpisodeBuilder,
    EpisodeDataError,
    Turns,
    encode_episode,
    open_builder,
    read_episodes,
    transition_columns,
)
from archer_jax import tasks as task_registry
from archer_jax.envs.base import Episode
from archer_jax.envs.question_game import format_observation

# config.task -> the title of its LMRL-Gym dataset (the task object's ``lmrl_gym``).
TASKS = {name: task.lmrl_gym for name, task in task_registry.builtin().items() if task.lmrl_gym}
PLAYER = "lmrl_gym"  # the `player` label of imported episodes
_SPLIT_FILES = {"train": "train.json", "eval": "eval.json"}  # eval.json is optional
_RECORD_FORMAT = '{"lines": ["<question>? <answer>", ...], "correct": true or false, "word": ["<name>", ...]}'

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download LMRL-Gym's offline data (https://rail.eecs.berkeley.edu/datasets/rl-llm-bench-dataset/,
linked from https://github.com/abdulhaim/LMRL-Gym) and place each task's files as

    <manual_dir>/twenty_questions/train.json   (Twenty Questions; its folder there: twenty-questions/)
    <manual_dir>/guess_city/train.json         (Guess My City; its folder there: guess-my-city/)

An eval.json beside a train.json becomes the "eval" split. Older Twenty Questions releases
name their files convos_1k.json / convos_10k.json / convos_100k.json: copy the one to
train on to train.json. Every file is a JSON list of
{_RECORD_FORMAT}.
<manual_dir> is config.data.manual_dir; '' means <data_dir>/downloads/manual."""


def default_manual_dir(data_dir: epath.PathLike) -> epath.Path:
    """TFDS's own default manual folder for datasets kept in `data_dir`."""
    return epath.Path(data_dir) / "downloads" / "manual"


def manual_files(manual_dir: epath.PathLike, task: str) -> dict[str, epath.Path]:
    """split -> JSON file of `task` in `manual_dir`; EpisodeDataError saying what to put where if absent."""
    folder = epath.Path(manual_dir) / task
    if not (folder / _SPLIT_FILES["train"]).is_file():
        raise EpisodeDataError(f"no LMRL-Gym {TASKS[task]} data: {folder} has no train.json.\n"
                               + MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {split: folder / name for split, name in _SPLIT_FILES.items() if (folder / name).is_file()}


def read_conversations(path: epath.PathLike, task: str) -> list[Episode]:
    """Every conversation in the JSON file `path` as an episode of `task`.

    Raises EpisodeDataError naming the file, the record and what is wrong with it.
    """
    path = epath.Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EpisodeDataError(f"{path}: not a readable JSON file ({error}). "
                               "Download it again (see MANUAL_DOWNLOAD_INSTRUCTIONS).") from error
    if not isinstance(records, list):
        raise EpisodeDataError(f"{path}: expected a JSON list of conversations {_RECORD_FORMAT}, "
                               f"got a JSON {type(records).__name__}")
    return [_conversation_episode(record, task, f"{path}, record {index}") for index, record in enumerate(records)]


def _conversation_episode(record, task: str, where: str) -> Episode:
    def error(what: str) -> EpisodeDataError:
        return EpisodeDataError(f"{where}: {what}. Every record must look like {_RECORD_FORMAT}; "
                                "fix or remove this one and run again.")

    if not isinstance(record, dict):
        raise error(f"expected a JSON object, got a JSON {type(record).__name__}")
    missing = [key for key in ("lines", "correct", "word") if key not in record]
    if missing:
        raise error(f"missing key(s) {missing} (it has {sorted(record)})")
    lines, correct, word = record["lines"], record["correct"], record["word"]
    if not isinstance(lines, list) or not lines or not all(isinstance(line, str) for line in lines):
        raise error(f'"lines" must be a non-empty list of strings, got {lines!r:.80}')
    turns = []
    for number, line in enumerate(lines):
        question, separator, answer = line.rpartition("? ")
        if not separator:
            raise error(f'"lines"[{number}] = {line!r} has no "? " between question and answer')
        turns.append((question + "?", answer))
    if not isinstance(correct, bool):
        raise error(f'"correct" must be true or false, got {correct!r}')
    # LMRL-Gym's Guess My City generator stores the city as one "City,Country" string.
    variants = [word] if isinstance(word, str) else word
    if not isinstance(variants, list) or not variants or not all(isinstance(v, str) and v for v in variants):
        raise error(f'"word" must be a non-empty list of non-empty names, got {word!r}')
    rewards = [-1.0] * len(turns)
    if correct:
        rewards[-1] = 0.0  # the winning question costs nothing, as in our question game
    return Episode(task=task, hidden=variants[0],
                   observations=[format_observation(turns[:t]) for t in range(len(turns) + 1)],
                   actions=[question for question, _ in turns], rewards=rewards, success=correct, player=PLAYER)


def _fingerprints(paths: dict[str, epath.Path]) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths.values()}


class LmrlGymEpisodes(EpisodeBuilder):
    """LMRL-Gym's offline episodes of one task (the config), imported from its JSON files."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release.",
                                               "2.0.0": "Generic episodes: observations and actions, not (question, "
                                                        "answer) turns; 'questioner' becomes 'player'."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=task, description=f"LMRL-Gym's offline {title} episodes")
        for task, title in TASKS.items()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _metadata(self) -> tfds.core.MetadataDict:
        # The source files' hashes, so a later load can tell the import is stale.
        return tfds.core.MetadataDict()

    def _split_generators(self, dl_manager):
        task = self.builder_config.name
        paths = manual_files(dl_manager.manual_dir, task)
        # Every file is read and checked before the first record is written.
        episodes = {split: read_conversations(path, task) for split, path in paths.items()}
        self.info.metadata["sha256"] = _fingerprints(paths)
        return {split: self._generate_examples(split_episodes) for split, split_episodes in episodes.items()}

    def _generate_examples(self, episodes: list[Episode]):
        for i, episode in enumerate(episodes):
            yield i, encode_episode(i, episode)


def _check_unchanged(builder: LmrlGymEpisodes, manual_dir: epath.Path, task: str) -> None:
    """TFDS never re-imports a prepared dataset, so changed source files must not go unnoticed."""
    if not (manual_dir / task / _SPLIT_FILES["train"]).is_file():
        return  # the source files were removed after the import: the import is the data
    if _fingerprints(manual_files(manual_dir, task)) != builder.info.metadata["sha256"]:
        raise EpisodeDataError(f"the LMRL-Gym files in {manual_dir / task} changed since they were imported "
                               f"into {builder.data_dir}: delete that folder and run again to re-import them")


def load_episodes(data_dir: epath.PathLike, task: str, manual_dir: epath.PathLike | None = None,
                  split: str = "train") -> list[Episode]:
    """The episodes of `task`'s `split` in file order, imported from `manual_dir` on first use.

    `manual_dir` defaults to TFDS's `<data_dir>/downloads/manual`. Raises EpisodeDataError
    naming the folder, file or record when the data is missing, malformed or unreadable.
    """
    builder = _prepared(data_dir, task, manual_dir, split)
    return read_episodes(builder, split, builder.info.splits[split].num_examples)


def _prepared(data_dir: epath.PathLike, task: str, manual_dir: epath.PathLike | None, split: str) -> LmrlGymEpisodes:
    """The builder of `task`'s episodes, imported from `manual_dir` unless already (and
    unchanged since); it has `split`."""
    if task not in TASKS:
        raise EpisodeDataError(f"LMRL-Gym has no offline data for task {task!r} (config.task); "
                               f"choose one of {list(TASKS)}")
    manual_dir = epath.Path(manual_dir) if manual_dir else default_manual_dir(data_dir)
    builder = open_builder(LmrlGymEpisodes, data_dir, LmrlGymEpisodes.builder_configs[task])
    if builder.is_prepared():
        _check_unchanged(builder, manual_dir, task)
    else:
        # Every file is checked before TFDS writes anything (the builder reads them again).
        for path in manual_files(manual_dir, task).values():
            read_conversations(path, task)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    if split not in builder.info.splits:
        raise EpisodeDataError(f"no {split!r} split in {builder.data_dir} (splits: {list(builder.info.splits)}); "
                               f"an eval split needs eval.json beside train.json when importing")
    return builder


def load_transitions(task: str, data_dir: epath.PathLike, gamma: float,
                     manual_dir: epath.PathLike | None = None) -> dict[str, list]:
    """Every turn of `task`'s LMRL-Gym train episodes as columns named like `Transition`'s
    fields (observation, action, reward, next_observation, done, mc_return), imported if absent."""
    return transition_columns(load_episodes(data_dir, task, manual_dir), gamma)


def open_turns(task: str, data_dir: epath.PathLike, gamma: float, manual_dir: epath.PathLike | None = None) -> Turns:
    """``load_transitions``'s rows, read by row range (``episode_records.Turns``), imported if absent."""
    builder = _prepared(data_dir, task, manual_dir, "train")
    return Turns(builder, "train", builder.info.splits["train"].num_examples, gamma)
