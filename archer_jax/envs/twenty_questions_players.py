"""Scripted Twenty Questions players of mixed quality (strategies from `scripted`).

Every template question is a yes/no question whose attribute test is the one the KB
oracle reads from it (`twenty_questions.parse`), so players and oracle cannot disagree.
The same players serve the Subset: they know all 157 objects, not which ten are hidden.
"""

from __future__ import annotations

from archer_jax.envs import scripted
from archer_jax.envs import twenty_questions as tq
from archer_jax.envs.question_game import QuestionGame
from archer_jax.envs.twenty_questions_objects import OBJECTS, Thing

# Short on purpose (at most 7 word-tokens): a whole 20-turn dialogue has to fit a tiny
# model's observation.
TEMPLATES: tuple[str, ...] = (
    # what kind of thing
    "Is it an animal?", "Is it a pet?", "Is it a farm animal?", "Is it a wild animal?", "Is it a plant?",
    "Is it a fruit?", "Is it a tropical fruit?", "Is it a melon?", "Is it a vegetable?", "Is it a root vegetable?",
    "Is it a vehicle?", "Is it clothing?", "Is it an appliance?", "Is it a musical instrument?",
    "Is it a wind instrument?", "Is it furniture?", "Is it an office supply?", "Is it an art supply?",
    "Is it a work of art?", "Is it kitchenware?", "Is it a utensil?", "Is it a tool?", "Is it a toy?", "Is it jewelry?",
    "Is it a ball?", "Is it a body of water?", "Is it a place?",
    # traits and size
    "Is it alive?", "Is it man-made?", "Can you eat it?", "Is it electronic?", "Is it sharp?", "Is it sticky?",
    "Can it fly?", "Does it eat meat?", "Does it come from space?", "Does it grow underground?", "Is it salty?",
    "Is it handheld?", "Is it smaller than your hand?", "Is it bigger than a breadbox?",
    "Is it bigger than a person?", "Is it bigger than a house?",
    # materials and places
    "Is it made of wood?", "Is it made of metal?", "Is it made of plastic?", "Is it made of glass?",
    "Is it made of fabric?", "Is it made of leather?", "Is it made of rubber?", "Is it made of stone?",
    "Is it made of ceramic?", "Is it found in a home?", "Is it found in a kitchen?", "Is it found in a bedroom?",
    "Is it found in a bathroom?", "Is it found in an office?", "Is it found outdoors?", "Is it found in water?",
    # uses and parts
    "Is it used for writing?", "Is it used for cutting?", "Is it used for cooking?", "Is it used for eating?",
    "Is it used for drinking?", "Is it used for sitting?", "Is it used for sleeping?", "Is it used for storage?",
    "Is it used for cleaning?", "Is it used for transportation?", "Is it used for gardening?",
    "Is it used in sports?", "Is it used for painting?", "Can you take pictures with it?", "Do you wear it?",
    "Is it worn on the feet?", "Is it worn around the neck?", "Is it worn on the wrist?",
    "Does it have wheels?", "Does it have two wheels?", "Does it have four legs?", "Does it have a screen?",
    "Does it have strings?", "Does it use ink?", "Does it have a pit?",
)


def _probe(question: str) -> scripted.Probe:
    feature = tq.parse(question)
    if feature is None or feature.field == "name":
        raise ValueError(f"template {question!r} is not an attribute question the oracle reads")
    return scripted.Probe(question, feature, scripted.read_yes_no)


PROBES: tuple[scripted.Probe, ...] = tuple(_probe(q) for q in TEMPLATES)

# How a guess names an object when "a(n) <name>" reads wrong.
_GUESS_PHRASES = {"Paper": "a piece of paper", "Peas": "a pea", "Lego": "a Lego set", "Toothpaste": "toothpaste",
                  "Glue": "glue", "Spinach": "spinach", "Corn": "corn", "Celery": "celery", "Broccoli": "broccoli"}


def guess_question(thing: Thing) -> str:
    pair = next((n for n in thing.names if n.lower().startswith("pair of ")), None)
    if thing.name in _GUESS_PHRASES:
        phrase = _GUESS_PHRASES[thing.name]
    elif pair:
        phrase = "a " + pair.lower()
    else:
        phrase = ("an " if thing.name[0] in "AEIOU" else "a ") + thing.name.lower()
    return f"Is it {phrase}?"


GUESSES: tuple[str, ...] = tuple(guess_question(t) for t in OBJECTS)


def question_pool() -> list[str]:
    """Every question a scripted player can ask: the template set."""
    return list(TEMPLATES) + list(GUESSES)


TABLE = scripted.ProbeTable(OBJECTS, PROBES, GUESSES)
# Best-split yes/no questions, a guess at <= 2 left: wins every game against the KB
# oracle, in about 9 turns on average.
informative = scripted.best_split(TABLE, TEMPLATES)

QUESTIONERS: dict[str, scripted.Questioner] = {
    "informative": informative,
    "redundant": scripted.repeating(informative),
    "noisy": scripted.random_questions(TABLE, (TEMPLATES,)),
    # Three good questions leave about twenty objects; then it guesses among them.
    "early_guesser": scripted.early_guessing(informative, TABLE, questions=3),
}
# Clearly imperfect on purpose (measured on 2,000 episodes: 57% wins and mean return
# -14.1, against 100% and -7.2 for `informative`), so RL has room above imitation.
DEFAULT_MIX: dict[str, float] = {"informative": 0.25, "redundant": 0.2, "noisy": 0.3, "early_guesser": 0.25}

# The task objects (envs.base.Task). The Subset is the same game with the same players;
# only the hidden items differ.
TASKS = (
    QuestionGame("twenty_questions", tq.twenty_questions_task, QUESTIONERS, DEFAULT_MIX, question_pool, TABLE,
                 oracle_format=tq.LM_ORACLE_FORMAT, lmrl_gym="Twenty Questions"),
    QuestionGame("twenty_questions_subset", tq.twenty_questions_subset_task, QUESTIONERS, DEFAULT_MIX,
                 question_pool, TABLE, oracle_format=tq.LM_ORACLE_FORMAT),
)
