"""Guess My City: the city table, its knowledge-base oracle and the win condition.

The oracle answers free-text questions about the hidden city in plain sentences and
never names it. A yes/no question is read for its proposition first: places named inside
other words ("the capital of Australia", "the Gulf of Mexico", "Southeast Asia", "the
Andes") are answered from `GEOGRAPHY`, `REGIONS`, `WATERS` and `RANGES`, truthfully or
with "I don't know" where the tables are silent, never with the nearest fact; other
questions are read with keyword rules. The phrasings it answers with are module
constants and helpers (`CLIMATES`, `population_sentence`, the `*_in` finders) so that
scripted players can read the answers back with the same code.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from typing import Sequence

from archer_jax.envs.question_game import MAX_TURNS, WIN_ANSWER, Oracle, OracleFormat, QuestionTask

CANT_ANSWER = "I can't answer that question."
FALLBACK_ANSWER = (
    "I'm not sure how to answer that. Try asking about the country, continent, "
    "language, climate, landmarks, food or sports."
)
ONE_CITY_ONLY = "Please guess only one city at a time."

CONTINENTS = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")

# Plain descriptions, completing "The city has ...". Deliberately not Koppen labels:
# borderline cities are argued about by label, not by description.
CLIMATES = {
    "tropical": "warm to hot weather all year round, with a rainy season",
    "desert": "a hot desert climate with very little rain",
    "cool_desert": "mild, dry weather and almost no rain",
    "semi_arid": "hot summers and fairly little rain",
    "mediterranean": "dry summers and mild, rainy winters",
    "humid_subtropical": "hot, humid summers and mild to cool winters",
    "oceanic": "mild summers, cool winters and rain spread through the year",
    "continental": "warm summers and cold winters with some snow",
    "highland": "mild, spring-like weather for most of the year because of its high altitude",
}


@dataclasses.dataclass(frozen=True)
class Country:
    continent: str
    currency: str
    aliases: tuple[str, ...] = ()


COUNTRIES: dict[str, Country] = {
    "United States": Country("North America", "US dollar",
                             ("USA", "U.S.A.", "U.S.", "United States of America", "America")),
    "Canada": Country("North America", "Canadian dollar"),
    "Mexico": Country("North America", "Mexican peso"),
    "Cuba": Country("North America", "Cuban peso"),
    "Brazil": Country("South America", "Brazilian real"),
    "Argentina": Country("South America", "Argentine peso"),
    "Peru": Country("South America", "Peruvian sol"),
    "Colombia": Country("South America", "Colombian peso"),
    "Chile": Country("South America", "Chilean peso"),
    "Venezuela": Country("South America", "Venezuelan bolivar"),
    "Ecuador": Country("South America", "US dollar"),
    "Uruguay": Country("South America", "Uruguayan peso"),
    "United Kingdom": Country("Europe", "pound sterling", ("UK", "U.K.", "Britain", "Great Britain")),
    "France": Country("Europe", "euro"),
    "Germany": Country("Europe", "euro"),
    "Spain": Country("Europe", "euro"),
    "Italy": Country("Europe", "euro"),
    "Netherlands": Country("Europe", "euro", ("Holland",)),
    "Austria": Country("Europe", "euro"),
    "Czech Republic": Country("Europe", "Czech koruna", ("Czechia",)),
    "Hungary": Country("Europe", "Hungarian forint"),
    "Poland": Country("Europe", "Polish zloty"),
    "Russia": Country("Europe", "Russian ruble"),
    "Turkey": Country("Europe", "Turkish lira", ("Türkiye",)),
    "Greece": Country("Europe", "euro"),
    "Portugal": Country("Europe", "euro"),
    "Ireland": Country("Europe", "euro"),
    "Sweden": Country("Europe", "Swedish krona"),
    "Denmark": Country("Europe", "Danish krone"),
    "Belgium": Country("Europe", "euro"),
    "Ukraine": Country("Europe", "Ukrainian hryvnia"),
    "Norway": Country("Europe", "Norwegian krone"),
    "Switzerland": Country("Europe", "Swiss franc"),
    "Japan": Country("Asia", "Japanese yen"),
    "South Korea": Country("Asia", "South Korean won", ("Korea",)),
    "China": Country("Asia", "Chinese yuan"),
    "Taiwan": Country("Asia", "New Taiwan dollar"),
    "Singapore": Country("Asia", "Singapore dollar"),
    "Thailand": Country("Asia", "Thai baht"),
    "Indonesia": Country("Asia", "Indonesian rupiah"),
    "Philippines": Country("Asia", "Philippine peso"),
    "Malaysia": Country("Asia", "Malaysian ringgit"),
    "Vietnam": Country("Asia", "Vietnamese dong", ("Viet Nam",)),
    "India": Country("Asia", "Indian rupee"),
    "Pakistan": Country("Asia", "Pakistani rupee"),
    "Bangladesh": Country("Asia", "Bangladeshi taka"),
    "Iran": Country("Asia", "Iranian rial"),
    "Iraq": Country("Asia", "Iraqi dinar"),
    "Saudi Arabia": Country("Asia", "Saudi riyal"),
    "United Arab Emirates": Country("Asia", "UAE dirham", ("UAE", "Emirates")),
    "Egypt": Country("Africa", "Egyptian pound"),
    "Nigeria": Country("Africa", "Nigerian naira"),
    "Democratic Republic of the Congo": Country("Africa", "Congolese franc", ("DR Congo", "DRC", "Congo")),
    "South Africa": Country("Africa", "South African rand"),
    "Kenya": Country("Africa", "Kenyan shilling"),
    "Ethiopia": Country("Africa", "Ethiopian birr"),
    "Morocco": Country("Africa", "Moroccan dirham"),
    "Ghana": Country("Africa", "Ghanaian cedi"),
    "Senegal": Country("Africa", "West African CFA franc"),
    "Angola": Country("Africa", "Angolan kwanza"),
    "Tanzania": Country("Africa", "Tanzanian shilling"),
    "Algeria": Country("Africa", "Algerian dinar"),
    "Australia": Country("Oceania", "Australian dollar"),
    "New Zealand": Country("Oceania", "New Zealand dollar"),
}
# Country names read with "the" in a sentence.
_THE_COUNTRIES = {"United States", "United Kingdom", "Netherlands", "Czech Republic", "Philippines",
                  "United Arab Emirates", "Democratic Republic of the Congo"}

# A question naming one of these means any language in the tuple.
LANGUAGE_ALIASES = {"Chinese": ("Mandarin", "Cantonese", "Shanghainese"), "Farsi": ("Persian",),
                    "Tagalog": ("Filipino",)}


@dataclasses.dataclass(frozen=True)
class City:
    """One hidden city. Text fields are written so they never contain the city's name.

    `water` completes "It ..." (e.g. "lies on the Seine river"). `population` is a
    safe lower bound, in millions, for the people living in and around the city.
    `capital_note`, when set, replaces the plain capital sentence and must start with
    "Yes" or "No" as `capital` says. `state` is the state/province for countries where
    people name one; `continents` and `currency` default to the country's.
    """

    name: str
    country: str
    languages: tuple[str, ...]
    coastal: bool
    capital: bool
    population: float
    climate: str
    landmarks: tuple[str, ...]
    dishes: tuple[str, ...]
    sports: tuple[str, ...]
    water: str | None = None
    teams: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    state: str | None = None
    southern: bool = False
    capital_note: str | None = None
    continents: tuple[str, ...] = ()
    currency: str = ""

    def __post_init__(self):
        country = COUNTRIES[self.country]
        if not self.continents:
            object.__setattr__(self, "continents", (country.continent,))
        if not self.currency:
            object.__setattr__(self, "currency", country.currency)
        if self.climate not in CLIMATES:
            raise ValueError(f"{self.name}: unknown climate {self.climate!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,) + self.aliases


CITIES: tuple[City, ...] = (
    # ---- North America
    City("New York City", aliases=("New York", "NYC", "the Big Apple"), state="New York",
         country="United States", languages=("English",), coastal=True,
         water="lies on the Atlantic coast, around a large natural harbor", capital=False,
         population=19, climate="continental",
         landmarks=("the Statue of Liberty", "the Empire State Building", "Central Park", "Times Square"),
         dishes=("bagels", "pizza by the slice", "pastrami sandwiches"),
         sports=("baseball", "basketball", "American football"), teams=("the Yankees", "the Knicks", "the Mets")),
    City("Los Angeles", aliases=("LA", "L.A."), state="California", country="United States",
         languages=("English", "Spanish"), coastal=True, water="lies on the Pacific coast", capital=False,
         population=12, climate="mediterranean",
         landmarks=("the Hollywood Sign", "the Griffith Observatory", "the Hollywood Walk of Fame"),
         dishes=("tacos", "Korean barbecue"), sports=("basketball", "baseball"),
         teams=("the Lakers", "the Dodgers")),
    City("Chicago", aliases=("the Windy City",), state="Illinois", country="United States",
         languages=("English",), coastal=False, water="lies on the shore of Lake Michigan", capital=False,
         population=9, climate="continental",
         landmarks=("the Willis Tower", "Cloud Gate, also called the Bean", "Navy Pier", "Wrigley Field"),
         dishes=("deep-dish pizza", "hot dogs"), sports=("baseball", "basketball", "American football"),
         teams=("the Bulls", "the Cubs", "the White Sox", "the Bears")),
    City("Houston", state="Texas", country="United States", languages=("English", "Spanish"),
         coastal=False, water="lies about 80 kilometers from the Gulf of Mexico", capital=False,
         population=7, climate="humid_subtropical",
         landmarks=("NASA's Johnson Space Center", "the Museum of Fine Arts", "the Astrodome"),
         dishes=("Tex-Mex food", "barbecue"), sports=("baseball", "basketball", "American football"),
         teams=("the Astros", "the Rockets", "the Texans")),
    City("San Francisco", aliases=("SF",), state="California", country="United States",
         languages=("English",), coastal=True,
         water="lies on a peninsula between the Pacific Ocean and a large bay", capital=False,
         population=4, climate="mediterranean",
         landmarks=("the Golden Gate Bridge", "Alcatraz Island", "the cable cars", "Fisherman's Wharf"),
         dishes=("sourdough bread", "Mission-style burritos", "cioppino"), sports=("baseball", "basketball"),
         teams=("the Giants", "the Warriors")),
    City("Miami", state="Florida", country="United States", languages=("English", "Spanish"),
         coastal=True, water="lies on the Atlantic coast", capital=False, population=6, climate="tropical",
         landmarks=("South Beach", "the Art Deco Historic District", "the Vizcaya Museum and Gardens"),
         dishes=("Cuban sandwiches", "stone crabs", "key lime pie"), sports=("basketball", "American football"),
         teams=("the Heat", "the Dolphins")),
    City("Washington, D.C.", aliases=("Washington", "Washington DC", "DC", "D.C."),
         country="United States", languages=("English",), coastal=False, water="lies on the Potomac River",
         capital=True, population=6, climate="continental",
         landmarks=("the White House", "the Capitol", "the Lincoln Memorial", "the Washington Monument"),
         dishes=("half-smoke sausages", "jumbo slice pizza"),
         sports=("American football", "basketball", "ice hockey", "baseball"),
         teams=("the Capitals", "the Nationals", "the Wizards", "the Commanders")),
    City("Boston", state="Massachusetts", country="United States", languages=("English",), coastal=True,
         water="lies on the Atlantic coast", capital=False, population=4, climate="continental",
         landmarks=("the Freedom Trail", "Fenway Park", "Faneuil Hall"),
         dishes=("clam chowder", "lobster rolls", "baked beans"),
         sports=("baseball", "basketball", "ice hockey", "American football"),
         teams=("the Red Sox", "the Celtics", "the Bruins")),
    City("Seattle", state="Washington State", country="United States", languages=("English",), coastal=True,
         water="lies on Puget Sound, an inlet of the Pacific Ocean", capital=False, population=3.5,
         climate="mediterranean", landmarks=("the Space Needle", "Pike Place Market", "the Museum of Pop Culture"),
         dishes=("salmon", "fresh seafood"), sports=("American football", "baseball", "soccer"),
         teams=("the Seahawks", "the Mariners", "the Sounders")),
    City("Las Vegas", aliases=("Vegas",), state="Nevada", country="United States", languages=("English",),
         coastal=False, water="lies in the Mojave Desert", capital=False, population=2, climate="desert",
         landmarks=("the Strip", "the Bellagio fountains", "Fremont Street"),
         dishes=("all-you-can-eat buffets",), sports=("ice hockey", "American football", "boxing"),
         teams=("the Golden Knights", "the Raiders")),
    City("Atlanta", state="Georgia", country="United States", languages=("English",), coastal=False,
         capital=False, population=6, climate="humid_subtropical",
         landmarks=("the Georgia Aquarium", "the Martin Luther King Jr. National Historical Park",
                    "the World of Coca-Cola"),
         dishes=("fried chicken", "peach cobbler"), sports=("baseball", "American football", "basketball"),
         teams=("the Braves", "the Falcons", "the Hawks")),
    City("Philadelphia", aliases=("Philly",), state="Pennsylvania", country="United States",
         languages=("English",), coastal=False, water="lies on the Delaware River", capital=False,
         population=6, climate="continental",
         landmarks=("the Liberty Bell", "Independence Hall", "the Rocky Steps"),
         dishes=("cheesesteaks", "soft pretzels"),
         sports=("American football", "baseball", "basketball", "ice hockey"),
         teams=("the Eagles", "the Phillies", "the 76ers", "the Flyers")),
    City("Toronto", state="Ontario", country="Canada", languages=("English",), coastal=False,
         water="lies on the shore of Lake Ontario", capital=False, population=6, climate="continental",
         landmarks=("the CN Tower", "the Royal Ontario Museum", "Casa Loma"),
         dishes=("peameal bacon sandwiches", "butter tarts"), sports=("ice hockey", "basketball", "baseball"),
         teams=("the Maple Leafs", "the Raptors", "the Blue Jays")),
    City("Montreal", state="Quebec", country="Canada", languages=("French", "English"),
         coastal=False, water="lies on an island in the Saint Lawrence River", capital=False, population=4,
         climate="continental", landmarks=("the Notre-Dame Basilica", "Mount Royal", "the Olympic Stadium"),
         dishes=("poutine", "bagels", "smoked meat"), sports=("ice hockey",), teams=("the Canadiens",)),
    City("Vancouver", state="British Columbia", country="Canada", languages=("English",), coastal=True,
         water="lies on the Pacific coast", capital=False, population=2.5, climate="mediterranean",
         landmarks=("Stanley Park", "the Capilano Suspension Bridge", "Granville Island"),
         dishes=("salmon", "sushi"), sports=("ice hockey",), teams=("the Canucks",)),
    City("Mexico City", aliases=("CDMX", "Ciudad de México"), country="Mexico", languages=("Spanish",),
         coastal=False, water="lies in a high valley, about 2,240 meters above sea level", capital=True,
         population=20, climate="highland",
         landmarks=("the Zócalo", "the Palacio de Bellas Artes", "Chapultepec Castle", "the Frida Kahlo Museum"),
         dishes=("tacos al pastor", "tamales", "chilaquiles"), sports=("football (soccer)", "lucha libre wrestling"),
         teams=("Club América", "Cruz Azul", "Pumas UNAM")),
    City("Havana", aliases=("La Habana",), country="Cuba", languages=("Spanish",), coastal=True,
         water="lies on the northern coast of an island, facing the Straits of Florida", capital=True,
         population=2, climate="tropical", landmarks=("the Malecón", "El Capitolio", "Morro Castle"),
         dishes=("ropa vieja", "moros y cristianos"), sports=("baseball", "boxing"), teams=("Industriales",)),
    # ---- South America
    City("São Paulo", aliases=("Sampa",), country="Brazil", languages=("Portuguese",), coastal=False,
         water="lies on a plateau about 70 kilometers from the Atlantic coast", capital=False, population=20,
         climate="humid_subtropical", southern=True,
         landmarks=("Avenida Paulista", "Ibirapuera Park", "the Municipal Market"),
         dishes=("pizza", "mortadella sandwiches", "pastel"), sports=("football (soccer)",),
         teams=("Corinthians", "Palmeiras")),
    City("Rio de Janeiro", aliases=("Rio",), country="Brazil", languages=("Portuguese",), coastal=True,
         water="lies on the Atlantic coast", capital=False, population=12, climate="tropical", southern=True,
         landmarks=("Christ the Redeemer", "Sugarloaf Mountain", "Copacabana beach", "the Maracanã stadium"),
         dishes=("feijoada", "churrasco"), sports=("football (soccer)", "beach volleyball"),
         teams=("Flamengo", "Fluminense", "Vasco da Gama", "Botafogo")),
    City("Buenos Aires", country="Argentina", languages=("Spanish",), coastal=True,
         water="lies on the shore of the Río de la Plata, a wide estuary that opens into the Atlantic Ocean",
         capital=True, population=14, climate="humid_subtropical", southern=True,
         landmarks=("the Obelisk", "the Casa Rosada", "the Teatro Colón", "La Boca"),
         dishes=("asado", "empanadas", "dulce de leche"), sports=("football (soccer)", "polo"),
         teams=("Boca Juniors", "River Plate")),
    City("Lima", country="Peru", languages=("Spanish",), coastal=True, water="lies on the Pacific coast",
         capital=True, population=10, climate="cool_desert", southern=True,
         landmarks=("the Plaza Mayor", "the Miraflores clifftops", "Huaca Pucllana"),
         dishes=("ceviche", "lomo saltado"), sports=("football (soccer)", "volleyball"),
         teams=("Universitario", "Sporting Cristal")),
    City("Bogotá", country="Colombia", languages=("Spanish",), coastal=False,
         water="lies on a high plateau in the Andes", capital=True, population=9, climate="highland",
         landmarks=("Monserrate", "the Gold Museum", "La Candelaria"), dishes=("ajiaco", "arepas"),
         sports=("football (soccer)", "cycling"), teams=("Millonarios", "Santa Fe")),
    City("Santiago", aliases=("Santiago de Chile",), country="Chile", languages=("Spanish",), coastal=False,
         water="lies in a valley between the Andes and the coastal mountains", capital=True, population=6,
         climate="mediterranean", southern=True,
         landmarks=("San Cristóbal Hill", "La Moneda Palace", "the Costanera Center"),
         dishes=("empanadas", "pastel de choclo"), sports=("football (soccer)",),
         teams=("Colo-Colo", "Universidad de Chile")),
    City("Caracas", country="Venezuela", languages=("Spanish",), coastal=False,
         water="lies in a mountain valley close to the Caribbean coast", capital=True, population=2,
         climate="tropical", landmarks=("El Ávila mountain", "the Plaza Bolívar", "the Teresa Carreño Theater"),
         dishes=("arepas", "pabellón criollo"), sports=("baseball", "football (soccer)")),
    City("Quito", country="Ecuador", languages=("Spanish",), coastal=False,
         water="lies high in the Andes, very close to the equator", capital=True, population=2.5,
         climate="highland", southern=True,
         landmarks=("the historic center", "the Basilica of the National Vow", "the Mitad del Mundo monument"),
         dishes=("locro de papa", "hornado"), sports=("football (soccer)",)),
    City("Medellín", country="Colombia", languages=("Spanish",), coastal=False,
         water="lies in a valley in the Andes", capital=False, population=3.5, climate="highland",
         landmarks=("Comuna 13", "the Metrocable", "the Plaza Botero"), dishes=("bandeja paisa", "arepas"),
         sports=("football (soccer)", "cycling"), teams=("Atlético Nacional",)),
    City("Montevideo", country="Uruguay", languages=("Spanish",), coastal=True,
         water="lies on the shore of the Río de la Plata", capital=True, population=1.5,
         climate="humid_subtropical", southern=True,
         landmarks=("the Rambla", "the Palacio Salvo", "the Estadio Centenario"), dishes=("chivito", "asado"),
         sports=("football (soccer)",), teams=("Peñarol", "Nacional")),
    # ---- Europe
    City("London", state="England", country="United Kingdom", languages=("English",), coastal=False,
         water="lies on the River Thames", capital=True, population=9, climate="oceanic",
         landmarks=("Big Ben", "Tower Bridge", "the British Museum", "Buckingham Palace"),
         dishes=("fish and chips", "pie and mash", "a full English breakfast"),
         sports=("football (soccer)", "cricket", "tennis"), teams=("Arsenal", "Chelsea", "Tottenham Hotspur")),
    City("Paris", country="France", languages=("French",), coastal=False, water="lies on the Seine river",
         capital=True, population=10, climate="oceanic",
         landmarks=("the Eiffel Tower", "the Louvre", "Notre-Dame Cathedral", "the Arc de Triomphe"),
         dishes=("croissants", "baguettes", "crêpes", "steak frites"),
         sports=("football (soccer)", "tennis", "rugby")),
    City("Berlin", country="Germany", languages=("German",), coastal=False, water="lies on the Spree river",
         capital=True, population=4, climate="continental",
         landmarks=("the Brandenburg Gate", "the Reichstag building", "Museum Island", "the TV Tower"),
         dishes=("currywurst", "döner kebab"), sports=("football (soccer)",), teams=("Hertha BSC",)),
    City("Madrid", country="Spain", languages=("Spanish",), coastal=False,
         water="lies on a high plateau in the middle of the country", capital=True, population=6,
         climate="mediterranean",
         landmarks=("the Royal Palace", "the Prado Museum", "the Plaza Mayor", "Retiro Park"),
         dishes=("cocido madrileño", "calamari sandwiches", "churros with chocolate"),
         sports=("football (soccer)",), teams=("Real Madrid", "Atlético Madrid")),
    City("Barcelona", state="Catalonia", country="Spain", languages=("Catalan", "Spanish"), coastal=True,
         water="lies on the Mediterranean Sea", capital=False, population=4.5, climate="mediterranean",
         landmarks=("the Sagrada Família", "Park Güell", "La Rambla", "Casa Batlló"),
         dishes=("pa amb tomàquet", "crema catalana", "tapas"), sports=("football (soccer)",),
         teams=("FC Barcelona", "Espanyol")),
    City("Rome", aliases=("Roma",), state="Lazio", country="Italy", languages=("Italian",), coastal=False,
         water="lies on the Tiber river, about 25 kilometers from the sea", capital=True, population=3.5,
         climate="mediterranean",
         landmarks=("the Colosseum", "the Pantheon", "the Trevi Fountain", "St. Peter's Basilica"),
         dishes=("spaghetti carbonara", "cacio e pepe", "supplì"), sports=("football (soccer)",),
         teams=("AS Roma", "Lazio")),
    City("Milan", aliases=("Milano",), state="Lombardy", country="Italy", languages=("Italian",),
         coastal=False, water="lies in the Po Valley", capital=False, population=3, climate="humid_subtropical",
         landmarks=("the Duomo", "La Scala opera house", "the Galleria Vittorio Emanuele II", "The Last Supper"),
         dishes=("risotto alla milanese", "cotoletta", "panettone"), sports=("football (soccer)",),
         teams=("AC Milan", "Inter Milan")),
    City("Amsterdam", country="Netherlands", languages=("Dutch",), coastal=False,
         water="is built around a ring of canals", capital=True, population=2, climate="oceanic",
         landmarks=("the Rijksmuseum", "the Anne Frank House", "the Van Gogh Museum"),
         dishes=("stroopwafels", "raw herring", "bitterballen"), sports=("football (soccer)", "cycling"),
         teams=("Ajax",)),
    City("Vienna", aliases=("Wien",), country="Austria", languages=("German",), coastal=False,
         water="lies on the Danube river", capital=True, population=2.5, climate="continental",
         landmarks=("Schönbrunn Palace", "St. Stephen's Cathedral", "the Hofburg", "the Belvedere"),
         dishes=("Wiener schnitzel", "Sachertorte", "apple strudel"), sports=("football (soccer)", "skiing")),
    City("Prague", aliases=("Praha",), country="Czech Republic", languages=("Czech",), coastal=False,
         water="lies on the Vltava river", capital=True, population=2, climate="continental",
         landmarks=("the Charles Bridge", "the Old Town Square", "the Astronomical Clock"),
         dishes=("svíčková", "goulash with dumplings", "trdelník"), sports=("ice hockey", "football (soccer)")),
    City("Budapest", country="Hungary", languages=("Hungarian",), coastal=False,
         water="lies on both banks of the Danube river", capital=True, population=2.5, climate="continental",
         landmarks=("the Hungarian Parliament Building", "Buda Castle", "the Chain Bridge",
                    "the Széchenyi thermal bath"),
         dishes=("goulash", "lángos", "chimney cake"), sports=("water polo", "football (soccer)"),
         teams=("Ferencváros",)),
    City("Warsaw", aliases=("Warszawa",), country="Poland", languages=("Polish",), coastal=False,
         water="lies on the Vistula river", capital=True, population=2.5, climate="continental",
         landmarks=("the Old Town", "the Palace of Culture and Science", "the Royal Castle", "Łazienki Park"),
         dishes=("pierogi", "żurek soup"), sports=("football (soccer)", "volleyball"), teams=("Legia",)),
    City("Moscow", country="Russia", languages=("Russian",), coastal=False,
         water="lies on a river in the western part of the country", capital=True, population=12,
         climate="continental",
         landmarks=("Red Square", "the Kremlin", "St. Basil's Cathedral", "the Bolshoi Theatre"),
         dishes=("borscht", "blini", "pelmeni"), sports=("ice hockey", "football (soccer)"),
         teams=("Spartak", "CSKA")),
    City("Saint Petersburg", aliases=("St. Petersburg", "St Petersburg", "Petersburg", "Leningrad"),
         country="Russia", languages=("Russian",), coastal=True,
         water="lies on the Gulf of Finland, at the mouth of the Neva river", capital=False, population=5,
         climate="continental",
         landmarks=("the Hermitage Museum", "the Peter and Paul Fortress", "the Church of the Savior on Spilled Blood"),
         dishes=("blini", "pyshki doughnuts"), sports=("football (soccer)",), teams=("Zenit",)),
    City("Istanbul", aliases=("Constantinople",), country="Turkey", continents=("Europe", "Asia"),
         languages=("Turkish",), coastal=True,
         water="lies on both sides of the Bosphorus strait, between the Black Sea and the Sea of Marmara",
         capital=False, population=15, climate="mediterranean",
         landmarks=("the Hagia Sophia", "the Blue Mosque", "Topkapı Palace", "the Grand Bazaar"),
         dishes=("kebabs", "baklava", "simit"), sports=("football (soccer)", "basketball"),
         teams=("Galatasaray", "Fenerbahçe", "Beşiktaş")),
    City("Athens", country="Greece", languages=("Greek",), coastal=True,
         water="stretches down to the Saronic Gulf of the Aegean Sea", capital=True, population=3,
         climate="mediterranean",
         landmarks=("the Acropolis", "the Parthenon", "the Temple of Olympian Zeus", "the Plaka district"),
         dishes=("souvlaki", "moussaka", "gyros"), sports=("football (soccer)", "basketball"),
         teams=("Panathinaikos", "Olympiacos")),
    City("Lisbon", aliases=("Lisboa",), country="Portugal", languages=("Portuguese",), coastal=True,
         water="lies on the estuary of the Tagus river, where it meets the Atlantic Ocean", capital=True,
         population=2.5, climate="mediterranean",
         landmarks=("the Belém Tower", "the Jerónimos Monastery", "São Jorge Castle", "Tram 28"),
         dishes=("pastéis de nata", "bacalhau", "grilled sardines"), sports=("football (soccer)",),
         teams=("Benfica", "Sporting CP")),
    City("Dublin", country="Ireland", languages=("English",), coastal=True,
         water="lies on a bay of the Irish Sea", capital=True, population=1.2, climate="oceanic",
         landmarks=("Trinity College", "the Guinness Storehouse", "Temple Bar"),
         dishes=("Irish stew", "coddle", "a full Irish breakfast"),
         sports=("Gaelic football", "hurling", "rugby")),
    City("Stockholm", country="Sweden", languages=("Swedish",), coastal=True,
         water="is built on islands where a large lake meets the Baltic Sea", capital=True, population=2,
         climate="continental", landmarks=("Gamla Stan", "the Vasa Museum", "the Royal Palace"),
         dishes=("meatballs", "cinnamon buns", "gravlax"), sports=("ice hockey", "football (soccer)"),
         teams=("AIK", "Djurgården", "Hammarby")),
    City("Copenhagen", aliases=("København",), country="Denmark", languages=("Danish",), coastal=True,
         water="lies on the Øresund strait", capital=True, population=1.3, climate="oceanic",
         landmarks=("the Tivoli Gardens", "Nyhavn", "The Little Mermaid statue"),
         dishes=("smørrebrød", "Danish pastries"), sports=("football (soccer)", "handball", "cycling"),
         teams=("Brøndby",)),
    City("Brussels", aliases=("Bruxelles", "Brussel"), country="Belgium", languages=("French", "Dutch"),
         coastal=False, capital=True, population=1.2, climate="oceanic",
         landmarks=("the Atomium", "the Grand-Place", "the Manneken Pis"),
         dishes=("waffles", "fries", "chocolate", "moules-frites"), sports=("football (soccer)", "cycling"),
         teams=("Anderlecht",)),
    City("Munich", aliases=("München",), state="Bavaria", country="Germany", languages=("German",),
         coastal=False, water="lies on the Isar river", capital=False, population=1.5, climate="continental",
         landmarks=("Marienplatz", "Nymphenburg Palace", "the English Garden"),
         dishes=("white sausages", "pretzels", "roast pork"), sports=("football (soccer)",), teams=("FC Bayern",)),
    City("Kyiv", aliases=("Kiev",), country="Ukraine", languages=("Ukrainian",), coastal=False,
         water="lies on the Dnipro river", capital=True, population=2, climate="continental",
         landmarks=("Saint Sophia Cathedral", "Maidan Nezalezhnosti", "the Golden Gate"),
         dishes=("borscht", "varenyky"), sports=("football (soccer)",)),
    City("Oslo", country="Norway", languages=("Norwegian",), coastal=True,
         water="lies at the head of a long fjord", capital=True, population=1, climate="continental",
         landmarks=("the Opera House", "Vigeland Park", "the Holmenkollen ski jump"),
         dishes=("salmon", "brown cheese"), sports=("skiing", "football (soccer)")),
    City("Zurich", country="Switzerland", languages=("German",), coastal=False,
         water="lies at the northern end of a large lake", capital=False, population=1, climate="continental",
         landmarks=("the Bahnhofstrasse", "the Grossmünster", "the Fraumünster"),
         dishes=("Zürcher Geschnetzeltes", "rösti", "fondue"), sports=("ice hockey", "football (soccer)"),
         teams=("the Grasshoppers",)),
    City("Edinburgh", state="Scotland", country="United Kingdom", languages=("English",), coastal=True,
         water="lies on the Firth of Forth", capital=False,
         capital_note="No, it is not the capital of the whole country, but it is the capital of Scotland.",
         population=0.5, climate="oceanic",
         landmarks=("the Royal Mile", "Arthur's Seat", "the Palace of Holyroodhouse"),
         dishes=("haggis", "shortbread"), sports=("rugby", "football (soccer)", "golf"),
         teams=("Hearts", "Hibernian")),
    # ---- Asia
    City("Tokyo", country="Japan", languages=("Japanese",), coastal=True,
         water="lies on a large bay of the Pacific Ocean", capital=True, population=35,
         climate="humid_subtropical",
         landmarks=("the Shibuya Crossing", "Senso-ji temple", "the Meiji Shrine", "the Imperial Palace"),
         dishes=("sushi", "ramen", "tempura"), sports=("baseball", "sumo wrestling", "football (soccer)"),
         teams=("the Yomiuri Giants",)),
    City("Osaka", country="Japan", languages=("Japanese",), coastal=True,
         water="lies on a bay of the Seto Inland Sea", capital=False, population=15,
         climate="humid_subtropical", landmarks=("Dotonbori", "Universal Studios Japan", "the Tsutenkaku tower"),
         dishes=("takoyaki", "okonomiyaki", "kushikatsu"), sports=("baseball",),
         teams=("the Hanshin Tigers", "the Orix Buffaloes")),
    City("Kyoto", country="Japan", languages=("Japanese",), coastal=False,
         water="lies in a basin surrounded by mountains", capital=False,
         capital_note="No, although it was the imperial capital for more than a thousand years.",
         population=1.4, climate="humid_subtropical",
         landmarks=("the Fushimi Inari Shrine", "the Golden Pavilion", "Kiyomizu-dera temple",
                    "the Arashiyama bamboo grove"),
         dishes=("kaiseki meals", "yudofu tofu hot pot", "matcha sweets"), sports=("baseball", "football (soccer)")),
    City("Seoul", country="South Korea", languages=("Korean",), coastal=False, water="lies on the Han River",
         capital=True, population=20, climate="continental",
         landmarks=("Gyeongbokgung Palace", "Bukchon Hanok Village", "Myeongdong"),
         dishes=("kimchi", "Korean barbecue", "bibimbap"), sports=("baseball", "football (soccer)", "esports"),
         teams=("the LG Twins", "the Doosan Bears")),
    City("Beijing", aliases=("Peking",), country="China", languages=("Mandarin",), coastal=False,
         capital=True, population=20, climate="continental",
         landmarks=("the Forbidden City", "Tiananmen Square", "the Temple of Heaven", "the Great Wall at Badaling"),
         dishes=("Peking duck", "jiaozi dumplings", "zhajiangmian noodles"),
         sports=("football (soccer)", "basketball", "table tennis")),
    City("Shanghai", country="China", languages=("Mandarin", "Shanghainese"), coastal=True,
         water="lies on the East China Sea, at the mouth of the Yangtze River", capital=False, population=24,
         climate="humid_subtropical", landmarks=("the Bund", "the Oriental Pearl Tower", "Yu Garden"),
         dishes=("xiaolongbao soup dumplings", "shengjian buns", "hairy crab"),
         sports=("football (soccer)", "basketball")),
    City("Hong Kong", aliases=("HK",), country="China", currency="Hong Kong dollar",
         languages=("Cantonese", "English"), coastal=True,
         water="lies on the South China Sea, around a deep natural harbor", capital=False, population=7,
         climate="humid_subtropical",
         landmarks=("Victoria Harbour", "Victoria Peak", "the Tian Tan Buddha", "the Star Ferry"),
         dishes=("dim sum", "roast goose", "egg tarts", "wonton noodles"),
         sports=("horse racing", "football (soccer)")),
    City("Guangzhou", aliases=("Canton",), state="Guangdong", country="China",
         languages=("Cantonese", "Mandarin"), coastal=False,
         water="lies on the Pearl River, near the South China Sea", capital=False, population=15,
         climate="humid_subtropical",
         landmarks=("the Chen Clan Ancestral Hall", "Shamian Island", "Yuexiu Park"),
         dishes=("dim sum", "char siu roast pork", "Cantonese soups"), sports=("football (soccer)", "basketball")),
    City("Shenzhen", state="Guangdong", country="China", languages=("Mandarin", "Cantonese"), coastal=True,
         water="lies on the South China Sea, in the Pearl River Delta", capital=False, population=15,
         climate="humid_subtropical",
         landmarks=("the Window of the World park", "the Ping An Finance Center", "the Splendid China Folk Village"),
         dishes=("dim sum", "Cantonese seafood"), sports=("football (soccer)", "basketball")),
    City("Chengdu", state="Sichuan", country="China", languages=("Mandarin",), coastal=False,
         water="lies on a wide, fertile plain in the southwest of the country", capital=False, population=15,
         climate="humid_subtropical",
         landmarks=("the giant panda research base", "Jinli Ancient Street", "the Wuhou Shrine",
                    "the Wenshu Monastery"),
         dishes=("Sichuan hot pot", "mapo tofu", "kung pao chicken"), sports=("football (soccer)",)),
    City("Taipei", country="Taiwan", languages=("Mandarin", "Hokkien"), coastal=False,
         water="lies in a basin by the Tamsui River", capital=True, population=6, climate="humid_subtropical",
         landmarks=("the National Palace Museum", "the Chiang Kai-shek Memorial Hall", "the Shilin Night Market"),
         dishes=("beef noodle soup", "bubble tea", "xiaolongbao"), sports=("baseball", "basketball")),
    City("Singapore", country="Singapore", languages=("English", "Mandarin", "Malay", "Tamil"), coastal=True,
         water="lies on an island at the southern tip of the Malay Peninsula", capital=True,
         capital_note="Yes, it is a city-state, so it is its own capital.", population=5.5, climate="tropical",
         landmarks=("Marina Bay Sands", "the Gardens by the Bay", "the Merlion statue"),
         dishes=("chili crab", "Hainanese chicken rice", "laksa"), sports=("football (soccer)", "badminton")),
    City("Bangkok", aliases=("Krung Thep",), country="Thailand", languages=("Thai",), coastal=False,
         water="lies on the Chao Phraya River, near the Gulf of Thailand", capital=True, population=10,
         climate="tropical", landmarks=("the Grand Palace", "Wat Arun", "Wat Pho", "the Chatuchak Market"),
         dishes=("pad thai", "tom yum soup", "green curry", "mango sticky rice"),
         sports=("Muay Thai", "football (soccer)")),
    City("Jakarta", country="Indonesia", languages=("Indonesian",), coastal=True,
         water="lies on the Java Sea, on the northwest coast of Java", capital=True, population=30,
         climate="tropical", southern=True,
         landmarks=("the National Monument", "the Istiqlal Mosque", "the Old Town"),
         dishes=("nasi goreng", "satay", "gado-gado"), sports=("badminton", "football (soccer)"),
         teams=("Persija",)),
    City("Manila", country="Philippines", languages=("Filipino", "English"), coastal=True,
         water="lies on a large bay on the western coast of Luzon", capital=True, population=13,
         climate="tropical", landmarks=("Intramuros", "Rizal Park", "San Agustin Church"),
         dishes=("adobo", "sinigang", "lechon"), sports=("basketball", "boxing")),
    City("Kuala Lumpur", aliases=("KL",), country="Malaysia", languages=("Malay", "English"), coastal=False,
         water="lies where two rivers meet", capital=True, population=7, climate="tropical",
         landmarks=("the Petronas Twin Towers", "the Batu Caves", "Merdeka Square"),
         dishes=("nasi lemak", "satay", "roti canai"), sports=("badminton", "football (soccer)")),
    City("Ho Chi Minh City", aliases=("Saigon", "HCMC", "Ho Chi Minh"), country="Vietnam",
         languages=("Vietnamese",), coastal=False, water="lies on a river near the Mekong Delta", capital=False,
         population=9, climate="tropical",
         landmarks=("the Ben Thanh Market", "the Independence Palace", "the War Remnants Museum",
                    "the Cu Chi Tunnels"),
         dishes=("pho", "banh mi", "broken rice"), sports=("football (soccer)",)),
    City("Hanoi", aliases=("Ha Noi",), country="Vietnam", languages=("Vietnamese",), coastal=False,
         water="lies on the Red River", capital=True, population=8, climate="humid_subtropical",
         landmarks=("Hoan Kiem Lake", "the Temple of Literature", "the Old Quarter", "the One Pillar Pagoda"),
         dishes=("pho", "bun cha", "egg coffee"), sports=("football (soccer)",)),
    City("Mumbai", aliases=("Bombay",), state="Maharashtra", country="India",
         languages=("Marathi", "Hindi", "English"), coastal=True, water="lies on the Arabian Sea",
         capital=False, population=20, climate="tropical",
         landmarks=("the Gateway of India", "Marine Drive", "the Chhatrapati Shivaji Terminus",
                    "the Elephanta Caves"),
         dishes=("vada pav", "pav bhaji", "bhel puri"), sports=("cricket",)),
    City("Delhi", aliases=("New Delhi",), country="India", languages=("Hindi", "English"), coastal=False,
         water="lies on the Yamuna river", capital=True, population=30, climate="humid_subtropical",
         landmarks=("the Red Fort", "India Gate", "the Qutub Minar", "Humayun's Tomb"),
         dishes=("butter chicken", "chole bhature", "parathas"), sports=("cricket",)),
    City("Kolkata", aliases=("Calcutta",), state="West Bengal", country="India", languages=("Bengali", "Hindi"),
         coastal=False, water="lies on the Hooghly River", capital=False, population=14, climate="tropical",
         landmarks=("the Victoria Memorial", "the Howrah Bridge", "Eden Gardens"),
         dishes=("rosogolla", "kathi rolls", "fish curry"), sports=("football (soccer)", "cricket"),
         teams=("Mohun Bagan", "East Bengal")),
    City("Bangalore", aliases=("Bengaluru",), state="Karnataka", country="India",
         languages=("Kannada", "English"), coastal=False, water="lies on a plateau about 900 meters above sea level",
         capital=False, population=12, climate="tropical",
         landmarks=("the Lalbagh Botanical Garden", "Cubbon Park", "the Vidhana Soudha"),
         dishes=("masala dosa", "idli", "bisi bele bath"), sports=("cricket", "football (soccer)")),
    City("Chennai", aliases=("Madras",), state="Tamil Nadu", country="India", languages=("Tamil", "English"),
         coastal=True, water="lies on the Bay of Bengal", capital=False, population=10, climate="tropical",
         landmarks=("Marina Beach", "the Kapaleeshwarar Temple", "Fort St. George"),
         dishes=("idli", "dosa", "Chettinad chicken", "filter coffee"), sports=("cricket",)),
    City("Karachi", state="Sindh", country="Pakistan", languages=("Urdu",), coastal=True,
         water="lies on the Arabian Sea", capital=False, population=15, climate="desert",
         landmarks=("the Mazar-e-Quaid", "Clifton Beach", "Frere Hall"),
         dishes=("biryani", "nihari", "haleem"), sports=("cricket",)),
    City("Lahore", state="Punjab", country="Pakistan", languages=("Punjabi", "Urdu"), coastal=False,
         water="lies on the Ravi River", capital=False, population=12, climate="semi_arid",
         landmarks=("the Badshahi Mosque", "the Shalimar Gardens", "the Minar-e-Pakistan"),
         dishes=("nihari", "halwa puri", "kebabs"), sports=("cricket",)),
    City("Dhaka", country="Bangladesh", languages=("Bengali",), coastal=False,
         water="lies on the Buriganga River", capital=True, population=20, climate="tropical",
         landmarks=("the Lalbagh Fort", "the Ahsan Manzil", "the National Parliament House"),
         dishes=("kacchi biryani", "hilsa fish", "fuchka"), sports=("cricket", "football (soccer)"),
         teams=("Abahani",)),
    City("Tehran", country="Iran", languages=("Persian",), coastal=False,
         water="lies at the foot of the Alborz mountains", capital=True, population=8, climate="semi_arid",
         landmarks=("the Azadi Tower", "the Milad Tower", "the Golestan Palace", "the Grand Bazaar"),
         dishes=("chelo kebab", "ghormeh sabzi"), sports=("football (soccer)", "wrestling"),
         teams=("Persepolis", "Esteghlal")),
    City("Baghdad", country="Iraq", languages=("Arabic",), coastal=False, water="lies on the Tigris river",
         capital=True, population=7, climate="desert",
         landmarks=("the Al-Shaheed Monument", "the Mustansiriya School", "the Kadhimiya Mosque"),
         dishes=("masgouf grilled fish", "dolma", "kebab"), sports=("football (soccer)",),
         teams=("Al-Zawraa", "Al-Shorta")),
    City("Riyadh", country="Saudi Arabia", languages=("Arabic",), coastal=False,
         water="lies on a desert plateau in the middle of the country", capital=True, population=6,
         climate="desert", landmarks=("the Kingdom Centre", "the Masmak Fortress", "Diriyah"),
         dishes=("kabsa", "jareesh"), sports=("football (soccer)",), teams=("Al-Hilal", "Al-Nassr")),
    City("Dubai", country="United Arab Emirates", languages=("Arabic", "English"), coastal=True,
         water="lies on the Persian Gulf", capital=False, population=3.5, climate="desert",
         landmarks=("the Burj Khalifa", "the Palm Jumeirah", "the Burj Al Arab"),
         dishes=("shawarma", "machboos", "luqaimat"), sports=("horse racing", "cricket", "football (soccer)")),
    # ---- Africa
    City("Cairo", country="Egypt", languages=("Arabic",), coastal=False, water="lies on the Nile river",
         capital=True, population=20, climate="desert",
         landmarks=("the Pyramids of Giza", "the Egyptian Museum", "the Khan el-Khalili bazaar"),
         dishes=("koshari", "ful medames", "falafel"), sports=("football (soccer)", "squash"),
         teams=("Al Ahly", "Zamalek")),
    City("Lagos", country="Nigeria", languages=("English", "Yoruba"), coastal=True,
         water="lies on the Atlantic coast, around a large lagoon", capital=False,
         capital_note="No, it was the capital until 1991, but it is still the country's largest city.",
         population=15, climate="tropical",
         landmarks=("the Lekki Conservation Centre", "the National Theatre", "Tafawa Balewa Square"),
         dishes=("jollof rice", "suya", "puff-puff"), sports=("football (soccer)",)),
    City("Kinshasa", country="Democratic Republic of the Congo", languages=("French", "Lingala"),
         coastal=False, water="lies on the Congo River", capital=True, population=15, climate="tropical",
         southern=True, landmarks=("the Stade des Martyrs", "the Boulevard du 30 Juin", "the Lola ya Bonobo sanctuary"),
         dishes=("moambe chicken", "fufu", "pondu"), sports=("football (soccer)",),
         teams=("AS Vita Club", "DC Motema Pembe")),
    City("Johannesburg", aliases=("Joburg", "Jozi"), country="South Africa",
         languages=("Zulu", "English", "Sotho"), coastal=False,
         water="lies on a high plateau called the Highveld", capital=False, population=5, climate="highland",
         southern=True, landmarks=("the Apartheid Museum", "Soweto", "Constitution Hill", "Gold Reef City"),
         dishes=("braai", "pap", "boerewors"), sports=("football (soccer)", "rugby", "cricket"),
         teams=("Kaizer Chiefs", "Orlando Pirates")),
    City("Cape Town", country="South Africa", languages=("Afrikaans", "English", "Xhosa"), coastal=True,
         water="lies on the Atlantic coast, near the Cape of Good Hope", capital=True,
         capital_note="Yes, it is one of its country's three capitals; the parliament sits there.",
         population=4, climate="mediterranean", southern=True,
         landmarks=("Table Mountain", "Robben Island", "the V&A Waterfront"),
         dishes=("bobotie", "Cape Malay curry", "koeksisters"), sports=("rugby", "cricket", "football (soccer)"),
         teams=("the Stormers",)),
    City("Nairobi", country="Kenya", languages=("Swahili", "English"), coastal=False,
         water="lies on a high plateau", capital=True, population=4, climate="highland", southern=True,
         landmarks=("the Giraffe Centre", "Karura Forest", "the Kenyatta International Convention Centre"),
         dishes=("nyama choma", "ugali", "sukuma wiki"), sports=("athletics", "football (soccer)", "rugby"),
         teams=("Gor Mahia", "AFC Leopards")),
    City("Addis Ababa", aliases=("Addis",), country="Ethiopia", languages=("Amharic",), coastal=False,
         water="lies in the highlands, more than 2,300 meters above sea level", capital=True, population=3,
         climate="highland", landmarks=("the Holy Trinity Cathedral", "the National Museum", "the Merkato market"),
         dishes=("injera", "doro wat", "kitfo"), sports=("long-distance running", "football (soccer)"),
         teams=("Saint George",)),
    City("Casablanca", country="Morocco", languages=("Arabic", "French"), coastal=True,
         water="lies on the Atlantic coast", capital=False, population=3, climate="mediterranean",
         landmarks=("the Hassan II Mosque", "the Corniche", "the old medina"),
         dishes=("couscous", "tagine", "harira"), sports=("football (soccer)",), teams=("Raja", "Wydad")),
    City("Accra", country="Ghana", languages=("English", "Twi", "Ga"), coastal=True,
         water="lies on the Gulf of Guinea", capital=True, population=4, climate="tropical",
         landmarks=("the Kwame Nkrumah Mausoleum", "the Independence Arch", "the Makola Market"),
         dishes=("jollof rice", "fufu", "kelewele"), sports=("football (soccer)", "boxing"),
         teams=("Hearts of Oak",)),
    City("Dakar", country="Senegal", languages=("French", "Wolof"), coastal=True,
         water="lies on a peninsula on the Atlantic coast", capital=True, population=3, climate="semi_arid",
         landmarks=("the African Renaissance Monument", "Gorée Island", "the Pink Lake"),
         dishes=("thieboudienne", "yassa chicken", "mafé"), sports=("wrestling", "football (soccer)")),
    City("Luanda", country="Angola", languages=("Portuguese",), coastal=True, water="lies on the Atlantic coast",
         capital=True, population=8, climate="semi_arid", southern=True,
         landmarks=("the Fortress of São Miguel", "the Marginal waterfront", "the Agostinho Neto Mausoleum"),
         dishes=("moamba de galinha", "funge", "calulu"), sports=("basketball", "football (soccer)"),
         teams=("Primeiro de Agosto",)),
    City("Dar es Salaam", country="Tanzania", languages=("Swahili", "English"), coastal=True,
         water="lies on the Indian Ocean", capital=False,
         capital_note="No, it is not the official capital, but it is the country's largest city.",
         population=5, climate="tropical", southern=True,
         landmarks=("the Kariakoo Market", "the National Museum", "the Askari Monument"),
         dishes=("chipsi mayai", "pilau", "nyama choma"), sports=("football (soccer)",),
         teams=("Simba", "Young Africans")),
    City("Algiers", country="Algeria", languages=("Arabic", "French"), coastal=True,
         water="lies on the Mediterranean Sea", capital=True, population=3, climate="mediterranean",
         landmarks=("the Casbah", "the Notre-Dame d'Afrique basilica", "the Martyrs' Memorial"),
         dishes=("couscous", "chakhchoukha", "mhadjeb"), sports=("football (soccer)",)),
    # ---- Oceania
    City("Sydney", state="New South Wales", country="Australia", languages=("English",), coastal=True,
         water="lies on a large natural harbour on the Pacific coast", capital=False, population=5,
         climate="humid_subtropical", southern=True,
         landmarks=("the Opera House", "the Harbour Bridge", "Bondi Beach", "The Rocks"),
         dishes=("meat pies", "barramundi", "pavlova"),
         sports=("rugby league", "cricket", "Australian rules football"), teams=("the Swans", "the Roosters")),
    City("Melbourne", state="Victoria", country="Australia", languages=("English",), coastal=True,
         water="lies on Port Phillip Bay", capital=False, population=5, climate="oceanic", southern=True,
         landmarks=("Federation Square", "Flinders Street Station", "the MCG cricket ground"),
         dishes=("flat white coffee", "dim sims"), sports=("Australian rules football", "cricket", "tennis"),
         teams=("Collingwood", "Carlton")),
    City("Perth", state="Western Australia", country="Australia", languages=("English",), coastal=True,
         water="lies on the Indian Ocean coast", capital=False, population=2, climate="mediterranean",
         southern=True, landmarks=("Kings Park", "Rottnest Island", "Elizabeth Quay"),
         dishes=("fish and chips", "rock lobster"), sports=("Australian rules football", "cricket"),
         teams=("the West Coast Eagles", "Fremantle")),
    City("Auckland", country="New Zealand", languages=("English",), coastal=True,
         water="lies between two harbours, one opening to the Pacific Ocean and one to the Tasman Sea",
         capital=False, population=1.5, climate="oceanic", southern=True,
         landmarks=("the Sky Tower", "Mount Eden", "Waiheke Island"),
         dishes=("pavlova", "hāngī", "hokey pokey ice cream"), sports=("rugby", "cricket", "netball"),
         teams=("the Blues",)),
)

CITY_BY_NAME: dict[str, City] = {city.name: city for city in CITIES}
CITY_NAMES: tuple[str, ...] = tuple(CITY_BY_NAME)
LANGUAGES: tuple[str, ...] = tuple(sorted({lang for city in CITIES for lang in city.languages}))
STATES: tuple[str, ...] = tuple(sorted({city.state for city in CITIES if city.state}))


# ---------------------------------------------------------------------------- geography
@dataclasses.dataclass(frozen=True)
class Geography:
    """Facts the oracle answers yes/no questions from, beside `City`'s.

    `lat`/`lon`: degrees (about 0.1). `waters`: the named seas, oceans, rivers and lakes
    the city lies on (or next to: Houston and the Gulf of Mexico), the ocean a bordering
    sea belongs to included. `mountains`: ranges the city lies in or directly beside;
    () = none, None = not sure (it answers neither yes nor no). `near`: ranges within
    sight, not around the city (Zurich and the Alps). `largest`: the largest city of its
    country (None: depends on how a city is counted). `capital_of`: the states or
    provinces it is the capital of; None = not sure.
    """

    lat: float
    lon: float
    waters: tuple[str, ...]
    mountains: tuple[str, ...] | None
    largest: bool | None
    capital_of: tuple[str, ...] | None
    near: tuple[str, ...] = ()


_G = Geography
GEOGRAPHY: dict[str, Geography] = {
    "New York City": _G(40.7, -74.0, ("Atlantic Ocean", "Hudson River", "East River"), (), True, ()),
    "Los Angeles": _G(34.1, -118.2, ("Pacific Ocean",), ("the San Gabriel Mountains", "the Santa Monica Mountains"),
                      False, ()),
    "Chicago": _G(41.9, -87.6, ("Lake Michigan", "Great Lakes"), (), False, ()),
    "Houston": _G(29.8, -95.4, ("Gulf of Mexico",), (), False, ()),
    "San Francisco": _G(37.8, -122.4, ("Pacific Ocean",), None, False, ()),
    "Miami": _G(25.8, -80.2, ("Atlantic Ocean",), (), False, ()),
    "Washington, D.C.": _G(38.9, -77.0, ("Potomac River",), (), False, ()),
    "Boston": _G(42.4, -71.1, ("Atlantic Ocean", "Charles River"), (), False, ("Massachusetts",)),
    "Seattle": _G(47.6, -122.3, ("Puget Sound", "Pacific Ocean"), (), False, ()),
    "Las Vegas": _G(36.2, -115.1, (), ("the Spring Mountains",), False, ()),
    "Atlanta": _G(33.7, -84.4, (), None, False, ("Georgia",)),
    "Philadelphia": _G(40.0, -75.2, ("Delaware River",), (), False, ()),
    "Toronto": _G(43.7, -79.4, ("Lake Ontario", "Great Lakes"), (), True, ("Ontario",)),
    "Montreal": _G(45.5, -73.6, ("Saint Lawrence River",), None, False, ()),
    "Vancouver": _G(49.3, -123.1, ("Pacific Ocean",), ("the Coast Mountains",), False, ()),
    "Mexico City": _G(19.4, -99.1, (), ("the Trans-Mexican Volcanic Belt",), True, ()),
    "Havana": _G(23.1, -82.4, ("Straits of Florida",), (), True, ()),
    "São Paulo": _G(-23.6, -46.6, (), None, True, None),
    "Rio de Janeiro": _G(-22.9, -43.2, ("Atlantic Ocean",), ("the Tijuca massif",), False, None),
    "Buenos Aires": _G(-34.6, -58.4, ("Río de la Plata",), (), True, ()),
    "Lima": _G(-12.0, -77.0, ("Pacific Ocean",), (), True, ()),
    "Bogotá": _G(4.7, -74.1, (), ("the Andes",), True, ()),
    "Santiago": _G(-33.4, -70.7, (), ("the Andes",), True, ()),
    "Caracas": _G(10.5, -66.9, ("Caribbean Sea",), ("the Ávila",), None, ()),
    "Quito": _G(-0.2, -78.5, (), ("the Andes",), None, ()),
    "Medellín": _G(6.2, -75.6, (), ("the Andes",), False, ("Antioquia",)),
    "Montevideo": _G(-34.9, -56.2, ("Río de la Plata",), (), True, ()),
    "London": _G(51.5, -0.1, ("River Thames",), (), True, ("England",)),
    "Paris": _G(48.9, 2.4, ("Seine",), (), True, ()),
    "Berlin": _G(52.5, 13.4, ("Spree",), (), True, ()),
    "Madrid": _G(40.4, -3.7, (), (), True, ()),
    "Barcelona": _G(41.4, 2.2, ("Mediterranean Sea",), None, False, ("Catalonia",)),
    "Rome": _G(41.9, 12.5, ("Tiber", "Mediterranean Sea"), (), True, ("Lazio",)),
    "Milan": _G(45.5, 9.2, (), None, None, ("Lombardy",)),
    "Amsterdam": _G(52.4, 4.9, ("Amstel",), (), True, ()),
    "Vienna": _G(48.2, 16.4, ("Danube",), None, True, ()),
    "Prague": _G(50.1, 14.4, ("Vltava",), (), True, ()),
    "Budapest": _G(47.5, 19.0, ("Danube",), None, True, ()),
    "Warsaw": _G(52.2, 21.0, ("Vistula",), (), True, ()),
    "Moscow": _G(55.8, 37.6, ("Moskva",), (), True, ()),
    "Saint Petersburg": _G(59.9, 30.3, ("Gulf of Finland", "Baltic Sea", "Neva"), (), False, None),
    "Istanbul": _G(41.0, 29.0, ("Bosphorus", "Black Sea", "Sea of Marmara"), (), True, None),
    "Athens": _G(38.0, 23.7, ("Aegean Sea", "Saronic Gulf", "Mediterranean Sea"), None, True, ()),
    "Lisbon": _G(38.7, -9.1, ("Tagus", "Atlantic Ocean"), (), True, ()),
    "Dublin": _G(53.3, -6.3, ("Irish Sea", "Liffey"), None, True, ()),
    "Stockholm": _G(59.3, 18.1, ("Baltic Sea", "Lake Mälaren"), (), True, ()),
    "Copenhagen": _G(55.7, 12.6, ("Øresund", "Baltic Sea"), (), True, ()),
    "Brussels": _G(50.8, 4.4, (), (), None, ()),
    "Munich": _G(48.1, 11.6, ("Isar",), None, False, ("Bavaria",)),
    "Kyiv": _G(50.5, 30.5, ("Dnipro",), (), True, ()),
    "Oslo": _G(59.9, 10.8, ("Oslofjord",), None, True, ()),
    "Zurich": _G(47.4, 8.5, ("Limmat",), (), True, None),
    "Edinburgh": _G(55.95, -3.2, ("Firth of Forth", "North Sea"), None, False, ("Scotland",)),
    "Tokyo": _G(35.7, 139.7, ("Pacific Ocean",), None, True, None),
    "Osaka": _G(34.7, 135.5, ("Seto Inland Sea",), None, False, None),
    "Kyoto": _G(35.0, 135.8, ("Kamo River",), ("the mountains around its basin",), False, None),
    "Seoul": _G(37.6, 127.0, ("Han River",), ("Bukhansan",), True, ()),
    "Beijing": _G(39.9, 116.4, (), None, False, ()),
    "Shanghai": _G(31.2, 121.5, ("East China Sea", "Yangtze", "Huangpu River", "Pacific Ocean"), (), None, None),
    "Hong Kong": _G(22.3, 114.2, ("South China Sea", "Victoria Harbour", "Pacific Ocean"), None, False, None),
    "Guangzhou": _G(23.1, 113.3, ("Pearl River",), None, False, ("Guangdong",)),
    "Shenzhen": _G(22.5, 114.1, ("South China Sea", "Pearl River"), None, False, ()),
    "Chengdu": _G(30.7, 104.1, (), None, False, ("Sichuan",)),
    "Taipei": _G(25.0, 121.6, ("Tamsui River",), ("the mountains around its basin",), None, ()),
    "Singapore": _G(1.35, 103.8, ("South China Sea",), (), True, ()),
    "Bangkok": _G(13.8, 100.5, ("Chao Phraya", "Gulf of Thailand"), (), True, ()),
    "Jakarta": _G(-6.2, 106.8, ("Java Sea",), (), True, ()),
    "Manila": _G(14.6, 121.0, ("Pasig River", "South China Sea"), (), None, ()),
    "Kuala Lumpur": _G(3.1, 101.7, ("Klang River", "Gombak River"), None, True, ()),
    "Ho Chi Minh City": _G(10.8, 106.7, (), (), True, None),
    "Hanoi": _G(21.0, 105.8, ("Red River",), (), False, ()),
    "Mumbai": _G(19.1, 72.9, ("Arabian Sea", "Indian Ocean"), None, None, ("Maharashtra",)),
    "Delhi": _G(28.6, 77.2, ("Yamuna",), None, None, ()),
    "Kolkata": _G(22.6, 88.4, ("Hooghly", "Ganges"), (), False, ("West Bengal",)),
    "Bangalore": _G(13.0, 77.6, (), (), False, ("Karnataka",)),
    "Chennai": _G(13.1, 80.3, ("Bay of Bengal", "Indian Ocean"), (), False, ("Tamil Nadu",)),
    "Karachi": _G(24.9, 67.0, ("Arabian Sea", "Indian Ocean"), (), True, ("Sindh",)),
    "Lahore": _G(31.5, 74.3, ("Ravi",), (), False, ("Punjab",)),
    "Dhaka": _G(23.8, 90.4, ("Buriganga",), (), True, ()),
    "Tehran": _G(35.7, 51.4, (), ("the Alborz mountains",), True, ()),
    "Baghdad": _G(33.3, 44.4, ("Tigris",), (), True, ()),
    "Riyadh": _G(24.7, 46.7, (), (), True, ()),
    "Dubai": _G(25.2, 55.3, ("Persian Gulf",), (), True, None),
    "Cairo": _G(30.0, 31.2, ("Nile",), (), True, ()),
    "Lagos": _G(6.5, 3.4, ("Atlantic Ocean", "Gulf of Guinea"), (), True, None),
    "Kinshasa": _G(-4.3, 15.3, ("Congo River",), (), True, ()),
    "Johannesburg": _G(-26.2, 28.0, (), None, True, ("Gauteng",)),
    "Cape Town": _G(-33.9, 18.4, ("Atlantic Ocean",), ("Table Mountain",), False, ("Western Cape",)),
    "Nairobi": _G(-1.3, 36.8, (), None, True, ()),
    "Addis Ababa": _G(9.0, 38.7, (), ("the Ethiopian Highlands", "the Entoto Mountains"), True, ()),
    "Casablanca": _G(33.6, -7.6, ("Atlantic Ocean",), (), True, None),
    "Accra": _G(5.6, -0.2, ("Gulf of Guinea", "Atlantic Ocean"), (), None, ()),
    "Dakar": _G(14.7, -17.4, ("Atlantic Ocean",), (), True, ()),
    "Luanda": _G(-8.8, 13.2, ("Atlantic Ocean",), (), True, ()),
    "Dar es Salaam": _G(-6.8, 39.3, ("Indian Ocean",), (), True, ()),
    "Algiers": _G(36.8, 3.1, ("Mediterranean Sea",), None, True, ()),
    "Sydney": _G(-33.9, 151.2, ("Pacific Ocean", "Tasman Sea", "Port Jackson"), (), None, ("New South Wales",)),
    "Melbourne": _G(-37.8, 145.0, ("Port Phillip Bay", "Yarra River"), None, None, ("Victoria",)),
    "Perth": _G(-32.0, 115.9, ("Indian Ocean", "Swan River"), None, False, ("Western Australia",)),
    "Auckland": _G(-36.8, 174.8, ("Pacific Ocean", "Tasman Sea"), None, True, None),
}
for _name, _ranges in {"Zurich": ("the Alps",), "Munich": ("the Alps",), "Milan": ("the Alps",),
                       "Vienna": ("the Alps",), "Seattle": ("the Cascades", "the Olympic Mountains"),
                       "Madrid": ("the Sierra de Guadarrama",), "Sydney": ("the Blue Mountains",),
                       "Lima": ("the Andes",)}.items():
    GEOGRAPHY[_name] = dataclasses.replace(GEOGRAPHY[_name], near=_ranges)

# Named waters a question may ask about: canonical name -> (kind, other spellings). Names
# that contain a table city ("Tokyo Bay") are left out: they read as a guess.
WATERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Atlantic Ocean": ("sea", ("Atlantic",)), "Pacific Ocean": ("sea", ("Pacific",)),
    "Indian Ocean": ("sea", ()), "Arctic Ocean": ("sea", ("Arctic",)),
    "Mediterranean Sea": ("sea", ("Mediterranean",)), "Caribbean Sea": ("sea", ()),
    "Baltic Sea": ("sea", ("Baltic",)), "North Sea": ("sea", ()), "Black Sea": ("sea", ()),
    "Red Sea": ("sea", ()), "Caspian Sea": ("sea", ("Caspian",)), "Sea of Marmara": ("sea", ("Marmara",)),
    "Aegean Sea": ("sea", ("Aegean",)), "Adriatic Sea": ("sea", ("Adriatic",)), "Irish Sea": ("sea", ()),
    "Tasman Sea": ("sea", ()), "South China Sea": ("sea", ()), "East China Sea": ("sea", ()),
    "Sea of Japan": ("sea", ()), "Yellow Sea": ("sea", ()), "Java Sea": ("sea", ()),
    "Arabian Sea": ("sea", ()), "Bay of Bengal": ("sea", ()), "Persian Gulf": ("sea", ("Arabian Gulf",)),
    "Gulf of Mexico": ("sea", ()), "Gulf of Guinea": ("sea", ()), "Gulf of Finland": ("sea", ()),
    "Gulf of Thailand": ("sea", ()), "Seto Inland Sea": ("sea", ()),
    "Río de la Plata": ("sea", ("River Plate", "Rio de la Plata")), "Straits of Florida": ("sea", ()),
    "Puget Sound": ("sea", ()), "Bosphorus": ("sea", ("Bosporus",)), "Øresund": ("sea", ("Oresund",)),
    "Firth of Forth": ("sea", ()), "Port Phillip Bay": ("sea", ()), "Saronic Gulf": ("sea", ()),
    "Victoria Harbour": ("sea", ()), "Oslofjord": ("sea", ()), "Port Jackson": ("sea", ()),
    "Great Lakes": ("lake", ()), "Lake Michigan": ("lake", ()), "Lake Ontario": ("lake", ()),
    "Lake Mälaren": ("lake", ("Lake Malaren",)), "Lake Geneva": ("lake", ()), "Lake Victoria": ("lake", ()),
    "River Thames": ("river", ("Thames",)), "Seine": ("river", ()), "Spree": ("river", ()), "Tiber": ("river", ()),
    "Danube": ("river", ()), "Vltava": ("river", ()), "Vistula": ("river", ()), "Moskva": ("river", ()),
    "Neva": ("river", ()), "Tagus": ("river", ("Tejo",)), "Isar": ("river", ()), "Dnipro": ("river", ("Dnieper",)),
    "Liffey": ("river", ()), "Amstel": ("river", ()), "Limmat": ("river", ()), "Rhine": ("river", ()),
    "Elbe": ("river", ()), "Rhône": ("river", ()), "Volga": ("river", ()), "Han River": ("river", ()),
    "Yangtze": ("river", ()), "Huangpu River": ("river", ("Huangpu",)), "Yellow River": ("river", ()),
    "Pearl River": ("river", ()), "Tamsui River": ("river", ("Tamsui",)), "Chao Phraya": ("river", ()),
    "Mekong": ("river", ()), "Red River": ("river", ()), "Yamuna": ("river", ()),
    "Ganges": ("river", ("Ganga",)), "Hooghly": ("river", ()), "Ravi": ("river", ()), "Indus": ("river", ()),
    "Buriganga": ("river", ()), "Tigris": ("river", ()), "Euphrates": ("river", ()), "Nile": ("river", ()),
    "Congo River": ("river", ()), "Niger River": ("river", ()), "Potomac River": ("river", ("Potomac",)),
    "Delaware River": ("river", ()), "Hudson River": ("river", ("Hudson",)), "East River": ("river", ()),
    "Charles River": ("river", ()), "Mississippi River": ("river", ("Mississippi",)),
    "Saint Lawrence River": ("river", ("Saint Lawrence", "St. Lawrence")), "Amazon River": ("river", ("Amazon",)),
    "Yarra River": ("river", ("Yarra",)), "Swan River": ("river", ()), "Pasig River": ("river", ("Pasig",)),
    "Klang River": ("river", ()), "Gombak River": ("river", ()), "Kamo River": ("river", ()),
}
_NO_ARTICLE = ("Lake ", "Port ", "Puget ", "Victoria ", "Oslofjord")

# Ranges a question may name: canonical (as the facts write it) -> other spellings.
RANGES: dict[str, tuple[str, ...]] = {
    "the Andes": ("Andes", "Andean"), "the Alps": ("Alps", "Alpine"), "the Himalayas": ("Himalayas", "Himalaya"),
    "the Rocky Mountains": ("Rocky Mountains", "Rockies"), "the Appalachians": ("Appalachians", "Appalachian"),
    "the Atlas Mountains": ("Atlas Mountains",), "the Alborz mountains": ("Alborz", "Elburz"),
    "the Pyrenees": ("Pyrenees",), "the Urals": ("Urals", "Ural Mountains"), "the Carpathians": ("Carpathians",),
    "the Sierra Nevada": ("Sierra Nevada",), "the Cascades": ("Cascades", "Cascade Range"),
    "the Olympic Mountains": ("Olympic Mountains",), "the Coast Mountains": ("Coast Mountains",),
    "the Blue Mountains": ("Blue Mountains",), "Table Mountain": ("Table Mountain",),
    "the Ethiopian Highlands": ("Ethiopian Highlands",), "the Entoto Mountains": ("Entoto",),
    "the Sierra de Guadarrama": ("Guadarrama",), "the Zagros": ("Zagros",), "the Hindu Kush": ("Hindu Kush",),
    "the Caucasus": ("Caucasus",), "the Apennines": ("Apennines",), "the Drakensberg": ("Drakensberg",),
    "the Great Dividing Range": ("Great Dividing Range",), "the Southern Alps": ("Southern Alps",),
    "the San Gabriel Mountains": ("San Gabriel Mountains",), "the Santa Monica Mountains": ("Santa Monica Mountains",),
    "the Spring Mountains": ("Spring Mountains",), "the Trans-Mexican Volcanic Belt": ("Trans-Mexican Volcanic Belt",),
    "the Tijuca massif": ("Tijuca",), "the Ávila": ("Ávila", "Avila"), "Bukhansan": ("Bukhansan",),
}


@dataclasses.dataclass(frozen=True)
class Region:
    """A region a question may name. A city is in it when its name or its country is
    in `members`; `debatable` ones are in it by some definitions (the oracle then names
    the country instead of saying yes or no); outside `scope` (countries; empty = the
    world) the region is not defined (the US East Coast asked of Shanghai)."""

    name: str  # as it reads after `preposition`
    phrases: tuple[str, ...]
    members: frozenset[str]
    debatable: frozenset[str] = frozenset()
    scope: frozenset[str] = frozenset()
    preposition: str = "in"


def _region(name: str, phrases: tuple[str, ...], members: Sequence[str], debatable: Sequence[str] = (),
            scope: Sequence[str] = (), preposition: str = "in") -> Region:
    return Region(name, phrases, frozenset(members), frozenset(debatable), frozenset(scope), preposition)


_AMERICAS = [n for n, c in COUNTRIES.items() if c.continent in ("North America", "South America")]
_AFRICA = [n for n, c in COUNTRIES.items() if c.continent == "Africa"]
_US_CANADA = ("United States", "Canada")
REGIONS: tuple[Region, ...] = (
    _region("the Middle East", ("Middle East", "Middle Eastern", "Mideast"),
            ("Iran", "Iraq", "Saudi Arabia", "United Arab Emirates"), ("Egypt", "Turkey")),
    _region("Southeast Asia", ("Southeast Asia", "South-East Asia", "South East Asia", "Southeast Asian"),
            ("Singapore", "Thailand", "Indonesia", "Philippines", "Malaysia", "Vietnam")),
    _region("East Asia", ("East Asia", "East Asian", "Far East"), ("Japan", "South Korea", "China", "Taiwan")),
    _region("South Asia", ("South Asia", "South Asian", "Indian subcontinent"), ("India", "Pakistan", "Bangladesh"),
            ("Iran",)),
    _region("Central Asia", ("Central Asia", "Central Asian"), ()),
    _region("Scandinavia", ("Scandinavia", "Scandinavian", "Nordic"), ("Sweden", "Denmark", "Norway")),
    _region("Western Europe", ("Western Europe", "Western European", "West Europe"),
            ("United Kingdom", "Ireland", "France", "Belgium", "Netherlands"),
            ("Germany", "Switzerland", "Austria", "Spain", "Portugal", "Italy", "Denmark", "Norway", "Sweden")),
    _region("Eastern Europe", ("Eastern Europe", "Eastern European", "East Europe"), ("Russia", "Ukraine"),
            ("Poland", "Czech Republic", "Hungary", "Greece", "Turkey")),
    _region("Central Europe", ("Central Europe", "Central European"),
            ("Germany", "Austria", "Switzerland", "Czech Republic", "Poland", "Hungary")),
    _region("Southern Europe", ("Southern Europe", "Southern European"), ("Spain", "Portugal", "Italy", "Greece"),
            ("Turkey",)),
    _region("Northern Europe", ("Northern Europe", "Northern European"), ("Sweden", "Denmark", "Norway"),
            ("United Kingdom", "Ireland", "Russia", "Netherlands", "Germany")),
    _region("the Balkans", ("Balkans", "Balkan"), (), ("Greece", "Turkey")),
    _region("the Iberian Peninsula", ("Iberian Peninsula", "Iberia", "Iberian"), ("Spain", "Portugal")),
    _region("the British Isles", ("British Isles",), ("United Kingdom", "Ireland")),
    _region("Latin America", ("Latin America", "Latin American"),
            [n for n in _AMERICAS if n not in _US_CANADA]),
    _region("Central America", ("Central America", "Central American"), (), ("Mexico",)),
    _region("the Caribbean", ("Caribbean",), ("Cuba",), ("Caracas",)),
    _region("the Americas", ("the Americas",), _AMERICAS),
    _region("North Africa", ("North Africa", "Northern Africa", "North African"), ("Egypt", "Morocco", "Algeria")),
    _region("West Africa", ("West Africa", "Western Africa", "West African"), ("Nigeria", "Ghana", "Senegal")),
    _region("East Africa", ("East Africa", "Eastern Africa", "East African"), ("Kenya", "Ethiopia", "Tanzania")),
    _region("Southern Africa", ("Southern Africa",), ("South Africa",), ("Angola",)),
    _region("Central Africa", ("Central Africa", "Central African"), ("Democratic Republic of the Congo",),
            ("Angola",)),
    _region("Sub-Saharan Africa", ("Sub-Saharan Africa", "Sub-Saharan"),
            [n for n in _AFRICA if n not in ("Egypt", "Morocco", "Algeria")]),
    _region("Australasia", ("Australasia",), ("Australia", "New Zealand")),
    _region("the Arab world", ("Arab world", "Arab country", "Arab nation", "Arab League"),
            ("Iraq", "Saudi Arabia", "United Arab Emirates", "Egypt", "Morocco", "Algeria")),
    _region("the Gulf states", ("Gulf states", "Gulf state", "Gulf country", "Gulf countries"),
            ("Saudi Arabia", "United Arab Emirates"), ("Iraq", "Iran")),
    _region("the East Coast", ("East Coast", "Eastern Seaboard"),
            ("New York City", "Boston", "Miami", "Washington, D.C.", "Philadelphia"), scope=_US_CANADA,
            preposition="on"),
    _region("the West Coast", ("West Coast",), ("Los Angeles", "San Francisco", "Seattle", "Vancouver"),
            scope=_US_CANADA, preposition="on"),
    _region("the Midwest", ("Midwest", "Midwestern"), ("Chicago",)),
    _region("New England", ("New England",), ("Boston",)),
    _region("the Pacific Northwest", ("Pacific Northwest",), ("Seattle", "Vancouver")),
    _region("the American South", ("American South", "Southern United States", "southern US", "southern U.S.",
                                   "Deep South", "the South of the US"), ("Houston", "Atlanta", "Miami"),
            ("Washington, D.C.",)),
    _region("the American Southwest", ("American Southwest", "Southwestern United States", "southwestern US"),
            ("Las Vegas",), ("Los Angeles", "Houston")),
    _region("the Northeast of the United States", ("Northeastern United States", "northeastern US", "Northeast"),
            ("New York City", "Boston", "Philadelphia"), ("Washington, D.C.",), scope=("United States",)),
    _region("the Bay Area", ("Bay Area",), ("San Francisco",)),
)
# Subnational units a "capital of X" question may name, with their country.
SUBNATIONAL: dict[str, str] = {
    **{city.state: city.country for city in CITIES if city.state},
    "Wales": "United Kingdom", "Northern Ireland": "United Kingdom",
    "Queensland": "Australia", "Alberta": "Canada", "Antioquia": "Colombia", "Gauteng": "South Africa",
    "Western Cape": "South Africa", "Lazio": "Italy",
}


# ---------------------------------------------------------------------------- text matching
def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Lowercase without accents, so "Sao Paulo" matches "São Paulo"."""
    return _strip_accents(text).lower()


def _is_abbreviation(phrase: str) -> bool:
    """All-caps short forms ("LA", "DC", "NYC") match only in capitals: "la" is a word."""
    return phrase.isupper() and len(phrase.replace(".", "")) <= 4


def _phrase_re(phrases) -> re.Pattern:
    # Longest first, and word boundaries that also work for phrases ending in "." ("D.C.").
    alternatives = sorted(set(phrases), key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, alternatives)) + r")(?!\w)")


class _PhraseMatcher:
    """Finds which keys' phrases a text names, longest phrase first, without overlaps.

    So "North America" is not also read as the country "America", nor "New York City"
    twice. Keys mapped to None are consumed but not reported ("South Africa" is not the
    continent Africa). Abbreviations match case-sensitively, everything else not.
    """

    def __init__(self, table: dict[str | None, tuple[str, ...]]):
        pairs = [(p, key) for key, phrases in table.items() for p in phrases]
        self._lower_key = {normalize(p): k for p, k in pairs if not _is_abbreviation(p)}
        self._exact_key = {_strip_accents(p): k for p, k in pairs if _is_abbreviation(p)}
        self._lower_re = _phrase_re(self._lower_key)
        self._exact_re = _phrase_re(self._exact_key) if self._exact_key else None
        # A game asks the same questions of every city (and the corpus asks each pooled
        # question of all of them): the matches depend on the text alone.
        self._matches = functools.lru_cache(maxsize=4096)(self._match)

    def __call__(self, text: str) -> list:
        return list(self._matches(text))

    def _match(self, text: str) -> tuple:
        plain = _strip_accents(text)
        hits = [(m.start(), -len(m.group(1)), self._lower_key[m.group(1)])
                for m in self._lower_re.finditer(plain.lower())]
        if self._exact_re:
            hits += [(m.start(), -len(m.group(1)), self._exact_key[m.group(1)])
                     for m in self._exact_re.finditer(plain)]
        found, covered_to = [], -1
        for start, neg_len, key in sorted(hits, key=lambda h: (h[0], h[1])):
            if start < covered_to:
                continue
            covered_to = start - neg_len
            if key is not None and key not in found:
                found.append(key)
        return tuple(found)


# Places whose names contain a city's name but are not that city.
_NOT_CITIES = ("Río de la Plata", "Rio Grande", "Washington State", "state of Washington")
_cities_matcher = _PhraseMatcher({None: _NOT_CITIES, **{city.name: city.names for city in CITIES}})
# Country names containing a continent ("South Africa") are consumed, not read as one.
_continents_matcher = _PhraseMatcher(
    {None: tuple(n for n in COUNTRIES if any(c in n for c in CONTINENTS)), **{c: (c,) for c in CONTINENTS}})
_countries_matcher = _PhraseMatcher({None: CONTINENTS,
                                     **{name: (name,) + info.aliases for name, info in COUNTRIES.items()}})
_languages_matcher = _PhraseMatcher({lang: (lang,) for lang in LANGUAGES + tuple(LANGUAGE_ALIASES)})
_states_matcher = _PhraseMatcher(
    {s: ("in " + s, "in the state of " + s, "in the province of " + s) for s in STATES})


_waters_matcher = _PhraseMatcher({name: (name,) + other for name, (_, other) in WATERS.items()})
_ranges_matcher = _PhraseMatcher(RANGES)
_regions_matcher = _PhraseMatcher({i: region.phrases for i, region in enumerate(REGIONS)})
_subnational_matcher = _PhraseMatcher({name: (name,) for name in SUBNATIONAL})


@functools.lru_cache(maxsize=None)
def _name_matcher(city_name: str) -> "_PhraseMatcher":
    return _PhraseMatcher({city_name: CITY_BY_NAME[city_name].names})


def names_city(text: str, city: City) -> bool:
    """Whether text contains the city's name or an alias (the oracle must never say it)."""
    return bool(_name_matcher(city.name)(text))


def cities_in(text: str) -> list[City]:
    """Table cities the text names (by name or alias), without double counting aliases."""
    return [CITY_BY_NAME[name] for name in _cities_matcher(text)]


def continents_in(text: str) -> list[str]:
    return _continents_matcher(text)


def countries_in(text: str) -> list[str]:
    return _countries_matcher(text)


def languages_in(text: str) -> list[str]:
    """Table languages the text names; an umbrella name ("Chinese") stays as written."""
    return _languages_matcher(text)


def states_in(text: str) -> list[str]:
    """States named as "in <state>" (a bare "Victoria" may be a harbour, not the state)."""
    return _states_matcher(text)


def waters_in(text: str) -> list[str]:
    """`WATERS` the text names (canonical names)."""
    return _waters_matcher(text)


def ranges_in(text: str) -> list[str]:
    """Mountain `RANGES` the text names (canonical names)."""
    return _ranges_matcher(text)


def regions_in(text: str) -> list[Region]:
    return [REGIONS[i] for i in _regions_matcher(text)]


def climate_in(text: str) -> str | None:
    """The `CLIMATES` key whose description the text contains."""
    norm = normalize(text)
    return next((key for key, desc in CLIMATES.items() if normalize(desc) in norm), None)


_POPULATION_RE = re.compile(r"more than ([\d.]+) million people")


def population_sentence(city: City) -> str:
    return f"More than {city.population:g} million people live in and around the city."


def population_in(text: str) -> float | None:
    match = _POPULATION_RE.search(normalize(text))
    return float(match.group(1)) if match else None


def is_success(hidden: str, question: str) -> bool:
    """The question names the hidden city and no other table city.

    Naming several cities never wins: the reference let one question list many cities.
    """
    named = cities_in(question)
    return len(named) == 1 and named[0].name == hidden


# ---------------------------------------------------------------------------- the oracle
def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def country_phrase(country: str) -> str:
    """The country as it reads in a sentence ("the Netherlands")."""
    return ("the " + country) if country in _THE_COUNTRIES else country


def _not_naming(city: City, items: Sequence[str]) -> list[str]:
    return [item for item in items if not names_city(item, city)]


_YES_NO_STARTS = ("is ", "are ", "does ", "do ", "can ", "could ", "was ", "were ", "has ", "have ",
                  "will ", "would ", "should ")
# Questions asking for the name itself; "Can you name a landmark?" is not one.
_NAME_REQUEST_RE = re.compile(
    r"\bname of (the|this|that|your) (city|town|place)\b|\b(city|town)'?s name\b|\bits name\b"
    r"|\bcalled\b|^(what|which) city\b|^(what|which) is the city\??$|\btell me the city\b|^name the city\b")


@functools.lru_cache(maxsize=None)
def _word_re(word: str) -> re.Pattern:
    return re.compile(r"\b" + word + r"(s|es)?\b")


def _has(question: str, *words: str) -> bool:
    """Whole words (plural allowed): "sea" must not fire on "season" or "Seattle"."""
    return any(_word_re(w).search(question) for w in words)


def _yes_no(yes: bool, rest: str) -> str:
    return ("Yes, " if yes else "No, ") + rest


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _the(water: str) -> str:
    return water if water.startswith(_NO_ARTICLE) else "the " + water


_CONTINENT_ADJECTIVES = {"Africa": "african", "Asia": "asian", "Europe": "european", "North America": "north american",
                         "South America": "south american", "Oceania": "oceanian"}
_LARGEST_RE = re.compile(r"\b(largest|biggest|most populous|most populated)\b.*\bcit(y|ies)\b"
                         r"|\bcit(y|ies)\b.*\b(largest|biggest|most populous|most populated)\b")
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30, "a": 1}
_POPULATION_COMPARE_RE = re.compile(
    r"\b(more than|over|above|at least|exceeding|greater than|bigger than|larger than|less than|fewer than|under"
    r"|below|smaller than)\s+(?:about\s+|around\s+)?(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")\s*(?:million|m)\b")
# "The fashion capital of the world", "a European capital of culture": titles, not seats of government.
_FIGURATIVE_CAPITAL_RE = re.compile(
    r"\b(fashion|financial|finance|cultural|culture|culinary|food|tech|technology|entertainment|music|party"
    r"|gambling|film|movie|economic|business|art|arts|design|sports?|gastronomic|shopping)\s+capital\b"
    r"|\bcapital of (the )?(world|culture|fashion|finance|music|food)\b")


class CityOracle:
    """The embedded knowledge-base oracle: deterministic keyword rules, no weights."""

    def answer(self, hidden_items: Sequence[str], questions: Sequence[str]) -> list[str]:
        if len(hidden_items) != len(questions):
            raise ValueError(f"{len(hidden_items)} hidden items but {len(questions)} questions")
        return [self.answer_one(CITY_BY_NAME[h], q) for h, q in zip(hidden_items, questions)]

    def answer_one(self, city: City, question: str) -> str:
        reply = self._reply(city, question)
        # Last line of defence: whatever rule fired, the answer never names the city.
        if names_city(reply, city):
            return CANT_ANSWER
        return reply

    def _reply(self, city: City, question: str) -> str:  # noqa: C901 - one flat rule list reads best
        q = normalize(question).strip()
        yes_no = q.startswith(_YES_NO_STARTS)

        named = cities_in(question)
        if len(named) > 1:
            return ONE_CITY_ONLY
        if named:
            return WIN_ANSWER if named[0] is city else f"No, the city is not {named[0].name}."
        if _NAME_REQUEST_RE.search(q):
            return CANT_ANSWER

        # Propositions that name a place inside another's words come first: "the capital of
        # Australia" is not "in Australia", nor "the Gulf of Mexico" Mexico, nor "Southeast
        # Asia" all of Asia.
        geo = GEOGRAPHY[city.name]
        if _has(q, "capital"):
            return self._capital(city, geo, q, question)
        if _LARGEST_RE.search(q):
            return self._largest(city, geo, q, question)
        waters = waters_in(question)
        if waters:
            return self._named_waters(city, geo, waters)
        regions = regions_in(question)
        if regions:
            return self._regions(city, regions)
        ranges = ranges_in(question)
        if ranges or _has(q, "mountain", "mountainous"):
            return self._mountains(geo, q, ranges)
        if _has(q, "altitude", "elevation") or "above sea level" in q or "high up" in q:
            return self._altitude(city)
        if _has(q, "hemisphere", "equator", "tropics", "tropic", "latitude", "longitude", "meridian"):
            return self._hemisphere(city, geo, q, yes_no)
        compared = _POPULATION_COMPARE_RE.search(q)
        if compared:
            return self._population_compare(city, compared)

        continents = continents_in(question)
        if continents or _has(q, "continent", "part of the world"):
            return self._continent(city, continents if yes_no else [])
        # Before countries: "Is it an English-speaking country?" is about the language.
        if _has(q, "language", "speak", "speaking", "spoken"):
            return self._language(city, languages_in(question) if yes_no else [])
        countries = countries_in(question)
        if countries or _has(q, "country", "nation"):
            return self._country(city, countries if yes_no else [])
        states = states_in(question)
        if states or _has(q, "state", "province"):
            return self._state(city, states if yes_no else [])
        if _has(q, "currency", "money", "pay", "cash"):
            return f"People there pay with the {city.currency}."
        if _has(q, "food", "dish", "cuisine", "eat", "eating", "meal", "cooking"):
            return f"Famous local food includes {_join(_not_naming(city, city.dishes))}."
        if _has(q, "sport", "team", "football", "soccer", "athlete"):
            return self._sports(city)
        if _has(q, "coast", "coastal", "ocean", "sea", "seaside", "beach", "port", "water", "river", "lake",
                "bay", "harbor", "harbour", "island", "inland", "landlocked"):
            return self._water(city, geo, q, yes_no)
        if _has(q, "climate", "weather", "temperature", "hot", "cold", "warm", "rain", "rainy", "snow",
                "snowy", "season", "sunny", "humid", "humidity", "dry", "tropical", "desert"):
            return f"The city has {CLIMATES[city.climate]}."
        if _has(q, "population", "how many people", "big", "large", "largest", "size", "populous",
                "inhabitant", "resident", "crowded"):
            return population_sentence(city)
        if _has(q, "landmark", "famous", "monument", "building", "tourist", "attraction", "sight",
                "sightseeing", "visit", "visitor", "known for", "museum"):
            return f"Famous landmarks there include {_join(_not_naming(city, city.landmarks))}."
        return FALLBACK_ANSWER

    @staticmethod
    def _continent(city: City, asked: list[str]) -> str:
        where = ("the city lies in both " + _join(city.continents) if len(city.continents) > 1
                 else "the city is in " + city.continents[0]) + "."
        if len(asked) == 1:
            return _yes_no(asked[0] in city.continents,
                           where if asked[0] in city.continents else f"the city is not in {asked[0]}.")
        return where[0].upper() + where[1:]

    @staticmethod
    def _country(city: City, asked: list[str]) -> str:
        country = country_phrase(city.country)
        if len(asked) == 1:
            yes = asked[0] == city.country
            return _yes_no(yes, f"the city is in {country}." if yes
                           else f"the city is not in {country_phrase(asked[0])}.")
        return f"The city is in {country}."

    @staticmethod
    def _state(city: City, asked: list[str]) -> str:
        if len(asked) == 1:
            yes = asked[0] == city.state
            return _yes_no(yes, f"the city is in {asked[0]}." if yes else f"the city is not in {asked[0]}.")
        return f"The city is in {city.state}." if city.state else "I'm not sure about its state or province."

    @staticmethod
    def _language(city: City, asked: list[str]) -> str:
        spoken = _join(city.languages)
        if len(asked) == 1:
            meant = LANGUAGE_ALIASES.get(asked[0], (asked[0],))
            hits = [lang for lang in city.languages if lang in meant]
            if hits:
                return f"Yes, people there speak {_join(hits)}."
            return f"No, {asked[0]} is not a main language there. People there mostly speak {spoken}."
        return f"People there mostly speak {spoken}."

    @staticmethod
    def _sports(city: City) -> str:
        reply = f"Popular sports there include {_join(city.sports)}."
        teams = _not_naming(city, city.teams)
        return reply + (f" Well-known local teams include {_join(teams)}." if teams else "")

    @staticmethod
    def _national_capital(city: City) -> str:
        return city.capital_note or _yes_no(city.capital, "it is the capital of its country." if city.capital
                                            else "it is not the capital of its country.")

    def _capital(self, city: City, geo: Geography, q: str, question: str) -> str:  # noqa: C901 - flat cases
        if _FIGURATIVE_CAPITAL_RE.search(q):
            return "I can't say whether people call it that. " + _sentence(self._national_capital(city))
        target = re.search(r"\bcapital (?:city )?of (.+)$", question, re.IGNORECASE)
        target = target.group(1) if target else ""
        countries, units = countries_in(target), _subnational_matcher(target)
        if countries:
            if countries[0] != city.country:
                return f"No, the city is not in {country_phrase(countries[0])}."
            return self._national_capital(city)
        if units:
            unit = units[0]
            if geo.capital_of and unit in geo.capital_of:
                return f"Yes, it is the capital of {unit}."
            if SUBNATIONAL[unit] != city.country or (city.state and city.state != unit):
                return f"No, the city is not in {unit}."
            if geo.capital_of is None:
                return f"I don't know whether it is the capital of {unit}."
            return f"No, it is not the capital of {unit}."
        if continents_in(target):
            return "I can't say whether people call it that. " + _sentence(self._national_capital(city))
        if _has(q, "state", "province", "provincial", "region", "regional"):
            if geo.capital_of:
                return f"Yes, it is the capital of {_join(geo.capital_of)}."
            if city.capital:
                return "It is the capital of its country."
            if geo.capital_of is None:
                return "I don't know whether it is the capital of a state or province."
            return "No, it is not the capital of a state or province."
        continents = continents_in(question) or [c for c, adjective in _CONTINENT_ADJECTIVES.items()
                                                 if _has(q, adjective)]
        if continents:
            if continents[0] not in city.continents:
                return f"No, the city is not in {continents[0]}."
            return _yes_no(city.capital, f"it is a capital in {continents[0]}." if city.capital
                           else "it is not the capital of its country.")
        return self._national_capital(city)

    @staticmethod
    def _largest(city: City, geo: Geography, q: str, question: str) -> str:
        countries = countries_in(question)
        if countries and countries[0] != city.country:
            return f"No, the city is not in {country_phrase(countries[0])}."
        if _has(q, "world") or continents_in(question) or "one of" in q:
            return population_sentence(city)
        units = _subnational_matcher(question)
        if units:
            return f"I don't know how it ranks in {units[0]}."
        if geo.largest is None:
            return ("It is one of the largest cities in its country; whether it is the largest depends on how "
                    "a city's people are counted.")
        return _yes_no(geo.largest, "it is the largest city in its country." if geo.largest
                       else "it is not the largest city in its country.")

    @staticmethod
    def _named_waters(city: City, geo: Geography, asked: list[str]) -> str:
        detail = f" It {city.water}." if city.water else ""
        hits = [w for w in asked if w in geo.waters]
        if hits:
            return f"Yes, the city lies on or near {_join(map(_the, hits))}."
        kinds = {WATERS[w][0] for w in asked}
        own = {kind: [w for w in geo.waters if WATERS[w][0] == kind] for kind in ("sea", "river", "lake")}
        if kinds == {"sea"} and not city.coastal and not own["sea"]:
            return "No, the city is not on the coast." + detail
        if len(kinds) == 1 and kinds <= {"river", "lake"} and own[next(iter(kinds))]:
            return f"No, the city lies on {_join(map(_the, own[next(iter(kinds))]))}."
        if kinds <= {"river", "lake"}:
            return f"I don't know whether the city lies on {_join(map(_the, asked))}." + detail
        return ("The city is on the coast." if city.coastal else "The city is not on the coast.") + detail

    @staticmethod
    def _regions(city: City, asked: list[Region]) -> str:
        def member(region: Region) -> bool | None:
            if region.scope and city.country not in region.scope:
                return None
            if city.name in region.members or city.country in region.members:
                return True
            return None if (city.name in region.debatable or city.country in region.debatable) else False

        found = [member(r) for r in asked]
        if True in found:
            region = asked[found.index(True)]
            return f"Yes, the city is {region.preposition} {region.name}."
        if all(f is False for f in found):
            return "No, the city is not " + _join([f"{r.preposition} {r.name}" for r in asked]) + "."
        region = asked[found.index(None)]
        return f"It depends on what is meant by {region.name}; the city is in {country_phrase(city.country)}."

    @staticmethod
    def _mountains(geo: Geography, q: str, asked: list[str]) -> str:
        near_question = _has(q, "near", "close", "beside", "view", "see", "next to", "far")
        if asked:
            inside = [r for r in asked if geo.mountains and r in geo.mountains]
            near = [r for r in asked if r in geo.near]
            if inside:
                return f"Yes, the city lies in or beside {_join(inside)}."
            if near:
                return (f"Yes, the city lies near {_join(near)}." if near_question
                        else f"No, the city is not in {_join(near)}, but it lies near them.")
            if geo.mountains is None:
                return f"I don't know whether the city lies near {_join(asked)}."
            return f"No, the city is not in or near {_join(asked)}."
        if geo.mountains:
            return f"Yes, the city lies in or beside {_join(geo.mountains)}."
        if geo.near:
            return (f"Yes, the city lies near {_join(geo.near)}." if near_question
                    else f"The city is not in the mountains, but it lies near {_join(geo.near)}.")
        if geo.mountains is None:
            return "I don't know much about the mountains around the city."
        return "No, the city is not in or near mountains."

    @staticmethod
    def _altitude(city: City) -> str:
        if city.climate == "highland":
            return "Yes, the city lies high above sea level." + (f" It {city.water}." if city.water else "")
        if city.coastal:
            return "No, the city lies on the coast, close to sea level."
        return f"The city {city.water}." if city.water else "I don't know how high the city lies."

    @staticmethod
    def _population_compare(city: City, match: re.Match) -> str:
        comparison, number = match.group(1), match.group(2)
        threshold = float(_NUMBER_WORDS.get(number, number))
        more = comparison not in ("less than", "fewer than", "under", "below", "smaller than")
        sentence = population_sentence(city)
        if city.population >= threshold:
            return ("Yes, " if more else "No, ") + sentence[0].lower() + sentence[1:]
        return sentence

    @staticmethod
    def _hemisphere(city: City, geo: Geography, q: str, yes_no: bool) -> str:  # noqa: C901 - flat cases
        north_south = f"the city is in the {'Southern' if city.southern else 'Northern'} Hemisphere."
        south, north = re.search(r"\bsouth", q) is not None, re.search(r"\bnorth", q) is not None
        east, west = re.search(r"\beast", q) is not None, re.search(r"\bwest", q) is not None
        lat = abs(geo.lat)
        if _has(q, "tropics", "tropic"):
            inside = lat < 23.0
            if inside or lat > 24.0:
                statement = "the city lies in the tropics." if inside else "the city lies outside the tropics."
                return _yes_no(inside, statement) if yes_no else _sentence(statement)
        if "equator" in q and not (south or north) and re.search(r"\b(near|close|on|far|distance)\b", q):
            if lat <= 10:
                return "Yes, the city lies close to the equator." if yes_no else "The city lies close to the equator."
            if lat >= 20:
                return ("No, the city lies far from the equator; " if yes_no else
                        "The city lies far from the equator; ") + north_south
            return f"The city lies about {round(lat)} degrees {'south' if geo.lat < 0 else 'north'} of the equator."
        if (east or west) and not (south or north):
            if abs(geo.lon) < 2:
                return "The city lies close to the prime meridian, between the Eastern and Western Hemispheres."
            statement = f"the city is in the {'Eastern' if geo.lon > 0 else 'Western'} Hemisphere."
            if yes_no and east != west:
                return _yes_no(east == (geo.lon > 0), statement)
            return _sentence(statement)
        if yes_no and south != north:
            return _yes_no(south == city.southern, north_south)
        return _sentence(north_south)

    @staticmethod
    def _water(city: City, geo: Geography, q: str, yes_no: bool) -> str:
        detail = f" It {city.water}." if city.water else ""
        statement = ("the city is on the coast." if city.coastal else "the city is not on the coast.") + detail
        for kind in ("river", "lake"):
            own = [w for w in geo.waters if WATERS[w][0] == kind]
            if yes_no and own and _has(q, kind):
                return f"Yes, the city lies on {_join(map(_the, own))}."
        # "Is there a river?" is not a coast question: a yes/no on the coast would mislead.
        if yes_no and not _has(q, "river", "lake", "island"):
            asked_inland = _has(q, "inland", "landlocked")
            return _yes_no(city.coastal != asked_inland, statement)
        return statement[0].upper() + statement[1:]


# ---------------------------------------------------------------------------- an LM oracle
def lm_prompt(hidden: str, question: str) -> str:
    """The reference's prompt (no space before the question)."""
    return f"Your home town is {hidden}." + question


def reveals_city(hidden: str, text: str) -> bool:
    """Whether text names the hidden city: a table city by its names and aliases;
    any other item (e.g. the reference's "Seoul, South Korea") by the part before its
    first comma, as the reference reads it."""
    city = CITY_BY_NAME.get(hidden)
    if city is not None:
        return names_city(text, city)
    name = hidden.split(",")[0].strip()
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def lm_answer(hidden: str, decoded: str) -> str:
    return CANT_ANSWER if reveals_city(hidden, decoded) else decoded.strip()


LM_ORACLE_FORMAT = OracleFormat(lm_prompt, lm_answer, max_new_tokens=64)


def guess_city_task(oracle: Oracle | None = None, max_turns: int = MAX_TURNS) -> QuestionTask:
    """The Guess My City task, answered by `oracle` (the KB oracle by default)."""
    return QuestionTask(name="guess_city", items=CITY_NAMES, oracle=oracle or CityOracle(),
                        is_success=is_success, max_turns=max_turns)
