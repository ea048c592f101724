"""Hugging Face checkpoint reading (config.json + safetensors) with numpy only.

No torch at run time: safetensors files are parsed here (an 8-byte header length, a
JSON header, raw little-endian tensors) and memory-mapped, so a tensor is read only
when a device shard asks for it. Each parameter is transformed (transpose, split,
reshape: views where possible), then placed with ``jax.make_array_from_callback``
straight into its sharded layout; the host holds at most one tensor beyond the mmap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding

from archer_jax import sharding as sharding_lib

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}

# Files a model folder needs besides weights (tokenizer files are optional).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
METADATA_PATTERNS = [p for p in HUB_PATTERNS if p != "*.safetensors"]  # config and tokenizer: no weights


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read or does not match the model."""


Shapes = Callable[[tuple[int, ...]], tuple[tuple[int, ...], ...]]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one Flax parameter comes from: checkpoint tensor names (without the
    model's prefix), a numpy transform of those tensors into the Flax layout, and
    ``shapes``: the checkpoint shapes of ``keys`` given the Flax parameter's shape.

    The transforms are pure rearrangements (transpose, reshape, slice), so the same
    Source also says how to write the parameter back (``export_params``): the export is
    derived from the loading spec, not kept as a second table. ``shapes`` is checked
    against every checkpoint loaded (``match_tensors``), so it cannot drift either;
    None (no shapes declared) means the parameter can be loaded but not exported.
    """

    keys: tuple[str, ...]
    transform: Callable[..., np.ndarray] = lambda x: x
    shapes: Shapes | None = None

    def build(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        return self.transform(*tensors)


def source(*keys: str, transform: Callable[..., np.ndarray] | None = None, shapes: Shapes | None = None) -> Source:
    """One tensor as is (its shape is the parameter's), or several combined by
    ``transform`` (then ``shapes`` says theirs, if the parameter is to be exported)."""
    if transform is None and len(keys) == 1:
        return Source(tuple(keys), lambda x: x, lambda shape: (tuple(shape),))
    return Source(tuple(keys), transform or (lambda x: x), shapes)


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def transposed(key: str, reshape: tuple[int, ...] | None = None, *, in_axes: int = 1) -> Source:
    """A torch Linear weight [out, in] as a Flax kernel [in, out] (optionally reshaped):
    the kernel's first ``in_axes`` axes are the input features (2 for an attention
    output projection [heads, head_dim, embed]), the rest the output features."""

    def fn(w: np.ndarray) -> np.ndarray:
        w = w.T
        return w if reshape is None else w.reshape(reshape)

    def shapes(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        return ((_size(shape[in_axes:]), _size(shape[:in_axes])),)

    return Source((key,), fn, shapes)


def reshaped(key: str, shape: tuple[int, ...], *, merged: int | None = None) -> Source:
    """A tensor reshaped to ``shape``; in the checkpoint, the first ``merged`` axes of
    ``shape`` are one (all of them when None: a flat vector)."""
    merged = len(shape) if merged is None else merged

    def shapes(target: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        return ((_size(target[:merged]), *target[merged:]),)

    return Source((key,), lambda w: w.reshape(shape), shapes)


class SafetensorsFile:
    """A memory-mapped safetensors file: ``keys()``, ``shape(k)``, ``get(k)``."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > os.path.getsize(path):
                    raise ValueError("header length exceeds the file size")
                header = json.loads(f.read(n))
        except (OSError, ValueError, struct.error) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e}); re-download it") from e
        header.pop("__metadata__", None)
        self._entries = header
        self._offset = 8 + n
        self._mmap = np.memmap(path, dtype=np.uint8, mode="r")

    def keys(self) -> Iterable[str]:
        return self._entries.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key]["shape"])

    def get(self, key: str) -> np.ndarray:
        entry = self._entries[key]
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        start, end = entry["data_offsets"]
        raw = self._mmap[self._offset + start: self._offset + end]
        return raw.view(dtype).reshape(entry["shape"])


class CheckpointReader:
    """All tensors of a Hugging Face folder: one ``model.safetensors`` or a sharded
    set listed in ``model.safetensors.index.json``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        single = self.folder / "model.safetensors"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{index}: malformed index ({e}); re-download the checkpoint") from e
            files = {name: self.folder / name for name in set(weight_map.values())}
            for name, path in files.items():
                if not path.exists():
                    raise CheckpointError(f"{index} lists {name}, which is missing from {self.folder}")
            opened = {name: SafetensorsFile(p) for name, p in files.items()}
            self._where = {k: opened[f] for k, f in weight_map.items()}
        elif single.exists():
            f = SafetensorsFile(single)
            self._where = {k: f for k in f.keys()}
        else:
            found = sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []
            hint = (" (found PyTorch .bin weights: convert them to safetensors, e.g. with "
                    "transformers' save_pretrained(safe_serialization=True))"
                    if any(n.endswith(".bin") or n.endswith(".pt") for n in found) else "")
            raise CheckpointError(f"{self.folder}: no model.safetensors or model.safetensors.index.json{hint}")

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._where[key].shape(key)

    def get(self, key: str) -> np.ndarray:
        return self._where[key].get(key)


def resolve_folder(path_or_name: str, patterns: list[str] = HUB_PATTERNS) -> Path:
    """A local folder as is; otherwise a hub repo id downloaded (the files of
    ``patterns``: config, tokenizer and safetensors; ``METADATA_PATTERNS`` leaves out
    the weights). Offline, the error says how to get the folder by hand."""
    path = Path(os.path.expanduser(path_or_name))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path}: no config.json; pass a Hugging Face model folder")
        return path
    if path.exists() or path_or_name.startswith((".", "/", "~")) or path_or_name.count("/") > 1:
        raise CheckpointError(f"{path_or_name}: no such model folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_name, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 -- any hub failure gets the same advice
        raise CheckpointError(
            f"'{path_or_name}' is not a local folder and could not be fetched from the Hugging Face hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). On a machine with internet run "
            f"`huggingface-cli download {path_or_name} --local-dir DIR` and pass DIR instead."
        ) from e


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the model config ({e})") from e


def _fake(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zero-byte stand-in of a tensor, to learn a transform's output shape."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _detect_prefix(keys: Sequence[str], wanted: set[str], prefixes: Sequence[str]) -> str:
    best, hits = "", -1
    for prefix in prefixes:
        n = sum(1 for k in keys if k.startswith(prefix) and k[len(prefix):] in wanted)
        if n > hits:
            best, hits = prefix, n
    return best


def match_tensors(
    reader: Any,
    spec: Mapping[str, Source],
    abstract_params: Any,
    *,
    prefixes: Sequence[str] = ("",),
    ignore: Sequence[str] = (),
) -> dict[str, str]:
    """Checks that ``reader``'s tensor names and shapes give exactly ``spec``'s params in
    the (boxed) abstract param tree's shapes, reading no tensor data.

    ``reader`` needs ``keys()``, ``shape(key)`` and a ``folder`` to name in errors. All
    mismatches (missing, unexpected, mis-shaped tensors) are raised together as one
    ``CheckpointError`` that lists them. Returns spec tensor name -> checkpoint name.
    """
    flat = traverse_util.flatten_dict(abstract_params, sep="/", is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
    wanted = {k for src in spec.values() for k in src.keys}
    prefix = _detect_prefix(reader.keys(), wanted, prefixes)
    available = {(k[len(prefix):] if k.startswith(prefix) else k): k for k in reader.keys()}

    missing, misshaped, no_source = [], [], []
    for path, leaf in flat.items():
        target = leaf.value if isinstance(leaf, nn.Partitioned) else leaf
        src = spec.get(path)
        if src is None:
            no_source.append(path)
            continue
        absent = [k for k in src.keys if k not in available]
        if absent:
            missing.extend(absent)
            continue
        found = [tuple(reader.shape(available[k])) for k in src.keys]
        try:
            got = tuple(src.build([_fake(shape, np.float32) for shape in found]).shape)
        except ValueError:  # e.g. a reshape of the wrong number of elements
            got = None
        if got != tuple(target.shape):
            misshaped.append(f"{', '.join(src.keys)} -> {path}: checkpoint gives "
                             f"{got if got is not None else ', '.join(map(str, found))}, model needs "
                             f"{tuple(target.shape)}")
        elif src.shapes is not None and tuple(map(tuple, src.shapes(tuple(target.shape)))) != tuple(found):
            # The right Flax shape from another layout (a square weight stored transposed
            # cannot be told apart; other layouts can, and are refused).
            misshaped.append(f"{', '.join(src.keys)} -> {path}: checkpoint has {', '.join(map(str, found))}, the "
                             f"layout needs {', '.join(map(str, src.shapes(tuple(target.shape))))}")
    ignore_re = [re.compile(p) for p in ignore]
    unexpected = sorted(k for k in available if k not in wanted and not any(r.search(k) for r in ignore_re))
    if no_source:
        raise RuntimeError(f"internal: no checkpoint source declared for params {no_source}")
    if missing or misshaped or unexpected:
        lines = [f"{reader.folder}: the checkpoint does not match the model config."]
        if missing:
            lines.append(f"  missing tensors ({len(missing)}): {', '.join(sorted(set(missing)))}")
        if unexpected:
            lines.append(f"  unexpected tensors ({len(unexpected)}): {', '.join(unexpected)}")
        if misshaped:
            lines.append(f"  mis-shaped tensors ({len(misshaped)}):")
            lines.extend(f"    {m}" for m in misshaped)
        raise CheckpointError("\n".join(lines))
    return available


def load_params(
    reader: CheckpointReader,
    spec: Mapping[str, Source],
    abstract_params: Any,
    *,
    prefixes: Sequence[str] = ("",),
    ignore: Sequence[str] = (),
    mesh: Mesh | None = None,
    rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
) -> Any:
    """Loads ``spec`` from ``reader`` into the (boxed) abstract param tree's layout.

    Nothing is read before ``match_tensors`` has found every tensor in its shape.
    """
    available = match_tensors(reader, spec, abstract_params, prefixes=prefixes, ignore=ignore)
    flat = traverse_util.flatten_dict(abstract_params, sep="/", is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
    if mesh is None:
        mesh = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), sharding_lib.MESH_AXES)

    out = {}
    for path, leaf in flat.items():
        target = leaf.value if isinstance(leaf, nn.Partitioned) else leaf
        names = leaf.names if isinstance(leaf, nn.Partitioned) else (None,) * len(target.shape)
        sharding = NamedSharding(mesh, sharding_lib.logical_to_spec(names, target.shape, mesh, rules))
        src = spec[path]
        full = np.asarray(src.build([reader.get(available[k]) for k in src.keys]), dtype=target.dtype)
        out[path] = jax.make_array_from_callback(target.shape, sharding, lambda idx, full=full: full[idx])
        del full
    return traverse_util.unflatten_dict(out, sep="/")


def export_params(spec: Mapping[str, Source], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The checkpoint tensors (``spec``'s names, no prefix) that ``load_params`` turns
    back into ``params`` (flat: Flax param path -> array, boxed or not): the inverse of
    the loading spec, derived from it.

    Each Source's transform is a pure rearrangement, so applying it to arrays of
    element indices (one distinct index per checkpoint element, in the shapes its
    ``shapes`` declares) says which checkpoint element every parameter element came
    from; the parameter is scattered there. Every element of every tensor must be
    written exactly once (a transform that computes rather than rearranges, or a spec
    that leaves a tensor partly unwritten, is refused).
    """
    extra = sorted(set(params) - set(spec))
    missing = sorted(set(spec) - set(params))
    if extra or missing:
        raise ValueError(f"the params do not match the spec: params without a source {extra[:5]}, "
                         f"sources without a param {missing[:5]}")
    values = {path: np.asarray(jax.device_get(v.value if isinstance(v, nn.Partitioned) else v))
              for path, v in params.items()}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, Any] = {}
    for path, src in spec.items():
        if src.shapes is None:
            raise ValueError(f"{path}: its source {src.keys} declares no checkpoint shapes, so it cannot be exported")
        for key, shape in zip(src.keys, src.shapes(values[path].shape), strict=True):
            if shapes.setdefault(key, tuple(shape)) != tuple(shape):
                raise ValueError(f"{key}: declared as {shapes[key]} and {tuple(shape)} by different params")
            dtypes.setdefault(key, values[path].dtype)
    offsets, total = {}, 0
    for key, shape in shapes.items():
        offsets[key] = total
        total += _size(shape)
    out = {key: np.zeros(_size(shape), dtypes[key]) for key, shape in shapes.items()}
    written = {key: np.zeros(_size(shape), bool) for key, shape in shapes.items()}
    writes = dict.fromkeys(shapes, 0)
    for path, src in spec.items():
        starts = np.array([offsets[k] for k in src.keys])
        index = np.asarray(src.build([np.arange(offsets[k], offsets[k] + _size(shapes[k]), dtype=np.int64)
                                      .reshape(shapes[k]) for k in src.keys]))
        value = values[path]
        if index.shape != value.shape or index.dtype != np.int64:
            raise ValueError(f"{path}: the transform of {src.keys} does not rearrange them into the param's shape "
                             f"{value.shape} (got {index.shape}, {index.dtype})")
        index, value = index.reshape(-1), value.reshape(-1)
        which = np.searchsorted(starts, index, side="right") - 1
        for j, key in enumerate(src.keys):
            rows = which == j
            local = index[rows] - offsets[key]
            if local.size and (local.min() < 0 or local.max() >= _size(shapes[key])):
                raise ValueError(f"{path}: the transform of {src.keys} computes its values rather than rearranging "
                                 "them; it cannot be inverted")
            if written[key][local].any():
                raise ValueError(f"{key}: elements written twice (by {path} and another param)")
            written[key][local] = True
            writes[key] += int(rows.sum())
            out[key][local] = value[rows]
    for key, shape in shapes.items():
        if writes[key] != _size(shape) or not written[key].all():
            raise ValueError(f"{key}: {int(written[key].sum())} of {_size(shape)} elements written "
                             f"({writes[key]} writes); its sources do not rearrange it one to one")
    return {key: out[key].reshape(shape) for key, shape in shapes.items()}
