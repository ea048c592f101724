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
         return -13.9), BC warm start, then 50 ArCHer iterations (common.py's _demo
         says the update; results and times: README, Results and docs/results.md).
  smoke  seconds; for tests.
"""

from experiments.configs import common


# Turns are at most 10 word-tokens (14 the winning one): 207 over 20 turns. Observations
# grow from one question to twenty turns: rows grouped by length (critic phase 6.1-6.3 ->
# 3.5-3.8 s; the Subset's, with its privileged critic, 6.0-7.1 -> 3.9-4.4 s;
# docs/benchmarks.md).
PRESETS = common.TaskPresets(
    paper=dict(actor_lr=1e-6, critic_lr=2e-5, warmup_iter=20, rollout_size=128, gamma=0.95),
    demo_items=20, demo_turns=20, demo_obs_len=208, demo_iterations=50, demo_length_buckets=(64, 128, 208))


def get_config(arg: str | None = None):
    return common.get_config("twenty_questions", arg, PRESETS)
