"""WebShop (ArCHer paper, Section 6): shopping on a web site over real HTTP.

The agent reads a page of the shop as text and answers with one action a turn:
``search[query]`` (on a page with a search box: the start page) or ``click[button]``
(any button, result link or option the page shows). Each episode is one instruction
("i need a sulfate free shampoo, with scent: lavender, and price lower than 30.00
dollars"); it ends when the agent clicks Buy Now, with WebShop's purchase reward in [0, 1]
(attribute, option, price and type matching; ``webshop_catalogue``), or at the step cap
(10 in the paper) with 0. Every other step's reward is 0. ``success`` is a reward of 1.0,
WebShop's own success measure (the purchase has every attribute and option asked for, at
the price asked for).

The server. ``BatchedWebShop`` is an HTTP client: it fetches pages, follows their forms,
links and option URLs, and parses the HTML. By default it talks to the embedded shop
(``webshop_server``: started in this process on a free port, on first use, from
``config.env.catalogue_seed`` and ``config.env.num_products``); with ``config.env.url``
set it talks to that server instead: another process running ``python -m
archer_jax.envs.webshop_server --port N``, or the real WebShop (princeton-nlp/WebShop's
Flask app, which serves the same routes and markup). Seeds pick the instruction:
``goals_start + seed mod num_goals``, session ``fixed_<index>`` (WebShop's fixed
sessions), so the same seed always replays the same episode.

Faults. A request that fails (connection refused, timeout, an HTTP error) or returns a
page that is not a WebShop page is retried up to ``retries`` times with exponential
backoff, each failure counted in ``oracle_failures`` (the protocol's fault counter,
logged per iteration); when every try fails, one ``WebShopServerError`` names the URL.

The observation: WebShop's text mode (the page's visible texts joined by " [SEP] ";
hidden elements skipped), with what can be clicked in brackets as in the ArCHer
reference's WebShop environment (``[Back to Search]``, ``[B0X1Y2Z3W4]``, options
``[large]``, the chosen ones ``[[large]]``), then the instruction and the steps taken:

    [Back to Search] [SEP] Page 1 (Total results: 50) [SEP] [Next >] [SEP] [B0AB12CD34] [SEP]
    Acorn Shampoo - Sulfate Free, Argan Oil [SEP] $12.99 [SEP] ... [SEP] Instruction: [SEP]
    i need a sulfate free shampoo, ... [SEP] Step: 1 of 10

WebShop shows the instruction at the top of every page; here it comes last, as the ArCHer
reference also puts it, because policies truncate observations on the left and a results
page is long: the instruction, the step counter and the last action's note survive.
The step counter is not on WebShop's pages: the observation holds no history, and the
value of a state depends on the steps left (as in ``detective``). An invalid action (not
``search[...]``/``click[...]``, a search off the start page, a button the page does not
have) changes nothing, costs its step, and the observation ends with a note saying why.
After Buy Now the page is the shop's score page ("Your score (min 0.0, max 1.0) [SEP]
0.75"). Clicks match buttons case-insensitively and ignore spacing around punctuation, as
a word tokenizer's decoded text spaces it ("click [Buy Now]", "click[< Prev]").
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import html.parser
import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from archer_jax.envs import base
from archer_jax.envs import webshop_catalogue as wc
from archer_jax.envs import webshop_server

MAX_STEPS = 10
SEP = " [SEP] "
SCORE_TEXT = "Your score (min 0.0, max 1.0)"
INSTRUCTION_LABEL = "Instruction:"
SUCCESS_REWARD = 1.0
INVALID_FORMAT = "Invalid action: write search[your query] or click[a button on this page]."
INVALID_SEARCH = "Invalid action: there is no search box on this page; click[Back to Search] first."
INVALID_CLICK = "Invalid action: this page has no such button."
INVALID_EMPTY = "Invalid action: the search query is empty."
# Paper: WebShop instructions 2000-2099 (the reference's webshop_lower/webshop_upper).
ENV_DEFAULTS = {"url": "", "catalogue_seed": 0, "num_products": 3000, "goals_start": 2000, "num_goals": 100,
                "timeout": 10.0, "retries": 3, "backoff": 0.05, "num_threads": 8}


class WebShopServerError(ConnectionError):
    """The shop did not answer with a WebShop page after every retry."""


class NotAWebShopPage(ValueError):
    """A page that is not one of WebShop's (no instruction, no score)."""


# --- actions -----------------------------------------------------------------------------

_ACTION = re.compile(r"\s*(search|click)\s*\[(.*)\]\s*", re.IGNORECASE | re.DOTALL)


def parse_action(action: str) -> tuple[str, str] | None:
    """("search" | "click", argument) of ``search[...]`` / ``click[...]`` (the first line), else None."""
    lines = action.splitlines()
    match = _ACTION.fullmatch(lines[0] if lines else "")
    return (match[1].lower(), match[2].strip()) if match else None


def button_key(text: str) -> str:
    """How a click names a button: lower case, words and punctuation single-spaced."""
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


# --- pages -------------------------------------------------------------------------------

class Target(NamedTuple):
    method: str  # "GET" | "POST"
    url: str  # absolute
    fields: tuple[tuple[str, str], ...]  # form fields of a POST


@dataclasses.dataclass
class Page:
    """A parsed WebShop page: its texts (clickables bracketed), what can be clicked,
    the search box, the instruction and (after Buy Now) the score."""

    url: str
    segments: list[str]
    clickables: dict[str, Target]  # button_key(text) -> where it leads
    search: Target | None  # the search form (its query field last, empty)
    instruction: str | None
    score: float | None

    @property
    def kind(self) -> str:
        """"start" | "results" | "item" | "sub" | "done" (WebShop's page names by URL)."""
        path = urllib.parse.urlsplit(self.url).path
        for name, kind in (("/search_results/", "results"), ("/item_sub_page/", "sub"), ("/item_page/", "item"),
                           ("/done/", "done")):
            if name in path:
                return kind
        return "start"


_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_INVISIBLE = frozenset({"style", "script", "head", "title", "meta", "template", "noscript"})


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.texts: list[tuple[str, str, dict]] = []  # (role, text, info)
        self.radios: dict[str, dict[str, str]] = {}  # id -> attrs
        self.search: tuple[dict[str, str], dict[str, str]] | None = None  # (form attrs, input attrs)
        self.hidden_inputs: dict[int, list[tuple[str, str]]] = {}

    def _form(self) -> dict[str, str] | None:
        return next((a for t, a in reversed(self.stack) if t == "form"), None)

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "input":
            kind = attrs.get("type", "text").lower()
            if kind == "radio":
                self.radios[attrs.get("id", "")] = attrs
            elif attrs.get("id") == "search_input" or attrs.get("name") == "search_query":
                form = self._form()
                if form is not None:
                    self.search = (form, attrs)
            elif kind == "hidden" and self._form() is not None:
                self.hidden_inputs.setdefault(id(self._form()), []).append((attrs.get("name", ""),
                                                                            attrs.get("value", "")))
        if tag not in _VOID:
            self.stack.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        text = " ".join(data.split())
        if not text:
            return
        if any(t in _INVISIBLE or "hidden" in a or _HIDDEN_STYLE.search(a.get("style", "")) for t, a in self.stack):
            return
        if any(a.get("id") == "instruction-text" for _, a in self.stack):
            self.texts.append(("instruction", text, {}))
            return
        for tag, attrs in reversed(self.stack):
            if tag == "button":
                self.texts.append(("button", text, {"form": self._form()}))
                return
            if tag == "label":
                self.texts.append(("option", text, {"for": attrs.get("for", "")}))
                return
            if tag == "a" and "product-link" in attrs.get("class", "").split():
                self.texts.append(("link", text, {"href": attrs.get("href", "")}))
                return
        self.texts.append(("text", text, {}))


def _options_in_url(url: str) -> set[str]:
    """The option values an item page's URL says are chosen (its last path segment)."""
    last = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    for load in (webshop_server.literal_eval, json.loads):
        try:
            value = load(last)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return {str(v) for v in value.values()}
    return set()


def parse_page(page_html: str, url: str) -> Page:
    """The text and clickables of one WebShop page; NotAWebShopPage when it is none."""
    parser = _PageParser()
    try:
        parser.feed(page_html)
        parser.close()
    except (AssertionError, ValueError) as error:  # html.parser's errors on badly broken markup
        raise NotAWebShopPage(f"unparseable HTML ({error})") from error
    instruction_parts = [t for role, t, _ in parser.texts if role == "instruction"]
    instruction = " ".join(instruction_parts)
    if instruction.startswith(INSTRUCTION_LABEL):
        instruction = instruction[len(INSTRUCTION_LABEL):].strip()
    texts = [(role, t, info) for role, t, info in parser.texts if role != "instruction"]
    score = None
    plain = [t for role, t, _ in texts if role == "text"]
    if SCORE_TEXT in plain:
        after = plain[plain.index(SCORE_TEXT) + 1:] if plain.index(SCORE_TEXT) + 1 < len(plain) else []
        try:
            score = float(after[0]) if after else None
        except ValueError:
            score = None
        if score is None or not 0.0 <= score <= 1.0:
            raise NotAWebShopPage(f"a score page without a score in [0, 1] ({after[:1]})")
    if not instruction_parts and score is None:
        raise NotAWebShopPage("no WebShop instruction (#instruction-text) and no score")
    chosen = _options_in_url(url) if "/item_page/" in urllib.parse.urlsplit(url).path else set()
    segments: list[str] = []
    clickables: dict[str, Target] = {}
    for role, text, info in texts:
        target = None
        if role == "button" and info["form"] is not None:
            form = info["form"]
            method = form.get("method", "get").upper()
            fields = tuple(parser.hidden_inputs.get(id(form), ()))
            target = Target("POST" if method == "POST" else "GET", urllib.parse.urljoin(url, form.get("action", "")),
                            fields)
        elif role == "link" and info["href"]:
            target = Target("GET", urllib.parse.urljoin(url, info["href"]), ())
        elif role == "option":
            radio = parser.radios.get(info["for"])
            if radio is not None and radio.get("data-url"):
                value = radio.get("value", text)
                target = Target("GET", urllib.parse.urljoin(url, radio["data-url"]), ())
                segments.append(f"[[{text}]]" if value in chosen or "checked" in radio else f"[{text}]")
                clickables.setdefault(button_key(value), target)
                clickables.setdefault(button_key(text), target)
                continue
        if target is None:
            segments.append(text)
        else:
            segments.append(f"[{text}]")
            clickables.setdefault(button_key(text), target)
    search = None
    if parser.search is not None:
        form, field = parser.search
        search = Target("POST" if form.get("method", "get").upper() == "POST" else "GET",
                        urllib.parse.urljoin(url, form.get("action", "")),
                        tuple(parser.hidden_inputs.get(id(form), ())) + ((field.get("name", "search_query"), ""),))
    return Page(url, segments, clickables, search, instruction or None, score)


def format_observation(page: Page, instruction: str, step: int, max_steps: int, note: str = "") -> str:
    """The agent's view of a page (module docstring)."""
    parts = list(page.segments) + [INSTRUCTION_LABEL, instruction, f"Step: {step} of {max_steps}"]
    if note:
        parts.append(note)
    return SEP.join(parts)


# --- the client ----------------------------------------------------------------------------

_FAULTS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, TimeoutError, ConnectionError,
           NotAWebShopPage, UnicodeDecodeError)


class BatchedWebShop:
    """``batch_size`` WebShop sessions stepped together over HTTP.

    reset(seeds) -> observations; step(actions) -> (observations, rewards float32 [B],
    dones bool [B]). Per row: ``successes`` (bought with reward 1), ``scores`` (the
    purchase reward, 0 before), ``steps``, ``pages`` (the parsed current page),
    ``instructions``, ``hidden`` (the session, ``fixed_<goal index>``).
    ``oracle_failures`` counts failed requests that were retried.

    Args:
      url: the shop's base URL ("http://host:port"); ``field`` names where it came from
        in error messages.
      batch_size: rows.
      max_steps: the step cap; every step counts, invalid actions included.
      goals_start, num_goals: seed s plays instruction goals_start + s mod num_goals.
      timeout: seconds per request; retries: extra tries of a failed request (backoff
        seconds, doubled each try); num_threads: rows fetched concurrently.
    """

    reward_range = (0.0, 1.0)

    def __init__(self, url: str, batch_size: int, max_steps: int = MAX_STEPS, goals_start: int = 0,
                 num_goals: int = 100, timeout: float = 10.0, retries: int = 3, backoff: float = 0.05,
                 num_threads: int = 8, field: str = "url"):
        for name, value, low in (("batch_size", batch_size, 1), ("max_steps", max_steps, 1),
                                 ("goals_start", goals_start, 0), ("num_goals", num_goals, 1),
                                 ("retries", retries, 0), ("num_threads", num_threads, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if timeout <= 0 or backoff < 0:
            raise ValueError(f"timeout must be > 0 and backoff >= 0, got {timeout}, {backoff}")
        self.url = check_url(url, field)
        self.field = field
        self.batch_size, self.max_steps = batch_size, max_steps
        self.goals_start, self.num_goals = goals_start, num_goals
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.num_threads = min(num_threads, batch_size)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local shop: no proxies
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.oracle_failures = 0
        self._started = False
        self.dones = np.ones(batch_size, dtype=bool)
        self.successes = np.zeros(batch_size, dtype=bool)
        self.scores = np.zeros(batch_size, dtype=np.float32)
        self.steps = np.zeros(batch_size, dtype=np.int32)
        self.hidden: list[str] = [""] * batch_size
        self.instructions: list[str] = [""] * batch_size
        self.pages: list[Page | None] = [None] * batch_size
        self._observations = [""] * batch_size

    @property
    def max_turns(self) -> int:
        return self.max_steps

    @property
    def observations(self) -> list[str]:
        return list(self._observations)

    def session(self, seed: int) -> str:
        return f"fixed_{self.goals_start + int(seed) % self.num_goals}"

    def reset(self, seeds: Sequence[int]) -> list[str]:
        """Opens each seed's session at the start page."""
        self._check_len("seeds", seeds)
        self.hidden = [self.session(s) for s in seeds]
        start = {s: None for s in self.hidden}
        for session, page in zip(start, self._map(lambda s: self._fetch(Target("GET", f"{self.url}/{s}", ())),
                                                  list(start))):
            start[session] = page
        self.pages = [start[s] for s in self.hidden]
        for i, page in enumerate(self.pages):
            if page.instruction is None or page.kind != "start":
                raise WebShopServerError(f"{self._where()}: {page.url} is not a WebShop start page (no instruction "
                                         "or no search box)")
            self.instructions[i] = page.instruction
        self.dones = np.zeros(self.batch_size, dtype=bool)
        self.successes = np.zeros(self.batch_size, dtype=bool)
        self.scores = np.zeros(self.batch_size, dtype=np.float32)
        self.steps = np.zeros(self.batch_size, dtype=np.int32)
        self._observations = [format_observation(p, self.instructions[i], 0, self.max_steps)
                              for i, p in enumerate(self.pages)]
        self._started = True
        return list(self._observations)

    def step(self, actions: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._check_len("actions", actions)
        rewards = np.zeros(self.batch_size, dtype=np.float32)
        active = [i for i in range(self.batch_size) if not self.dones[i]]
        notes, requests = {}, {}
        for i in active:
            self.steps[i] += 1
            target, notes[i] = self._target(self.pages[i], actions[i])
            if target is not None:
                requests[i] = target
        rows = list(requests)
        for i, page in zip(rows, self._map(lambda i: self._fetch(requests[i]), rows)):
            self.pages[i] = page
            if page.score is not None:
                rewards[i] = self.scores[i] = page.score
                self.successes[i] = page.score >= SUCCESS_REWARD
                self.dones[i] = True
        for i in active:
            self.dones[i] |= self.steps[i] >= self.max_steps
            self._observations[i] = format_observation(self.pages[i], self.instructions[i], int(self.steps[i]),
                                                       self.max_steps, notes[i])
        return list(self._observations), rewards, self.dones.copy()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _target(page: Page, action: str) -> tuple[Target | None, str]:
        """Where an action leads from ``page``, or (None, why it is invalid)."""
        parsed = parse_action(action)
        if parsed is None:
            return None, INVALID_FORMAT
        kind, arg = parsed
        if kind == "search":
            if page.search is None:
                return None, INVALID_SEARCH
            if not arg:
                return None, INVALID_EMPTY
            method, url, fields = page.search
            return Target(method, url, fields[:-1] + ((fields[-1][0], arg.lower()),)), ""
        key = button_key(arg)
        if key == "search" and page.search is not None:
            return None, INVALID_FORMAT  # WebShop's text mode: the search button is search[...]
        target = page.clickables.get(key)
        return (target, "") if target is not None else (None, INVALID_CLICK)

    def _where(self) -> str:
        return (f"config.env.{self.field} = {self.url!r}" if self.field else
                f"the embedded WebShop server at {self.url}")

    def _fetch(self, target: Target) -> Page:
        """The page at ``target``, retried on faults (each counted)."""
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                data = urllib.parse.urlencode(target.fields).encode() if target.method == "POST" else None
                if target.method == "GET" and target.fields:
                    url = target.url + ("&" if "?" in target.url else "?") + urllib.parse.urlencode(target.fields)
                else:
                    url = target.url
                request = urllib.request.Request(url, data=data, method=target.method)
                with self._opener.open(request, timeout=self.timeout) as response:
                    body = response.read().decode(response.headers.get_content_charset() or "utf-8")
                    final_url = response.geturl()
                return parse_page(body, final_url)
            except _FAULTS as error:
                last = error
                with self._lock:
                    self.oracle_failures += 1
        raise WebShopServerError(f"{self._where()}: {target.method} {target.url} failed {self.retries + 1} times; "
                                 f"last: {type(last).__name__}: {last}")

    def _map(self, fn, items: list) -> list:
        if self.num_threads == 1 or len(items) < 2:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.num_threads, thread_name_prefix="webshop")
        return list(self._pool.map(fn, items))

    def _check_len(self, what: str, values: Sequence) -> None:
        if len(values) != self.batch_size:
            raise ValueError(f"{what} has {len(values)} entries, batch_size is {self.batch_size}")


def check_url(url: str, field: str = "url") -> str:
    """``url`` without a trailing slash, or a ValueError naming ``config.env.<field>``."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        where = f"config.env.{field} = {url!r}" if field else f"{url!r}"
        raise ValueError(f"{where}: not a WebShop server URL; give 'http://HOST:PORT' (or '' for the embedded shop)")
    return str(url).rstrip("/")


# --- the task object ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WebShop:
    """The task object (``envs.base.Task``) of WebShop; its instance, with the scripted
    shoppers, is ``webshop_players.TASKS``.

    ``config.env`` fields: ``url`` ('' = the embedded shop, started in this process;
    else a WebShop server's base URL), ``catalogue_seed`` and ``num_products`` (the
    embedded shop), ``goals_start`` and ``num_goals`` (which instructions seeds play),
    ``max_turns`` (the step cap, 10 in the paper), ``timeout``, ``retries``, ``backoff``
    and ``num_threads`` (``BatchedWebShop``).
    """

    players: Mapping[str, base.Player]
    default_mix: Mapping[str, float]
    name: str = "webshop"
    informative: str | None = "informed"
    oracle_format: Any = None  # no oracle: the shop answers
    lmrl_gym: str | None = None
    corpus_episodes: int = 64  # episodes of the default mix whose pages seed a word tokenizer
    # A page's separators and a chosen option's double brackets, one token each for a word
    # tokenizer: a results page is then a fifth shorter, and a chosen option one token.
    word_marks: tuple[str, ...] = (SEP.strip(), "[[", "]]")

    @staticmethod
    def env_fields(env_config: Mapping[str, Any]) -> dict[str, Any]:
        return {**ENV_DEFAULTS, **{k: env_config[k] for k in ENV_DEFAULTS if k in env_config}}

    def make_env(self, env_config: Mapping[str, Any], batch_size: int, oracle: Any = None) -> BatchedWebShop:
        if oracle is not None:
            raise ValueError("config.env.oracle: WebShop has no oracle (the shop answers); use 'kb'")
        env = self.env_fields(env_config)
        for field, low in (("goals_start", 0), ("num_goals", 1), ("retries", 0), ("num_threads", 1),
                           ("num_products", len(wc.TYPES)), ("max_turns", 1)):
            value = env_config.get(field, MAX_STEPS) if field == "max_turns" else env[field]
            if int(value) < low:
                raise ValueError(f"config.env.{field} = {value}: must be >= {low}")
        if float(env["timeout"]) <= 0 or float(env["backoff"]) < 0:
            raise ValueError(f"config.env.timeout = {env['timeout']} must be > 0 and config.env.backoff = "
                             f"{env['backoff']} >= 0")
        if env["url"]:
            url, field = str(env["url"]), "url"
        else:
            url, field = webshop_server.embedded_url(int(env["catalogue_seed"]), int(env["num_products"])), ""
        return BatchedWebShop(url, batch_size, max_steps=int(env_config.get("max_turns", MAX_STEPS)),
                              goals_start=int(env["goals_start"]), num_goals=int(env["num_goals"]),
                              timeout=float(env["timeout"]), retries=int(env["retries"]),
                              backoff=float(env["backoff"]), num_threads=int(env["num_threads"]), field=field)

    def corpus(self, env_config: Mapping[str, Any]) -> Iterator[str]:
        """The pages and actions of a few episodes of the scripted shoppers; with the
        embedded shop also every product's texts and the instructions seeds can play
        (a word tokenizer then knows every ASIN, title, option and price)."""
        env = self.env_fields(env_config)
        for episode in base.simulate_episodes(self, env_config, self.default_mix, self.corpus_episodes, seed=0):
            yield from episode["observations"]
            yield from episode["actions"]
        if not env["url"]:
            shop = wc.catalogue(int(env["catalogue_seed"]), int(env["num_products"]))
            for p in shop.products:
                yield SEP.join([f"[{p.asin}]", p.title, p.price_text, f"Price: {p.price_text}",
                                f"Rating: {p.rating}", *p.attributes, *p.features, p.description])
                for name, values in p.options.items():
                    yield SEP.join([name, *(f"[{v}] [[{v}]] click[{v}]" for v in values)])
                for title, score, body in p.reviews:
                    yield f'"{title}" {score} {body}'
                yield f"click[{p.asin}]"
            for i in range(int(env["num_goals"])):
                goal = shop.goal(int(env["goals_start"]) + i)
                yield goal.instruction
                yield f"search[{goal.instruction}]"
            yield " ".join(f"Page {n} (Total results: {n})" for n in range(wc.SEARCH_RETURN_N + 1))
            yield " ".join(f"Step: {n} of {n}" for n in range(int(env_config.get("max_turns", MAX_STEPS)) + 1))
            yield SEP.join([INVALID_FORMAT, INVALID_SEARCH, INVALID_CLICK, INVALID_EMPTY])

    def one_turn_observation(self, env_config: Mapping[str, Any]) -> str:
        """The start page (the shortest whole observation)."""
        env = self.make_env(env_config, 1)
        try:
            return env.reset([0])[0]
        finally:
            env.close()
