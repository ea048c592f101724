"""ArCHer on Detective (ArCHer paper, Section 6): the Inform game detective.z5 on the real
Z-machine (jericho), 50-step cap, reward = the game's score increase.

    python -m experiments.run --config=experiments/configs/detective.py:smoke --workdir=/tmp/detective_smoke

The game file: ``config.env.game_file`` (default: ``../shared/games/detective.z5`` beside
this repository, the copy the tests and CI use). Elsewhere get detective.z5 from the
Jericho game suite (https://github.com/BYU-PCCL/z-machine-games, folder
jericho-game-suite/) or the ArCHer repository (dataset/detective.z5) and pass
``--config.env.game_file=PATH``. jericho is an extra: ``pip install -e '.[detective]'``.

Variants (the part after ':'):
  paper  (default) GPT-2 actor and RoBERTa-base critic from Hugging Face weights, the
         paper's hyperparameters, valid actions shown as in the reference; for a
         TPU/GPU host.
  demo   CPU, no downloads: tiny models from scratch with a word tokenizer built from
         the scripted players' games; valid actions not shown (jericho's valid-action
         search costs up to 0.5 s per new state); simulated data in which the most
         common player, `careless_80`, walks the walkthrough's route but examines
         most of the objects it should take, so greedy BC learns that habit (300 of
         350 points); BC warm start, then ArCHer, which must find the 10 points each
         TAKE earns (docs/detective_notes.md, sections 8-9: the runs of this
         config, 10-11 minutes alone).
  smoke  seconds; for tests.
"""

from pathlib import Path

from experiments.configs import common

DEFAULT_GAME_FILE = str(Path(__file__).resolve().parents[3] / "shared" / "games" / "detective.z5")

# Without valid actions the reset observation is 251 word-tokens (the opening text and the
# room text twice), half of the later ones under 120, 1% over 380 (left-truncated: the
# last response and the step counter stay); commands are 1-4 words.
PRESETS = common.TaskPresets(
    paper=dict(actor_lr=1e-5, critic_lr=2e-5, warmup_iter=10, rollout_size=128, gamma=0.98),
    demo_items=0, demo_turns=50, demo_obs_len=256, demo_iterations=30)


def get_config(arg: str | None = None):
    c = common.get_config("detective", arg, PRESETS)
    c.env.max_turns = 50 if c.variant != "smoke" else c.env.max_turns  # the paper's step cap
    c.env.game_file = DEFAULT_GAME_FILE  # path of detective.z5 (module docstring: where to get it)
    # Valid actions in the observation, as the reference (each new game state costs jericho
    # 0.2-0.5 s of search; cached by world state).
    c.env.show_valid_actions = c.variant == "paper"
    c.env.word_extractor = "auto"  # 'auto' (spaCy's model if installed, else regex) | 'spacy' | 'regex'
    c.tokens.action_len = 8 if c.variant != "paper" else c.tokens.action_len  # commands are 1-4 words
    if c.variant == "demo":
        c.data.num_episodes = 400
        # Mostly `careless_80` (each TAKE examined instead with probability 0.8): greedy BC
        # keeps the careless habit (300 points) while every TAKE keeps 0.1-0.3 of BC's
        # probability at T=1, within the reach of sampling (docs/detective_notes.md, sections 6-7).
        c.data.mix = "walkthrough=0.05,careless_80=0.75,random=0.2"
        c.bc.iterations = 4
        c.archer.iterations = 15
        c.archer.warmup_iter = 5
        # A reward reaches the critic's estimate of a state k turns before it only through
        # k chained TD targets; in this 50-turn game the 30 steps per iteration of the
        # question games left the critic 1.2 below the returns and anti-correlated with
        # them after 11 iterations, 90 brought it to the returns by iteration 11 (section 7).
        c.archer.critic_epochs = 90
        # The anchors are in reward units per nat: at reward_scale 0.01 a TAKE is worth 0.1,
        # so the question games' 0.1 per nat would outweigh it; 0.01 keeps their ratio to a
        # step's reward.
        c.archer.kl_coef = 0.01
        c.archer.forward_kl_coef = 0.01
        # Rollouts stay at the demos' 0.3 (near the greedy route); the actor phase samples
        # its 4 commands per state at 0.6: at 0.3 one BC seed gave TAKE 0.000-0.017 at
        # the five TAKE states, the 4 samples were identical at every state and the actor
        # had no gradient; at 1 the samples left the route at every state and greedy play
        # lost it (50 points). Section 8.
        c.archer.actor_temperature = 0.6
        # In hundreds of points the discounted returns (about 2) are of the size the demo
        # critic fits within a few iterations at its lr; in points (about 190) they were
        # not reached in 20 (docs/detective_notes.md).
        c.archer.reward_scale = 0.01
        # Every game restarts from one saved state: greedy play is one deterministic game
        # (greedy rollouts would be copies of it), and one batch is the whole evaluation.
        c.archer.greedy_rollouts = 0.0
        c.archer.eval_size = c.archer.rollout_batch
        c.archer.eval_every = 5
    if c.variant == "smoke":
        c.tokens.obs_len = 256  # the reset observation whole
        c.data.num_episodes = 16
    return c
