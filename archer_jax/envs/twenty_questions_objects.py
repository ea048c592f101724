"""The Twenty Questions objects and their attribute table.

The 157 objects in 17 categories of the LMRL-Gym / ArCHer word list, synonyms as there
(the first name is the item name). Every object carries its typical size band, what
kind of thing it is, traits, materials, where it is found, what it is for and what it
has; `twenty_questions` reads questions into tests on these fields.

Conventions where people disagree: fruit and vegetables count as alive and as plants
(the reference's own example dialogue says so of a banana); "fruit" and "vegetable"
follow the list's categories (a tomato is a vegetable here); sizes are of the typical
object, folded when it is soft.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

# Typical size, smallest first: smaller than a hand; fits in a backpack (about a
# breadbox); no bigger than a person; smaller than a house; bigger than a house.
SIZES = ("tiny", "small", "medium", "large", "huge")
KINDS = frozenset((
    "animal", "mammal", "pet", "farm_animal", "wild_animal", "plant", "fruit", "tropical_fruit", "melon",
    "vegetable", "root_vegetable", "vehicle", "clothing", "appliance", "instrument", "wind_instrument",
    "furniture", "office_supply", "art_supply", "artwork", "kitchenware", "utensil", "tool", "toy", "jewelry", "ball",
    "body_of_water", "place"))
TRAITS = frozenset(("alive", "natural", "edible", "electronic", "sharp", "sticky", "flies", "eats_meat",
                    "from_space", "underground", "salty", "handheld"))
MATERIALS = frozenset(("wood", "metal", "plastic", "glass", "fabric", "paper", "leather", "rubber", "stone",
                       "ceramic", "water"))
PLACES = frozenset(("home", "kitchen", "bedroom", "bathroom", "office", "outdoors", "water"))
USES = frozenset(("writing", "cutting", "cooking", "eating", "drinking", "sitting", "sleeping", "storage",
                  "cleaning", "transportation", "music", "gardening", "sports", "painting", "photos", "wear",
                  "wear_feet", "wear_neck", "wear_wrist"))
PARTS = frozenset(("wheels", "two_wheels", "four_legs", "screen", "strings", "ink", "pit"))


@dataclasses.dataclass(frozen=True)
class Thing:
    """One hidden object: its names (the first is the item name) and its attributes."""

    names: tuple[str, ...]
    category: str
    size: str
    kinds: frozenset[str]
    traits: frozenset[str]
    materials: frozenset[str]
    places: frozenset[str]
    uses: frozenset[str]
    parts: frozenset[str]

    @property
    def name(self) -> str:
        return self.names[0]


def _category(category: str, rows: Sequence[tuple], **defaults: str) -> list[Thing]:
    """Things of one category: (names, size, attribute words...) rows plus the
    category's default attribute words; every word is checked against its vocabulary."""
    vocab = {"kinds": KINDS, "traits": TRAITS, "materials": MATERIALS, "places": PLACES, "uses": USES,
             "parts": PARTS}
    things = []
    for names, size, fields in rows:
        if size not in SIZES:
            raise ValueError(f"{names}: unknown size {size!r}")
        values = {}
        for field, words in vocab.items():
            given = set(fields.get(field, "").split()) | set(defaults.get(field, "").split())
            unknown = given - words
            if unknown:
                raise ValueError(f"{names}: unknown {field} {sorted(unknown)}")
            values[field] = frozenset(given)
        things.append(Thing(tuple(names.split(";")), category, size, **values))
    return things


def _row(names: str, size: str, **fields: str) -> tuple:
    return names, size, fields


_PRODUCE = {"traits": "alive natural edible", "places": "home kitchen"}  # fruit and vegetables

OBJECTS: tuple[Thing, ...] = tuple(
    _category("Sports", [
        _row("Basketball", "small", kinds="ball", materials="rubber", traits="handheld"),
        _row("Football", "small", kinds="ball", materials="leather", traits="handheld"),
        _row("Baseball", "tiny", kinds="ball", materials="leather", traits="handheld"),
        _row("Soccer ball", "small", kinds="ball", materials="leather", traits="handheld"),
        _row("Golf ball", "tiny", kinds="ball", materials="rubber plastic", traits="handheld"),
        _row("Tennis ball", "tiny", kinds="ball", materials="rubber", traits="handheld"),
        _row("Volleyball", "small", kinds="ball", materials="leather", traits="handheld"),
        _row("Tennis racket", "medium", parts="strings", traits="handheld"),
        _row("Baseball bat", "medium", materials="wood metal", traits="handheld"),
        _row("Helmet", "small", materials="plastic", uses="wear"),
    ], uses="sports", places="outdoors")
    + _category("Animals", [
        _row("Cat", "small", kinds="pet", traits="eats_meat", places="home"),
        _row("Dog", "medium", kinds="pet", traits="eats_meat", places="home"),
        _row("Horse", "large", kinds="farm_animal", uses="transportation"),
        _row("Cow", "large", kinds="farm_animal"),
        _row("Sheep", "medium", kinds="farm_animal"),
        _row("Rabbit", "small", kinds="pet", places="home"),
        _row("Lion", "large", kinds="wild_animal", traits="eats_meat"),
        _row("Tiger", "large", kinds="wild_animal", traits="eats_meat"),
        _row("Bear", "large", kinds="wild_animal", traits="eats_meat"),
        _row("Elephant", "large", kinds="wild_animal"),
    ], kinds="animal mammal", traits="alive natural", parts="four_legs", places="outdoors")
    + _category("Fruits", [
        _row("Apple", "tiny"),
        _row("Banana", "small", kinds="tropical_fruit"),
        _row("Orange", "tiny"),
        _row("Strawberry", "tiny"),
        _row("Grape", "tiny"),
        _row("Watermelon", "small", kinds="melon"),
        _row("Pineapple", "small", kinds="tropical_fruit"),
        _row("Mango", "small", kinds="tropical_fruit", parts="pit"),
        _row("Cantaloupe", "small", kinds="melon"),
        _row("Peach", "tiny", parts="pit"),
    ], kinds="fruit plant", **_PRODUCE)
    + _category("Vehicles", [
        _row("Car", "large", parts="wheels"),
        _row("Truck", "large", parts="wheels"),
        _row("Motorcycle", "large", parts="wheels two_wheels"),
        _row("Boat", "large", materials="wood", places="water"),
        _row("Airplane;Plane", "huge", parts="wheels", traits="flies"),
        _row("Train", "huge", parts="wheels"),
        _row("Bus", "large", parts="wheels"),
        _row("Helicopter", "large", traits="flies"),
        _row("Scooter", "medium", parts="wheels two_wheels"),
        _row("Ship", "huge", places="water"),
    ], kinds="vehicle", uses="transportation", places="outdoors", materials="metal")
    + _category("Clothes", [
        _row("Shirt", "small", materials="fabric"),
        _row("Pants;Pant;Pair of pants", "small", materials="fabric"),
        _row("Jacket", "small", materials="fabric"),
        _row("Dress", "small", materials="fabric"),
        _row("Skirt", "small", materials="fabric"),
        _row("Belt", "small", materials="leather"),
        _row("Shoes;Shoe;Pair of shoes", "small", materials="leather fabric rubber", uses="wear_feet"),
        _row("Boots;Boot;Pair of boots", "small", materials="leather rubber", uses="wear_feet"),
        _row("Socks;Sock;Pair of socks", "small", materials="fabric", uses="wear_feet"),
        _row("Hat", "small", materials="fabric"),
        _row("Scarf", "small", materials="fabric", uses="wear_neck"),
    ], kinds="clothing", uses="wear", places="home")
    + _category("Electronics", [
        _row("Computer", "medium", parts="screen", materials="metal plastic", places="office"),
        _row("Smartphone", "tiny", parts="screen", materials="glass metal", uses="photos", traits="handheld"),
        _row("Television;TV", "medium", parts="screen", materials="plastic glass"),
        _row("Headphone;Headphones;Pair of headphones", "small", materials="plastic", uses="wear"),
        _row("Monitor;Computer monitor", "medium", parts="screen", materials="plastic glass", places="office"),
        _row("Camera", "small", parts="screen", materials="plastic metal", uses="photos", traits="handheld"),
        _row("Microwave;Microwave oven", "medium", kinds="appliance", materials="metal", uses="cooking",
             places="kitchen"),
        _row("Refrigerator", "large", kinds="appliance", materials="metal", uses="storage", places="kitchen"),
        _row("Blender", "small", kinds="appliance", materials="plastic glass", places="kitchen"),
        _row("Computer keyboard;Keyboard", "small", materials="plastic", places="office"),
    ], traits="electronic", places="home")
    + _category("Musical Instruments", [
        _row("Piano", "large", parts="strings", materials="wood", places="home"),
        _row("Guitar", "medium", parts="strings", materials="wood", places="home"),
        _row("Drum;Drums", "medium", materials="wood"),
        _row("Violin", "medium", parts="strings", materials="wood"),
        _row("Saxophone", "medium", kinds="wind_instrument", materials="metal"),
        _row("Flute", "medium", kinds="wind_instrument", materials="metal"),
        _row("Trumpet", "small", kinds="wind_instrument", materials="metal"),
        _row("Clarinet", "medium", kinds="wind_instrument", materials="wood"),
        _row("Harp", "medium", parts="strings", materials="wood"),
        _row("Trombone", "medium", kinds="wind_instrument", materials="metal"),
    ], kinds="instrument", uses="music")
    # A pillow and a mattress are bedding, not furniture.
    + _category("Furniture", [
        _row("Chair", "medium", kinds="furniture", uses="sitting", parts="four_legs", materials="wood",
             places="office"),
        _row("Table", "medium", kinds="furniture", parts="four_legs", materials="wood"),
        _row("Bed", "large", kinds="furniture", uses="sleeping", parts="four_legs", materials="wood",
             places="bedroom"),
        _row("Desk", "medium", kinds="furniture", parts="four_legs", materials="wood", places="office"),
        _row("Couch", "large", kinds="furniture", uses="sitting", materials="fabric"),
        _row("Dresser", "medium", kinds="furniture", uses="storage", materials="wood", places="bedroom"),
        _row("Bookcase", "medium", kinds="furniture", uses="storage", materials="wood"),
        _row("Nightstand", "medium", kinds="furniture", uses="storage", materials="wood", places="bedroom"),
        _row("Mattress", "large", uses="sleeping", materials="fabric", places="bedroom"),
        _row("Pillow", "medium", uses="sleeping", materials="fabric", places="bedroom"),
    ], places="home")
    # The list files a toothbrush, toothpaste, a key, a battery and a printer (office
    # equipment) here; they are not office supplies, so the kind is per object.
    + _category("Office Supplies", [
        _row("Pen", "tiny", kinds="office_supply", uses="writing", parts="ink", materials="plastic",
             traits="handheld", places="office"),
        _row("Paper;Piece of paper", "small", kinds="office_supply", uses="writing", materials="paper",
             places="office"),
        _row("Stapler", "small", kinds="office_supply", materials="metal plastic", traits="handheld",
             places="office"),
        _row("Printer", "medium", traits="electronic", parts="ink", materials="plastic", places="office"),
        _row("Calculator", "small", kinds="office_supply", traits="electronic handheld", parts="screen",
             materials="plastic", places="office"),
        _row("Battery;Battery pack;Pack of batteries", "tiny", materials="metal"),
        _row("Toothbrush", "small", uses="cleaning", materials="plastic", traits="handheld", places="bathroom"),
        _row("Toothpaste", "small", uses="cleaning", places="bathroom"),
        _row("Pencil", "small", kinds="office_supply", uses="writing", materials="wood", traits="handheld",
             places="office"),
        _row("Sharpie", "tiny", kinds="office_supply", uses="writing", parts="ink", materials="plastic",
             traits="handheld", places="office"),
        _row("Scissors;Pair of scissors", "small", kinds="office_supply tool", uses="cutting", materials="metal",
             traits="sharp handheld", places="office"),
        _row("Key", "tiny", materials="metal", traits="handheld"),
        _row("Diary", "small", kinds="office_supply", uses="writing", materials="paper"),
        _row("Calendar", "small", kinds="office_supply", materials="paper", places="office"),
    ], places="home")
    + _category("Vegetables", [
        _row("Carrot", "small", kinds="root_vegetable", traits="underground"),
        _row("Potato", "tiny", kinds="root_vegetable", traits="underground"),
        _row("Broccoli", "small"),
        _row("Tomato", "tiny"),
        _row("Onion", "tiny", traits="underground"),
        _row("Spinach", "small"),
        _row("Corn", "small"),
        _row("Peas;Pea", "tiny"),
        _row("Celery", "small"),
        _row("Cucumber", "small"),
    ], kinds="vegetable plant", **_PRODUCE)
    + _category("Art", [
        _row("Painting;Canvas painting;Oil painting;Watercolor painting", "medium", kinds="artwork", places="home"),
        _row("Paintbrush", "small", kinds="art_supply", uses="painting", materials="wood", traits="handheld",
             places="home"),
        _row("Canvas;Painting canvas", "medium", kinds="art_supply", uses="painting", materials="fabric wood"),
        _row("Eraser;Pencil eraser", "tiny", kinds="art_supply office_supply", materials="rubber",
             traits="handheld", places="home office"),
        _row("Marker", "tiny", kinds="art_supply office_supply", uses="writing", parts="ink", materials="plastic",
             traits="handheld", places="home office"),
        _row("Glue;Glue stick;Bottle of glue", "small", kinds="art_supply office_supply", traits="sticky",
             places="home office"),
        _row("Sculpture", "medium", kinds="artwork", materials="stone metal"),
    ])
    + _category("Kitchen Tools", [
        _row("Knife", "small", kinds="utensil", uses="cutting cooking eating", materials="metal",
             traits="sharp handheld"),
        _row("Spoon", "small", kinds="utensil", uses="eating", materials="metal", traits="handheld"),
        _row("Fork", "small", kinds="utensil", uses="eating", materials="metal", traits="handheld"),
        _row("Plate", "small", uses="eating", materials="ceramic"),
        _row("Bowl", "small", uses="eating", materials="ceramic"),
        _row("Cooking pot;Pot", "small", uses="cooking", materials="metal"),
        _row("Pan;Saucepan;Frying pan", "small", uses="cooking", materials="metal", traits="handheld"),
        _row("Cup", "tiny", uses="drinking", materials="ceramic", traits="handheld"),
        _row("Chopstick;Chopsticks;Pair of chopsticks", "small", kinds="utensil", uses="eating", materials="wood",
             traits="handheld"),
        _row("Whisk", "small", kinds="utensil", uses="cooking", materials="metal", traits="handheld"),
    ], kinds="kitchenware", places="home kitchen")
    + _category("Nature", [
        _row("Rock", "small", materials="stone"),
        _row("Tree", "huge", kinds="plant", traits="alive", materials="wood"),
        _row("Bush", "medium", kinds="plant", traits="alive"),
        _row("Mountain", "huge", kinds="place", materials="stone"),
        _row("Forest", "huge", kinds="place", traits="alive"),
        _row("Ocean", "huge", kinds="place body_of_water", traits="salty", materials="water", places="water"),
        _row("Sea", "huge", kinds="place body_of_water", traits="salty", materials="water", places="water"),
        _row("Lake", "huge", kinds="place body_of_water", materials="water", places="water"),
        _row("River", "huge", kinds="place body_of_water", materials="water", places="water"),
        _row("Meteorite", "small", traits="from_space", materials="stone metal"),
        _row("Cactus", "medium", kinds="plant", traits="alive sharp"),
    ], traits="natural", places="outdoors")
    + _category("Toys", [
        _row("Lego;Lego set", "small", materials="plastic"),
        _row("Doll;Toy doll;Plush doll", "small", materials="plastic fabric"),
        _row("Kite", "medium", traits="flies", materials="fabric", places="outdoors"),
        _row("Puzzle;Jigsaw puzzle", "small", materials="paper"),
    ], kinds="toy", places="home")
    + _category("Jewelry", [
        _row("Earring;Earrings;Pair of earrings", "tiny"),
        _row("Necklace", "small", uses="wear_neck"),
        _row("Bracelet", "tiny", uses="wear_wrist"),
        _row("Ring", "tiny"),
        _row("Brooch", "tiny"),
        _row("Hairclip", "tiny", materials="plastic"),
        _row("Pendant", "tiny", uses="wear_neck"),
        _row("Watch", "tiny", uses="wear_wrist", traits="electronic"),
        _row("Locket", "tiny", uses="wear_neck"),
    ], kinds="jewelry", uses="wear", materials="metal", places="home")
    + _category("Garden Supplies", [
        _row("Gloves;Glove;Pair of gloves", "small", uses="wear", materials="fabric"),
        _row("Shovel", "medium", kinds="tool", materials="metal wood"),
        _row("Rake", "medium", kinds="tool", materials="metal wood"),
        _row("Watering can", "small", materials="metal plastic", traits="handheld"),
        _row("Lawn mower", "medium", uses="cutting", parts="wheels", materials="metal"),
    ], uses="gardening", places="outdoors")
    + _category("Tools", [
        _row("Hammer", "small", materials="metal wood"),
        _row("Screwdriver", "small", materials="metal plastic"),
        _row("Wrench", "small", materials="metal"),
        _row("Saw", "medium", uses="cutting", traits="sharp", materials="metal"),
        _row("Pliers;plier;Pair of pliers", "small", materials="metal"),
        _row("Drill", "small", traits="electronic", materials="metal plastic"),
    ], kinds="tool", traits="handheld", places="home")
)
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.category for t in OBJECTS))
OBJECT_BY_NAME: dict[str, Thing] = {t.name: t for t in OBJECTS}
OBJECT_NAMES: tuple[str, ...] = tuple(OBJECT_BY_NAME)
