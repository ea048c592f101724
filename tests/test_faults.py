"""Faults cost a counter, not a run: an oracle that fails 5% of its calls, in a real
smoke run. The faults are injected around the oracle of every question game alike, so
one game (Guess My City) covers them; its run is compared with a run without faults."""

import json

import numpy as np

from archer_jax import trainer
from archer_jax.envs.question_game import BatchedQuestionGame, QuestionGame
from experiments.configs import guess_city



class FlakyOracle:
    """Raises on a seeded 5% of calls, otherwise answers as ``inner`` does."""

    def __init__(self, inner, rate=0.05, seed=0):
        self.inner, self.rate, self.rng, self.failed = inner, rate, np.random.default_rng(seed), 0

    def answer(self, hidden_items, questions):
        if self.rng.random() < self.rate:
            self.failed += 1
            raise TimeoutError("injected fault")
        return self.inner.answer(hidden_items, questions)


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _outcomes(rows):
    """Every row's metrics that the environment decides (returns, successes, turns)."""
    keep = ("rollout/return_mean", "rollout/success_rate", "rollout/turns", "eval/return_mean", "eval/success_rate",
            "eval/turns_mean", "env_steps")
    return [{k: r[k] for k in keep if k in r} for r in rows]


def test_a_run_with_a_failing_oracle_finishes_and_counts_the_failures(tmp_path, monkeypatch):
    config = guess_city.get_config("smoke")

    # Every environment's oracle fails now and then: the simulated data's games, the
    # rollouts' and the evaluations' (the tokenizer's corpus reads the knowledge base).
    oracles = []

    def flaky_env(self, env_config, batch_size, oracle=None):
        game = self.game(env_config, oracle)
        oracles.append(FlakyOracle(game.oracle))
        return BatchedQuestionGame(game.with_oracle(oracles[-1]), batch_size)

    monkeypatch.setattr(QuestionGame, "make_env", flaky_env)
    run = trainer.train(config, tmp_path / "flaky")
    rows = _rows(tmp_path / "flaky")
    failed = sum(r.get("rollout/oracle_failures", 0) + r.get("eval/oracle_failures", 0) for r in rows)
    assert run.progress["finished"] == ["bc", "archer"]
    # Every failure of the rollout and evaluation games counted, in metrics.jsonl (the
    # simulated data's games met flaky oracles too, and were retried).
    assert failed == run.runner.env.task.oracle.failed > 0
    assert rows[-1]["env_steps"] == sum(r.get("rollout/turns", 0) for r in rows)
    # A retried call answers as the first would have: the run played the same episodes
    # as one without faults and kept every transition it collected.
    monkeypatch.undo()
    trainer.train(config, tmp_path / "clean")
    assert _outcomes(rows) == _outcomes(_rows(tmp_path / "clean"))
