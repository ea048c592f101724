"""Greedy evaluation of a run's latest checkpoint, outside training.

    python -m experiments.evaluate --workdir=/tmp/gc_demo [--episodes=256 --transcripts=4 --seed_offset=0]
    python -m experiments.evaluate --workdir=/tmp/gc_demo --temperature=0.3   # the policy pi_0.3, sampled

Plays ``--episodes`` games (default: the run's config.archer.eval_size) with the
checkpoint's actor, greedily, as training's evaluations do (``rollout.play_evaluation``),
or with ``--temperature`` > 0 sampled at it (e.g. the config's actor_temperature: the
policy the actor phase trains, where greedy decoding reads only its argmax):
game k has seed EVAL_SEED_BASE + seed_offset + k, so with the default offset 0 the games
are training's evaluation games, and with ``--episodes`` = config.archer.eval_size the
numbers equal the run's last evaluation of the same checkpoint (another offset gives
games training never evaluated on). Prints the mean return, its standard error, the
success rate and the mean turns, then one JSON line.

Writes ``<workdir>/evaluate/<stage>_<iteration:06d>_n<N>_offset<O>[_T<t>].json`` (the
numbers and every episode: seed, hidden item, return, success, turns) and, with
``--transcripts`` > 0, the first dialogues in ``<same name>.txt``. Nothing else in the
folder changes; the checkpoints are opened read-only, so a run may be evaluated while
it trains (its latest complete checkpoint). Single process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from experiments import run_folder
from experiments.run_folder import fail

_EPISODES = flags.DEFINE_integer("episodes", None, "games to play (default: the run's config.archer.eval_size)")
_TRANSCRIPTS = flags.DEFINE_integer("transcripts", 4, "dialogues written to the transcript file (0: none)")
_SEED_OFFSET = flags.DEFINE_integer("seed_offset", 0, "game k has seed EVAL_SEED_BASE + seed_offset + k "
                                    "(0: training's evaluation games)")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0: greedy, as training evaluates; > 0: games sampled at "
                                  "this temperature (seeded, so repeatable)")

EVALUATE_DIR = "evaluate"


def evaluate(run: Any, *, episodes: int, seed_offset: int, temperature: float = 0.0) -> tuple[dict[str, Any], Any]:
    """(summary, rollout.Evaluation) of ``episodes`` games of the run's actor, greedy
    or sampled at ``temperature``."""
    from archer_jax import rollout, trainer

    compiles, t0 = trainer.CompileCounter.count, time.perf_counter()
    evaluation = rollout.play_evaluation(run.runner, run.state.actor_params, size=episodes, seed_offset=seed_offset,
                                         temperature=temperature)
    summary = {
        "workdir": str(run.workdir), "checkpoint_step": run.checkpointer.latest_step(),
        "stage": run.progress.get("stage"), "iteration": run.progress.get("iteration"),
        "episodes": episodes, "seed_offset": seed_offset, "temperature": temperature,
        "first_seed": evaluation.seeds[0],
        **evaluation.metrics(), "compiles": trainer.CompileCounter.count - compiles,
        "time_s": round(time.perf_counter() - t0, 2),
    }
    return summary, evaluation


def write_result(run: Any, summary: dict[str, Any], evaluation: Any, transcripts: int) -> Path:
    """Writes the result JSON (and the transcripts) under <workdir>/evaluate/; records
    the paths in ``summary``; returns the JSON's path."""
    folder = run.workdir / EVALUATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = (f"{summary['stage']}_{int(summary['iteration']):06d}_n{summary['episodes']}"
            f"_offset{summary['seed_offset']}" + (f"_T{summary['temperature']:g}" if summary["temperature"] else ""))
    path = folder / f"{name}.json"
    summary["file"] = str(path)
    if transcripts:
        text = folder / f"{name}.txt"
        rule = "=" * 72
        parts = [f"checkpoint {summary['checkpoint_step']} ({summary['stage']} iteration {summary['iteration']}), "
                 f"{min(transcripts, len(evaluation.dialogues))} of {summary['episodes']} {_games(summary)}\n"]
        for i, dialogue in enumerate(evaluation.dialogues[:transcripts]):
            parts.append(f"{rule}\ndialogue {i} (seed {evaluation.seeds[i]}, return {evaluation.returns[i]:g})\n"
                         f"{rule}\n{dialogue.rstrip()}\n")
        text.write_text("\n".join(parts), encoding="utf-8")
        summary["transcripts_file"] = str(text)
    episodes = [{"seed": int(s), "hidden": h, "return": float(r), "success": bool(w), "turns": int(t)}
                for s, h, r, w, t in zip(evaluation.seeds, evaluation.hidden, evaluation.returns,
                                         evaluation.successes, evaluation.lengths)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**summary, "episodes_detail": episodes}, indent=1) + "\n")
    tmp.replace(path)
    return path


def _games(summary: dict[str, Any]) -> str:
    return f"games sampled at temperature {summary['temperature']:g}" if summary["temperature"] else "greedy games"


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if _EPISODES.value is not None and _EPISODES.value < 1:
        fail(f"--episodes={_EPISODES.value}: must be >= 1")
    if _TRANSCRIPTS.value < 0:
        fail(f"--transcripts={_TRANSCRIPTS.value}: must be >= 0")
    if _SEED_OFFSET.value < 0:
        fail(f"--seed_offset={_SEED_OFFSET.value}: must be >= 0")
    if _TEMPERATURE.value < 0:
        fail(f"--temperature={_TEMPERATURE.value}: must be >= 0 (0 = greedy)")
    run = run_folder.open_run()
    try:
        episodes = _EPISODES.value or run.config.archer.eval_size
        summary, evaluation = evaluate(run, episodes=episodes, seed_offset=_SEED_OFFSET.value,
                                       temperature=_TEMPERATURE.value)
    finally:
        run.checkpointer.close()
    write_result(run, summary, evaluation, _TRANSCRIPTS.value)
    print(f"evaluation of {summary['workdir']} at checkpoint {summary['checkpoint_step']} ({summary['stage']} "
          f"iteration {summary['iteration']}): {episodes} {_games(summary)} from seed {summary['first_seed']} in "
          f"{summary['time_s']:.0f} s")
    print(f"  return {summary['eval/return_mean']:.3f} +- {summary['eval/return_se']:.3f} (SE), success rate "
          f"{summary['eval/success_rate']:.3f}, turns {summary['eval/turns_mean']:.2f}")
    print(f"  written: {summary['file']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.argv = run_folder.prepare_argv(sys.argv)
    app.run(main)
