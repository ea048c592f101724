"""ArCHer on Guess My City (LMRL-Gym; ArCHer paper, Section 6).

    python -m experiments.run --config=experiments/configs/guess_city.py:demo --workdir=/tmp/gc_demo

Variants (the part after ':'):
  paper  (default) GPT-2 actor and RoBERTa-base critic from Hugging Face weights, the
         paper's hyperparameters; for a TPU/GPU host. Set actor.checkpoint and
         critic.checkpoint to local folders where the machine is offline.
  demo   CPU, no downloads: tiny models trained from scratch with a word tokenizer built
         from the task's own text; simulated data, BC warm start, then ArCHer. About
         10-15 minutes on 2 CPU cores; the greedy evaluation return rises above the BC
         start (README has the measured numbers).
  smoke  seconds; for tests.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    return common.get_config("guess_city", arg)
