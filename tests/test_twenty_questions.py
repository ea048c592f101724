"""Twenty Questions: KB oracle facts, invalid questions, win detection, the Subset,
scripted players, simulated data, demo lengths and a smoke run of the trainer."""

import logging
from pathlib import Path

import numpy as np
import pytest

from archer_jax import tasks
from archer_jax.data import simulated_episodes as se
from archer_jax.data import tokenization
from archer_jax.envs import base
from archer_jax.envs import twenty_questions as tq
from archer_jax.envs import twenty_questions_objects as objects
from archer_jax.envs import twenty_questions_players as players
from archer_jax.envs.question_game import (
    OBSERVATION_HEADER,
    WIN_ANSWER,
    BatchedQuestionGame,
    format_turn,
)
from experiments.configs import twenty_questions, twenty_questions_subset

logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS logs "custom data configuration"
ROOT = Path(__file__).parent.parent
ORACLE = tq.ObjectOracle()
Y, N = tq.YES, tq.NO

# (hidden object, question, answer): facts a person could check, in varied phrasings.
FACTS = [
    # Sports
    ("Basketball", "Is it a ball?", Y), ("Tennis racket", "Does it have strings?", Y),
    ("Helmet", "Do you wear it?", Y), ("Golf ball", "Is it bigger than a breadbox?", N),
    ("Baseball bat", "Is it used in sports?", Y), ("Soccer ball", "Is it alive?", N),
    # Animals
    ("Dog", "Is it an animal?", Y), ("Dog", "Is it a mammal?", Y), ("Cow", "Does it eat meat?", N),
    ("Lion", "Does it eat meat?", Y), ("Elephant", "Is it bigger than a person?", Y), ("Cat", "Is it a pet?", Y),
    ("Sheep", "Does it live on a farm?", Y), ("Tiger", "Is it a wild animal?", Y), ("Horse", "Is it man-made?", N),
    ("Rabbit", "Does it have four legs?", Y), ("Bear", "Is it a plant?", N),
    # Fruits
    ("Banana", "Is it edible?", Y), ("Banana", "Is it a tropical fruit?", Y), ("Apple", "Is it a vegetable?", N),
    ("Watermelon", "Is it a melon?", Y), ("Peach", "Does it have a pit?", Y), ("Orange", "Is it electronic?", N),
    ("Grape", "Is it smaller than your hand?", Y), ("Strawberry", "Is it an animal?", N),
    # Vehicles
    ("Truck", "Does it have wheels?", Y), ("Airplane", "Can it fly?", Y), ("Ship", "Is it found in water?", Y),
    ("Motorcycle", "Does it have two wheels?", Y), ("Car", "Can it fly?", N), ("Train", "Is it bigger than a house?", Y),
    ("Boat", "Does it have wheels?", N), ("Bus", "Is it used for transportation?", Y), ("Helicopter", "Is it alive?", N),
    # Clothes
    ("Pants", "Is it clothing?", Y), ("Socks", "Do you wear them on your feet?", Y),
    ("Scarf", "Is it worn around the neck?", Y), ("Belt", "Is it made of leather?", Y), ("Hat", "Is it edible?", N),
    ("Shirt", "Is it made of fabric?", Y), ("Dress", "Does it have wheels?", N),
    # Electronics
    ("Computer", "Is it electronic?", Y), ("Smartphone", "Can you take pictures with it?", Y),
    ("Television", "Does it have a screen?", Y), ("Refrigerator", "Is it found in a kitchen?", Y),
    ("Headphone", "Is it alive?", N), ("Microwave", "Is it an appliance?", Y),
    ("Computer keyboard", "Does it have a screen?", N), ("Blender", "Is it a musical instrument?", N),
    # Musical instruments
    ("Piano", "Is it electronic?", N), ("Piano", "Is it a musical instrument?", Y), ("Piano", "Does it have strings?", Y),
    ("Trumpet", "Is it a wind instrument?", Y), ("Violin", "Is it made of wood?", Y), ("Flute", "Do you blow into it?", Y),
    ("Drum", "Does it have strings?", N), ("Piano", "Is it bigger than a breadbox?", Y),
    # Furniture
    ("Chair", "Is it furniture?", Y), ("Chair", "Is it used for sitting?", Y), ("Bed", "Is it found in a bedroom?", Y),
    ("Pillow", "Is it a piece of furniture?", N), ("Desk", "Is it alive?", N), ("Couch", "Is it bigger than a breadbox?", Y),
    ("Bookcase", "Is it used to store things?", Y), ("Mattress", "Do you sleep on it?", Y),
    # Office supplies
    ("Pen", "Is it used for writing?", Y), ("Pen", "Does it use ink?", Y), ("Pencil", "Does it use ink?", N),
    ("Scissors", "Is it sharp?", Y), ("Scissors", "Are they used for cutting?", Y),
    ("Toothbrush", "Is it found in a bathroom?", Y), ("Key", "Is it made of metal?", Y),
    ("Calculator", "Is it electronic?", Y), ("Toothpaste", "Can you eat it?", N), ("Stapler", "Is it alive?", N),
    # Vegetables
    ("Carrot", "Does it grow underground?", Y), ("Carrot", "Is it a root vegetable?", Y), ("Broccoli", "Is it a fruit?", N),
    ("Tomato", "Is it a vegetable?", Y), ("Potato", "Can you eat it?", Y), ("Corn", "Is it man-made?", N),
    ("Peas", "Is it bigger than a breadbox?", N), ("Cucumber", "Is it made of metal?", N),
    # Art
    ("Painting", "Is it a work of art?", Y), ("Paintbrush", "Is it used for painting?", Y), ("Glue", "Is it sticky?", Y),
    ("Eraser", "Is it made of rubber?", Y), ("Sculpture", "Is it alive?", N), ("Marker", "Is it used for writing?", Y),
    # Kitchen tools
    ("Knife", "Is it sharp?", Y), ("Spoon", "Is it used for eating?", Y), ("Cup", "Do you drink from it?", Y),
    ("Cooking pot", "Is it used for cooking?", Y), ("Plate", "Is it made of ceramic?", Y), ("Fork", "Is it electronic?", N),
    ("Chopstick", "Are they made of wood?", Y), ("Bowl", "Is it kitchenware?", Y), ("Plate", "Is it a utensil?", N),
    # Nature
    ("Mountain", "Is it bigger than a house?", Y), ("Mountain", "Is it man-made?", N), ("Ocean", "Is it salty?", Y),
    ("Lake", "Is it salt water?", N), ("River", "Is it a body of water?", Y), ("Meteorite", "Does it come from space?", Y),
    ("Tree", "Is it a plant?", Y), ("Cactus", "Is it sharp?", Y), ("Rock", "Is it alive?", N), ("Forest", "Is it a place?", Y),
    # Toys
    ("Kite", "Can it fly?", Y), ("Lego", "Is it a toy?", Y), ("Lego", "Is it made of plastic?", Y), ("Doll", "Is it alive?", N),
    ("Puzzle", "Is it edible?", N),
    # Jewelry
    ("Ring", "Is it jewelry?", Y), ("Ring", "Is it smaller than your hand?", Y), ("Watch", "Is it worn on the wrist?", Y),
    ("Necklace", "Do you wear it around your neck?", Y), ("Earring", "Is it bigger than a person?", N),
    ("Locket", "Is it made of metal?", Y),
    # Garden supplies
    ("Shovel", "Is it used for gardening?", Y), ("Lawn mower", "Does it have wheels?", Y), ("Gloves", "Do you wear them?", Y),
    ("Watering can", "Is it alive?", N), ("Rake", "Is it a tool?", Y),
    # Tools
    ("Hammer", "Is it a tool?", Y), ("Drill", "Is it electronic?", Y), ("Saw", "Is it used for cutting?", Y),
    ("Wrench", "Is it made of metal?", Y), ("Screwdriver", "Is it edible?", N), ("Pliers", "Is it a toy?", N),
    # Other phrasings of the same tests
    ("Banana", "Is it something you can eat?", Y), ("Banana", "Can it be eaten?", Y),
    ("Banana", "Is the object a kind of fruit?", Y), ("Dog", "Would you find it in a home?", Y),
    ("Chair", "Is it an item of clothing?", N), ("Elephant", "IS IT BIGGER THAN A PERSON", Y),
    ("Couch", "Is it a piece of furniture?", Y), ("Dog", "Are they animals?", Y), ("Cat", "Is it a living thing?", Y),
    # Naming an object
    ("Soccer ball", "Is it a soccer ball?", Y), ("Tennis ball", "Is it a soccer ball?", N), ("Television", "Is it a TV?", Y),
    ("Scissors", "Is it a pair of scissors?", Y), ("Dog", "Is this object a dog?", Y), ("Dog", "Is it a cat?", N),
]


@pytest.mark.parametrize("hidden,question,expected", FACTS)
def test_oracle_facts(hidden, question, expected):
    assert ORACLE.answer([hidden], [question]) == [expected]


def test_facts_cover_every_category():
    assert {objects.OBJECT_BY_NAME[h].category for h, _, _ in FACTS} == set(objects.CATEGORIES)
    assert len(objects.OBJECTS) == 157 and len(objects.CATEGORIES) == 17


@pytest.mark.parametrize("question", [
    "What is it?", "Tell me the answer.", "", "Is it not an animal?", "Isn't it an animal?",
    "Is it a dog or a cat?", "Is it bigger than a car?", "Is the sky blue?", "Is a dog an animal?",
    "Can you tell me?", "Is it purple?", "Does it have a soul?", "Which category is it in?",
])
def test_invalid_questions(question):
    assert ORACLE.answer(["Dog"], [question]) == [tq.INVALID]


@pytest.mark.parametrize("hidden,question,won", [
    ("Dog", "Is it a dog?", True),
    ("Soccer ball", "Is it a soccer ball?", True),  # the reference could never win this one
    ("Tennis racket", "Is it a tennis racket?", True),
    ("Lawn mower", "is it a lawn mower", True),
    ("Television", "Is it a TV?", True),
    ("Airplane", "Is it a plane?", True),
    ("Scissors", "Is it a pair of scissors?", True),
    ("Computer keyboard", "Is it a keyboard?", True),
    ("Computer", "Is it a computer keyboard?", False),
    ("Soccer ball", "Is it a ball?", False),
    ("Soccer ball", "Is it a football?", False),
    ("Dog", "Is it a cat?", False),
    ("Dog", "Is it a dog or a cat?", False),
    ("Dog", "Is it a cat or a dog?", False),
    ("Dog", "Is it a dog, a cat, a horse or a cow?", False),
    ("Dog", "Is it a dog that barks?", False),
    ("Cat", "Is it bigger than a cat?", False),
    ("Dog", "Dog?", False),
])
def test_success_detection(hidden, question, won):
    assert tq.is_success(hidden, question) is won


def test_every_guess_wins_for_its_object_only():
    for thing, guess in zip(objects.OBJECTS, players.GUESSES):
        assert [t.name for t in objects.OBJECTS if tq.is_success(t.name, guess)] == [thing.name], guess


def test_questions_naming_several_objects_never_win():
    everything = "Is it " + ", ".join(f"a {name.lower()}" for name in objects.OBJECT_NAMES) + "?"
    assert not any(tq.is_success(name, everything) for name in objects.OBJECT_NAMES)
    for guess in players.GUESSES:
        pair = guess[:-1] + " and a dog?"
        assert not any(tq.is_success(name, pair) for name in objects.OBJECT_NAMES), pair


def test_win_ends_the_game():
    env = BatchedQuestionGame(tq.twenty_questions_task(), 1)
    env.reset([0], hidden_items=["Soccer ball"])
    _, rewards, dones = env.step(["Is it a ball?"])
    assert (rewards[0], dones[0]) == (-1.0, False)
    _, rewards, dones = env.step(["Is it a soccer ball?"])
    assert (rewards[0], dones[0], env.successes[0]) == (0.0, True, True)
    assert env.history(0) == [("Is it a ball?", Y), ("Is it a soccer ball?", WIN_ANSWER)]


def test_subset_hides_only_its_ten_objects():
    subset = tasks.get("twenty_questions_subset").game({})
    full = tasks.get("twenty_questions").game({})
    assert subset.items == tq.SUBSET and len(full.items) == 157
    assert (subset.name, full.name) == ("twenty_questions_subset", "twenty_questions")
    assert subset.is_success is full.is_success and type(subset.oracle) is type(full.oracle)
    assert tasks.get("twenty_questions_subset").players is tasks.get("twenty_questions").players
    env = tasks.get("twenty_questions_subset").make_env({}, 64)
    env.reset(list(range(64)))
    assert set(env.hidden) <= set(tq.SUBSET) and len(set(env.hidden)) > 5
    with pytest.raises(ValueError, match="config.env.num_items"):
        tasks.get("twenty_questions_subset").game({"num_items": 11})


def test_bad_items_are_named():
    with pytest.raises(ValueError, match="Unicorn"):
        tq.twenty_questions_task(items=["Unicorn"])
    with pytest.raises(ValueError, match="2 hidden items but 1 questions"):
        ORACLE.answer(["Dog", "Cat"], ["Is it a dog?"])


def test_every_template_gets_yes_or_no_for_every_object():
    for question in players.TEMPLATES:
        assert set(ORACLE.answer(list(objects.OBJECT_NAMES), [question] * len(objects.OBJECTS))) <= {Y, N}, question


def test_informative_player_wins_every_game():
    task = tq.twenty_questions_task()
    env = BatchedQuestionGame(task, len(task.items))
    observations = env.reset(list(range(len(task.items))), hidden_items=list(task.items))
    rngs = [np.random.default_rng([1, i]) for i in range(len(task.items))]
    while not env.dones.all():
        observations, _, _ = env.step([players.informative(o, r) if not d else ""
                                       for o, r, d in zip(observations, rngs, env.dones)])
    assert env.successes.all(), [task.items[i] for i in np.flatnonzero(~env.successes)]
    turns = [len(env.history(i)) for i in range(len(task.items))]
    assert 6 <= np.mean(turns) <= 11 and max(turns) <= 16


def test_default_mix_is_clearly_imperfect():
    task = tasks.get("twenty_questions")
    stats = base.summarize(base.simulate_episodes(task, {}, players.DEFAULT_MIX, 300, seed=0))
    assert 0.45 <= stats["all"]["win_rate"] <= 0.7
    assert stats["all"]["mean_return"] <= stats["informative"]["mean_return"] - 4
    for name in ("redundant", "noisy", "early_guesser"):
        assert stats[name]["win_rate"] < 1.0 and stats[name]["mean_return"] < stats["informative"]["mean_return"]
    pool = set(players.question_pool())
    episodes = base.simulate_episodes(task, {}, players.DEFAULT_MIX, 40, seed=1)
    assert all(q in pool for ep in episodes for q in ep["actions"])


@pytest.mark.parametrize("task_name", ["twenty_questions", "twenty_questions_subset"])
def test_simulated_data_builds_and_reads_back(tmp_path, task_name):
    config = se.episodes_config(task_name, num_episodes=40, seed=3)
    episodes = se.load_episodes(tmp_path, config)
    task = tasks.get(task_name)
    assert episodes == base.simulate_episodes(task, {}, players.DEFAULT_MIX, 40, seed=3)
    assert {ep["task"] for ep in episodes} == {task_name}
    assert {ep["hidden"] for ep in episodes} <= set(task.game({}).items)
    assert any(ep["success"] for ep in episodes) and not all(ep["success"] for ep in episodes)


@pytest.mark.parametrize("module", [twenty_questions, twenty_questions_subset])
def test_demo_fits_a_whole_templated_conversation(module):
    config = module.get_config("demo")
    assert config.env.max_turns == 20
    tok = tokenization.build_word_tokenizer(tasks.get(config.task).corpus(config.env))

    def length(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    pool = players.question_pool()
    turn = max(length(format_turn(q, a)) for q in pool for a in (Y, N))
    win = max(length(format_turn(q, WIN_ANSWER)) for q in pool)
    assert length(OBSERVATION_HEADER) + (config.env.max_turns - 1) * turn + win <= config.tokens.obs_len
    assert max(length(q) for q in pool) + 1 <= config.tokens.action_len  # + the terminator


def test_paper_variant_uses_the_paper_hyperparameters():
    for module in (twenty_questions, twenty_questions_subset):
        config = module.get_config("paper")
        assert (config.actor.lr, config.critic.lr, config.archer.warmup_iter) == (1e-6, 2e-5, 20)
        assert (config.archer.rollout_size, config.archer.gamma, config.env.num_items) == (128, 0.95, 0)
