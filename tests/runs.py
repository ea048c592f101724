"""What the tests that run, kill and resume runs share: reading a workdir (metrics rows,
checkpoint steps, the final checkpoint), deterministic kill points (``Pipe``) and a
free local port for the servers and coordinators they start."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import jax
import numpy as np

from archer_jax import checkpointing


def free_port() -> int:
    """A TCP port on localhost that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_devices(env: dict[str, str], devices: int) -> dict[str, str]:
    """``env`` for a subprocess on ``devices`` fake CPU devices, keeping the suite's other
    XLA flags (conftest.py: the backend's cheap compile settings)."""
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    return {**env, "XLA_FLAGS": " ".join([f"--xla_force_host_platform_device_count={devices}", *flags])}


def rows(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "time" and not k.startswith("time/")}


def logged(workdir: Path, stage: str) -> list[int]:
    return [r["iteration"] for r in rows(workdir) if r["stage"] == stage]


def steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def final(workdir: Path) -> tuple[int, dict, dict, dict]:
    """(step, state, buffer, progress) of the newest checkpoint, restored with the run's own
    Checkpointer into the tree the checkpoint's metadata describes (on one device)."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with checkpointing.Checkpointer(workdir) as checkpointer:
        step = checkpointer.latest_step()
        metadata = checkpointer._manager.item_metadata(step)
        assert metadata.get("buffer") is not None, f"step {step} holds no replay buffer"

        def abstract(item: str) -> dict:
            tree = getattr(metadata[item], "tree", metadata[item])
            return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree,
                                is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))

        restored = checkpointer.restore_latest(abstract("state"), abstract("buffer"))
    assert restored is not None and restored[0] == step
    return restored


def assert_trees_equal(got: dict, want: dict, name: str) -> None:
    got_leaves = dict(jax.tree_util.tree_flatten_with_path(got)[0])
    want_leaves = dict(jax.tree_util.tree_flatten_with_path(want)[0])
    assert got_leaves.keys() == want_leaves.keys(), name
    differ = [jax.tree_util.keystr(path) for path in want_leaves
              if not np.array_equal(np.asarray(got_leaves[path]), np.asarray(want_leaves[path]))]
    assert not differ, f"{name}: {len(differ)} of {len(want_leaves)} leaves differ: {differ[:10]}"



# ----------------------------------------------------------------------------- kill points


class Pipe:
    """A full named pipe where the run will write ``transcripts/<stage>_<iteration>.txt``: the
    run opens it and blocks writing until ``release()``, which reads the text the run wrote and
    puts it back as a plain file (so transcripts can be compared)."""

    def __init__(self, workdir: Path, stage: str, iteration: int) -> None:
        self.path = workdir / "transcripts" / f"{stage}_{iteration:06d}.txt"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        os.mkfifo(self.path)
        # Read-write: the run's open() finds a reader and returns at once; its write() then
        # blocks, because the pipe is filled to the last byte first.
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self._filler = 0
        for chunk in (4096, 1):
            try:
                while True:
                    self._filler += os.write(self._fd, b"\0" * chunk)
            except BlockingIOError:
                pass

    def reached(self, proc: subprocess.Popen) -> bool:
        """Whether the run holds the pipe open: it is inside this iteration's evaluation and
        cannot leave it (nor reach the iteration's checkpoint or stop check) until released."""
        folder = Path(f"/proc/{proc.pid}/fd")
        for fd in folder.iterdir() if folder.exists() else ():
            try:
                if os.readlink(fd) == str(self.path):
                    return True
            except OSError:  # closed meanwhile
                pass
        return False

    def release(self) -> None:
        """Lets the run write (and go on); waits for its text and restores it as a plain file."""
        reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(self._fd)  # now the run is the only writer: its close ends the text
        os.set_blocking(reader, True)
        chunks = []
        while chunk := os.read(reader, 1 << 16):
            chunks.append(chunk)
        os.close(reader)
        text = b"".join(chunks)[self._filler:]
        assert text, f"{self.path}: the run wrote nothing"
        self.path.unlink()
        self.path.write_bytes(text)

    def remove(self) -> None:
        """After a SIGKILL: the transcript was never written; the resumed run writes it."""
        os.close(self._fd)
        self.path.unlink()


def wandb_history(path: Path) -> list[dict]:
    """The rows an offline W&B run logged (``wandb.log``), read from its ``run-<id>.wandb``
    file: W&B's ':W&B' header, then LevelDB log blocks of 32 KiB whose records (full, or
    first/middle/last pieces) are ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    rows, position, pieces = [], 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:  # zero padding to the end of the block
            position += left
            continue
        pieces += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                             for item in record.history.item if not (item.key or item.nested_key[0]).startswith("_")})
    return rows

