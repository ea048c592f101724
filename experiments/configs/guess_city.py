"""ArCHer on Guess My City (LMRL-Gym; ArCHer paper, Section 6).

    python -m experiments.run --config=experiments/configs/guess_city.py:demo --workdir=/tmp/gc_demo

Variants (the part after ':'):
  paper  (default) GPT-2 actor and RoBERTa-base critic from Hugging Face weights, the
         paper's hyperparameters; for a TPU/GPU host. Set actor.checkpoint and
         critic.checkpoint to local folders where the machine is offline.
  demo   CPU, no downloads: tiny models trained from scratch with a word tokenizer built
         from the task's own text; 20 hidden cities, 10-turn cap, 208-token observations
         (a whole dialogue fits); simulated data, BC warm start, then 50 ArCHer
         iterations (results and times: README, Results and docs/results.md).
  smoke  seconds; for tests.
"""

from experiments.configs import common


# The longest 9-turn prefix of 400 simulated dialogues is 191 word-tokens (its answers
# are long: a turn takes 16 tokens on average), so 208 observation tokens hold a whole
# 10-turn dialogue. Observations grow from one question to ten turns: the phases and
# rollouts run each group of rows at the width it needs (critic phase 5.9-6.3 -> 4.3-4.4 s,
# docs/benchmarks.md).
PRESETS = common.TaskPresets(
    paper=dict(actor_lr=1e-5, critic_lr=2e-5, warmup_iter=10, rollout_size=128, gamma=0.95),
    demo_items=20, demo_turns=10, demo_obs_len=208, demo_iterations=50, demo_length_buckets=(64, 128, 208))


def get_config(arg: str | None = None):
    return common.get_config("guess_city", arg, PRESETS)
