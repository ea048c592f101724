"""How well a critic ranks utterances, against Monte-Carlo ground truth (pure numpy).

The probe (``experiments/probe_critic.py``) fixes N states, samples K utterances per
state and estimates each (state, utterance)'s return by M rollouts. Given the
critic's scores ``q`` [N, K] (min(Q1, Q2)), ``v`` [N] (min(V1, V2)) and the rollout
returns ``returns`` [N, K, M], ``ranking_statistics`` reports:

* ``pair_accuracy``: over the within-state pairs (i < j) whose MC means differ by
  more than their combined standard error sqrt(se_i^2 + se_j^2), the fraction the
  critic orders the same way (a tie in Q counts one half). 0.5 = chance.
* ``within_corr``: Pearson correlation of Q with the MC mean after subtracting each
  state's mean from both, pooled over all states: does Q rank utterances WITHIN a
  state (what the actor's advantage needs), whatever it says about the state.
* ``mean_state_corr``: the per-state Pearson correlations, averaged over the states
  where both Q and the MC means vary (noisy for small K).
* ``v_corr``: across states, Pearson correlation of V with the state's mean MC return.
* ``mc_split_half_corr``: ``within_corr`` between the means of the first and the
  second half of the rollouts; ``mc_noise_ceiling`` = sqrt(2 r / (1 + r)) of it
  (Spearman-Brown): the ``within_corr`` a perfect Q would reach against M-rollout
  means, so a critic is judged against that, not against 1.
* ``q_bias`` / ``v_bias``: mean(Q - MC) and mean(V - state MC): calibration.
* counts: states, utterances per state, rollouts, pairs, decided pairs, and the
  states whose MC means do not vary at all.

Statistics that are undefined (no decided pair, no variance) are NaN; the JSON
writers turn them into null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two equally long vectors; NaN when either is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return float(np.dot(x, y) / denom) if denom > 1e-12 else float("nan")


def within_state_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of [N, K] arrays after subtracting each row's (state's) mean
    from both, pooled over all rows."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return pearson(a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True))


def pairwise_accuracy(q: np.ndarray, mc: np.ndarray, se: np.ndarray) -> tuple[float, int, int]:
    """(accuracy, decided pairs, all pairs) of the within-state pairs of [N, K] arrays;
    a pair is decided when |mc_i - mc_j| > sqrt(se_i^2 + se_j^2)."""
    q, mc, se = (np.asarray(a, np.float64) for a in (q, mc, se))
    i, j = np.triu_indices(q.shape[1], k=1)
    gap = mc[:, i] - mc[:, j]
    decided = np.abs(gap) > np.sqrt(se[:, i] ** 2 + se[:, j] ** 2)
    agree = np.sign(q[:, i] - q[:, j]) * np.sign(gap)  # 1 right, -1 wrong, 0 tie in Q
    n = int(decided.sum())
    accuracy = float(((agree[decided] + 1) / 2).mean()) if n else float("nan")
    return accuracy, n, int(gap.size)


def ranking_statistics(q: Any, v: Any, returns: Any) -> dict[str, float | int]:
    """The probe's numbers (see the module docstring) from ``q`` [N, K], ``v`` [N] and
    ``returns`` [N, K, M] (M >= 2, K >= 2)."""
    q, v, returns = (np.asarray(a, np.float64) for a in (q, v, returns))
    if q.ndim != 2 or returns.ndim != 3 or returns.shape[:2] != q.shape or v.shape != q.shape[:1]:
        raise ValueError(f"need q [N, K], v [N], returns [N, K, M]; got {q.shape}, {v.shape}, {returns.shape}")
    n, k, m = returns.shape
    if k < 2 or m < 2:
        raise ValueError(f"need K >= 2 utterances per state and M >= 2 rollouts each; got K = {k}, M = {m}")
    mc = returns.mean(axis=2)
    se = returns.std(axis=2, ddof=1) / math.sqrt(m)
    accuracy, decided, pairs = pairwise_accuracy(q, mc, se)
    per_state = [pearson(q[s], mc[s]) for s in range(n)]
    defined = [c for c in per_state if not math.isnan(c)]
    half = m // 2
    split = within_state_corr(returns[:, :, :half].mean(axis=2), returns[:, :, half:].mean(axis=2))
    ceiling = math.sqrt(2 * split / (1 + split)) if split > 0 else (float("nan") if math.isnan(split) else 0.0)
    state_mc = mc.mean(axis=1)
    return {
        "pair_accuracy": accuracy,
        "within_corr": within_state_corr(q, mc),
        "mean_state_corr": float(np.mean(defined)) if defined else float("nan"),
        "v_corr": pearson(v, state_mc),
        "mc_split_half_corr": split,
        "mc_noise_ceiling": ceiling,
        "q_bias": float((q - mc).mean()),
        "v_bias": float((v - state_mc).mean()),
        "states": n,
        "utterances_per_state": k,
        "rollouts": m,
        "pairs": pairs,
        "decided_pairs": decided,
        "states_with_corr": len(defined),
        "states_constant_mc": int((mc.max(axis=1) - mc.min(axis=1) <= 1e-9).sum()),
    }


def json_safe(value: Any) -> Any:
    """NaN / inf -> None, recursively, so ``json.dumps`` writes strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
