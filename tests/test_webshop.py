"""WebShop over real HTTP: the embedded shop's routes and pages, search, the reward by
hand, the environment (determinism, cap, invalid actions, faults), the scripted shoppers
and a smoke training run. Every server here is a real one on a free local port."""

import ast
import dataclasses
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import runs
from archer_jax.envs import webshop as ws
from archer_jax.envs import webshop_catalogue as wc
from archer_jax.envs import webshop_players as wp
from archer_jax.envs import webshop_server

ROOT = Path(__file__).resolve().parents[1]
SMALL = 300  # products of the test shop


@pytest.fixture(scope="module")
def shop():
    running = webshop_server.start(seed=0, num_products=SMALL)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def catalogue():
    return wc.catalogue(0, SMALL)


def get(url, data=None):
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None,
                                     method="POST" if data else "GET")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as response:
        return response.geturl(), response.read().decode()


def env_on(shop, batch_size=1, **kwargs):
    kwargs = {"goals_start": 0, "num_goals": 50, **kwargs}
    return ws.BatchedWebShop(shop.url, batch_size, **kwargs)


# --- the shop: routes and pages ----------------------------------------------------------


def test_routes_and_pages(shop, catalogue):
    goal = catalogue.goal(3)
    url, page = get(shop.url + "/")
    assert url.endswith("/abc") and 'id="instruction-text"' in page
    url, page = get(shop.url + "/fixed_3")
    start = ws.parse_page(page, url)
    assert start.kind == "start" and start.instruction == goal.instruction and start.search is not None
    assert start.segments == ["WebShop", "[Search]"]
    # The search form posts the query and lands on page 1 of the results.
    url, page = get(start.search.url, {"search_query": "Sulfate Free Shampoo"})
    results = ws.parse_page(page, url)
    assert results.kind == "results" and "/search_results/fixed_3/" in url and url.endswith("/1")
    assert urllib.parse.unquote(url.split("/")[-2]) == "['sulfate', 'free', 'shampoo']"
    assert results.segments[:3] == ["[Back to Search]", "Page 1 (Total results: 50)", "[Next >]"]
    asins = [c for c in (s[1:-1] for s in results.segments if s.startswith("[")) if c in catalogue.by_asin]
    assert len(asins) == webshop_server.PRODUCTS_PER_PAGE == 10
    assert "< prev" not in results.clickables
    # Next and Prev page through the 50 results, 10 at a time.
    url, page = get(results.clickables["next >"].url, {"x": ""})
    second = ws.parse_page(page, url)
    assert url.endswith("/2") and "< prev" in second.clickables
    second_asins = [s[1:-1] for s in second.segments if s[1:-1] in catalogue.by_asin]
    assert len(second_asins) == 10 and not set(second_asins) & set(asins)
    url, page = get(second.clickables["< prev"].url, {"x": ""})
    assert ws.parse_page(page, url).segments == results.segments
    # The item page: options, title, price, sub pages, Buy Now.
    product = catalogue.by_asin[asins[0]]
    url, page = get(results.clickables[asins[0].lower()].url)
    item = ws.parse_page(page, url)
    assert item.kind == "item" and product.title in item.segments and f"Price: {product.price_text}" in item.segments
    for name, values in product.options.items():
        at = item.segments.index(name)
        assert item.segments[at + 1: at + 1 + len(values)] == [f"[{v}]" for v in values]
    assert {"back to search", "< prev", "description", "features", "reviews", "buy now"} <= set(item.clickables)
    name, values = next(iter(product.options.items()))
    url, page = get(item.clickables[ws.button_key(values[1])].url)
    chosen = ws.parse_page(page, url)
    assert f"[[{values[1]}]]" in chosen.segments and f"[{values[0]}]" in chosen.segments
    assert ast.literal_eval(urllib.parse.unquote(url.rsplit("/", 1)[-1])) == {name: values[1]}
    for sub, expected in (("description", product.description), ("features", product.features[0]),
                          ("reviews", product.reviews[0][2])):
        url, page = get(chosen.clickables[sub].url, {"x": ""})
        sub_page = ws.parse_page(page, url)
        assert sub_page.kind == "sub" and expected in sub_page.segments
        url, page = get(sub_page.clickables["< prev"].url, {"x": ""})
        assert ws.parse_page(page, url).segments == chosen.segments  # back to the item, options kept
    url, page = get(chosen.clickables["buy now"].url, {"x": ""})
    done = ws.parse_page(page, url)
    expected, _ = catalogue.reward(product, goal, {name: values[1]})
    assert done.kind == "done" and done.score == pytest.approx(expected)
    assert done.segments == ["Thank you for shopping with us!", ws.SCORE_TEXT, repr(expected)]  # details hidden
    url, page = get(chosen.clickables["back to search"].url, {"x": ""})
    assert ws.parse_page(page, url).kind == "start"
    # Errors: an unknown product, a broken options literal, an unknown route.
    for path, code in (("/item_page/fixed_3/B0NOTHERE0/%5B%5D/1/%7B%7D", 404), ("/done/fixed_3/" + asins[0] + "/%7Bx", 400),
                       ("/nowhere/at/all/x/y/z/w", 404)):
        with pytest.raises(urllib.error.HTTPError) as error:
            get(shop.url + path)
        assert error.value.code == code


def test_the_shop_runs_as_its_own_process():
    port = runs.free_port()
    process = subprocess.Popen([sys.executable, "-m", "archer_jax.envs.webshop_server", "--port", str(port),
                                "--num_products", str(SMALL)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert f"serving at http://127.0.0.1:{port}" in process.stdout.readline()
        env = ws.BatchedWebShop(f"http://127.0.0.1:{port}", 1, goals_start=3)
        assert env.reset([0])[0].startswith("WebShop [SEP] [Search] [SEP] Instruction: [SEP] "
                                            + wc.catalogue(0, SMALL).goal(3).instruction)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_catalogue_is_generated_deterministically():
    a, b = wc.Catalogue(5, 120), wc.Catalogue(5, 120)
    assert a.products == b.products and a.goal(17) == b.goal(17)
    assert wc.Catalogue(6, 120).products != a.products
    assert len({p.asin for p in a.products}) == 120 and {p.query for p in a.products} == {t[2] for t in wc.TYPES}
    for p in a.products:
        assert 2 <= len(p.attributes) <= 4 and 1 <= len(p.options) <= 2 and p.price > 0
        assert all(len(v) >= 2 for v in p.options.values())
    goal = a.goal(17)
    target = a.by_asin[goal.asin]
    assert set(goal.attributes) <= set(target.attributes)
    assert all(goal.options[k] in target.options[k] for k in goal.options)
    assert goal.price_upper > target.price and f"price lower than {goal.price_upper:.2f} dollars" in goal.instruction
    assert target.query in goal.instruction and all(a in goal.instruction for a in goal.attributes)


# --- search -------------------------------------------------------------------------------


def test_search_ranks_matching_products_first(catalogue):
    found = catalogue.search("office chair")
    assert all(p.query == "office chair" for p in found[:5])
    chairs = catalogue.search("ergonomic office chair lumbar support")
    assert all("Lumbar Support" in p.title for p in chairs[:3]) and chairs[0].query == "office chair"
    # An instruction's own words find its target on the first page for most goals.
    ranks = []
    for i in range(40):
        goal = catalogue.goal(i)
        asins = [p.asin for p in catalogue.search(wp.search_query(goal.instruction))]
        ranks.append(asins.index(goal.asin) if goal.asin in asins else 99)
    assert np.mean(np.array(ranks) < 10) > 0.7
    assert catalogue.search("xyzzy plugh") == [] and catalogue.search("") == []


# --- the reward, by hand ---------------------------------------------------------------------


def test_reward_worked_examples(catalogue):
    p = next(p for p in catalogue.products if p.query == "t-shirt" and len(p.options) == 2 and len(p.attributes) >= 2)
    color, size = p.options["color"], p.options["size"]
    goal = wc.Goal(0, p.asin, p.query, p.category, p.product_category, p.title, p.attributes[:2],
                   {"color": color[0], "size": size[0]}, price_upper=p.price + 10, instruction="")
    # 2 attributes + 2 options + price = 5 parts.
    assert catalogue.reward(p, goal, {"color": color[0], "size": size[0]})[0] == 1.0
    wrong_color = next(c for c in color[1:] if wc.normalize_color(c) != wc.normalize_color(color[0]))
    assert catalogue.reward(p, goal, {"color": wrong_color, "size": size[0]})[0] == pytest.approx(4 / 5)
    assert catalogue.reward(p, goal, {})[0] == pytest.approx(3 / 5)  # no options chosen
    expensive = dataclasses.replace(goal, price_upper=p.price - 1)
    assert catalogue.reward(p, expensive, {"color": color[0], "size": size[0]})[0] == pytest.approx(4 / 5)
    missing = dataclasses.replace(goal, attributes=(p.attributes[0], "gluten free"))
    assert catalogue.reward(p, missing, {"color": color[0], "size": size[0]})[0] == pytest.approx(4 / 5)
    # Another kind of product: no shared category levels, no shared title nouns -> type 0.
    chair = next(q for q in catalogue.products if q.query == "office chair" and q.title.split()[0] != p.title.split()[0])
    reward, parts = catalogue.reward(chair, goal, {"color": color[0]})
    assert reward == 0.0 and parts["r_type"] == 0.0
    # The same kind from another brand still counts as the right type.
    other = next(q for q in catalogue.products if q.query == "t-shirt" and q.asin != p.asin)
    assert catalogue.reward(other, goal, {})[1]["r_type"] == 1.0


def test_fuzzy_matching_as_webshop():
    assert wc.token_set_ratio("large", "x-large") == 100  # one word set holds the other
    assert wc.token_set_ratio("Fast Charging", "fast charging") == 100
    assert wc.token_set_ratio("small", "medium") < 50
    assert wc.normalize_color("navy blue") == "navy" and wc.normalize_color("16 fl oz") == "16 fl oz"
    assert wc.option_match_count(["dark brown"], ["brown"]) == 1  # both normalise to "brown"
    assert wc.option_match_count(["black"], ["white", "black"]) == 1


# --- the environment --------------------------------------------------------------------------


def play(env, actions):
    return [(o[0], float(r[0]), bool(d[0])) for o, r, d in (env.step([a]) for a in actions)]


def test_an_episode_and_its_reward(shop, catalogue):
    env = env_on(shop, goals_start=3)
    obs = env.reset([0])[0]
    goal = catalogue.goal(3)
    assert env.hidden == ["fixed_3"] and env.instructions == [goal.instruction]
    assert obs == f"WebShop [SEP] [Search] [SEP] Instruction: [SEP] {goal.instruction} [SEP] Step: 0 of 10"
    steps = []
    while not env.dones[0]:
        action = wp.informed(env.observations[0], np.random.default_rng(0))
        steps.append((action, *play(env, [action])[0]))
    assert steps[0][0] == f"search[{wp.search_query(goal.instruction)}]" and steps[-1][0] == "click[Buy Now]"
    assert [r for *_, r, _ in steps[:-1]] == [0.0] * (len(steps) - 1)
    assert steps[-1][2] == 1.0 and env.successes[0] and env.scores[0] == 1.0
    assert steps[-1][1].startswith(f"Thank you for shopping with us! [SEP] {ws.SCORE_TEXT} [SEP] 1.0 [SEP] ")
    # Buying the wrong product with no options: a partial reward, no success.
    env.reset([0])
    query = f"search[{wp.search_query(catalogue.goal(3).instruction)}]"
    obs = play(env, [query])[0][0]
    wrong = next(r for r in wp.results(wp.parse_observation(obs)) if r.asin != goal.asin)
    _, reward, done = play(env, [f"click[{wrong.asin}]", "click[Buy Now]"])[-1]
    expected, _ = catalogue.reward(catalogue.by_asin[wrong.asin], goal, {})
    assert done and reward == pytest.approx(expected) and 0 < reward < 1 and not env.successes[0]


def test_same_seed_same_episode(shop):
    a, b = env_on(shop, 3), env_on(shop, 3)
    first = a.reset([4, 5, 54])
    assert first == b.reset([4, 5, 54]) and a.hidden == ["fixed_4", "fixed_5", "fixed_4"]  # 54 mod 50 = 4
    assert first[0] == first[2] and first[0] != first[1]
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(4):
        oa, ra, da = a.step([wp.slip(0.5)(o, rng_a) for o in a.observations])
        ob, rb, db = b.step([wp.slip(0.5)(o, rng_b) for o in b.observations])
        assert oa == ob and (ra == rb).all() and (da == db).all()


def test_the_step_cap_and_finished_rows(shop):
    env = env_on(shop, 2, max_steps=3)
    env.reset([0, 1])
    for turn in range(1, 4):
        observations, rewards, dones = env.step(["click[nothing]", "search[shampoo]" if turn == 1 else "click[Next >]"])
        assert (rewards == 0).all() and dones.tolist() == [turn == 3] * 2
        assert observations[0].endswith(f"Step: {turn} of 3 [SEP] {ws.INVALID_CLICK}")
    again, rewards, dones = env.step(["click[Buy Now]"] * 2)
    assert again == observations and not rewards.any() and dones.all()
    assert env.steps.tolist() == [3, 3] and not env.successes.any()
    assert "Page 3 (Total results: " in again[1]  # an empty page past the results, as WebShop
    # Buying ends the episode before the cap.
    env = env_on(shop, 2)
    env.reset([0, 1])
    env.step([f"search[{wp.search_query(env.instructions[0])}]"] * 2)
    first = wp.results(wp.parse_observation(env.observations[0]))[0].asin
    env.step([f"click[{first}]"] * 2)
    _, rewards, dones = env.step(["click[Buy Now]", "click[Description]"])
    assert dones.tolist() == [True, False] and rewards[0] > 0 and rewards[1] == 0


def test_invalid_actions_change_nothing_and_say_why(shop):
    env = env_on(shop)
    start = env.reset([0])[0]
    page = start.rsplit(" [SEP] Step:", 1)[0]
    for action, note in (("buy the shampoo", ws.INVALID_FORMAT), ("click[Buy Now]", ws.INVALID_CLICK),
                         ("search[]", ws.INVALID_EMPTY), ("click[Search]", ws.INVALID_FORMAT)):
        obs, reward, done = play(env, [action])[0]
        assert obs.startswith(page) and obs.endswith(note) and reward == 0 and not done
    assert env.steps[0] == 4
    obs = play(env, ["search[shampoo]"])[0][0]
    assert not obs.endswith(".") and wp.parse_observation(obs).kind == "results"
    obs = play(env, ["search[conditioner]"])[0][0]  # no search box off the start page
    assert obs.endswith(ws.INVALID_SEARCH) and wp.parse_observation(obs).kind == "results"
    # Decoded spacing and case do not matter: "click [next >]", "click[ Back to search ]".
    assert "Page 2 " in play(env, ["click [next >]"])[0][0]
    assert wp.parse_observation(play(env, ["click[ Back to search ]\nmore text"])[0][0]).kind == "start"
    assert ws.parse_action("Click [Buy Now]") == ("click", "Buy Now") and ws.parse_action("search shoes") is None


# --- faults ------------------------------------------------------------------------------------


class _Flaky(webshop_server._Handler):
    """The shop, but the first ``fail`` requests answer 503 or a page that is not WebShop's."""

    fail = 0
    kind = "503"
    lock = threading.Lock()

    def _answer(self, method, form):
        with self.lock:
            failing = type(self).fail > 0
            type(self).fail -= failing
        if not failing:
            return super()._answer(method, form)
        if self.kind == "slow":  # answers after the client's timeout
            time.sleep(1.5)
            try:
                return super()._answer(method, form)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up first, as it should
                return None
        if self.kind == "503":
            self.send_error(503)
        else:
            data = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@pytest.fixture
def flaky():
    handler = type("Flaky", (_Flaky,), {"shop": webshop_server.Shop(wc.catalogue(0, SMALL)), "fail": 0})
    server = webshop_server._Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_faults_are_retried_and_counted(flaky):
    handler, url = flaky
    env = ws.BatchedWebShop(url, 2, retries=3, backoff=0.001, timeout=1.0, field="url")
    handler.fail, handler.kind = 2, "503"
    first = env.reset([0, 1])
    assert env.oracle_failures == 2 and all(o.startswith("WebShop [SEP] [Search]") for o in first)
    handler.fail, handler.kind = 3, "nginx"
    env.step(["search[shampoo]"] * 2)
    assert env.oracle_failures == 5 and all(wp.parse_observation(o).kind == "results" for o in env.observations)
    handler.fail, handler.kind = 1, "slow"
    observations, _, _ = env.step(["click[Next >]", "not an action"])
    assert env.oracle_failures == 6 and "Page 2 " in observations[0]
    # Past the retries: one error naming the field and the URL; every failure counted.
    handler.fail = 100
    with pytest.raises(ws.WebShopServerError, match=rf"config.env.url = '{url}': POST {url}/fixed_0 failed 4 times"):
        env.step(["click[Back to Search]", "not an action"])  # one request (the other row's action is invalid)
    assert env.oracle_failures == 6 + 4


def test_an_unreachable_server_is_one_clear_error():
    from archer_jax import tasks

    task = tasks.get("webshop")
    url = f"http://127.0.0.1:{runs.free_port()}"  # nothing listens there
    env = task.make_env({"url": url, "retries": 2, "backoff": 0.001, "timeout": 2, "goals_start": 7}, 1)
    started = time.monotonic()
    with pytest.raises(ws.WebShopServerError, match=rf"config.env.url = '{url}': GET {url}/fixed_7 failed 3 times; "
                                                    "last: URLError"):
        env.reset([0])
    assert env.oracle_failures == 3 and time.monotonic() - started < 5
    with pytest.raises(ValueError, match=r"config.env.url = 'localhost:3000': not a WebShop server URL"):
        task.make_env({"url": "localhost:3000"}, 1)
    with pytest.raises(ValueError, match=r"config.env.num_goals = 0: must be >= 1"):
        task.make_env({"num_goals": 0}, 1)
    with pytest.raises(ValueError, match="config.env.oracle"):
        task.make_env({}, 1, oracle=object())


def test_a_non_webshop_page_is_refused():
    with pytest.raises(ws.NotAWebShopPage, match="no WebShop instruction"):
        ws.parse_page("<html><body><p>Hello</p></body></html>", "http://x/")
    with pytest.raises(ws.NotAWebShopPage, match="score"):
        ws.parse_page(f"<h3>{ws.SCORE_TEXT}<pre>7</pre></h3>", "http://x/done/a/b/{{}}")


# --- the scripted shoppers ----------------------------------------------------------------------


def test_scripted_shoppers_spread(shop):
    from archer_jax import tasks
    from archer_jax.envs import base

    task = tasks.get("webshop")
    env = {"url": shop.url, "goals_start": 0, "num_goals": 100, "max_turns": 10}
    returns = {name: base.play_seeds(task, env, task.players[name], range(40))[0] for name in task.players}
    means = {name: r.mean() for name, r in returns.items()}
    assert means["informed"] > 0.9 and (returns["informed"] == 1.0).mean() > 0.8
    assert means["informed"] > means["slip_20"] > means["slip_50"] > means["random"]
    assert means["first_result"] < means["informed"] and (returns["first_result"] < 1).all()
    assert means["first_result"] < means["careless_50"] < means["informed"]
    assert means["random"] < 0.4
    episodes = base.simulate_episodes(task, env, task.default_mix, 40, seed=0)
    stats = base.summarize(episodes)
    assert 0.3 < stats["all"]["mean_return"] < 0.9 and 0 < stats["all"]["win_rate"] < 1
    for episode in episodes:
        steps = [wp.parse_observation(o).step for o in episode["observations"]]
        assert steps == list(range(len(episode["actions"]) + 1)) and len(episode["actions"]) <= 10
        assert episode["rewards"][:-1] == [0.0] * (len(episode["rewards"]) - 1)


def test_the_careless_shopper_only_skips_options(shop):
    from archer_jax import tasks
    from archer_jax.envs import base

    task = tasks.get("webshop")
    env = {"url": shop.url, "goals_start": 0, "num_goals": 100, "max_turns": 10}
    episodes = base.simulate_episodes(task, env, {"careless_50": 1.0}, 24, seed=0)
    skipped = chose = 0
    for episode in episodes:
        for observation, action in zip(episode["observations"], episode["actions"]):
            wanted = wp.informed(observation, None)
            if action != wanted:  # the only departure: Buy Now where an option was wanted
                assert wp.parse_observation(observation).kind == "item" and action == "click[Buy Now]", action
                skipped += 1
            elif wp.parse_observation(observation).kind == "item" and action != "click[Buy Now]":
                chose += 1
    assert skipped > 5 and chose > 5
    assert all(episode["actions"][-1] == "click[Buy Now]" for episode in episodes)


# --- the task and the config ------------------------------------------------------------------


def test_task_object_and_config():
    from archer_jax import tasks
    from archer_jax.envs import base
    from experiments.configs import webshop

    task = tasks.get("webshop")
    assert isinstance(task, base.Task) and task.informative == "informed" and task.oracle_format is None
    paper = webshop.get_config("paper")
    assert (paper.actor.lr, paper.critic.lr, paper.archer.warmup_iter, paper.archer.rollout_size,
            paper.archer.gamma, paper.env.max_turns) == (1e-5, 2e-5, 20, 512, 0.9, 10)
    assert (paper.actor.checkpoint, paper.critic.checkpoint) == ("gpt2", "roberta-base")
    assert (paper.env.goals_start, paper.env.num_goals) == (2000, 100)
    demo = webshop.get_config("demo")
    assert demo.actor.checkpoint == "" and demo.env.max_turns == 10 and demo.tokens.obs_len >= 360
    start = task.one_turn_observation(webshop.get_config("smoke").env)
    assert start.startswith("WebShop [SEP] [Search] [SEP] Instruction: ")


def test_smoke_config_trains_on_the_real_shop(tmp_path):
    from archer_jax import config_checks, trainer
    from experiments.configs import webshop

    config = webshop.get_config("smoke")
    run = trainer.train(config, tmp_path / "run")
    assert run.progress["finished"] == ["bc", "archer"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/return_mean" in r]
    assert evals and all(0 <= r["eval/return_mean"] <= 1 for r in evals)
    assert rows[-1]["env_steps"] > 0 and all(r.get("eval/oracle_failures", 0) == 0 for r in evals)
    # The critic probe replays any task's states from their seeds and actions: every
    # replayed prefix reaches the recorded page.
    from experiments import probe_critic

    summary, detail = probe_critic.probe(run, states=3, samples=2, rollouts=2, seed=0)
    assert summary["replay_mismatches"] == 0 and summary["episodes"] == 3 * 2 * 2 and len(detail) == 3
    assert all(0 <= r <= 1 for s in detail for u in s["utterances"] for r in u["returns"])
    config.env.url = "ftp://nowhere"
    with pytest.raises(config_checks.ConfigError, match="config.env.url = 'ftp://nowhere': not a WebShop server URL"):
        trainer.train(config, tmp_path / "other")
