"""The training run: the stages of ``config.algorithm`` (for ArCHer: a BC warm start on
simulated or offline data, then online ArCHer), each run by one loop.

``train(config, workdir)`` builds everything once (mesh, task, tokenizer, models,
sharded state, device replay buffer), restores the workdir's latest checkpoint if
there is one, and runs the stages that are not finished yet with ``run_stage``: the
algorithm module (``archer_jax.algorithms``) says what an iteration does; the loop
owns timing, compile counting, evaluation, the finite check, logging and
checkpointing. Each stage checkpoints (train state, replay buffer, progress) every
``config.checkpoint_every`` iterations and when it ends; SIGTERM (TPU preemption)
writes a final checkpoint at the next iteration boundary. Rerunning the same command
continues where the last checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import logging
import os
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import transformers
from etils import epath

from archer_jax import (
    algorithms,
    checkpointing,
    config_checks,
    metrics,
    multihost,
    replay,
    rollout,
    sharding,
    tasks,
    token_bridge,
    train_state,
)
from archer_jax.algorithms import archer
from archer_jax.data import simulated_episodes, tokenization
from archer_jax.envs import lm_oracle
from archer_jax.models import hf_loading, layers, registry, value_heads

# Checkpoint steps are (the stage's index in its algorithm) * STAGE_STRIDE + iteration:
# monotonic across stages.
STAGE_STRIDE = 1_000_000
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
    workdir: epath.Path  # a local folder or a gs:// bucket folder (check_workdir)
    mesh: jax.sharding.Mesh
    task: Any
    tokenizer: Any
    actor: Any
    critic: Any  # the utterance-level DoubleCritic (algorithms.Algorithm.critic), else None
    baseline: Any  # the token-level value module (algorithms.Algorithm.token_value), else None
    hp: archer.ArcherHParams
    state: train_state.ArcherState
    state_shardings: Any
    buffer: replay.ReplayBuffer
    buffer_shardings: Any
    checkpointer: checkpointing.Checkpointer
    logger: metrics.MetricsLogger
    runner: rollout.RolloutRunner
    bridge: Any  # actor ids -> the critic's (token_bridge), None without a critic
    progress: dict[str, Any]
    # ((runner id, eval size, params fingerprint), rollout.Evaluation) of the latest
    # evaluation (``evaluate``); in memory only.
    last_evaluation: tuple[tuple[int, int, int], rollout.Evaluation] | None = None

    @property
    def stage_names(self) -> tuple[str, ...]:
        return algorithms.get(self.config.algorithm).stage_names


# ----------------------------------------------------------------------------- setup


def _actor_tokenizer(config: ml_collections.ConfigDict, workdir: epath.Path, task: Any) -> Any:
    """The checkpoint's tokenizer, or (from scratch) a word tokenizer built from the
    task's own text once (``word_tokenizer``) and kept in the workdir so a resumed run keeps its ids."""
    if config.actor.checkpoint:
        return registry.load_tokenizer(config.actor.checkpoint)
    folder = workdir / "tokenizer"

    def load_or_build() -> Any:
        # Through a local folder: Hugging Face reads and writes local paths only.
        with tempfile.TemporaryDirectory() as local:
            if (folder / "tokenizer.json").exists():
                for file in folder.iterdir():
                    (epath.Path(local) / file.name).write_bytes(file.read_bytes())
                # The word tokenizer this function saved: its own class, not AutoTokenizer
                # (whose config machinery imports PyTorch when it is installed, seconds per resume).
                return transformers.PreTrainedTokenizerFast.from_pretrained(local)
            tokenizer = word_tokenizer(config, task)
            tokenizer.save_pretrained(local)
            folder.mkdir(parents=True, exist_ok=True)
            for file in sorted(epath.Path(local).iterdir(), key=lambda f: f.name == "tokenizer.json"):
                (folder / file.name).write_bytes(file.read_bytes())  # tokenizer.json last: it marks the folder done
            return tokenizer

    return multihost.main_first("trainer.tokenizer", load_or_build)


def word_tokenizer(config: ml_collections.ConfigDict, task: Any) -> Any:
    """A from-scratch actor's word tokenizer: the task's own text, what its environment
    hides (which a privileged critic reads) and the actor's template, its markup kept
    whole. It depends on the task, its environment fields and the template only, so
    every algorithm and critic on one config starts from the same ids, hence the same
    BC actor."""
    corpus = task.corpus(config.env)
    if hasattr(task, "hidden_texts"):
        corpus = itertools.chain(corpus, task.hidden_texts(config.env))
    if config.tokens.actor_template:
        corpus = itertools.chain(corpus, config.tokens.actor_template.split(tokenization.OBS_SLOT))
    return tokenization.build_word_tokenizer(corpus, marks=getattr(task, "word_marks", ()))


def _pad_id(tokenizer: Any) -> int:
    # GPT-2 has no pad token: any id works, padded slots are masked out.
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _unreachable_storage(timeout: float = 10.0) -> str | None:
    """Why the Cloud Storage endpoint (``STORAGE_EMULATOR_HOST`` where set) takes no
    connection, from one try; None when it does, or when a proxy stands in between (the
    client's own retries decide then). gcsfs retries a refused connection with backoff
    for about 20 s before it gives up; this says so at once."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    url = os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as error:
        return f"{address[0]}:{address[1]}: {type(error).__name__}: {error}"
    return None


def _no_storage(workdir: str, why: str) -> str:
    return (f"--workdir={workdir}: Cloud Storage cannot be reached ({why}); check the bucket name, the credentials "
            "(gcloud auth application-default login) and the network")


def check_workdir(workdir: str | os.PathLike) -> epath.Path:
    """The workdir as a path every file of the run goes through: a local folder
    (made absolute) or a ``gs://`` bucket folder; or a ConfigError naming it (another
    URL scheme, gs:// without its storage client, an existing file)."""
    text = os.fspath(workdir)
    if metrics.is_remote(text):
        scheme = text.split("://", 1)[0]
        if scheme != "gs":
            raise config_checks.ConfigError(f"--workdir={text}: a workdir is a local folder or a gs:// bucket "
                                            f"folder; {scheme}:// is not supported")
        if importlib.util.find_spec("gcsfs") is None:
            raise config_checks.ConfigError(f"--workdir={text} needs the Cloud Storage client: "
                                            "pip install 'archer_jax[gcs]' (or pass a local folder)")
        path = epath.Path(text)
        unreachable = _unreachable_storage()
        if unreachable:
            raise config_checks.ConfigError(_no_storage(text, unreachable))
        quiet = logging.getLogger("gcsfs")  # it logs each failed retry with a traceback; one message below says it
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            is_file = path.exists() and not path.is_dir()
        except Exception as error:  # noqa: BLE001 (gcsfs raises aiohttp's and google-auth's errors as they are)
            raise config_checks.ConfigError(_no_storage(text, f"{type(error).__name__}: {str(error)[:200]}")) from error
        finally:
            quiet.setLevel(level)
    else:
        path = epath.Path(os.path.abspath(text))
        is_file = path.exists() and not path.is_dir()
    if is_file:
        raise config_checks.ConfigError(f"--workdir={text} is an existing file; pass a folder (a new one, or "
                                        "the workdir of a run to resume)")
    return path


def use_xla_cache(folder: str) -> None:
    """Keeps compiled programs in ``folder`` (``config.xla_cache_dir``; '~' expanded), from
    the process's first compile on, unless JAX already has a cache folder (as
    $JAX_COMPILATION_CACHE_DIR sets) or ``folder`` is ''. JAX keeps only programs that took
    at least ``jax_persistent_cache_min_compile_time_secs`` (1 s) to compile."""
    if not folder or jax.config.jax_compilation_cache_dir:
        return
    if "://" not in folder:
        folder = os.path.expanduser(folder)
    jax.config.update("jax_compilation_cache_dir", folder)


def setup(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, read_only: bool = False) -> Run:
    """Validates the config, then builds (or restores) every part of the run.

    ``read_only``: for tools that read a run (probes), possibly while it trains: the
    checkpoints are restored but nothing in ``checkpoints/`` is created or removed (a
    save in progress looks like an unfinished one), and the run cannot save.
    """
    config_checks.check_config(config)
    if config.archer.rollout_batch % multihost.count():
        raise config_checks.ConfigError(
            f"config.archer.rollout_batch = {config.archer.rollout_batch}: each of the {multihost.count()} "
            "processes steps an equal share of a batch's environments; make it a multiple of the process count")
    CompileCounter.register()
    use_xla_cache(config.get("xla_cache_dir", ""))
    workdir = check_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        mesh = sharding.make_mesh(config.mesh.shape)
    except ValueError as e:
        raise config_checks.ConfigError(f"config.mesh.shape = {tuple(config.mesh.shape)}: {e}") from e
    rules = config.mesh.rules
    task = tasks.get(config.task)
    # Builds the environment once before anything is trained: a config.env field the
    # task refuses (a ValueError naming it) stops the run here.
    try:
        task.make_env(config.env, 1)
    except ValueError as error:
        raise config_checks.ConfigError(str(error)) from error
    tokenizer = _actor_tokenizer(config, workdir, task)
    one_turn = tokenizer(task.one_turn_observation(config.env), add_special_tokens=False)["input_ids"]
    config_checks.check_observation_window(config, len(one_turn))
    oracle = None
    if config.env.oracle == "lm":
        # After the tokenizer: a from-scratch vocabulary comes from the KB's answers.
        if task.oracle_format is None:
            raise config_checks.ConfigError(f"config.env.oracle = 'lm': task {config.task!r} has no LM oracle format; "
                                            "use config.env.oracle = 'kb'")
        oracle = lm_oracle.make_lm_oracle(task.oracle_format, config.env.oracle_checkpoint, mesh=mesh)
    algorithm = algorithms.get(config.algorithm)
    actor, actor_params = registry.build_actor(config, tokenizer, mesh)
    critic = encoder_params = bridge = None
    add_bos = bool(config.critic.checkpoint) and algorithm.critic  # a pretrained RoBERTa expects <s> first
    if algorithm.critic:
        critic, encoder_params, critic_tokenizer = registry.build_critic(config, actor, tokenizer, mesh)
        bridge = token_bridge.make_bridge(tokenizer, critic_tokenizer, add_bos=add_bos,
                                          actor_vocab_size=actor.config.vocab_size)
    critic_positions = getattr(critic.encoder.config, "max_positions", None) if critic is not None else None
    pad_id = _pad_id(tokenizer)
    prompt = tokenization.prompt_template(tokenizer, config.tokens.actor_template, pad_id)
    config_checks.check_context_lengths(config, actor.config.max_positions, critic_positions,
                                        bridge_extra=int(add_bos), template_len=len(prompt))
    hp = archer.hparams(config, tokenization.terminator_ids(tokenizer, config.tokens.terminator), pad_id, prompt)

    actor_tx = train_state.actor_optimizer(config)
    critic_tx = train_state.make_optimizer(config.critic.lr, config.critic.max_grad_norm)
    baseline = value_heads.TokenValue(lm=actor) if algorithm.token_value else None
    state, state_shardings = train_state.create_state(
        jax.random.key(config.seed), actor=actor, critic=critic, actor_tx=actor_tx, critic_tx=critic_tx,
        mesh=mesh, rules=rules, actor_params=actor_params, critic_encoder_params=encoder_params,
        reference=algorithm.reference(config), baseline=baseline,
        baseline_tx=archer.baseline_optimizer(config) if baseline is not None else None)
    capacity = _round_up(config.archer.capacity, mesh.shape["data"] * mesh.shape["fsdp"])
    buffer, buffer_shardings = replay.create_sharded(capacity, config.tokens.obs_len, config.tokens.action_len,
                                                     mesh, rules, config.critic.privileged_len)

    checkpointer = checkpointing.Checkpointer(workdir, read_only=read_only, config_hints={
        "buffer": "config.archer.capacity, config.tokens.* or config.critic.privileged_len changed",
        "state/actor_params": "config.actor.* (model size or checkpoint) changed",
        "state/critic_params": _CRITIC_HINT,
        "state/target_critic_params": _CRITIC_HINT,
        "state/ref_actor_params": "the KL anchor (config.archer.kl_coef, config.ppo.kl_coef) changed between 0 and > 0",
        "state/baseline_params": "config.algorithm changed between one with a token-level value model ("
                                  + ", ".join(n for n, a in algorithms.ALGORITHMS.items() if a.token_value)
                                  + ") and one without",
    })
    progress = {"stage": algorithm.stage_names[0], "iteration": 0, "env_steps": 0,
                "finished": []}
    frozen = _frozen_base(config, actor)
    restored = checkpointer.restore_latest(checkpointing.abstract_tree(_stored_state(state, frozen)),
                                           checkpointing.abstract_tree(buffer))
    if restored is not None:
        step, stored, buffer, progress = restored
        _check_frozen_base(state, frozen, progress, checkpointer.directory / str(step))
        state = _with_frozen(stored, state, frozen)

    policy = jax.jit(functools.partial(archer.generate, actor, hp=hp))
    # This process's share of each batch's environments (rollout.RolloutRunner).
    env = task.make_env(config.env, config.archer.rollout_batch // multihost.count(), oracle=oracle)
    runner = rollout.RolloutRunner(env, policy, tokenizer,
                                   obs_len=config.tokens.obs_len, terminator=config.tokens.terminator,
                                   pad_id=pad_id, gamma=config.archer.gamma, max_turns=config.env.max_turns,
                                   hidden_len=config.critic.privileged_len, reward_scale=config.archer.reward_scale)
    logger = metrics.MetricsLogger(workdir, total_iterations=config.archer.iterations, enabled=multihost.is_main(),
                                   wandb_project=config.logging.wandb_project,
                                   wandb_entity=config.logging.wandb_entity, wandb_config=config.to_dict())
    return Run(config, workdir, mesh, task, tokenizer, actor, critic, baseline, hp, state, state_shardings, buffer,
               buffer_shardings, checkpointer, logger, runner, bridge, progress)


_CRITIC_HINT = ("config.critic.* (model size or checkpoint) changed, or config.algorithm changed between one with "
                "an utterance-level critic (" + ", ".join(n for n, a in algorithms.ALGORITHMS.items() if a.critic)
                + ") and one without")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# ----------------------------------------------------------------------------- shared


def _save(run: Run, stage: str, iteration: int, *, finished: bool = False) -> None:
    if finished and stage not in run.progress["finished"]:
        run.progress["finished"].append(stage)
    run.progress.update(stage=stage, iteration=iteration)
    step = run.stage_names.index(stage) * STAGE_STRIDE + iteration
    frozen = _frozen_base(run.config, run.actor)
    if frozen is not None and "frozen_base" not in run.progress:
        run.progress["frozen_base"] = _frozen_fingerprint(run.state, frozen)
    run.checkpointer.save(step, state=_stored_state(run.state, frozen), buffer=run.buffer, progress=run.progress)


# A LoRA actor's base weights never change: checkpoints leave them out (a 7B base is
# 14 GB per save) and a resumed run takes them from config.actor.checkpoint again,
# checked against the fingerprint its first save recorded. (The KL anchor keeps its
# adapters only: train_state.reference_of.)


def _frozen_base(config: ml_collections.ConfigDict, actor: Any) -> Callable[[tuple[Any, ...]], bool] | None:
    """Which leaves of the state checkpoints leave out (None: none): under LoRA, the
    actor's weights other than the adapters."""
    if getattr(actor.config, "lora", None) is None:
        return None

    def frozen(path: tuple[Any, ...]) -> bool:
        return layers.path_names(path[:1])[0] == "actor_params" and not layers.is_adapter(path)

    return frozen


def _stored_state(state: Any, frozen: Callable[[tuple[Any, ...]], bool] | None) -> Any:
    if frozen is None:
        return state
    return jax.tree_util.tree_map_with_path(lambda path, x: None if frozen(path) else x, state)


def _with_frozen(stored: Any, state: Any, frozen: Callable[[tuple[Any, ...]], bool] | None) -> Any:
    """The restored ``stored`` state with the frozen leaves of ``state`` put back."""
    if frozen is None:
        return stored
    kept = iter(jax.tree.leaves(stored))
    return jax.tree_util.tree_map_with_path(lambda path, x: x if frozen(path) else next(kept), state)


def _frozen_fingerprint(state: Any, frozen: Callable[[tuple[Any, ...]], bool]) -> int:
    leaves = [x for path, x in jax.tree_util.tree_flatten_with_path(state)[0] if frozen(path)]
    return int(train_state.fingerprint(leaves))


def _check_frozen_base(state: Any, frozen: Callable[[tuple[Any, ...]], bool] | None, progress: dict,
                       where: epath.Path) -> None:
    if frozen is None or "frozen_base" not in progress:
        return
    if _frozen_fingerprint(state, frozen) != progress["frozen_base"]:
        raise checkpointing.CheckpointMismatchError(
            f"{where}: this run trained LoRA adapters on other base weights than config.actor.checkpoint holds now "
            "(its checkpoints keep the adapters only); point config.actor.checkpoint at the weights the run "
            "started from, or start afresh with a new --workdir")


def evaluate(run: Run, stage: str, iteration: int, act: Any = None) -> dict[str, float]:
    """A greedy evaluation (``config.archer.eval_size`` games, ``rollout.play_evaluation``)
    of the run's actor, or of ``act() -> (runner, params)`` (a stage's own agent),
    logged under (stage, iteration). Evaluation is deterministic, so where the same
    runner holds the same params as at the run's previous evaluation (a warm-up that
    trains only the critic; a stage starting from the one before it) its games are
    logged again rather than replayed."""
    c = run.config
    runner, params = act() if act else (run.runner, run.state.actor_params)
    key = (id(runner), c.archer.eval_size, int(train_state.fingerprint(params)))
    if run.last_evaluation is not None and run.last_evaluation[0] == key:
        # No game is played, so no oracle is called: none of the old failures recur.
        evaluation = dataclasses.replace(run.last_evaluation[1], oracle_failures=0)
        run.logger.info(f"{stage} iteration {iteration}: the policy is unchanged since the previous evaluation; "
                        "its games are logged again, not replayed")
    else:
        evaluation = rollout.play_evaluation(runner, params, size=c.archer.eval_size)
        run.last_evaluation = (key, evaluation)
    return rollout.log_evaluation(evaluation, logger=run.logger, stage=stage, iteration=iteration,
                                  transcripts=c.transcripts)


def _check_finite(row: dict[str, Any], stage: str, iteration: int, run: Run) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not np.isfinite(v)]
    if bad:
        raise FloatingPointError(
            f"non-finite {bad} at {stage} iteration {iteration} (update step {int(run.state.step)}); "
            f"the last good checkpoint in {run.checkpointer.directory} is kept. Lower the learning rate "
            "(config.actor.lr / config.critic.lr) and rerun the same command to resume from it.")


class _PhaseClock:
    """Wall seconds of each phase of an iteration, as ``time/<phase>_s`` in its row. A
    lap waits for the phase's outputs, so each phase is charged its own device time."""

    def __init__(self, row: dict[str, Any]):
        self.row, self.t = row, time.perf_counter()

    def lap(self, phase: str, outputs: Any = None) -> None:
        jax.block_until_ready(outputs)
        now = time.perf_counter()
        self.row[f"time/{phase}_s"], self.t = now - self.t, now


# ----------------------------------------------------------------------------- the stage loop


def run_stage(run: Run, stage: algorithms.Stage) -> bool:
    """The one loop every stage of every algorithm runs (``algorithms.Stage`` says what
    its rows hold). Per row: the iteration (timed phase by phase), the greedy evaluation
    when due, the compile count, the finite check (a NaN or inf stops the run naming the
    stage, iteration and metrics; the last good checkpoint stays the latest), the
    metrics row, a checkpoint every ``config.checkpoint_every`` iterations and after the
    last, and SIGTERM: a final checkpoint at the row's end, then False (the same command
    resumes). Resumes after the stage's last checkpointed iteration. True when done."""
    c = run.config
    done = run.progress["iteration"] if run.progress["stage"] == stage.name else 0
    iterate = stage.start(done)
    first = 0 if done == 0 and stage.evaluate_start else done + 1
    run.logger.start_stage(stage.name, start_iteration=first, total_iterations=stage.iterations)
    for k in range(first, stage.iterations + 1):
        t0, compiles = time.perf_counter(), CompileCounter.count
        row: dict[str, Any] = {}
        clock = _PhaseClock(row)
        if k > 0:
            row.update(iterate(k, clock))
        last = k == stage.iterations
        if k == 0 or last or k % c.archer.eval_every == 0:
            row.update(evaluate(run, stage.name, k, stage.act))
            clock.lap("eval")
        row = {name: float(v) for name, v in row.items()}
        row.update({"env_steps": run.progress["env_steps"], "time/iteration_s": time.perf_counter() - t0,
                    "time/compiles": CompileCounter.count - compiles})
        _check_finite(row, stage.name, k, run)
        run.logger.log(stage.name, k, row)
        saved = k > 0 and (last or k % c.checkpoint_every == 0)
        if saved:
            _save(run, stage.name, k, finished=last)
        if checkpointing.preemption_requested():
            run.logger.info(f"SIGTERM: writing a final checkpoint at {stage.name} iteration {k}")
            if not saved:
                _save(run, stage.name, k)
            run.checkpointer.wait()
            return False
    return True


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> Run:
    """Runs the unfinished stages of ``config.algorithm``; returns the run (its state,
    buffer, progress)."""
    run = setup(config, workdir)
    uninstall = checkpointing.install_sigterm_handler()
    ran = False
    try:
        with run.logger:
            for stage in algorithms.stages(config.algorithm, run):
                if stage.iterations == 0 or stage.name in run.progress["finished"]:
                    continue
                ran = True
                if not run_stage(run, stage):
                    return run
    finally:
        uninstall()
        run.checkpointer.close()
    if not ran and multihost.is_main():
        print(f"{workdir}: every stage of this run is finished (its metrics.jsonl, evaluations/ and checkpoints "
              f"are there); nothing to train. To train again, pass a new --workdir.", file=sys.stderr)
    return run
