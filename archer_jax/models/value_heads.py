"""ArCHer's utterance-level double critic: one text encoder, two Q and two V heads.

The encoder (any family returning ``EncoderOutput``) embeds the observation and,
separately, the action into pooled vectors. Q heads read [obs; act] through an MLP
2d -> d -> d -> 1, V heads read obs through d -> d -> d -> 1 (ReLU between layers).
The param tree is {'encoder', 'q1', 'q2', 'v1', 'v2'}, so pretrained encoder weights
drop in at ``params['encoder']``.
"""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from archer_jax.models import layers


@flax.struct.dataclass
class CriticOutput:
    q1: jax.Array  # [B] float32, Q_1(s, a)
    q2: jax.Array
    v1: jax.Array  # [B] float32, V_1(s)
    v2: jax.Array


def _dense(features: int, names: tuple[str | None, str | None], name: str) -> nn.Dense:
    # Lecun-normal like nn.Dense's default: the heads start from scratch on top of a
    # pretrained encoder and should produce O(1) values from the first step.
    return nn.Dense(
        features,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), names[-1:]),
        name=name,
    )


class CausalEncoder(nn.Module):
    """A causal LM read as a text encoder: its final hidden states, pooled at the last
    real token (the only one that has seen the whole text).

    With the actor's own architecture this lets the critic start from the BC-trained
    actor, which already reads the task's text (``config.critic.kind = 'actor'``).
    """

    lm: nn.Module
    # A token's hidden state depends only on the tokens before it, so one pass over
    # [obs; act] also encodes obs alone (``DoubleCritic`` reads both from it).
    causal = True  # a class constant, not a module field

    @property
    def config(self):
        return self.lm.config

    def __call__(self, ids: jax.Array, mask: jax.Array) -> layers.EncoderOutput:
        # logits_start past the end: no vocabulary projection at all.
        hidden = self.lm(ids, mask, logits_start=ids.shape[1]).hidden
        last = jnp.argmax(jnp.where(mask, jnp.arange(ids.shape[1]), -1), axis=1)
        pooled = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
        return layers.EncoderOutput(hidden=hidden.astype(jnp.float32), pooled=pooled.astype(jnp.float32))


class ValueMLP(nn.Module):
    """in -> d -> d -> 1 with ReLU, returning [B] float32."""

    hidden_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(_dense(self.hidden_size, ("embed", "mlp"), "fc1")(x.astype(jnp.float32)))
        x = nn.relu(_dense(self.hidden_size, ("mlp", "embed"), "fc2")(x))
        return _dense(1, ("embed", None), "out")(x)[:, 0]


class DoubleCritic(nn.Module):
    """``__call__(obs_ids, obs_mask, act_ids, act_mask) -> CriticOutput`` ([B] each).

    ``values(obs_ids, obs_mask) -> (v1, v2)`` skips the action encoding (targets at s').
    Ids are in the encoder's vocabulary (the token bridge maps actor ids first).
    """

    encoder: nn.Module
    hidden_size: int
    # 'pooled': the encoder's pooled output (RoBERTa's pooler, as the reference reads);
    # 'mean': the mean of the real tokens' hidden states, an easier target for an
    # encoder trained from scratch, which must otherwise learn to gather the whole
    # conversation into its first token.
    pooling: str = "pooled"
    # False: Q reads [enc(obs); enc(act)], two separate encodings (the reference).
    # True: Q reads enc(obs ++ act), one encoding of the concatenation, so attention can
    # relate the utterance to the conversation (e.g. a guessed city to the facts heard);
    # far easier for a critic trained from scratch.
    joint: bool = False

    def setup(self) -> None:
        self.q1 = ValueMLP(self.hidden_size)
        self.q2 = ValueMLP(self.hidden_size)
        self.v1 = ValueMLP(self.hidden_size)
        self.v2 = ValueMLP(self.hidden_size)

    def _embed(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return self._pool(self.encoder(ids, mask), mask)

    def _pool(self, out: layers.EncoderOutput, mask: jax.Array) -> jax.Array:
        if self.pooling == "pooled":
            return out.pooled.astype(jnp.float32)
        weights = mask.astype(jnp.float32)[..., None]
        return jnp.sum(out.hidden.astype(jnp.float32) * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)

    def _embed_joint(self, obs_ids: jax.Array, obs_mask: jax.Array, act_ids: jax.Array,
                     act_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(enc(obs), enc(obs ++ act)). A causal encoder reads both from ONE pass over
        [obs (left-padded); act]: the obs columns' hidden states are those of obs alone
        (pooled at the last real obs token). Others encode twice."""
        ids = jnp.concatenate([obs_ids, act_ids], axis=1)
        mask = jnp.concatenate([obs_mask, act_mask], axis=1)
        if not getattr(self.encoder, "causal", False):
            return self._embed(obs_ids, obs_mask), self._embed(ids, mask)
        out = self.encoder(ids, mask)
        prompt = obs_ids.shape[1]
        hidden = out.hidden[:, :prompt]
        last = jnp.argmax(jnp.where(obs_mask, jnp.arange(prompt), -1), axis=1)
        obs_out = layers.EncoderOutput(hidden=hidden, pooled=jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0])
        return self._pool(obs_out, obs_mask), self._pool(out, mask)

    def values(self, obs_ids: jax.Array, obs_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        obs = self._embed(obs_ids, obs_mask)
        return self.v1(obs), self.v2(obs)

    def __call__(self, obs_ids: jax.Array, obs_mask: jax.Array, act_ids: jax.Array,
                 act_mask: jax.Array) -> CriticOutput:
        if self.joint:
            obs, obs_act = self._embed_joint(obs_ids, obs_mask, act_ids, act_mask)
        else:
            obs = self._embed(obs_ids, obs_mask)
            obs_act = jnp.concatenate([obs, self._embed(act_ids, act_mask)], axis=-1)
        return CriticOutput(q1=self.q1(obs_act), q2=self.q2(obs_act), v1=self.v1(obs), v2=self.v2(obs))


class TokenValue(nn.Module):
    """The token-level baseline of ArCHer's variant with one: V(s, a_<t) for every token
    t of an utterance, from one pass of a causal LM (the actor's architecture) over
    [obs (left-padded); action (right-padded)] and a linear head.

    ``__call__(obs_ids, obs_mask, act_ids, act_mask) -> [B, T]`` float32: column t reads
    the hidden state of the last token before a_t (obs's last column for t = 0), so it
    never sees a_t itself: subtracted from the utterance's value, it leaves the token's
    policy gradient unbiased.
    """

    lm: nn.Module

    @nn.compact
    def __call__(self, obs_ids: jax.Array, obs_mask: jax.Array, act_ids: jax.Array, act_mask: jax.Array) -> jax.Array:
        ids = jnp.concatenate([obs_ids, act_ids], axis=1)
        mask = jnp.concatenate([obs_mask, act_mask], axis=1)
        hidden = self.lm(ids, mask, logits_start=ids.shape[1]).hidden  # no vocabulary projection
        prompt, length = obs_ids.shape[1], act_ids.shape[1]
        before = hidden[:, prompt - 1:prompt - 1 + length].astype(jnp.float32)
        return _dense(1, ("embed", None), "head")(before)[..., 0]
