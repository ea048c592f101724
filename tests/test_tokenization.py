"""Fixed-shape encoding (left / right), terminator cuts, and the demo word tokenizer."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from archer_jax.data import tokenization
from archer_jax.models import registry

CORPUS = [
    "Is the city in Europe?\nNo.",
    "Is it Paris?\nYes, it is.",
    "Does the city's name start with a letter between A and M?\nI don't know.",
    "Is the population above 3.5 million?\nYes.\n\nGreat (I think), thanks!",
    "Is it man-made?\nNo.",
]


@pytest.fixture(scope="module")
def word_tok():
    return tokenization.build_word_tokenizer(CORPUS)


@pytest.fixture(scope="module")
def bpe_tok(hf_fixtures):
    return registry.load_tokenizer(str(hf_fixtures / "gpt2"))


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_encode_left_pads_left_and_keeps_the_tail(bpe_tok):
    texts = [CORPUS[0], CORPUS[2], "", "Paris"]
    ids, mask = tokenization.encode_left(bpe_tok, texts, 8, pad_id=bpe_tok.pad_token_id)
    assert ids.shape == mask.shape == (4, 8) and ids.dtype == np.int32 and mask.dtype == bool
    for row, m, text in zip(ids, mask, texts):
        full = _ids(bpe_tok, text)
        kept = full[-8:]
        assert row[m].tolist() == kept  # the most recent tokens
        assert m.tolist() == [False] * (8 - len(kept)) + [True] * len(kept)  # real tokens end in the last slot
        assert (row[~m] == bpe_tok.pad_token_id).all()
    assert len(_ids(bpe_tok, CORPUS[2])) > 8  # really truncated
    assert bpe_tok.decode(ids[1][mask[1]]).endswith("know.")


def test_encode_right_pads_right_and_appends(bpe_tok):
    newline = _ids(bpe_tok, "\n")
    texts = ["Is it Paris?", CORPUS[2]]
    ids, mask = tokenization.encode_right(bpe_tok, texts, 10, pad_id=bpe_tok.pad_token_id, append_ids=newline)
    first = _ids(bpe_tok, texts[0]) + newline
    assert ids[0, : len(first)].tolist() == first
    assert mask[0].tolist() == [True] * len(first) + [False] * (10 - len(first))
    assert (ids[0, len(first):] == bpe_tok.pad_token_id).all()
    assert ids[1].tolist() == _ids(bpe_tok, texts[1])[:10] and mask[1].all()  # head kept, no terminator


def test_special_tokens_only_when_asked(word_tok):
    ids, mask = tokenization.encode_right(word_tok, ["Is it"], 4, pad_id=0)
    assert mask[0].tolist() == [True, True, False, False]


def test_decode_cuts_at_the_first_terminator(bpe_tok):
    texts = ["Is it Paris?\nYes.\nNo", "no terminator here"]
    ids, mask = tokenization.encode_right(bpe_tok, texts, 24, pad_id=bpe_tok.pad_token_id,
                                          append_ids=[bpe_tok.eos_token_id])
    assert tokenization.decode_utterances(bpe_tok, ids, mask, "\n") == ["Is it Paris?", "no terminator here"]


def test_word_tokenizer_round_trip(word_tok):
    assert word_tok.pad_token_id == 0 and word_tok.unk_token == "<unk>" and word_tok.eos_token == "<eos>"
    assert word_tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "<unk>", "<eos>"]
    assert "\n" in word_tok.get_vocab()
    for text in CORPUS:
        ids = _ids(word_tok, text)
        assert 1 not in ids  # no unknowns on its own corpus
        assert word_tok.decode(ids) == text
    assert word_tok.convert_ids_to_tokens(_ids(word_tok, "Is it Paris?\nYes.")) == [
        "Is", "it", "Paris", "?", "\n", "Yes", "."]
    # Hyphenated words come back whole (the 20Q oracle reads "man-made", not "man - made").
    assert word_tok.decode(_ids(word_tok, "Is it man-made?")) == "Is it man-made?"
    # Spacing outside the decoder's rules is normalised; unseen words become <unk>.
    assert word_tok.decode(_ids(word_tok, "Is  it Paris ?")) == "Is it Paris?"
    assert _ids(word_tok, "Is it Rome?")[2] == word_tok.unk_token_id


def test_word_tokenizer_vocab_size_and_min_count():
    tok = tokenization.build_word_tokenizer(CORPUS, vocab_size=10)
    assert len(tok) == 10
    rare = tokenization.build_word_tokenizer(CORPUS, min_count=2)
    assert "Paris" not in rare.get_vocab() and "Is" in rare.get_vocab()


def test_word_tokenizer_save_load_keeps_ids(word_tok, tmp_path):
    word_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded.get_vocab() == word_tok.get_vocab()
    assert (loaded.pad_token_id, loaded.unk_token_id, loaded.eos_token_id) == (0, 1, 2)
    for text in CORPUS:
        assert _ids(loaded, text) == _ids(word_tok, text)
        assert loaded.decode(_ids(loaded, text)) == text
    # Deterministic: the same corpus gives the same ids.
    assert tokenization.build_word_tokenizer(CORPUS).get_vocab() == word_tok.get_vocab()


def test_word_tokenizer_keeps_marks_whole():
    page = "[Back to Search] [SEP] size [SEP] [[large]] [SEP] [small] [SEP] click [large]"
    tok = tokenization.build_word_tokenizer([page], marks=("[SEP]", "[[", "]]"))
    assert tok.convert_ids_to_tokens(_ids(tok, page)) == [
        "[", "Back", "to", "Search", "]", "[SEP]", "size", "[SEP]", "[[", "large", "]]", "[SEP]", "[", "small", "]",
        "[SEP]", "click", "[", "large", "]"]
    assert tok.decode(_ids(tok, page)) == page
    assert len(_ids(tokenization.build_word_tokenizer([page]), page)) == len(_ids(tok, page)) + 2 * 4 + 2
    with pytest.raises(ValueError, match="without spaces"):
        tokenization.build_word_tokenizer([page], marks=("[ SEP ]",))


def test_an_actor_template_is_its_two_sides_ids(word_tok):
    template = tokenization.prompt_template(word_tok, "Is it Paris?\n{obs}\nYes.", pad_id=0)
    assert template.prefix == tuple(_ids(word_tok, "Is it Paris?\n"))
    assert template.suffix == tuple(_ids(word_tok, "\nYes."))
    assert len(template) == len(template.prefix) + len(template.suffix) and template.widen((4, 9)) == (
        4 + len(template), 9 + len(template))
    assert tokenization.prompt_template(word_tok, "", pad_id=3) == tokenization.PromptTemplate(pad_id=3)
    assert tokenization.prompt_template(word_tok, "{obs}", pad_id=0) == tokenization.PromptTemplate()
    for bad in ("no slot", "{obs} {obs}"):
        with pytest.raises(ValueError, match="holds '{obs}' exactly once"):
            tokenization.prompt_template(word_tok, bad, pad_id=0)
