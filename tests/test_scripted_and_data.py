"""Scripted questioners, the episode simulator (envs.base) and the TFDS (ArrayRecord) dataset."""

import glob
import logging
import tempfile

import pytest

from archer_jax.data import simulated_episodes as se
from archer_jax.envs import guess_city as gc
from archer_jax import tasks
from archer_jax.envs import base, guess_city_players
from archer_jax.envs.question_game import MAX_TURNS, WIN_ANSWER, format_observation, parse_observation

logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS logs "custom data configuration"
TASK, ENV = tasks.get("guess_city"), {}
MIX = guess_city_players.DEFAULT_MIX


def simulate(mix, n, seed, **kwargs):
    return base.simulate_episodes(TASK, ENV, mix, n, seed, **kwargs)


def _stats(mix, n=50, seed=0):
    return base.summarize(simulate(mix, n, seed))["all"]


def test_every_template_answer_reads_back_as_the_fact_it_states():
    """The informative player's reader and the KB oracle's phrasing agree for every city."""
    for probe in guess_city_players.PROBES:
        for city in gc.CITIES:
            answer = gc.CityOracle().answer_one(city, probe.question)
            value = probe.read(answer)
            if answer == WIN_ANSWER or (value is None and answer == gc.CANT_ANSWER):
                continue  # "Is the city in Singapore?" wins; Singapore's country is refused
            assert value == probe.feature(city), (city.name, probe.question, answer)


def test_informative_questioner_wins_most_games():
    stats = _stats({"informative": 1.0})
    assert stats["win_rate"] >= 0.8
    assert 3 <= stats["mean_turns"] <= 10


def test_mixture_is_clearly_worse_than_informative():
    best = _stats({"informative": 1.0}, n=100)
    mix = _stats(guess_city_players.DEFAULT_MIX, n=100)
    assert mix["win_rate"] <= best["win_rate"] - 0.2
    assert mix["mean_return"] <= best["mean_return"] - 4
    for name in ("redundant", "noisy", "early_guesser"):
        assert _stats({name: 1.0})["mean_return"] < best["mean_return"], name


def test_questions_come_from_the_template_pool():
    pool = set(guess_city_players.question_pool())
    assert len(pool) < 300
    for episode in simulate(MIX, 40, seed=3):
        assert set(episode["actions"]) <= pool


def test_simulation_is_deterministic_and_independent_of_batching():
    a = simulate(MIX, 30, seed=5, batch_size=7)
    b = simulate(MIX, 30, seed=5, batch_size=30)
    tail = simulate(MIX, 10, seed=5, first_episode=20)
    assert a == b and a[20:] == tail
    assert a != simulate(MIX, 30, seed=6)


def test_episode_records_are_well_formed():
    for ep in simulate(MIX, 30, seed=1):
        n = len(ep["actions"])
        assert 1 <= n <= MAX_TURNS and len(ep["rewards"]) == n and len(ep["observations"]) == n + 1
        turns = parse_observation(ep["observations"][-1])
        assert [q for q, _ in turns] == ep["actions"]
        assert ep["observations"] == [format_observation(turns[:t]) for t in range(n + 1)]
        assert ep["success"] == (turns[-1][1] == WIN_ANSWER)
        assert ep["rewards"] == [-1.0] * (n - 1) + [0.0 if ep["success"] else -1.0]
        assert ep["success"] or n == MAX_TURNS


def test_unknown_questioner_is_named():
    with pytest.raises(ValueError, match="genius"):
        simulate({"genius": 1.0}, 1, seed=0)


def test_tfds_round_trip(tmp_path):
    config = se.episodes_config("guess_city", num_episodes=60, seed=11)
    episodes = se.load_episodes(tmp_path, config)
    assert episodes == simulate(MIX, 60, seed=11)
    assert glob.glob(str(tmp_path / "simulated_episodes/*/2.0.0/*.array_record-*"))
    assert se.load_episodes(tmp_path, config, build=False) == episodes  # read again, no rebuild


def test_building_leaves_no_temporary_folder_and_asks_no_bucket(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp would put TFDS's folder
    se.load_episodes(tmp_path / "data", se.episodes_config("guess_city", num_episodes=4, seed=1))
    assert list(scratch.iterdir()) == []


def test_custom_mix_gets_its_own_config_name():
    default = se.episodes_config("guess_city", 10, 0)
    custom = se.episodes_config("guess_city", 10, 0, mix={"noisy": 1.0})
    assert default.name != custom.name and custom.mix_dict() == {"noisy": 1.0}
    assert default.mix_dict() == guess_city_players.DEFAULT_MIX


def test_corrupt_file_error_names_the_file(tmp_path):
    config = se.episodes_config("guess_city", num_episodes=20, seed=2)
    se.load_episodes(tmp_path, config)
    (path,) = glob.glob(str(tmp_path / "simulated_episodes/*/2.0.0/*.array_record-*"))
    data = bytearray(open(path, "rb").read())
    for i in range(100, len(data) - 100, 13):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(se.EpisodeDataError, match="delete the folder") as error:
        se.load_episodes(tmp_path, config)
    assert path in str(error.value)


def test_missing_data_without_build_is_a_clear_error(tmp_path):
    with pytest.raises(se.EpisodeDataError, match="no prepared dataset"):
        se.load_episodes(tmp_path, se.episodes_config("guess_city", 5, 0), build=False)


def test_transitions_and_mc_return_by_hand():
    turns = [("Is the city in Asia?", "No, the city is not in Asia."),
             ("Is the city a capital?", "Yes, it is the capital of its country."),
             ("Is the city Paris?", WIN_ANSWER)]
    episode = base.Episode(
        task="guess_city", hidden="Paris", player="informative", success=True,
        observations=[format_observation(turns[:t]) for t in range(4)], actions=[q for q, _ in turns],
        rewards=[-1.0, -1.0, 0.0])
    t = se.episode_transitions(episode, gamma=0.9)
    assert [x.mc_return for x in t] == pytest.approx([-1.9, -1.0, 0.0])  # -1 + 0.9 * (-1 + 0.9 * 0)
    assert [x.done for x in t] == [False, False, True]
    assert [x.reward for x in t] == [-1.0, -1.0, 0.0]
    assert [x.episode_return for x in t] == [-2.0, -2.0, -2.0] and [x.turn for x in t] == [0, 1, 2]
    assert t[0].observation == "Questions:\n" and t[0].action == "Is the city in Asia?"
    assert t[1].observation == t[0].next_observation == (
        "Questions:\nIs the city in Asia? No, the city is not in Asia.\n")
    assert t[2].next_observation.endswith(f"Is the city Paris? {WIN_ANSWER}\n")


def test_task_corpus_holds_dialogues_and_questions():
    episodes = simulate(MIX, 5, seed=0)
    texts = list(se.task_corpus(episodes))
    assert texts[0].startswith("Questions:\n")
    assert sum(len(ep["actions"]) for ep in episodes) + len(episodes) == len(texts)
    assert all(texts)


def test_load_transitions_columns(tmp_path):
    columns = se.load_transitions("guess_city", tmp_path, num_episodes=8, seed=4, gamma=0.5)
    episodes = se.load_episodes(tmp_path, se.episodes_config("guess_city", 8, 4))
    expected = [t for ep in episodes for t in se.episode_transitions(ep, 0.5)]
    assert list(columns) == list(se.Transition._fields)
    assert [se.Transition(*row) for row in zip(*columns.values())] == expected


def test_turns_read_by_row_range_only_the_episodes_they_need(tmp_path, monkeypatch):
    """``open_turns``: every row range equals the same slice of the whole columns, and
    decodes only the episodes holding its rows (what a host of a pod reads); the index
    written on first use serves the next open; a bad index is named with the fix."""
    from archer_jax.data import episode_records

    columns = se.load_transitions("guess_city", tmp_path, num_episodes=9, seed=4, gamma=0.5)
    turns = se.open_turns("guess_city", tmp_path, num_episodes=9, seed=4, gamma=0.5)
    n = len(columns["reward"])
    assert len(turns) == n
    decoded = []
    real_episode = episode_records._episode
    monkeypatch.setattr(episode_records, "_episode", lambda r: decoded.append(int(r["episode_id"])) or real_episode(r))
    turns = se.open_turns("guess_city", tmp_path, num_episodes=9, seed=4, gamma=0.5)  # from the index: no read
    assert decoded == []
    episodes = se.load_episodes(tmp_path, se.episodes_config("guess_city", 9, 4))
    episode_of_row = [e for e, episode in enumerate(episodes) for _ in episode["actions"]]
    for start, stop in ((0, n), (0, 1), (3, 11), (n - 2, n), (5, 5), (n - 1, n + 7)):
        decoded.clear()
        assert turns.columns(start, stop) == {k: v[start:stop] for k, v in columns.items()}, (start, stop)
        assert decoded == sorted(set(episode_of_row[start:stop])), (start, stop)
    (index,) = glob.glob(str(tmp_path / "simulated_episodes/*/2.0.0/train-episode_index.npy"))
    with open(index, "wb") as f:
        f.write(b"not an index")
    with pytest.raises(se.EpisodeDataError, match="delete the folder") as error:
        se.open_turns("guess_city", tmp_path, num_episodes=9, seed=4, gamma=0.5)
    assert index in str(error.value)


def test_config_data_mix_chooses_the_players(tmp_path):
    from archer_jax import config_checks
    from archer_jax.data import sources
    from experiments.configs import guess_city

    config = guess_city.get_config("smoke")
    assert config_checks.data_mix(config) == {}  # '' = the task's default mix
    config.data.mix = "informative=3, noisy=1"
    mix = config_checks.data_mix(config)
    assert mix == {"informative": 3.0, "noisy": 1.0}
    turns = sources.turns_from("simulated", task="guess_city", data_dir=tmp_path, gamma=0.5, num_episodes=6, seed=2,
                               mix=mix)
    columns = turns.columns(0, len(turns))
    expected = [t for ep in simulate(mix, 6, seed=2) for t in se.episode_transitions(ep, 0.5)]
    assert [se.Transition(*row) for row in zip(*columns.values())] == expected
    assert {ep["player"] for ep in simulate(mix, 6, seed=2)} <= {"informative", "noisy"}
    config.data.source = "lmrl_gym"
    with pytest.raises(config_checks.ConfigError, match="reads recorded episodes"):
        config_checks.data_mix(config)
