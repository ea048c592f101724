"""How fast does the run's critic learn from the run's own replay buffer? A read-out of
the critic's learning alone, in minutes instead of a whole run.

    python -m experiments.fit_critic --workdir=/tmp/tqs_demo [--steps=500 --read_every=100 \
        --batch_size=64 --lr=3e-4 --holdout=0.1 --split_seed=0]

The run is rebuilt as ``experiments.probe_critic`` rebuilds it (the command recorded in
``<workdir>/run_info.jsonl``, or ``--config=`` with the run's overrides), its
checkpoints read-only; nothing is saved but ``probe/critic_fit_<checkpoint step>.json``.

Starting from the checkpoint's online critic, Q1, Q2 (at the row's utterance) and V1, V2
regress on each row's Monte-Carlo return G (``mc_return``: the discounted return its
episode got from that turn on) with the run's critic optimizer (clipped Adam) at
``--lr``, on minibatches drawn uniformly from all filled rows but a held-out
``--holdout`` fraction (rows drawn at random; rows of one episode can fall on both
sides). The targets are fixed: no bootstrap, no sampling from the actor, so what is
measured is how fast this encoder and these heads learn what the returns say, not how
TD propagates them. G is the value of the policies that played the rows, the quantity
a TD critic converges to on such data.

Every ``--read_every`` steps, on the held-out rows (Q = min(Q1, Q2), V = min(V1, V2), as
the actor reads them):

- ``mse`` of Q against G and ``explained_variance`` = 1 - mse / var(G);
- ``adv_corr``: the correlation of Q - V with G - V, i.e. whether the critic's
  advantage follows the advantage the rows realised (state values cancel);
- ``best_end_adv`` and ``other_adv``: the mean Q - V on the rows that end their episode
  with the highest reward any episode ends with (the question games' winning guesses,
  WebShop's perfect purchases; none where every episode ends alike) and on all other
  rows. A critic that knows which utterance wins puts the first well above the second.

The last stdout line is one JSON object (every read-out).
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags, logging

from archer_jax import critic_probe, replay, train_state
from archer_jax.algorithms import archer
from experiments import probe_critic

_STEPS = flags.DEFINE_integer("steps", 500, "regression steps")
_READ_EVERY = flags.DEFINE_integer("read_every", 100, "read the held-out rows every this many steps (and at 0)")
_BATCH = flags.DEFINE_integer("batch_size", 64, "rows per step (and per held-out read-out call)")
_LR = flags.DEFINE_float("lr", None, "learning rate (default: the run's config.critic.lr)")
_HOLDOUT = flags.DEFINE_float("holdout", 0.1, "fraction of the filled rows held out for the read-outs")
_SEED = flags.DEFINE_integer("split_seed", 0, "seeds the held-out split and the minibatches")


def regression_loss(out: Any, g: jax.Array) -> jax.Array:
    """Each of the four heads' mean squared error to the returns G [B]."""
    g = jax.lax.stop_gradient(g.astype(jnp.float32))
    return sum(jnp.mean(jnp.square(head - g)) for head in (out.q1, out.q2, out.v1, out.v2))


def best_ending_rows(reward: np.ndarray, done: np.ndarray) -> np.ndarray:
    """[N] bool: the terminal rows whose reward is the highest any terminal row has,
    where terminal rewards differ (else none: no ending is better than another)."""
    end = reward[done]
    if end.size == 0 or end.max() == end.min():
        return np.zeros_like(done, bool)
    return done & (reward == end.max())


def read_out(q: np.ndarray, v: np.ndarray, g: np.ndarray, best_end: np.ndarray) -> dict[str, Any]:
    """The held-out statistics of Q = min Q, V = min V against the returns G (all [N]);
    ``best_end`` [N] marks the rows that end their episode with the buffer's highest
    reward."""
    mse = float(np.mean((q - g) ** 2))
    var = float(np.var(g))
    adv = q - v

    def mean(x: np.ndarray) -> float | None:
        return float(np.mean(x)) if len(x) else None

    return {"mse": mse, "explained_variance": 1.0 - mse / var if var > 0 else None,
            "adv_corr": critic_probe.pearson(adv, g - v), "best_end_adv": mean(adv[best_end]),
            "other_adv": mean(adv[~best_end]), "best_end_rows": int(best_end.sum())}


def fit(run: Any, steps: int, read_every: int, batch_size: int, lr: float, holdout: float,
        seed: int) -> dict[str, Any]:
    """Regresses a copy of the run's online critic on the buffer's returns; the
    read-outs at step 0 and every ``read_every`` steps (and the last)."""
    host = jax.device_get(run.buffer)
    n = int(host.size)
    n_test = int(round(holdout * n)) // batch_size * batch_size
    if n_test < batch_size or n - n_test < 1:
        raise probe_critic.ProbeError(
            f"the buffer holds {n} rows: too few for --holdout={holdout} at --batch_size={batch_size} (the "
            "held-out rows must fill at least one batch and leave some to train on)")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    reward, done, g_all = (np.asarray(x[:n]) for x in (host.reward, host.done, host.mc_return))
    best_end = best_ending_rows(reward, done)

    critic, bridge = run.critic, run.bridge
    tx = train_state.make_optimizer(lr, run.config.critic.max_grad_norm)

    def loss_fn(params: Any, batch: replay.Transitions) -> jax.Array:
        obs, obs_mask = archer.critic_view(bridge, batch.obs, batch.obs_mask, batch.hidden, batch.hidden_mask)
        act, act_mask = bridge(batch.action, batch.action_mask)
        return regression_loss(critic.apply({"params": params}, obs, obs_mask, act, act_mask), batch.mc_return)

    @jax.jit
    def step(params: Any, opt_state: Any, buffer: replay.ReplayBuffer, idx: jax.Array) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, replay.gather(buffer, idx))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    scores = jax.jit(functools.partial(archer.critic_scores, critic=critic, bridge=bridge))

    def read(params: Any) -> dict[str, Any]:
        state = run.state.replace(critic_params=params)
        q, v = zip(*(jax.device_get(scores(state, replay.gather(run.buffer, jnp.asarray(test[i:i + batch_size]))))
                     for i in range(0, n_test, batch_size)))
        return read_out(np.concatenate(q), np.concatenate(v), g_all[test], best_end[test])

    params = run.state.critic_params
    opt_state = tx.init(params)
    reads = [{"step": 0, "seconds": 0.0, "train_loss": None, **read(params)}]
    trained, losses = 0.0, []  # seconds spent in training steps (read-outs excluded)
    for k in range(1, steps + 1):
        t0 = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, run.buffer, jnp.asarray(rng.choice(train, batch_size)))
        losses.append(jax.block_until_ready(loss))
        trained += time.perf_counter() - t0
        if k % read_every == 0 or k == steps:
            reads.append({"step": k, "seconds": trained, "train_loss": float(np.mean(jax.device_get(losses))),
                          **read(params)})
            losses = []
    return {"rows": n, "held_out": n_test, "batch_size": batch_size, "lr": lr, "return_var": float(np.var(g_all[test])),
            "reads": reads}


def _report(summary: dict[str, Any]) -> str:
    lines = [f"{summary['rows']} rows, {summary['held_out']} held out (var G {summary['return_var']:.2f}); "
             f"batch {summary['batch_size']}, lr {summary['lr']:g}",
             "step  seconds  train_loss  mse  explained_var  adv_corr  best_end_adv  other_adv"]

    f = probe_critic.fmt

    for r in summary["reads"]:
        lines.append(f"{r['step']:5d} {r['seconds']:8.1f} {f(r['train_loss'])} {f(r['mse'])} "
                     f"{f(r['explained_variance'])} {f(r['adv_corr'])} {f(r['best_end_adv'])} {f(r['other_adv'])}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    probe_critic.check_flags(("steps", _STEPS.value, _STEPS.value >= 1, ">= 1"),
                             ("read_every", _READ_EVERY.value, _READ_EVERY.value >= 1, ">= 1"),
                             ("batch_size", _BATCH.value, _BATCH.value >= 1, ">= 1"),
                             ("holdout", _HOLDOUT.value, 0.0 < _HOLDOUT.value < 1.0, "in (0, 1)"))
    run = probe_critic.open_run()
    try:
        if run.progress.get("stage") != "archer":
            probe_critic.fail(f"the latest checkpoint is from the {run.progress.get('stage')!r} stage: its replay "
                              "buffer holds no rollouts yet; fit after the run's first ArCHer checkpoint")
        lr = _LR.value if _LR.value is not None else run.config.critic.lr
        try:
            summary = fit(run, _STEPS.value, _READ_EVERY.value, _BATCH.value, lr, _HOLDOUT.value, _SEED.value)
        except probe_critic.ProbeError as e:
            probe_critic.fail(str(e))
        summary = {"workdir": str(run.workdir), "checkpoint_step": run.checkpointer.latest_step(),
                   "stage": run.progress.get("stage"), "iteration": run.progress.get("iteration"), **summary}
    finally:
        run.checkpointer.close()
    probe_critic.write_probe(run, f"critic_fit_{summary['checkpoint_step']}.json", summary, [])
    print(_report(summary))
    print(json.dumps(critic_probe.json_safe(summary)))


if __name__ == "__main__":
    probe_critic.run_tool(main)
