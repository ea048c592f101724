"""The embedded WebShop's products, instructions, search engine and reward.

Everything here is generated from a seed by the code below (word lists in code, no data
files): ``Catalogue(seed, num_products)`` builds the same shop every time. It is the model
of the shop that ``webshop_server`` serves over HTTP; the environment (``webshop``) never
reads it, it only talks to the server.

- Products: 30 product types in WebShop's five categories (beauty, food, fashion,
  furniture, electronics). A product has an ASIN ("B0" + 8 characters), a title
  ("Brand Type - attribute, attribute, ..."), 2-4 attributes of its type, 1-2 option
  dimensions (size, color, flavor, ...) each with 2-5 values, a price, a description,
  feature bullets, reviews and a rating, as WebShop's scraped products have.
- Instructions (goals): goal ``i`` names product ``i mod N``'s type, 1-3 of its
  attributes, one value of each of its options and a price limit drawn as WebShop draws
  it (two of the first four multiples of 10 above the price, the larger one):
  "i need a sulfate free and paraben free shampoo, with scent: lavender, and size:
  16 fl oz, and price lower than 40.00 dollars". Any product that has the attributes,
  offers the options and costs less earns the full reward, as in WebShop.
- Search: BM25 (k1 1.5, b 0.75) over title (twice), type, attributes, options, features
  and description; the best 50 products, as WebShop's search returns 50.
- Reward: WebShop's purchase reward (its ``engine/goal.py``, re-derived):
  ``r_type * (attribute matches + option matches + [price <= limit]) / (attributes + options + 1)``
  with fuzzy matches by a token-set ratio > 85 (thefuzz's ``token_set_ratio``, written
  here over ``difflib``), colors normalised to the first color word they name, and the
  type factor from query, category and title-noun overlap. WebShop tags title nouns with
  spaCy; this shop knows its own nouns (type words, brands and a few attribute nouns).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

SEARCH_RETURN_N = 50  # WebShop's search returns its best 50 products
PRICE_RANGE = tuple(10.0 * i for i in range(1, 100))  # WebShop's price limits
NO_PRICE_LIMIT = 1_000_000.0

# (category, product_category path, query/type, price range, attributes, option dimensions)
_SIZES = ("small", "medium", "large", "x-large", "xx-large")
_COLORS = ("black", "white", "navy blue", "gray", "red", "green", "beige", "pink", "brown", "purple")
_FURNITURE_COLORS = ("walnut", "white", "black", "oak", "espresso", "gray")
TYPES = (
    ("beauty", "Beauty & Personal Care › Hair Care › Shampoo", "shampoo", (6, 30),
     ("sulfate free", "paraben free", "natural ingredients", "for dry hair", "cruelty free", "argan oil"),
     {"size": ("8 fl oz", "12 fl oz", "16 fl oz", "32 fl oz"), "scent": ("lavender", "coconut", "tea tree", "citrus", "unscented")}),
    ("beauty", "Beauty & Personal Care › Hair Care › Hair Extensions", "hair extension", (15, 80),
     ("clip-in", "natural looking", "heat resistant", "human hair", "easy to use", "long"),
     {"color": ("black", "dark brown", "light brown", "blonde", "auburn"), "size": ("14 inch", "18 inch", "22 inch")}),
    ("beauty", "Beauty & Personal Care › Makeup › Lipstick", "lipstick", (5, 25),
     ("long lasting", "matte finish", "cruelty free", "moisturizing", "waterproof"),
     {"color": ("red", "nude", "pink", "coral", "berry", "plum")}),
    ("beauty", "Beauty & Personal Care › Skin Care › Face Moisturizer", "face moisturizer", (8, 45),
     ("for sensitive skin", "fragrance free", "hyaluronic acid", "oil free", "anti aging", "spf 30"),
     {"size": ("1.7 oz", "2.5 oz", "4 oz")}),
    ("beauty", "Beauty & Personal Care › Makeup › Nail Polish", "nail polish", (4, 18),
     ("quick dry", "non toxic", "long lasting", "high shine", "chip resistant"),
     {"color": ("red", "pink", "nude", "purple", "black", "coral")}),
    ("beauty", "Beauty & Personal Care › Tools & Accessories › Makeup Brushes", "makeup brush set", (7, 35),
     ("synthetic bristles", "travel size", "easy to clean", "cruelty free", "soft"),
     {"color": ("black", "rose gold", "silver", "pink")}),
    ("food", "Grocery & Gourmet Food › Beverages › Coffee", "coffee", (7, 40),
     ("whole bean", "organic", "dark roast", "fair trade", "low acid", "medium roast"),
     {"size": ("12 oz", "2 lb", "5 lb"), "flavor": ("french vanilla", "hazelnut", "original", "mocha", "caramel")}),
    ("food", "Grocery & Gourmet Food › Beverages › Tea", "green tea", (4, 25),
     ("organic", "non gmo", "individually wrapped", "sugar free", "kosher"),
     {"size": ("20 count", "50 count", "100 count"), "flavor": ("jasmine", "mint", "lemon", "matcha", "original")}),
    ("food", "Grocery & Gourmet Food › Snacks › Protein Bars", "protein bar", (10, 45),
     ("gluten free", "high protein", "low sugar", "keto friendly", "vegan", "non gmo"),
     {"flavor": ("chocolate", "peanut butter", "almond", "berry", "cookie dough"), "size": ("pack of 6", "pack of 12", "pack of 24")}),
    ("food", "Grocery & Gourmet Food › Snacks › Jerky", "beef jerky", (6, 35),
     ("high protein", "low fat", "gluten free", "ready to eat", "sugar free"),
     {"flavor": ("original", "teriyaki", "peppered", "sweet hot"), "size": ("3 oz", "8 oz", "16 oz")}),
    ("food", "Grocery & Gourmet Food › Pantry › Olive Oil", "olive oil", (8, 50),
     ("extra virgin", "cold pressed", "organic", "non gmo", "kosher"),
     {"size": ("16.9 fl oz", "25.4 fl oz", "1 gallon")}),
    ("food", "Grocery & Gourmet Food › Snacks › Gummy Candy", "gummy candy", (4, 28),
     ("fat free", "gluten free", "individually wrapped", "vegan", "natural flavors"),
     {"flavor": ("strawberry", "mixed fruit", "sour apple", "peach", "cherry"), "size": ("5 oz", "1 lb", "5 lb")}),
    ("fashion", "Clothing, Shoes & Jewelry › Men › Clothing › T-Shirts", "t-shirt", (8, 30),
     ("short sleeve", "machine wash", "cotton", "slim fit", "relaxed fit", "moisture wicking"),
     {"color": _COLORS, "size": _SIZES}),
    ("fashion", "Clothing, Shoes & Jewelry › Women › Clothing › Jeans", "jeans", (20, 70),
     ("slim fit", "stretch", "machine wash", "high waist", "button closure", "relaxed fit"),
     {"color": ("light wash", "dark wash", "black", "blue"), "size": ("28w x 30l", "30w x 32l", "32w x 32l", "34w x 32l", "36w x 34l")}),
    ("fashion", "Clothing, Shoes & Jewelry › Men › Shoes › Running Shoes", "running shoes", (30, 120),
     ("non slip", "rubber sole", "lightweight", "breathable", "memory foam", "lace up"),
     {"color": ("black", "white", "gray", "navy blue", "red"), "size": ("7", "8", "9", "10", "11", "12")}),
    ("fashion", "Clothing, Shoes & Jewelry › Women › Clothing › Hoodies", "hoodie", (18, 60),
     ("fleece lined", "long sleeve", "drawstring closure", "machine wash", "pullover", "zip up"),
     {"color": _COLORS, "size": _SIZES}),
    ("fashion", "Clothing, Shoes & Jewelry › Women › Clothing › Dresses", "dress", (20, 80),
     ("long sleeve", "v neck", "casual", "polyester spandex", "a line", "midi"),
     {"color": _COLORS, "size": _SIZES}),
    ("fashion", "Clothing, Shoes & Jewelry › Men › Clothing › Socks", "socks", (6, 25),
     ("moisture wicking", "cushioned", "arch support", "ankle", "breathable"),
     {"color": ("black", "white", "gray", "multicolor"), "size": ("small", "medium", "large")}),
    ("furniture", "Home & Kitchen › Furniture › Home Office Furniture › Office Chairs", "office chair", (60, 300),
     ("ergonomic", "lumbar support", "adjustable height", "mesh back", "swivel", "easy assembly"),
     {"color": ("black", "gray", "white", "blue")}),
    ("furniture", "Home & Kitchen › Furniture › Living Room Furniture › Bookcases", "bookshelf", (40, 200),
     ("easy assembly", "solid wood", "5 tier", "space saving", "industrial style"),
     {"color": _FURNITURE_COLORS}),
    ("furniture", "Home & Kitchen › Furniture › Living Room Furniture › Tables", "coffee table", (50, 250),
     ("living room", "easy assembly", "storage space", "solid wood", "mid century modern"),
     {"color": _FURNITURE_COLORS}),
    ("furniture", "Home & Kitchen › Furniture › Bedroom Furniture › Beds", "bed frame", (90, 400),
     ("metal", "no box spring needed", "easy assembly", "noise free", "storage space"),
     {"size": ("twin", "full", "queen", "king")}),
    ("furniture", "Home & Kitchen › Furniture › Bedroom Furniture › Nightstands", "nightstand", (30, 150),
     ("easy assembly", "storage space", "solid wood", "space saving", "with drawer"),
     {"color": _FURNITURE_COLORS}),
    ("furniture", "Home & Kitchen › Furniture › Kitchen Furniture › Bar Stools", "bar stool", (40, 220),
     ("counter height", "swivel", "adjustable height", "faux leather", "back support"),
     {"color": ("black", "brown", "gray", "white"), "size": ("24 inch", "26 inch", "30 inch")}),
    ("electronics", "Electronics › Headphones › Earbud Headphones", "wireless earbuds", (15, 120),
     ("bluetooth 5.0", "noise cancelling", "waterproof", "long battery life", "hands free", "charging case"),
     {"color": ("black", "white", "blue", "pink")}),
    ("electronics", "Cell Phones & Accessories › Cases & Covers › Phone Cases", "phone case", (6, 30),
     ("shockproof", "slim fit", "wireless charging compatible", "clear", "kickstand"),
     {"color": ("black", "clear", "blue", "red", "green"), "size": ("iphone 13", "iphone 14", "galaxy s21", "galaxy s22")}),
    ("electronics", "Electronics › Computers & Accessories › Cables › USB Cables", "usb cable", (5, 25),
     ("fast charging", "nylon braided", "high speed", "durable", "usb c"),
     {"size": ("3 ft", "6 ft", "10 ft"), "color": ("black", "white", "red")}),
    ("electronics", "Electronics › Computers & Accessories › Cables › HDMI Cables", "hdmi cable", (6, 35),
     ("4k", "high speed", "gold plated", "ethernet", "braided"),
     {"size": ("3 ft", "6 ft", "10 ft", "15 ft")}),
    ("electronics", "Electronics › Portable Audio & Video › Portable Speakers", "bluetooth speaker", (20, 150),
     ("portable", "waterproof", "long battery life", "stereo sound", "built in microphone"),
     {"color": ("black", "blue", "red", "gray")}),
    ("electronics", "Cell Phones & Accessories › Chargers & Power Adapters › Power Banks", "power bank", (15, 70),
     ("fast charging", "portable", "high capacity", "usb c", "led display"),
     {"size": ("10000mah", "20000mah", "26800mah"), "color": ("black", "white", "blue")}),
)
CATEGORY_NAMES = {"beauty": "beauty", "food": "grocery", "fashion": "fashion", "furniture": "furniture",
                  "electronics": "electronics"}

BRANDS = ("Acorn", "Bluefin", "Cedarly", "Dovetail", "Emberline", "Foxglen", "Granite", "Harbor", "Ironleaf",
          "Juniper", "Kestrel", "Lumen", "Maplecrest", "Northwind", "Oakmoss", "Pinecone", "Quillon", "Riverton",
          "Sagebrook", "Tidewater", "Umberto", "Valora", "Willowby", "Xenith", "Yarrow", "Zephyr", "Brightwell",
          "Copperfield", "Driftwood", "Evergreen")
# Nouns of the attributes (spaCy would tag them; the title-noun overlap of the type reward counts them).
ATTRIBUTE_NOUNS = frozenset({"hair", "ingredients", "oil", "skin", "acid", "bean", "roast", "trade", "sleeve", "wash",
                             "cotton", "closure", "waist", "sole", "foam", "support", "assembly", "wood", "tier",
                             "style", "space", "room", "spring", "height", "back", "leather", "battery", "life",
                             "case", "sound", "microphone", "display", "capacity", "bristles", "size", "finish",
                             "shine", "neck", "line", "flavors", "drawer"})
# Color words an option is normalised to (the first one it contains), as WebShop's normalize_color.
COLOR_WORDS = ("black", "white", "navy", "blue", "gray", "grey", "red", "green", "beige", "pink", "brown", "purple",
               "walnut", "oak", "espresso", "nude", "coral", "berry", "plum", "silver", "gold", "clear", "blonde",
               "auburn", "multicolor")

_REVIEW_TITLES = ("Great value", "Works as described", "Not bad", "Love it", "Disappointed", "Exactly what I needed",
                  "Good quality", "Would buy again")
_REVIEW_BODIES = ("Arrived quickly and does the job.", "The quality is better than I expected for the price.",
                  "It is fine but not as nice as the pictures.", "My whole family uses it every day.",
                  "Stopped working after a few weeks.", "Exactly like the description, no surprises.")
_STOPWORDS = frozenset("a an and are as at be by for from i in is it looking me need of on or that the to want "
                       "which with would find buy".split())


@dataclasses.dataclass(frozen=True)
class Product:
    asin: str
    title: str
    category: str
    product_category: str
    query: str  # the product type (WebShop: the search query it was scraped with)
    attributes: tuple[str, ...]
    options: Mapping[str, tuple[str, ...]]  # option name -> values, in display order
    price: float
    description: str
    features: tuple[str, ...]  # WebShop's BulletPoints
    reviews: tuple[tuple[str, int, str], ...]  # (title, score 1-5, body)
    rating: str

    @property
    def price_text(self) -> str:
        return f"${self.price:.2f}"


@dataclasses.dataclass(frozen=True)
class Goal:
    index: int
    asin: str  # the product the instruction was written from
    query: str
    category: str
    product_category: str
    name: str  # the target's title
    attributes: tuple[str, ...]
    options: Mapping[str, str]  # option name -> wanted value
    price_upper: float
    instruction: str


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words (the search engine's and the reward's tokens)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class Catalogue:
    """The shop's products, goals, search and reward, all from ``seed``."""

    def __init__(self, seed: int = 0, num_products: int = 3000):
        if num_products < len(TYPES):
            raise ValueError(f"num_products must be >= {len(TYPES)} (one per product type), got {num_products}")
        self.seed = seed
        rng = random.Random(f"webshop-catalogue:{seed}")
        products, asins = [], set()
        for j in range(num_products):
            spec = TYPES[j % len(TYPES)]
            asin = ""
            while not asin or asin in asins:
                asin = "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
            asins.add(asin)
            products.append(self._product(rng, asin, *spec))
        rng.shuffle(products)
        self.products: tuple[Product, ...] = tuple(products)
        self.by_asin = {p.asin: p for p in self.products}
        self.nouns = frozenset(w for spec in TYPES for w in words(spec[2])) | frozenset(
            b.lower() for b in BRANDS) | ATTRIBUTE_NOUNS
        self._index()

    @staticmethod
    def _product(rng: random.Random, asin: str, category: str, path: str, query: str, prices: tuple[int, int],
                 attribute_pool: Sequence[str], dims: Mapping[str, Sequence[str]]) -> Product:
        brand = rng.choice(BRANDS)
        attributes = tuple(rng.sample(attribute_pool, rng.randint(2, min(4, len(attribute_pool)))))
        names = list(dims)
        if len(names) > 1 and rng.random() < 0.3:
            names = [rng.choice(names)]
        options = {}
        for name in names:
            pool = dims[name]
            chosen = set(rng.sample(range(len(pool)), rng.randint(2, min(5, len(pool)))))
            options[name] = tuple(v for i, v in enumerate(pool) if i in chosen)
        price = round(rng.uniform(*prices), 0) - rng.choice((0.01, 0.05, 0.51))
        type_title = query.title() if query != "t-shirt" else "T-Shirt"
        title = f"{brand} {type_title} - " + ", ".join(a.title() for a in attributes)
        description = (f"This {query} from {brand} is {_join(attributes)}. "
                       f"{rng.choice(('Designed for everyday use.', 'A customer favorite.', 'Backed by a one year warranty.', 'Made to last.'))}")
        features = tuple(f"{a.capitalize()}: {rng.choice(('tested for quality', 'as our customers asked', 'no compromises', 'for every day'))}"
                         for a in attributes) + (f"What you get: one {query} from {brand}",)
        reviews = tuple((rng.choice(_REVIEW_TITLES), rng.randint(1, 5), rng.choice(_REVIEW_BODIES))
                        for _ in range(rng.randint(1, 3)))
        rating = f"{sum(r[1] for r in reviews) / len(reviews):.1f}"
        return Product(asin, title, CATEGORY_NAMES[category], path, query, attributes, options, price,
                       description, features, reviews, rating)

    # --- goals -------------------------------------------------------------------------

    @functools.lru_cache(maxsize=65536)
    def goal(self, index: int) -> Goal:
        """Instruction ``index`` (any index >= 0; product ``index mod N`` is its target)."""
        if index < 0:
            raise ValueError(f"goal index must be >= 0, got {index}")
        rng = random.Random(f"webshop-goal:{self.seed}:{index}")
        p = self.products[index % len(self.products)]
        attributes = tuple(rng.sample(p.attributes, rng.randint(1, min(3, len(p.attributes)))))
        options = {name: rng.choice(values) for name, values in p.options.items()}
        above = [x for x in PRICE_RANGE if x > p.price][:4]
        if len(above) >= 2:
            price_upper = max(rng.sample(above, 2))
            price_text = f", and price lower than {price_upper:.2f} dollars"
        else:
            price_upper, price_text = NO_PRICE_LIMIT, ""
        adjectives = [a for a in attributes if not a.startswith("for ")]
        purposes = [a for a in attributes if a.startswith("for ")]
        template = rng.randrange(3)
        if template == 0 and adjectives:
            head = f"i need {_article(adjectives[0])} {_join(adjectives)} {p.query}"
            head += (" " + purposes[0]) if purposes else ""
        elif template == 1:
            head = f"i am looking for {_article(p.query)} {p.query} that is {_join(attributes)}"
        else:
            head = f"find me {_article(p.query)} {p.query} which is {_join(attributes)}"
        option_text = ", and ".join(f"{k}: {v}" for k, v in options.items())
        instruction = head + (f", with {option_text}" if option_text else "") + price_text
        return Goal(index, p.asin, p.query, p.category, p.product_category, p.title, attributes, options,
                    price_upper, instruction)

    # --- search --------------------------------------------------------------------------

    def _document(self, p: Product) -> list[str]:
        text = " ".join([p.title, p.title, p.query, *p.attributes, *(v for vs in p.options.values() for v in vs),
                         *p.features, p.description])
        return [_stem(w) for w in words(text)]

    def _index(self) -> None:
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._lengths = []
        for i, p in enumerate(self.products):
            doc = self._document(p)
            self._lengths.append(len(doc))
            for term, tf in sorted(Counter(doc).items()):
                self._postings[term].append((i, tf))
        self._avg_length = sum(self._lengths) / len(self._lengths)

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[Product]:
        """The ``k`` best products for ``query`` by BM25 (ties by catalogue order)."""
        k1, b, n = 1.5, 0.75, len(self.products)
        scores: dict[int, float] = defaultdict(float)
        for term in {_stem(w) for w in words(query) if w not in _STOPWORDS}:
            postings = self._postings.get(term, ())
            if not postings:
                continue
            idf = math.log(1 + (n - len(postings) + 0.5) / (len(postings) + 0.5))
            for i, tf in postings:
                scores[i] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * self._lengths[i] / self._avg_length))
        best = sorted(scores, key=lambda i: (-scores[i], i))[:k]
        return [self.products[i] for i in best]

    # --- reward ----------------------------------------------------------------------------

    def title_nouns(self, title: str) -> set[str]:
        return {w for w in words(title) if w in self.nouns}

    def reward(self, product: Product, goal: Goal, options: Mapping[str, str]) -> tuple[float, dict[str, float]]:
        """WebShop's purchase reward of buying ``product`` with ``options`` for ``goal``,
        and its parts."""
        r_type, parts = type_reward(product, goal, self.title_nouns(product.title), self.title_nouns(goal.name))
        attr_matches = attribute_matches(product, goal.attributes)
        option_matches = option_match_count(list(options.values()), list(goal.options.values()))
        r_price = product.price <= goal.price_upper
        total = (attr_matches + option_matches + r_price) / (len(goal.attributes) + len(goal.options) + 1)
        parts.update(r_att=attr_matches / len(goal.attributes), r_price=float(r_price),
                     r_option=option_matches / len(goal.options) if goal.options else 1.0)
        return total * r_type, parts


def _processed(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _ratio(a: str, b: str) -> int:
    if not a and not b:
        return 100
    return round(100 * difflib.SequenceMatcher(None, a, b, autojunk=False).ratio())


def token_set_ratio(a: str, b: str) -> int:
    """Similarity 0-100 of two strings' word sets (thefuzz's token_set_ratio): the words
    both share, compared with each side's whole set; 100 when one set holds the other."""
    ta, tb = set(_processed(a).split()), set(_processed(b).split())
    if not ta or not tb:
        return 0
    common = " ".join(sorted(ta & tb))
    with_a = (common + " " + " ".join(sorted(ta - tb))).strip()
    with_b = (common + " " + " ".join(sorted(tb - ta))).strip()
    return max(_ratio(common, with_a), _ratio(common, with_b), _ratio(with_a, with_b))


def normalize_color(option: str) -> str:
    """The first color word ``option`` contains, else ``option`` (WebShop's normalize_color)."""
    for color in COLOR_WORDS:
        if color in option:
            return color
    return option


def option_match_count(purchased: Sequence[str], wanted: Sequence[str]) -> int:
    purchased = [normalize_color(o) for o in purchased]
    return sum(any(token_set_ratio(p, normalize_color(w)) > 85 for p in purchased) for w in wanted)


def attribute_matches(product: Product, wanted: Sequence[str]) -> int:
    """Wanted attributes the product has (fuzzy) or names in its title, features or description."""
    texts = (product.title.lower(), " ".join(product.features).lower(), product.description.lower())
    return sum(any(token_set_ratio(a, w) > 85 for a in product.attributes) or any(w in t for t in texts)
               for w in wanted)


def type_reward(product: Product, goal: Goal, product_nouns: set[str], goal_nouns: set[str]
                ) -> tuple[float, dict[str, float]]:
    """1 for the same kind of product; 0.5, 0.1 or 0 as query, category and title nouns differ."""
    query_match = product.query == goal.query
    levels = lambda path: {x.strip() for x in path.split("›")}  # noqa: E731
    category_match = len(levels(product.product_category) & levels(goal.product_category)) >= 2
    title_score = len(product_nouns & goal_nouns) / len(goal_nouns) if goal_nouns else 0.2
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, {"r_type": r_type, "query_match": float(query_match), "category_match": float(category_match),
                    "title_score": title_score}


@functools.lru_cache(maxsize=8)
def catalogue(seed: int = 0, num_products: int = 3000) -> Catalogue:
    """The shop for (seed, num_products), built once per process."""
    return Catalogue(seed, num_products)
