"""Twenty Questions: its knowledge-base oracle, the win condition and the task.

The hidden items are the objects of `twenty_questions_objects`. The oracle reads a
yes/no question into one attribute test on the object table and answers "Yes." or
"No.", or "Invalid Question." when the question is not a yes/no question about the
object or uses words it does not know. Reading is exact phrase lookup after a small
normalization (no fuzzy matching), so every answer is deterministic and traceable to
one table entry.

A question wins when the oracle would say yes, its last words name the hidden object
(any synonym, multi-word names included: the reference compared only the last word,
so "soccer ball" could never be won) and it names no other object.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

from archer_jax.envs.question_game import MAX_TURNS, OracleFormat, QuestionTask
from archer_jax.envs.twenty_questions_objects import (
    MATERIALS,
    OBJECT_BY_NAME,
    OBJECT_NAMES,
    OBJECTS,
    SIZES,
    Thing,
)

YES, NO, INVALID = "Yes.", "No.", "Invalid Question."

# The paper's Twenty Questions Subset (ArCHer, llm_twenty_questions_subset.py).
SUBSET = ("Football", "Dog", "Banana", "Truck", "Pants", "Computer", "Piano", "Chair", "Pen", "Scissors")


# ---------------------------------------------------------------------------- naming objects
def _plurals(phrase: str) -> set[str]:
    last = phrase.split()[-1]
    stem = phrase[: len(phrase) - len(last)]
    forms = {phrase}
    if last.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(phrase + "es")
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        forms.add(stem + last[:-1] + "ies")
    elif last.endswith("o"):
        forms |= {phrase + "s", phrase + "es"}
    else:
        forms.add(phrase + "s")
    irregular = {"knife": "knives", "cactus": "cacti"}
    if last in irregular:
        forms.add(stem + irregular[last])
    return forms


def _object_forms() -> dict[str, str]:
    forms: dict[str, str] = {}
    for thing in OBJECTS:
        for name in thing.names:
            for form in _plurals(name.lower()):
                if forms.setdefault(form, thing.name) != thing.name:
                    raise ValueError(f"{form!r} names both {forms[form]} and {thing.name}")
    return forms


OBJECT_FORMS: dict[str, str] = _object_forms()
# Longest first, so "computer keyboard" is one object, not "computer" and "keyboard".
_OBJECT_RE = re.compile(r"\b(" + "|".join(map(re.escape, sorted(OBJECT_FORMS, key=len, reverse=True))) + r")\b")


def normalize(question: str) -> str:
    """Lowercase, single spaces, no trailing punctuation: the form every rule reads."""
    return " ".join(question.lower().replace("\u2019", "'").split()).rstrip("?!. ")


def objects_named(question: str) -> list[tuple[str, int]]:
    """(object name, end offset in `normalize(question)`) for each object the question names."""
    return [(OBJECT_FORMS[m.group(1)], m.end()) for m in _OBJECT_RE.finditer(normalize(question))]


# ---------------------------------------------------------------------------- the question reader
@dataclasses.dataclass(frozen=True)
class Feature:
    """One attribute test: `field` holds `value` (sizes: at least / at most a band).

    `holds=False` asks for the absence ("man-made" = not natural).
    """

    field: str
    value: str
    holds: bool = True

    def __call__(self, thing: Thing) -> bool:
        if self.field == "name":
            found = thing.name == self.value
        elif self.field == "min_size":
            found = SIZES.index(thing.size) >= SIZES.index(self.value)
        elif self.field == "max_size":
            found = SIZES.index(thing.size) <= SIZES.index(self.value)
        else:
            found = self.value in getattr(thing, self.field)
        return found == self.holds


def _gerund_phrases(use: str, gerunds: Sequence[str], verbs: Sequence[str]) -> dict[str, Feature]:
    feature = Feature("uses", use)
    be = {f"used for {g}": feature for g in gerunds} | {f"for {g}": feature for g in gerunds}
    be |= {f"used to {v}": feature for v in verbs}
    you = {f"use for {g}": feature for g in gerunds} | {f"use to {v}": feature for v in verbs}
    return be | {"you: " + k: f for k, f in you.items()}


def _build_lexicon() -> dict[str, Feature]:
    """Every phrasing the oracle understands, as `parse` normalizes it (articles and
    fillers such as "usually" dropped).

    Keys: "<predicate>" after "Is it ...", "do: <predicate>" after "Does it ...",
    "you: <predicate>" after "Can/Do/Would you ... it ..." (the pronoun removed).
    """
    kind_nouns = {
        "animal": ("animal", "creature"), "mammal": ("mammal",), "pet": ("pet", "household pet"),
        "farm_animal": ("farm animal", "livestock"), "wild_animal": ("wild animal",), "plant": ("plant",),
        "fruit": ("fruit",), "tropical_fruit": ("tropical fruit",), "melon": ("melon",),
        "vegetable": ("vegetable", "veggie"), "root_vegetable": ("root vegetable",),
        "vehicle": ("vehicle", "means of transport", "means of transportation", "mode of transportation"),
        "clothing": ("clothing", "clothes", "garment"), "appliance": ("appliance", "kitchen appliance",
                                                                     "household appliance"),
        "instrument": ("instrument", "musical instrument"), "wind_instrument": ("wind instrument",),
        "furniture": ("furniture",), "office_supply": ("office supply", "office supplies", "stationery"),
        "art_supply": ("art supply", "art supplies"), "artwork": ("work of art", "artwork", "art"),
        "kitchenware": ("kitchenware", "kitchen tool", "kitchen item"),
        "utensil": ("utensil", "kitchen utensil", "eating utensil"), "tool": ("tool", "hand tool"),
        "toy": ("toy",), "jewelry": ("jewelry", "jewellery"), "ball": ("ball",),
        "body_of_water": ("body of water",), "place": ("place", "location"),
    }
    lexicon: dict[str, Feature] = {}
    for kind, nouns in kind_nouns.items():
        for noun in nouns:
            lexicon |= dict.fromkeys(_plurals(noun), Feature("kinds", kind))
    traits = {
        "alive": ("alive", "living", "living thing", "organism", "living organism"),
        "natural": ("natural", "found in nature", "part of nature"),
        "edible": ("edible", "food", "eaten"), "electronic": ("electronic", "electric", "electrical",
                                                              "electronic device"),
        "sharp": ("sharp",), "sticky": ("sticky",), "salty": ("salty", "salt water", "saltwater"),
        "handheld": ("handheld", "hand-held", "held in hand", "held in hands"),
    }
    for trait, words in traits.items():
        lexicon |= dict.fromkeys(words, Feature("traits", trait))
    lexicon |= dict.fromkeys(("man-made", "manmade", "human-made", "artificial", "made by humans",
                              "made by people", "manufactured"), Feature("traits", "natural", holds=False))
    lexicon |= {
        "tiny": Feature("max_size", "tiny"), "small": Feature("max_size", "small"),
        "big": Feature("min_size", "large"), "large": Feature("min_size", "large"),
        "huge": Feature("min_size", "huge"), "enormous": Feature("min_size", "huge"),
    }
    for bigger in ("bigger", "larger"):
        for thing, band in (("hand", "small"), ("breadbox", "medium"), ("shoebox", "medium"), ("person", "large"),
                            ("human", "large"), ("house", "huge"), ("building", "huge")):
            lexicon[f"{bigger} than {thing}"] = Feature("min_size", band)
    for thing, band in (("hand", "tiny"), ("breadbox", "small"), ("shoebox", "small"), ("person", "medium"),
                        ("human", "medium"),
                        ("house", "large"), ("building", "large")):
        lexicon[f"smaller than {thing}"] = Feature("max_size", band)
    for material in MATERIALS:
        for made in ("made of", "made out of", "made from"):
            lexicon[f"{made} {material}"] = Feature("materials", material)
    lexicon |= {"made of cloth": Feature("materials", "fabric"), "made of rock": Feature("materials", "stone"),
                "wooden": Feature("materials", "wood"), "metallic": Feature("materials", "metal")}
    place_words = {"home": ("home", "homes", "house", "houses"), "kitchen": ("kitchen", "kitchens"),
                   "bedroom": ("bedroom", "bedrooms"), "bathroom": ("bathroom", "bathrooms"),
                   "office": ("office", "offices"), "water": ("water",)}
    for place, words in place_words.items():
        for word in words:
            for where in ("found in", "found at", "found on", "kept in", "located in", "in", "used in"):
                lexicon[f"{where} {word}"] = Feature("places", place)
            lexicon[f"you: find in {word}"] = Feature("places", place)
    for where in ("found", "kept", "located", "used", ""):
        for word in ("outdoors", "outside"):
            lexicon[f"{where} {word}".strip()] = Feature("places", "outdoors")
    lexicon["you: find outdoors"] = lexicon["you: find outside"] = Feature("places", "outdoors")
    for use, gerunds, verbs in (
        ("writing", ("writing",), ("write",)),
        ("cutting", ("cutting", "cutting things"), ("cut", "cut things")),
        ("cooking", ("cooking", "cooking food"), ("cook", "cook food")),
        ("eating", ("eating",), ("eat", "eat with")),
        ("drinking", ("drinking",), ("drink", "drink from", "drink out of")),
        ("sitting", ("sitting", "sitting on"), ("sit", "sit on")),
        ("sleeping", ("sleeping", "sleeping on"), ("sleep", "sleep on")),
        ("storage", ("storage", "storing things", "keeping things"), ("store things", "keep things")),
        ("cleaning", ("cleaning", "cleaning teeth", "brushing teeth"), ("clean", "clean teeth", "brush teeth")),
        ("transportation", ("transportation", "transport", "travel", "traveling", "travelling",
                            "getting around"), ("travel", "get around")),
        ("music", ("music", "making music"), ("make music",)),
        ("gardening", ("gardening", "yard work"), ("garden",)),
        ("sports", ("sports", "sport", "playing sports"), ("play sports", "play sport")),
        ("painting", ("painting",), ("paint",)),
        ("photos", ("taking pictures", "taking photos", "photography"), ("take pictures", "take photos")),
    ):
        lexicon |= _gerund_phrases(use, gerunds, verbs)
    lexicon |= {"used in sports": Feature("uses", "sports"), "sports equipment": Feature("uses", "sports"),
                "garden tool": Feature("uses", "gardening"), "gardening tool": Feature("uses", "gardening")}
    for key, use in (("wear", "wear"), ("wear on feet", "wear_feet"), ("wear around neck", "wear_neck"),
                     ("wear on neck", "wear_neck"), ("wear on wrist", "wear_wrist")):
        lexicon["you: " + key] = Feature("uses", use)
        lexicon[key.replace("wear", "worn", 1)] = Feature("uses", use)
    lexicon |= {f"you: {verb} with": Feature("uses", use) for verb, use in (
        ("eat", "eating"), ("cook", "cooking"), ("cut", "cutting"), ("cut things", "cutting"),
        ("take pictures", "photos"), ("take photos", "photos"), ("make music", "music"),
        ("clean", "cleaning"), ("brush teeth", "cleaning"))}
    lexicon |= {"you: hold in hand": Feature("max_size", "small"), "you: hold in hands": Feature("max_size", "small"),
                "you: sit on": Feature("uses", "sitting"), "you: sit in": Feature("uses", "sitting")}
    lexicon |= {"you: eat": Feature("traits", "edible"), "you: sleep on": Feature("uses", "sleeping"),
                "you: drink from": Feature("uses", "drinking"), "you: drink out of": Feature("uses", "drinking"),
                "you: blow into": Feature("kinds", "wind_instrument"), "you: store things in": Feature("uses", "storage")}
    lexicon |= {"do: " + k: f for k, f in {
        "have wheels": Feature("parts", "wheels"), "have two wheels": Feature("parts", "two_wheels"),
        "have four legs": Feature("parts", "four_legs"), "walk on four legs": Feature("parts", "four_legs"),
        "have screen": Feature("parts", "screen"), "have strings": Feature("parts", "strings"),
        "have ink": Feature("parts", "ink"), "use ink": Feature("parts", "ink"),
        "contain ink": Feature("parts", "ink"), "have pit": Feature("parts", "pit"),
        "fly": Feature("traits", "flies"), "eat meat": Feature("traits", "eats_meat"),
        "use electricity": Feature("traits", "electronic"), "need electricity": Feature("traits", "electronic"),
        "run on electricity": Feature("traits", "electronic"), "need power": Feature("traits", "electronic"),
        "move on its own": Feature("kinds", "animal"), "move by itself": Feature("kinds", "animal"),
        "breathe": Feature("kinds", "animal"),
        "come from space": Feature("traits", "from_space"), "come from outer space": Feature("traits", "from_space"),
        "grow underground": Feature("traits", "underground"), "have salt water": Feature("traits", "salty"),
        "contain salt water": Feature("traits", "salty"), "taste salty": Feature("traits", "salty"),
        "live on farm": Feature("kinds", "farm_animal"), "live in wild": Feature("kinds", "wild_animal"),
        "make music": Feature("uses", "music"), "cut things": Feature("uses", "cutting"),
        "fit in backpack": Feature("max_size", "small"), "fit in bag": Feature("max_size", "small"),
    }.items()}
    return lexicon


LEXICON: dict[str, Feature] = _build_lexicon()


def _either(*phrases: str) -> str:
    # Longest first: "this object" must not be read as "this" followed by "object".
    return "(?:" + "|".join(sorted(phrases, key=len, reverse=True)) + ")"


_SUBJECT = _either("it", "this", "that", "they", "these", "those", "this object", "this thing", "the object",
                   "your object", "the thing", "your thing", "the item", "your item", "the word", "your word",
                   "the answer", "the hidden object", "the mystery object")
_PERSON = _either("you", "i", "we", "people", "a person", "person", "someone", "one")
_MODALS = r"(?:can|could|would|will|should|might|may|do|does|did)"
_FRAMES = (  # (regex, frame): the first that matches reads the question
    (re.compile(rf"^(?:is|are|was|were) {_SUBJECT} (.+)$"), ""),
    (re.compile(rf"^(?:can|could|would|will|should|might|may) {_SUBJECT} be (.+)$"), ""),
    (re.compile(rf"^{_MODALS} {_SUBJECT} (.+)$"), "do: "),
    (re.compile(rf"^{_MODALS} {_PERSON} (.+)$"), "you: "),
)
# "Is it something (that) you can eat?" reads as "Can you eat it?".
_SOMETHING_RE = re.compile(rf"^(?:something|thing|object|item)(?: that| which)? {_PERSON} (?:{_MODALS} )?(.+)$")
_KIND_OF_RE = re.compile(r"^(?:kind|type|sort|form|piece|item|article|example) of ")
_FILLERS = frozenset(("a", "an", "the", "some", "any", "your", "my", "our", "their", "one's", "one", "most",
                      "usually", "typically", "often", "normally", "generally", "commonly", "mostly",
                      "mainly", "primarily", "ever", "actually", "really"))
_PRONOUNS = frozenset(("it", "them", "this", "that"))
_YES_NO_START = re.compile(r"^(?:is|are|was|were|does|do|did|can|could|would|will|should|might|may|has|have)\b")


def _strip(text: str, drop: frozenset[str]) -> str:
    return " ".join(w for w in text.split() if w not in drop)


@functools.lru_cache(maxsize=65536)
def parse(question: str) -> Feature | None:
    """The attribute test a question asks, or None when it is not a yes/no question about
    the object in words the oracle knows."""
    q = normalize(question)
    words = q.split()
    # A negated question ("Is it not alive?") has no unambiguous yes/no answer, and a
    # choice ("... a dog or a cat?") is not a yes/no question.
    if not _YES_NO_START.match(q) or {"not", "never", "or"} & set(words) or "n't" in q:
        return None
    for pattern, frame in _FRAMES:
        match = pattern.match(q)
        if match:
            rest = match.group(1)
            break
    else:
        return None
    if frame == "you: ":
        if not _PRONOUNS & set(rest.split()):
            return None  # "Can you tell me?" is not about the object
        return LEXICON.get("you: " + _strip(rest, _FILLERS | _PRONOUNS))
    rest = _strip(rest, _FILLERS)
    if frame == "do: ":
        return LEXICON.get("do: " + rest)
    something = _SOMETHING_RE.match(rest)
    if something:
        return LEXICON.get("you: " + _strip(something.group(1), _FILLERS | _PRONOUNS))
    rest = _KIND_OF_RE.sub("", rest) if rest not in OBJECT_FORMS else rest
    if rest in OBJECT_FORMS:
        return Feature("name", OBJECT_FORMS[rest])
    return LEXICON.get(rest)


def answer(thing: Thing, question: str) -> str:
    feature = parse(question)
    if feature is None:
        return INVALID
    return YES if feature(thing) else NO


def is_success(hidden: str, question: str) -> bool:
    """The question's last words name the hidden object, it names no other object, and
    the oracle would say yes."""
    named = objects_named(question)
    if not named or {name for name, _ in named} != {hidden}:
        return False
    return named[-1][1] == len(normalize(question)) and answer(OBJECT_BY_NAME[hidden], question) == YES


class ObjectOracle:
    """The embedded knowledge-base oracle: table lookups, no weights."""

    def answer(self, hidden_items: Sequence[str], questions: Sequence[str]) -> list[str]:
        if len(hidden_items) != len(questions):
            raise ValueError(f"{len(hidden_items)} hidden items but {len(questions)} questions")
        return [answer(OBJECT_BY_NAME[h], q) for h, q in zip(hidden_items, questions)]


# ---------------------------------------------------------------------------- an LM oracle
def lm_prompt(hidden: str, question: str) -> str:
    """The reference's prompt: the first synonym, lower-cased, no space before the question."""
    word = hidden.split(";")[0].strip().lower()
    return f"The object is {word}." + question


_YES_RE = re.compile(r"\byes\b", re.IGNORECASE)
_NO_RE = re.compile(r"\bno\b", re.IGNORECASE)


def lm_answer(hidden: str, decoded: str) -> str:
    """The reference's normalisation, yes before no, on whole words."""
    del hidden  # the reply alone decides
    if _YES_RE.search(decoded):
        return YES
    return NO if _NO_RE.search(decoded) else INVALID


LM_ORACLE_FORMAT = OracleFormat(lm_prompt, lm_answer, max_new_tokens=16)


def twenty_questions_task(max_turns: int = MAX_TURNS, items: Sequence[str] | None = None) -> QuestionTask:
    """Twenty Questions over `items` (all 157 objects by default), answered by the KB oracle."""
    items = tuple(items) if items is not None else OBJECT_NAMES
    unknown = [i for i in items if i not in OBJECT_BY_NAME]
    if unknown or not items:
        raise ValueError(f"items must be Twenty Questions objects; unknown: {unknown[:5]}")
    return QuestionTask(name="twenty_questions", items=items, oracle=ObjectOracle(), is_success=is_success,
                        max_turns=max_turns)


def twenty_questions_subset_task(max_turns: int = MAX_TURNS) -> QuestionTask:
    """The paper's Twenty Questions Subset: the same game, only `SUBSET` is ever hidden."""
    return dataclasses.replace(twenty_questions_task(max_turns, items=SUBSET), name="twenty_questions_subset")
