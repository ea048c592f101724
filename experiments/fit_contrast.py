"""Can the run's critic learn to rank the task's own decisions when told the answers?
A supervised read-out of the critic's architecture and inputs, free of TD's
bootstrapping and of the policy's sampling.

    python -m experiments.fit_contrast --workdir=/tmp/webshop_demo [--episodes=200 --steps=500 \
        --read_every=100 --batch_size=64 --lr=<config.critic.lr> --holdout=0.1 --seed=0 --obs_len=0]

``--seed`` (as ``experiments.probe_critic``'s) seeds the episodes, the players, the split and
the minibatches.

The run is rebuilt as ``experiments.probe_critic`` rebuilds it (the command recorded in
``<workdir>/run_info.jsonl``, or ``--config=`` with the run's overrides), its
checkpoints read-only; nothing is saved but ``probe/critic_contrast_<checkpoint step>.json``.

1. States: ``--episodes`` episodes of the task's scripted players drawn from the run's
   data mix (``config.data.mix``, else the task's default), every state of each before
   its end. Episode i depends only on (``--seed``, i), as ``simulate_episodes`` draws.
2. Candidates: at each state, the action every scripted player of the task says there
   (each with its own Generator; duplicates once).
3. Label of (state, candidate): the episode's prefix replayed from ``reset(env seed)``,
   the candidate said, then the task's informative player (``task.informative``) to the
   end; the return from the state on, discounted with ``config.archer.gamma`` as the
   critic's targets are. A state whose candidates all get the same label has nothing
   to rank and is dropped; a replay that reaches another observation than the
   episode's is counted (``replay_mismatches``) and its state dropped.
4. Held out: the states of a ``--holdout`` fraction of the episodes' hidden items
   (WebShop's goals, the question games' items); of the episodes themselves where the
   task has fewer than 5 (Detective's one game). Nothing of a held-out item is trained on.
5. The fit starts from the checkpoint's online critic; from a BC checkpoint (no critic
   trained yet), from the critic ArCHer's first iteration starts from
   (``archer.start_state``: for ``config.critic.kind = 'actor'`` the BC actor's weights
   as its encoder). Q1 and Q2 regress on the labels
   (mean squared error) with the run's critic optimizer (clipped Adam) at ``--lr``.
6. Every ``--read_every`` steps, on the held-out states (Q = min(Q1, Q2)):
   ``pair_accuracy`` over the within-state pairs whose labels differ,
   ``within_corr`` (Q against the label, each state's mean removed),
   ``expert_gap`` and ``true_expert_gap``: Q, and the label, of the informative
   player's candidate minus the mean of the state's other candidates, averaged over the
   states where that player's label differs from another's, and ``expert_sign``: the
   fraction of those states where the two gaps agree in sign; and ``mse``. The same on
   the training states (``train_*``) tells fitting from generalising.

``--obs_len``: observations tokenized to this many tokens instead of the run's
``config.tokens.obs_len`` (left-truncated as the rollouts do): a shorter window costs
less per step where the states probed are short.

The last stdout line is one JSON object (every read-out).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags, logging

from archer_jax import config_checks, critic_probe, tasks, train_state
from archer_jax.algorithms import archer
from archer_jax.data import tokenization
from experiments import fit_critic, probe_critic

_EPISODES = flags.DEFINE_integer("episodes", 200, "scripted episodes whose states are labelled")
# --steps, --read_every, --batch_size, --lr and --holdout are experiments.fit_critic's
# flags (one process may import both tools); --holdout here is the fraction of items.
_STEPS, _READ_EVERY, _BATCH, _LR, _HOLDOUT = (fit_critic._STEPS, fit_critic._READ_EVERY, fit_critic._BATCH,
                                              fit_critic._LR, fit_critic._HOLDOUT)
_OBS_LEN = flags.DEFINE_integer("obs_len", 0, "observation tokens (0: the run's config.tokens.obs_len)")

_SEED_BASE = 10**12  # the episodes' Generators never meet the training data's


@dataclasses.dataclass
class Contrast:
    """Labelled (state, candidate) rows; row r belongs to state ``state[r]``."""

    observations: list[str]
    actions: list[str]
    labels: np.ndarray  # [R] discounted returns
    state: np.ndarray  # [R] state index
    expert: np.ndarray  # [R] bool: the informative player's candidate
    group: np.ndarray  # [S] hidden item (or episode) of each state
    env_seeds: list[int]  # [S] the environment seed of each state's episode
    prefixes: list[list[str]]  # [S] the actions said before each state
    mismatches: int
    env_steps: int


def _episodes(task: Any, c: Any, n: int, seed: int, batch: int) -> tuple[list[int], list[list[str]], list[list[str]],
                                                                          list[str]]:
    """(env seeds, observations, actions, hidden) of ``n`` episodes of the data mix,
    ``batch`` environments at a time."""
    mix = config_checks.data_mix(c) or dict(task.default_mix)
    names = sorted(mix)
    weights = np.array([mix[m] for m in names], np.float64)
    weights /= weights.sum()
    rngs = [np.random.default_rng([_SEED_BASE + seed, i]) for i in range(n)]
    players = [names[int(r.choice(len(names), p=weights))] for r in rngs]
    env_seeds = [int(r.integers(2**31)) for r in rngs]
    seen: list[list[str]] = []
    said: list[list[str]] = []
    hidden: list[str] = []
    for start in range(0, n, batch):
        rows = range(start, min(start + batch, n))
        env = task.make_env(c.env, len(rows))
        try:
            observations = env.reset([env_seeds[i] for i in rows])
            obs_rows, act_rows = [[o] for o in observations], [[] for _ in rows]
            while not np.asarray(env.dones).all():
                active = ~np.asarray(env.dones)
                step = [task.players[players[i]](o, rngs[i]) if live else ""
                        for i, o, live in zip(rows, observations, active)]
                observations, _, _ = env.step(step)
                for j in np.flatnonzero(active):
                    obs_rows[j].append(observations[j])
                    act_rows[j].append(step[j])
            hidden.extend(env.hidden)
        finally:
            getattr(env, "close", lambda: None)()
        seen.extend(obs_rows)
        said.extend(act_rows)
    return env_seeds, seen, said, hidden


def build(task: Any, c: Any, episodes: int, seed: int, batch: int) -> Contrast:
    """The labelled rows of ``episodes`` episodes (module docstring, 1-3)."""
    if task.informative is None:
        raise probe_critic.ProbeError(f"task {task.name!r} names no informative player to continue the games with")
    expert = task.players[task.informative]
    env_seeds, seen, said, hidden = _episodes(task, c, episodes, seed, batch)
    jobs = []  # (episode, turn, candidate, is expert)
    for e in range(episodes):
        for turn in range(len(said[e])):
            cands: dict[str, bool] = {}
            for name in sorted(task.players):
                action = task.players[name](seen[e][turn], np.random.default_rng([_SEED_BASE + seed, e, turn]))
                cands[action] = cands.get(action, False) or name == task.informative
            jobs.extend((e, turn, a, x) for a, x in cands.items())
    env = task.make_env(c.env, batch)
    labels = np.zeros(len(jobs))
    bad: set[tuple[int, int]] = set()
    steps = 0
    try:
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch] + [jobs[-1]] * max(0, start + batch - len(jobs))
            keep = min(batch, len(jobs) - start)
            observations = env.reset([env_seeds[e] for e, *_ in chunk])
            rngs = [np.random.default_rng([_SEED_BASE + seed, e, t, 1]) for e, t, *_ in chunk]
            done, reached = np.zeros(batch, bool), np.zeros(batch, bool)
            ret, discount = np.zeros(batch), np.ones(batch)
            state_turn = np.array([t for _, t, *_ in chunk])
            for turn in range(c.env.max_turns):
                if done.all():
                    break
                actions = []
                for i, (e, t, cand, _) in enumerate(chunk):
                    if turn == t:  # the replayed prefix must reach the episode's state
                        reached[i] = not done[i] and observations[i] == seen[e][t]
                    actions.append("" if done[i] else said[e][turn] if turn < t else cand if turn == t
                                   else expert(observations[i], rngs[i]))
                observations, rewards, dones = env.step(actions)
                after = ~done & (turn >= state_turn)
                steps += int((~done).sum())
                ret += np.where(after, discount * np.asarray(rewards, np.float64), 0.0)
                discount = np.where(after, discount * c.archer.gamma, discount)
                done |= np.asarray(dones, bool)
            labels[start:start + keep] = ret[:keep]
            bad.update((e, t) for (e, t, *_), ok in zip(chunk[:keep], reached[:keep]) if not ok)
    finally:
        getattr(env, "close", lambda: None)()
    groups = {h: i for i, h in enumerate(sorted(set(hidden)))}
    by_item = len(groups) >= 5
    rows: dict[tuple[int, int], list[int]] = {}
    for r, (e, t, *_) in enumerate(jobs):
        rows.setdefault((e, t), []).append(r)
    out_obs, out_act, out_lab, out_state, out_expert, group = [], [], [], [], [], []
    state_seeds, prefixes = [], []
    for (e, t), rs in rows.items():
        if (e, t) in bad or np.ptp(labels[rs]) <= 1e-9:
            continue
        for r in rs:
            out_obs.append(seen[e][t])
            out_act.append(jobs[r][2])
            out_lab.append(labels[r])
            out_state.append(len(group))
            out_expert.append(jobs[r][3])
        group.append(groups[hidden[e]] if by_item else e)
        state_seeds.append(env_seeds[e])
        prefixes.append(said[e][:t])
    return Contrast(out_obs, out_act, np.asarray(out_lab, np.float32), np.asarray(out_state, np.int64),
                    np.asarray(out_expert, bool), np.asarray(group, np.int64), state_seeds, prefixes, len(bad), steps)


def read_out(q: np.ndarray, data: Contrast, rows: np.ndarray) -> dict[str, Any]:
    """The statistics of module docstring 6 over ``rows`` (whole states) with scores
    ``q`` (aligned with ``rows``)."""
    lab, state, expert = data.labels[rows].astype(np.float64), data.state[rows], data.expert[rows]
    qd, ld = q.astype(np.float64).copy(), lab.copy()
    right = pairs = 0
    gaps, true_gaps = [], []
    for s in np.unique(state):
        m = state == s
        qd[m] -= qd[m].mean()
        ld[m] -= ld[m].mean()
        qs, ls, xs = q[m], lab[m], expert[m]
        i, j = np.triu_indices(len(ls), k=1)
        differ = np.abs(ls[i] - ls[j]) > 1e-9
        pairs += int(differ.sum())
        right += int((np.sign(qs[i] - qs[j]) == np.sign(ls[i] - ls[j]))[differ].sum())
        if xs.any() and (~xs).any() and np.ptp(ls) > 1e-9:
            gaps.append(float(qs[xs].mean() - qs[~xs].mean()))
            true_gaps.append(float(ls[xs].mean() - ls[~xs].mean()))
    gaps_a, true_a = np.asarray(gaps), np.asarray(true_gaps)
    return {"mse": float(np.mean((q - lab) ** 2)), "pair_accuracy": right / pairs if pairs else None, "pairs": pairs,
            "within_corr": critic_probe.pearson(qd, ld),
            "expert_gap": float(gaps_a.mean()) if gaps else None,
            "true_expert_gap": float(true_a.mean()) if gaps else None,
            "expert_sign": float(np.mean(np.sign(gaps_a) == np.sign(true_a))) if gaps else None,
            "expert_states": len(gaps)}


def fit(run: Any, data: Contrast, *, steps: int, read_every: int, batch_size: int, lr: float, holdout: float,
        seed: int, obs_len: int) -> dict[str, Any]:
    """Regresses a copy of the critic ArCHer trains at this checkpoint on ``data``'s
    labels; the read-outs at step 0, every ``read_every`` steps and the last."""
    c = run.config
    rng = np.random.default_rng(seed)
    groups = np.unique(data.group)
    held = rng.permutation(groups)[:int(round(holdout * len(groups)))]
    test_state = np.isin(data.group, held)
    test = np.flatnonzero(test_state[data.state])
    train = np.flatnonzero(~test_state[data.state])
    if not len(test) or not len(train):
        raise probe_critic.ProbeError(
            f"{len(groups)} groups of states ({int(test_state.sum())} held out): --holdout={holdout} leaves no "
            "states on one side; label more --episodes or change --holdout")
    tok = run.tokenizer
    obs, obs_mask = tokenization.encode_left(tok, data.observations, obs_len, pad_id=run.hp.pad_id)
    act, act_mask = tokenization.encode_right(tok, data.actions, c.tokens.action_len, pad_id=run.hp.pad_id,
                                              append_ids=list(run.hp.stop_ids)[:1])
    critic, bridge = run.critic, run.bridge
    params = run.state.critic_params
    if run.progress.get("stage") == "bc" and c.critic.kind == "actor":
        params = {**params, "encoder": {"lm": run.state.actor_params}}  # as archer.start_state
    tx = train_state.make_optimizer(lr, c.critic.max_grad_norm)

    def q_values(p: Any, o: jax.Array, om: jax.Array, a: jax.Array, am: jax.Array) -> tuple[jax.Array, jax.Array]:
        o, om = archer.critic_view(bridge, o, om)
        a, am = bridge(a, am)
        out = critic.apply({"params": p}, o, om, a, am)
        return out.q1, out.q2

    @jax.jit
    def step(p: Any, opt: Any, o, om, a, am, y) -> tuple[Any, Any, jax.Array]:
        def loss_fn(p):
            q1, q2 = q_values(p, o, om, a, am)
            return jnp.mean(jnp.square(q1 - y)) + jnp.mean(jnp.square(q2 - y))

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, loss

    score = jax.jit(lambda p, o, om, a, am: jnp.minimum(*q_values(p, o, om, a, am)))

    def scores(p: Any, rows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(rows), batch_size):
            r = np.resize(rows[i:i + batch_size], batch_size)  # one shape: the last chunk wraps around
            out.append(np.asarray(score(p, obs[r], obs_mask[r], act[r], act_mask[r]))[:len(rows) - i])
        return np.concatenate(out)

    def read(p: Any, k: int, seconds: float, loss: float | None) -> dict[str, Any]:
        held_out = read_out(scores(p, test), data, test)
        trained = read_out(scores(p, train), data, train)
        return {"step": k, "seconds": seconds, "train_loss": loss, **held_out,
                **{f"train_{name}": trained[name] for name in ("mse", "pair_accuracy", "expert_gap", "expert_sign")}}

    opt_state = tx.init(params)
    reads = [read(params, 0, 0.0, None)]
    trained_s, losses = 0.0, []
    for k in range(1, steps + 1):
        r = rng.choice(train, batch_size)
        t0 = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, obs[r], obs_mask[r], act[r], act_mask[r],
                                       jnp.asarray(data.labels[r]))
        losses.append(jax.block_until_ready(loss))
        trained_s += time.perf_counter() - t0
        if k % read_every == 0 or k == steps:
            reads.append(read(params, k, trained_s, float(np.mean(jax.device_get(losses)))))
            losses = []
            last = reads[-1]
            print(f"step {k}: held-out pair accuracy {last['pair_accuracy']}, expert gap {last['expert_gap']} "
                  f"(true {last['true_expert_gap']})", file=sys.stderr, flush=True)
    return {"states": int(data.group.size), "rows": len(data.labels), "held_out_states": int(test_state.sum()),
            "held_out_rows": len(test), "replay_mismatches": data.mismatches, "env_steps": data.env_steps,
            "label_mean": float(data.labels.mean()), "label_std": float(data.labels.std()),
            "obs_len": obs_len, "batch_size": batch_size, "lr": lr, "reads": reads}


def _report(summary: dict[str, Any]) -> str:
    f = probe_critic.fmt
    lines = [f"{summary['states']} states, {summary['rows']} (state, candidate) rows; {summary['held_out_states']} states "
             f"held out; labels {summary['label_mean']:.3f} +- {summary['label_std']:.3f}; "
             f"{summary['replay_mismatches']} replay mismatches",
             "step  seconds  train_loss  mse  pair_acc  within_corr  expert_gap (true)  expert_sign | "
             "train: pair_acc  expert_gap  expert_sign"]
    for r in summary["reads"]:
        lines.append(f"{r['step']:5d} {r['seconds']:8.1f} {f(r['train_loss'])} {f(r['mse'])} {f(r['pair_accuracy'])} "
                     f"{f(r['within_corr'])} {f(r['expert_gap'])} ({f(r['true_expert_gap'])}) {f(r['expert_sign'])} | "
                     f"{f(r['train_pair_accuracy'])} {f(r['train_expert_gap'])} {f(r['train_expert_sign'])}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    probe_critic.check_flags(("episodes", _EPISODES.value, _EPISODES.value >= 1, ">= 1"),
                             ("steps", _STEPS.value, _STEPS.value >= 1, ">= 1"),
                             ("read_every", _READ_EVERY.value, _READ_EVERY.value >= 1, ">= 1"),
                             ("batch_size", _BATCH.value, _BATCH.value >= 1, ">= 1"),
                             ("holdout", _HOLDOUT.value, 0.0 < _HOLDOUT.value < 1.0, "in (0, 1)"),
                             ("obs_len", _OBS_LEN.value, _OBS_LEN.value >= 0, ">= 0"))
    run = probe_critic.open_run()
    try:
        c = run.config
        lr = _LR.value if _LR.value is not None else c.critic.lr
        try:
            t0 = time.perf_counter()
            data = build(tasks.get(c.task), c, _EPISODES.value, flags.FLAGS.seed, c.archer.rollout_batch)
            labelled = time.perf_counter() - t0
            print(f"labelled {data.group.size} states ({len(data.labels)} rows) in {labelled:.0f} s",
                  file=sys.stderr, flush=True)
            summary = fit(run, data, steps=_STEPS.value, read_every=_READ_EVERY.value, batch_size=_BATCH.value,
                          lr=lr, holdout=_HOLDOUT.value, seed=flags.FLAGS.seed, obs_len=_OBS_LEN.value or c.tokens.obs_len)
        except probe_critic.ProbeError as e:
            probe_critic.fail(str(e))
        summary = {"workdir": str(run.workdir), "checkpoint_step": run.checkpointer.latest_step(),
                   "stage": run.progress.get("stage"), "iteration": run.progress.get("iteration"),
                   "episodes": _EPISODES.value, "labelling_seconds": labelled, **summary}
    finally:
        run.checkpointer.close()
    probe_critic.write_probe(run, f"critic_contrast_{summary['checkpoint_step']}.json", summary, [])
    print(_report(summary))
    print(json.dumps(critic_probe.json_safe(summary)))


if __name__ == "__main__":
    probe_critic.run_tool(main)
