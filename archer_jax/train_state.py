"""ArCHer's train state: actor, critic and target critic in one sharded pytree.

The optimizers are optax GradientTransformations kept out of the pytree (they are
code, not data): the steps receive them through ``functools.partial``. The state is
created already sharded: ``jax.eval_shape`` of the boxed init gives every leaf's
logical axes, ``sharding.tree_shardings`` maps them to the mesh, and one
``jax.jit(init, out_shardings=...)`` materialises each leaf in its place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from archer_jax import sharding as sharding_lib
from archer_jax.models import layers


@flax.struct.dataclass
class ArcherState:
    step: jax.Array  # int32 scalar: update steps taken so far (critic, actor and BC alike)
    rng: jax.Array  # uint32 [2] raw key data; steps fold in ``step`` for fresh randomness
    actor_params: Any
    actor_opt_state: Any
    # {'encoder', 'q1', 'q2', 'v1', 'v2'}; the three critic fields are None when the state
    # is created without a critic (an algorithm that trains none).
    critic_params: Any
    critic_opt_state: Any
    target_critic_params: Any  # Polyak average of critic_params
    # The policy ArCHer started from (the BC actor), the anchor of the actor's KL
    # penalty; None (no copy kept) unless create_state(reference=True).
    ref_actor_params: Any = None
    # A token-level value model (``value_heads.TokenValue``) and its optimizer state:
    # ArCHer's token-level baseline, PPO's value function; None unless
    # create_state(baseline=...) (``algorithms.Algorithm.token_value``).
    baseline_params: Any = None
    baseline_opt_state: Any = None


def make_optimizer(learning_rate: float | optax.Schedule, max_grad_norm: float | None = 1.0,
                   weight_decay: float = 0.0, *,
                   trainable: Callable[[tuple[Any, ...]], bool] | None = None) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay`` > 0) after global-norm clipping, as in ArCHer,
    its moments in float32 whatever the params' dtype. ``trainable(path)``: only the
    params whose ``jax.tree_util`` key path it accepts are updated (and clipped, and
    have moments); the others get zero updates, so their gradients are dead code XLA
    drops."""
    opt = optax.adamw(learning_rate, weight_decay=weight_decay) if weight_decay else optax.adam(learning_rate)
    if max_grad_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(max_grad_norm), opt)
    opt = _float32_moments(opt)
    if trainable is None:
        return opt

    def labels(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(lambda path, _: "train" if trainable(path) else "frozen", params)

    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


def _float32_moments(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner`` on float32 copies of the gradients and params, so its state is float32
    (bfloat16 params keep float32 moments); ``optax.apply_updates`` casts the updates
    back to each param's dtype. A no-op for float32 params."""

    def f32(tree: Any) -> Any:
        return jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

    def init(params: Any) -> Any:
        return inner.init(f32(params))

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        return inner.update(f32(updates), state, None if params is None else f32(params))

    return optax.GradientTransformation(init, update)


def actor_optimizer(config: Any, learning_rate: float | None = None) -> optax.GradientTransformation:
    """The optimizer of the actor's weights under ``config.actor`` (its lr unless
    ``learning_rate``, its clipping): with ``lora_rank`` > 0 only the LoRA adapters train."""
    actor = config.actor
    return make_optimizer(actor.lr if learning_rate is None else learning_rate, actor.max_grad_norm,
                          trainable=layers.is_adapter if actor.get("lora_rank", 0) else None)


@jax.jit
def fingerprint(params: Any) -> jax.Array:
    """A uint32 checksum of a pytree's bits: sum over leaves and elements of
    bits * (an odd weight unique to the position), mod 2**32. Changing any one element
    always changes it (an odd weight is invertible mod 2**32); unrelated trees collide
    with probability about 2**-32. Elementwise then one reduction per leaf, with no
    reshape, so a sharded tree is never gathered."""
    uint = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}
    total = jnp.uint32(0)
    for i, leaf in enumerate(jax.tree.leaves(params)):
        leaf = jnp.asarray(leaf)
        if leaf.dtype == jnp.bool_:
            leaf = leaf.astype(jnp.uint8)
        if leaf.dtype.itemsize not in uint:
            raise TypeError(f"fingerprint: a leaf of dtype {leaf.dtype} (at most 32-bit dtypes are supported)")
        bits = jax.lax.bitcast_convert_type(leaf, uint[leaf.dtype.itemsize]).astype(jnp.uint32)
        position = jnp.zeros(leaf.shape, jnp.uint32)
        for axis in range(leaf.ndim):
            position = position * jnp.uint32(leaf.shape[axis]) + jax.lax.broadcasted_iota(jnp.uint32, leaf.shape, axis)
        weight = (position + jnp.uint32(i + 1)) * jnp.uint32(0x9E3779B1) | jnp.uint32(1)
        total = total + jnp.sum(bits * weight, dtype=jnp.uint32) * jnp.uint32(2 * i + 1)
    return total


def step_key(state: ArcherState) -> jax.Array:
    """A typed key unique to this update step."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def _init_state(rng: jax.Array, actor_params: Any, critic_encoder_params: Any, *, actor: nn.Module,
                critic: nn.Module | None, actor_tx: optax.GradientTransformation,
                critic_tx: optax.GradientTransformation, reference: bool = False, baseline: nn.Module | None = None,
                baseline_tx: optax.GradientTransformation | None = None) -> ArcherState:
    """The state, boxed (nn.Partitioned) wherever params come from a random init.

    Optimizer states are built on the boxed params so that their moments carry the
    same logical axes as the params they follow.
    """
    k_actor, k_critic, k_state = jax.random.split(rng, 3)
    k_baseline = jax.random.fold_in(rng, 3)  # apart from the split, so runs without a baseline keep their streams
    ids, mask = layers.token_init_inputs()
    if actor_params is None:
        actor_params = actor.init(k_actor, ids, mask)["params"]
    elif _lacks_adapters(actor_params, actor):
        actor_params = _overlay(actor.init(k_actor, ids, mask)["params"], actor_params)
    # One model's random init after the other: XLA would otherwise draw every model's
    # random bits at once (the small benchmark preset: 0.88 instead of 0.52 GiB of
    # temporaries over its 3.3 GiB state).
    actor_params, k_critic, k_baseline = jax.lax.optimization_barrier((actor_params, k_critic, k_baseline))
    critic_params = critic.init(k_critic, ids, mask, ids, mask)["params"] if critic is not None else None
    critic_params, k_baseline = jax.lax.optimization_barrier((critic_params, k_baseline))
    if critic_encoder_params is not None:
        critic_params = {**critic_params, "encoder": critic_encoder_params}
    baseline_params = baseline.init(k_baseline, ids, mask, ids, mask)["params"] if baseline is not None else None
    return ArcherState(
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(k_state),
        actor_params=actor_params,
        actor_opt_state=actor_tx.init(actor_params),
        critic_params=critic_params,
        critic_opt_state=critic_tx.init(critic_params) if critic is not None else None,
        # A real copy: the target must not alias the online critic's buffers, or
        # donating the state would hand XLA one buffer twice.
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        ref_actor_params=reference_of(actor_params) if reference else None,
        baseline_params=baseline_params,
        baseline_opt_state=baseline_tx.init(baseline_params) if baseline is not None else None,
    )


def reference_of(actor_params: Any) -> Any:
    """The frozen KL anchor a state keeps (``ref_actor_params``): a real copy of the
    actor's params (not aliasing them: a donated state would hand XLA one buffer
    twice); under LoRA a copy of the adapters alone, since the base weights never
    change (a 7B base is 14 GB): ``reference_params`` puts the base back."""
    flat = flax.traverse_util.flatten_dict(actor_params)
    adapters = {k: v for k, v in flat.items() if layers.is_adapter(k)}
    return jax.tree.map(jnp.copy, flax.traverse_util.unflatten_dict(adapters) if adapters else actor_params)


def reference_params(state: ArcherState) -> Any:
    """The KL anchor's full params: ``ref_actor_params``, over the actor's frozen base
    where it keeps the adapters only (``reference_of``)."""
    flat = flax.traverse_util.flatten_dict(state.ref_actor_params)
    return jax.tree_util.tree_map_with_path(lambda path, x: flat.get(layers.path_names(path), x),
                                            state.actor_params)


def _paths(tree: Any) -> set[tuple[str, ...]]:
    return {layers.path_names(path)
            for path, _ in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]}


def _lacks_adapters(params: Any, actor: nn.Module) -> bool:
    lora = getattr(getattr(actor, "config", None), "lora", None)
    return lora is not None and not any(layers.is_adapter(p) for p in _paths(params))


def _overlay(fresh: Any, given: Any) -> Any:
    """``fresh`` (a boxed random init) with every leaf ``given`` has replaced by it."""
    flat = flax.traverse_util.flatten_dict(given)

    def pick(path: tuple[Any, ...], leaf: Any) -> Any:
        key = layers.path_names(path)
        if key not in flat:
            return leaf
        value = flat[key]
        return leaf.replace_boxed(value) if isinstance(leaf, nn.Partitioned) else value

    return jax.tree_util.tree_map_with_path(pick, fresh, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def abstract_state(rng: jax.Array, *, mesh: Mesh, rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
                   **models: Any) -> tuple[ArcherState, ArcherState]:
    """``create_state``'s (shapes, shardings) without allocating anything: the unboxed
    ``jax.ShapeDtypeStruct`` of every leaf of a randomly initialised state and its
    NamedSharding on ``mesh`` (what a memory plan sizes). ``models``: create_state's
    ``actor``, ``critic``, ``actor_tx``, ``critic_tx`` and optionally ``reference``,
    ``baseline``, ``baseline_tx``."""
    boxed = jax.eval_shape(_state_init(**models), _typed_key(rng), None, None)
    return nn.meta.unbox(boxed), sharding_lib.tree_shardings(boxed, mesh, rules)


def _state_init(**kwargs: Any) -> Callable[[jax.Array, Any, Any], ArcherState]:
    return functools.partial(_init_state, **kwargs)


def _typed_key(rng: jax.Array) -> jax.Array:
    return rng if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(rng)


def create_state(
    rng: jax.Array,
    *,
    actor: nn.Module,
    critic: nn.Module | None,
    actor_tx: optax.GradientTransformation,
    critic_tx: optax.GradientTransformation | None,
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
    actor_params: Any = None,
    critic_encoder_params: Any = None,
    reference: bool = False,
    baseline: nn.Module | None = None,
    baseline_tx: optax.GradientTransformation | None = None,
) -> tuple[ArcherState, ArcherState]:
    """Builds the train state already sharded on ``mesh``; returns (state, shardings).

    ``rng``: a jax key (typed or raw). ``actor_params`` / ``critic_encoder_params``:
    pretrained, unboxed param trees (e.g. ``load_pretrained(...).params``) with the
    structure of a random init; None means random init. The critic's heads always
    start from random init; the target critic starts as an exact copy of the critic.
    ``critic`` None: no critic (its three fields None, ``critic_encoder_params`` unused).
    ``reference``: also keep a frozen copy of the actor (``ref_actor_params``) for a KL
    penalty. ``baseline`` / ``baseline_tx``: a token-level value module
    (``value_heads.TokenValue``) to keep, with its optimizer.
    ``shardings`` is an ArcherState of NamedShardings for the steps' in/out shardings
    and for checkpoint restore.
    """
    rng = _typed_key(rng)
    models = dict(actor=actor, critic=critic, actor_tx=actor_tx, critic_tx=critic_tx, reference=reference,
                  baseline=baseline, baseline_tx=baseline_tx)
    # The abstract state comes from a fully random init: only that one is boxed
    # everywhere, and pretrained trees must (and are checked to) match its structure.
    abstract, shardings = abstract_state(rng, mesh=mesh, rules=rules, **models)
    init = _state_init(**models)
    if critic is None and critic_encoder_params is not None:
        raise ValueError("create_state: critic_encoder_params given without a critic")
    for name, given, expected in (("actor_params", actor_params, abstract.actor_params),
                                  ("critic_encoder_params", critic_encoder_params,
                                   abstract.critic_params and abstract.critic_params["encoder"])):
        if name == "actor_params" and given is not None and _lacks_adapters(given, actor):
            # a base checkpoint under LoRA: the adapters start from their init
            lacking = _paths(expected) - _paths(given)
            if _paths(given) <= _paths(expected) and all(layers.is_adapter(p) for p in lacking):
                continue
        if given is not None and jax.tree.structure(given) != jax.tree.structure(expected):
            raise ValueError(f"create_state: {name} do not match the model's param tree; "
                             f"expected {jax.tree.structure(expected)}, got {jax.tree.structure(given)}")
    options = sharding_lib.compiler_options(mesh, keep_barriers=True)  # one model's init after the other
    state = jax.jit(lambda *a: nn.meta.unbox(init(*a)), out_shardings=shardings,
                    compiler_options=options)(rng, actor_params, critic_encoder_params)
    return state, shardings
