"""The compile counter behind ``time/compiles`` counts. That runs compile nothing after their
first iteration is checked on whole runs: tests/test_resume.py (a subprocess, evaluations on
even iterations) and test_trainer.py::test_lm_oracle_answers_the_online_games (the T5 oracle)."""

import jax
import numpy as np

from archer_jax import trainer


def test_the_counter_counts_each_compilation():
    trainer.CompileCounter.register()
    add = jax.jit(lambda x: x * 3.0 + 1.0)  # a new function: nothing cached
    before = trainer.CompileCounter.count
    add(np.ones(5, np.float32)).block_until_ready()
    assert trainer.CompileCounter.count == before + 1
    add(np.zeros(5, np.float32)).block_until_ready()  # same shape: the compiled program is reused
    assert trainer.CompileCounter.count == before + 1
    add(np.ones(6, np.float32)).block_until_ready()  # a new shape compiles again
    assert trainer.CompileCounter.count == before + 2

