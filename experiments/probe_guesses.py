"""After a refuted guess, what do the actor and the critic prefer? A probe of a run's
latest checkpoint on the guesses a question game allows.

    python -m experiments.probe_guesses --workdir=/tmp/gc_demo [--games=128] [--train_steps=60 --kl_coef=0.3]

The run is rebuilt as ``experiments.probe_critic`` rebuilds it (the command recorded in
``<workdir>/run_info.jsonl``, or ``--config=`` with the run's overrides), its
checkpoints read-only.

1. The checkpoint's actor plays ``--games`` greedy games on the evaluation seeds (the
   games of every evaluation in ``metrics.jsonl``). In each game the state right after
   its first refuted guess of an item the game hides ("Is the city Dubai?" answered no)
   is kept.
2. At each state every item the game hides is guessed once (the task's scripted
   players' guess question per item). The actor's probability of each guess (the whole
   utterance, terminator included, at temperature 1) and the online critic's
   Q = min(Q1, Q2) are read; where the run keeps the policy ArCHer started from
   (``state.ref_actor_params``, with ``config.archer.kl_coef`` > 0) its probabilities
   are read too. Which items the answers so far still allow comes from the task's item
   table (``scripted.ProbeTable.consistent``): the ground truth of a good next guess.
3. ``guess_statistics`` summarises: how often the refuted guess is the actor's most
   likely guess (the greedy policy's loop: it asks it again), the mean probability of
   the refuted guess and of the best other one, the probability mass on guesses the
   answers allow; for the critic, how often it puts the refuted guess below the mean of
   the others, and whether it prefers the guesses the answers allow.

4. With ``--train_steps=N``: does the actor follow the critic where it matters? The run's
   own actor step (``archer._actor_step``: its sampling, advantages, KL anchor and
   optimizer state, the critic held fixed) runs N times on a buffer holding these
   states alone (``--train_on=states``) or on the run's own replay buffer
   (``--train_on=buffer``: the actor phase as training runs it, watched at these
   states), and the actor's statistics are read again every ``--train_every`` steps
   with the greedy return of the same games played by the trained actor (``train`` in
   the output). ``--kl_coef`` overrides the run's anchor weight
   for those steps (a value > 0 needs a run that keeps the start policy). Nothing is
   saved: the checkpoint stays as it was.

Writes ``<workdir>/probe/guess_probe_<checkpoint step>.json`` (the numbers and every
state, candidate, probability and score) and prints a summary whose last line is one
JSON object.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from archer_jax import critic_probe, replay, train_state
from archer_jax.data import tokenization
from archer_jax.envs import question_game
from experiments import probe_critic

_GAMES = flags.DEFINE_integer("games", 128, "greedy games on the evaluation seeds (one state each at most)")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 0, "then this many of the run's actor steps on these states alone")
_TRAIN_EVERY = flags.DEFINE_integer("train_every", 20, "re-read the actor's statistics every this many steps")
_TRAIN_ON = flags.DEFINE_enum("train_on", "states", ["states", "buffer"],
                               "train on these states alone, or on the run's replay buffer")
_KL_COEF = flags.DEFINE_float("kl_coef", None, "the KL anchor's weight for those steps (default: the run's)")


def refuted_guess_states(histories: list[list[tuple[str, str]]], guesses: list[str]) -> list[tuple[int, int]]:
    """(game, turn) of each game's first guess answered with anything but the win answer:
    the state is the game's turns up to and including that one."""
    allowed = set(guesses)
    out = []
    for game, turns in enumerate(histories):
        for t, (question, answer) in enumerate(turns):
            if question in allowed and answer != question_game.WIN_ANSWER:
                out.append((game, t))
                break
    return out


def guess_statistics(logp: np.ndarray, q: np.ndarray, refuted: np.ndarray, allowed: np.ndarray,
                     ref_logp: np.ndarray | None = None) -> dict[str, float]:
    """``logp``, ``q`` [N, K]: the actor's log-probability and the critic's Q of each of K
    guesses at N states; ``refuted`` [N]: the index of the guess just refuted;
    ``allowed`` [N, K]: the guesses the answers so far still allow (False at the refuted
    one). ``ref_logp``: the start policy's log-probabilities, optional."""
    n, k = logp.shape
    rows = np.arange(n)
    others = np.ones((n, k), bool)
    others[rows, refuted] = False

    def actor(lp: np.ndarray, prefix: str) -> dict[str, float]:
        p = np.exp(lp)
        return {f"{prefix}argmax_is_refuted": float(np.mean(lp.argmax(1) == refuted)),
                f"{prefix}p_refuted": float(np.mean(p[rows, refuted])),
                f"{prefix}p_best_other": float(np.mean(np.where(others, p, 0.0).max(1))),
                f"{prefix}allowed_share": float(np.mean(np.where(allowed, p, 0.0).sum(1) / p.sum(1)))}

    mean_other = np.where(others, q, 0.0).sum(1) / np.maximum(others.sum(1), 1)
    disallowed = others & ~allowed
    both = allowed.any(1) & disallowed.any(1)
    q_allowed = np.where(allowed, q, 0.0).sum(1) / np.maximum(allowed.sum(1), 1)
    q_disallowed = np.where(disallowed, q, 0.0).sum(1) / np.maximum(disallowed.sum(1), 1)
    out = {"states": n, "guesses": k, "allowed_per_state": float(np.mean(allowed.sum(1))),
           **actor(logp, "actor_"), **({} if ref_logp is None else actor(ref_logp, "start_")),
           "critic_refuted_below_others": float(np.mean(q[rows, refuted] < mean_other)),
           "critic_refuted_minus_others": float(np.mean(q[rows, refuted] - mean_other)),
           "critic_argmax_allowed": float(np.mean(allowed[rows, q.argmax(1)])),
           "critic_allowed_minus_disallowed": (float(np.mean((q_allowed - q_disallowed)[both])) if both.any()
                                               else float("nan"))}
    return out


def item_guesses(task: Any, table: Any) -> list[int]:
    """For each item the task hides, the index of the table's guess that wins against it."""
    out = []
    for item in task.items:
        wins = [j for j, g in enumerate(table.guesses) if task.is_success(item, g)]
        if not wins:
            raise ValueError(f"no guess of the players' table wins against {item!r}")
        out.append(wins[0])
    return out


def play(run: Any, games: int, returns: list[float] | None = None) -> tuple[list[list[tuple[str, str]]], list[str]]:
    """The turns and hidden item of ``games`` greedy games on the evaluation seeds (their
    returns appended to ``returns`` where given)."""
    from archer_jax import rollout

    env, b = run.runner.env, run.runner.env.batch_size
    histories, hidden = [], []
    for start in range(0, games, b):
        seeds = [rollout.EVAL_SEED_BASE + start + i for i in range(b)]
        result = run.runner.run(run.state.actor_params, seeds, jax.random.key(0), 0.0)
        keep = min(b, games - start)
        histories += [env.history(i) for i in range(keep)]
        hidden += result.hidden[:keep]
        if returns is not None:
            returns += [float(r) for r in result.returns[:keep]]
    return histories, hidden


def score_guesses(run: Any, prefixes: list[list[tuple[str, str]]], guesses: list[str]) -> tuple[np.ndarray, ...]:
    """(Q, log pi, log pi_start), each [N, K]: every guess after every prefix, scored by
    the online critic, the actor and the start policy (the actor where the run keeps
    none), in batches of one fixed shape."""
    from archer_jax.algorithms import archer

    c, b, pad = run.config, run.runner.env.batch_size, run.hp.pad_id
    n, k = len(prefixes), len(guesses)
    obs, obs_mask = tokenization.encode_left(run.tokenizer, [question_game.format_observation(p) for p in prefixes],
                                             c.tokens.obs_len, pad_id=pad)
    act, act_mask = tokenization.encode_right(run.tokenizer, guesses, c.tokens.action_len, pad_id=pad,
                                              append_ids=run.hp.stop_ids[:1])
    has_ref = run.state.ref_actor_params is not None

    @jax.jit
    def score(state, o, om, a, am):
        co, com = run.bridge(o, om)
        ca, cam = run.bridge(a, am)
        out = run.critic.apply({"params": state.critic_params}, co, com, ca, cam)
        lp = archer.action_logprobs(run.actor, state.actor_params, o, om, a, am).sum(-1)
        ref = archer.action_logprobs(run.actor, state.ref_actor_params, o, om, a, am).sum(-1) if has_ref else lp
        return jnp.minimum(out.q1, out.q2), lp, ref

    rows_obs, rows_act = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
    scores = [np.zeros(n * k) for _ in range(3)]
    for rows, real in probe_critic._chunks(n * k, b):
        got = jax.device_get(score(run.state, obs[rows_obs[rows]], obs_mask[rows_obs[rows]], act[rows_act[rows]],
                                   act_mask[rows_act[rows]]))
        for out, values in zip(scores, got):
            out[rows[:real]] = values[:real]
    return tuple(x.reshape(n, k) for x in scores)


def states_buffer(run: Any, prefixes: list[list[tuple[str, str]]]) -> replay.ReplayBuffer:
    """A replay buffer holding exactly the observations of ``prefixes`` (the actor phase
    reads only a row's observation: its other fields stay zero)."""
    c, n = run.config, len(prefixes)
    obs, obs_mask = tokenization.encode_left(run.tokenizer, [question_game.format_observation(p) for p in prefixes],
                                             c.tokens.obs_len, pad_id=run.hp.pad_id)
    buffer = replay.ReplayBuffer.create(n, c.tokens.obs_len, c.tokens.action_len)
    return buffer.replace(obs=jnp.asarray(obs), obs_mask=jnp.asarray(obs_mask), size=jnp.int32(n))


def train_on_states(run: Any, prefixes: list[list[tuple[str, str]]], steps: int, every: int,
                    kl_coef: float | None = None, on_buffer: bool = False) -> list[tuple[int, Any]]:
    """(step, state) after every ``every`` of ``steps`` actor steps of the run (its
    hyper-parameters, optimizer and optimizer state; ``kl_coef`` overrides the anchor)
    on a buffer of ``prefixes`` alone (on the run's replay buffer with ``on_buffer``),
    starting from the run's state (not modified)."""
    from archer_jax.algorithms import archer

    hp = run.hp if kl_coef is None else dataclasses.replace(run.hp, kl_coef=kl_coef)
    if hp.kl_coef and run.state.ref_actor_params is None:
        raise probe_critic.ProbeError(f"--kl_coef={hp.kl_coef}: the run keeps no start policy to anchor to (it was "
                                      "trained with config.archer.kl_coef = 0); pass --kl_coef=0")
    c = run.config
    tx = train_state.actor_optimizer(c)
    step = jax.jit(functools.partial(archer._actor_step, actor=run.actor, critic=run.critic, hp=hp, bridge=run.bridge,
                                     tx=tx, mesh=None, rules=c.mesh.rules))
    buffer, state, out = run.buffer if on_buffer else states_buffer(run, prefixes), run.state, []
    for i in range(1, steps + 1):
        state, _ = step(state, buffer)
        if i % every == 0 or i == steps:
            out.append((i, state))
    return out


def probe(run: Any, table: Any, games: int, train_steps: int = 0, train_every: int = 20,
          kl_coef: float | None = None, train_on: str = "states") -> tuple[dict, list[dict]]:
    """Plays the greedy games, finds their refuted-guess states, scores every guess there
    (then, with ``train_steps``, trains the actor there and scores again)."""
    index = item_guesses(run.runner.env.task, table)
    guesses = [table.guesses[j] for j in index]
    returns: list[float] = []
    histories, hidden = play(run, games, returns)
    found = refuted_guess_states(histories, guesses)
    head = {"games": games, "checkpoint_step": run.checkpointer.latest_step(), "stage": run.progress.get("stage"),
            "iteration": run.progress.get("iteration"), "greedy_return": float(np.mean(returns))}
    if not found:
        return {**head, "states": 0}, []
    prefixes = [histories[g][:t + 1] for g, t in found]
    refuted = np.array([guesses.index(histories[g][t][0]) for g, t in found])  # [N] guess indices
    allowed = np.stack([table.consistent(p) for p in prefixes])[:, index]  # over the task's items
    q, lp, ref = score_guesses(run, prefixes, guesses)
    has_ref = run.state.ref_actor_params is not None
    summary = {**head, **guess_statistics(lp, q, refuted, allowed, ref if has_ref else None)}
    if train_steps:
        summary["train"] = []
        summary["train_on"] = train_on
        for step, state in train_on_states(run, prefixes, train_steps, train_every, kl_coef, train_on == "buffer"):
            trained = dataclasses.replace(run, state=state)
            _, lp_t, _ = score_guesses(trained, prefixes, guesses)
            stats = guess_statistics(lp_t, q, refuted, allowed)
            returns = []
            play(trained, games, returns)  # the same greedy games, played by the trained actor
            summary["train"].append({"step": step, **{k: v for k, v in stats.items() if k.startswith("actor_")},
                                     "greedy_return": float(np.mean(returns))})
    details = [{"hidden": hidden[g], "turns": [list(t) for t in prefixes[i]], "refuted": guesses[int(refuted[i])],
                "allowed": [guesses[j] for j in np.flatnonzero(allowed[i])], "q": q[i].tolist(),
                "logp": lp[i].tolist()}
               for i, (g, _) in enumerate(found)]
    return summary, details


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from archer_jax import tasks  # heavy: after the flags parsed

    if _GAMES.value < 1:
        probe_critic.fail(f"--games={_GAMES.value}: must be >= 1")
    if _TRAIN_STEPS.value < 0 or _TRAIN_EVERY.value < 1:
        probe_critic.fail(f"--train_steps={_TRAIN_STEPS.value} --train_every={_TRAIN_EVERY.value}: need >= 0 and >= 1")
    if _KL_COEF.value is not None and _KL_COEF.value < 0:
        probe_critic.fail(f"--kl_coef={_KL_COEF.value}: must be >= 0")
    run = probe_critic.open_run()
    if not isinstance(run.runner.env, question_game.BatchedQuestionGame):
        run.checkpointer.close()
        probe_critic.fail(f"config.task = {run.config.task!r} is not a question game: this probe scores the guesses "
                          "a question game allows; python -m experiments.probe_critic probes the critic of any task")
    if run.runner.hidden_len:
        run.checkpointer.close()
        probe_critic.fail(f"config.critic.privileged_len = {run.runner.hidden_len}: this run's critic also reads the "
                          "hidden city, and this probe scores guesses for a critic of the conversation alone; use "
                          "python -m experiments.probe_critic, which gives the critic each state's hidden item")
    try:
        summary, details = probe(run, tasks.get(run.config.task).table, _GAMES.value, _TRAIN_STEPS.value,
                                 _TRAIN_EVERY.value, _KL_COEF.value, _TRAIN_ON.value)
    except probe_critic.ProbeError as e:
        probe_critic.fail(str(e))
    finally:
        run.checkpointer.close()
    probe_critic.write_probe(run, f"guess_probe_{summary['checkpoint_step']}.json", summary, details)
    print("\n".join(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in summary.items()
                    if k != "train"))
    for row in summary.get("train", []):
        print(f"  after {row['step']} actor steps: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "step"))
    print(json.dumps(critic_probe.json_safe(summary)))


if __name__ == "__main__":
    probe_critic.run_tool(main)
