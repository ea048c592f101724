"""The host-side rollout loop: environments on the host, generation on the devices.

Per turn: the observations of the still-running conversations are tokenized into one
fixed-shape, left-padded batch; one jitted ``generate`` returns the utterances; the
host decodes them, cuts at the terminator and steps every environment at once (one
oracle call per batch). Transitions keep the exact token ids the policy emitted, in
fixed [max_turns * batch] arrays with a ``valid`` mask, so inserting them into the
device buffer never recompiles.

On several processes (``multihost``) each one steps its own share of the batch's
environments (a contiguous slice of the seeds, ``multihost.process_slice``); per turn
the observations are gathered so ``generate`` sees the global batch, and a finished
batch is gathered whole: every process returns the same ``Rollout``, in the order one
process would have played it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from archer_jax import multihost, replay
from archer_jax.data import tokenization
from archer_jax.envs.base import BatchedEnv
from archer_jax.sampling import Generation

# (params, prompt_ids, prompt_mask, rng, temperatures [B]) -> Generation, jitted by the caller.
PolicyFn = Callable[[Any, np.ndarray, np.ndarray, jax.Array, np.ndarray], Generation]


@dataclasses.dataclass
class Rollout:
    """One batch of finished conversations."""

    transitions: dict[str, np.ndarray]  # fields of replay.Transitions, [max_turns * B, ...]
    valid: np.ndarray  # [max_turns * B] bool: rows that hold a real turn
    returns: np.ndarray  # [B] undiscounted episode returns
    successes: np.ndarray  # [B] bool
    lengths: np.ndarray  # [B] turns taken
    # Transcripts: each final observation, followed by the turns played (command and
    # reward) where that observation does not already hold every command (``transcript``).
    dialogues: list[str]
    hidden: list[str]  # what each conversation was about (city, object, ...)
    # Wall seconds this process waited for the policy (dispatching ``generate`` and
    # copying its tokens to the host, every turn); the rest of ``run``'s time is the
    # host's: decoding, stepping the environments, tokenizing, packaging.
    generate_s: float = 0.0

    @property
    def num_turns(self) -> int:
        return int(self.valid.sum())


def discounted_returns(rewards: np.ndarray, valid: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo returns over the turn axis of [T, B] arrays (0 past an episode's end)."""
    out = np.zeros_like(rewards, dtype=np.float32)
    running = np.zeros(rewards.shape[1], np.float32)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = np.where(valid[t], rewards[t] + gamma * running, 0.0)
        out[t] = running
    return out


class RolloutRunner:
    """Plays batches of conversations with the current policy."""

    def __init__(self, env: BatchedEnv, policy: PolicyFn, tokenizer: Any, *, obs_len: int, terminator: str,
                 pad_id: int, gamma: float, max_turns: int, hidden_len: int = 0, reward_scale: float = 1.0):
        self.env = env
        self.policy = policy
        self.tokenizer = tokenizer
        self.obs_len = obs_len
        self.terminator = terminator
        self.pad_id = pad_id
        self.gamma = gamma
        self.max_turns = max_turns
        # The transitions' rewards (and so their Monte-Carlo returns) are the
        # environment's times this: what every learner reads. The returns reported
        # (``Rollout.returns``, evaluations) stay in the environment's units.
        self.reward_scale = reward_scale
        # > 0: every row also carries its episode's hidden text (``replay.hidden_ids``)
        # for a privileged critic; the policy never reads it.
        self.hidden_len = hidden_len

    @property
    def batch_size(self) -> int:
        """Conversations per ``run``: this process's environments times the processes."""
        return self.env.batch_size * multihost.count()

    @property
    def oracle_failures(self) -> int:
        """The environments' oracle failures so far (every process's, summed)."""
        return int(multihost.total(getattr(self.env, "oracle_failures", 0)))

    def with_policy(self, policy: PolicyFn) -> RolloutRunner:
        """The same runner (environments, tokenizer, lengths) acting with ``policy``."""
        other = copy.copy(self)
        other.policy = policy
        return other

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return tokenization.encode_left(self.tokenizer, list(texts), self.obs_len, pad_id=self.pad_id)

    def run(self, params: Any, seeds: Sequence[int], rng: jax.Array, temperature: float | np.ndarray) -> Rollout:
        """Plays one conversation per seed (``batch_size`` of them); ``temperature``:
        one for all, or one per conversation (0 = greedy). Always passed on as [B], so
        both share one compile."""
        if len(seeds) != self.batch_size:
            raise ValueError(f"run: {len(seeds)} seeds for a batch of {self.batch_size} conversations")
        t_max = self.max_turns
        temperature = np.broadcast_to(np.asarray(temperature, np.float32), (len(seeds),))
        mine = multihost.process_slice(len(seeds))
        b = mine.stop - mine.start
        observations = self.env.reset(list(seeds)[mine])
        obs_ids, obs_mask = self._encode(observations)
        done = np.zeros(b, bool)
        fields: dict[str, list[np.ndarray]] = {k: [] for k in
                                               ("obs", "obs_mask", "action", "action_mask", "next_obs",
                                                "next_obs_mask", "reward", "done")}
        valid, returns, lengths = [], np.zeros(b, np.float32), np.zeros(b, np.int32)
        played: list[list[tuple[str, float]]] = [[] for _ in range(b)]  # (command, reward) per turn
        generate_s = 0.0
        for turn in range(t_max):
            active = ~done
            if not multihost.any_process(active.any()):
                break
            rng, key = jax.random.split(rng)
            prompt_ids, prompt_mask = multihost.gather_rows((obs_ids, obs_mask))
            t0 = time.perf_counter()
            gen = multihost.to_host(self.policy(params, prompt_ids, prompt_mask, key, temperature))
            generate_s += time.perf_counter() - t0
            gen = jax.tree.map(lambda x: x[mine] if np.ndim(x) else x, gen)
            actions = tokenization.decode_utterances(self.tokenizer, gen.tokens, gen.mask, self.terminator)
            observations, rewards, dones = self.env.step(actions)
            rewards = np.where(active, np.asarray(rewards, np.float32), 0.0)
            dones = np.asarray(dones, bool) | (turn == t_max - 1)
            next_ids, next_mask = self._encode(observations)
            for name, value in (("obs", obs_ids), ("obs_mask", obs_mask), ("action", gen.tokens),
                                ("action_mask", gen.mask), ("next_obs", next_ids), ("next_obs_mask", next_mask),
                                ("reward", rewards * np.float32(self.reward_scale)), ("done", dones & active)):
                fields[name].append(np.asarray(value))
            valid.append(active)
            returns += rewards
            lengths += active
            for i in np.flatnonzero(active):
                played[i].append((actions[i], float(rewards[i])))
            done |= dones
            obs_ids, obs_mask = next_ids, next_mask
        successes = np.asarray(self.env.successes, bool).copy()
        texts = [transcript(final, turns) for final, turns in zip(observations, played)]
        out = self._package(fields, np.asarray(valid), returns, successes, lengths, texts)
        out.generate_s = generate_s
        return out

    def _hidden_rows(self, t_real: int) -> dict[str, np.ndarray]:
        """Each episode's hidden text, as ids, repeated on every turn row [t_real, B, H]."""
        if not self.hidden_len:
            return {}
        ids, mask = replay.hidden_ids(self.tokenizer, self.env.hidden, self.hidden_len, self.pad_id)
        return {name: np.broadcast_to(x, (t_real, *x.shape)) for name, x in (("hidden", ids), ("hidden_mask", mask))}

    def _package(self, fields: dict[str, list[np.ndarray]], valid: np.ndarray, returns: np.ndarray,
                 successes: np.ndarray, lengths: np.ndarray, final_obs: Sequence[str]) -> Rollout:
        stacked = {k: np.stack(v) for k, v in fields.items()}  # [t_real, B here, ...]
        stacked.update(self._hidden_rows(valid.shape[0]))
        # Every process's conversations, in seed order (the turns run in lockstep).
        stacked, valid = multihost.gather_rows((stacked, valid), axis=1)
        returns, successes, lengths = multihost.gather_rows((returns, successes, lengths))
        final_obs, hidden = multihost.gather_texts(final_obs), multihost.gather_texts(self.env.hidden)
        t_real, b = valid.shape
        pad_turns = self.max_turns - t_real
        stacked["mc_return"] = discounted_returns(stacked["reward"], valid, self.gamma)
        stacked["episode_return"] = np.broadcast_to(returns, (t_real, b)).astype(np.float32)
        stacked["turn"] = np.broadcast_to(np.arange(t_real, dtype=np.int32)[:, None], (t_real, b))
        valid = np.concatenate([valid, np.zeros((pad_turns, b), bool)])
        out = {}
        for k, v in stacked.items():
            v = np.concatenate([v, np.zeros((pad_turns, *v.shape[1:]), v.dtype)])
            out[k] = v.reshape(self.max_turns * b, *v.shape[2:])
        return Rollout(out, valid.reshape(-1), returns, successes, lengths, final_obs, hidden)


def transcript(final_observation: str, turns: Sequence[tuple[str, float]]) -> str:
    """A finished conversation as text: its final observation, which for a dialogue
    holds every turn; where it does not (a text game shows only the current scene), the
    turns played follow it, one line each with the command and its reward."""
    if all(command.strip() in final_observation for command, _ in turns):
        return final_observation
    lines = [f"{i:3d}. {command.strip() or '(nothing)'}  [{reward:+g}]" for i, (command, reward) in
             enumerate(turns, 1)]
    return final_observation + "\n\nTurns played (command [reward]):\n" + "\n".join(lines)


EVAL_SEED_BASE = 10_000_000  # evaluation episodes never share seeds with rollouts


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of independent games' returns (0 for fewer than two)."""
    values = np.ravel(values)
    return float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The episodes of one greedy evaluation, in seed order."""

    seeds: list[int]
    returns: np.ndarray  # [size] undiscounted returns
    successes: np.ndarray  # [size] bool
    lengths: np.ndarray  # [size] turns taken
    hidden: list[str]
    dialogues: list[str]  # "[hidden]\n" + the final observation text
    oracle_failures: int  # the environment's oracle failures during these games

    def metrics(self) -> dict[str, float]:
        r = self.returns
        return {"eval/return_mean": float(r.mean()), "eval/return_std": float(r.std()),
                "eval/return_se": standard_error(r),
                "eval/success_rate": float(self.successes.mean()), "eval/turns_mean": float(self.lengths.mean()),
                "eval/oracle_failures": float(self.oracle_failures)}


def play_evaluation(runner: RolloutRunner, params: Any, *, size: int, seed_offset: int = 0,
                    temperature: float = 0.0) -> Evaluation:
    """Greedy games (or, with ``temperature`` > 0, games sampled at it) on the fixed
    seeds EVAL_SEED_BASE + seed_offset + 0 .. size - 1 (training evaluates greedily with
    offset 0: comparable across iterations and algorithms, episode by episode), in
    batches of the runner's batch size (a last partial batch is played whole and cut to
    ``size``). Deterministic: the same runner and params play the same games."""
    b = runner.batch_size
    failures = runner.oracle_failures
    returns, successes, lengths, dialogues, hidden, seeds = [], [], [], [], [], []
    rng = jax.random.key(0)
    for start in range(0, size, b):
        batch_seeds = [EVAL_SEED_BASE + seed_offset + start + i for i in range(b)]
        result = runner.run(params, batch_seeds, jax.random.fold_in(rng, start), temperature)
        returns.append(result.returns)
        successes.append(result.successes)
        lengths.append(result.lengths)
        hidden.extend(result.hidden)
        seeds.extend(batch_seeds)
        dialogues.extend(f"[{h}]\n{d}" for h, d in zip(result.hidden, result.dialogues))
    return Evaluation(seeds[:size], np.concatenate(returns)[:size], np.concatenate(successes)[:size],
                      np.concatenate(lengths)[:size], hidden[:size], dialogues[:size],
                      runner.oracle_failures - failures)


def log_evaluation(evaluation: Evaluation, *, logger: Any, stage: str, iteration: int,
                   transcripts: int) -> dict[str, float]:
    """Every episode to ``logger.write_evaluation`` (evaluations/, for paired
    comparisons), the first ``transcripts`` dialogues to ``logger.write_transcripts``.
    Returns the eval/ metrics."""
    if transcripts:
        logger.write_transcripts(stage, iteration, evaluation.dialogues[:transcripts])
    logger.write_evaluation(stage, iteration, seeds=evaluation.seeds, returns=evaluation.returns,
                            successes=evaluation.successes, hidden=evaluation.hidden)
    return evaluation.metrics()


def evaluate(runner: RolloutRunner, params: Any, *, size: int, logger: Any, stage: str, iteration: int,
             transcripts: int) -> dict[str, float]:
    """``play_evaluation`` then ``log_evaluation``; returns the eval/ metrics."""
    return log_evaluation(play_evaluation(runner, params, size=size), logger=logger, stage=stage,
                          iteration=iteration, transcripts=transcripts)
