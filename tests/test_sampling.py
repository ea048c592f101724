"""sampling.generate: cached generation equals uncached, stops at the terminator,
treats padding correctly and samples reproducibly."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from archer_jax import sampling
from archer_jax.models import gpt2, llama

VOCAB, STOP, PAD = 40, 3, 0


def _model(kind):
    if kind == "gpt2":
        module = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2,
                                                      n_head=4))
    else:
        module = llama.LlamaForCausalLM(llama.LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False))
    ids = jnp.ones((1, 4), jnp.int32)
    params = module.init(jax.random.key(0), ids, ids)["params"]
    return module, params


def _prompts():
    ids = np.array([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [0, 0, 0, 0, 20, 21]], np.int32)
    return ids, (np.arange(6)[None, :] >= np.array([[2], [0], [4]])).astype(bool)


def _greedy_uncached(module, params, ids, mask, steps):
    """Argmax decoding with a full forward over the whole sequence at every step (jitted:
    one small program per length, not hundreds of eagerly compiled ops per step)."""
    ids, mask, out = jnp.asarray(ids), jnp.asarray(mask), []
    last_logits = jax.jit(lambda p, i, m: module.apply({"params": p}, i, m).logits[:, -1])
    for _ in range(steps):
        logits = last_logits(params, ids, mask)
        token = jnp.argmax(logits, -1).astype(jnp.int32)
        out.append(token)
        ids = jnp.concatenate([ids, token[:, None]], 1)
        mask = jnp.concatenate([mask, jnp.ones_like(mask[:, :1])], 1)
    return np.stack(out, 1)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_greedy_generation_equals_uncached_argmax(kind):
    module, params = _model(kind)
    ids, mask = _prompts()
    gen = jax.jit(partial(sampling.generate, module, max_new_tokens=7, stop_ids=(), pad_id=PAD))(
        params, ids, mask, jax.random.key(1), 0.0)
    np.testing.assert_array_equal(np.asarray(gen.tokens), _greedy_uncached(module, params, ids, mask, 7))
    assert np.asarray(gen.mask).all()


def test_rows_stop_at_the_terminator_and_pad_after():
    module, params = _model("gpt2")
    ids, mask = _prompts()
    free = _greedy_uncached(module, params, ids, mask, 8)
    stop = int(free[0, 2])  # make row 0's third token the terminator
    gen = jax.jit(partial(sampling.generate, module, max_new_tokens=8, stop_ids=(stop,), pad_id=PAD))(
        params, ids, mask, jax.random.key(1), 0.0)
    tokens, valid = np.asarray(gen.tokens), np.asarray(gen.mask)
    for row in range(3):
        hits = np.flatnonzero(free[row] == stop)
        end = hits[0] + 1 if hits.size else 8  # the terminator itself is part of the utterance
        np.testing.assert_array_equal(tokens[row, :end], free[row, :end])
        assert valid[row, :end].all() and not valid[row, end:].any()
        assert (tokens[row, end:] == PAD).all()
    assert np.all(np.asarray(gen.logprobs)[~valid] == 0.0)


def test_padding_does_not_change_a_row():
    module, params = _model("gpt2")
    ids, mask = _prompts()
    run = jax.jit(partial(sampling.generate, module, max_new_tokens=5, stop_ids=(STOP,), pad_id=PAD))
    batched = run(params, ids, mask, jax.random.key(1), 0.0)
    alone = run(params, ids[2:, 4:], mask[2:, 4:], jax.random.key(1), 0.0)
    np.testing.assert_array_equal(np.asarray(batched.tokens)[2], np.asarray(alone.tokens)[0])


def test_sampling_is_reproducible_and_logprobs_are_the_policy():
    module, params = _model("llama")
    ids, mask = _prompts()
    run = jax.jit(partial(sampling.generate, module, max_new_tokens=6, stop_ids=(), pad_id=PAD))
    a = run(params, ids, mask, jax.random.key(7), 1.0)
    b = run(params, ids, mask, jax.random.key(7), 1.0)
    c = run(params, ids, mask, jax.random.key(8), 1.0)
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
    # Recompute log pi of the sampled tokens with one full forward.
    full_ids = jnp.concatenate([jnp.asarray(ids), a.tokens], 1)
    full_mask = jnp.concatenate([jnp.asarray(mask), a.mask], 1)
    logits = module.apply({"params": params}, full_ids, full_mask).logits[:, 5:-1]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), a.tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(a.logprobs), np.asarray(logp), atol=1e-5)


def test_per_row_temperatures_mix_greedy_and_sampled_rows():
    """Rows at temperature 0 decode greedily and the others sample exactly as an
    all-sampled call with the same key would: one compiled call serves both."""
    module, params = _model("gpt2")
    ids, mask = _prompts()
    run = jax.jit(partial(sampling.generate, module, max_new_tokens=6, stop_ids=(STOP,), pad_id=PAD))
    key = jax.random.key(3)
    mixed = run(params, ids, mask, key, np.array([0.0, 1.0, 0.0], np.float32))
    greedy = run(params, ids, mask, key, np.zeros(3, np.float32))
    sampled = run(params, ids, mask, key, np.ones(3, np.float32))
    tokens = np.asarray(mixed.tokens)
    np.testing.assert_array_equal(tokens[[0, 2]], np.asarray(greedy.tokens)[[0, 2]])
    np.testing.assert_array_equal(tokens[1], np.asarray(sampled.tokens)[1])
    assert run._cache_size() == 1
