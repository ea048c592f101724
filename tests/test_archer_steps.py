"""ArCHer's jitted critic / actor / BC phases with a tiny GPT-2 actor and RoBERTa critic.

Obs length 12, action length 6, vocab 50. Compiles dominate the runtime, so every
compiled phase lives in a module fixture and each test starts from a fresh copy of
the initial state (the phases donate it).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from archer_jax import replay, sampling, sharding, train_state
from archer_jax.algorithms import archer, bc
from archer_jax.models import value_heads
from archer_jax.models.gpt2 import GPT2Config, GPT2LMHeadModel
from archer_jax.models.roberta import RobertaConfig, RobertaModel
from archer_jax.models.value_heads import DoubleCritic

OBS_LEN, ACTION_LEN, VOCAB, PAD, STOP = 12, 6, 50, 0, 2
CAPACITY = 16

ACTOR = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2))
CRITIC = DoubleCritic(
    RobertaModel(RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=24)),
    hidden_size=16)
# One critic step per phase makes the per-step Polyak update observable from outside;
# the actor and BC phases cover multi-step scans.
HP = archer.ArcherHParams(gamma=0.9, tau=0.1, critic_batch_size=8, actor_batch_size=8, critic_epochs=1,
                          actor_epochs=2, max_new_tokens=ACTION_LEN, stop_ids=(STOP,), pad_id=PAD)
ACTOR_TX = train_state.make_optimizer(1e-3, max_grad_norm=1.0)
CRITIC_TX = train_state.make_optimizer(1e-3, max_grad_norm=1.0)

CRITIC_METRICS = {"critic/q1_loss", "critic/q2_loss", "critic/v1_loss", "critic/v2_loss", "critic/loss",
                  "critic/q_mean", "critic/v_mean", "critic/grad_norm"}
ACTOR_METRICS = {"actor/pg_loss", "actor/advantage_mean", "actor/advantage_std", "actor/logp_mean",
                 "actor/grad_norm"}


class CountingBridge:
    """The identity token bridge; it runs once per trace, so it counts traces."""

    def __init__(self):
        self.calls = 0

    def __call__(self, ids, mask):
        self.calls += 1
        return ids, mask


def random_transitions(n: int, seed: int = 0) -> replay.Transitions:
    """Left-padded observations, right-padded actions, reward -1, 30% terminal."""
    rng = np.random.default_rng(seed)
    obs_len = rng.integers(1, OBS_LEN + 1, n)
    next_len = np.minimum(obs_len + 3, OBS_LEN)
    act_len = rng.integers(1, ACTION_LEN + 1, n)
    obs_mask = np.arange(OBS_LEN)[None] >= (OBS_LEN - obs_len)[:, None]
    next_mask = np.arange(OBS_LEN)[None] >= (OBS_LEN - next_len)[:, None]
    act_mask = np.arange(ACTION_LEN)[None] < act_len[:, None]

    def ids(mask):
        return jnp.asarray(np.where(mask, rng.integers(3, VOCAB, mask.shape), PAD), jnp.int32)

    return replay.Transitions(
        obs=ids(obs_mask), obs_mask=jnp.asarray(obs_mask), action=ids(act_mask), action_mask=jnp.asarray(act_mask),
        next_obs=ids(next_mask), next_obs_mask=jnp.asarray(next_mask),
        reward=-jnp.ones((n,), jnp.float32), done=jnp.asarray(rng.random(n) < 0.3),
        mc_return=jnp.zeros((n,), jnp.float32), episode_return=jnp.zeros((n,), jnp.float32),
        turn=jnp.zeros((n,), jnp.int32))


class Setup:
    """A state, a filled buffer and the jitted phases on one mesh."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.bridge = CountingBridge()
        state, self.state_shardings = train_state.create_state(
            jax.random.key(0), actor=ACTOR, critic=CRITIC, actor_tx=ACTOR_TX, critic_tx=CRITIC_TX, mesh=mesh)
        self.initial = jax.device_get(state)
        buffer, self.buffer_shardings = replay.create_sharded(CAPACITY, OBS_LEN, ACTION_LEN, mesh)
        self.buffer = replay.make_insert(self.buffer_shardings, mesh)(buffer, random_transitions(CAPACITY))
        self.phases = archer.make_phases(
            actor=ACTOR, critic=CRITIC, hp=HP, bridge=self.bridge, actor_tx=ACTOR_TX, critic_tx=CRITIC_TX,
            state_shardings=self.state_shardings, buffer_shardings=self.buffer_shardings, mesh=mesh)

    def fresh_state(self):
        return jax.device_put(self.initial, self.state_shardings)


@pytest.fixture(scope="module")
def sharded():
    return Setup(sharding.make_mesh((2, 2, 2)))


def tree_allclose(a, b, atol):
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: np.allclose(x, y, atol=atol, rtol=0), a, b)))


def tree_changed(a, b):
    return not tree_allclose(a, b, atol=0)


def test_critic_params_carry_logical_axes_and_the_expected_tree():
    ids, mask = jnp.ones((2, 5), jnp.int32), jnp.ones((2, 5), jnp.bool_)
    init = jax.jit(CRITIC.init)
    boxed = jax.eval_shape(init, jax.random.key(0), ids, mask, ids[:, :3], mask[:, :3])["params"]
    assert set(boxed) == {"encoder", "q1", "q2", "v1", "v2"}
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(leaf, nn.Partitioned) for leaf in leaves)
    assert boxed["q1"]["fc1"]["kernel"].value.shape == (32, 16)  # [obs; act] -> d
    assert boxed["v1"]["fc1"]["kernel"].value.shape == (16, 16)

    params = nn.meta.unbox(init(jax.random.key(0), ids, mask, ids[:, :3], mask[:, :3])["params"])
    out = jax.jit(CRITIC.apply)({"params": params}, ids, mask, ids[:, :3], mask[:, :3])
    v1, v2 = jax.jit(functools.partial(CRITIC.apply, method="values"))({"params": params}, ids, mask)
    assert out.q1.shape == out.v2.shape == (2,) and out.q1.dtype == jnp.float32
    np.testing.assert_allclose(v1, out.v1, rtol=1e-6)
    np.testing.assert_allclose(v2, out.v2, rtol=1e-6)
    assert not np.allclose(out.q1, out.q2)  # independent heads


def test_phases_run_and_change_only_their_own_params(sharded):
    state = sharded.fresh_state()
    before = sharded.initial
    state, metrics = sharded.phases.critic(state, sharded.buffer)
    metrics = jax.device_get(metrics)
    assert set(metrics) == CRITIC_METRICS
    assert all(np.isfinite(v) for v in metrics.values())
    after_critic = jax.device_get(state)
    assert int(after_critic.step) == HP.critic_epochs
    assert tree_changed(before.critic_params, after_critic.critic_params)
    assert tree_changed(before.target_critic_params, after_critic.target_critic_params)
    assert tree_allclose(before.actor_params, after_critic.actor_params, atol=0)
    # The state stays where the shardings say (the phase's out_shardings).
    kernel = lambda params: params["q1"]["fc1"]["kernel"]  # noqa: E731
    assert kernel(state.critic_params).sharding == kernel(sharded.state_shardings.critic_params)

    state, metrics = sharded.phases.actor(state, sharded.buffer)
    metrics = jax.device_get(metrics)
    assert set(metrics) == ACTOR_METRICS
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["actor/logp_mean"] < 0
    after_actor = jax.device_get(state)
    assert int(after_actor.step) == HP.critic_epochs + HP.actor_epochs
    assert tree_changed(after_critic.actor_params, after_actor.actor_params)
    assert tree_allclose(after_critic.critic_params, after_actor.critic_params, atol=0)
    assert tree_allclose(after_critic.target_critic_params, after_actor.target_critic_params, atol=0)


def test_each_phase_compiles_once_over_three_calls(sharded):
    state = sharded.fresh_state()
    state, _ = sharded.phases.critic(state, sharded.buffer)
    state, _ = sharded.phases.actor(state, sharded.buffer)
    traces = sharded.bridge.calls
    assert traces > 0
    for _ in range(2):
        state, _ = sharded.phases.critic(state, sharded.buffer)
        state, _ = sharded.phases.actor(state, sharded.buffer)
    jax.block_until_ready(state)
    assert sharded.bridge.calls == traces
    assert sharded.phases.critic._cache_size() == 1
    assert sharded.phases.actor._cache_size() == 1


def test_target_moves_toward_online_by_tau_each_step(sharded):
    assert HP.critic_epochs == 1
    start = sharded.initial
    # Move the target away from the online critic so the Polyak step is visible.
    start = start.replace(target_critic_params=jax.tree.map(lambda x: x + 1.0, start.critic_params))
    state = jax.device_put(start, sharded.state_shardings)
    for _ in range(2):
        before = jax.device_get(state)
        state, _ = sharded.phases.critic(state, sharded.buffer)
        after = jax.device_get(state)
        expected = jax.tree.map(lambda t, p: 0.9 * t + 0.1 * p, before.target_critic_params, after.critic_params)
        assert tree_allclose(after.target_critic_params, expected, atol=1e-6)
        assert tree_changed(before.target_critic_params, after.target_critic_params)


def test_sharded_update_equals_single_device_update(sharded):
    single = Setup(sharding.make_mesh((1, 1, 1), jax.devices()[:1]))
    assert tree_allclose(single.initial, sharded.initial, atol=0)
    results = []
    for setup in (single, sharded):
        state = setup.fresh_state()
        state, critic_metrics = setup.phases.critic(state, setup.buffer)
        state, actor_metrics = setup.phases.actor(state, setup.buffer)
        results.append(jax.device_get((state, critic_metrics, actor_metrics)))
    assert tree_allclose(results[0], results[1], atol=1e-5)
    assert tree_changed(single.initial.actor_params, results[0][0].actor_params)


def test_kl_penalty_anchors_the_actor_to_its_frozen_reference(sharded):
    hp = dataclasses.replace(HP, actor_epochs=1, kl_coef=0.5)
    state, shardings = train_state.create_state(jax.random.key(0), actor=ACTOR, critic=CRITIC, actor_tx=ACTOR_TX,
                                                critic_tx=CRITIC_TX, mesh=sharded.mesh, reference=True)
    phase = archer.jit_phase(functools.partial(archer.actor_phase, actor=ACTOR, critic=CRITIC, hp=hp,
                                               bridge=sharded.bridge, tx=ACTOR_TX, mesh=sharded.mesh),
                             shardings, sharded.buffer_shardings, sharded.mesh)
    reference = jax.device_get(state.ref_actor_params)
    state, first = phase(state, sharded.buffer)
    state, second = phase(state, sharded.buffer)
    assert set(jax.device_get(first)) == ACTOR_METRICS | {"actor/kl"}
    assert float(first["actor/kl"]) == pytest.approx(0.0, abs=1e-6)  # the actor still is the reference
    assert abs(float(second["actor/kl"])) > 1e-4  # a sample of log pi - log pi_ref: any sign, not zero
    assert tree_allclose(reference, jax.device_get(state.ref_actor_params), atol=0)
    assert tree_changed(reference, jax.device_get(state.actor_params))


class FirstTokenCritic(nn.Module):
    """A hand-built critic (no parameters) that prefers utterances whose first token
    lies in GOOD: Q = +1 there, -1 for any other first token; V = 0.25 everywhere, so
    Q and V differ and a swap of the two would show."""

    @nn.compact
    def __call__(self, obs, obs_mask, action, action_mask):
        q = jnp.where(jnp.isin(action[:, 0], GOOD), 1.0, -1.0)
        v = jnp.full_like(q, 0.25)
        return value_heads.CriticOutput(q1=q, q2=q + 0.5, v1=v, v2=v + 0.5)


GOOD = jnp.arange(3, 26)  # half of the vocabulary, so every batch samples both kinds


def _first_token_mass(params, buffer):
    """The mean over the buffer's states of pi(first token in GOOD | s)."""
    logits = archer.action_logits(ACTOR, params, buffer.obs, buffer.obs_mask, buffer.action, buffer.action_mask)
    probs = jax.nn.softmax(logits[:, 0].astype(jnp.float32), axis=-1)
    return float(jnp.mean(jnp.sum(probs[:, GOOD], axis=-1)))


@pytest.mark.parametrize("samples,temperature,kl_coef", [(1, 1.0, 0.0), (4, 1.0, 0.0), (4, 0.5, 0.1)])
def test_actor_phase_moves_the_policy_toward_what_the_critic_prefers(sharded, samples, temperature, kl_coef):
    """Direction: after the actor phase the policy says more of the utterances the
    critic scores high and less of the others, with the paper's advantage (1 sample,
    Q - V), the leave-one-out one (4 samples), a tempered policy and the KL anchor."""
    hp = dataclasses.replace(HP, actor_epochs=8, actor_samples=samples, actor_temperature=temperature,
                             kl_coef=kl_coef)
    state = jax.device_get(sharded.fresh_state())
    state = state.replace(critic_params={}, critic_opt_state={}, target_critic_params={},
                          ref_actor_params=state.actor_params if kl_coef else None)
    phase = jax.jit(functools.partial(archer.actor_phase, actor=ACTOR, critic=FirstTokenCritic(), hp=hp,
                                      bridge=lambda ids, mask: (ids, mask),
                                      tx=train_state.make_optimizer(1e-2)))
    buffer = jax.device_get(sharded.buffer)
    before = _first_token_mass(state.actor_params, buffer)
    state, metrics = phase(state, buffer)
    after = _first_token_mass(state.actor_params, buffer)
    assert after > before + 0.03, (before, after)
    if samples > 1:
        assert float(metrics["actor/q_within_std"]) > 0.5  # the samples of one state differ in Q
        assert 0.0 <= float(metrics["actor/identical_samples"]) < 0.5  # a random actor rarely repeats itself
        assert abs(float(metrics["actor/advantage_mean"])) < 1e-5  # leave-one-out weights average to 0


class ConstantCritic(nn.Module):
    """Q = V = 0 everywhere: the policy gradient's weights vanish, only the anchors act."""

    @nn.compact
    def __call__(self, obs, obs_mask, action, action_mask):
        zero = jnp.zeros(action.shape[0])
        return value_heads.CriticOutput(q1=zero, q2=zero, v1=zero, v2=zero)


def test_only_the_mass_covering_anchor_brings_back_a_mode_the_policy_lost(sharded):
    """A policy driven onto GOOD first tokens (over 95% of its mass) and anchored to
    where it started (about half on GOOD): KL(pi_ref || pi), estimated on utterances of
    pi_ref, gives the lost mass back several times faster than KL(pi || pi_ref) at the
    same weight, estimated on the policy's own samples (its gradient lives where pi
    samples)."""
    identity = lambda ids, mask: (ids, mask)  # noqa: E731
    buffer = jax.device_get(sharded.buffer)
    state = jax.device_get(sharded.fresh_state()).replace(critic_params={}, critic_opt_state={},
                                                          target_critic_params={})
    start = state.actor_params
    collapse = jax.jit(functools.partial(archer.actor_phase, actor=ACTOR, critic=FirstTokenCritic(),
                                         hp=dataclasses.replace(HP, actor_epochs=8), bridge=identity,
                                         tx=train_state.make_optimizer(1e-2)))
    collapsed = _first_token_mass(start, buffer)
    assert collapsed < 0.6
    for _ in range(40):  # phase by phase until the policy holds 95% there (not to the last ulp)
        state, _ = collapse(state, buffer)
        collapsed = _first_token_mass(state.actor_params, buffer)
        if collapsed > 0.95:
            break
    assert collapsed > 0.95
    state = state.replace(ref_actor_params=start)

    def anchored(**coefs):
        phase = jax.jit(functools.partial(archer.actor_phase, actor=ACTOR, critic=ConstantCritic(),
                                          hp=dataclasses.replace(HP, actor_epochs=8, **coefs), bridge=identity,
                                          tx=train_state.make_optimizer(1e-2)))
        after, metrics = phase(state, buffer)
        assert tree_allclose(start, after.ref_actor_params, atol=0)
        return _first_token_mass(after.actor_params, buffer), jax.device_get(metrics)

    forward, metrics = anchored(forward_kl_coef=1.0)
    assert set(metrics) == ACTOR_METRICS | {"actor/forward_kl"}
    assert float(metrics["actor/forward_kl"]) > 1.0  # nats per utterance between the two
    reverse, _ = anchored(kl_coef=1.0)
    # The mass each anchor gives back in one phase: the forward one over 3 times more.
    assert collapsed - forward > 3 * max(collapsed - reverse, 0.005), (collapsed, forward, reverse)


def _stored_logp(params, buffer):
    """The mean over the buffer's rows of log pi(stored action | s), summed per utterance."""
    logp = archer.action_logprobs(ACTOR, params, buffer.obs, buffer.obs_mask, buffer.action, buffer.action_mask)
    return float(jnp.mean(jnp.sum(jnp.where(buffer.action_mask, logp, 0.0), axis=-1)))


def test_awr_term_fits_the_buffers_actions_where_the_policy_gradient_is_silent(sharded):
    """Q = V = 0: the policy gradient's weights vanish, so without the AWR term the actor
    does not move; with it (w = exp(0) = 1 on every stored turn) it fits the buffer's own
    utterances, as BC would."""
    identity = lambda ids, mask: (ids, mask)  # noqa: E731
    buffer = jax.device_get(sharded.buffer)
    state = jax.device_get(sharded.fresh_state()).replace(critic_params={}, critic_opt_state={},
                                                          target_critic_params={})

    def phase(**coefs):
        run = jax.jit(functools.partial(archer.actor_phase, actor=ACTOR, critic=ConstantCritic(),
                                        hp=dataclasses.replace(HP, actor_epochs=8, **coefs), bridge=identity,
                                        tx=train_state.make_optimizer(1e-2)))
        return jax.device_get(run(state, buffer))

    silent, metrics = phase()
    assert not tree_changed(state.actor_params, silent.actor_params)
    assert "actor/awr_loss" not in metrics
    fitted, metrics = phase(awr_coef=1.0, awr_beta=5.0)
    assert set(metrics) == ACTOR_METRICS | {"actor/awr_loss", "actor/awr_advantage_std", "actor/awr_weight_mean",
                                            "actor/awr_weight_clipped"}
    assert float(metrics["actor/awr_weight_mean"]) == pytest.approx(1.0)
    assert float(metrics["actor/awr_weight_clipped"]) == 0.0
    before, after = _stored_logp(state.actor_params, buffer), _stored_logp(fitted.actor_params, buffer)
    assert after > before + 1.0, (before, after)


def _stored_logp_by_kind(params, buffer):
    """(mean stored-utterance log pi over the rows whose first token is in GOOD, over the rest)."""
    logp = archer.action_logprobs(ACTOR, params, buffer.obs, buffer.obs_mask, buffer.action, buffer.action_mask)
    seq = np.asarray(jnp.sum(jnp.where(buffer.action_mask, logp, 0.0), axis=-1))
    good = np.isin(np.asarray(buffer.action[:, 0]), np.asarray(GOOD))
    assert good.any() and (~good).any()
    return seq[good].mean(), seq[~good].mean()


def test_awr_weights_the_buffers_better_actions_up(sharded):
    """FirstTokenCritic: A = +0.75 on the stored utterances that start in GOOD, -1.25 on the
    rest. With beta 5 (weights 20 against 0.002) the actor fits the good stored utterances
    and not the bad ones; with beta 0 (every weight 1) both alike. The policy gradient
    acts the same in both, so the difference is the weighting."""
    identity = lambda ids, mask: (ids, mask)  # noqa: E731
    buffer = jax.device_get(sharded.buffer)
    state = jax.device_get(sharded.fresh_state()).replace(critic_params={}, critic_opt_state={},
                                                          target_critic_params={})
    good0, bad0 = _stored_logp_by_kind(state.actor_params, buffer)

    def separation(beta):
        run = jax.jit(functools.partial(archer.actor_phase, actor=ACTOR, critic=FirstTokenCritic(),
                                        hp=dataclasses.replace(HP, actor_epochs=8, awr_coef=1.0, awr_beta=beta),
                                        bridge=identity, tx=train_state.make_optimizer(1e-2)))
        new, metrics = jax.device_get(run(state, buffer))
        good, bad = _stored_logp_by_kind(new.actor_params, buffer)
        return (good - good0) - (bad - bad0), metrics

    weighted, metrics = separation(5.0)
    uniform, _ = separation(0.0)
    assert float(metrics["actor/awr_weight_clipped"]) > 0.0  # the good rows' exp(3.75) hits the clip of 20
    assert weighted > uniform + 1.0, (weighted, uniform)


def test_awr_fields_are_checked():
    with pytest.raises(ValueError, match="awr_max_weight"):
        dataclasses.replace(HP, awr_max_weight=0.0)
    with pytest.raises(ValueError, match="awr_beta"):
        dataclasses.replace(HP, awr_beta=-1.0)


def test_token_level_baseline_learns_min_q_and_the_policy_still_moves_toward_it(sharded):
    """ArCHer with a token-level baseline: the phase trains V(s, a_<t) toward min Q of the
    sampled utterance (its loss falls) while the policy moves as with A = Q - V."""
    hp = dataclasses.replace(HP, actor_epochs=8)
    baseline = value_heads.TokenValue(lm=ACTOR)
    baseline_tx = train_state.make_optimizer(1e-2)
    state, _ = train_state.create_state(jax.random.key(0), actor=ACTOR, critic=CRITIC, actor_tx=ACTOR_TX,
                                        critic_tx=CRITIC_TX, mesh=sharded.mesh, baseline=baseline,
                                        baseline_tx=baseline_tx)
    state = jax.device_get(state).replace(critic_params={}, critic_opt_state={}, target_critic_params={})
    assert set(state.baseline_params) == {"lm", "head"}
    phase = jax.jit(functools.partial(archer.actor_phase, actor=ACTOR, critic=FirstTokenCritic(), hp=hp,
                                      bridge=lambda ids, mask: (ids, mask), tx=train_state.make_optimizer(1e-2),
                                      baseline=baseline, baseline_tx=baseline_tx))
    buffer = jax.device_get(sharded.buffer)
    before, baseline_before = _first_token_mass(state.actor_params, buffer), state.baseline_params
    state, first = phase(state, buffer)
    state, second = phase(state, buffer)
    assert _first_token_mass(state.actor_params, buffer) > before + 0.03
    assert float(second["baseline/loss"]) < float(first["baseline/loss"])
    assert tree_changed(baseline_before, jax.device_get(state.baseline_params))
    assert -1.0 <= float(second["baseline/value_mean"]) <= 1.0  # toward min Q in {-1, +1}


def test_actor_phase_differentiates_the_policy_it_samples_from(sharded):
    """At actor_temperature T the phase samples a ~ pi_T and its loss reads log pi_T(a)
    (logits / T) of exactly those samples, not log pi at temperature 1."""
    t = 0.25
    state = sharded.fresh_state()
    k_batch, k_action = jax.random.split(train_state.step_key(state))
    batch = archer.sample_batch(sharded.buffer, k_batch, HP.actor_batch_size, None, sharding.DEFAULT_RULES)
    # Jitted (each program compiles once; eagerly the decode loop alone takes a minute).
    generate = jax.jit(functools.partial(sampling.generate, ACTOR, max_new_tokens=ACTION_LEN, stop_ids=(STOP,),
                                         pad_id=PAD), static_argnums=4)
    pi = generate(state.actor_params, batch.obs, batch.obs_mask, k_action, t)
    logprobs = jax.jit(functools.partial(archer.action_logprobs, ACTOR), static_argnums=5)

    def mean_logp(temperature):
        logp = logprobs(state.actor_params, batch.obs, batch.obs_mask, pi.tokens, pi.mask, temperature)
        return float(jnp.sum(logp) / jnp.sum(pi.mask))

    step = jax.jit(functools.partial(archer._actor_step, buffer=sharded.buffer, actor=ACTOR, critic=CRITIC,
                                     bridge=sharded.bridge, tx=ACTOR_TX, mesh=None, rules=sharding.DEFAULT_RULES),
                   static_argnames="hp")
    _, metrics = step(state, hp=dataclasses.replace(HP, actor_temperature=t))
    assert float(metrics["actor/logp_mean"]) == pytest.approx(mean_logp(t), rel=1e-5)
    assert abs(mean_logp(t) - mean_logp(1.0)) > 1e-3  # the two readings differ
    with pytest.raises(ValueError, match="actor_temperature = 0.0: must be > 0"):
        dataclasses.replace(HP, actor_temperature=0.0)


@pytest.mark.parametrize("anchor", ["kl_coef", "forward_kl_coef"])
def test_kl_penalty_without_a_reference_is_refused(sharded, anchor):
    hp = dataclasses.replace(HP, **{anchor: 0.5})
    with pytest.raises(ValueError, match="reference=True"):
        archer.actor_phase(sharded.fresh_state(), sharded.buffer, actor=ACTOR, critic=CRITIC, hp=hp,
                           bridge=sharded.bridge, tx=ACTOR_TX, mesh=sharded.mesh)


def test_critic_loss_decreases_on_a_fixed_buffer(sharded):
    state = sharded.fresh_state()
    losses = []
    for _ in range(16):
        state, metrics = sharded.phases.critic(state, sharded.buffer)
        losses.append(metrics["critic/loss"])
    losses = np.asarray(jax.device_get(losses))
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses
    assert int(jax.device_get(state.step)) == 16 * HP.critic_epochs


def test_create_state_takes_pretrained_actor_and_encoder(sharded):
    pretrained = jax.device_put(sharded.initial, sharded.state_shardings)
    state, shardings = train_state.create_state(
        jax.random.key(1), actor=ACTOR, critic=CRITIC, actor_tx=ACTOR_TX, critic_tx=CRITIC_TX, mesh=sharded.mesh,
        actor_params=pretrained.actor_params, critic_encoder_params=pretrained.critic_params["encoder"])
    host = jax.device_get(state)
    assert tree_allclose(host.actor_params, sharded.initial.actor_params, atol=0)
    assert tree_allclose(host.critic_params["encoder"], sharded.initial.critic_params["encoder"], atol=0)
    assert tree_changed(host.critic_params["q1"], sharded.initial.critic_params["q1"])  # fresh heads
    assert tree_allclose(host.target_critic_params, host.critic_params, atol=0)
    assert jax.tree.structure(shardings) == jax.tree.structure(sharded.state_shardings)
    # The target is a copy, not an alias: donating the state must not hit one buffer twice.
    state, _ = sharded.phases.critic(state, sharded.buffer)
    assert int(jax.device_get(state.step)) == HP.critic_epochs

    with pytest.raises(ValueError, match="actor_params"):
        train_state.create_state(jax.random.key(1), actor=ACTOR, critic=CRITIC, actor_tx=ACTOR_TX,
                                 critic_tx=CRITIC_TX, mesh=sharded.mesh, actor_params={"wte": {}})


def test_bc_phase_fits_the_dataset_actions(sharded):
    phase = bc.make_bc_phase(actor=ACTOR, hp=HP, tx=ACTOR_TX, steps=10, state_shardings=sharded.state_shardings,
                             buffer_shardings=sharded.buffer_shardings, mesh=sharded.mesh)
    state = sharded.fresh_state()
    history = []
    for _ in range(4):
        state, metrics = phase(state, sharded.buffer)
        history.append(jax.device_get(metrics))
    assert set(history[0]) == {"bc/loss", "bc/token_accuracy", "bc/grad_norm"}
    assert history[-1]["bc/loss"] < history[0]["bc/loss"] - 0.3, history
    assert history[-1]["bc/token_accuracy"] > history[0]["bc/token_accuracy"]
    assert int(jax.device_get(state.step)) == 40
    assert phase._cache_size() == 1
