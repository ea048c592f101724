"""The guess probe: its statistics by hand, the states it picks, the guesses it scores
(with the run's real actor and critic), and its command's errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archer_jax import tasks, trainer
from archer_jax.algorithms import archer
from archer_jax.data import tokenization
from archer_jax.envs import question_game
from experiments import probe_guesses
from experiments.configs import guess_city

ROOT = Path(__file__).parent.parent


def test_guess_statistics_by_hand():
    # Two states, three guesses. State 0 refuted guess 0, state 1 refuted guess 2.
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    q = np.array([[-1.0, 0.0, -2.0], [-3.0, -1.0, -2.0]])
    refuted = np.array([0, 2])
    allowed = np.array([[False, True, False], [False, True, False]])
    start = np.array([[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    got = probe_guesses.guess_statistics(np.log(p), q, refuted, allowed, np.log(start))
    assert (got["states"], got["guesses"], got["allowed_per_state"]) == (2, 3, 1.0)
    assert got["actor_argmax_is_refuted"] == 0.5  # state 0 only
    assert got["actor_p_refuted"] == pytest.approx((0.5 + 0.3) / 2)
    assert got["actor_p_best_other"] == pytest.approx((0.3 + 0.6) / 2)
    assert got["actor_allowed_share"] == pytest.approx((0.3 + 0.6) / 2)
    assert got["start_argmax_is_refuted"] == 0.5  # state 1 only
    assert got["start_p_refuted"] == pytest.approx((0.2 + 0.4) / 2)
    # Q(refuted) - mean Q(others): -1 - (-1) = 0 (not below), -2 - (-2) = 0.
    assert got["critic_refuted_below_others"] == 0.0
    assert got["critic_refuted_minus_others"] == pytest.approx(0.0)
    assert got["critic_argmax_allowed"] == 1.0  # guess 1 tops both states
    # Allowed minus disallowed (the refuted one excluded): 0 - (-2) and -1 - (-3).
    assert got["critic_allowed_minus_disallowed"] == pytest.approx(2.0)
    assert "start_p_refuted" not in probe_guesses.guess_statistics(np.log(p), q, refuted, allowed)


def test_refuted_guess_states_are_each_games_first_refuted_guess():
    guesses = ["Is the city Lima?", "Is the city Dubai?"]
    histories = [
        [("Which continent is the city in?", "The city is in Asia."), ("Is the city Dubai?", "No, the city is not "
                                                                       "Dubai."), ("Is the city Lima?", "No.")],
        [("Is the city Lima?", question_game.WIN_ANSWER)],  # a win is not a refuted guess
        [("Is the city Paris?", "No."), ("Is the city Lima?", "No.")],  # Paris is not hidden in this game
    ]
    assert probe_guesses.refuted_guess_states(histories, guesses) == [(0, 1), (2, 1)]


@pytest.mark.parametrize("name", [n for n in tasks.names() if hasattr(tasks.get(n), "table")])
def test_every_hidden_item_has_the_players_winning_guess(name):
    task, table = tasks.get(name).game({}), tasks.get(name).table
    index = probe_guesses.item_guesses(task, table)
    assert len(index) == len(task.items)
    assert all(task.is_success(item, table.guesses[j]) for item, j in zip(task.items, index))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A smoke run's state before any training, with a KL anchor (so a start policy)."""
    config = guess_city.get_config("smoke")
    config.bc.iterations, config.archer.kl_coef = 0, 0.1
    return trainer.setup(config, tmp_path_factory.mktemp("guess_probe"))


def test_guesses_are_scored_by_the_runs_actor_and_critic(smoke_run):
    run = smoke_run
    table = tasks.get("guess_city").table
    index = probe_guesses.item_guesses(run.runner.env.task, table)
    guesses = [table.guesses[j] for j in index[:5]]
    prefixes = [[("Which continent is the city in?", "The city is in Asia."), (guesses[0], "No.")],
                [(guesses[1], "No.")], [(guesses[2], "No.")]]  # 3 states x 5 guesses: 2 batches of 8
    q, lp, start = probe_guesses.score_guesses(run, prefixes, guesses)
    assert q.shape == lp.shape == start.shape == (3, 5)
    np.testing.assert_allclose(start, lp, atol=1e-5)  # before any update the start policy is the actor

    # Row (2, 3) scored alone, straight from the models.
    c, pad = run.config, run.hp.pad_id
    obs, obs_mask = tokenization.encode_left(run.tokenizer, [question_game.format_observation(prefixes[2])],
                                             c.tokens.obs_len, pad_id=pad)
    act, act_mask = tokenization.encode_right(run.tokenizer, [guesses[3]], c.tokens.action_len, pad_id=pad,
                                              append_ids=run.hp.stop_ids[:1])
    want_lp = archer.action_logprobs(run.actor, run.state.actor_params, obs, obs_mask, act, act_mask).sum()
    o, om = run.bridge(obs, obs_mask)
    a, am = run.bridge(act, act_mask)
    out = run.critic.apply({"params": run.state.critic_params}, o, om, a, am)
    assert lp[2, 3] == pytest.approx(float(want_lp), abs=1e-4)
    assert q[2, 3] == pytest.approx(float(np.minimum(out.q1, out.q2)[0]), abs=1e-4)

    summary, details = probe_guesses.probe(run, table, games=8)  # a random actor: any number of states
    assert summary["games"] == 8 and summary["states"] == len(details)
    assert -run.config.env.max_turns <= summary["greedy_return"] <= 0  # -1 a turn, 0 for the winning one


def test_training_on_the_states_is_the_runs_own_actor_step_there(smoke_run):
    import dataclasses
    import functools

    import jax

    from archer_jax import train_state

    run = smoke_run
    prefixes = [[("Which continent is the city in?", "The city is in Asia."), ("Is the city Dubai?", "No.")],
                [("Is the city Lima?", "No.")], [("Is the city Cairo?", "No.")]]
    buffer = probe_guesses.states_buffer(run, prefixes)
    assert int(buffer.size) == 3 and buffer.capacity == 3
    obs, _ = tokenization.encode_left(run.tokenizer, [question_game.format_observation(p) for p in prefixes],
                                      run.config.tokens.obs_len, pad_id=run.hp.pad_id)
    np.testing.assert_array_equal(np.asarray(buffer.obs), obs)

    before = jax.tree.map(np.asarray, run.state.actor_params)
    got = probe_guesses.train_on_states(run, prefixes, steps=3, every=2)
    assert [step for step, _ in got] == [2, 3]
    # The run's own step, twice by hand: the same actor; the critic is never touched.
    tx = train_state.make_optimizer(run.config.actor.lr, run.config.actor.max_grad_norm)
    step = jax.jit(functools.partial(archer._actor_step, actor=run.actor, critic=run.critic, hp=run.hp,
                                     bridge=run.bridge, tx=tx, mesh=None, rules=run.config.mesh.rules))
    state = run.state
    for _ in range(2):
        state, _ = step(state, buffer)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), state.actor_params, got[0][1].actor_params)
    jax.tree.map(np.testing.assert_array_equal, got[1][1].critic_params, run.state.critic_params)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before),
                                                        jax.tree.leaves(got[1][1].actor_params)))
    jax.tree.map(np.testing.assert_array_equal, before, run.state.actor_params)  # the run's state is kept

    no_anchor = dataclasses.replace(run, state=run.state.replace(ref_actor_params=None))
    with pytest.raises(probe_guesses.probe_critic.ProbeError, match="--kl_coef=0.1: the run keeps no start policy"):
        probe_guesses.train_on_states(no_anchor, prefixes, steps=1, every=1)
    assert len(probe_guesses.train_on_states(no_anchor, prefixes, steps=1, every=1, kl_coef=0.0)) == 1

    # On the run's replay buffer instead: the actor step as training runs it.
    filled = dataclasses.replace(run, buffer=run.buffer.replace(
        obs=run.buffer.obs.at[:3].set(buffer.obs), obs_mask=run.buffer.obs_mask.at[:3].set(buffer.obs_mask),
        size=np.int32(3)))
    on_buffer = probe_guesses.train_on_states(filled, prefixes, steps=2, every=2, on_buffer=True)
    state = run.state
    for _ in range(2):
        state, _ = step(state, filled.buffer)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), state.actor_params,
                 on_buffer[0][1].actor_params)


def test_command_errors_are_one_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.probe_guesses", "--config=guess_city.py:smoke",
                          f"--workdir={tmp_path / 'missing'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: --workdir={tmp_path / 'missing'}: no such folder")
    assert "Traceback" not in out.stderr
