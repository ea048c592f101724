"""Detective on the real Z-machine (jericho): observation, rewards, done, cap, batching, errors.

Valid actions cost ~0.2-0.5 s per new game state, so only the tests about them compute
them; the others build the environment with `show_valid_actions=False`.
"""

import ctypes.util  # noqa: F401  first, as torch does: jericho's star imports then shadow jericho.util
import importlib.util
from pathlib import Path

import pytest

from archer_jax.envs import detective as dt

ROOT = Path(__file__).resolve().parents[1]
GAME = ROOT.parent / "shared" / "games" / "detective.z5"

if importlib.util.find_spec("jericho") is None:
    SKIP = "jericho is not installed (pip install -e '.[detective]')"
elif not GAME.is_file():
    SKIP = f"{GAME} is missing ({dt.GAME_SOURCE})"
else:
    SKIP = None
needs_game = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

START_ACTIONS = ("east", "north", "take paper", "west")
DEATH = ["north", "west", "north"]  # robbed outside the restaurant


def fast(batch_size=1, **kwargs):
    return dt.BatchedDetective(GAME, batch_size, show_valid_actions=False, **kwargs)


def play(env, actions):
    """Steps a one-row env through `actions`; returns the list of (obs, reward, done)."""
    return [(o[0], float(r[0]), bool(d[0])) for o, r, d in (env.step([a]) for a in actions)]


@pytest.fixture(scope="module")
def shown():
    """Two rows that show valid actions, reset once (one jericho valid-action call)."""
    env = dt.BatchedDetective(GAME, 2, word_extractor="regex", num_threads=1)
    return env, env.reset([0, 1])


# --- observation -----------------------------------------------------------------------

@needs_game
def test_reset_observation(shown):
    env, observations = shown
    assert observations[0] == observations[1]
    lines = observations[0].split("\n")
    assert [line.split(": ")[0] for line in lines] == ["Surroundings", "Inventory", "Last response", "Step", "Valid actions"]
    parts = dt.parse_observation(observations[0])
    assert parts.surroundings.startswith("<< Chief's office >> You are standing in the Chief's office.")
    assert parts.surroundings.endswith("You can see a piece of white paper here.")
    assert parts.inventory == "You are carrying nothing."
    assert "Detective By Matt Barringer." in parts.response
    assert parts.response.endswith("white paper here. [Your score has just gone up by ten points.]")
    assert parts.valid_actions == START_ACTIONS and (parts.step, parts.max_steps) == (0, dt.MAX_STEPS)
    assert env.valid_actions == [list(START_ACTIONS)] * 2
    assert env.scores.tolist() == [10, 10] and env.steps.tolist() == [0, 0] and env.moves.tolist() == [1, 1]
    assert not env.dones.any() and not env.successes.any()
    assert env.word_extractor == "regex"


def test_format_and_parse_round_trip():
    obs = dt.format_observation("\n\n<< Room >>\nA  room.\n", "\nYou are carrying nothing.\n", "\nTaken.\n",
                                3, 50, ["east", "take paper"])
    assert obs == ("Surroundings: << Room >> A room.\nInventory: You are carrying nothing.\n"
                   "Last response: Taken.\nStep: 3 of 50\nValid actions: east, take paper")
    assert dt.parse_observation(obs) == ("<< Room >> A room.", "You are carrying nothing.", "Taken.", 3, 50,
                                         ("east", "take paper"))
    assert dt.parse_observation(dt.format_observation("a", "b", "c", 0, 5, [])).valid_actions == ()
    assert dt.parse_observation(dt.format_observation("a", "b", "c", 0, 5, None)).valid_actions is None
    with pytest.raises(ValueError, match="not a Detective observation"):
        dt.parse_observation("Questions:\nIs it big? Yes")


def test_clean_action():
    assert dt.clean_action("  take paper  \nnorth\nwest") == "take paper"
    assert dt.clean_action("\nnorth") == ""  # as the reference: only the first line
    assert dt.clean_action("") == ""
    assert len(dt.clean_action("x" * 500).encode()) == dt.MAX_ACTION_BYTES


# --- rewards, done, cap ----------------------------------------------------------------

@needs_game
def test_walkthrough_first_50_steps_collect_350_but_hit_the_cap():
    env = fast()
    moves = env.walkthrough()
    assert len(moves) == 51 and moves[0] == "TAKE PAPER" and moves[-1] == "up"
    assert dt.walkthrough(GAME) == moves
    env.reset([0])
    steps = play(env, moves[:50])
    rewards = [r for _, r, _ in steps]
    assert sorted(set(rewards)) == [0.0, 10.0, 100.0]
    assert rewards.count(10.0) == 25 and rewards.count(100.0) == 1 and rewards[49] == 100.0
    assert sum(rewards) == 350.0 and env.scores[0] == 360
    # The 51st command ("up") wins, one step past the cap: done by the cap, not a success.
    assert [d for _, _, d in steps] == [False] * 49 + [True]
    assert not env.successes[0] and env.steps[0] == 50


@needs_game
def test_victory_sets_success_and_done():
    env = fast(max_steps=60)
    env.reset([0])
    steps = play(env, env.walkthrough())
    assert [d for _, _, d in steps] == [False] * 50 + [True]
    assert env.successes[0] and sum(r for _, r, _ in steps) == 350.0
    assert "*** You have won ***" in steps[-1][0]
    # Within the 50-step cap: leave out the walkthrough's READ PAPER, DROP PAPER and INVENTORY.
    env = fast()
    env.reset([0])
    short = [a for a in env.walkthrough() if a not in ("READ PAPER", "DROP PAPER", "INVENTORY")]
    assert len(short) == 48
    steps = play(env, short)
    assert [d for _, _, d in steps] == [False] * 47 + [True]
    assert env.successes[0] and env.steps[0] == 48 and sum(r for _, r, _ in steps) == 350.0


@needs_game
def test_death_ends_the_episode_without_success():
    env = fast()
    env.reset([0])
    steps = play(env, DEATH)
    assert [d for _, _, d in steps] == [False, False, True]
    assert "*** You have died ***" in steps[-1][0]
    assert not env.successes[0] and sum(r for _, r, _ in steps) == 10.0


@needs_game
def test_cap_counts_every_step_including_unparsed_commands():
    env = fast()
    env.reset([0])
    steps = play(env, ["xyzzy", "", "look"] * 16 + ["xyzzy", "xyzzy"])  # 50 steps
    assert [d for _, _, d in steps] == [False] * 49 + [True]
    assert env.steps[0] == 50 and not env.successes[0] and sum(r for _, r, _ in steps) == 0.0
    assert env.moves[0] == 1 + 16  # the game's own counter only counts the 16 `look`s


@needs_game
def test_finished_rows_ignore_actions_until_reset():
    env = fast(2)
    first = env.reset([0, 1])
    for a in DEATH:
        observations, rewards, dones = env.step([a, "take paper"])
    assert dones.tolist() == [True, False]
    dead = observations[0]
    observations, rewards, dones = env.step(["take paper", "north"])
    assert observations[0] == dead and rewards[0] == 0.0 and dones[0]
    assert env.scores[0] == 20 and env.steps[0] == 3 and not env.successes[0]
    assert not dones[1] and env.steps[1] == 4
    # Reset after done restores the start, on every row.
    assert env.reset([0, 1]) == first
    assert env.scores.tolist() == [10, 10] and env.steps.tolist() == [0, 0] and env.moves.tolist() == [1, 1]
    assert not env.dones.any() and not env.successes.any()
    _, rewards, dones = env.step(["take paper", "take paper"])
    assert rewards.tolist() == [10.0, 10.0] and not dones.any()


@needs_game
def test_multi_line_action_uses_the_first_line():
    env = fast()
    env.reset([0])
    observation, reward, done = play(env, ["  take paper \nnorth\nwest"])[0]
    parts = dt.parse_observation(observation)
    assert reward == 10.0 and not done and parts.response.startswith("Taken.")
    assert parts.surroundings.startswith("<< Chief's office >>")
    assert parts.inventory == "You are carrying: a piece of white paper"
    assert env.moves[0] == 2


@needs_game
def test_look_and_inventory_cost_no_move():
    env = fast()
    env.reset([0])
    assert env.moves[0] == 1
    play(env, ["north"])
    assert env.moves[0] == 2
    observation = play(env, ["xyzzy"])[0][0]  # unparsed: the game's counter stays
    assert env.moves[0] == 2
    assert dt.parse_observation(observation).surroundings.startswith("<< Outside >>")


@needs_game
def test_rows_stay_independent():
    actions = [["take paper", "north", "west"], ["west", "take paper", "read note"], ["take gun", "west", "east"]]
    env = fast(3)
    env.reset([0, 1, 2])
    batched = [env.step(list(turn)) for turn in actions]
    for row in range(3):
        single = fast()
        single.reset([0])
        for t, (obs, rew, done) in enumerate(play(single, [turn[row] for turn in actions])):
            assert batched[t][0][row] == obs and batched[t][1][row] == rew and batched[t][2][row] == done
    assert env.scores.tolist() == [30, 20, 10]  # rows: take paper+gun; west outside; nothing


@needs_game
def test_file_commands_are_not_sent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where jericho's frotz would write detective.qzl / script
    env = fast(max_steps=5)
    start = env.reset([0])[0]
    for command in ["save", "SCRIPT ON", "take paper. transcript", "restore"]:
        observation, reward, done = play(env, [command])[0]
        assert dt.parse_observation(observation).response == dt.FILE_COMMAND_RESPONSE
        assert reward == 0.0 and not done
    assert observation.split("\n")[:2] == start.split("\n")[:2]  # not even "take paper" ran
    assert env.moves[0] == 1 and env.steps[0] == 4 and list(tmp_path.iterdir()) == []
    assert play(env, ["take paper"])[0][1:] == (10.0, True)  # still the game; the cap counted them
    assert not dt.touches_files("examine scripture") and dt.touches_files("Transcripts")


# --- valid actions ---------------------------------------------------------------------

@needs_game
def test_valid_actions_sorted_and_equal_between_fresh_envs(shown):
    env, observations = shown
    other = dt.BatchedDetective(GAME, 1, word_extractor="regex")
    assert other.reset([7]) == observations[:1]
    assert other.valid_actions[0] == sorted(other.valid_actions[0]) == env.valid_actions[0]


@needs_game
def test_valid_actions_cached_by_world_state_not_during_a_parser_question():
    import jericho

    jericho_util = importlib.import_module("jericho.util")
    env = dt.BatchedDetective(GAME, 2, word_extractor="regex", num_threads=2)
    env.reset([0, 1])
    assert env.valid_action_calls == 1
    env.step(["north", "north"])  # one new state, shared by both rows
    assert env.valid_action_calls == 2 and env.valid_actions[0] == env.valid_actions[1] == ["north", "west"]
    # "look" costs a move but keeps the world hash: served from the cache. "read" outside
    # makes the parser ask "What do you want to read?": same world hash, but not cached.
    observations, _, _ = env.step(["look", "read"])
    assert "What do you want to read?" in dt.parse_observation(observations[1]).response
    assert env.moves.tolist() == [3, 2]
    assert env.valid_action_calls == 3 and env.valid_action_cache_hits == 2
    assert env.valid_actions[0] == ["north", "west"]
    assert env.valid_actions[1] != env.valid_actions[0]  # the answers to "read what?" differ
    # jericho itself is untouched: no module-level patch, no spaCy pipeline stored.
    assert jericho_util.extract_objs.__module__ == "jericho.util"
    assert "_identify_interactive_objects" in vars(jericho.FrotzEnv)
    if importlib.util.find_spec(dt.SPACY_MODEL) is None:
        assert "spacy_nlp" not in vars(jericho_util)
        with pytest.raises(ImportError, match="en_core_web_sm"):
            dt.BatchedDetective(GAME, 1, word_extractor="spacy")


# --- errors ----------------------------------------------------------------------------

def test_missing_game_file(tmp_path):
    missing = tmp_path / "nope.z5"
    with pytest.raises(dt.GameFileError, match="nope.z5.*z-machine-games"):
        dt.BatchedDetective(missing, 1)
    assert issubclass(dt.GameFileError, FileNotFoundError) and issubclass(dt.GameFileError, ValueError)


@needs_game
def test_foreign_game_file(tmp_path):
    junk = tmp_path / "junk.z5"
    junk.write_bytes(b"\x05" + bytes(1023))
    with pytest.raises(dt.GameFileError, match="junk.z5.* not a game jericho supports"):
        dt.BatchedDetective(junk, 1)


def test_jericho_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "jericho", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[detective\]'"):
        dt._import_jericho()


@needs_game
def test_wrong_lengths_and_arguments():
    env = fast(2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(["north", "north"])
    with pytest.raises(ValueError, match="seeds has 1 entries, batch_size is 2"):
        env.reset([0])
    env.reset([0, 1])
    with pytest.raises(ValueError, match="actions has 3 entries, batch_size is 2"):
        env.step(["north"] * 3)
    with pytest.raises(ValueError, match="batch_size"):
        fast(0)
    with pytest.raises(ValueError, match="word_extractor"):
        fast(word_extractor="nltk")


@needs_game
def test_single_game_wrapper():
    env = dt.DetectiveEnv(GAME, show_valid_actions=False)
    assert dt.parse_observation(env.reset()).inventory == "You are carrying nothing."
    observation, reward, done = env.step("take paper")
    assert reward == 10.0 and not done and env.score == 20 and not env.success




# --- the task object, its players and the config -------------------------------------------

DEMO_ENV = {"game_file": str(GAME), "max_turns": 50, "show_valid_actions": False}


@needs_game
def test_scripted_players_range_from_the_walkthrough_to_random():
    from archer_jax import tasks
    from archer_jax.envs import base

    task = tasks.get("detective")
    returns = {name: base.play_seeds(task, DEMO_ENV, task.players[name], range(6))[0] for name in task.players}
    assert (returns["walkthrough"] == 350).all()  # every point within the 50-step cap
    assert (returns["careless"] == 300).all()  # the five TAKEs' points missed, nothing else
    assert set(returns["careless_80"]) <= set(range(300, 351, 10))  # some TAKEs missed, nothing else
    assert returns["walkthrough"].mean() > returns["slip_10"].mean() > returns["slip_30"].mean()
    assert returns["slip_30"].mean() > returns["random"].mean()
    assert max(task.default_mix, key=task.default_mix.get) == "careless"  # the habit greedy BC learns
    episodes = base.simulate_episodes(task, DEMO_ENV, task.default_mix, 24, seed=0)
    stats = base.summarize(episodes)
    assert 0 < stats["all"]["mean_return"] < 300  # good and bad trajectories
    for episode in episodes:
        steps = [dt.parse_observation(o).step for o in episode["observations"]]
        assert steps == list(range(len(episode["actions"]) + 1))


@needs_game
def test_demo_data_keeps_every_take_in_reach_of_the_careless_habit():
    """The demo's mix: on the walkthrough's route EXAMINE is the commoner choice at every
    object the walkthrough takes (greedy BC's habit, 300 points), and TAKE is in the data
    at every one of them."""
    from archer_jax import config_checks, tasks
    from archer_jax.envs import base
    from archer_jax.envs import detective_players as dp
    from experiments.configs import detective

    mix = config_checks.data_mix(detective.get_config("demo"))
    assert max(mix, key=mix.get) == "careless_80"
    episodes = base.simulate_episodes(tasks.get("detective"), DEMO_ENV, mix, 80, seed=0)
    actions = [a.upper() for ep in episodes if ep["player"] != "random" for a in ep["actions"]]
    objects = [c.split(" ", 1)[1] for c in dp.walkthrough_commands() if c.upper().startswith("TAKE ")]
    assert len(objects) == 5
    for name in objects:
        takes, examines = actions.count(f"TAKE {name}"), actions.count(f"EXAMINE {name}")
        assert 0 < takes < examines, (name, takes, examines)


def test_the_game_file_field_is_named_when_it_is_wrong(tmp_path):
    from archer_jax import tasks

    task = tasks.get("detective")
    with pytest.raises(dt.GameFileError, match="config.env.game_file is empty"):
        task.make_env({"game_file": ""}, 1)
    with pytest.raises(dt.GameFileError, match=r"config.env.game_file: game file not found: .*nope.z5"):
        task.make_env({"game_file": str(tmp_path / "nope.z5")}, 1)


@needs_game
def test_smoke_config_trains_on_the_real_game(tmp_path):
    import json

    from archer_jax import config_checks, trainer
    from experiments.configs import detective

    config = detective.get_config("smoke")
    config.env.game_file = str(GAME)
    run = trainer.train(config, tmp_path / "run")
    assert run.progress["finished"] == ["bc", "archer"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/return_mean" in r]
    assert evals and all(0 <= r["eval/return_mean"] <= 350 for r in evals)
    assert rows[-1]["env_steps"] > 0
    config.env.game_file = str(tmp_path / "missing.z5")
    with pytest.raises(config_checks.ConfigError, match="config.env.game_file: game file not found"):
        trainer.train(config, tmp_path / "other")
