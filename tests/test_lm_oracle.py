"""LM oracles (envs.lm_oracle) and the reference-checkpoint converter
(models.convert_reference_oracle).

The oracle tests need no torch but one: the comparison with Hugging Face's PyTorch
``generate``. It and the converter tests build PyTorch T5s; they run in CI (.ci/run
installs the CPU torch wheel, a test-only dependency) and are skipped without torch.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import AutoTokenizer

from archer_jax import sharding, tasks
from archer_jax.envs import guess_city, lm_oracle
from archer_jax.envs.question_game import BatchedQuestionGame
from archer_jax.models import convert_reference_oracle as convert_lib
from archer_jax.models import hf_loading, registry, t5

CITY = tasks.get("guess_city").oracle_format
TWENTY_Q = tasks.get("twenty_questions").oracle_format
HIDDEN = ["Paris", "Tokyo", "Dog", "Soccer ball", "Cairo", "Airplane;Plane", "Chicago", "Piano", "Lima"]
QUESTIONS = ["Is it hot?", "Is the city on the coast of a very large ocean with many islands around it?", "Yes?",
             "Is it an animal?", "Which continent is it in?", "Can it fly?", "What language do people speak?",
             "Is it loud?", "Is it in South America?"]


@pytest.fixture(scope="module")
def tokenizer_files(hf_fixtures: Path) -> Path:
    return hf_fixtures / "t5_tokenizer"


@pytest.fixture(scope="module")
def oracle_folder(hf_fixtures: Path, tokenizer_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The t5 fixture's weights with the fixture tokenizer: a complete oracle folder."""
    folder = tmp_path_factory.mktemp("oracle") / "t5"
    shutil.copytree(hf_fixtures / "t5", folder)
    for f in tokenizer_files.iterdir():
        shutil.copy(f, folder)
    return folder


@pytest.fixture(scope="module")
def random_t5() -> tuple[t5.T5ForConditionalGeneration, dict]:
    """A random tiny T5 (smaller than the fixture) whose greedy replies vary with the
    input, over the fixture tokenizer's ids."""
    config = t5.T5Config(vocab_size=100, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_decoder_layers=2,
                         num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                         feed_forward_proj="gated-gelu", tie_word_embeddings=False, scale_decoder_outputs=False)
    module = t5.T5ForConditionalGeneration(config)
    ids = jnp.zeros((1, 4), jnp.int32)
    params = jax.jit(module.init)(jax.random.key(3), ids, jnp.ones_like(ids), ids[:, :2])["params"]
    return module, params


def _oracle(random_t5, tokenizer_files: Path, fmt: lm_oracle.OracleFormat = CITY, **kw) -> lm_oracle.LMOracle:
    module, params = random_t5
    return lm_oracle.LMOracle(module, params, AutoTokenizer.from_pretrained(str(tokenizer_files)), fmt,
                              **({"max_new_tokens": 8} | kw))


# ------------------------------------------------------------------ prompts, post-processing
def test_prompts_are_the_reference_ones() -> None:
    # The reference concatenates without a space; 20Q uses the first synonym, lower-cased.
    assert TWENTY_Q.prompt("Soccer ball", "Is it round?") == "The object is soccer ball.Is it round?"
    assert TWENTY_Q.prompt("Airplane;Plane", "Can it fly?") == "The object is airplane.Can it fly?"
    assert tasks.get("twenty_questions_subset").oracle_format == TWENTY_Q
    assert CITY.prompt("Paris", "Is it hot?") == "Your home town is Paris.Is it hot?"
    assert CITY.prompt("Seoul, South Korea", "Is it big?") == "Your home town is Seoul, South Korea.Is it big?"
    # The reference's answer lengths.
    assert (TWENTY_Q.max_new_tokens, CITY.max_new_tokens) == (16, 64)


@pytest.mark.parametrize("decoded, expected", [
    ("Yes.", "Yes."), ("yes, it is", "Yes."), ("No.", "No."), ("NO!", "No."), ("Yes and no.", "Yes."),
    ("Invalid Question.", "Invalid Question."), ("", "Invalid Question."), ("Maybe.", "Invalid Question."),
    # Whole words only: the reference's substring test read these as "No." and "Yes.".
    ("I don't know.", "Invalid Question."), ("It has eyes.", "Invalid Question."),
])
def test_twenty_questions_normalisation(decoded: str, expected: str) -> None:
    assert TWENTY_Q.postprocess("Dog", decoded) == expected


def test_guess_city_never_reveals_the_city() -> None:
    cant = guess_city.CANT_ANSWER
    assert CITY.postprocess("Paris", "My home town is Paris.") == cant
    assert CITY.postprocess("Paris", "  It lies on the Seine river. ") == "It lies on the Seine river."
    # Case, accents and aliases of the table's cities count.
    assert CITY.postprocess("Paris", "paris is lovely") == cant
    assert CITY.postprocess("São Paulo", "I love Sao Paulo.") == cant
    assert CITY.postprocess("New York City", "People call it the Big Apple.") == cant
    # A reference-style item outside the table: the part before the comma, whole words.
    assert CITY.postprocess("Seoul, South Korea", "Seoul is huge.") == cant
    assert CITY.postprocess("Seoul, South Korea", "It is in South Korea.") == "It is in South Korea."
    assert CITY.postprocess("Cali, Colombia", "It is not in California.") == "It is not in California."


# ------------------------------------------------------------------ batched decoding
def test_batched_answers_equal_one_by_one(random_t5, tokenizer_files: Path) -> None:
    for fmt in (CITY, TWENTY_Q):
        oracle = _oracle(random_t5, tokenizer_files, fmt)
        prompts = [fmt.prompt(h, q) for h, q in zip(HIDDEN, QUESTIONS)]
        batched = oracle.generate(prompts)
        assert batched == [oracle.generate([p])[0] for p in prompts]
        assert oracle.answer(HIDDEN, QUESTIONS) == [fmt.postprocess(h, r) for h, r in zip(HIDDEN, batched)]
    assert len(set(batched)) > 3, batched  # the replies differ, so rows cannot have been mixed up
    assert oracle.answer([], []) == []
    with pytest.raises(ValueError, match="2 hidden items but 1 questions"):
        oracle.answer(["Dog", "Cat"], ["Is it big?"])


def test_buckets_avoid_recompiles(random_t5, tokenizer_files: Path) -> None:
    assert [lm_oracle.batch_bucket(n, 8) for n in (1, 8, 9, 17)] == [8, 8, 16, 32]
    assert lm_oracle.batch_bucket(5, 1, multiple=6) == 12
    assert [lm_oracle.length_bucket(n, 128) for n in (3, 16, 17, 100, 128)] == [16, 16, 32, 128, 128]
    assert lm_oracle.length_bucket(90, 96) == 96

    oracle = _oracle(random_t5, tokenizer_files, max_new_tokens=5)
    oracle.answer(HIDDEN[:3], ["Is it hot?", "Is it big?", "Is it old?"])
    compiled = t5.greedy_generate._cache_size()
    # Other batch sizes and prompt lengths in the same buckets reuse the program.
    oracle.answer(HIDDEN[:5], ["Is it hot?", "Is it big?", "Is it old?", "Is it?", "Hot?"])
    oracle.answer(HIDDEN[:1], ["Is it in Asia?"])
    assert t5.greedy_generate._cache_size() == compiled
    oracle.answer(HIDDEN, ["Is it hot?"] * len(HIDDEN))  # 9 rows: the next bucket
    assert t5.greedy_generate._cache_size() == compiled + 1

    # Prompts beyond max_prompt_len lose their end, so the shape stays bounded.
    short = _oracle(random_t5, tokenizer_files, max_new_tokens=5, max_prompt_len=24)
    long_question = "Is it " + "very " * 40 + "hot?"
    assert len(short.tokenizer(CITY.prompt("Paris", long_question))["input_ids"]) > 24
    assert short.answer(["Paris"], [long_question]) == short.answer(["Paris"], [long_question + " Really?"])


def test_sharded_oracle_answers_the_same(random_t5, tokenizer_files: Path) -> None:
    module, params = random_t5
    mesh = sharding.make_mesh((2, 2, 2))
    abstract = registry.abstract_params(t5.FAMILY, module.config)
    sharded = jax.device_put(params, sharding.tree_shardings(abstract, mesh, sharding.DEFAULT_RULES))
    oracle = lm_oracle.LMOracle(module, sharded, AutoTokenizer.from_pretrained(str(tokenizer_files)), CITY,
                                max_new_tokens=8, min_batch=2, mesh=mesh)
    assert oracle.answer(HIDDEN, QUESTIONS) == _oracle(random_t5, tokenizer_files).answer(HIDDEN, QUESTIONS)


# ------------------------------------------------------------------ the factory
def test_make_lm_oracle_from_a_folder(oracle_folder: Path) -> None:
    oracle = lm_oracle.make_lm_oracle(TWENTY_Q, str(oracle_folder))
    assert oracle.max_new_tokens == 16
    oracle = lm_oracle.make_lm_oracle(CITY, str(oracle_folder), max_new_tokens=4, dtype="bfloat16")
    assert oracle.params["shared"]["embedding"].dtype == jnp.bfloat16
    # The game calls it once per step for its unfinished rows.
    game = BatchedQuestionGame(guess_city.guess_city_task().with_oracle(oracle), batch_size=3)
    game.reset([0, 1, 2])
    observations, rewards, _ = game.step(["Is it hot?", "Is it big?", "Is it old?"])
    assert all(o.startswith("Questions:\nIs it ") for o in observations) and list(rewards) == [-1, -1, -1]
    assert game.oracle_failures == 0


@pytest.mark.parametrize("task", ["twenty_questions", "guess_city"])
def test_answers_are_the_pytorch_models_greedy_replies(oracle_folder: Path, task: str) -> None:
    """Prompt, tokenization, bucketed batched decoding and post-processing against Hugging
    Face's PyTorch T5 ``generate`` on the same folder."""
    torch = pytest.importorskip("torch")
    import transformers

    fmt = tasks.get(task).oracle_format
    oracle = lm_oracle.make_lm_oracle(fmt, str(oracle_folder), max_new_tokens=12)
    tokenizer = AutoTokenizer.from_pretrained(str(oracle_folder))
    model = transformers.T5ForConditionalGeneration.from_pretrained(str(oracle_folder)).eval()
    batch = tokenizer([fmt.prompt(h, q) for h, q in zip(HIDDEN, QUESTIONS)], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=1)
    replies = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert len(set(replies)) > 3, replies  # the fixture T5 copies its input, roughly: replies differ
    assert oracle.generate([fmt.prompt(h, q) for h, q in zip(HIDDEN, QUESTIONS)]) == replies
    assert oracle.answer(HIDDEN, QUESTIONS) == [fmt.postprocess(h, r) for h, r in zip(HIDDEN, replies)]


def test_make_lm_oracle_errors(oracle_folder: Path, hf_fixtures: Path, tmp_path: Path) -> None:
    with pytest.raises(hf_loading.CheckpointError, match=f"{tmp_path}/missing: no such model folder"):
        lm_oracle.make_lm_oracle(CITY, str(tmp_path / "missing"))
    with pytest.raises(hf_loading.CheckpointError, match="t5: no tokenizer .*convert_reference_oracle --base"):
        lm_oracle.make_lm_oracle(CITY, str(hf_fixtures / "t5"))
    with pytest.raises(hf_loading.CheckpointError, match="model_type 'gpt2'; an LM oracle needs a T5"):
        lm_oracle.make_lm_oracle(CITY, str(hf_fixtures / "gpt2"))
    with pytest.raises(ValueError, match="max_new_tokens=0 must be positive"):
        lm_oracle.make_lm_oracle(CITY, str(oracle_folder), max_new_tokens=0)


# ------------------------------------------------------------------ the converter
def _torch_t5(tied: bool):
    torch = pytest.importorskip("torch")
    import transformers

    config = transformers.T5Config(
        vocab_size=100, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=128,
        feed_forward_proj="relu" if tied else "gated-gelu", tie_word_embeddings=tied,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    if not tied:
        # transformers 5 ties every T5 head; flan-t5 (and the reference's oracles, saved
        # by transformers 4) has its own lm_head.weight.
        model.lm_head.weight = torch.nn.Parameter(torch.randn(config.vocab_size, config.d_model))
    return torch, model


def _assert_same_logits(torch, model, folder: Path) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 100, (2, 7))
    mask = np.ones_like(ids)
    mask[0, -3:] = 0
    dec = np.concatenate([np.zeros((2, 1), np.int64), rng.integers(3, 100, (2, 4))], axis=1)
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                         decoder_input_ids=torch.tensor(dec)).logits.numpy()
    loaded = registry.load_pretrained(str(folder))
    logits = jax.jit(loaded.module.apply)({"params": loaded.params}, ids, mask, dec)
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("tied", [False, True], ids=["flan_t5", "t5_tied"])
def test_converter_round_trip(tied: bool, tokenizer_files: Path, tmp_path: Path, capsys) -> None:
    torch, model = _torch_t5(tied)
    # As a training wrapper saves it: prefixed names, other entries beside the weights.
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    pt = tmp_path / "oracle.pt"
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}}, pt)

    base = tmp_path / "base"
    model.config.save_pretrained(base)
    shutil.copytree(tokenizer_files, base, dirs_exist_ok=True)
    assert convert_lib.main([str(pt), "--out", str(tmp_path / "with_base"), "--base", str(base)]) == 0
    _assert_same_logits(torch, model, tmp_path / "with_base")
    assert convert_lib.tokenizer_note(tmp_path / "with_base") is None
    oracle = lm_oracle.make_lm_oracle(TWENTY_Q, str(tmp_path / "with_base"), max_new_tokens=3)
    assert len(oracle.answer(["Dog"], ["Is it an animal?"])) == 1

    # Without --base the config comes from the shapes; the tokenizer must be added.
    capsys.readouterr()
    assert convert_lib.main([str(pt), "--out", str(tmp_path / "inferred")]) == 0
    assert "has no tokenizer" in capsys.readouterr().err
    _assert_same_logits(torch, model, tmp_path / "inferred")
    with pytest.raises(hf_loading.CheckpointError, match="no tokenizer"):
        lm_oracle.make_lm_oracle(CITY, str(tmp_path / "inferred"))


def test_converter_errors(hf_fixtures: Path, tmp_path: Path, capsys) -> None:
    torch, model = _torch_t5(tied=False)
    with pytest.raises(hf_loading.CheckpointError, match=f"{tmp_path}/none.pt: no such file"):
        convert_lib.convert(tmp_path / "none.pt", tmp_path / "out")

    pt = tmp_path / "bad.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, pt)
    assert convert_lib.main([str(pt), "--out", str(tmp_path / "out")]) == 1
    assert f"{pt}: no 'model_state_dict' key (found: ['epoch', 'state_dict'])" in capsys.readouterr().err

    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(3, 4)}}, pt)
    with pytest.raises(hf_loading.CheckpointError, match=f"{pt}: the tensors do not form a T5 model"):
        convert_lib.convert(pt, tmp_path / "out")

    # Against the config of another size (the t5 fixture: 2 decoder layers, d_ff 48):
    state = model.state_dict()
    state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"] = torch.zeros(5, 32)
    torch.save({"model_state_dict": state}, pt)
    with pytest.raises(hf_loading.CheckpointError, match=r"(?s)bad.pt: not the T5 of the config .*"
                       r"unexpected tensors \(\d+\): decoder\.block\.2\..*mis-shaped"):
        convert_lib.convert(pt, tmp_path / "out", base=str(hf_fixtures / "t5"))
    assert not (tmp_path / "out").exists()  # nothing written on a failed check


def test_converter_without_torch(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[reference\]'"):
        convert_lib.convert(tmp_path / "oracle.pt", tmp_path / "out")
