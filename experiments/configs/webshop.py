"""ArCHer on WebShop (ArCHer paper, Section 6): shopping on a web site over real HTTP,
10-step cap, reward = WebShop's purchase score in [0, 1] (archer_jax/envs/webshop.py).

    python -m experiments.run --config=experiments/configs/webshop.py:smoke --workdir=/tmp/webshop_smoke

The shop: by default the embedded one (archer_jax/envs/webshop_server.py, a generated
catalogue of ``config.env.num_products`` products), started inside the run on a free
port. To use another server, start it and pass its URL, e.g. the embedded shop as its own
process (``python -m archer_jax.envs.webshop_server --port 3000``) or princeton-nlp's
WebShop: ``--config.env.url=http://127.0.0.1:3000``.

Variants (the part after ':'):
  paper  (default) GPT-2 actor and RoBERTa-base critic from Hugging Face weights, the
         paper's hyperparameters (actor lr 1e-5, critic lr 2e-5, warm-up 20 iterations,
         512 rollouts per iteration, gamma 0.9, 10-step cap) on instructions 2000-2099
         as the reference; for a TPU/GPU host.
  demo   CPU, no downloads: tiny models from scratch with a word tokenizer built from the
         shop's own texts; simulated data from the scripted shoppers (informed, careless
         and random), BC warm start, then ArCHer with the data's turns in its replay buffer
         and advantage-weighted regression on the buffer's turns beside the policy
         gradient (config.archer.awr_coef). 3 seeds: +0.07, +0.06, +0.05 over the BC
         start (docs/results.md; docs/research_log.md, stops 46-53).
  smoke  seconds; for tests.
"""

from experiments.configs import common

# With the demo's word tokenizer a start page is about 50 tokens, an item page 90-130, a
# results page (10 products) 280-360; left truncation keeps the instruction and the step
# counter, which come last. A search query is at most about 20 words.
PRESETS = common.TaskPresets(
    paper=dict(actor_lr=1e-5, critic_lr=2e-5, warmup_iter=20, rollout_size=512, gamma=0.9),
    demo_items=0, demo_turns=10, demo_obs_len=368, demo_iterations=30)


def get_config(arg: str | None = None):
    c = common.get_config("webshop", arg, PRESETS)
    c.env.max_turns = 10 if c.variant != "smoke" else 6  # the paper's step cap
    c.env.url = ""  # a WebShop server's base URL ('http://host:port'); '' = the embedded shop, in this process
    c.env.catalogue_seed = 0  # the embedded shop's catalogue and instructions
    c.env.num_products = 3000  # products of the embedded shop
    c.env.goals_start = 2000  # seed s plays instruction goals_start + s mod num_goals (paper: 2000-2099)
    c.env.num_goals = 100
    c.env.timeout = 10.0  # seconds per HTTP request
    c.env.retries = 3  # extra tries of a failed request (each counted in */oracle_failures)
    c.env.backoff = 0.05  # seconds before the first retry, doubled each retry
    c.env.num_threads = 8  # sessions fetched concurrently
    if c.variant == "paper":
        c.tokens.obs_len = 480  # a results page in GPT-2 tokens; RoBERTa reads at most 512
    else:
        c.tokens.action_len = 24  # search[...] with the instruction's content words
    if c.variant == "demo":
        # Pages of 50 to 360 tokens: the phases and rollouts run each group of rows at
        # the width it needs (2.1-2.5x faster update steps, docs/benchmarks.md).
        c.tokens.length_buckets, c.tokens.bucket_chunks = (64, 128, 192, 256, 320), 8
        c.data.num_episodes = 2000
        # Shoppers who know what to buy but skip each option with probability 0.5 (the
        # data holds the alternatives at every item page), the data's turns in the replay
        # buffer so the critic is trained where they differ, a light anchor to the BC
        # policy, and AWR on the buffer's turns: at T = 0.3 the actor's own samples of a
        # state mostly coincide, so the policy gradient alone has nothing to rank
        # (docs/research_log.md, stops 50-53).
        c.data.mix = "informed=0.05,careless_50=0.75,random=0.2"
        c.archer.offline_data = True
        c.archer.kl_coef = c.archer.forward_kl_coef = 0.02
        c.archer.awr_coef, c.archer.awr_beta = 1.0, 10.0
    if c.variant == "smoke":
        c.tokens.obs_len = 128  # the start and item pages whole, results pages truncated
        c.tokens.action_len = 16
        c.env.num_products = 300
        c.data.num_episodes = 32
    return c
