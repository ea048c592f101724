"""ArCHer on Twenty Questions (LMRL-Gym; ArCHer paper, Section 6): 157 objects.

    python -m experiments.run --config=experiments/configs/twenty_questions.py:demo --workdir=/tmp/tq_demo

Variants (the part after ':'):
  paper  (default) GPT-2 actor and RoBERTa-base critic from Hugging Face weights, the
         paper's hyperparameters (actor lr 1e-6, 20 warm-up iterations); for a TPU/GPU
         host. Set actor.checkpoint and critic.checkpoint to local folders where the
         machine is offline. The paper's oracle is a fine-tuned flan-t5; here the
         embedded knowledge-base oracle answers.
  demo   CPU, no downloads: tiny models trained from scratch with a word tokenizer built
         from the task's own text; 20 hidden objects, 20-turn cap, 208-token
         observations (a whole templated dialogue fits); simulated data (57% wins,
         return -14.1), BC warm start, then 50 ArCHer iterations (common.py's _demo
         says the update; results and times: README, Results and docs/results.md).
  smoke  seconds; for tests.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    return common.get_config("twenty_questions", arg)
