"""Device cost of online ArCHer: rollout generation, update steps, a whole iteration, memory
(a benchmark, not a test).

    python -m experiments.benchmark_archer --preset=tiny
    python -m experiments.benchmark_archer --preset=small --repeats=2 --steps_per_phase=2
    python -m experiments.benchmark_archer --preset=paper            # meant for an accelerator

Random weights, no downloads, no tokenizer: the critic reads the actor's ids through an
identity token bridge (or, with ``--critic_vocab`` different from the actor's, a synthetic
``table`` bridge: the one gather the real GPT-2 -> RoBERTa mapping costs). Every timing is
a median over ``--repeats`` timed calls after one warm-up (compile) call:

* generate: one jitted ``sampling.generate`` at the rollout batch, prompt ``obs_len``,
  ``new_tokens`` new tokens, ``stop_ids=()`` so it always runs the full length
  (prefill included);
* critic / actor step: the jitted phases of ``algorithms.archer.make_phases`` (each step
  samples a minibatch from the device replay buffer and a fresh utterance a ~ pi(s)),
  one phase dispatch timed and divided by its number of steps;
* iteration: what the ArCHer stage (``algorithms.archer.stage``) does on the devices in one iteration: per
  rollout batch ``max_turns`` generate calls (the ids fetched to the host after each, as
  the real host loop does) and one buffer insert, then one critic phase and one actor
  phase and one ``device_get`` of their metrics. There is NO real environment: every turn
  feeds random token observations, so this is the device work of an iteration; host
  tokenization and environment/oracle time are excluded. The embedded knowledge-base
  oracle's host time (guess_city, random templated questions, same batch and turns) is
  measured separately and printed beside it;
* FLOPs: the matmul FLOPs each timed call executes (``experiments.flops.count_flops`` on
  its jaxpr: scans times their length, generate's while loop times ``new_tokens - 1``),
  this machine's matmul rate (an n x n ``jnp.dot`` in the same process, ``--matmul_n``),
  and per part the time those FLOPs take at that rate and the fraction of it achieved
  (``limit s / median s``); on an accelerator of known peak, MFU against that peak too;
* cores busy: the process's CPU seconds (every thread) per wall second over a part's timed
  calls: on a CPU host, how many of its cores the part kept busy;
* lengths: ``--lengths=mixed`` left-pads observation rows to 1..obs_len real tokens (drawn
  uniformly), the padding a real buffer holds; ``--length_buckets=64,128,...`` then runs
  every phase and generate with the rows grouped by length (``archer_jax.length_buckets``,
  ``config.tokens.length_buckets``). FLOPs count each switch at its widest branch, so with
  buckets they are an upper bound and the achieved fraction can exceed 1;
* memory: ``peak_bytes_in_use`` of the device's ``memory_stats()`` (GPU/TPU) or, where
  there is none (CPU), the process's max resident set size; cumulative after each part, and
  ``after_start`` before any state or program (on a CPU: Python, JAX's runtime and this
  package, the floor under every other number).

The state and the buffer are donated on every call and every jitted function is built
once; a compile listener counts backend compiles inside the timed calls (expected 0).
The last stdout line is one JSON object with every number and the settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from archer_jax import length_buckets, replay, sharding, token_bridge, train_state
from archer_jax.algorithms import archer
from archer_jax.models import gpt2, roberta, value_heads
from experiments import flops

# Shapes per preset. Actor: GPT-2; critic: RoBERTa encoder + ArCHer's double-critic heads.
# n_positions / max_position_embeddings are raised when obs_len + new_tokens needs more.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "actor": {"vocab_size": 2000, "n_positions": 0, "n_embd": 128, "n_layer": 2, "n_head": 4},
        "critic": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512,
                   "max_position_embeddings": 0},
        "critic_vocab": 2000, "obs_len": 120, "new_tokens": 16, "batch": 8, "rollout_batch": 32, "critic_steps": 5,
        "actor_steps": 5, "rollout_size": 32, "max_turns": 20, "capacity": 8192},
    # GPT-2 124M actor, RoBERTa-base critic. The critic vocabulary is 50257 (shares the
    # actor's ids: identity bridge); --critic_vocab=50265 gives roberta-base's exact
    # embedding with the table bridge instead.
    "small": {
        "actor": {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12},
        "critic": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                   "max_position_embeddings": 514},
        "critic_vocab": 50257, "obs_len": 200, "new_tokens": 32, "batch": 8, "rollout_batch": 32, "critic_steps": 5,
        "actor_steps": 5, "rollout_size": 32, "max_turns": 20, "capacity": 8192},
}
# The paper's update shapes (ArCHer: 256 transitions per step, 50 critic + 3 actor steps per
# iteration, 128 trajectories per iteration): meant for accelerators.
PRESETS["paper"] = {**PRESETS["small"], "batch": 256, "critic_steps": 50, "actor_steps": 3, "rollout_size": 128,
                    "capacity": 100_000}

CRITIC_PAD_ID = 1  # RoBERTa's <pad>
TEMPERATURE = 1.0


# ----------------------------------------------------------------------------- helpers


class CompileCounter:
    """Counts XLA backend compiles and jaxpr traces while ``active`` (jax.monitoring)."""

    COMPILE = "/jax/core/compile/backend_compile_duration"
    TRACE = "/jax/core/compile/jaxpr_trace_duration"

    def __init__(self) -> None:
        self.active = False
        self.count = 0
        self.traces = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **_: Any) -> None:
        if self.active:
            self.count += event == self.COMPILE
            self.traces += event == self.TRACE


class Timing(NamedTuple):
    """One part's timings: the warm-up call, the median and every timed call (seconds), and
    ``cores_busy``: the process's CPU seconds (all threads, user + system) per wall second
    over the timed calls, so 2.0 on a 2-core machine is every core busy throughout.
    ``rss``: the process's resident bytes when the timed calls start and at their highest
    (``HostRss.part``), or None where it cannot be measured."""

    first: float
    median: float
    times: list[float]
    cores_busy: float
    rss: tuple[int, int] | None = None


class HostRss:
    """The process's resident memory from Linux's /proc: what one part holds at its own
    peak, beside the run's high-water mark.

    The kernel keeps one high-water mark per process (``VmHWM``, which ``getrusage``'s
    ``ru_maxrss`` reads), set by whatever part came first: compiling, the init, a larger
    program. ``part()`` restarts it at the current RSS (``/proc/self/clear_refs``) after
    folding it into ``overall``, so the mark read after the part's calls is their own
    peak. ``overall`` stays the run's maximum. Elsewhere (no /proc) ``available`` is False."""

    def __init__(self) -> None:
        self.overall = 0
        self.available = os.access("/proc/self/clear_refs", os.W_OK) and self._read() is not None

    @staticmethod
    def _read() -> tuple[int, int] | None:
        """(VmRSS, VmHWM) in bytes."""
        try:
            with open("/proc/self/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
            return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None

    def high_water(self) -> int:
        """The run's maximum so far, in bytes."""
        now = self._read()
        if now is not None:
            self.overall = max(self.overall, now[1])
        return self.overall

    def part(self) -> Callable[[], tuple[int, int] | None] | None:
        """Starts measuring a part: returns a function that gives (RSS at the start, the
        highest RSS since), or None where unavailable."""
        if not self.available:
            return None
        self.high_water()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the high-water mark to the current RSS
        except OSError:  # a kernel or sandbox that refuses it: report no part's own peak
            self.available = False
            return None
        start = self._read()

        def done() -> tuple[int, int] | None:
            now = self._read()
            return (start[0], now[1]) if start and now else None

        return done


HOST_RSS = HostRss()


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn, repeats: int, counter: CompileCounter, warmup: bool = True) -> Timing:
    """Times ``fn`` (which blocks on its outputs) after an untimed warm-up call."""
    start = time.perf_counter()
    if warmup:
        fn()
    first = time.perf_counter() - start
    times = []
    rss = HOST_RSS.part()  # after the warm-up: the compile's memory is not the part's
    counter.active = True
    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        counter.active = False
    busy = (cpu_seconds() - cpu_start) / (time.perf_counter() - wall_start)
    return Timing(first, statistics.median(times), times, busy, None if rss is None else rss())


def peak_memory() -> tuple[str, int]:
    """(what was measured, bytes): device peak where the backend reports one, else max RSS."""
    stats = None
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory_stats raise or return None
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        peak = max(int(d.memory_stats()["peak_bytes_in_use"]) for d in jax.local_devices())
        return "device_peak_bytes_in_use (max over local devices)", peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    # The parts restart the kernel's high-water mark (HostRss.part): the run's is kept there.
    return "process_max_rss (host: no device memory stats)", max(rss, HOST_RSS.high_water())


def progress(message: str) -> None:
    """One progress line on stderr (stdout carries only the table and the JSON line)."""
    print(f"[benchmark_archer {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tree_bytes(tree: Any) -> int:
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def n_params(tree: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


# ----------------------------------------------------------------------------- setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    # Every shape; None = the preset's.
    p.add_argument("--batch", type=int, help="transitions per critic / actor step (update batch)")
    p.add_argument("--rollout_batch", type=int, help="conversations per generate call")
    p.add_argument("--rollout_size", type=int, help="trajectories per iteration (rounded up to rollout batches)")
    p.add_argument("--max_turns", type=int, help="generate calls per trajectory in the iteration")
    p.add_argument("--obs_len", type=int, help="observation (prompt) tokens")
    p.add_argument("--new_tokens", type=int, help="tokens per utterance (max_new_tokens)")
    p.add_argument("--steps_per_phase", type=int, help="critic AND actor steps per phase")
    p.add_argument("--critic_steps", type=int, help="critic steps per phase (overrides --steps_per_phase)")
    p.add_argument("--actor_steps", type=int, help="actor steps per phase (overrides --steps_per_phase)")
    p.add_argument("--capacity", type=int, help="replay buffer rows")
    p.add_argument("--critic_vocab", type=int,
                   help="critic vocabulary; != the actor's uses a synthetic table bridge")
    p.add_argument("--actor_layers", type=int)
    p.add_argument("--actor_width", type=int)
    p.add_argument("--actor_heads", type=int)
    p.add_argument("--actor_vocab", type=int)
    p.add_argument("--critic_layers", type=int)
    p.add_argument("--critic_width", type=int)
    p.add_argument("--critic_heads", type=int)
    p.add_argument("--critic_mlp", type=int)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="compute dtype of both models (params and optimizer stay float32)")
    p.add_argument("--remat", action="store_true",
                   help="rematerialise both models' blocks in the backward pass (config.actor.remat, "
                        "config.critic.remat): memory for time")
    p.add_argument("--mesh", default="-1,1,1", help="devices along (data, fsdp, tensor); -1 = the rest")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median reported)")
    p.add_argument("--skip_iteration", action="store_true", help="do not time the whole iteration")
    p.add_argument("--skip_breakdown", action="store_true",
                   help="do not time prefill alone and generate at the update batch")
    p.add_argument("--skip_env", action="store_true", help="do not time the host KB oracle")
    p.add_argument("--matmul_n", type=int, default=2048,
                   help="side of the square jnp.dot that measures this machine's matmul rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lengths", choices=["full", "mixed"], default="full",
                   help="observation rows: every column real (full), or left-padded rows of 1..obs_len real tokens, "
                        "drawn uniformly (mixed: the padding a real replay buffer holds)")
    p.add_argument("--length_buckets", default="",
                   help="comma-separated widths the phases and generate cut row groups to (config.tokens.length_buckets)")
    p.add_argument("--bucket_chunks", type=int, default=8, help="row groups per batch (config.tokens.bucket_chunks)")
    return p.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class Settings:
    preset: str
    actor: dict
    critic: dict
    critic_vocab: int
    obs_len: int
    new_tokens: int
    batch: int
    rollout_batch: int
    rollout_size: int
    max_turns: int
    critic_steps: int
    actor_steps: int
    capacity: int
    dtype: str
    mesh: tuple[int, ...]
    repeats: int
    lengths: str = "full"
    length_buckets: tuple[int, ...] = ()
    bucket_chunks: int = 1
    remat: bool = False


def settings_from(args: argparse.Namespace) -> Settings:
    pre = PRESETS[args.preset]
    actor, critic = dict(pre["actor"]), dict(pre["critic"])
    for flag, key in (("actor_layers", "n_layer"), ("actor_width", "n_embd"), ("actor_heads", "n_head"),
                      ("actor_vocab", "vocab_size")):
        if getattr(args, flag) is not None:
            actor[key] = getattr(args, flag)
    for flag, key in (("critic_layers", "num_hidden_layers"), ("critic_width", "hidden_size"),
                      ("critic_heads", "num_attention_heads"), ("critic_mlp", "intermediate_size")):
        if getattr(args, flag) is not None:
            critic[key] = getattr(args, flag)

    def pick(name: str) -> Any:
        return pre[name] if getattr(args, name) is None else getattr(args, name)

    critic_steps = actor_steps = args.steps_per_phase
    critic_steps = args.critic_steps or critic_steps or pre["critic_steps"]
    actor_steps = args.actor_steps or actor_steps or pre["actor_steps"]
    obs_len, new_tokens = pick("obs_len"), pick("new_tokens")
    # The actor reads [obs; action] in the actor step; the critic reads obs or action alone.
    actor["n_positions"] = max(actor["n_positions"], obs_len + new_tokens)
    critic["max_position_embeddings"] = max(critic["max_position_embeddings"],
                                            max(obs_len, new_tokens) + CRITIC_PAD_ID + 1)
    critic_vocab = args.critic_vocab or (actor["vocab_size"] if args.actor_vocab else pre["critic_vocab"])
    rollout_batch = pick("rollout_batch")
    rollout_size = math.ceil(pick("rollout_size") / rollout_batch) * rollout_batch
    mesh = tuple(int(x) for x in args.mesh.split(","))
    s = Settings(args.preset, actor, critic, critic_vocab, obs_len, new_tokens, pick("batch"), rollout_batch,
                 rollout_size, pick("max_turns"), critic_steps, actor_steps, pick("capacity"), args.dtype, mesh,
                 args.repeats, args.lengths, tuple(int(w) for w in args.length_buckets.split(",") if w),
                 args.bucket_chunks, args.remat)
    for name in ("obs_len", "new_tokens", "batch", "rollout_batch", "max_turns", "critic_steps", "actor_steps",
                 "capacity", "repeats", "bucket_chunks"):
        if getattr(s, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(s, name)}")
    return s


def make_bridge(s: Settings) -> token_bridge.TokenBridge:
    """Identity when the vocabularies match, else a synthetic id table of the same shape as
    the real GPT-2 -> RoBERTa one (a jnp.take inside the phases)."""
    if s.critic_vocab == s.actor["vocab_size"]:
        return token_bridge.TokenBridge(kind="identity", critic_length=None, bos_id=None, pad_id=CRITIC_PAD_ID,
                                        unk_id=CRITIC_PAD_ID)
    table = (np.arange(s.actor["vocab_size"], dtype=np.int64) % s.critic_vocab).astype(np.int32)
    return token_bridge.TokenBridge(kind="table", critic_length=None, bos_id=None, pad_id=CRITIC_PAD_ID,
                                    unk_id=CRITIC_PAD_ID, table=table)


def obs_masks(rng: np.random.Generator, shape: tuple[int, ...], s: Settings) -> np.ndarray:
    """Masks of observation rows (``shape``: [..., obs_len]): all real (``--lengths=full``)
    or left-padded with 1..obs_len real tokens drawn uniformly (``mixed``)."""
    if s.lengths == "full":
        return np.ones(shape, bool)
    real = rng.integers(1, s.obs_len + 1, shape[:-1])
    return np.arange(s.obs_len) >= (s.obs_len - real)[..., None]


def random_transitions(rng: np.random.Generator, n: int, s: Settings) -> replay.Transitions:
    """n random turns: observations as ``obs_masks`` says, full-length actions."""
    v = s.actor["vocab_size"]
    obs = rng.integers(0, v, (n, s.obs_len), dtype=np.int32)
    nxt = rng.integers(0, v, (n, s.obs_len), dtype=np.int32)
    act = rng.integers(0, v, (n, s.new_tokens), dtype=np.int32)
    return replay.Transitions(
        obs=obs, obs_mask=obs_masks(rng, obs.shape, s), action=act, action_mask=np.ones(act.shape, bool),
        next_obs=nxt, next_obs_mask=obs_masks(rng, nxt.shape, s),
        reward=-np.ones((n,), np.float32), done=rng.random(n) < 0.1, mc_return=-rng.random(n).astype(np.float32),
        episode_return=-rng.random(n).astype(np.float32), turn=np.zeros((n,), np.int32))


def time_env(s: Settings, repeats: int) -> dict[str, float] | None:
    """Host seconds of one rollout batch's environment + KB-oracle work (reset and
    ``max_turns`` steps with random templated questions; no tokenizer)."""
    try:
        from archer_jax import tasks
    except Exception as e:  # noqa: BLE001 - optional part
        print(f"(env timing skipped: {e!r})", file=sys.stderr)
        return None
    task = tasks.get("guess_city")
    env = task.make_env({"max_turns": s.max_turns}, s.rollout_batch)
    pool = list(task.question_pool())
    rng = np.random.default_rng(0)
    plans = [[[pool[i] for i in rng.integers(0, len(pool), s.rollout_batch)] for _ in range(s.max_turns)]
             for _ in range(repeats + 1)]
    times, steps = [], []
    for r, plan in enumerate(plans):
        start = time.perf_counter()
        env.reset(list(range(r * s.rollout_batch, (r + 1) * s.rollout_batch)))
        n = 0
        for questions in plan:
            _, _, dones = env.step(questions)
            n += 1
            if dones.all():
                break
        if r:  # the first pass warms caches (regexes, matchers)
            times.append(time.perf_counter() - start)
            steps.append(n)
    median = statistics.median(times)
    return {"env_rollout_batch_s": median, "env_step_s": median / max(statistics.median(steps), 1),
            "env_iteration_s": median * (s.rollout_size // s.rollout_batch)}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    s = settings_from(args)
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    counter = CompileCounter()
    dtype = jnp.dtype(s.dtype)
    mesh = sharding.make_mesh(s.mesh)
    rules = sharding.DEFAULT_RULES
    actor_pad = s.actor["vocab_size"] - 1  # GPT-2 pads with <|endoftext|>, its last id
    # Before any state or program (on a CPU host: Python, JAX's runtime and this package).
    start_memory = peak_memory()[1]

    actor = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(**s.actor, dtype=dtype, remat=s.remat))
    encoder = roberta.RobertaModel(roberta.RobertaConfig(vocab_size=s.critic_vocab, pad_token_id=CRITIC_PAD_ID,
                                                         dtype=dtype, remat=s.remat, **s.critic))
    critic = value_heads.DoubleCritic(encoder=encoder, hidden_size=s.critic["hidden_size"])
    bridge = make_bridge(s)
    hp = archer.ArcherHParams(critic_batch_size=s.batch, actor_batch_size=s.batch, critic_epochs=s.critic_steps,
                              actor_epochs=s.actor_steps, max_new_tokens=s.new_tokens, temperature=TEMPERATURE,
                              stop_ids=(), pad_id=actor_pad, length_buckets=s.length_buckets,
                              bucket_chunks=s.bucket_chunks)
    actor_tx = train_state.make_optimizer(1e-5, 1.0)
    critic_tx = train_state.make_optimizer(2e-5, 1.0)

    t0 = time.perf_counter()
    state, state_shardings = train_state.create_state(
        jax.random.key(args.seed), actor=actor, critic=critic, actor_tx=actor_tx, critic_tx=critic_tx, mesh=mesh,
        rules=rules)
    data_par = mesh.shape["data"] * mesh.shape["fsdp"]
    capacity = math.ceil(s.capacity / data_par) * data_par
    buffer, buffer_shardings = replay.create_sharded(capacity, s.obs_len, s.new_tokens, mesh, rules)
    insert = replay.make_insert(buffer_shardings, mesh, rules)
    jax.block_until_ready((state, buffer))
    holder = {"state": state}  # the phases donate the state: always rebind through here
    del state
    init_s = time.perf_counter() - t0
    progress(f"state and buffer created in {init_s:.1f} s")
    memory_kind, _ = peak_memory()
    memory: dict[str, int] = {"after_start": start_memory, "after_init": peak_memory()[1]}

    rng = np.random.default_rng(args.seed)
    rows_per_insert = s.max_turns * s.rollout_batch  # the trainer's fixed [max_turns * B] rollout arrays
    # Fill part of the buffer so phases sample real rows (this also compiles the insert).
    fill = random_transitions(rng, rows_per_insert, s)
    t0 = time.perf_counter()
    buffer = insert(buffer, fill)
    jax.block_until_ready(buffer)
    insert_compile_s = time.perf_counter() - t0

    # --- 1. rollout generate (exactly the trainer's policy function, stop_ids=()).
    policy = jax.jit(functools.partial(length_buckets.generate, actor, max_new_tokens=s.new_tokens, stop_ids=(),
                                       pad_id=actor_pad, **hp.rows))
    prompt = rng.integers(0, s.actor["vocab_size"], (s.rollout_batch, s.obs_len), dtype=np.int32)
    prompt_ids, prompt_mask = jnp.asarray(prompt), jnp.asarray(obs_masks(rng, prompt.shape, s))
    gen_key = jax.random.key(1)

    def run_generate() -> None:
        jax.block_until_ready(policy(holder["state"].actor_params, prompt_ids, prompt_mask, gen_key, TEMPERATURE).tokens)

    params_now = holder["state"].actor_params
    part_flops = {"generate": flops.count_flops(policy, params_now, prompt_ids, prompt_mask, gen_key, TEMPERATURE,
                                                while_trips=s.new_tokens - 1)}
    gen = timed(run_generate, s.repeats, counter)
    gen_first, gen_s = gen.first, gen.median
    memory["after_generate"] = peak_memory()[1]
    progress(f"generate: {gen_s:.4f} s (first call {gen_first:.1f} s)")

    # Where generate's and the steps' time goes: prefill alone (1 new token) at the rollout
    # batch, and the update steps' own sampling (generate at the update batch).
    breakdown: dict[str, float] = {}
    if not args.skip_breakdown:
        prefill = jax.jit(functools.partial(length_buckets.generate, actor, max_new_tokens=1, stop_ids=(),
                                            pad_id=actor_pad, **hp.rows))
        prefill_s = timed(lambda: jax.block_until_ready(
            prefill(holder["state"].actor_params, prompt_ids, prompt_mask, gen_key, TEMPERATURE).tokens),
            s.repeats, counter).median
        step_ids, step_mask = prompt_ids[:1].repeat(s.batch, 0), prompt_mask[:1].repeat(s.batch, 0)
        step_gen_s = timed(lambda: jax.block_until_ready(
            policy(holder["state"].actor_params, step_ids, step_mask, gen_key, TEMPERATURE).tokens),
            s.repeats, counter).median
        progress(f"prefill {prefill_s:.4f} s, generate at update batch {step_gen_s:.4f} s")
        part_flops["generate_prefill"] = flops.count_flops(prefill, params_now, prompt_ids, prompt_mask, gen_key,
                                                           TEMPERATURE, while_trips=0)
        part_flops["generate_update_batch"] = flops.count_flops(policy, params_now, step_ids, step_mask, gen_key,
                                                                TEMPERATURE, while_trips=s.new_tokens - 1)
        breakdown = {"generate_prefill_s": prefill_s,
                     "generate_decode_token_s": (gen_s - prefill_s) / max(s.new_tokens - 1, 1),
                     "generate_update_batch_s": step_gen_s}

    # --- 2. critic and actor phases (state donated: rebind every call).
    phases = archer.make_phases(actor=actor, critic=critic, hp=hp, bridge=bridge, actor_tx=actor_tx,
                                critic_tx=critic_tx, state_shardings=state_shardings,
                                buffer_shardings=buffer_shardings, mesh=mesh, rules=rules)
    bufholder = {"buffer": buffer}  # the insert donates the buffer
    del buffer

    def run_phase(phase) -> None:
        holder["state"], m = phase(holder["state"], bufholder["buffer"])
        jax.block_until_ready((holder["state"], m))

    for name in ("critic", "actor"):  # traced only: the donated state is not consumed
        part_flops[f"{name}_phase"] = flops.count_flops(getattr(phases, name), holder["state"], bufholder["buffer"],
                                                        while_trips=s.new_tokens - 1)
    critic_t = timed(lambda: run_phase(phases.critic), s.repeats, counter)
    critic_first, critic_s = critic_t.first, critic_t.median
    memory["after_critic_phase"] = peak_memory()[1]
    progress(f"critic phase: {critic_s:.4f} s (first call {critic_first:.1f} s)")
    actor_t = timed(lambda: run_phase(phases.actor), s.repeats, counter)
    actor_first, actor_s = actor_t.first, actor_t.median
    memory["after_actor_phase"] = peak_memory()[1]
    progress(f"actor phase: {actor_s:.4f} s (first call {actor_first:.1f} s)")

    # --- 3. a whole iteration (random observations instead of an environment).
    chunks = s.rollout_size // s.rollout_batch
    iteration: dict[str, float] = {}
    if not args.skip_iteration:
        turn_obs = rng.integers(0, s.actor["vocab_size"], (s.max_turns + 1, s.rollout_batch, s.obs_len),
                                dtype=np.int32)
        turn_masks = obs_masks(rng, turn_obs.shape, s)
        keys = list(jax.random.split(jax.random.key(2), chunks * s.max_turns))
        reward = -np.ones((rows_per_insert,), np.float32)
        done = np.zeros((s.max_turns, s.rollout_batch), bool)
        done[-1] = True
        done = done.reshape(-1)
        turn_index = np.repeat(np.arange(s.max_turns, dtype=np.int32), s.rollout_batch)
        obs_rows = turn_obs[:-1].reshape(rows_per_insert, s.obs_len)
        next_rows = turn_obs[1:].reshape(rows_per_insert, s.obs_len)
        obs_mask_rows = turn_masks[:-1].reshape(rows_per_insert, s.obs_len)
        next_mask_rows = turn_masks[1:].reshape(rows_per_insert, s.obs_len)
        parts: dict[str, list[float]] = {"rollout": [], "insert_and_phases": []}

        def run_iteration() -> None:
            start = time.perf_counter()
            for c in range(chunks):
                actions, action_masks = [], []
                for t in range(s.max_turns):
                    gen = policy(holder["state"].actor_params, turn_obs[t], turn_masks[t], keys[c * s.max_turns + t],
                                 TEMPERATURE)
                    tokens, mask = jax.device_get((gen.tokens, gen.mask))  # the host decodes every turn
                    actions.append(tokens)
                    action_masks.append(mask)
                rows = replay.Transitions(
                    obs=obs_rows, obs_mask=obs_mask_rows, action=np.concatenate(actions),
                    action_mask=np.concatenate(action_masks), next_obs=next_rows, next_obs_mask=next_mask_rows,
                    reward=reward, done=done, mc_return=reward, episode_return=reward, turn=turn_index)
                bufholder["buffer"] = insert(bufholder["buffer"], rows)
            # The rollout ends when the last turn's ids are on the host (inserts are async).
            mid = time.perf_counter()
            holder["state"], cm = phases.critic(holder["state"], bufholder["buffer"])
            holder["state"], am = phases.actor(holder["state"], bufholder["buffer"])
            jax.device_get({**cm, **am})  # the trainer's one metrics fetch per iteration
            jax.block_until_ready((holder["state"], bufholder["buffer"]))
            end = time.perf_counter()
            parts["rollout"].append(mid - start)
            parts["insert_and_phases"].append(end - mid)

        # Every function is compiled already: the warm-up is only a first untimed pass.
        it = timed(run_iteration, s.repeats, counter)
        it_first, it_s = it.first, it.median
        iteration = {"iteration_s": it_s, "iteration_first_s": it_first,
                     "iteration_rollout_s": statistics.median(parts["rollout"][1:]),
                     "iteration_insert_and_phases_s": statistics.median(parts["insert_and_phases"][1:]),
                     "iteration_generate_calls": chunks * s.max_turns,
                     "iteration_new_tokens_per_s": chunks * s.max_turns * s.rollout_batch * s.new_tokens / it_s}
        memory["after_iteration"] = peak_memory()[1]
        part_flops["iteration"] = (chunks * s.max_turns * part_flops["generate"] + part_flops["critic_phase"]
                                   + part_flops["actor_phase"])

    env = None if args.skip_env else time_env(s, s.repeats)
    progress(f"measuring the {s.dtype} matmul rate ({args.matmul_n}^3)")
    rate = flops.matmul_rate(s.dtype, args.matmul_n)
    if jax.devices()[0].platform != "cpu":  # fake CPU devices share the host's cores; chips add up
        rate *= jax.device_count()

    st = holder["state"]
    actor_params, critic_params = n_params(st.actor_params), n_params(st.critic_params)
    dev = jax.devices()[0]
    peak = flops.peak_flops(dev, s.dtype)
    seconds = {"generate": gen_s, "generate_prefill": breakdown.get("generate_prefill_s"),
               "generate_update_batch": breakdown.get("generate_update_batch_s"), "critic_phase": critic_s,
               "actor_phase": actor_s, "iteration": iteration.get("iteration_s")}
    # Per part: FLOPs, the seconds they take at the measured matmul rate, the fraction of
    # that rate achieved and, where the device's peak is known, MFU.
    limits = {name: {"flops": n, "limit_s": n / rate, "matmul_fraction": n / rate / seconds[name],
                     **({} if peak is None else {"mfu": n / seconds[name] / (peak * jax.device_count())})}
              for name, n in part_flops.items()}
    result: dict[str, Any] = {
        "benchmark": "archer", "preset": s.preset, "settings": dataclasses.asdict(s),
        "bridge": bridge.kind, "device_platform": dev.platform, "device_kind": dev.device_kind,
        "device_count": jax.device_count(), "mesh_shape": dict(mesh.shape), "jax_version": jax.__version__,
        "actor_params": actor_params, "critic_params": critic_params,
        "state_bytes": tree_bytes(st), "buffer_bytes": tree_bytes(bufholder["buffer"]),
        "init_s": init_s, "insert_compile_s": insert_compile_s,
        "generate_s": gen_s, "generate_first_s": gen_first,
        "generate_new_tokens_per_s": s.rollout_batch * s.new_tokens / gen_s,
        "critic_phase_s": critic_s, "critic_phase_first_s": critic_first, "critic_step_s": critic_s / s.critic_steps,
        "actor_phase_s": actor_s, "actor_phase_first_s": actor_first, "actor_step_s": actor_s / s.actor_steps,
        **breakdown,
        **iteration,
        **({} if env is None else env),
        "cores_busy": {"generate": gen.cores_busy, "critic_phase": critic_t.cores_busy,
                       "actor_phase": actor_t.cores_busy, **({"iteration": it.cores_busy} if iteration else {})},
        "cpu_count": os.cpu_count(),
        "matmul_flops_per_s": rate, "matmul_n": args.matmul_n, "peak_flops_per_s": peak, "flops": limits,
        "memory_kind": memory_kind, "peak_memory_bytes": memory,
        # Each part's own: resident bytes when its timed calls start and at their highest.
        "host_rss_by_part": {name: {"start": t.rss[0], "peak": t.rss[1]} for name, t in
                             (("generate", gen), ("critic_phase", critic_t), ("actor_phase", actor_t),
                              *((("iteration", it),) if iteration else ())) if t.rss is not None},
        "recompiles_in_timed_calls": counter.count, "retraces_in_timed_calls": counter.traces,
    }
    print_table(result, s)
    print(json.dumps(result))


def print_table(r: dict[str, Any], s: Settings) -> None:
    a, c = s.actor, s.critic
    print(f"archer benchmark, preset {s.preset}: {r['device_count']} x {r['device_kind']} ({r['device_platform']}), "
          f"mesh {r['mesh_shape']}, jax {r['jax_version']}, {s.dtype}{', remat' if s.remat else ''}")
    print(f"  actor  GPT-2   {a['n_layer']}x{a['n_embd']}, {a['n_head']} heads, vocab {a['vocab_size']}: "
          f"{r['actor_params'] / 1e6:.1f}M params")
    print(f"  critic RoBERTa {c['num_hidden_layers']}x{c['hidden_size']}, {c['num_attention_heads']} heads, "
          f"ffn {c['intermediate_size']}, vocab {s.critic_vocab} (+2 Q, 2 V heads): "
          f"{r['critic_params'] / 1e6:.1f}M params, {r['bridge']} bridge")
    print(f"  obs {s.obs_len} tokens, {s.new_tokens} new tokens, update batch {s.batch}, rollout batch "
          f"{s.rollout_batch}, {s.critic_steps} critic + {s.actor_steps} actor steps per phase, "
          f"repeats {s.repeats} (medians)")
    rows = [
        ("generate (rollout batch)", r["generate_s"], r["generate_first_s"],
         f"{r['generate_new_tokens_per_s']:,.0f} new tokens/s"),
        (f"critic phase ({s.critic_steps} steps)", r["critic_phase_s"], r["critic_phase_first_s"],
         f"{r['critic_step_s'] * 1e3:,.1f} ms/step"),
        (f"actor phase ({s.actor_steps} steps)", r["actor_phase_s"], r["actor_phase_first_s"],
         f"{r['actor_step_s'] * 1e3:,.1f} ms/step"),
    ]
    if "generate_prefill_s" in r:
        rows.insert(1, ("  of which prefill (1 new token)", r["generate_prefill_s"], float("nan"),
                        f"then {r['generate_decode_token_s'] * 1e3:,.2f} ms per decoded token"))
        def share(key: str) -> float:
            return r["generate_update_batch_s"] / r[key] * 100

        rows.insert(2, (f"generate at update batch {s.batch}", r["generate_update_batch_s"], float("nan"),
                        (f"~{share('critic_step_s'):.0f}% of a critic step, ~{share('actor_step_s'):.0f}% of an "
                         "actor step")))
    if "iteration_s" in r:
        rows.append((f"iteration ({r['iteration_generate_calls']} generate calls)", r["iteration_s"],
                     r["iteration_first_s"],
                     (f"rollout {r['iteration_rollout_s']:.3f} s + insert/phases "
                      f"{r['iteration_insert_and_phases_s']:.3f} s")))
    print(f"  {'part':40s} {'median s':>10s} {'first s':>10s}  note")
    for name, med, first, note in rows:
        first_text = "" if math.isnan(first) else f"{first:.4f}"
        print(f"  {name:40s} {med:10.4f} {first_text:>10s}  {note}")
    if "env_iteration_s" in r:
        print(f"  host KB oracle (not in the iteration)    {r['env_iteration_s']:10.4f} {'':>10s}  "
              f"{r['env_step_s'] * 1e3:.2f} ms per batched env step")
    mfu = r["peak_flops_per_s"] is not None
    print(f"  matmul FLOPs per part; the machine's matmul rate {r['matmul_flops_per_s'] / 1e9:,.1f} GFLOP/s "
          f"({r['matmul_n']}^3 jnp.dot, {s.dtype})" + (f", peak {r['peak_flops_per_s'] / 1e12:,.0f} TFLOP/s per "
                                                       "device" if mfu else ""))
    print(f"  {'part':40s} {'GFLOP':>10s} {'limit s':>10s}  {'of the rate':>11s}  {'cores busy':>10s}"
          + ("  MFU" if mfu else ""))
    for name, f in r["flops"].items():
        busy = r["cores_busy"].get(name)
        busy_text = "" if busy is None else f"{busy:.2f} of {r['cpu_count']}"
        print(f"  {name:40s} {f['flops'] / 1e9:10.2f} {f['limit_s']:10.4f}  {f['matmul_fraction']:10.1%}  "
              f"{busy_text:>10s}" + (f"  {f['mfu']:.1%}" if mfu else ""))
    mem = ", ".join(f"{k} {_gb(v)}" for k, v in r["peak_memory_bytes"].items())
    print(f"  memory ({r['memory_kind']}): {mem}")
    if r["host_rss_by_part"]:
        own = ", ".join(f"{k} {_gb(v['start'])} -> {_gb(v['peak'])}" for k, v in r["host_rss_by_part"].items())
        print(f"  host RSS per part, when its timed calls start -> their highest: {own}")
    print(f"  state {_gb(r['state_bytes'])}, buffer {_gb(r['buffer_bytes'])}, init {r['init_s']:.1f} s, "
          f"recompiles / retraces in timed calls: {r['recompiles_in_timed_calls']} / "
          f"{r['retraces_in_timed_calls']}")


if __name__ == "__main__":
    main()
