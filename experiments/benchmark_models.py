"""Forward and cached-decode throughput of the causal LMs (a benchmark, not a test).

    python -m experiments.benchmark_models --preset=tiny
    python -m experiments.benchmark_models --preset=gpt2-small --batch=8 --prompt_len=128 --new_tokens=32

Random weights; medians over ``--repeats`` timed calls after one warm-up (compile)
call. The last stdout line is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from archer_jax import sampling, sharding
from archer_jax.models import gpt2, llama

PRESETS = {
    "tiny": ("gpt2", dict(vocab_size=2000, n_positions=512, n_embd=128, n_layer=2, n_head=4)),
    "gpt2-small": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)),
    "llama-tiny": ("llama", dict(vocab_size=2000, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)),
}


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    family, dims = PRESETS[args.preset]
    dtype = jnp.dtype(args.dtype)
    if family == "gpt2":
        config = gpt2.GPT2Config(**dims, dtype=dtype)
        module = gpt2.GPT2LMHeadModel(config)
    else:
        config = llama.LlamaConfig(**dims, dtype=dtype)
        module = llama.LlamaForCausalLM(config)
    mesh = sharding.make_mesh((-1, 1, 1))
    b, p, t = args.batch, args.prompt_len, args.new_tokens
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, config.vocab_size, (b, p)), jnp.int32)
    mask = jnp.ones((b, p), jnp.int32)
    params, _ = sharding.init_sharded(lambda k: module.init(k, ids[:1, :8], mask[:1, :8])["params"], mesh,
                                      sharding.DEFAULT_RULES, jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(params))

    forward = jax.jit(lambda params, ids, mask: module.apply({"params": params}, ids, mask).logits)
    decode = jax.jit(partial(sampling.generate, module, max_new_tokens=t, stop_ids=(), pad_id=0))
    fwd_s = _median_seconds(lambda: forward(params, ids, mask), args.repeats)
    gen_s = _median_seconds(lambda: decode(params, ids, mask, jax.random.key(1), 1.0).tokens, args.repeats)
    result = {
        "preset": args.preset, "params": int(n_params), "batch": b, "prompt_len": p, "new_tokens": t,
        "dtype": args.dtype, "device": str(jax.devices()[0].platform), "num_devices": jax.device_count(),
        "forward_s": fwd_s, "forward_tokens_per_s": b * p / fwd_s,
        "generate_s": gen_s, "decode_tokens_per_s": b * t / gen_s,
    }
    print(f"{args.preset}: {n_params / 1e6:.1f}M params, batch {b}, prompt {p}, new {t}, {args.dtype}")
    print(f"  forward  {fwd_s * 1e3:9.1f} ms  {result['forward_tokens_per_s']:12.0f} tokens/s")
    print(f"  generate {gen_s * 1e3:9.1f} ms  {result['decode_tokens_per_s']:12.0f} new tokens/s (prefill included)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
