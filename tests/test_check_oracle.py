"""experiments.check_oracle: the held-out oracle questions, run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import check_oracle

ROOT = Path(__file__).resolve().parent.parent
GUESS_CITY = ROOT / "experiments" / "data" / "guess_city_questions.json"


def test_the_guess_city_oracle_answers_the_held_out_questions_and_never_says_a_wrong_yes_or_no(tmp_path):
    out = tmp_path / "oracles.md"
    done = subprocess.run([sys.executable, "-m", "experiments.check_oracle", str(GUESS_CITY), "--write", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    task, pairs = check_oracle.load(GUESS_CITY)
    summary = check_oracle.summary(check_oracle.check(task, pairs))
    assert summary["pairs"] >= 300 and summary["wrong"] == 0
    assert summary["answered_fraction"] >= 0.9
    text = out.read_text()
    assert f"Answered: {summary['answered']} of {summary['pairs']}" in text and "wrong: 0." in text


def test_the_twenty_questions_oracle_on_its_held_out_questions():
    task, pairs = check_oracle.load(ROOT / "experiments" / "data" / "twenty_questions_questions.json")
    replies = check_oracle.check(task, pairs)
    summary = check_oracle.summary(replies)
    assert summary["pairs"] >= 300 and summary["answered_fraction"] >= 0.84
    assert summary["wrong"] == 0, [(r.item, r.question) for r in replies if r.wrong]


def test_reply_classification():
    def reply(text, truth="yes"):
        return check_oracle.Reply("Paris", "Is it on the Seine?", truth, text)

    assert reply("Yes, the city lies on or near the Seine.").says == "yes"
    assert reply("No, the city lies on the Seine.", truth="yes").wrong
    assert not reply("The city is not on the coast.", truth="yes").wrong  # a fact without yes/no
    assert not reply("I don't know whether the city lies on the Nile.").answered
    assert not reply(check_oracle.guess_city.FALLBACK_ANSWER).answered
    assert not reply("Nobody knows.").wrong  # "Nobody" is not "No"


@pytest.mark.parametrize("content,named", [
    ("{not json", "cannot read it as JSON"),
    (json.dumps({"task": "chess", "questions": []}), "'task' must be one of"),
    (json.dumps({"task": "guess_city", "questions": [{"q": "Is it big?", "yes": ["Atlantis"]}]}),
     "names 'Atlantis', not a guess_city item"),
    (json.dumps({"task": "guess_city", "questions": [{"yes": ["Paris"]}]}), "questions[0] needs a question"),
    (json.dumps({"task": "guess_city", "questions": []}), "no (item, question) pairs"),
])
def test_a_bad_questions_file_is_one_message_naming_it(tmp_path, content, named):
    path = tmp_path / "q.json"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "experiments.check_oracle", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path}") and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
