"""The LMRL-Gym JSON import: episodes, transitions, malformed files, the source switch."""

import json
import logging

import pytest

from archer_jax import config_checks
from archer_jax.data import episode_records, lmrl_gym, simulated_episodes, sources
from archer_jax.envs import base
from archer_jax.envs.question_game import format_observation
from experiments.configs import guess_city

logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS logs its progress

CONVERSATIONS = [
    {"lines": ["Is it an animal? Yes.", "Is it a mammal? Yes.", "Is it a lion? Yes."],
     "correct": True, "word": ["Lion"]},
    {"lines": ["Is it an animal? No.", "Is it a tool? No."], "correct": False, "word": ["Hammer"]},
    {"lines": ["Is it electronic? Yes.", "Is it a TV? Yes."], "correct": True, "word": ["Television", "TV"]},
    # "?" earlier in the line: only the last "? " separates question and answer.
    {"lines": ["Is it a ball? A toy? Something round? No."], "correct": False, "word": ["Pair of shoes"]},
]


def _write(folder, records, name="train.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(records))
    return folder / name


@pytest.fixture
def manual_dir(tmp_path):
    _write(tmp_path / "manual" / "twenty_questions", CONVERSATIONS)
    return tmp_path / "manual"


def test_import_reads_back_turns_rewards_and_success(tmp_path, manual_dir):
    episodes = lmrl_gym.load_episodes(tmp_path / "data", "twenty_questions", manual_dir)
    turns = [("Is it an animal?", "Yes."), ("Is it a mammal?", "Yes."), ("Is it a lion?", "Yes.")]
    assert episodes[0] == base.Episode(
        task="twenty_questions", hidden="Lion", player="lmrl_gym", success=True,
        observations=[format_observation(turns[:t]) for t in range(4)], actions=[q for q, _ in turns],
        rewards=[-1.0, -1.0, 0.0])
    assert episodes[1]["rewards"] == [-1.0, -1.0] and not episodes[1]["success"]
    assert episodes[2]["hidden"] == "Television"
    assert episodes[3]["actions"] == ["Is it a ball? A toy? Something round?"]
    assert len(episodes) == len(CONVERSATIONS)
    assert list((tmp_path / "data").rglob("*.array_record-*"))
    # The observation rebuilds each original line.
    (last,) = episode_records.episode_transitions(episodes[3], gamma=0.9)
    assert last.next_observation == "Questions:\nIs it a ball? A toy? Something round? No.\n"


def test_transitions_match_the_simulated_reader(tmp_path, manual_dir):
    turns = sources.turns_from("lmrl_gym", task="twenty_questions", data_dir=tmp_path / "data",
                               manual_dir=manual_dir, gamma=0.5, num_episodes=1, seed=0)
    columns = turns.columns(0, len(turns))
    assert turns.columns(2, 5) == {k: v[2:5] for k, v in columns.items()}
    assert list(columns) == list(simulated_episodes.Transition._fields)
    assert len(columns["action"]) == 3 + 2 + 2 + 1
    assert columns["action"][:3] == ["Is it an animal?", "Is it a mammal?", "Is it a lion?"]
    assert columns["observation"][1] == "Questions:\nIs it an animal? Yes.\n"
    assert columns["done"][:5] == [False, False, True, False, True]
    assert columns["reward"][:5] == [-1.0, -1.0, 0.0, -1.0, -1.0]
    assert columns["mc_return"][:5] == pytest.approx([-1.5, -1.0, 0.0, -1.5, -1.0])


def test_eval_split_and_reading_without_the_source_files(tmp_path, manual_dir):
    _write(manual_dir / "twenty_questions", CONVERSATIONS[1:2], "eval.json")
    data = tmp_path / "data"
    assert len(lmrl_gym.load_episodes(data, "twenty_questions", manual_dir, split="eval")) == 1
    for path in (manual_dir / "twenty_questions").iterdir():
        path.unlink()
    assert len(lmrl_gym.load_episodes(data, "twenty_questions", manual_dir)) == 4  # the import suffices


def test_changed_source_files_are_not_silently_ignored(tmp_path, manual_dir):
    data = tmp_path / "data"
    lmrl_gym.load_episodes(data, "twenty_questions", manual_dir)
    _write(manual_dir / "twenty_questions", CONVERSATIONS[:2])
    with pytest.raises(episode_records.EpisodeDataError, match="changed since they were imported"):
        lmrl_gym.load_episodes(data, "twenty_questions", manual_dir)


def test_guess_city_word_as_a_single_string(tmp_path):
    record = {"lines": ["Is the city you are from Paris? Yes, it is."], "correct": True, "word": "Paris,France"}
    _write(tmp_path / "manual" / "guess_city", [record])
    (episode,) = lmrl_gym.load_episodes(tmp_path / "data", "guess_city", tmp_path / "manual")
    assert episode["hidden"] == "Paris,France" and episode["task"] == "guess_city"
    assert episode["rewards"] == [0.0]


GOOD = CONVERSATIONS[1]


@pytest.mark.parametrize("records, record, message", [
    ({"lines": []}, None, "expected a JSON list"),
    ([GOOD, ["Is it?"]], 1, "expected a JSON object"),
    ([GOOD, {"lines": ["Is it a cat? No."], "word": ["Lion"]}], 1, r"missing key\(s\) \['correct'\]"),
    ([{**GOOD, "lines": "Is it a cat? No."}], 0, '"lines" must be a non-empty list of strings'),
    ([{**GOOD, "lines": ["Is it a cat? No.", 3]}], 0, '"lines" must be a non-empty list of strings'),
    ([{**GOOD, "lines": []}], 0, '"lines" must be a non-empty list of strings'),
    ([GOOD, GOOD, {**GOOD, "lines": ["Is it a cat? No.", "Is it a dog?No."]}], 2, r'"lines"\[1\].*no "\? "'),
    ([{**GOOD, "correct": "true"}], 0, '"correct" must be true or false'),
    ([{**GOOD, "correct": 1}], 0, '"correct" must be true or false'),
    ([{**GOOD, "word": []}], 0, '"word" must be a non-empty list'),
    ([{**GOOD, "word": [""]}], 0, '"word" must be a non-empty list'),
])
def test_malformed_files_name_file_record_and_problem(tmp_path, records, record, message):
    path = _write(tmp_path / "manual" / "twenty_questions", records)
    with pytest.raises(episode_records.EpisodeDataError, match=message) as error:
        lmrl_gym.load_episodes(tmp_path / "data", "twenty_questions", tmp_path / "manual")
    text = str(error.value)
    assert str(path) in text
    if record is not None:
        assert f"record {record}:" in text
    assert not (tmp_path / "data").exists()  # nothing written


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "manual" / "twenty_questions" / "train.json"
    path.parent.mkdir(parents=True)
    path.write_text('[{"lines": ')
    with pytest.raises(episode_records.EpisodeDataError, match="not a readable JSON file") as error:
        lmrl_gym.load_episodes(tmp_path / "data", "twenty_questions", tmp_path / "manual")
    assert str(path) in str(error.value) and not (tmp_path / "data").exists()


def test_missing_manual_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(episode_records.EpisodeDataError) as error:
        lmrl_gym.load_episodes(tmp_path / "data", "guess_city")  # default manual folder
    text = str(error.value)
    assert str(tmp_path / "data" / "downloads" / "manual" / "guess_city") in text
    assert "train.json" in text and "rail.eecs.berkeley.edu" in text


def test_unknown_task_and_source_are_named(tmp_path):
    with pytest.raises(episode_records.EpisodeDataError, match="'wordle'"):
        lmrl_gym.load_episodes(tmp_path, "wordle")
    with pytest.raises(ValueError, match="config.data.source = 'web'"):
        sources.turns_from("web", task="guess_city", data_dir=tmp_path, gamma=0.9, num_episodes=1, seed=0)


def test_config_check_knows_the_sources():
    assert config_checks._DATA_SOURCES == sources.SOURCES
    config = guess_city.get_config("smoke")
    assert config.data.source == "simulated"
    config_checks.check_config(config)
    config.data.source = "lmrl"
    with pytest.raises(config_checks.ConfigError, match="config.data.source"):
        config_checks.check_config(config)
    config.data.source = "lmrl_gym"
    config_checks.check_config(config)  # guess_city has LMRL-Gym data
    config.task = "twenty_questions_subset"
    with pytest.raises(config_checks.ConfigError, match=r"has no data for config.task = 'twenty_questions_subset'.*"
                                                       + "'guess_city'"):
        config_checks.check_config(config)
