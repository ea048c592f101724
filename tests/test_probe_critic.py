"""The critic probe: its statistics by hand, its Monte-Carlo rollouts, and the command
on a smoke run folder."""

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from archer_jax import critic_probe, trainer
from experiments import probe_critic

ROOT = Path(__file__).parent.parent
SMOKE = "--config=guess_city.py:smoke"
NO_BC = "--config.bc.iterations=0"  # the fixture's run skips BC (no dataset to simulate)


def _probe(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.probe_critic", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def smoke_run(archer_smoke_run):
    return archer_smoke_run


# Two states, three utterances, two rollouts each (hand-worked in the comments).
RETURNS = np.array([[[0, 0], [-1, -1], [-2, 0]],  # MC means 0, -1, -1; standard errors 0, 0, 1
                    [[-3, -3], [-3, -3], [-1, -1]]], float)  # MC means -3, -3, -1; all exact
Q = np.array([[1.0, 0.0, 5.0], [2.0, 1.0, 1.0]])
V = np.array([0.0, -1.0])


def test_ranking_statistics_by_hand():
    got = critic_probe.ranking_statistics(Q, V, RETURNS)
    # Decided pairs (gap > sqrt(se_i^2 + se_j^2)): state 0 (0, 1) [gap 1 > 0]; state 1
    # (0, 2) and (1, 2) [gap 2 > 0]. Not: state 0 (0, 2) [gap 1, not > 1] and the two
    # equal means. Q orders (0, 1) right, (0, 2) wrong, and ties (1, 2): (1 + 0 + 0.5) / 3.
    assert (got["pairs"], got["decided_pairs"]) == (6, 3)
    assert got["pair_accuracy"] == pytest.approx(0.5)
    # Centred per state: Q [-1, -2, 3 | 2/3, -1/3, -1/3], MC [2/3, -1/3, -1/3 | -2/3, -2/3, 4/3]:
    # dot -5/3, norms^2 44/3 and 10/3.
    assert got["within_corr"] == pytest.approx(-5 / math.sqrt(440))
    # Per state: -1 / sqrt(14 * 2/3) and (-2/3) / sqrt(2/3 * 8/3) = -1/2.
    assert got["mean_state_corr"] == pytest.approx((-1 / math.sqrt(28 / 3) - 0.5) / 2)
    assert got["states_with_corr"] == 2 and got["states_constant_mc"] == 0
    assert got["v_corr"] == pytest.approx(1.0)  # V 0 > -1 where the state means are -2/3 > -7/3
    assert got["v_bias"] == pytest.approx(1.0)  # (2/3 + 4/3) / 2
    assert got["q_bias"] == pytest.approx(19 / 6)  # Q - MC: 1, 1, 6, 5, 4, 2
    # Halves: rollout 0 [0, -1, -2 | -3, -3, -1] vs rollout 1 [0, -1, 0 | -3, -3, -1];
    # centred dot 8/3, norms^2 14/3 and 10/3.
    r = 8 / math.sqrt(140)
    assert got["mc_split_half_corr"] == pytest.approx(r)
    assert got["mc_noise_ceiling"] == pytest.approx(math.sqrt(2 * r / (1 + r)))
    assert (got["states"], got["utterances_per_state"], got["rollouts"]) == (2, 3, 2)


def test_ranking_statistics_undefined_and_bad_shapes():
    flat = critic_probe.ranking_statistics(Q, V, np.full((2, 3, 2), -1.0))
    assert math.isnan(flat["pair_accuracy"]) and math.isnan(flat["within_corr"]) and flat["decided_pairs"] == 0
    assert flat["states_constant_mc"] == 2
    assert json.loads(json.dumps(critic_probe.json_safe(flat)))["pair_accuracy"] is None
    with pytest.raises(ValueError, match=r"K >= 2 .* M >= 2"):
        critic_probe.ranking_statistics(Q[:, :1], V, RETURNS[:, :1])
    with pytest.raises(ValueError, match="returns \\[N, K, M\\]"):
        critic_probe.ranking_statistics(Q, V, RETURNS[0])


def test_rollouts_replay_the_prefix_then_say_the_utterance(smoke_run):
    from archer_jax.data import tokenization

    run, _ = smoke_run
    env, question = run.runner.env, "Is the city in Europe?"
    env.reset([123] * env.batch_size)
    observation = env.step([question] * env.batch_size)[0][0]
    hidden = env.hidden[0]
    obs, obs_mask = tokenization.encode_left(run.tokenizer, [observation], run.config.tokens.obs_len,
                                             pad_id=run.hp.pad_id)
    states = probe_critic.States(seeds=[123], hidden=[hidden], prefixes=[[question]], greedy=[False],
                                 obs=obs, obs_mask=obs_mask)
    utterances = [f"Is the city {hidden}?", "Is the city in Asia?"]
    returns, mismatches, _ = probe_critic.mc_returns(run, states, utterances, 2, 3, jax.random.key(0))
    assert returns.shape == (1, 2, 3) and mismatches == 0
    np.testing.assert_array_equal(returns[0, 0], 0.0)  # wins at the state's turn
    # Smoke: a 4-turn cap, so after the prefix's turn the miss costs 1 and the policy's
    # two turns left at most 0.95 + 0.95^2 more.
    assert np.all(returns[0, 1] <= -1.0) and np.all(returns[0, 1] >= -(1 + 0.95 + 0.95**2) - 1e-6)
    states.prefixes[0] = ["Is the city in Asia?"]  # replays to another dialogue than the recorded state
    _, mismatches, _ = probe_critic.mc_returns(run, states, utterances, 2, 3, jax.random.key(0))
    assert mismatches == 6  # every rollout's replayed prefix is counted
    states.prefixes[0] = [question] * run.config.env.max_turns  # the game ends before the state's turn
    _, mismatches, _ = probe_critic.mc_returns(run, states, utterances, 2, 3, jax.random.key(0))
    assert mismatches == 6


def test_probe_compiles_nothing_per_state(smoke_run):
    run, _ = smoke_run
    probe_critic.probe(run, states=2, samples=2, rollouts=2, seed=0)
    summary, detail = probe_critic.probe(run, states=7, samples=3, rollouts=3, seed=1)  # other N, K, M
    assert summary["compiles"] <= 1  # the critic scorer, jitted per call; generate is reused
    assert len(detail) == 7 and summary["episodes"] == 7 * 3 * 3


def test_probe_command_writes_its_numbers(smoke_run):
    _, workdir = smoke_run
    before = (workdir / "metrics.jsonl").read_text()
    out = _probe(SMOKE, NO_BC, f"--workdir={workdir}", "--states=6", "--samples=3", "--rollouts=4")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    step = trainer.STAGE_STRIDE + 2  # the smoke run's last checkpoint: after its 2 ArCHer iterations
    path = workdir / "probe" / f"critic_probe_{step}.json"
    assert summary["file"] == str(path) and summary["checkpoint_step"] == step and summary["stage"] == "archer"
    saved = json.loads(path.read_text())
    assert {k: saved[k] for k in summary if k != "file"} == {k: v for k, v in summary.items() if k != "file"}
    assert (summary["states"], summary["utterances_per_state"], summary["rollouts"]) == (6, 3, 4)
    assert summary["pairs"] == 6 * 3 and 0 <= summary["decided_pairs"] <= summary["pairs"]
    assert summary["episodes"] == 6 * 3 * 4 and summary["replay_mismatches"] == 0
    detail = saved["states_detail"]
    assert len(detail) == 6 and all(len(s["utterances"]) == 3 for s in detail)
    # The summary is the statistics of the scores and returns it saved, recomputed here.
    q = np.array([[u["q"] for u in s["utterances"]] for s in detail])
    v = np.array([s["v"] for s in detail])
    returns = np.array([[u["returns"] for u in s["utterances"]] for s in detail])
    assert summary["mc_return_mean"] == pytest.approx(float(returns.mean()), abs=1e-5)
    recomputed = critic_probe.json_safe(critic_probe.ranking_statistics(q, v, returns))
    for key in ("pair_accuracy", "within_corr", "v_corr", "decided_pairs"):
        want = recomputed[key]
        assert summary[key] is None if want is None else summary[key] == pytest.approx(want, abs=1e-5), key
    assert all(0 <= s["turn"] < 4 and len(s["prefix"]) == s["turn"] for s in detail)
    assert (workdir / "metrics.jsonl").read_text() == before  # the run itself is left alone


def test_without_config_the_recorded_command_is_used(tmp_path):
    assert probe_critic.recorded_config_args(str(tmp_path)) == []  # nothing recorded
    (tmp_path / "run_info.jsonl").write_text(
        json.dumps({"argv": ["experiments.run", "--config=old.py", "--workdir=x"], "cwd": "/"}) + "\n"
        + json.dumps({"argv": ["experiments.run", "--config=experiments/configs/guess_city.py:smoke",
                               "--config.seed=3", f"--workdir={tmp_path}", "--distributed"], "cwd": str(ROOT)}) + "\n")
    spec = f"--config={ROOT / 'experiments/configs/guess_city.py'}:smoke"  # the last run, its path made absolute
    argv = ["probe_critic", f"--workdir={tmp_path}", "--config.seed=4"]
    assert probe_critic._with_recorded_config(argv) == ["probe_critic", spec, "--config.seed=3", *argv[1:]]
    assert probe_critic._with_recorded_config([*argv, SMOKE]) == [*argv, SMOKE]  # --config given: kept as is
    (tmp_path / "run_info.jsonl").write_text("{not json\n")
    assert probe_critic.recorded_config_args(str(tmp_path)) == []


def test_bad_inputs_get_one_message_and_exit_code_2(tmp_path):
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("")
    no_checkpoint = tmp_path / "empty_run"
    no_checkpoint.mkdir()
    for args, named in (([SMOKE, f"--workdir={a_file}"], str(a_file)),
                        ([SMOKE, f"--workdir={no_checkpoint}"], str(no_checkpoint / "checkpoints")),
                        ([f"--workdir={no_checkpoint}"], "--config=<task>.py:variant is required"),
                        ([SMOKE, f"--workdir={no_checkpoint}", "--samples=1"], "--samples=1: must be >= 2"),
                        ([SMOKE, f"--workdir={no_checkpoint}", "--config.algorithm=ppo"],
                         "config.algorithm = 'ppo' trains no utterance-level critic")):
        out = _probe(*args, timeout=120)
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert out.stderr.startswith("error: ") and named in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert not (no_checkpoint / "probe").exists()
