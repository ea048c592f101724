"""How the critic reads the actor's token ids (DESIGN.md, "Tokens").

``make_bridge(actor_tokenizer, critic_tokenizer, critic_length=...)`` picks one of:

* ``identity``: both tokenizers are the same (same id -> token table and the same
  normalizer / pre-tokenizer / merges). Ids pass through.
* ``table``: both split text the same way into the same token strings (same model
  type, merges, normalizer and pre-tokenizer: GPT-2 and RoBERTa share the byte-level
  BPE) but number them differently. ``table[actor_id] = critic_id`` is built once on
  the host and applied with ``jnp.take`` inside jit: one gather, no host trip.
* ``retokenize``: anything else. Actor ids are decoded to text and encoded by the
  critic's tokenizer on the host through ``jax.pure_callback``, so it still runs
  inside the jitted phases, but every call is a device -> host -> device round trip
  and a Python tokenizer call: the SLOW path, use a matching critic where speed
  matters. The callback sees whole (gathered) arrays: single-process only.

The output always has ``critic_length`` columns (default: the input's, plus one with
``add_bos``). The padding side is kept: pass ``padding='left'`` for observations
(real tokens end in the last slot, truncation drops the oldest tokens) and
``padding='right'`` for actions (real tokens start in slot 0, truncation drops the
end); the default 'auto' decides per row (left-padded iff its last slot is real, so
an empty row counts as right-padded). With ``add_bos`` the critic's BOS (RoBERTa's
<s>) is written immediately before each row's first real token (a row with no real
token becomes just BOS) and survives truncation. Padding slots hold the critic's pad
id, mask False. When rows are realigned (BOS, other length, re-tokenization) the
real tokens are packed in order, closing any holes in the mask.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("identity", "table", "retokenize")
PADDINGS = ("auto", "left", "right")
_ROLES = ("eos", "bos", "pad", "unk", "sep", "cls", "mask")  # eos first: GPT-2's <|endoftext|> is bos=eos=unk
# Fields of the tokenizer model that do not change which strings text is split into.
_MODEL_FIELDS_IGNORED = ("vocab", "unk_token")
# ByteLevel options that do not change the pieces of text after its first word.
_PRE_TOKENIZER_FIELDS_IGNORED = ("trim_offsets", "add_prefix_space")


def _role_id(tokenizer: Any, role: str) -> int | None:
    value = getattr(tokenizer, f"{role}_token_id", None)
    return None if value is None else int(value)


def _critic_pad_id(critic: Any) -> int:
    for role in ("pad", "eos", "unk"):
        if (i := _role_id(critic, role)) is not None:
            return i
    return 0


def _strip(node: Any, ignored: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, ignored) for k, v in node.items() if k not in ignored}
    if isinstance(node, list):
        return [_strip(v, ignored) for v in node]
    return node


def _pipeline(tokenizer: Any) -> str | None:
    """What decides how text is split into token strings (not their ids), as JSON;
    None when the tokenizer has no Rust backend to inspect."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    # "" and None both mean "no prefix/suffix" (files written by different versions).
    model = {k: (None if v == "" else v) for k, v in _strip(spec.get("model") or {}, _MODEL_FIELDS_IGNORED).items()}
    if "merges" in model:  # older files write "a b", newer ["a", "b"]
        model["merges"] = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model["merges"]]
    return json.dumps({
        "normalizer": spec.get("normalizer"),
        "pre_tokenizer": _strip(spec.get("pre_tokenizer"), _PRE_TOKENIZER_FIELDS_IGNORED),
        "model": model,
    }, sort_keys=True)


def choose_kind(actor_tokenizer: Any, critic_tokenizer: Any) -> str:
    """'identity', 'table' or 'retokenize' for this pair (see the module docstring)."""
    if actor_tokenizer is critic_tokenizer:
        return "identity"
    same_vocab = actor_tokenizer.get_vocab() == critic_tokenizer.get_vocab()
    pipe_a, pipe_c = _pipeline(actor_tokenizer), _pipeline(critic_tokenizer)
    if pipe_a is None or pipe_c is None:
        same = same_vocab and type(actor_tokenizer) is type(critic_tokenizer)
        return "identity" if same else "retokenize"
    if pipe_a != pipe_c:
        return "retokenize"
    return "identity" if same_vocab else "table"


def build_id_table(actor_tokenizer: Any, critic_tokenizer: Any, *,
                   size: int | None = None) -> tuple[np.ndarray, list[str]]:
    """table[actor_id] = critic_id for every actor id below ``size`` (default: the
    actor tokenizer's length), matched by token string; special tokens whose string
    the critic lacks are matched by role (eos -> eos, bos -> bos, ...). Returns the
    table and the actor tokens that had no counterpart (mapped to the critic's unk)."""
    a_vocab = actor_tokenizer.get_vocab()
    c_vocab = critic_tokenizer.get_vocab()
    size = max(len(actor_tokenizer), max(a_vocab.values(), default=-1) + 1) if size is None else int(size)
    unk = _role_id(critic_tokenizer, "unk")
    unk = _critic_pad_id(critic_tokenizer) if unk is None else unk
    table = np.full(size, unk, dtype=np.int32)
    found = np.zeros(size, dtype=bool)
    for token, a_id in a_vocab.items():
        if a_id < size and (c_id := c_vocab.get(token)) is not None:
            table[a_id] = c_id
            found[a_id] = True
    for role in _ROLES:
        a_id, c_id = _role_id(actor_tokenizer, role), _role_id(critic_tokenizer, role)
        if a_id is not None and c_id is not None and a_id < size and not found[a_id]:
            table[a_id] = c_id
            found[a_id] = True
    id_to_token = {i: t for t, i in a_vocab.items()}
    missing = [id_to_token[i] for i in np.flatnonzero(~found).tolist() if i in id_to_token]
    return table, missing


def _align_right(xp: Any, mask: Any, padding: str) -> Any:
    """Per row: True where the output is left-padded (real tokens end in the last slot)."""
    if padding == "auto":
        return mask[:, -1] if mask.shape[-1] else xp.zeros(mask.shape[:1], bool)
    return xp.full(mask.shape[:1], padding == "left", dtype=bool)


def _realign(xp: Any, ids: Any, mask: Any, align_right: Any, length: int, bos_id: int | None,
             pad_id: int) -> tuple[Any, Any]:
    """Rebuilds [B, N] rows as [B, length] rows (numpy or jax.numpy as ``xp``).

    align_right[b]: row b's real tokens end in the last slot (left padding) and a
    too-long row loses its first tokens; otherwise they start in slot 0 and a
    too-long row loses its last tokens. With ``bos_id`` the BOS is written before
    the first real token and is always kept.
    """
    mask = mask.astype(bool)
    b = 0 if bos_id is None else 1
    n = mask.sum(axis=-1).astype(np.int32)[:, None]  # real tokens per row
    # Positions of real tokens in order (a stable sort puts True before False).
    order = xp.argsort(~mask, axis=-1, stable=True).astype(np.int32)
    kept = xp.minimum(n + b, length)  # output tokens per row, BOS included
    j = xp.arange(length, dtype=np.int32)[None, :]
    align_right = align_right.astype(bool)[:, None]
    k = xp.where(align_right, j - (length - kept), j)  # index in the kept sequence
    valid = (k >= 0) & (k < kept)
    real_kept = kept - b
    r = xp.where(align_right, n - real_kept + (k - b), k - b)  # index among real tokens
    src = xp.take_along_axis(order, xp.clip(r, 0, max(ids.shape[-1] - 1, 0)), axis=-1)
    tokens = xp.take_along_axis(ids, src, axis=-1)
    is_bos = valid & (k < b)
    out = xp.where(valid, tokens, pad_id)
    if bos_id is not None:
        out = xp.where(is_bos, bos_id, out)
    return out.astype(np.int32), valid


@dataclasses.dataclass(frozen=True, eq=False)
class TokenBridge:
    """Maps actor (ids, mask) to critic (ids, mask); hashable, a valid static jit
    argument. Build it with ``make_bridge``.

    kind: 'identity' | 'table' | 'retokenize'; critic_length: output columns (None:
    the input's, +1 with BOS); bos_id: the critic BOS written before each row (None:
    none); pad_id / unk_id: the critic's; unmapped: actor tokens with no critic
    counterpart (table kind; they become unk_id).
    """

    kind: str
    critic_length: int | None
    bos_id: int | None
    pad_id: int
    unk_id: int
    unmapped: int = 0
    table: np.ndarray | None = dataclasses.field(default=None, repr=False)
    actor_tokenizer: Any = dataclasses.field(default=None, repr=False)
    critic_tokenizer: Any = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "table" and self.table is None:
            raise ValueError("kind 'table' needs a table")
        if self.kind == "retokenize" and (self.actor_tokenizer is None or self.critic_tokenizer is None):
            raise ValueError("kind 'retokenize' needs both tokenizers")
        if self.critic_length is not None and self.critic_length < 1:
            raise ValueError(f"critic_length must be positive, got {self.critic_length}")
        digest = None if self.table is None else hashlib.sha1(np.ascontiguousarray(self.table).tobytes()).hexdigest()
        toks = (id(self.actor_tokenizer), id(self.critic_tokenizer)) if self.kind == "retokenize" else None
        key = (self.kind, self.critic_length, self.bos_id, self.pad_id, self.unk_id, digest, toks)
        object.__setattr__(self, "_key", key)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenBridge) and self._key == other._key

    def output_length(self, input_length: int) -> int:
        if self.critic_length is not None:
            return self.critic_length
        return input_length + (0 if self.bos_id is None else 1)

    def __call__(self, ids: jax.Array, mask: jax.Array, *, padding: str = "auto") -> tuple[jax.Array, jax.Array]:
        """ids int [B, N], mask [B, N] (True/1 at real tokens) -> critic ids int32
        [B, L], mask bool [B, L]; jit-compatible (traced or eager).

        padding: 'left' (observations: real tokens end in the last slot, truncation
        keeps the tail), 'right' (actions: real tokens from slot 0, truncation keeps
        the head) or 'auto' (per row: left if its last slot is real, else right; so
        an empty row counts as right-padded).
        """
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        ids = jnp.asarray(ids)
        mask = jnp.asarray(mask).astype(bool)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"ids and mask must both be [B, N], got {ids.shape} and {mask.shape}")
        length = self.output_length(ids.shape[-1])
        if self.kind == "retokenize":
            return self._retokenize(ids, mask, length, padding)
        if self.kind == "table":
            ids = jnp.take(jnp.asarray(self.table), ids, axis=0, mode="fill", fill_value=self.unk_id)
        ids = ids.astype(jnp.int32)
        if self.bos_id is None and length == ids.shape[-1]:
            return jnp.where(mask, ids, self.pad_id), mask
        return _realign(jnp, ids, mask, _align_right(jnp, mask, padding), length, self.bos_id, self.pad_id)

    def _retokenize(self, ids: jax.Array, mask: jax.Array, length: int, padding: str) -> tuple[jax.Array, jax.Array]:
        out_shape = (jax.ShapeDtypeStruct((ids.shape[0], length), jnp.int32),
                     jax.ShapeDtypeStruct((ids.shape[0], length), jnp.bool_))
        return jax.pure_callback(lambda i, m: self.retokenize_host(np.asarray(i), np.asarray(m), length, padding),
                                 out_shape, ids, mask, vmap_method="sequential")

    def retokenize_host(self, ids: np.ndarray, mask: np.ndarray, length: int,
                        padding: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """The host half of the slow path (numpy in, numpy out): decode the actor's
        real tokens, encode the text with the critic tokenizer, realign."""
        mask = mask.astype(bool)
        rows = [row[m].tolist() for row, m in zip(ids, mask)]
        texts = self.actor_tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        encoded = self.critic_tokenizer(texts, add_special_tokens=False, padding=False, truncation=False,
                                        return_attention_mask=False)["input_ids"] if texts else []
        width = max([len(e) for e in encoded] + [1])
        c_ids = np.full((len(encoded), width), self.pad_id, dtype=np.int32)
        c_mask = np.zeros((len(encoded), width), dtype=bool)
        for i, e in enumerate(encoded):
            c_ids[i, : len(e)] = e
            c_mask[i, : len(e)] = True
        return _realign(np, c_ids, c_mask, _align_right(np, mask, padding), length, self.bos_id, self.pad_id)


def make_bridge(actor_tokenizer: Any, critic_tokenizer: Any, *, critic_length: int | None = None,
                add_bos: bool = False, kind: str | None = None, actor_vocab_size: int | None = None) -> TokenBridge:
    """The cheapest correct bridge from the actor's ids to the critic's.

    critic_length: output columns (None: as many as the input, +1 with ``add_bos``);
    add_bos: write the critic's BOS (RoBERTa's <s>) before each row's first real
    token; kind: force 'identity' / 'table' / 'retokenize' instead of detecting (the
    tests compare kinds this way); actor_vocab_size: the actor model's embedding
    rows when larger than its tokenizer (ids it may sample; extra ids map to unk).
    """
    detected = choose_kind(actor_tokenizer, critic_tokenizer)
    kind = detected if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if kind == "identity" and detected != "identity":
        raise ValueError(f"kind='identity' but the tokenizers differ (detected {detected!r})")
    bos_id = None
    if add_bos:
        bos_id = _role_id(critic_tokenizer, "bos")
        bos_id = _role_id(critic_tokenizer, "cls") if bos_id is None else bos_id
        if bos_id is None:
            raise ValueError("add_bos=True but the critic tokenizer has no bos_token (or cls_token)")
    pad_id = _critic_pad_id(critic_tokenizer)
    unk_id = _role_id(critic_tokenizer, "unk")
    unk_id = pad_id if unk_id is None else unk_id
    common = dict(kind=kind, critic_length=critic_length, bos_id=bos_id, pad_id=pad_id, unk_id=unk_id)
    if kind == "table":
        size = None if actor_vocab_size is None else max(actor_vocab_size, len(actor_tokenizer))
        table, missing = build_id_table(actor_tokenizer, critic_tokenizer, size=size)
        if missing:
            warnings.warn(f"token bridge: {len(missing)} actor tokens have no counterpart in the critic's vocabulary "
                          f"and map to its unk id {unk_id} (e.g. {missing[:5]})", stacklevel=2)
        return TokenBridge(**common, unmapped=len(missing), table=table)
    if kind == "retokenize":
        return TokenBridge(**common, actor_tokenizer=actor_tokenizer, critic_tokenizer=critic_tokenizer)
    return TokenBridge(**common)
