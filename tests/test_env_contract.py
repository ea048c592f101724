"""The environment protocol (``envs.base.BatchedEnv``), checked the same way on every
task's environment: every built-in task (through its task object) and Detective (the
real Z-machine, when jericho and the game file are there)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archer_jax import tasks
from archer_jax.envs import base

GAME = Path(__file__).resolve().parents[1].parent / "shared" / "games" / "detective.z5"
CAP = 3
B = 4


# Each built-in task's own config.env fields (the question games need none).
ENV_FIELDS = {"detective": {"game_file": str(GAME), "show_valid_actions": False}}


def _task_env(name):
    if name == "detective" and (importlib.util.find_spec("jericho") is None or not GAME.is_file()):
        pytest.skip("needs jericho (pip install -e '.[detective]') and ../shared/games/detective.z5")
    return tasks.get(name).make_env({"max_turns": CAP, "num_items": 0, **ENV_FIELDS.get(name, {})}, B)


MAKERS = {name: (lambda name=name: _task_env(name)) for name in tasks.names()}
# An utterance no task rewards or ends an episode on (a question games' oracle cannot
# answer it; the Z-machine's parser does not know the word).
IDLE = "xyzzy plugh"


def _play(env, seeds, actions_per_turn):
    trace = [env.reset(seeds)]
    for actions in actions_per_turn:
        trace.append(env.step(actions))
    return trace


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_reset_step_types_reward_range_and_done_at_the_cap(name):
    env = MAKERS[name]()
    assert isinstance(env, base.BatchedEnv) and env.batch_size == B and env.max_turns == CAP
    low, high = env.reward_range
    observations = env.reset(list(range(B)))
    assert isinstance(observations, list) and len(observations) == B
    assert all(isinstance(o, str) and o for o in observations)
    assert not np.asarray(env.dones).any() and len(env.hidden) == B and all(isinstance(h, str) for h in env.hidden)
    for turn in range(1, CAP + 1):
        observations, rewards, dones = env.step([IDLE] * B)
        rewards, dones = np.asarray(rewards), np.asarray(dones)
        assert len(observations) == B and all(isinstance(o, str) for o in observations)
        assert rewards.shape == (B,) and np.issubdtype(rewards.dtype, np.floating)
        assert ((low <= rewards) & (rewards <= high)).all()
        assert dones.shape == (B,) and dones.dtype == bool
        assert dones.all() == (turn == CAP)  # an idle utterance ends nothing before the cap
    assert not np.asarray(env.successes).any()
    # A finished row ignores its actions: reward 0, done stays, observation unchanged.
    again, rewards, dones = env.step([IDLE] * B)
    assert again == observations and not np.asarray(rewards).any() and np.asarray(dones).all()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_the_same_seeds_and_actions_give_the_same_episodes(name):
    seeds = [7, 8, 9, 10]
    first, second = MAKERS[name](), MAKERS[name]()
    plan = [[IDLE, "look", IDLE, "Is it an animal?"], ["north", IDLE, "Is the city in Europe?", IDLE]]
    a, b = _play(first, seeds, plan), _play(second, seeds, plan)
    assert a[0] == b[0] and first.hidden == second.hidden
    for (obs_a, rew_a, done_a), (obs_b, rew_b, done_b) in zip(a[1:], b[1:]):
        assert obs_a == obs_b
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(done_a, done_b)
    # Resetting the same environment replays the same episodes.
    assert _play(first, seeds, plan)[0] == a[0]


def test_every_built_in_task_is_a_task_object():
    assert set(tasks.names()) >= {"guess_city", "twenty_questions", "twenty_questions_subset", "detective", "webshop"}
    for name in tasks.names():
        task = tasks.get(name)
        assert isinstance(task, base.Task) and task.name == name
        assert set(task.default_mix) <= set(task.players)
        assert task.informative is None or task.informative in task.players


# --- a user's own task, named by its dotted path ------------------------------------------


@pytest.fixture
def echo_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures"))
    return "echo_task:TASK"


def test_a_users_task_passes_the_contract_and_trains_with_no_package_change(tmp_path, echo_path):
    from archer_jax import trainer
    from experiments.configs import guess_city

    task = tasks.get(echo_path)
    assert isinstance(task, base.Task) and task.name == "echo"
    env = task.make_env({"max_turns": CAP}, B)
    assert isinstance(env, base.BatchedEnv)
    returns, successes, _ = base.play_seeds(task, {"max_turns": CAP}, task.players["echo"], range(B))
    assert successes.all() and (returns == 1.0).all()

    config = guess_city.get_config("smoke")
    config.task = echo_path
    run = trainer.train(config, tmp_path / "echo")
    assert run.progress["finished"] == ["bc", "archer"]
    assert isinstance(run.runner.env, type(env))
    rows = [json.loads(line) for line in (tmp_path / "echo" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/return_mean" in r for r in rows if r["stage"] == "archer")
    # The critic probe replays a user's task from seeds and actions; the guess probe,
    # for question games only, says so.
    from experiments import probe_critic

    summary, _ = probe_critic.probe(run, states=2, samples=2, rollouts=2, seed=0)
    assert summary["replay_mismatches"] == 0 and summary["episodes"] == 8
    run.checkpointer.close()
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent / "fixtures"),
                                                            os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "experiments.probe_guesses", "--config=guess_city.py:smoke",
                          f"--config.task={echo_path}", f"--workdir={tmp_path / 'echo'}"],
                         cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=300, env=env_vars)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: config.task = {echo_path!r} is not a question game: this probe scores the guesses a question game "
        "allows; python -m experiments.probe_critic probes the critic of any task")


def test_a_task_name_that_is_not_a_task_is_one_clear_error(echo_path):
    from archer_jax.config_checks import ConfigError

    with pytest.raises(ConfigError, match=r"config.task = 'chess': unknown task; the built-in ones are \["):
        tasks.get("chess")
    with pytest.raises(ConfigError, match="cannot import 'NOPE' from module 'echo_task'"):
        tasks.get("echo_task:NOPE")
    with pytest.raises(ConfigError, match="cannot import 'TASK' from module 'no_such_module'"):
        tasks.get("no_such_module:TASK")
    with pytest.raises(ConfigError, match=r"is not a task object .*'make_env'"):
        tasks.get("echo_task:WORDS")
