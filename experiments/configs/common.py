"""The config shared by every conversation task; task files pick the task and variant.

Variants: 'paper' (Hugging Face weights, paper hyperparameters), 'demo' (CPU, tiny
models from scratch, no downloads), 'smoke' (seconds, for tests). Every field carries
a comment; derived values (buffer shapes, step counts) are computed by the trainer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import ml_collections

from archer_jax import sharding

VARIANTS = ("paper", "demo", "smoke")



def _model(kind: str, checkpoint: str, **dims) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        # model family: 'gpt2' | 'llama' (actor); 'roberta' (critic encoder) | 'actor' (critic:
        # the actor's architecture and tokenizer, started from the BC actor's weights)
        kind=kind,
        checkpoint=checkpoint,  # HF folder or hub name; '' = random init from the dims below
        dtype="float32",  # compute dtype: 'float32' | 'bfloat16' (params stay float32)
        **dims,  # dims used only when checkpoint == ''
    ))


@dataclasses.dataclass(frozen=True)
class TaskPresets:
    """What a task's config file fixes for it (the rest is common to every task).

    ``paper``: the paper's hyperparameters (actor_lr, critic_lr, warmup_iter,
    rollout_size, gamma; ARCHER_FACTS.md, the reference configs). ``demo``: the demo's
    game and length, sized so that tiny models trained from scratch fit the command's
    CPU budget (15 minutes; 30 for the full Twenty Questions): hidden items (0 = all),
    turn cap, observation tokens (a whole dialogue at the turn cap, so both networks
    can tell how many turns are left), ArCHer iterations, the critic's privileged tokens
    (``critic.privileged_len``; 0 = the paper's critic), actor steps per iteration and the
    widths rows are grouped to (``tokens.length_buckets``; () = every row at obs_len).
    """

    paper: Mapping[str, float]
    demo_items: int
    demo_turns: int
    demo_obs_len: int
    demo_iterations: int
    demo_privileged_len: int = 0
    demo_actor_epochs: int = 3
    demo_length_buckets: tuple[int, ...] = ()


def get_config(task: str, arg: str | None, presets: TaskPresets) -> ml_collections.ConfigDict:
    variant = arg or "paper"
    if variant not in VARIANTS:
        raise ValueError(f"unknown config variant '{variant}' for {task}; choose one of {VARIANTS}")
    hp = presets.paper
    c = ml_collections.ConfigDict()
    # The task: 'guess_city' | 'twenty_questions' | 'twenty_questions_subset' | 'detective', or
    # your own task object by its dotted path, 'my_pkg.my_env:TASK' (archer_jax/envs/base.py).
    c.task = task
    c.variant = variant  # which preset this config started from (informational)
    c.seed = 0  # seeds model init, data simulation, rollouts and sampling
    # The algorithm and so the stages it runs. Online, after a BC warm start (config.bc),
    # with the online loop of config.archer: 'archer' (online ArCHer) | 'archer_baseline'
    # (ArCHer with a token-level baseline V(s, a_<t), the actor's architecture started
    # from the BC actor, trained toward min Q with the critic's lr) | 'filtered_bc'
    # (online filtered BC, config.filtered_bc; its actor steps are ArCHer's actor's) |
    # 'chai' (ArCHer's critic, the actor frozen at BC, acting by the best of
    # config.chai.candidates) | 'ppo' (LMRL-Gym's token-level PPO, config.ppo). Offline, on the BC data only, each with config.bc's
    # budget: 'bc' | 'offline_filtered_bc' (config.filtered_bc) | 'offline_archer'
    # (IQL critic + AWR actor, config.offline).
    c.algorithm = "archer"

    c.logging = ml_collections.ConfigDict()
    # Also log every scalar to this Weights & Biases project ('' = off; needs
    # pip install 'archer_jax[wandb]'; WANDB_MODE=offline keeps it on this machine).
    c.logging.wandb_project = ""
    c.logging.wandb_entity = ""  # the W&B team or user ('' = your default)

    # Persistent XLA compilation cache: a rerun, a resume or an evaluation of the same
    # shapes loads its compiled programs instead of compiling them again (the CPU demos'
    # phases: minutes; docs/benchmarks.md). A local folder or gs:// ('' = off;
    # $JAX_COMPILATION_CACHE_DIR, when set, wins).
    c.xla_cache_dir = "~/.cache/archer_jax/xla"

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)  # devices along ('data', 'fsdp', 'tensor'); -1 = the rest
    c.mesh.rules = sharding.DEFAULT_RULES  # logical axis -> mesh axes

    c.env = ml_collections.ConfigDict()
    c.env.max_turns = 20  # turn cap of a conversation
    c.env.oracle = "kb"  # 'kb' = embedded knowledge-base oracle (no weights) | 'lm' = a T5 answering on device
    c.env.oracle_checkpoint = ""  # 'lm' only: HF T5 folder with tokenizer (convert_reference_oracle writes one)
    c.env.num_items = 0  # hide only a fixed subset of this many items (0 = all, as in the paper)

    c.tokens = ml_collections.ConfigDict()
    c.tokens.obs_len = 256  # observation tokens kept (left-truncated: newest turns kept)
    c.tokens.action_len = 32  # max new tokens per utterance (paper: 32)
    c.tokens.terminator = "\n"  # an utterance ends at its first newline
    # The actor's framing of each observation, '{obs}' where it goes (an instruct model's
    # chat template); '' = the bare observation. The critic and the buffer never see it,
    # and tokens.obs_len counts observation tokens only.
    c.tokens.actor_template = ""
    # Widths (tokens) the jitted phases and the rollouts cut observations to: a batch's
    # rows are sorted by length and split into bucket_chunks groups, and each group runs
    # at the smallest width here that holds its longest row (the full obs_len otherwise).
    # The same results up to float rounding, faster where most columns are padding
    # (archer_jax/length_buckets.py); () = every row at obs_len.
    c.tokens.length_buckets = ()
    c.tokens.bucket_chunks = 4

    c.actor = _model("gpt2", "gpt2", n_layer=2, n_embd=128, n_head=4)
    c.actor.lr = hp["actor_lr"]  # Adam learning rate of the policy
    c.actor.max_grad_norm = 1.0  # global-norm gradient clipping
    # 'float32' | 'bfloat16': the stored dtype of the actor's weights (the optimizer's
    # moments stay float32; bf16 weights round small updates away, so pair it with LoRA,
    # whose adapters are always float32).
    c.actor.param_dtype = "float32"
    # > 0: LoRA adapters of this rank on the dense layers named in lora_targets ('q_proj',
    # 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head' for
    # Llama/Mistral; 'query', 'key', 'value', 'out', 'fc', 'proj' for GPT-2); only they
    # train (BC and RL alike), the base weights stay frozen. 0 = every weight trains.
    c.actor.lora_rank = 0
    c.actor.lora_alpha = 16.0  # the adapters' output is scaled by lora_alpha / lora_rank
    c.actor.lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    c.actor.remat = False  # recompute each block's activations in the backward pass (memory for time)
    c.critic = _model("roberta", "roberta-base", num_layers=2, hidden_size=128, num_heads=4, mlp_dim=512)
    c.critic.pooling = "pooled"  # 'pooled' (RoBERTa's pooler, as the paper) | 'mean' (of real tokens)
    c.critic.joint = False  # Q encodes obs ++ action together (True) or apart (False, as the paper)
    c.critic.remat = False  # recompute each encoder layer's activations in the backward pass (memory for time)
    c.critic.lr = hp["critic_lr"]  # Adam learning rate of the critic (encoder and heads)
    c.critic.max_grad_norm = 1.0  # global-norm gradient clipping
    # > 0: an asymmetric critic Q(h, s, a) that also reads what the environment hides
    # (env.hidden: the item, the city), this many tokens of it before the conversation.
    # Training-time information: the actor never reads it, and the policy gradient stays
    # unbiased (E over s given h of Q(h, s, a) = Q(h, a)). 0 = the paper's critic of the
    # conversation alone. Not with 'chai', whose critic picks what the agent says.
    c.critic.privileged_len = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "simulated"  # BC data: 'simulated' (scripted players) | 'lmrl_gym' (LMRL-Gym's JSON)
    c.data.dir = ""  # where the episodes' TFDS datasets live; '' = <workdir>/data
    c.data.manual_dir = ""  # 'lmrl_gym' only: folder holding <task>/train.json; '' = <data.dir>/downloads/manual
    c.data.num_episodes = 4000  # simulated episodes from the scripted questioners ('simulated' only)
    c.data.seed = 0  # simulation seed (the dataset is rebuilt only if this changes)
    # 'simulated' only: which scripted players play the episodes, as 'player=weight,...'
    # (e.g. 'walkthrough=0.2,random=0.8'); '' = the task's default mix. Another mix is
    # other data, in a folder of its own.
    c.data.mix = ""

    c.bc = ml_collections.ConfigDict()
    c.bc.iterations = 20  # BC warm-start iterations (0 skips the stage)
    c.bc.steps = 100  # optimizer steps per BC iteration (one jitted dispatch)
    c.bc.batch_size = 64  # (obs, action) rows per BC step
    c.bc.lr = 1e-4  # BC learning rate

    c.archer = ml_collections.ConfigDict()
    c.archer.iterations = 200  # online iterations (rollout + critic phase + actor phase)
    c.archer.rollout_size = hp["rollout_size"]  # trajectories collected per iteration
    c.archer.rollout_batch = 32  # environments stepped together (one generate call per turn)
    c.archer.capacity = 100_000  # replay buffer rows (transitions)
    c.archer.critic_epochs = 50  # critic steps per iteration (one jitted lax.scan)
    c.archer.actor_epochs = 3  # actor steps per iteration after warm-up
    c.archer.batch_size = 256  # transitions per critic step (paper: 8 x 32 accumulation)
    c.archer.actor_batch_size = 256  # states per actor step (the paper's: the same 256)
    c.archer.gamma = hp["gamma"]  # discount
    # Every learner (critic targets, Monte-Carlo returns, PPO's rewards) reads the
    # environment's rewards times this; returns are reported in the environment's units.
    # 1 = the paper. For a network trained at a fixed learning rate, returns of a few
    # units (the question games' -1 per turn) are reached in far fewer steps than
    # hundreds (Detective's points).
    c.archer.reward_scale = 1.0
    c.archer.tau = 0.1  # Polyak rate of the target critic, after every critic step
    c.archer.warmup_iter = hp["warmup_iter"]  # iterations that train only the critic
    c.archer.temperature = 1.0  # sampling temperature of the rollouts and of the critic's V targets
    # Temperature T > 0 of the policy the actor phase trains: it samples utterances at T
    # and differentiates log pi_T (an unbiased policy gradient at any T); 1 = the paper's.
    c.archer.actor_temperature = 1.0
    # Utterances sampled per state in the actor phase: 1 = the paper's A = min Q - min V;
    # k >= 2 = leave-one-out baseline A_i = Q(s, a_i) - mean of the other samples' Q.
    c.archer.actor_samples = 1
    # Fraction of each rollout batch played greedily (temperature 0), so the states the
    # greedy policy reaches (e.g. a wrong guess it repeats) enter the replay buffer and
    # the actor is trained there too; 0 = all sampled, as in the paper.
    c.archer.greedy_rollouts = 0.0
    c.archer.kl_coef = 0.0  # weight of KL(pi_T || BC policy) per utterance in the actor's objective (0 = none, the paper)
    # Weight of the mass-covering KL(BC policy || pi_T) per utterance, estimated on one
    # BC-policy utterance per actor state: keeps every BC mode within the policy's reach
    # (0 = none, the paper).
    c.archer.forward_kl_coef = 0.0
    # The replay buffer starts with every turn of the offline episodes (config.data, the
    # BC data): the off-policy critic learns Q(s, a) for the alternatives the offline
    # players tried, which the policy's own rollouts seldom do (hybrid RL); False = the
    # paper's buffer of the policy's rollouts alone.
    c.archer.offline_data = False
    # beta in [0, 1]: the critic's Q regresses on (1 - beta) (r + gamma V(s')) + beta G, G the
    # turn's discounted return to the episode's end (mixed Monte Carlo): a reward reaches
    # every earlier turn at once instead of one turn per target update, biased toward the
    # returns of whoever played the row (the rollouts' policy, the data's players).
    # 0 = the paper's one-step TD target.
    c.archer.mc_mix = 0.0
    # Weight of advantage-weighted regression on the buffer's turns in the actor's
    # objective (AWAC, offline ArCHer's actor): w = min(exp(awr_beta * A), awr_max_weight)
    # on log pi(a|s) of the stored actions, A by the online critic. 0 = none, the paper.
    c.archer.awr_coef = 0.0
    c.archer.awr_beta = 1.0
    c.archer.awr_max_weight = 20.0
    c.archer.eval_every = 5  # greedy evaluation every N iterations (and at iteration 0)
    c.archer.eval_size = 64  # trajectories per greedy evaluation

    c.filtered_bc = ml_collections.ConfigDict()
    # BC, each iteration, on the episodes in the buffer whose return reaches the
    # (1 - top_fraction) quantile of their returns (the paper: the best 10%).
    c.filtered_bc.top_fraction = 0.1

    c.chai = ml_collections.ConfigDict()
    # CHAI says the best of this many utterances sampled from the BC actor, by the
    # target critic's min(Q1, Q2) (the paper: 5).
    c.chai.candidates = 5

    c.ppo = ml_collections.ConfigDict()  # 'ppo': LMRL-Gym's token-level PPO (its values)
    # On-policy rollouts of config.archer (iterations, rollout_size, rollout_batch, the
    # evaluations), all sampled at config.archer.actor_temperature; the actor trains at
    # config.actor.lr, the token-level value model with config.critic's lr and clipping.
    c.ppo.epochs = 4  # passes over each iteration's batch of turns
    c.ppo.batch_size = 32  # turns per minibatch (each turn's tokens are the actions)
    c.ppo.gamma = 1.0  # discount per token
    c.ppo.gae_lambda = 0.95
    c.ppo.clip = 0.2  # probability-ratio clip
    c.ppo.value_clip = 0.2  # value clip around the values the batch was collected with
    c.ppo.whiten = True  # advantages whitened over each batch
    c.ppo.kl_coef = 0.001  # per-token reward penalty kl_coef * (log pi - log pi_BC)
    c.ppo.kl_target = 0.0  # > 0: adapt kl_coef toward this KL(pi || pi_BC) in nats per utterance
    c.ppo.kl_horizon = 10_000  # the adaptive controller's horizon, in episodes

    c.offline = ml_collections.ConfigDict()  # 'offline_archer' (OfflineArcher's values)
    c.offline.expectile = 0.9  # V's expectile of the target Q over the dataset's actions (0.5 = SARSA's mean)
    c.offline.beta = 1.0  # AWR inverse temperature: weight exp(beta * A)
    c.offline.max_weight = 100.0  # AWR weights are clipped here

    c.checkpoint_every = 5  # iterations between checkpoints (also at the end of each stage)
    c.transcripts = 4  # dialogues written per evaluation

    if variant == "demo":
        _demo(c, presets)
    elif variant == "smoke":
        _demo(c, presets)
        _smoke(c)
    return c


def _demo(c: ml_collections.ConfigDict, presets: TaskPresets) -> None:
    c.env.num_items, c.env.max_turns = presets.demo_items, presets.demo_turns
    c.tokens.obs_len, c.archer.iterations = presets.demo_obs_len, presets.demo_iterations
    c.tokens.length_buckets = presets.demo_length_buckets
    c.tokens.action_len = 10
    c.actor.update(_model("gpt2", "", n_layer=2, n_embd=64, n_head=4))
    c.actor.lr = 1e-4
    c.actor.max_grad_norm = 1.0
    # The critic reads the conversation and the utterance in one encoding, with the
    # BC-trained actor as its encoder (read at the last token): a tiny RoBERTa from
    # scratch learns state values but barely ranks utterances within a state
    # (docs/research_log.md).
    # The dims serve --config.critic.kind=roberta (with --config.critic.pooling=mean).
    c.critic.update(_model("actor", "", num_layers=2, hidden_size=64, num_heads=4, mlp_dim=128))
    c.critic.privileged_len = presets.demo_privileged_len
    c.critic.pooling = "pooled"
    c.critic.joint = True
    c.critic.lr = 3e-4
    c.critic.max_grad_norm = 1.0
    c.data.num_episodes = 2000
    c.bc.iterations = 8
    c.bc.steps = 125
    c.bc.batch_size = 32
    c.bc.lr = 1e-3
    c.archer.rollout_size = 32
    c.archer.rollout_batch = 32
    c.archer.capacity = 20_000
    c.archer.critic_epochs = 30
    c.archer.actor_epochs = presets.demo_actor_epochs
    c.archer.batch_size = 32
    c.archer.actor_batch_size = 16
    c.archer.warmup_iter = 15
    # The actor phase samples 4 utterances at each of its 16 states and weighs each by
    # its Q minus the mean Q of the other three: only the critic's ranking within a
    # state reaches the actor. An anchor of 0.1 nats of reward per nat of KL(pi || BC)
    # per utterance.
    c.archer.actor_samples = 4
    c.archer.kl_coef = 0.1
    # KL(pi || BC) alone let one Subset seed follow a critic error onto a single bad
    # question and never come back (docs/research_log.md, stop 32): the mass-covering
    # KL(BC || pi) at the same weight keeps the BC modes in reach.
    c.archer.forward_kl_coef = 0.1
    # The policy trained, rolled out and evaluated by the critic is pi at temperature
    # 0.3, close to the greedy decoding that evaluation plays (the paper: 1). At 1 a
    # repeated wrong guess costs one turn, so the critic's gap for it is small; under
    # greedy decoding it repeats to the turn cap. Improving pi_0.3 improves a policy
    # that behaves like the one evaluated (docs/research_log.md, 2026-12-02 night).
    c.archer.temperature = 0.3
    c.archer.actor_temperature = 0.3
    # Half of every rollout batch is played greedily, so the states greedy decoding
    # reaches (e.g. a wrong guess it repeats) enter the replay buffer (not in the paper).
    c.archer.greedy_rollouts = 0.5
    c.archer.eval_every = 10
    # 256 games: the SE of one evaluation (about 0.3 on Guess My City, 0.45 on Twenty
    # Questions) is well below the gains it has to show.
    c.archer.eval_size = 256
    c.checkpoint_every = 5


def _smoke(c: ml_collections.ConfigDict) -> None:
    # The tests' default path is the paper's: a RoBERTa critic of its own (the critic of
    # kind 'actor', the KL anchor and greedy rollouts have tests of their own).
    c.critic.update(_model("roberta", "", num_layers=1, hidden_size=32, num_heads=2, mlp_dim=64))
    c.critic.update(pooling="mean", joint=True, lr=3e-4, max_grad_norm=1.0, privileged_len=0)
    c.archer.update(greedy_rollouts=0.0, temperature=1.0, actor_temperature=1.0, kl_coef=0.0, forward_kl_coef=0.0, actor_samples=1)
    c.env.num_items = 0
    c.tokens.obs_len, c.tokens.length_buckets = 48, ()
    c.tokens.action_len = 8
    c.env.max_turns = 4
    c.actor.n_layer, c.actor.n_embd, c.actor.n_head = 1, 32, 2
    c.data.num_episodes = 64
    c.bc.iterations = 1
    c.bc.steps = 2
    c.bc.batch_size = 8
    c.archer.iterations = 2
    c.archer.rollout_size = 8
    c.archer.rollout_batch = 8
    c.archer.capacity = 256
    c.archer.critic_epochs = 2
    c.archer.actor_epochs = 1
    c.archer.batch_size = 8
    c.archer.actor_batch_size = 8
    c.archer.warmup_iter = 1
    c.archer.eval_every = 1
    c.archer.eval_size = 8
    c.ppo.epochs = 2
    c.ppo.batch_size = 8
    c.checkpoint_every = 1
    c.transcripts = 2
