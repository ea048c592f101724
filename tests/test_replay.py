"""The on-device replay buffer: ring insertion, uniform sampling, capacity sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from archer_jax import replay, sharding
from archer_jax.data import tokenization

OBS_LEN, ACTION_LEN = 3, 2


def make_batch(first: int, n: int) -> replay.Transitions:
    """Rows numbered first, first + 1, ...: every field encodes its row number."""
    rows = np.arange(first, first + n)
    return replay.Transitions(
        obs=jnp.asarray(np.repeat(rows[:, None], OBS_LEN, 1), jnp.int32),
        obs_mask=jnp.ones((n, OBS_LEN), jnp.bool_),
        action=jnp.asarray(np.repeat(rows[:, None], ACTION_LEN, 1) + 1000, jnp.int32),
        action_mask=jnp.asarray(np.arange(ACTION_LEN)[None, :] <= rows[:, None] % ACTION_LEN),
        next_obs=jnp.asarray(np.repeat(rows[:, None], OBS_LEN, 1) + 2000, jnp.int32),
        next_obs_mask=jnp.ones((n, OBS_LEN), jnp.bool_),
        reward=jnp.asarray(-rows, jnp.float32),
        done=jnp.asarray(rows % 3 == 0),
        mc_return=jnp.asarray(rows * 0.5, jnp.float32),
        episode_return=jnp.asarray(rows * 0.25, jnp.float32),
        turn=jnp.asarray(rows % 4, jnp.int32),
    )


def stored_rows(buffer: replay.ReplayBuffer) -> list[int]:
    return [int(x) for x in buffer.obs[:, 0]]


def test_insert_fills_then_wraps_around_at_the_pointer():
    buf = replay.ReplayBuffer.create(5, OBS_LEN, ACTION_LEN)
    insert = jax.jit(replay.insert, donate_argnums=0)
    buf = insert(buf, make_batch(1, 3))
    assert stored_rows(buf) == [1, 2, 3, 0, 0]
    assert (int(buf.ptr), int(buf.size)) == (3, 3)
    buf = insert(buf, make_batch(4, 3))  # rows 4, 5 fill the end, row 6 wraps to slot 0
    assert stored_rows(buf) == [6, 2, 3, 4, 5]
    assert (int(buf.ptr), int(buf.size)) == (1, 5)
    # Every field of a row moved together.
    np.testing.assert_array_equal(buf.action[0], [1006, 1006])
    np.testing.assert_array_equal(buf.next_obs[0], [2006] * OBS_LEN)
    np.testing.assert_array_equal(buf.reward, [-6, -2, -3, -4, -5])
    np.testing.assert_array_equal(buf.done, [True, False, True, False, False])
    np.testing.assert_array_equal(buf.mc_return, [3.0, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_array_equal(buf.episode_return, [1.5, 0.5, 0.75, 1.0, 1.25])
    np.testing.assert_array_equal(buf.turn, [2, 2, 3, 0, 1])
    np.testing.assert_array_equal(buf.action_mask[0], [True, False])


def test_batch_larger_than_capacity_keeps_the_newest_rows():
    buf = replay.ReplayBuffer.create(4, OBS_LEN, ACTION_LEN)
    buf = replay.insert(buf, make_batch(1, 1))  # ptr = 1
    buf = replay.insert(buf, make_batch(10, 7))  # rows 10..16; only 13..16 survive
    # Where row-by-row insertion from slot 1 would leave them: row 10 + k at slot
    # (1 + k) % 4, the later rows overwriting the earlier ones.
    assert stored_rows(buf) == [13, 14, 15, 16]
    assert (int(buf.ptr), int(buf.size)) == ((1 + 7) % 4, 4)


def test_insert_names_a_mismatched_field():
    buf = replay.ReplayBuffer.create(4, OBS_LEN, ACTION_LEN)
    batch = make_batch(0, 2).replace(reward=jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="reward"):
        replay.insert(buf, batch)


def test_sampling_draws_only_filled_rows_uniformly():
    buf = replay.insert(replay.ReplayBuffer.create(16, OBS_LEN, ACTION_LEN), make_batch(100, 5))
    keys = jax.random.split(jax.random.key(0), 400)
    idx = jax.jit(jax.vmap(lambda k: replay.sample_indices(k, buf.size, 8)))(keys)
    counts = np.bincount(np.asarray(idx).ravel(), minlength=16)
    assert counts[5:].sum() == 0
    # 3200 draws over 5 rows: 640 each, std ~23.
    assert np.all(np.abs(counts[:5] - 640) < 120), counts
    batch = replay.gather(buf, idx[0])
    np.testing.assert_array_equal(batch.obs[:, 0], np.asarray(idx[0]) + 100)
    np.testing.assert_array_equal(batch.reward, -(np.asarray(idx[0]) + 100))


def test_insert_writes_only_the_valid_rows_of_a_padded_batch():
    buf = replay.ReplayBuffer.create(4, OBS_LEN, ACTION_LEN)
    traces = []
    insert = jax.jit(lambda *a: traces.append(1) or replay.insert(*a), donate_argnums=0)
    buf = insert(buf, make_batch(1, 3), np.array([True, False, True]))  # row 2 is padding
    assert stored_rows(buf) == [1, 3, 0, 0]
    assert (int(buf.ptr), int(buf.size)) == (2, 2)
    buf = insert(buf, make_batch(5, 3), np.ones(3, bool))  # a traced mask: the same compiled program
    assert stored_rows(buf) == [7, 3, 5, 6]
    assert (int(buf.ptr), int(buf.size)) == (1, 4)
    buf = insert(buf, make_batch(10, 3), np.zeros(3, bool))
    assert stored_rows(buf) == [7, 3, 5, 6]
    assert len(traces) == 1
    # More valid rows than capacity in a padded batch: the newest C valid rows survive.
    buf = replay.insert(replay.ReplayBuffer.create(2, OBS_LEN, ACTION_LEN), make_batch(20, 5),
                        np.array([True, True, False, True, False]))
    assert stored_rows(buf) == [23, 21]
    assert (int(buf.ptr), int(buf.size)) == (1, 2)


def test_sharded_along_capacity_on_8_devices(monkeypatch):
    assert jax.device_count() == 8
    mesh = sharding.make_mesh((2, 2, 2))
    buf, shardings = replay.create_sharded(8, OBS_LEN, ACTION_LEN, mesh)
    assert buf.obs.sharding.spec == PartitionSpec(("data", "fsdp"), None)
    assert buf.reward.sharding.spec == PartitionSpec(("data", "fsdp"))
    assert buf.ptr.sharding.spec == PartitionSpec()
    assert len(buf.obs.addressable_shards) == 8
    assert buf.obs.addressable_shards[0].data.shape == (2, OBS_LEN)

    traces = []
    monkeypatch.setattr(replay, "insert", lambda *a: traces.append(1) or replay_insert(*a))
    insert = replay.make_insert(shardings, mesh)
    for first in (0, 4, 8):  # host numpy batches, as the rollout produces them
        buf = insert(buf, jax.tree.map(np.asarray, make_batch(first, 4)))
    buf = insert(buf, jax.tree.map(np.asarray, make_batch(12, 4)), np.array([True, False, False, False]))
    assert buf.obs.sharding == shardings.obs
    assert stored_rows(buf) == [8, 9, 10, 11, 12, 5, 6, 7]
    assert (int(buf.ptr), int(buf.size)) == (5, 8)
    assert len(traces) == 1  # one compile for every call, whatever the mask

    idx = jax.jit(replay.sample_indices, static_argnums=2)(jax.random.key(1), buf.size, 4)
    rows = jax.jit(replay.gather)(buf, idx)
    np.testing.assert_array_equal(rows.obs[:, 0], np.asarray(stored_rows(buf))[np.asarray(idx)])


replay_insert = replay.insert


def test_a_dataset_buffer_scales_rewards_and_returns_as_rollouts_do():
    tokenizer = tokenization.build_word_tokenizer(["look around", "take the gun", "you see a gun"])
    texts = {"observation": ["you see a gun", "look around"], "action": ["take the gun", "look around"],
             "next_observation": ["look around", "you see a gun"], "hidden": ["", ""],
             "reward": [10.0, 0.0], "done": [False, True], "mc_return": [19.0, 0.0],
             "episode_return": [10.0, 10.0], "turn": [0, 1]}
    mesh = sharding.make_mesh((-1, 1, 1))
    kw = dict(obs_len=6, action_len=4, pad_id=tokenizer.pad_token_id,
              terminator_ids=tokenization.terminator_ids(tokenizer, "\n"), mesh=mesh)
    plain = replay.from_dataset(texts, tokenizer, **kw)
    scaled = replay.from_dataset(texts, tokenizer, reward_scale=0.1, **kw)
    n = int(plain.size)
    np.testing.assert_allclose(np.asarray(scaled.reward)[:n], [1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(scaled.mc_return)[:n], [1.9, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(scaled.episode_return), np.asarray(plain.episode_return))
    np.testing.assert_array_equal(np.asarray(scaled.obs), np.asarray(plain.obs))
