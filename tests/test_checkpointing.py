"""Checkpoints: sharded round trip, unfinished saves ignored, unreadable ones skipped, clear mismatch\nerrors, SIGTERM."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from archer_jax import checkpointing, replay, sharding


@struct.dataclass
class State:
    params: dict
    opt_state: optax.OptState
    step: jax.Array
    rng: jax.Array


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh((2, 2, 2))


def _state(mesh, scale=1.0, width=4):
    params = {
        "w": jax.device_put(scale * jnp.arange(8.0 * width).reshape(8, width),
                            NamedSharding(mesh, PartitionSpec(("data", "fsdp"), "tensor"))),
        "b": jax.device_put(jnp.full((width,), scale), NamedSharding(mesh, PartitionSpec())),
    }
    opt_state = optax.adam(1e-3).init(params)
    return State(params, opt_state, jnp.int32(7), jax.random.key(3))


def _buffer(mesh, capacity=16, length=6):
    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None))
    return {
        "obs": jax.device_put(jnp.arange(capacity * length, dtype=jnp.int32).reshape(capacity, length), rows),
        "reward": jax.device_put(jnp.linspace(0, 1, capacity), NamedSharding(mesh, PartitionSpec(("data", "fsdp")))),
        "pointer": jnp.int32(5),
    }


PROGRESS = {"stage": "archer", "iteration": 3, "env_steps": 480, "env_seeds": [11, 12], "finished_stages": ["bc"]}


def _assert_same(restored, original):
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(original), strict=True):
        if jnp.issubdtype(want.dtype, jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        assert got.sharding.is_equivalent_to(want.sharding, want.ndim), (got.sharding, want.sharding)


def test_sharded_round_trip(tmp_path, mesh):
    state, buffer = _state(mesh), _buffer(mesh)
    keep_state, keep_buffer = jax.tree.map(jnp.copy, state), jax.tree.map(jnp.copy, buffer)
    abstract_state, abstract_buffer = checkpointing.abstract_tree(state), checkpointing.abstract_tree(buffer)
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        assert ckpt.restore_latest(abstract_state, abstract_buffer) is None
        assert ckpt.save(10, state=state, buffer=buffer, progress=PROGRESS)
        # The arrays are off the devices once save returns: donating them is safe.
        for leaf in jax.tree.leaves((state, buffer)):
            leaf.delete()
        ckpt.wait()
        assert ckpt.latest_step() == 10
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        step, got_state, got_buffer, progress = ckpt.restore_latest(abstract_state, abstract_buffer)
        assert not ckpt.save(10, state=got_state, buffer=got_buffer, progress=progress)  # already saved
        with pytest.raises(ValueError, match="already holds step 10"):
            ckpt.save(9, state=got_state, buffer=got_buffer, progress=progress)
        with pytest.raises(TypeError, match="JSON"):
            ckpt.save(11, state=got_state, buffer=got_buffer, progress={"seeds": np.arange(2)})
    assert step == 10 and progress == PROGRESS
    assert isinstance(got_state, State)
    _assert_same(got_state, keep_state)
    _assert_same(got_buffer, keep_buffer)
    assert got_state.params["w"].sharding.spec == PartitionSpec(("data", "fsdp"), "tensor")


@struct.dataclass
class BufferBeforeHiddenColumns:
    """The replay buffer's fields before the optional hidden-text columns existed."""

    obs: jax.Array
    obs_mask: jax.Array
    action: jax.Array
    action_mask: jax.Array
    next_obs: jax.Array
    next_obs_mask: jax.Array
    reward: jax.Array
    done: jax.Array
    mc_return: jax.Array
    episode_return: jax.Array
    turn: jax.Array
    ptr: jax.Array
    size: jax.Array


def test_a_buffer_without_its_optional_columns_round_trips_and_one_written_before_they_existed_restores(
        tmp_path, mesh):
    """Optional columns (None) are not written; a checkpoint written by the code before
    they existed (the dataclass as it then was, saved as is) restores into today's buffer."""
    buffer, _ = replay.create_sharded(16, 6, 4, mesh)
    buffer = buffer.replace(reward=buffer.reward + 1.5, size=jnp.int32(9))
    privileged, _ = replay.create_sharded(16, 6, 4, mesh, hidden_len=3)
    privileged = privileged.replace(hidden=privileged.hidden + 7)
    state = _state(mesh)
    for folder, saved in (("now", buffer), ("hidden", privileged)):
        with checkpointing.Checkpointer(tmp_path / folder, async_save=False) as ckpt:
            ckpt.save(1, state=state, buffer=saved, progress={})
        with checkpointing.Checkpointer(tmp_path / folder) as ckpt:
            _, _, got, _ = ckpt.restore_latest(checkpointing.abstract_tree(state), checkpointing.abstract_tree(saved))
        assert isinstance(got, replay.ReplayBuffer) and got.hidden_len == saved.hidden_len
        _assert_same(got, saved)
    old = BufferBeforeHiddenColumns(**{f: getattr(buffer, f) for f in BufferBeforeHiddenColumns.__dataclass_fields__})
    with checkpointing.Checkpointer(tmp_path / "old", async_save=False) as ckpt:
        ckpt._manager.save(1, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),  # the old code's save
                                                      buffer=ocp.args.PyTreeSave(old),
                                                      progress=ocp.args.JsonSave({})))
    with checkpointing.Checkpointer(tmp_path / "old") as ckpt:
        _, _, got, _ = ckpt.restore_latest(checkpointing.abstract_tree(state), checkpointing.abstract_tree(buffer))
    assert got.hidden is None and int(got.size) == 9
    _assert_same(got, buffer)


def test_keeps_max_to_keep_and_skips_buffer(tmp_path, mesh):
    state = _state(mesh)
    with checkpointing.Checkpointer(tmp_path, max_to_keep=2, async_save=False) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, state=state, buffer=None, progress={"iteration": step})
        assert ckpt.all_steps() == [2, 3]
        step, _, buffer, progress = ckpt.restore_latest(checkpointing.abstract_tree(state))
    assert (step, buffer, progress) == (3, None, {"iteration": 3})


def test_unfinished_save_is_ignored(tmp_path, mesh):
    state, buffer = _state(mesh), _buffer(mesh)
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state=state, buffer=buffer, progress=PROGRESS)
    # What a run killed mid-save leaves behind: tmp folders with partial contents.
    for name in ("2.orbax-checkpoint-tmp", "3.orbax-checkpoint-tmp-1712345678"):
        partial = tmp_path / checkpointing.CHECKPOINT_DIR / name / "state"
        partial.mkdir(parents=True)
        (partial / "_METADATA").write_text("{truncated")
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 1
        abstract = checkpointing.abstract_tree(state), checkpointing.abstract_tree(buffer)
        step, got_state, _, _ = ckpt.restore_latest(*abstract)
        assert step == 1
        _assert_same(got_state, state)
        ckpt.save(2, state=got_state, buffer=buffer, progress=PROGRESS)  # the leftover does not block step 2
    assert sorted(os.listdir(tmp_path / checkpointing.CHECKPOINT_DIR)) == ["1", "2"]


def test_read_only_restores_and_leaves_a_save_in_progress_alone(tmp_path, mesh):
    """What a probe of a live run opens: the latest complete step restores, the training
    run's unfinished save stays, and saving is refused."""
    state = _state(mesh)
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state=state, buffer=None, progress=PROGRESS)
    in_progress = tmp_path / checkpointing.CHECKPOINT_DIR / "2.orbax-checkpoint-tmp-1712345678" / "state"
    in_progress.mkdir(parents=True)
    with checkpointing.Checkpointer(tmp_path, read_only=True) as ckpt:
        step, got_state, _, progress = ckpt.restore_latest(checkpointing.abstract_tree(state))
        assert (step, progress) == (1, PROGRESS)
        _assert_same(got_state, state)
        with pytest.raises(ValueError, match="read-only"):
            ckpt.save(3, state=state, buffer=None, progress=PROGRESS)
    assert in_progress.is_dir()
    assert sorted(os.listdir(tmp_path / checkpointing.CHECKPOINT_DIR)) == ["1", "2.orbax-checkpoint-tmp-1712345678"]


def _damage(step_folder):
    """What a disk error or a copy cut short leaves: every array data file of the state
    truncated to half (the metadata intact)."""
    files = [p for p in (step_folder / "state").rglob("*") if p.is_file() and "d" in p.relative_to(step_folder).parts]
    assert files
    for path in files:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("read_only", [False, True])
def test_an_unreadable_newest_checkpoint_is_reported_and_the_one_before_restored(tmp_path, mesh, caplog, read_only):
    state, newer = _state(mesh), _state(mesh, scale=2.0)
    folder = tmp_path / checkpointing.CHECKPOINT_DIR
    with checkpointing.Checkpointer(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, state=state, buffer=None, progress={"iteration": 1})
        ckpt.save(2, state=newer, buffer=None, progress={"iteration": 2})
    _damage(folder / "2")
    with checkpointing.Checkpointer(tmp_path, read_only=read_only) as ckpt:
        step, got, _, progress = ckpt.restore_latest(checkpointing.abstract_tree(state))
        assert (step, progress) == (1, {"iteration": 1})
        _assert_same(got, state)
        if not read_only:  # the run goes on: step 2 is saved afresh, the damaged one kept aside
            ckpt.save(2, state=got, buffer=None, progress={"iteration": 2})
    assert "2" in caplog.text and "cannot be read" in caplog.text and "resuming from step 1" in caplog.text
    assert sorted(os.listdir(folder)) == (["1", "2"] if read_only else ["1", "2", "2.unreadable"])


def test_no_readable_checkpoint_is_one_error_and_nothing_moves(tmp_path, mesh):
    state = _state(mesh)
    folder = tmp_path / checkpointing.CHECKPOINT_DIR
    with checkpointing.Checkpointer(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, state=state, buffer=None, progress={})
    _damage(folder / "1")
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        with pytest.raises(checkpointing.CheckpointMismatchError, match="no checkpoint can be read") as err:
            ckpt.restore_latest(checkpointing.abstract_tree(state))
    assert str(folder / "1") in str(err.value) and "Nothing was removed" in str(err.value)
    assert sorted(os.listdir(folder)) == ["1"]


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path):
    """A real kill -9 while the background thread writes step 2 (once its folder exists:
    ``save`` may return before the thread has created it)."""
    script = textwrap.dedent(f"""
        import os, signal, time
        import jax, jax.numpy as jnp
        from archer_jax import checkpointing
        ckpt = checkpointing.Checkpointer({str(tmp_path)!r})
        ckpt.save(1, state={{"w": jnp.ones((8,))}}, buffer=None, progress={{"iteration": 1}})
        ckpt.wait()
        ckpt.save(2, state={{"w": jnp.full((4_000_000,), 2.0)}}, buffer=None, progress={{"iteration": 2}})
        folder = os.path.join({str(tmp_path)!r}, {checkpointing.CHECKPOINT_DIR!r})
        deadline = time.monotonic() + 60
        while not any(name.startswith("2") for name in os.listdir(folder)) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    left = os.listdir(tmp_path / checkpointing.CHECKPOINT_DIR)
    assert "1" in left and ("2" in left or "2.orbax-checkpoint-tmp" in left), left
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        step = ckpt.latest_step()
        shape = (8,) if step == 1 else (4_000_000,)
        abstract = {"w": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(
            sharding.make_mesh((1, 1, -1), jax.devices()[:1]), PartitionSpec()))}
        got_step, got, _, progress = ckpt.restore_latest(abstract)
    assert got_step == step and progress == {"iteration": step}
    assert float(got["w"][0]) == float(step)


def test_structure_mismatch_names_folder_and_cause(tmp_path, mesh):
    state, buffer = _state(mesh), _buffer(mesh)
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        ckpt.save(4, state=state, buffer=buffer, progress=PROGRESS)
    ckpt = checkpointing.Checkpointer(tmp_path)
    bigger = checkpointing.abstract_tree(_buffer(mesh, capacity=32))
    with pytest.raises(checkpointing.CheckpointMismatchError) as err:
        ckpt.restore_latest(checkpointing.abstract_tree(state), bigger)
    msg = str(err.value)
    assert str(tmp_path / checkpointing.CHECKPOINT_DIR / "4") in msg
    assert "buffer/obs: checkpoint shape (16, 6), this run (32, 6)" in msg
    assert "replay buffer capacity" in msg and "refuses to overwrite" in msg
    with pytest.raises(checkpointing.CheckpointMismatchError):  # and it really refuses
        ckpt.save(5, state=state, buffer=buffer, progress=PROGRESS)
    ckpt.close()

    wider = checkpointing.abstract_tree(_state(mesh, width=8))
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        with pytest.raises(checkpointing.CheckpointMismatchError, match=r"(?s)state/params/w: .*the model changed"):
            ckpt.restore_latest(wider, checkpointing.abstract_tree(buffer))
    hints = {"state/params": "config.model.width changed", "state": "something in the state changed"}
    with checkpointing.Checkpointer(tmp_path, config_hints=hints) as ckpt:
        with pytest.raises(checkpointing.CheckpointMismatchError, match="config.model.width changed"):
            ckpt.restore_latest(wider, checkpointing.abstract_tree(buffer))
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        fewer = State({"w": state.params["w"]}, optax.sgd(1.0).init({}), state.step, state.rng)
        other = checkpointing.abstract_tree(fewer)
        with pytest.raises(checkpointing.CheckpointMismatchError, match="state/params/b: in the checkpoint"):
            ckpt.restore_latest(other)
    # A buffer field the checkpoint lacks is a version of the code, whatever the hints say
    # of the buffer's shapes.
    newer = checkpointing.abstract_tree({**buffer, "turn": buffer["reward"]})
    with checkpointing.Checkpointer(tmp_path, config_hints={"buffer": "config.capacity changed"}) as ckpt:
        with pytest.raises(checkpointing.CheckpointMismatchError,
                           match=r"(?s)buffer/turn: in this run \(16,\), not in the checkpoint.*differ between "
                                 r"versions of archer_jax.*run_info.jsonl"):
            ckpt.restore_latest(checkpointing.abstract_tree(state), newer)
    assert sorted(os.listdir(tmp_path / checkpointing.CHECKPOINT_DIR)) == ["4"]  # untouched


def test_sigterm_sets_the_preemption_flag():
    calls = []
    uninstall = checkpointing.install_sigterm_handler(lambda: calls.append("saved"))
    try:
        assert not checkpointing.preemption_requested()
        signal.raise_signal(signal.SIGTERM)
        assert checkpointing.preemption_requested()
        assert calls == ["saved"]
    finally:
        uninstall()
        checkpointing.clear_preemption()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not checkpointing.preemption_requested()
