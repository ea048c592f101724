"""Does a task's knowledge-base oracle answer the question asked? A check on held-out
questions in an LM questioner's phrasings, with the true answer for each.

    python -m experiments.check_oracle experiments/data/guess_city_questions.json [--write docs/oracles.md]

The questions file (JSON) names its ``task`` and lists ``questions``: each has the
question ``q`` and the hidden items it is asked about, under ``yes`` / ``no`` (the true
answer) or ``open`` (not a yes/no question). For every (item, question) pair the task's
oracle replies, and the reply is

- *unanswered* when it is the oracle's fallback, a refusal (``CANT_ANSWER``, one city at
  a time, Twenty Questions' "Invalid Question.") or says it does not know ("I don't
  know", "I can't say", "I'm not sure");
- *wrong* when the truth is yes or no and the reply starts with the other word;
- answered otherwise (a reply that gives the fact without a yes or no is answered, and
  cannot be wrong by this count).

Prints the counts, the answered fraction and every wrong and unanswered pair; ``--write``
puts them in a Markdown file with the command that made it. Exit code 1 when a yes/no
reply is wrong, 2 for a bad questions file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from archer_jax import tasks
from archer_jax.envs import guess_city, twenty_questions

UNANSWERED_STARTS = ("I don't know", "I can't say", "I'm not sure")
REFUSALS = (guess_city.FALLBACK_ANSWER, guess_city.CANT_ANSWER, guess_city.ONE_CITY_ONLY, twenty_questions.INVALID)
TRUTHS = ("yes", "no", "open")


@dataclasses.dataclass(frozen=True)
class Reply:
    item: str
    question: str
    truth: str  # "yes", "no" or "open"
    text: str

    @property
    def answered(self) -> bool:
        return self.text not in REFUSALS and not self.text.startswith(UNANSWERED_STARTS)

    @property
    def says(self) -> str | None:
        word = self.text.split(",")[0].split(".")[0].strip().lower()
        return word if word in ("yes", "no") else None

    @property
    def wrong(self) -> bool:
        return self.truth in ("yes", "no") and self.says is not None and self.says != self.truth


class QuestionsError(ValueError):
    """A malformed questions file (named in the message)."""


def load(path: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """(task name, [(item, question, truth)]) from a questions file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise QuestionsError(f"{path}: cannot read it as JSON ({e})") from e
    task = data.get("task") if isinstance(data, dict) else None
    if task not in tasks.builtin() or not hasattr(tasks.builtin()[task], "game"):
        known = [name for name, t in tasks.builtin().items() if hasattr(t, "game")]
        raise QuestionsError(f"{path}: 'task' must be one of {known}, got {task!r}")
    items = set(tasks.get(task).game({}).items)
    pairs = []
    for k, entry in enumerate(data.get("questions") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("q"), str):
            raise QuestionsError(f"{path}: questions[{k}] needs a question string 'q'")
        for truth in TRUTHS:
            for item in entry.get(truth, []):
                if item not in items:
                    raise QuestionsError(f"{path}: questions[{k}] ({entry['q']!r}) names {item!r}, not a {task} item")
                pairs.append((item, entry["q"], truth))
    if not pairs:
        raise QuestionsError(f"{path}: no (item, question) pairs; list items under {TRUTHS}")
    return task, pairs


def check(task_name: str, pairs: list[tuple[str, str, str]]) -> list[Reply]:
    oracle = tasks.get(task_name).game({}).oracle
    texts = oracle.answer([item for item, _, _ in pairs], [q for _, q, _ in pairs])
    return [Reply(item, q, truth, text) for (item, q, truth), text in zip(pairs, texts)]


def summary(replies: list[Reply]) -> dict[str, float | int]:
    yes_no = [r for r in replies if r.truth != "open"]
    return {"pairs": len(replies), "questions": len({r.question for r in replies}),
            "answered": sum(r.answered for r in replies),
            "answered_fraction": sum(r.answered for r in replies) / len(replies),
            "yes_no_pairs": len(yes_no), "yes_no_said": sum(r.says is not None for r in yes_no),
            "wrong": sum(r.wrong for r in replies)}


def render(path: Path, replies: list[Reply], command: str) -> str:
    s = summary(replies)
    lines = [f"## `{path.name}`", "", "```bash", command, "```", "",
             f"- {s['questions']} questions, {s['pairs']} (hidden item, question) pairs, "
             f"{s['yes_no_pairs']} of them yes/no questions.",
             f"- Answered: {s['answered']} of {s['pairs']} ({100 * s['answered_fraction']:.1f}%).",
             f"- Yes/no questions answered with a yes or a no: {s['yes_no_said']} of {s['yes_no_pairs']}; "
             f"wrong: {s['wrong']}.", ""]
    for title, chosen in (("Wrong", [r for r in replies if r.wrong]),
                          ("Unanswered", [r for r in replies if not r.answered])):
        lines += [f"{title} ({len(chosen)}):", ""]
        lines += [f"- {r.item}: {r.question} (truth: {r.truth}) -> {r.text}" for r in chosen] or ["- none"]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", type=Path, nargs="+", help="questions files (JSON)")
    parser.add_argument("--write", type=Path, help="also write the report to this Markdown file")
    args = parser.parse_args(argv)
    sections, wrong = [], 0
    for path in args.questions:
        try:
            task, pairs = load(path)
        except QuestionsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        replies = check(task, pairs)
        sections.append(render(path, replies, f"python -m experiments.check_oracle {path}"))
        wrong += summary(replies)["wrong"]
    report = "\n".join(sections)
    print(report)
    if args.write:
        header = ("# Oracle checks\n\nGenerated by `experiments/check_oracle.py`; do not edit by hand. "
                  "Regenerate with:\n\n"
                  "```bash\npython -m experiments.check_oracle " + " ".join(map(str, args.questions))
                  + f" --write {args.write}\n```\n\n")
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(header + report)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
