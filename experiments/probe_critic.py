"""Does the critic rank utterances? A probe of a run's latest checkpoint against
Monte-Carlo ground truth.

    python -m experiments.probe_critic --config=guess_city.py:demo --workdir=/tmp/gc_demo \
        [--states=32 --samples=4 --rollouts=8 --seed=0]

The run is rebuilt from its config and its latest checkpoint restored by
``trainer.setup``. Pass the ``--config=<task>.py:variant`` and ``--config.x=``
overrides of the ``experiments.run`` command that made the folder; without
``--config=`` the last command recorded in ``<workdir>/run_info.jsonl`` is used, where
the folder has one (``--config.x=`` given here still override it). A config whose
shapes do not fit the checkpoint is refused with the fields to check; one that fits
but differs (gamma, temperature) is not detectable: pass the run's own. Nothing in the
folder is changed but ``probe/``; the checkpoints are opened read-only, so a run may be
probed while it trains (its latest complete checkpoint is read).

1. States: ``--states`` games of the task played by the checkpoint's actor (greedy for
   the ``config.archer.greedy_rollouts`` fraction, else sampled at
   ``config.archer.temperature``, as the replay buffer's games are), each stopped at
   a uniformly drawn turn before its end: state = (episode seed, the actions said before it).
2. ``--samples`` utterances per state from the actor at ``config.archer.actor_temperature``
   (what the actor phase samples and the critic ranks for it).
3. For each (state, utterance), ``--rollouts`` games replay the prefix in a fresh
   environment reset with the same seed (any task: the knowledge-base oracles, the
   shop and the Z-machine are deterministic; every replayed state's observation is
   compared with the recorded one and the mismatches counted), say the utterance,
   then continue with the actor at
   ``config.archer.temperature`` to the end; the return from the state on is
   discounted with ``config.archer.gamma``, as the critic's targets are.
4. The ONLINE critic scores each (state, utterance): Q = min(Q1, Q2), V = min(V1, V2),
   as the actor's advantage reads them.
5. ``archer_jax.critic_probe.ranking_statistics``: within-state pairwise ranking
   accuracy, within-state correlation of Q with the MC return, across-state
   correlation of V with the state's mean MC return, and the MC ground truth's own
   split-half correlation (its noise ceiling), with the counts.

Writes ``<workdir>/probe/critic_probe_<checkpoint step>.json`` (the numbers and every
state, utterance, score and return) and prints a summary whose last line is one JSON
object. Every generate call and every critic call has one fixed shape
([config.archer.rollout_batch, config.tokens.obs_len]), so nothing compiles per state
(``compiles`` in the output counts XLA compilations after setup). Single process.

Measured with the defaults (32 states x 4 utterances x 8 rollouts = 1,024 games) on
the 2-core machine while other jobs shared it: 54 s in all (40 s of it probing) on a
Guess My City checkpoint of the demo's shapes (``:demo`` stopped after 3 BC and 2
ArCHer iterations: a weak actor, so long games); 30 s (12 s) on the smoke run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from archer_jax import critic_probe, replay
from archer_jax.algorithms import archer
from archer_jax.data import tokenization
from experiments import run as run_cli  # defines --config and --workdir, resolves config paths
from experiments.run_folder import RUN_INFO_FILE, recorded_config_args

_STATES = flags.DEFINE_integer("states", 32, "fixed states probed (games stopped at a random turn)")
_SAMPLES = flags.DEFINE_integer("samples", 4, "utterances sampled per state (at config.archer.actor_temperature), >= 2")
_ROLLOUTS = flags.DEFINE_integer("rollouts", 8, "Monte-Carlo rollouts per (state, utterance), >= 2")
_SEED = flags.DEFINE_integer("seed", 0, "seeds the probe's games and samples (not the run's config.seed)")

PROBE_DIR = "probe"
# Probe games never share seeds with training rollouts (config.seed * 1e6 + ...) or
# evaluation (1e7 + ...).
PROBE_SEED_BASE = 10**12
_SEED_STRIDE = 10**6


class ProbeError(ValueError):
    """Bad probe input (a flag, the workdir): one message, exit code 2."""


@dataclasses.dataclass
class States:
    """N fixed states: the game that reaches each, and the actor's encoding of it."""

    seeds: list[int]
    hidden: list[str]
    prefixes: list[list[str]]  # the actions said before the state, one per turn
    greedy: list[bool]  # the game that led there was played greedily
    obs: Any  # [N, obs_len] int32, the actor's left-padded ids
    obs_mask: Any  # [N, obs_len] bool


def check_workdir(workdir: str) -> Path:
    """The workdir as a Path, or ProbeError naming what is wrong and what to do."""
    path = Path(workdir)
    if not path.exists():
        raise ProbeError(f"--workdir={workdir}: no such folder; pass the --workdir of a run made by experiments.run")
    if not path.is_dir():
        raise ProbeError(f"--workdir={workdir}: is a file, not a run folder; pass the --workdir of a run made by "
                         "experiments.run")
    checkpoints = path / "checkpoints"
    if not checkpoints.is_dir() or not any(p.name.isdigit() and p.is_dir() for p in checkpoints.iterdir()):
        raise ProbeError(f"{checkpoints}: no complete checkpoint to probe; run experiments.run with "
                         f"--workdir={workdir} until it writes one (config.checkpoint_every)")
    return path


def _chunks(n: int, batch: int) -> list[tuple[Any, int]]:
    """Row indices [0, n) cut into batches of exactly ``batch`` rows (one shape for
    every call): (rows, real), the last batch padded with copies of its first row
    after its ``real`` rows."""
    out = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        out.append((np.concatenate([rows, np.full(batch - len(rows), rows[0])]), len(rows)))
    return out


def pick_states(run: Any, n: int, seed: int, key: Any) -> States:
    """Plays ``n`` games with the run's actor and stops each at a random turn."""
    c, runner = run.config, run.runner
    b = runner.env.batch_size
    rng = np.random.default_rng(seed)
    games = -(-n // b) * b
    greedy = np.zeros(games, bool)
    greedy[rng.permutation(n)[: round(c.archer.greedy_rollouts * n)]] = True
    states = States(seeds=[], hidden=[], prefixes=[], greedy=[], obs=[], obs_mask=[])
    base = PROBE_SEED_BASE + seed * _SEED_STRIDE
    for batch, start in enumerate(range(0, games, b)):
        seeds = [base + start + i for i in range(b)]
        temperatures = np.where(greedy[start:start + b], 0.0, c.archer.temperature)
        result = runner.run(run.state.actor_params, seeds, jax.random.fold_in(key, batch), temperatures)
        t = result.transitions
        for i in range(min(b, n - start)):
            turn = int(rng.integers(int(result.lengths[i])))  # a state before the game's end
            rows = [u * b + i for u in range(turn)]
            # The actions as the runner said them: the same decoding of the same ids.
            said = tokenization.decode_utterances(run.tokenizer, t["action"][rows], t["action_mask"][rows],
                                                  c.tokens.terminator) if rows else []
            states.seeds.append(seeds[i])
            states.hidden.append(result.hidden[i])
            states.prefixes.append(said)
            states.greedy.append(bool(greedy[start + i]))
            states.obs.append(result.transitions["obs"][turn * b + i])
            states.obs_mask.append(result.transitions["obs_mask"][turn * b + i])
    states.obs, states.obs_mask = np.stack(states.obs), np.stack(states.obs_mask)
    return states


def sample_utterances(run: Any, states: States, k: int, key: Any) -> tuple[Any, Any, list[str]]:
    """``k`` utterances per state at the actor phase's temperature: ids [N * K, T], mask, texts
    (row s * K + j is state s's j-th)."""
    b = run.runner.env.batch_size
    obs, obs_mask = np.repeat(states.obs, k, axis=0), np.repeat(states.obs_mask, k, axis=0)
    tokens, mask = [], []
    temperatures = np.full(b, run.config.archer.actor_temperature, np.float32)
    for batch, (rows, keep) in enumerate(_chunks(len(obs), b)):
        gen = jax.device_get(run.runner.policy(run.state.actor_params, obs[rows], obs_mask[rows],
                                               jax.random.fold_in(key, batch), temperatures))
        tokens.append(np.asarray(gen.tokens)[:keep])
        mask.append(np.asarray(gen.mask)[:keep])
    tokens, mask = np.concatenate(tokens), np.concatenate(mask)
    texts = tokenization.decode_utterances(run.tokenizer, tokens, mask, run.config.tokens.terminator)
    return tokens, mask, texts


def mc_returns(run: Any, states: States, utterances: list[str], k: int, m: int, key: Any) -> tuple[Any, int, int]:
    """Returns [N, K, M] from each state after its utterance, discounted with
    config.archer.gamma; also (rollouts whose replayed prefix reached another observation
    than the recorded state's, env steps)."""
    c, runner = run.config, run.runner
    env, b, gamma = runner.env, runner.env.batch_size, c.archer.gamma
    n = len(states.seeds)
    state_of = np.arange(n * k * m) // (k * m)  # row (s * K + j) * M + r
    utterance_of = np.arange(n * k * m) // m
    temperatures = np.full(b, c.archer.temperature, np.float32)
    returns = np.zeros(n * k * m)
    mismatches = steps = calls = 0
    for rows, keep in _chunks(n * k * m, b):
        s, u = state_of[rows], utterance_of[rows]
        prefix = [states.prefixes[i] for i in s]
        start = np.array([len(p) for p in prefix])  # the state's turn
        observations = env.reset([states.seeds[i] for i in s])
        done = np.zeros(b, bool)
        ret, discount = np.zeros(b), np.ones(b)
        reached = np.zeros(keep, bool)  # the replay got to the state's turn (else: a mismatch)
        for turn in range(c.env.max_turns):
            if done.all():
                break
            at_state = np.flatnonzero(start[:keep] == turn)
            reached[at_state] = True
            if at_state.size:  # the replayed prefix must reach the recorded state
                ids, ids_mask = tokenization.encode_left(run.tokenizer, [observations[i] for i in at_state],
                                                         c.tokens.obs_len, pad_id=run.hp.pad_id)
                recorded, recorded_mask = states.obs[s[at_state]], states.obs_mask[s[at_state]]
                mismatches += int(np.sum(np.any((ids != recorded) | (ids_mask != recorded_mask), axis=1)
                                         | done[at_state]))
            generated = [""] * b
            if ((turn > start) & ~done).any():
                ids, ids_mask = tokenization.encode_left(run.tokenizer, observations, c.tokens.obs_len,
                                                         pad_id=run.hp.pad_id)
                gen = jax.device_get(runner.policy(run.state.actor_params, ids, ids_mask,
                                                   jax.random.fold_in(key, calls), temperatures))
                calls += 1
                generated = tokenization.decode_utterances(run.tokenizer, gen.tokens, gen.mask,
                                                           c.tokens.terminator)
            actions = [prefix[i][turn] if turn < start[i] else utterances[u[i]] if turn == start[i]
                       else generated[i] for i in range(b)]
            observations, rewards, dones = env.step(actions)
            after = ~done & (turn >= start)
            steps += int((~done).sum())
            ret += np.where(after, discount * np.asarray(rewards, np.float64), 0.0)
            discount = np.where(after, discount * gamma, discount)
            done |= np.asarray(dones, bool)
        mismatches += int(np.sum(~reached))
        returns[rows[:keep]] = ret[:keep]
    return returns.reshape(n, k, m), int(mismatches), steps


def critic_scores(run: Any, states: States, tokens: Any, mask: Any, k: int) -> tuple[Any, Any]:
    """Q = min(Q1, Q2) [N, K] and V = min(V1, V2) [N] from the ONLINE critic (as the
    actor's advantage reads it), through the run's token bridge."""

    @jax.jit
    def score(params, obs, obs_mask, act, act_mask, hidden, hidden_mask):
        obs, obs_mask = archer.critic_view(run.bridge, obs, obs_mask, hidden, hidden_mask)
        act, act_mask = run.bridge(act, act_mask)
        out = run.critic.apply({"params": params}, obs, obs_mask, act, act_mask)
        return jnp.minimum(out.q1, out.q2), jnp.minimum(out.v1, out.v2)

    b = run.runner.env.batch_size
    obs, obs_mask = np.repeat(states.obs, k, axis=0), np.repeat(states.obs_mask, k, axis=0)
    hidden = hidden_mask = None  # a privileged critic also reads each state's hidden item
    if run.runner.hidden_len:
        hidden, hidden_mask = replay.hidden_ids(run.tokenizer, np.repeat(states.hidden, k), run.runner.hidden_len,
                                                run.hp.pad_id)
    q, v = [], []
    for rows, keep in _chunks(len(obs), b):
        h = (None, None) if hidden is None else (hidden[rows], hidden_mask[rows])
        qs, vs = jax.device_get(score(run.state.critic_params, obs[rows], obs_mask[rows], tokens[rows], mask[rows],
                                      *h))
        q.append(qs[:keep])
        v.append(vs[:keep])
    q, v = np.concatenate(q).reshape(-1, k), np.concatenate(v).reshape(-1, k)
    return q, v.mean(axis=1)  # V reads the state alone: the K copies agree


def probe(run: Any, *, states: int, samples: int, rollouts: int, seed: int) -> tuple[dict, list[dict]]:
    """(summary, per-state details) of the run's restored checkpoint."""
    from archer_jax import trainer

    compiles, t0 = trainer.CompileCounter.count, time.perf_counter()
    k_states, k_utterances, k_rollouts = jax.random.split(jax.random.key(seed), 3)
    picked = pick_states(run, states, seed, k_states)
    tokens, mask, texts = sample_utterances(run, picked, samples, k_utterances)
    returns, mismatches, steps = mc_returns(run, picked, texts, samples, rollouts, k_rollouts)
    q, v = critic_scores(run, picked, tokens, mask, samples)
    stats = critic_probe.ranking_statistics(q, v, returns)
    step = run.checkpointer.latest_step()
    c = run.config
    summary = {
        "workdir": str(run.workdir), "checkpoint_step": step, "stage": run.progress.get("stage"),
        "iteration": run.progress.get("iteration"), **stats,
        "distinct_utterances_per_state": float(np.mean([len(set(texts[s * samples:(s + 1) * samples]))
                                                         for s in range(states)])),
        "state_turn_mean": float(np.mean([len(p) for p in picked.prefixes])),
        "mc_return_mean": float(returns.mean()), "gamma": c.archer.gamma,
        "rollout_temperature": c.archer.temperature, "utterance_temperature": c.archer.actor_temperature,
        "episodes": int(returns.size), "env_steps": steps,
        "replay_mismatches": mismatches, "compiles": trainer.CompileCounter.count - compiles,
        "seed": seed, "time_s": round(time.perf_counter() - t0, 2),
    }
    mc, se = returns.mean(axis=2), returns.std(axis=2, ddof=1) / math.sqrt(rollouts)
    details = []
    for s in range(states):
        details.append({
            "seed": picked.seeds[s], "hidden": picked.hidden[s], "turn": len(picked.prefixes[s]),
            "greedy_game": picked.greedy[s], "prefix": list(picked.prefixes[s]), "v": float(v[s]),
            "mc_state_mean": float(mc[s].mean()),
            "utterances": [{"text": texts[s * samples + j], "q": float(q[s, j]), "mc_mean": float(mc[s, j]),
                            "mc_se": float(se[s, j]), "returns": returns[s, j].tolist()} for j in range(samples)],
        })
    return summary, details


def _report(summary: dict) -> str:
    def f(x: Any) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    return "\n".join([
        f"critic probe of {summary['workdir']} at checkpoint {summary['checkpoint_step']} "
        f"({summary['stage']} iteration {summary['iteration']}): {summary['states']} states x "
        f"{summary['utterances_per_state']} utterances x {summary['rollouts']} rollouts in {summary['time_s']:.0f} s",
        f"  within-state pair accuracy {f(summary['pair_accuracy'])} over {summary['decided_pairs']} of "
        f"{summary['pairs']} pairs whose MC returns differ beyond their standard error (chance 0.5)",
        f"  within-state corr(Q, MC) {f(summary['within_corr'])} (per-state mean {f(summary['mean_state_corr'])} "
        f"over {summary['states_with_corr']} states); MC noise ceiling {f(summary['mc_noise_ceiling'])} "
        f"(split-half {f(summary['mc_split_half_corr'])})",
        f"  across-state corr(V, state MC) {f(summary['v_corr'])}; Q - MC {f(summary['q_bias'])}, "
        f"V - MC {f(summary['v_bias'])}",
    ])


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_flags(*checks: tuple[str, Any, bool, str]) -> None:
    """``fail`` on the first (flag name, value, ok, what it must be) that is not ok."""
    for name, value, ok, want in checks:
        if not ok:
            fail(f"--{name}={value}: must be {want}")


def fmt(x: Any) -> str:
    """A read-out number for the tools' tables: 3 decimals, '-' for None."""
    return "-" if x is None else f"{x:.3f}"


def open_run() -> Any:
    """The run of --workdir rebuilt from --config with its latest checkpoint restored;
    a user error (the folder, the config, a checkpoint that does not fit) exits with
    one message and code 2."""
    from archer_jax import checkpointing, trainer  # heavy: after the flags parsed

    try:
        config = run_cli._CONFIG.value
        from archer_jax import algorithms
        algorithm = algorithms.ALGORITHMS.get(config.algorithm) if config is not None else None
        if algorithm is not None and not algorithm.critic:  # (an unknown one: trainer.setup says so)
            critics = [n for n, a in algorithms.ALGORITHMS.items() if a.critic]
            raise ProbeError(f"config.algorithm = {config.algorithm!r} trains no utterance-level critic, so there is "
                             f"none to probe; the probe reads runs of {critics}")
        workdir = check_workdir(run_cli._WORKDIR.value)
        if not config.actor.checkpoint and not (workdir / "tokenizer" / "tokenizer.json").is_file():
            raise ProbeError(f"{workdir / 'tokenizer'}: the run's word tokenizer is missing (config.actor.checkpoint "
                             "is empty, so the run built one there); without it the actor's ids mean nothing")
        return trainer.setup(config, workdir, read_only=True)
    except (ProbeError, *trainer.USER_ERRORS) as e:
        if isinstance(e, checkpointing.CheckpointMismatchError):
            print(f"error: {e}", file=sys.stderr)
            fail("the probe rebuilds the run from its config: pass the --config= and --config.x= overrides of the "
                 f"experiments.run command that made {run_cli._WORKDIR.value}")
        fail(str(e))


def write_probe(run: Any, name: str, summary: dict, details: list[dict]) -> None:
    """Writes ``<workdir>/probe/<name>`` (the summary and every state) atomically and
    records its path in ``summary['file']``."""
    out = run.workdir / PROBE_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    summary["file"] = str(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(critic_probe.json_safe({**summary, "states_detail": details}), indent=1) + "\n")
    tmp.replace(out)


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    check_flags(*((name, flag.value, flag.value >= low, f">= {low}")
                  for name, flag, low in (("states", _STATES, 1), ("samples", _SAMPLES, 2), ("rollouts", _ROLLOUTS, 2))))
    run = open_run()
    try:
        if run.progress.get("stage") != "archer":
            print(f"note: the latest checkpoint is from the {run.progress.get('stage')!r} stage: the critic has not "
                  "been trained yet", file=sys.stderr)
        summary, details = probe(run, states=_STATES.value, samples=_SAMPLES.value, rollouts=_ROLLOUTS.value,
                                 seed=_SEED.value)
    finally:
        run.checkpointer.close()
    if summary["replay_mismatches"]:
        print(f"warning: {summary['replay_mismatches']} rollouts replayed their prefix to another observation "
              "(a non-deterministic oracle or environment): their states differ from the probed ones", file=sys.stderr)
    write_probe(run, f"critic_probe_{summary['checkpoint_step']}.json", summary, details)
    print(_report(summary))
    print(json.dumps(critic_probe.json_safe(summary)))


def _with_recorded_config(argv: list[str]) -> list[str]:
    """``argv`` with the run's recorded config arguments put first when it names no
    --config (the user's own --config.x= overrides, after them, still win)."""
    if any(a.startswith("--config=") for a in argv):
        return argv
    workdir = next((a[len("--workdir="):] for a in argv if a.startswith("--workdir=")), None)
    recorded = recorded_config_args(workdir) if workdir else []
    if recorded:
        print(f"config: {' '.join(recorded)} (the command recorded in {Path(workdir) / RUN_INFO_FILE})",
              file=sys.stderr)
    return [argv[0], *recorded, *argv[1:]]


def _command_line_problems(argv: list[str]) -> list[str]:
    """Messages for a missing --config / --workdir or an unknown --config.x= field."""
    problems = []
    if not any(a.startswith("--workdir=") for a in argv):
        problems.append("--workdir=DIR is required: the run folder to probe")
    elif not any(a.startswith("--config=") for a in argv):
        problems.append("--config=<task>.py:variant is required: the run folder records no command "
                        f"({RUN_INFO_FILE}); pass the --config= and --config.x= overrides of the "
                        "experiments.run command that made it")
    return problems or run_cli.unknown_overrides(argv)


def run_tool(main_fn: Any) -> None:
    """The ``__main__`` of a tool that reads a run folder: the run's recorded config
    put first where the command names none, one message and exit code 2 for a missing
    flag or an unknown field, then ``app.run(main_fn)``."""
    sys.argv = run_cli.resolve_config_path(_with_recorded_config(sys.argv))
    if problems := _command_line_problems(sys.argv):
        print("error: " + "\nerror: ".join(problems), file=sys.stderr)
        sys.exit(2)
    app.run(main_fn)


if __name__ == "__main__":
    run_tool(main)
