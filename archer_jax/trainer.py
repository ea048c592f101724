"""The training run: simulated data, a BC warm start, then online ArCHer.

``train(config, workdir)`` builds everything once (mesh, task, tokenizer, models,
sharded state, device replay buffer, jitted phases), restores the workdir's latest
checkpoint if there is one, and runs the stages that are not finished yet. Each
stage checkpoints (train state, replay buffer, progress) every
``config.checkpoint_every`` iterations and when it ends; SIGTERM (TPU preemption)
writes a final checkpoint at the next iteration boundary. Rerunning the same command
continues where the last checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import transformers

from archer_jax import (
    checkpointing,
    config_checks,
    critic_probe,
    metrics,
    replay,
    rollout,
    sampling,
    sharding,
    tasks,
    token_bridge,
    train_state,
)
from archer_jax.algorithms import archer, bc
from archer_jax.data import simulated_episodes, sources, tokenization
from archer_jax.envs import lm_oracle
from archer_jax.models import gpt2, hf_loading, llama, registry, roberta, value_heads

STAGES = ("bc", "archer")
# Checkpoint steps are stage * STAGE_STRIDE + iteration: monotonic across stages.
STAGE_STRIDE = 1_000_000
EVAL_SEED_BASE = 10_000_000  # evaluation episodes never share seeds with rollouts
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# Errors a user causes (a config field, a file, a checkpoint): the entry point prints
# their message alone. Non-finite losses are listed too: the message says what to do.
USER_ERRORS = (config_checks.ConfigError, hf_loading.CheckpointError, simulated_episodes.EpisodeDataError,
               checkpointing.CheckpointMismatchError, FloatingPointError)


class CompileCounter:
    """Counts XLA compilations, so each metrics row can show that none happen after
    the first iteration (``time/compiles``)."""

    count = 0
    _registered = False

    @classmethod
    def register(cls) -> None:
        if not cls._registered:
            jax.monitoring.register_event_duration_secs_listener(cls._on_event)
            cls._registered = True

    @classmethod
    def _on_event(cls, event: str, duration_secs: float, **kwargs: Any) -> None:
        del duration_secs, kwargs
        if event == _COMPILE_EVENT:
            cls.count += 1


@dataclasses.dataclass
class Run:
    """Everything built once per run; the stages read and update ``state``/``buffer``."""

    config: ml_collections.ConfigDict
    workdir: Path
    mesh: jax.sharding.Mesh
    task: Any
    tokenizer: Any
    actor: Any
    critic: Any
    hp: archer.ArcherHParams
    state: train_state.ArcherState
    state_shardings: Any
    buffer: replay.ReplayBuffer
    buffer_shardings: Any
    checkpointer: checkpointing.Checkpointer
    logger: metrics.MetricsLogger
    runner: rollout.RolloutRunner
    bridge: Any
    progress: dict[str, Any]


# ----------------------------------------------------------------------------- setup


def _actor_tokenizer(config: ml_collections.ConfigDict, workdir: Path, task: Any) -> Any:
    """The checkpoint's tokenizer, or (from scratch) a word tokenizer built from the
    task's own text once and kept in the workdir so a resumed run keeps its ids."""
    if config.actor.checkpoint:
        return registry.load_tokenizer(config.actor.checkpoint)
    folder = workdir / "tokenizer"
    if (folder / "tokenizer.json").exists():
        return transformers.AutoTokenizer.from_pretrained(str(folder))
    tokenizer = tokenization.build_word_tokenizer(tasks.corpus(task))
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def _build_actor(config: ml_collections.ConfigDict, tokenizer: Any, mesh: jax.sharding.Mesh) -> tuple[Any, Any]:
    """(module, params or None for a random init)."""
    c = config.actor
    dtype = jnp.dtype(c.dtype)
    if c.checkpoint:
        loaded = registry.load_pretrained(c.checkpoint, mesh=mesh, rules=config.mesh.rules, dtype=dtype)
        return loaded.module, loaded.params
    positions = config.tokens.obs_len + config.tokens.action_len
    if c.kind == "gpt2":
        cfg = gpt2.GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=c.n_embd, n_layer=c.n_layer,
                              n_head=c.n_head, dtype=dtype)
        return gpt2.GPT2LMHeadModel(cfg), None
    cfg = llama.LlamaConfig(vocab_size=len(tokenizer), hidden_size=c.n_embd, intermediate_size=4 * c.n_embd,
                            num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.n_head,
                            max_position_embeddings=positions, tie_word_embeddings=True, dtype=dtype)
    return llama.LlamaForCausalLM(cfg), None


def _build_critic(config: ml_collections.ConfigDict, actor: Any, actor_tokenizer: Any,
                  mesh: jax.sharding.Mesh) -> tuple[Any, Any, Any]:
    """(DoubleCritic module, pretrained encoder params or None, critic tokenizer)."""
    c = config.critic
    dtype = jnp.dtype(c.dtype)
    if c.kind == "actor":
        # The actor's architecture and tokenizer; its weights arrive when ArCHer starts
        # (``_critic_from_actor``), after the BC warm start trained them.
        critic = value_heads.DoubleCritic(encoder=value_heads.CausalEncoder(actor), hidden_size=actor.config.hidden_size,
                                          pooling=c.pooling, joint=c.joint)
        return critic, None, actor_tokenizer
    if c.checkpoint:
        loaded = registry.load_pretrained(c.checkpoint, mesh=mesh, rules=config.mesh.rules, dtype=dtype)
        critic = value_heads.DoubleCritic(encoder=loaded.module, hidden_size=loaded.config.hidden_size,
                                          pooling=c.pooling, joint=c.joint)
        return critic, loaded.params, registry.load_tokenizer(c.checkpoint)
    # From scratch the critic shares the actor's tokenizer (identity bridge).
    pad_id = actor_tokenizer.pad_token_id
    cfg = roberta.RobertaConfig(
        vocab_size=len(actor_tokenizer), hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, intermediate_size=c.mlp_dim, pad_token_id=pad_id,
        max_position_embeddings=config_checks.critic_length(config) + pad_id + 2, dtype=dtype)
    critic = value_heads.DoubleCritic(encoder=roberta.RobertaModel(cfg), hidden_size=c.hidden_size, pooling=c.pooling,
                                      joint=c.joint)
    return critic, None, actor_tokenizer


def _pad_id(tokenizer: Any) -> int:
    # GPT-2 has no pad token: any id works, padded slots are masked out.
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def setup(config: ml_collections.ConfigDict, workdir: str | Path) -> Run:
    """Validates the config, then builds (or restores) every part of the run."""
    config_checks.check_config(config)
    CompileCounter.register()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = sharding.make_mesh(config.mesh.shape)
    rules = config.mesh.rules
    task = tasks.make_task(config.task, max_turns=config.env.max_turns, num_items=config.env.num_items)
    tokenizer = _actor_tokenizer(config, workdir, task)
    if config.env.oracle == "lm":
        # After the tokenizer: a from-scratch vocabulary comes from the KB's answers.
        task = task.with_oracle(lm_oracle.make_lm_oracle(config.task, config.env.oracle_checkpoint, mesh=mesh))
    actor, actor_params = _build_actor(config, tokenizer, mesh)
    critic, encoder_params, critic_tokenizer = _build_critic(config, actor, tokenizer, mesh)
    add_bos = bool(config.critic.checkpoint)  # a pretrained RoBERTa expects <s> first
    bridge = token_bridge.make_bridge(tokenizer, critic_tokenizer, add_bos=add_bos,
                                      actor_vocab_size=actor.config.vocab_size)
    config_checks.check_context_lengths(config, actor.config.max_positions,
                                        getattr(critic.encoder.config, "max_positions", None),
                                        bridge_extra=int(add_bos))
    pad_id = _pad_id(tokenizer)
    hp = archer.ArcherHParams(
        gamma=config.archer.gamma, tau=config.archer.tau, critic_batch_size=config.archer.batch_size,
        actor_batch_size=config.archer.actor_batch_size, critic_epochs=config.archer.critic_epochs,
        actor_epochs=max(config.archer.actor_epochs, 1), max_new_tokens=config.tokens.action_len,
        temperature=config.archer.temperature, actor_temperature=config.archer.actor_temperature,
        actor_samples=config.archer.actor_samples, kl_coef=config.archer.kl_coef,
        stop_ids=tokenization.terminator_ids(tokenizer, config.tokens.terminator), pad_id=pad_id)

    actor_tx = train_state.make_optimizer(config.actor.lr, config.actor.max_grad_norm)
    critic_tx = train_state.make_optimizer(config.critic.lr, config.critic.max_grad_norm)
    state, state_shardings = train_state.create_state(
        jax.random.key(config.seed), actor=actor, critic=critic, actor_tx=actor_tx, critic_tx=critic_tx,
        mesh=mesh, rules=rules, actor_params=actor_params, critic_encoder_params=encoder_params,
        reference=config.archer.kl_coef > 0)
    capacity = _round_up(config.archer.capacity, mesh.shape["data"] * mesh.shape["fsdp"])
    buffer, buffer_shardings = replay.create_sharded(capacity, config.tokens.obs_len, config.tokens.action_len,
                                                     mesh, rules)

    checkpointer = checkpointing.Checkpointer(workdir, config_hints={
        "buffer": "config.archer.capacity or config.tokens.* changed",
        "state/actor_params": "config.actor.* (model size or checkpoint) changed",
        "state/critic_params": "config.critic.* (model size or checkpoint) changed",
        "state/target_critic_params": "config.critic.* (model size or checkpoint) changed",
        "state/ref_actor_params": "config.archer.kl_coef changed between 0 and > 0",
    })
    progress = {"stage": STAGES[0], "iteration": 0, "env_steps": 0, "finished": []}
    restored = checkpointer.restore_latest(checkpointing.abstract_tree(state),
                                           checkpointing.abstract_tree(buffer))
    if restored is not None:
        _, state, buffer, progress = restored

    policy = jax.jit(functools.partial(sampling.generate, actor, max_new_tokens=hp.max_new_tokens,
                                       stop_ids=hp.stop_ids, pad_id=pad_id))
    env = tasks.make_batched_env(task, config.archer.rollout_batch)
    runner = rollout.RolloutRunner(env, policy, tokenizer,
                                   obs_len=config.tokens.obs_len, terminator=config.tokens.terminator,
                                   pad_id=pad_id, gamma=config.archer.gamma, max_turns=config.env.max_turns)
    logger = metrics.MetricsLogger(workdir, total_iterations=config.archer.iterations,
                                   enabled=jax.process_index() == 0)
    return Run(config, workdir, mesh, task, tokenizer, actor, critic, hp, state, state_shardings, buffer,
               buffer_shardings, checkpointer, logger, runner, bridge, progress)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# ----------------------------------------------------------------------------- shared


def _save(run: Run, stage: str, iteration: int, *, finished: bool = False) -> None:
    if finished and stage not in run.progress["finished"]:
        run.progress["finished"].append(stage)
    run.progress.update(stage=stage, iteration=iteration)
    step = STAGES.index(stage) * STAGE_STRIDE + iteration
    run.checkpointer.save(step, state=run.state, buffer=run.buffer, progress=run.progress)


def evaluate(run: Run, stage: str, iteration: int) -> dict[str, float]:
    """Greedy rollouts on a fixed set of seeds (comparable across iterations, episode by
    episode: each one is written to evaluations/ for paired comparisons)."""
    c = run.config
    returns, successes, lengths, dialogues, hidden, seeds = [], [], [], [], [], []
    rng = jax.random.key(0)
    for start in range(0, c.archer.eval_size, c.archer.rollout_batch):
        batch_seeds = [EVAL_SEED_BASE + start + i for i in range(c.archer.rollout_batch)]
        result = run.runner.run(run.state.actor_params, batch_seeds, rng, 0.0)
        returns.append(result.returns)
        successes.append(result.successes)
        lengths.append(result.lengths)
        hidden.extend(result.hidden)
        seeds.extend(batch_seeds)
        dialogues.extend(f"[{h}]\n{d}" for h, d in zip(result.hidden, result.dialogues))
    if c.transcripts:
        run.logger.write_transcripts(stage, iteration, dialogues[: c.transcripts])
    returns, successes = np.concatenate(returns), np.concatenate(successes)
    run.logger.write_evaluation(stage, iteration, seeds=seeds, returns=returns, successes=successes, hidden=hidden)
    return {"eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std()),
            "eval/return_se": float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else 0.0,
            "eval/success_rate": float(successes.mean()), "eval/turns_mean": float(np.concatenate(lengths).mean())}


def _check_finite(row: dict[str, Any], stage: str, iteration: int, run: Run) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not np.isfinite(v)]
    if bad:
        raise FloatingPointError(
            f"non-finite {bad} at {stage} iteration {iteration} (update step {int(run.state.step)}); "
            f"the last good checkpoint in {run.checkpointer.directory} is kept. Lower the learning rate "
            "(config.actor.lr / config.critic.lr) and rerun the same command to resume from it.")


def _timing(t0: float, compiles: int, run: Run) -> dict[str, float]:
    return {"env_steps": run.progress["env_steps"], "time/iteration_s": time.perf_counter() - t0,
            "time/compiles": CompileCounter.count - compiles}


class _PhaseClock:
    """Wall seconds of each phase of an iteration, as ``time/<phase>_s`` in its row. A
    lap waits for the phase's outputs, so each phase is charged its own device time."""

    def __init__(self, row: dict[str, Any]):
        self.row, self.t = row, time.perf_counter()

    def lap(self, phase: str, outputs: Any = None) -> None:
        jax.block_until_ready(outputs)
        now = time.perf_counter()
        self.row[f"time/{phase}_s"], self.t = now - self.t, now


def _stop_requested(run: Run, stage: str, iteration: int) -> bool:
    if not checkpointing.preemption_requested():
        return False
    run.logger.info(f"SIGTERM: writing a final checkpoint at {stage} iteration {iteration}")
    _save(run, stage, iteration)
    run.checkpointer.wait()
    return True


# ----------------------------------------------------------------------------- stages


def run_bc(run: Run) -> bool:
    """BC warm start on the offline episodes of config.data.source. Returns False if preempted."""
    c = run.config
    if c.bc.iterations == 0:
        return True
    transitions = sources.load_transitions_from(
        c.data.source, task=c.task, data_dir=c.data.dir or str(run.workdir / "data"), manual_dir=c.data.manual_dir,
        num_episodes=c.data.num_episodes, seed=c.data.seed, gamma=c.archer.gamma, max_turns=c.env.max_turns,
        num_items=c.env.num_items)
    dataset = _dataset_buffer(run, transitions)
    hp = dataclasses.replace(run.hp, actor_batch_size=c.bc.batch_size)
    tx = train_state.make_optimizer(c.bc.lr, c.actor.max_grad_norm)
    phase = bc.make_bc_phase(actor=run.actor, hp=hp, tx=tx, steps=c.bc.steps, state_shardings=run.state_shardings,
                             buffer_shardings=replay.buffer_shardings(dataset, run.mesh, c.mesh.rules), mesh=run.mesh,
                             rules=c.mesh.rules).lower(run.state, dataset).compile()
    start = run.progress["iteration"] if run.progress["stage"] == "bc" else 0
    # BC rows are numbered by completed iterations (it + 1): a resume from ``start`` writes
    # rows from start + 1, and row ``start`` (logged before its checkpoint) stays.
    run.logger.start_stage("bc", start_iteration=start + 1, total_iterations=c.bc.iterations)
    for it in range(start, c.bc.iterations):
        t0, compiles = time.perf_counter(), CompileCounter.count
        run.state, m = phase(run.state, dataset)
        row = jax.device_get(m)
        last = it == c.bc.iterations - 1
        if last or (it + 1) % c.archer.eval_every == 0:
            row.update(evaluate(run, "bc", it + 1))
        row = {k: float(v) for k, v in row.items()}
        row.update(_timing(t0, compiles, run))
        _check_finite(row, "bc", it, run)
        run.logger.log("bc", it + 1, row)
        if last:
            _save(run, "bc", it + 1, finished=True)
        elif (it + 1) % c.checkpoint_every == 0:
            _save(run, "bc", it + 1)
        if _stop_requested(run, "bc", it + 1):
            return False
    return True


def _dataset_buffer(run: Run, transitions: dict[str, list[Any]]) -> replay.ReplayBuffer:
    """Tokenizes the dataset's turns once into a device buffer BC samples from."""
    c, tok = run.config, run.tokenizer
    pad = run.hp.pad_id
    obs, obs_mask = tokenization.encode_left(tok, transitions["observation"], c.tokens.obs_len, pad_id=pad)
    nxt, nxt_mask = tokenization.encode_left(tok, transitions["next_observation"], c.tokens.obs_len, pad_id=pad)
    act, act_mask = tokenization.encode_right(tok, transitions["action"], c.tokens.action_len, pad_id=pad,
                                              append_ids=run.hp.stop_ids[:1])
    n = len(obs)
    rows = replay.Transitions(obs=obs, obs_mask=obs_mask, action=act, action_mask=act_mask, next_obs=nxt,
                              next_obs_mask=nxt_mask, reward=np.asarray(transitions["reward"], np.float32),
                              done=np.asarray(transitions["done"], bool),
                              mc_return=np.asarray(transitions["mc_return"], np.float32))
    capacity = _round_up(n, run.mesh.shape["data"] * run.mesh.shape["fsdp"])
    buffer, shardings = replay.create_sharded(capacity, c.tokens.obs_len, c.tokens.action_len, run.mesh,
                                              c.mesh.rules)
    return replay.make_insert(shardings, run.mesh, c.mesh.rules)(buffer, rows)


def _collect(run: Run, iteration: int, insert: Any, scores: Any) -> dict[str, float]:
    """``rollout_size`` trajectories into the replay buffer: sampled, but for the
    ``greedy_rollouts`` fraction of each batch, which is played greedily. ``scores``:
    the jitted ``archer.critic_scores``, which probes the critic on the fresh turns
    before it trains on them (``probe_metrics``)."""
    c = run.config
    batch = c.archer.rollout_batch
    greedy = np.arange(batch) < round(c.archer.greedy_rollouts * batch)
    temperatures = np.where(greedy, 0.0, c.archer.temperature)
    returns, successes, turns, probe = [], [], 0, []
    rng = jax.random.fold_in(jax.random.key(c.seed + 1), iteration)
    for start in range(0, c.archer.rollout_size, batch):
        seeds = [c.seed * STAGE_STRIDE + iteration * c.archer.rollout_size + start + i for i in range(batch)]
        rng, key = jax.random.split(rng)
        result = run.runner.run(run.state.actor_params, seeds, key, temperatures)
        transitions = replay.Transitions(**result.transitions)
        probe.append((*scores(run.state, transitions), result.transitions["mc_return"], result.valid))
        run.buffer = insert(run.buffer, transitions, result.valid)
        returns.append(result.returns)
        successes.append(result.successes)
        turns += result.num_turns
    run.progress["env_steps"] += turns
    returns, successes = np.stack(returns), np.stack(successes)  # [batches, B]
    row = {"rollout/turns": float(turns)}
    groups = {"": np.ones_like(greedy)}
    if greedy.any():  # the greedy rows are a cheap greedy evaluation on fresh seeds
        groups.update(sampled_=~greedy, greedy_=greedy)
    for name, rows in groups.items():
        if not rows.any():
            continue
        row[f"rollout/{name}return_mean"] = float(returns[:, rows].mean())
        row[f"rollout/{name}success_rate"] = float(successes[:, rows].mean())
    q, v, mc_return, valid = (np.concatenate(x) for x in zip(*jax.device_get(probe)))
    row.update(probe_metrics(q[valid], v[valid], mc_return[valid]))
    return row


def probe_metrics(q: np.ndarray, v: np.ndarray, mc_return: np.ndarray) -> dict[str, float]:
    """How the critic, before it trains on them, scores the turns just played, against
    their Monte-Carlo returns G (discounted, on-policy):

    - ``probe/q_mc_corr``: correlation of min Q(s, a) with G over the turns;
    - ``probe/adv_mc_corr``: correlation of Q(s, a) - V(s) with G - V(s), positive when
      the critic's advantage points the way the outcomes went (V's own error also
      enters both sides: read it beside q_mc_corr, and the full within-state ranking
      from ``python -m experiments.probe_critic``);
    - ``probe/q_mc_bias``: mean of Q(s, a) - G (0 for an unbiased critic).
    """
    if len(q) < 3:
        return {}

    def corr(x: np.ndarray, y: np.ndarray) -> float:  # 0 where either side is constant (finite rows)
        r = critic_probe.pearson(x, y)
        return 0.0 if np.isnan(r) else r

    return {"probe/q_mc_corr": corr(q, mc_return), "probe/adv_mc_corr": corr(q - v, mc_return - v),
            "probe/q_mc_bias": float(np.mean(q - mc_return))}


def _start_archer(state: train_state.ArcherState, *, actor_tx: Any, critic_tx: Any,
                  critic_from_actor: bool) -> train_state.ArcherState:
    """The state ArCHer's first iteration starts from. BC's Adam moments (another loss,
    another learning rate) do not carry over; the KL anchor (when kept) becomes the BC
    actor; a critic of kind 'actor' starts from the BC-trained actor's weights (heads
    stay as initialised), as RLHF value models start from the policy: it already reads
    the task's text."""
    state = state.replace(actor_opt_state=actor_tx.init(state.actor_params))
    if state.ref_actor_params is not None:
        state = state.replace(ref_actor_params=jax.tree.map(jnp.copy, state.actor_params))
    if critic_from_actor:
        critic_params = {**state.critic_params, "encoder": {"lm": state.actor_params}}
        state = state.replace(critic_params=critic_params, target_critic_params=critic_params,
                              critic_opt_state=critic_tx.init(critic_params))
    return state


def run_archer(run: Run) -> bool:
    """Online ArCHer. Row ``iterations`` is a final greedy evaluation. Returns False if
    preempted."""
    c = run.config
    actor_tx = train_state.make_optimizer(c.actor.lr, c.actor.max_grad_norm)
    start = run.progress["iteration"] if run.progress["stage"] == "archer" else 0
    critic_tx = train_state.make_optimizer(c.critic.lr, c.critic.max_grad_norm)
    if start == 0:
        reset = jax.jit(functools.partial(_start_archer, actor_tx=actor_tx, critic_tx=critic_tx,
                                          critic_from_actor=c.critic.kind == "actor"),
                        in_shardings=(run.state_shardings,), out_shardings=run.state_shardings, donate_argnums=0)
        run.state = reset(run.state)
    phases = archer.make_phases(actor=run.actor, critic=run.critic, hp=run.hp, bridge=run.bridge,
                                actor_tx=actor_tx,
                                critic_tx=critic_tx,
                                state_shardings=run.state_shardings, buffer_shardings=run.buffer_shardings,
                                mesh=run.mesh, rules=c.mesh.rules)
    # Compiled ahead of time: no iteration (not even the first actor one) compiles.
    critic_phase = phases.critic.lower(run.state, run.buffer).compile()
    actor_phase = phases.actor.lower(run.state, run.buffer).compile()
    insert = replay.make_insert(run.buffer_shardings, run.mesh, c.mesh.rules)
    scores = jax.jit(functools.partial(archer.critic_scores, critic=run.critic, bridge=run.bridge))
    run.logger.start_stage("archer", start_iteration=start, total_iterations=c.archer.iterations + 1)
    for it in range(start, c.archer.iterations + 1):
        t0, compiles = time.perf_counter(), CompileCounter.count
        row: dict[str, Any] = {}
        clock = _PhaseClock(row)
        if it % c.archer.eval_every == 0 or it == c.archer.iterations:
            row.update(evaluate(run, "archer", it))
            clock.lap("eval")
        if it < c.archer.iterations:
            row.update(_collect(run, it, insert, scores))
            clock.lap("rollout")
            run.state, critic_m = critic_phase(run.state, run.buffer)
            clock.lap("critic", critic_m)
            actor_m = {}
            if it >= c.archer.warmup_iter and c.archer.actor_epochs > 0:
                run.state, actor_m = actor_phase(run.state, run.buffer)
                clock.lap("actor", actor_m)
            row.update({k: float(v) for k, v in jax.device_get({**critic_m, **actor_m}).items()})
        row.update(_timing(t0, compiles, run))
        _check_finite(row, "archer", it, run)
        run.logger.log("archer", it, row)
        done = it == c.archer.iterations
        if done:
            _save(run, "archer", it + 1, finished=True)
        elif (it + 1) % c.checkpoint_every == 0:
            _save(run, "archer", it + 1)
        if not done and _stop_requested(run, "archer", it + 1):
            return False
    return True


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> Run:
    """Runs the unfinished stages; returns the run (its state, buffer, progress)."""
    run = setup(config, workdir)
    uninstall = checkpointing.install_sigterm_handler()
    try:
        with run.logger:
            if "bc" not in run.progress["finished"] and not run_bc(run):
                return run
            if "archer" not in run.progress["finished"]:
                run_archer(run)
    finally:
        uninstall()
        run.checkpointer.close()
    return run
