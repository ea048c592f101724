"""The replay buffer: utterance-level transitions as token ids, on device.

Rows are split over the data-parallel mesh axes (logical axis 'capacity'), so the
buffer grows with the pod instead of one host's memory. Insertion is one jitted,
donated scatter at a ring pointer; sampling and gathering run inside the update
phases, so a whole phase needs no host round trip.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from archer_jax import multihost
from archer_jax import sharding as sharding_lib
from archer_jax.data import tokenization

if TYPE_CHECKING:  # TFDS: imported by the runs that read a dataset
    from archer_jax.data import episode_records


@flax.struct.dataclass
class Transitions:
    """A batch of N turns; observations left-padded, actions right-padded."""

    obs: jax.Array  # [N, P] int32
    obs_mask: jax.Array  # [N, P] bool
    action: jax.Array  # [N, T] int32
    action_mask: jax.Array  # [N, T] bool
    next_obs: jax.Array  # [N, P] int32
    next_obs_mask: jax.Array  # [N, P] bool
    reward: jax.Array  # [N] float32
    done: jax.Array  # [N] bool
    mc_return: jax.Array  # [N] float32: discounted return from this turn on
    # Undiscounted return of the whole episode the turn belongs to, and the turn's
    # index in it (0 = its first turn): trajectory-level filters (filtered BC) read
    # one value per episode from the rows with turn 0.
    episode_return: jax.Array  # [N] float32
    turn: jax.Array  # [N] int32
    # What the environment hides in the turn's episode (``env.hidden``: the item, the
    # city), left-padded, for a critic that reads it (``config.critic.privileged_len``);
    # None when no critic does. Training-time information: the actor never reads it.
    hidden: jax.Array | None = None  # [N, H] int32
    hidden_mask: jax.Array | None = None  # [N, H] bool

    @property
    def num_rows(self) -> int:
        return self.reward.shape[0]


TRANSITION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Transitions))


@flax.struct.dataclass
class ReplayBuffer:
    """Capacity C rows of every Transitions field, plus the ring pointer and the
    number of filled rows."""

    obs: jax.Array  # [C, P] int32
    obs_mask: jax.Array  # [C, P] bool
    action: jax.Array  # [C, T] int32
    action_mask: jax.Array  # [C, T] bool
    next_obs: jax.Array  # [C, P] int32
    next_obs_mask: jax.Array  # [C, P] bool
    reward: jax.Array  # [C] float32
    done: jax.Array  # [C] bool
    mc_return: jax.Array  # [C] float32
    episode_return: jax.Array  # [C] float32
    turn: jax.Array  # [C] int32
    ptr: jax.Array  # int32 scalar: the next row to write
    size: jax.Array  # int32 scalar: rows filled, at most C
    hidden: jax.Array | None = None  # [C, H] int32, or None (``Transitions.hidden``)
    hidden_mask: jax.Array | None = None  # [C, H] bool

    @property
    def capacity(self) -> int:
        return self.reward.shape[0]

    @property
    def rows(self) -> Transitions:
        """Every row (filled or not) as one Transitions struct."""
        return Transitions(**{name: getattr(self, name) for name in TRANSITION_FIELDS})

    @property
    def hidden_len(self) -> int:
        """H, the hidden text's tokens per row (0: the buffer keeps none)."""
        return 0 if self.hidden is None else self.hidden.shape[1]

    @classmethod
    def create(cls, capacity: int, obs_len: int, action_len: int, hidden_len: int = 0) -> ReplayBuffer:
        """An empty buffer; ``hidden_len`` > 0 adds the hidden-text columns."""
        def ids(length: int) -> jax.Array:
            return jnp.zeros((capacity, length), jnp.int32)

        def mask(length: int) -> jax.Array:
            return jnp.zeros((capacity, length), jnp.bool_)

        return cls(
            obs=ids(obs_len), obs_mask=mask(obs_len),
            action=ids(action_len), action_mask=mask(action_len),
            next_obs=ids(obs_len), next_obs_mask=mask(obs_len),
            reward=jnp.zeros((capacity,), jnp.float32),
            done=jnp.zeros((capacity,), jnp.bool_),
            mc_return=jnp.zeros((capacity,), jnp.float32),
            episode_return=jnp.zeros((capacity,), jnp.float32),
            turn=jnp.zeros((capacity,), jnp.int32),
            ptr=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
            hidden=ids(hidden_len) if hidden_len else None,
            hidden_mask=mask(hidden_len) if hidden_len else None,
        )


def _leading_axis_sharding(leaf: Any, logical: str, mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> NamedSharding:
    # Scalars (ptr, size) are replicated; a leading dim the data axes do not divide
    # stays replicated rather than failing (logical_to_spec's rule).
    names = (logical,) + (None,) * (leaf.ndim - 1) if leaf.ndim else ()
    return NamedSharding(mesh, sharding_lib.logical_to_spec(names, leaf.shape, mesh, rules))


def buffer_shardings(buffer: ReplayBuffer, mesh: Mesh,
                     rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> ReplayBuffer:
    """NamedShardings for a (concrete or ``jax.eval_shape``) buffer: rows along the
    'capacity' logical axis, ``ptr``/``size`` replicated."""
    return jax.tree.map(lambda x: _leading_axis_sharding(x, "capacity", mesh, rules), buffer)


def create_sharded(capacity: int, obs_len: int, action_len: int, mesh: Mesh,
                   rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                   hidden_len: int = 0) -> tuple[ReplayBuffer, ReplayBuffer]:
    """An empty buffer materialised straight into its sharded layout, and its shardings."""
    make = lambda: ReplayBuffer.create(capacity, obs_len, action_len, hidden_len)  # noqa: E731
    shardings = buffer_shardings(jax.eval_shape(make), mesh, rules)
    return jax.jit(make, out_shardings=shardings)(), shardings


def insert(buffer: ReplayBuffer, batch: Transitions, valid: jax.Array | None = None) -> ReplayBuffer:
    """Writes the rows of ``batch`` where ``valid`` [N] is True (all N rows when None),
    in order, at the ring pointer, wrapping around.

    A mask (not a count) lets batches padded to one fixed N share one compiled program
    however many rows are real, and lets every host of a pod contribute its own padded
    rows to one global batch. When more than C rows are valid only the newest C are
    kept (where a row-by-row insertion would have left them); the rest are scattered
    out of bounds and dropped, so every kept index is unique.
    """
    capacity, rows_in = buffer.capacity, batch.num_rows
    # Row shapes and dtypes must match the buffer's: a scatter would cast silently.
    for name in TRANSITION_FIELDS:
        want, got = getattr(buffer, name), getattr(batch, name)
        if want is None or got is None:
            if (want is None) != (got is None):
                raise ValueError(f"insert: the buffer {'keeps no' if want is None else 'needs the'} field '{name}' "
                                 f"and the batch {'has it' if want is None else 'has none'}")
            continue
        if got.shape != (rows_in, *want.shape[1:]) or got.dtype != want.dtype:
            raise ValueError(f"insert: batch field '{name}' is {got.dtype}{list(got.shape)}, "
                             f"the buffer needs {want.dtype}{[rows_in, *want.shape[1:]]}")
    valid = jnp.ones((rows_in,), jnp.bool_) if valid is None else jnp.asarray(valid, jnp.bool_)
    order = jnp.cumsum(valid.astype(jnp.int32)) - 1  # rank of each valid row
    n = jnp.sum(valid, dtype=jnp.int32)
    kept = valid & (order >= n - capacity)
    slots = jnp.where(kept, (buffer.ptr + order) % capacity, capacity + jnp.arange(rows_in, dtype=jnp.int32))
    data = jax.tree.map(lambda buf, new: buf.at[slots].set(new, mode="drop", unique_indices=True),
                        buffer.rows, batch)
    return ReplayBuffer(
        **{name: getattr(data, name) for name in TRANSITION_FIELDS},
        ptr=(buffer.ptr + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def make_insert(shardings: ReplayBuffer, mesh: Mesh, rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                ) -> Callable[..., ReplayBuffer]:
    """``insert_fn(buffer, batch, valid=None) -> buffer``: ``insert`` jitted once per
    batch shape, the buffer donated and kept in its sharding.

    The batch and its mask are first placed with their rows split over the data axes
    ('batch' in ``rules``), so each device receives only rows of its own: host numpy
    that every process holds whole (a gathered rollout, ``multihost``), or global
    device arrays.
    """
    jitted = jax.jit(insert, in_shardings=(shardings, None, None), out_shardings=shardings, donate_argnums=0)

    def place(x: Any) -> jax.Array:
        sharding = _leading_axis_sharding(x, "batch", mesh, rules)
        return jax.device_put(x, sharding) if isinstance(x, jax.Array) else multihost.global_array(x, sharding)

    def insert_fn(buffer: ReplayBuffer, batch: Transitions, valid: Any = None) -> ReplayBuffer:
        valid = np.ones((batch.num_rows,), bool) if valid is None else valid
        return jitted(buffer, jax.tree.map(place, batch), place(valid))

    return insert_fn


def hidden_ids(tokenizer: Any, hidden: Sequence[str], hidden_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """What the environment hides (``env.hidden``), one text per row, as the ids a
    privileged critic reads before the conversation: the text and a newline,
    left-padded to ``hidden_len`` (its last tokens kept when longer)."""
    return tokenization.encode_left(tokenizer, [f"{h}\n" for h in hidden], hidden_len, pad_id=pad_id)


def from_dataset(transitions: Mapping[str, Sequence[Any]] | episode_records.Turns, tokenizer: Any, *, obs_len: int,
                 action_len: int,
                 pad_id: int, terminator_ids: Sequence[int], mesh: Mesh,
                 rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES, hidden_len: int = 0,
                 reward_scale: float = 1.0) -> ReplayBuffer:
    """A dataset's turns (columns; or an ``episode_records.Turns`` that reads them by row
    range. Texts: ``observation``, ``action``, ``next_observation``;
    ``reward``, ``done``, ``mc_return``, ``episode_return``, ``turn``; ``hidden`` when
    ``hidden_len`` > 0) tokenized once into a sharded device buffer of exactly their rows
    (rounded up to the data-parallel devices), as ``insert`` stores rollouts:
    observations left-padded and left-truncated, actions right-padded with
    ``terminator_ids[:1]`` appended, hidden texts as ``hidden_ids`` encodes them;
    rewards and Monte-Carlo returns times ``reward_scale``, as ``RolloutRunner`` stores
    them (episode returns stay in the environment's units).

    Each process reads (from ``Turns``) and tokenizes only the rows its own devices hold."""
    if isinstance(transitions, Mapping):
        table = transitions
        n = len(table["reward"])
        read = lambda start, stop: {k: list(v[start:stop]) for k, v in table.items()}  # noqa: E731
    else:
        n, read = len(transitions), transitions.columns
    scale = np.float32(reward_scale)
    devices = mesh.shape["data"] * mesh.shape["fsdp"]
    capacity = -(-n // devices) * devices

    @functools.lru_cache(maxsize=None)
    def encode(start: int, stop: int) -> tuple[Transitions, np.ndarray]:
        """Rows [start, stop) of the batch (zeros past the dataset's end) and their validity."""
        real = slice(min(start, n), min(stop, n))
        cols = read(real.start, real.stop)
        obs, obs_mask = tokenization.encode_left(tokenizer, cols["observation"], obs_len, pad_id=pad_id)
        nxt, nxt_mask = tokenization.encode_left(tokenizer, cols["next_observation"], obs_len, pad_id=pad_id)
        act, act_mask = tokenization.encode_right(tokenizer, cols["action"], action_len, pad_id=pad_id,
                                                  append_ids=list(terminator_ids)[:1])
        rows = Transitions(obs=obs, obs_mask=obs_mask, action=act, action_mask=act_mask, next_obs=nxt,
                           next_obs_mask=nxt_mask, reward=np.asarray(cols["reward"], np.float32) * scale,
                           done=np.asarray(cols["done"], bool),
                           mc_return=np.asarray(cols["mc_return"], np.float32) * scale,
                           episode_return=np.asarray(cols["episode_return"], np.float32),
                           turn=np.asarray(cols["turn"], np.int32))
        if hidden_len:
            hidden, hidden_mask = hidden_ids(tokenizer, cols["hidden"], hidden_len, pad_id)
            rows = rows.replace(hidden=hidden, hidden_mask=hidden_mask)
        pad = (stop - start) - (real.stop - real.start)
        rows = jax.tree.map(lambda x: np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]), rows)
        return rows, np.arange(start, stop) < n

    def place(get: Callable[[tuple[Transitions, np.ndarray]], np.ndarray], like: jax.ShapeDtypeStruct) -> jax.Array:
        def rows(index: tuple[slice, ...]) -> np.ndarray:
            block = range(capacity)[index[0]]
            return get(encode(block.start, block.stop))[(slice(None), *index[1:])]

        return jax.make_array_from_callback(like.shape, _leading_axis_sharding(like, "batch", mesh, rules), rows)

    buffer, shardings = create_sharded(capacity, obs_len, action_len, mesh, rules, hidden_len)
    batch = jax.tree.map(lambda like, name: place(lambda e: getattr(e[0], name), like),
                         buffer.rows, Transitions(**{f: f for f in TRANSITION_FIELDS
                                                     if getattr(buffer, f) is not None}))
    valid = place(lambda e: e[1], jax.ShapeDtypeStruct((capacity,), np.bool_))
    return make_insert(shardings, mesh, rules)(buffer, batch, valid)


def sample_indices(rng: jax.Array, size: jax.Array, batch_size: int) -> jax.Array:
    """``batch_size`` row indices drawn uniformly (with replacement) from the filled
    rows [0, size). The buffer must hold at least one row."""
    return jax.random.randint(rng, (batch_size,), 0, jnp.maximum(size, 1), dtype=jnp.int32)


def gather(buffer: ReplayBuffer, idx: jax.Array) -> Transitions:
    """The rows ``idx`` [B] as a Transitions batch."""
    chex.assert_rank(idx, 1)
    return jax.tree.map(lambda x: x[idx], buffer.rows)


def constrain_batch(tree: Any, mesh: Mesh | None,
                    rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES) -> Any:
    """Splits the leading (batch) dim of every leaf over the data axes.

    A gather from a capacity-sharded buffer would otherwise come out replicated and
    every device would run the whole batch. No-op without a mesh.
    """
    if mesh is None:
        return tree
    return jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, _leading_axis_sharding(x, "batch", mesh, rules)), tree)

