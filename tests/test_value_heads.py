"""The critic's encoders: a causal LM read as an encoder pools its last real token."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from archer_jax.models import gpt2, value_heads


def test_causal_encoder_pools_the_last_real_token_whatever_the_padding():
    lm = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2))
    encoder = value_heads.CausalEncoder(lm)
    tokens = jnp.array([[5, 6, 7, 8, 9]])
    params = encoder.init(jax.random.key(0), tokens, jnp.ones_like(tokens, bool))
    alone = encoder.apply(params, tokens, jnp.ones_like(tokens, bool))
    # [obs left-padded; action right-padded], as the joint critic concatenates them.
    padded = jnp.array([[0, 0, 5, 6, 7, 8, 9, 0]])
    mask = jnp.array([[0, 0, 1, 1, 1, 1, 1, 0]], bool)
    out = encoder.apply(params, padded, mask)
    np.testing.assert_allclose(out.pooled, alone.hidden[:, -1], atol=1e-5)
    np.testing.assert_allclose(out.hidden[:, 2:7], alone.hidden, atol=1e-5)


def test_double_critic_on_a_causal_encoder_scores_each_row():
    lm = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    critic = value_heads.DoubleCritic(encoder=value_heads.CausalEncoder(lm), hidden_size=16, joint=True)
    obs, obs_mask = jnp.array([[0, 3, 4], [3, 4, 5]]), jnp.array([[0, 1, 1], [1, 1, 1]], bool)
    act, act_mask = jnp.array([[7, 8], [7, 0]]), jnp.array([[1, 1], [1, 0]], bool)
    params = critic.init(jax.random.key(1), obs, obs_mask, act, act_mask)
    out = critic.apply(params, obs, obs_mask, act, act_mask)
    assert out.q1.shape == out.v2.shape == (2,)
    # Row 0 alone gives the same values: rows do not see each other.
    alone = critic.apply(params, obs[:1], obs_mask[:1], act[:1], act_mask[:1])
    np.testing.assert_allclose(alone.q1, out.q1[:1], atol=1e-5)
    np.testing.assert_allclose(alone.v1, out.v1[:1], atol=1e-5)


def test_joint_critic_on_a_causal_encoder_reads_v_and_q_from_one_pass_exactly():
    """One pass over [obs; act] gives the V of obs alone (what ``values`` computes from
    obs only) and the Q of the concatenation, for either pooling and any padding."""
    lm = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2))
    obs = jnp.array([[0, 0, 3, 4, 9], [3, 4, 5, 6, 7], [0, 0, 0, 0, 8]])
    obs_mask = obs > 0
    act, act_mask = jnp.array([[7, 8, 0], [7, 0, 0], [2, 3, 4]]), jnp.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    for pooling in ("pooled", "mean"):
        critic = value_heads.DoubleCritic(encoder=value_heads.CausalEncoder(lm), hidden_size=16, joint=True,
                                          pooling=pooling)
        params = critic.init(jax.random.key(2), obs, obs_mask, act, act_mask)
        encodings = []

        def count(next_fun, args, kwargs, context):
            if isinstance(context.module, value_heads.CausalEncoder) and context.method_name == "__call__":
                encodings.append(args[0].shape)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(count):
            out = critic.apply(params, obs, obs_mask, act, act_mask)
        assert encodings == [(3, 8)]  # the encoder ran once, over [obs; act]
        v1, v2 = critic.apply(params, obs, obs_mask, method="values")
        np.testing.assert_allclose(out.v1, v1, atol=1e-5)
        np.testing.assert_allclose(out.v2, v2, atol=1e-5)
        # Q is the head on the concatenation's own encoding.
        ids, mask = jnp.concatenate([obs, act], 1), jnp.concatenate([obs_mask, act_mask], 1)
        joint = critic.apply(params, ids, mask, method=lambda m, i, k: m.q1(m._embed(i, k)))
        np.testing.assert_allclose(out.q1, joint, atol=1e-5)
