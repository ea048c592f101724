"""Rows grouped by length (archer_jax/length_buckets.py): the same numbers as one call on
the whole batch, in the model calls, their gradients, greedy generation and the jitted
phases that use them, on one device and on a mesh. And the actor's template
(``ArcherHParams.prompt``) around the observations of those calls: the same numbers as
the framed observations written out by hand."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from archer_jax import length_buckets, replay, sampling, sharding, train_state
from archer_jax.algorithms import archer, bc, ppo
from archer_jax.data.tokenization import PromptTemplate
from archer_jax.models.gpt2 import GPT2Config, GPT2LMHeadModel
from archer_jax.models.roberta import RobertaConfig, RobertaModel
from archer_jax.models.value_heads import CausalEncoder, DoubleCritic, TokenValue

OBS, ACT, VOCAB, PAD, STOP, ROWS = 24, 5, 40, 0, 2, 16
BUCKETS = (12,)  # two widths: 12 and the full 24
ACTOR = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=40, n_embd=16, n_layer=1, n_head=2))
ROBERTA_CRITIC = DoubleCritic(
    RobertaModel(RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=40)), hidden_size=16, pooling="mean")
ACTOR_CRITIC = DoubleCritic(CausalEncoder(ACTOR), hidden_size=16, joint=True)  # the demos' critic
TX = train_state.make_optimizer(1e-3, max_grad_norm=1.0)


def transitions(n: int, seed: int) -> replay.Transitions:
    """Observations of 1..OBS tokens (some rows with a masked gap, as a privileged
    critic's hidden text and observation), actions of 1..ACT tokens."""
    rng = np.random.default_rng(seed)

    def left(lengths):
        mask = np.arange(OBS)[None] >= (OBS - lengths)[:, None]
        gap = np.flatnonzero((rng.random(n) < 0.3) & (lengths >= 3))
        mask[gap, OBS - lengths[gap] + 1] = False  # a masked column inside the span
        return mask

    obs_len = rng.integers(1, OBS + 1, n)
    obs_mask, next_mask = left(obs_len), left(np.minimum(obs_len + 4, OBS))
    act_mask = np.arange(ACT)[None] < rng.integers(1, ACT + 1, n)[:, None]
    ids = lambda m: jnp.asarray(np.where(m, rng.integers(3, VOCAB, m.shape), PAD), jnp.int32)  # noqa: E731
    return replay.Transitions(obs=ids(obs_mask), obs_mask=jnp.asarray(obs_mask), action=ids(act_mask),
                              action_mask=jnp.asarray(act_mask), next_obs=ids(next_mask),
                              next_obs_mask=jnp.asarray(next_mask), reward=jnp.asarray(rng.random(n), jnp.float32),
                              done=jnp.asarray(rng.random(n) < 0.3), mc_return=jnp.zeros((n,), jnp.float32),
                              episode_return=jnp.zeros((n,), jnp.float32), turn=jnp.zeros((n,), jnp.int32))


def close(a, b, atol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5)


def test_spans_and_widths():
    mask = jnp.asarray([[0, 0, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 1]], bool)
    assert length_buckets.spans(mask).tolist() == [2, 0, 4, 1]  # a gap counts: the span starts at the first token
    assert length_buckets.widths((8, 2, 2, 30, 0), 16) == (2, 8, 16)
    assert length_buckets.widths((16, 20), 16) == (16,)


def test_the_critic_and_its_gradient_equal_one_call():
    """A RoBERTa critic pooling the mean of its real tokens (the demos' joint critic on the
    actor's encoder: the phase test below)."""
    critic, chunks = ROBERTA_CRITIC, 4
    batch = transitions(ROWS, seed=1)
    params = critic.init(jax.random.key(0), batch.obs, batch.obs_mask, batch.action, batch.action_mask)["params"]

    def loss(p, buckets):
        out = archer.critic_apply(critic, p, batch.obs, batch.obs_mask, batch.action, batch.action_mask,
                                  buckets=buckets, chunks=chunks)
        v1, v2 = archer.critic_values(critic, p, batch.next_obs, batch.next_obs_mask, buckets=buckets, chunks=chunks)
        return jnp.sum(out.q1 * batch.reward + out.q2 - out.v1 ** 2 + v1 * v2), (out, v1, v2)

    plain, grads = jax.jit(jax.value_and_grad(lambda p: loss(p, ()), has_aux=True))(params)
    grouped, grouped_grads = jax.jit(jax.value_and_grad(lambda p: loss(p, BUCKETS), has_aux=True))(params)
    close(grouped, plain)
    close(grouped_grads, grads)


def test_the_probe_scores_in_groups_equal_one_call():
    """``archer.critic_scores`` (the rollout probe) in groups of rows, at their length
    buckets or at the full width: the scores of one call on every row, row for row."""
    critic, batch, chunks = ACTOR_CRITIC, transitions(ROWS, seed=3), 4
    params = critic.init(jax.random.key(0), batch.obs, batch.obs_mask, batch.action, batch.action_mask)["params"]

    @functools.partial(jax.jit, static_argnames=("buckets", "chunks"))
    def scores(p, buckets, chunks):
        state = train_state.ArcherState(step=0, rng=None, actor_params=None, actor_opt_state=None, critic_params=p,
                                        critic_opt_state=None, target_critic_params=None)
        return archer.critic_scores(state, batch, critic=critic, bridge=lambda i, m: (i, m), buckets=buckets,
                                    chunks=chunks)

    plain = scores(params, (), 1)
    close(scores(params, BUCKETS, chunks), plain)
    close(scores(params, (), chunks), plain)
    # in_groups: consecutive rows, gcd(chunks, B) groups, the rows' order kept.
    x = jnp.arange(12.0).reshape(6, 2)
    assert length_buckets.in_groups(lambda r: (r * 2, r.sum(1)), (x,), 4)[1].tolist() == x.sum(1).tolist()


def test_action_logits_and_greedy_generation_equal_one_call():
    batch = transitions(ROWS, seed=2)
    params = ACTOR.init(jax.random.key(1), batch.obs, batch.obs_mask)["params"]
    logits = jax.jit(lambda p, buckets: archer.action_logits(ACTOR, p, batch.obs, batch.obs_mask, batch.action,
                                                             batch.action_mask, buckets=buckets, chunks=4),
                     static_argnums=1)
    close(logits(params, BUCKETS), logits(params, ()))
    chunks_3 = jax.jit(lambda p: archer.action_logits(ACTOR, p, batch.obs, batch.obs_mask, batch.action,
                                                      batch.action_mask, buckets=BUCKETS, chunks=3))
    close(chunks_3(params), logits(params, ()))  # 3 does not divide 16 rows: gcd(3, 16) = 1 group

    def greedy(buckets):
        return jax.jit(lambda p: length_buckets.generate(ACTOR, p, batch.obs, batch.obs_mask, jax.random.key(3), 0.0,
                                                         max_new_tokens=ACT, stop_ids=(STOP,), pad_id=PAD,
                                                         buckets=buckets, chunks=4))(params)

    plain = jax.jit(lambda p: sampling.generate(ACTOR, p, batch.obs, batch.obs_mask, jax.random.key(3), 0.0,
                                                max_new_tokens=ACT, stop_ids=(STOP,), pad_id=PAD))(params)
    grouped = greedy(BUCKETS)
    np.testing.assert_array_equal(grouped.tokens, plain.tokens)
    np.testing.assert_array_equal(grouped.mask, plain.mask)
    close(grouped.logprobs, plain.logprobs)
    assert greedy(()).tokens.tolist() == plain.tokens.tolist()  # no bucket below the width: the plain call

    # Sampled: every row draws (its own key per group), only from the tokens the model allows.
    sampled = jax.jit(lambda p: length_buckets.generate(ACTOR, p, batch.obs, batch.obs_mask, jax.random.key(4),
                                                        jnp.linspace(0.0, 2.0, ROWS), max_new_tokens=ACT,
                                                        stop_ids=(STOP,), pad_id=PAD, buckets=BUCKETS, chunks=4))(params)
    assert sampled.tokens.shape == (ROWS, ACT) and bool(jnp.all(sampled.mask[:, 0]))
    np.testing.assert_array_equal(sampled.tokens[0], plain.tokens[0])  # temperature 0: greedy


def test_critic_and_bc_phases_with_buckets_equal_the_phases_without():
    """The jitted phases on a (2, 1, 1) mesh (the critic's a ~ pi at temperature 0, so
    both draw the same), from one state and buffer: the same losses and parameters."""
    mesh = sharding.make_mesh((2, 1, 1), jax.devices()[:2])
    state, shardings = train_state.create_state(jax.random.key(0), actor=ACTOR, critic=ACTOR_CRITIC, actor_tx=TX,
                                                critic_tx=TX, mesh=mesh)
    initial = jax.device_get(state)
    buffer, buffer_shardings = replay.create_sharded(ROWS, OBS, ACT, mesh)
    buffer = replay.make_insert(buffer_shardings, mesh)(buffer, transitions(ROWS, seed=3))
    hp = archer.ArcherHParams(critic_batch_size=8, actor_batch_size=8, critic_epochs=1, max_new_tokens=ACT,
                              temperature=0.0, stop_ids=(STOP,), pad_id=PAD)
    results = []
    for grouped in (dataclasses.replace(hp), dataclasses.replace(hp, length_buckets=BUCKETS, bucket_chunks=4)):
        phases = archer.make_phases(actor=ACTOR, critic=ACTOR_CRITIC, hp=grouped, bridge=lambda i, m: (i, m),
                                    actor_tx=TX, critic_tx=TX, state_shardings=shardings,
                                    buffer_shardings=buffer_shardings, mesh=mesh)
        bc_phase = bc.make_bc_phase(actor=ACTOR, hp=grouped, tx=TX, steps=1, state_shardings=shardings,
                                    buffer_shardings=buffer_shardings, mesh=mesh)
        s, critic_m = phases.critic(jax.device_put(initial, shardings), buffer)
        s, bc_m = bc_phase(s, buffer)
        results.append(jax.device_get((s.critic_params, s.actor_params, critic_m, bc_m)))
    close(results[1], results[0], atol=1e-4)


def test_a_ppo_phase_with_buckets_equals_the_phase_without():
    """PPO's phase (log-probs of the actor, its reference and the token-level value model,
    then clipped steps of both) from one state on one batch of episodes."""
    value = TokenValue(lm=ACTOR)
    batch = transitions(ROWS, seed=5)
    actor_params = ACTOR.init(jax.random.key(1), batch.obs, batch.obs_mask)["params"]
    value_params = value.init(jax.random.key(2), batch.obs, batch.obs_mask, batch.action, batch.action_mask)["params"]
    episodes = {k: np.asarray(getattr(batch, k)).reshape(ROWS // 2, 2, *getattr(batch, k).shape[1:])
                for k in ("obs", "obs_mask", "action", "action_mask", "reward")}
    episodes["valid"] = np.ones((ROWS // 2, 2), bool)
    episodes["valid"][0, 1] = False
    state = train_state.ArcherState(
        step=jnp.int32(0), rng=jax.random.key_data(jax.random.key(3)), actor_params=actor_params,
        actor_opt_state=TX.init(actor_params), critic_params={}, target_critic_params={}, critic_opt_state=(),
        ref_actor_params=jax.tree.map(lambda x: x * 0.9, actor_params), baseline_params=value_params,
        baseline_opt_state=TX.init(value_params))
    hp = ppo.PPOHParams(epochs=2, batch_size=8)
    results = []
    for grouped in (hp, dataclasses.replace(hp, length_buckets=BUCKETS, bucket_chunks=4)):
        phase = jax.jit(functools.partial(ppo.ppo_phase, actor=ACTOR, value=value, hp=grouped, tx=TX, value_tx=TX))
        new, metrics = phase(state, episodes, jnp.float32(0.1))
        results.append(jax.device_get((new.actor_params, new.baseline_params, metrics)))
    close(results[1], results[0], atol=1e-4)


PROMPT = PromptTemplate(prefix=(5, 6, 7), suffix=(8, 9), pad_id=PAD)


def framed(obs, mask):
    """PROMPT around each row's span (its first real token to the end), by hand."""
    rows, masks = [], []
    for row, m in zip(np.asarray(obs).tolist(), np.asarray(mask).tolist()):
        start = m.index(True) if any(m) else len(m)
        ids = [*PROMPT.prefix, *row[start:], *PROMPT.suffix]
        real = [True] * len(PROMPT.prefix) + m[start:] + [True] * len(PROMPT.suffix)
        pad = OBS + len(PROMPT) - len(ids)
        rows.append([PAD] * pad + ids)
        masks.append([False] * pad + real)
    return jnp.asarray(rows, jnp.int32), jnp.asarray(masks)


def test_the_actor_template_frames_its_log_probs_and_generations():
    """Log-probs (rows grouped over buckets of observation widths) and greedy generations
    with ``prompt`` equal those of the hand-framed observations without it."""
    batch = transitions(ROWS, seed=6)
    empty = jnp.zeros((1, OBS), jnp.int32), jnp.zeros((1, OBS), bool)  # a row with no real token: the template alone
    obs, obs_mask = jnp.concatenate([batch.obs, empty[0]]), jnp.concatenate([batch.obs_mask, empty[1]])
    f_obs, f_mask = framed(obs, obs_mask)
    wrapped = jax.jit(PROMPT.wrap)(obs, obs_mask)
    np.testing.assert_array_equal(wrapped[0], f_obs)
    np.testing.assert_array_equal(wrapped[1], f_mask)
    obs, obs_mask, f_obs, f_mask = obs[:ROWS], obs_mask[:ROWS], f_obs[:ROWS], f_mask[:ROWS]
    params = ACTOR.init(jax.random.key(1), batch.obs, batch.obs_mask)["params"]
    logp = jax.jit(lambda p: archer.action_logprobs(ACTOR, p, obs, obs_mask, batch.action, batch.action_mask,
                                                    buckets=BUCKETS, chunks=4, prompt=PROMPT))(params)
    by_hand = jax.jit(lambda p: archer.action_logprobs(ACTOR, p, f_obs, f_mask, batch.action,
                                                       batch.action_mask))(params)
    close(logp, by_hand)
    hp = archer.ArcherHParams(max_new_tokens=ACT, stop_ids=(STOP,), pad_id=PAD, length_buckets=BUCKETS,
                              bucket_chunks=4, prompt=PROMPT)

    def greedy(hp, o, m):
        return jax.jit(lambda p: archer.generate(ACTOR, p, o, m, jax.random.key(3), 0.0, hp))(params)

    gen, plain = greedy(hp, obs, obs_mask), greedy(dataclasses.replace(hp, prompt=PromptTemplate()), f_obs, f_mask)
    np.testing.assert_array_equal(gen.tokens, plain.tokens)
    close(gen.logprobs, plain.logprobs)
    bare = greedy(dataclasses.replace(hp, prompt=PromptTemplate()), obs, obs_mask)
    assert not np.array_equal(bare.tokens, gen.tokens)  # the template reaches the model


def test_a_ppo_phase_reads_the_actor_template_in_its_policy_and_value_model():
    """PPO's phase with ``prompt`` (the actor's and its reference's log-probs, the value
    model on the actor's view) equals the phase on hand-framed observations without it."""
    value = TokenValue(lm=ACTOR)
    batch = transitions(ROWS, seed=7)
    actor_params = ACTOR.init(jax.random.key(1), batch.obs, batch.obs_mask)["params"]
    value_params = value.init(jax.random.key(2), batch.obs, batch.obs_mask, batch.action, batch.action_mask)["params"]
    state = train_state.ArcherState(
        step=jnp.int32(0), rng=jax.random.key_data(jax.random.key(3)), actor_params=actor_params,
        actor_opt_state=TX.init(actor_params), critic_params={}, target_critic_params={}, critic_opt_state=(),
        ref_actor_params=jax.tree.map(lambda x: x * 0.9, actor_params), baseline_params=value_params,
        baseline_opt_state=TX.init(value_params))
    f_obs, f_mask = framed(batch.obs, batch.obs_mask)
    results = []
    for obs, obs_mask, prompt in ((batch.obs, batch.obs_mask, PROMPT), (f_obs, f_mask, PromptTemplate())):
        episodes = {k: np.asarray(v).reshape(ROWS // 2, 2, *v.shape[1:]) for k, v in (
            ("obs", obs), ("obs_mask", obs_mask), ("action", batch.action), ("action_mask", batch.action_mask),
            ("reward", batch.reward))}
        episodes["valid"] = np.ones((ROWS // 2, 2), bool)
        hp = ppo.PPOHParams(epochs=1, batch_size=8, length_buckets=BUCKETS, bucket_chunks=2, prompt=prompt)
        phase = jax.jit(functools.partial(ppo.ppo_phase, actor=ACTOR, value=value, hp=hp, tx=TX, value_tx=TX))
        new, metrics = phase(state, episodes, jnp.float32(0.1))
        results.append(jax.device_get((new.actor_params, new.baseline_params, metrics)))
    close(results[0], results[1], atol=1e-4)
