"""The actor -> critic token bridge: identity, id table and host re-tokenization agree."""

import functools
import json
import warnings

import chex
import jax
import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from archer_jax import sharding, token_bridge
from archer_jax.data import tokenization
from archer_jax.models import registry

TEXTS = [
    "Is the city in Europe?\nNo.",
    "Is it Paris?",
    "",
    "Does the name of the city start with a letter between A and M? Yes it does, it really does.",
    "The population is 2,148,000 people.",
    "ok",
    "Is the city on the coast?\nYes.\nIs it Lisbon?",
    "Hello there, the city is quite big.",
]


def _gpt2_and_roberta(fixture, tmp_path, seed=0):
    """Two byte-level BPE tokenizers with the fixture's tokens and merges but the id
    conventions of gpt2 (regular tokens first, <|endoftext|> last, pad = eos) and
    roberta-base (<s>, <pad>, </s>, <unk> at 0-3, the rest in another order)."""
    from tokenizers import ByteLevelBPETokenizer

    spec = json.loads((fixture / "tokenizer.json").read_text())
    special = {t["content"] for t in spec["added_tokens"]}
    regular = [t for t, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1]) if t not in special]
    perm = np.random.default_rng(seed).permutation(len(regular))
    layouts = {
        "gpt2": ({**{t: i for i, t in enumerate(regular)}, "<|endoftext|>": len(regular)},
                 dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                      pad_token="<|endoftext|>")),
        "roberta": ({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{regular[p]: 4 + i for i, p in enumerate(perm)},
                     "<mask>": 4 + len(regular)},
                    dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")),
    }
    out = []
    for name, (vocab, specials) in layouts.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text(
            "#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in spec["model"]["merges"]))
        bpe = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), add_prefix_space=False)
        out.append(PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, clean_up_tokenization_spaces=False,
                                           **specials))
    return out


@pytest.fixture(scope="module")
def pair(hf_fixtures, tmp_path_factory):
    return _gpt2_and_roberta(hf_fixtures / "gpt2", tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh((2, 2, 2))


def _sharded(mesh, *arrays):
    return [jax.device_put(a, sharding.batch_sharding(mesh, a.ndim)) for a in arrays]


def _with_bos(ids, mask, bos, pad, left):
    """Reference placement: BOS right before the first real token, one column more."""
    out_ids, out_mask = [], []
    for row, m in zip(ids, mask):
        real = [bos] + row[m].tolist()
        n = len(row) + 1
        padding = [pad] * (n - len(real))
        out_ids.append(padding + real if left else real + padding)
        flags = [False] * len(padding), [True] * len(real)
        out_mask.append(flags[0] + flags[1] if left else flags[1] + flags[0])
    return np.asarray(out_ids), np.asarray(out_mask)


def test_identity_when_tokenizers_match(hf_fixtures, mesh):
    gpt2 = registry.load_tokenizer(str(hf_fixtures / "gpt2"))
    same = registry.load_tokenizer(str(hf_fixtures / "gpt2"))
    roberta = registry.load_tokenizer(str(hf_fixtures / "roberta"))  # same files, same ids
    assert token_bridge.choose_kind(gpt2, same) == "identity"
    bridge = token_bridge.make_bridge(gpt2, roberta)
    assert bridge.kind == "identity"
    ids, mask = tokenization.encode_left(gpt2, TEXTS, 24, pad_id=gpt2.pad_token_id)
    out_ids, out_mask = jax.jit(bridge)(*_sharded(mesh, ids, mask))
    np.testing.assert_array_equal(out_ids, ids)
    np.testing.assert_array_equal(out_mask, mask)


def test_kinds_are_detected(pair, hf_fixtures):
    gpt2, roberta = pair
    word = tokenization.build_word_tokenizer(TEXTS)
    assert token_bridge.choose_kind(gpt2, roberta) == "table"
    assert token_bridge.choose_kind(gpt2, word) == "retokenize"
    assert token_bridge.choose_kind(word, word) == "identity"
    assert gpt2(TEXTS[0])["input_ids"] != roberta(TEXTS[0])["input_ids"]  # really permuted


@pytest.mark.parametrize("add_bos", [False, True])
@pytest.mark.parametrize("left", [True, False])
def test_table_equals_retokenization(pair, mesh, add_bos, left):
    gpt2, roberta = pair
    table = token_bridge.make_bridge(gpt2, roberta, add_bos=add_bos)
    slow = token_bridge.make_bridge(gpt2, roberta, add_bos=add_bos, kind="retokenize")
    assert (table.kind, slow.kind, table.unmapped) == ("table", "retokenize", 0)
    encode = tokenization.encode_left if left else tokenization.encode_right
    ids, mask = encode(gpt2, TEXTS, 20, pad_id=gpt2.pad_token_id)
    args = _sharded(mesh, ids, mask)
    chex.clear_trace_counter()

    padding = "left" if left else "right"

    @chex.assert_max_traces(n=1)
    def apply(bridge, i, m):
        return bridge(i, m, padding=padding)

    jitted = jax.jit(apply, static_argnums=0)
    fast = jitted(table, *args)
    fast_again = jitted(table, *args)  # no retrace
    host = jax.jit(functools.partial(slow, padding=padding))(*args)
    np.testing.assert_array_equal(fast[0], fast_again[0])
    np.testing.assert_array_equal(fast[0], host[0])
    np.testing.assert_array_equal(fast[1], host[1])
    # Both equal the critic tokenizer's own encoding (where nothing was truncated).
    want_ids, want_mask = encode(roberta, TEXTS, 20, pad_id=roberta.pad_token_id)
    if add_bos:
        want_ids, want_mask = _with_bos(want_ids, want_mask, roberta.bos_token_id, roberta.pad_token_id, left)
    full = [len(gpt2(t)["input_ids"]) <= 20 for t in TEXTS]
    np.testing.assert_array_equal(np.asarray(fast[0])[full], want_ids[full])
    np.testing.assert_array_equal(np.asarray(fast[1])[full], want_mask[full])


def test_bos_placement_with_left_padding(pair):
    gpt2, roberta = pair
    bos, pad = roberta.bos_token_id, roberta.pad_token_id
    bridge = token_bridge.make_bridge(gpt2, roberta, add_bos=True, critic_length=9)
    assert bridge.bos_id == bos == 0
    ids, mask = tokenization.encode_left(gpt2, ["Is it?", "", "The population is 2,148,000 people."], 8,
                                         pad_id=gpt2.pad_token_id)
    out_ids, out_mask = jax.jit(functools.partial(bridge, padding="left"))(ids, mask)
    out_ids, out_mask = np.asarray(out_ids), np.asarray(out_mask)
    n0 = int(mask[0].sum())
    assert 0 < n0 < 8
    assert out_mask[0].tolist() == [False] * (8 - n0) + [True] * (n0 + 1)
    assert out_ids[0, 8 - n0] == bos and (out_ids[0, : 8 - n0] == pad).all()
    assert out_ids[0, -n0:].tolist() == bridge.table[ids[0, -n0:]].tolist()
    assert out_ids[1].tolist() == [pad] * 8 + [bos] and out_mask[1].tolist() == [False] * 8 + [True]  # empty row
    assert mask[2].all() and out_ids[2, 0] == bos and out_mask[2].all()  # full row: BOS + the 8 tokens
    # Shorter critic rows keep BOS and the most recent tokens of a left-padded row.
    short = token_bridge.make_bridge(gpt2, roberta, add_bos=True, critic_length=3)
    s_ids, s_mask = short(ids, mask)  # 'auto': the full row counts as left-padded
    assert np.asarray(s_ids)[2].tolist() == [bos] + bridge.table[ids[2, -2:]].tolist() and np.asarray(s_mask)[2].all()


def test_unmatched_tokens_map_to_unk_with_one_warning():
    actor = tokenization.build_word_tokenizer(["Is it Paris?\nNo.", "Is it Rome?"])
    critic = tokenization.build_word_tokenizer(["Is it Paris or London?\nYes."])
    assert token_bridge.choose_kind(actor, critic) == "table"  # same pipeline, other ids
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bridge = token_bridge.make_bridge(actor, critic)
    assert len(caught) == 1 and "no counterpart" in str(caught[0].message)
    assert bridge.unmapped == 2  # "Rome", "No"
    ids, mask = tokenization.encode_right(actor, ["Is it Rome?"], 6, pad_id=0)
    out_ids, _ = bridge(ids, mask)
    want, _ = tokenization.encode_right(critic, ["Is it Rome?"], 6, pad_id=0)
    np.testing.assert_array_equal(out_ids, want)
    assert np.asarray(out_ids)[0, 2] == critic.unk_token_id


def test_retokenize_bridge_for_unrelated_tokenizers(pair, mesh):
    gpt2, _ = pair
    word = tokenization.build_word_tokenizer(TEXTS)
    bridge = token_bridge.make_bridge(gpt2, word, critic_length=16)
    assert bridge.kind == "retokenize"
    ids, mask = tokenization.encode_left(gpt2, TEXTS, 40, pad_id=gpt2.pad_token_id)
    out_ids, out_mask = jax.jit(functools.partial(bridge, padding="left"))(*_sharded(mesh, ids, mask))
    want_ids, want_mask = tokenization.encode_left(word, TEXTS, 16, pad_id=word.pad_token_id)
    np.testing.assert_array_equal(out_ids, want_ids)
    np.testing.assert_array_equal(out_mask, want_mask)


def test_bridge_is_hashable_and_equal_by_content(pair):
    gpt2, roberta = pair
    a = token_bridge.make_bridge(gpt2, roberta, critic_length=8)
    b = token_bridge.make_bridge(gpt2, roberta, critic_length=8)
    c = token_bridge.make_bridge(gpt2, roberta, critic_length=9)
    assert a == b and hash(a) == hash(b) and a != c
    with pytest.raises(ValueError, match="identity"):
        token_bridge.make_bridge(gpt2, roberta, kind="identity")
