"""Text <-> fixed-shape id arrays, and the demo's word-level tokenizer.

Observations go to the actor LEFT-padded and LEFT-truncated (the most recent turns
are kept, the last real token always sits in the last slot); actions and behaviour
cloning targets are RIGHT-padded and RIGHT-truncated. Both call the tokenizer once
per batch and place the ids with vectorised numpy, so the host cost of a rollout
step is one batched tokenizer call plus a few array operations.

``build_word_tokenizer`` makes the ``:demo`` tokenizer from the task's own text (no
downloads): one id per word, punctuation mark and newline.

``PromptTemplate`` is the actor's own framing of an observation (an instruct model's
chat template, ``config.tokens.actor_template``): its ids are put around the stored
observation ids inside the jitted calls, so the replay buffer and the critic keep the
bare observation and the window ``config.tokens.obs_len`` still counts observation tokens.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from archer_jax import length_buckets

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"
WORD_SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, EOS_TOKEN)  # ids 0, 1, 2

# Pre-tokenization of the word tokenizer: spaces and tabs separate pieces and are
# dropped; a piece is a number with decimals ("3.5"), a word with its contractions
# ("city's", "don't"), one punctuation mark, or a newline (kept: it ends turns).
_WORD_PIECE = r"\d+(?:[.,]\d+)+|\w+(?:'\w+)*|[^\w\s]|\n"
_SPACES = r"[^\S\n]+"
# Decoding: pieces joined by one space, then no space before closing punctuation or
# a newline and none after an opening bracket or a newline.
_NO_SPACE_BEFORE = r" (?=[.,?!;:)\]}\n-])"
_NO_SPACE_AFTER = r"(?<=[(\[{\n-]) "


def _batch_ids(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    """One batched tokenizer call; ids per text, no padding, no truncation."""
    texts = [str(t) for t in texts]
    if not texts:
        return []
    out = tokenizer(texts, add_special_tokens=add_special_tokens, padding=False, truncation=False,
                    return_attention_mask=False, return_token_type_ids=False)
    return out["input_ids"]


def _flatten(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(flat int64 ids, per-row lengths) without a Python loop per token."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _place(flat: np.ndarray, lengths: np.ndarray, length: int, pad_id: int,
           left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scatters ragged rows into [B, length]: left=True keeps each row's tail in the
    last slots (left padding), left=False keeps its head in the first slots."""
    batch = lengths.shape[0]
    ids = np.full((batch, length), pad_id, dtype=np.int32)
    mask = np.zeros((batch, length), dtype=bool)
    if flat.size == 0 or length == 0:
        return ids, mask
    row = np.repeat(np.arange(batch), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(flat.size) - np.repeat(starts, lengths)  # index inside its row
    n = lengths[row]
    if left:
        keep = pos >= n - length
        col = pos - n + length
    else:
        keep = pos < length
        col = pos
    ids[row[keep], col[keep]] = flat[keep]
    mask[row[keep], col[keep]] = True
    return ids, mask


def _check_length(length: int) -> int:
    if int(length) != length or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    return int(length)


def encode_left(tokenizer: Any, texts: Sequence[str], length: int, *, pad_id: int,
                add_special_tokens: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Observations for the actor: ids int32 [B, length], mask bool [B, length].

    Left-padded and left-truncated: a text longer than ``length`` tokens loses its
    beginning (the oldest turns), so the most recent tokens always end at the last
    slot, where generation continues. No special tokens unless asked (with
    ``add_special_tokens=True`` they count toward ``length``, and a leading BOS is
    cut off with the oldest tokens of a too-long text).
    """
    length = _check_length(length)
    flat, lengths = _flatten(_batch_ids(tokenizer, texts, add_special_tokens))
    return _place(flat, lengths, length, pad_id, left=True)


def encode_right(tokenizer: Any, texts: Sequence[str], length: int, *, pad_id: int,
                 append_ids: Sequence[int] = (), add_special_tokens: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Actions and behaviour-cloning targets: ids int32 [B, length], mask bool [B, length].

    Right-padded and right-truncated. ``append_ids`` (e.g. the utterance terminator's
    ids) are added after each text BEFORE truncation, so a text cut short by
    ``length`` carries no terminator, like a generation that ran out of tokens.
    """
    length = _check_length(length)
    rows = _batch_ids(tokenizer, texts, add_special_tokens)
    append_ids = [int(i) for i in append_ids]
    if append_ids:
        rows = [list(r) + append_ids for r in rows]
    flat, lengths = _flatten(rows)
    return _place(flat, lengths, length, pad_id, left=False)


def decode_utterances(tokenizer: Any, tokens: Any, mask: Any, terminator: str) -> list[str]:
    """Generated ids [B, T] (numpy or jax; ``mask`` True at real tokens) -> one text per
    row, cut before the first ``terminator`` ("\\n" in ArCHer). Special tokens (EOS,
    padding) are skipped; a row that never emitted the terminator is returned whole.
    """
    tokens = np.asarray(tokens)
    mask = np.asarray(mask, dtype=bool)
    if tokens.shape != mask.shape or tokens.ndim != 2:
        raise ValueError(f"tokens and mask must both be [B, T], got {tokens.shape} and {mask.shape}")
    rows = [row[m].tolist() for row, m in zip(tokens, mask)]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if not terminator:
        return list(texts)
    return [t.split(terminator, 1)[0] for t in texts]


def _piece_pattern(marks: Sequence[str]) -> str:
    """The pre-tokenizer's piece: one of ``marks`` (longest first), else a ``_WORD_PIECE``."""
    for mark in marks:
        if not mark or re.search(r"\s", mark):
            raise ValueError(f"word tokenizer mark {mark!r}: must be non-empty, without spaces")
    return "|".join([*(re.escape(m) for m in sorted(set(marks), key=lambda m: (-len(m), m))), _WORD_PIECE])


def _word_counts(corpus: Iterable[str], pattern: str) -> collections.Counter:
    spaces = re.compile(_SPACES)
    piece = re.compile(pattern)
    counts: collections.Counter = collections.Counter()
    for text in corpus:
        for chunk in spaces.split(str(text)):
            counts.update(piece.findall(chunk))
    return counts


def build_word_tokenizer(corpus: Iterable[str], *, vocab_size: int | None = None, min_count: int = 1,
                         marks: Sequence[str] = ()) -> Any:
    """A word-level ``transformers.PreTrainedTokenizerFast`` built from ``corpus``.

    Special tokens: <pad> = 0, <unk> = 1, <eos> = 2 (also pad/unk/eos roles). Then
    words, numbers, punctuation marks and "\\n" that occur at least ``min_count``
    times, most frequent first (ties alphabetical, so the ids are deterministic),
    capped at ``vocab_size`` ids in all. Unknown words become <unk>. ``marks``: markup
    strings of the task's texts kept as one piece each wherever they occur (WebShop's
    "[SEP]" would otherwise be three pieces), as a subword tokenizer would merge them.

    Decoding joins pieces with one space, with no space before . , ? ! ; : ) ] } or a
    newline and none after ( [ { or a newline, and none around a hyphen (a generated
    "man-made" must reach the oracle as written). So text whose spacing follows those
    rules (single spaces, punctuation attached to the word before it, no spaces
    around newlines) round-trips exactly; other spacing is normalised (e.g.
    "a  b ?" -> "a b?", and quotes come back spaced: '" hi "'). Case is kept.

    Save with ``tok.save_pretrained(folder)`` and reload with
    ``transformers.AutoTokenizer.from_pretrained(folder)`` (or
    ``models.registry.load_tokenizer``) so a resumed run keeps the same ids.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if vocab_size is not None and vocab_size <= len(WORD_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(WORD_SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    pattern = _piece_pattern(marks)
    counts = _word_counts(corpus, pattern)
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in WORD_SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))
    if vocab_size is not None:
        words = words[: vocab_size - len(WORD_SPECIAL_TOKENS)]
    vocab = {tok: i for i, tok in enumerate((*WORD_SPECIAL_TOKENS, *words))}

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPACES), behavior="removed"),
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
    ])
    tok.decoder = decoders.Sequence([
        decoders.WordPiece(prefix="##", cleanup=False),  # joins pieces with spaces
        decoders.Fuse(),
        decoders.Replace(Regex(_NO_SPACE_BEFORE), ""),
        decoders.Replace(Regex(_NO_SPACE_AFTER), ""),
    ])
    tok.add_special_tokens(list(WORD_SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN, eos_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False, model_max_length=1 << 30)


def terminator_ids(tokenizer: Any, terminator: str) -> tuple[int, ...]:
    """Every id whose text contains ``terminator`` (generation stops at any of them),
    the id of the terminator alone first (appended to BC targets).

    Byte-level BPE has many such ids (GPT-2: "\\n", "\\n\\n", ...); a word tokenizer
    has one. An utterance that stops inside a merged token is cut by
    ``decode_utterances`` at the terminator itself.
    """
    own = tokenizer(terminator, add_special_tokens=False)["input_ids"]
    if len(own) != 1:
        raise ValueError(f"the utterance terminator {terminator!r} is not one token of this tokenizer "
                         f"(it encodes to {own}); choose config.tokens.terminator accordingly")
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True,
                                   clean_up_tokenization_spaces=False)
    others = [i for i, t in enumerate(texts) if terminator in t and i != own[0]]
    return (own[0], *others)


OBS_SLOT = "{obs}"


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """Token ids the actor reads before (``prefix``) and after (``suffix``) each
    observation; ``pad_id`` fills the padding. Empty: the actor reads the observation
    alone. Hashable, so it is a static field of the phases' hyper-parameters."""

    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def wrap(self, ids: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Left-padded observations [B, W] (``encode_left``'s) -> [B, len(prefix) + W +
        len(suffix)], still left-padded: each row is padding, prefix, its span (from its
        first real token to the end, masked slots inside kept masked), suffix."""
        if not len(self):
            return ids, mask
        p, width = len(self.prefix), ids.shape[1]
        span = length_buckets.spans(mask)[:, None]
        k = jnp.arange(width + len(self), dtype=jnp.int32)[None, :] - (width - span)  # slot within the wrapped row
        in_obs = (k >= p) & (k < p + span)
        column = jnp.clip(k + width - span - p, 0, width - 1)
        template = jnp.asarray(self.prefix + self.suffix, ids.dtype)
        framed = template[jnp.clip(jnp.where(k < p, k, k - span), 0, len(self) - 1)]
        out = jnp.where(in_obs, jnp.take_along_axis(ids, column, axis=1),
                        jnp.where(k >= 0, framed, jnp.asarray(self.pad_id, ids.dtype)))
        return out, jnp.where(in_obs, jnp.take_along_axis(mask, column, axis=1), k >= 0)

    def widen(self, buckets: Sequence[int]) -> tuple[int, ...]:
        """Length buckets of observations as widths of the wrapped rows."""
        return tuple(int(b) + len(self) for b in buckets)


def prompt_template(tokenizer: Any, template: str, pad_id: int) -> PromptTemplate:
    """The ``PromptTemplate`` of a text with one ``{obs}`` slot (``''``: none). Each side
    is tokenized on its own, without added special tokens (write an instruct model's
    BOS into the text, e.g. ``"<s>[INST] ... {obs} ... [/INST]"``)."""
    if not template:
        return PromptTemplate(pad_id=pad_id)
    if template.count(OBS_SLOT) != 1:
        raise ValueError(f"an actor template holds {OBS_SLOT!r} exactly once (it holds it "
                         f"{template.count(OBS_SLOT)} times)")
    before, after = template.split(OBS_SLOT)
    prefix, suffix = _batch_ids(tokenizer, [before, after], False)
    return PromptTemplate(tuple(map(int, prefix)), tuple(map(int, suffix)), pad_id)
