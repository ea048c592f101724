"""The embedded WebShop: a small web application serving WebShop's routes and pages.

Python's standard library only (``http.server.ThreadingHTTPServer``). The products,
instructions, search and reward come from ``webshop_catalogue.Catalogue(seed,
num_products)``. Routes, as WebShop's Flask app (``web_agent_site/app.py``) has them
(every route answers GET and POST):

    /                                   redirect to the session "abc"
    /<session>                          start page: instruction and search box
                                        (POST search_query=... redirects to the results)
    /search_results/<session>/<keywords>/<page>              10 results a page
    /item_page/<session>/<asin>/<keywords>/<page>/<options>  options, price, sub pages, Buy Now
    /item_sub_page/<session>/<asin>/<keywords>/<page>/<sub_page>/<options>
                                        Description | Features | Reviews
    /done/<session>/<asin>/<options>    the purchase and its reward

``<keywords>`` is the Python list of the query's words and ``<options>`` the dict of the
options chosen (their reprs, URL-quoted), as WebShop's URLs carry them. Session
``fixed_<i>`` is instruction ``i`` (WebShop's fixed sessions); any other session name
picks an instruction from its CRC32. The server keeps no session state: everything a
page needs is in its URL, so any number of clients may share a session name.

The page markup follows WebShop's templates where a client reads it: the instruction in
``#instruction-text``, the search box ``#search_input`` (field ``search_query``),
buttons (``button.btn`` in forms whose action is the target), result links
``a.product-link``, options as radio inputs (``name`` = the option, ``value``, and
``data-url`` = the page with it chosen) with a label, and the reward as "Your score
(min 0.0, max 1.0)" followed by the number.

In-process: ``start(seed, num_products)`` (a daemon thread on a free port) or
``embedded_url(...)`` (one shared server per process and shop). As its own process:

    python -m archer_jax.envs.webshop_server --port 3000 [--seed 0] [--num_products 3000]
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import html
import http.server
import threading
import urllib.parse
import zlib

from archer_jax.envs import webshop_catalogue as wc

PRODUCTS_PER_PAGE = 10
SUB_PAGES = ("Description", "Features", "Reviews")
RANDOM_SESSION_GOALS = 10_000  # a non-fixed session's instruction: CRC32(session) mod this


def _q(value) -> str:
    return urllib.parse.quote(str(value), safe="")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


class BadRequest(ValueError):
    pass


class NotFound(LookupError):
    pass


_AST_LOCK = threading.Lock()


def literal_eval(text: str):
    """``ast.literal_eval`` under one process-wide lock. CPython 3.11 keeps the AST
    conversion's recursion depth in state that threads share, so concurrent calls can
    raise ``SystemError: AST constructor recursion depth mismatch`` (CPython gh-106905;
    seen here in a handler thread of the shop while the client fetched with 8 threads)."""
    with _AST_LOCK:
        return ast.literal_eval(text)


def _literal(text: str, kind: type, what: str):
    try:
        value = literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
        raise BadRequest(f"{what} is not a Python {kind.__name__} literal: {text[:80]!r}") from error
    if not isinstance(value, kind):
        raise BadRequest(f"{what} is not a {kind.__name__}: {text[:80]!r}")
    return value


class Shop:
    """Renders WebShop's pages for one catalogue; ``handle(method, path, form)`` ->
    (status, headers, body)."""

    def __init__(self, catalogue: wc.Catalogue):
        self.catalogue = catalogue

    # --- routing ---------------------------------------------------------------------

    def handle(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, str], str]:
        try:
            parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(path).path.split("/")[1:]]
            if parts == [""]:
                return 302, {"Location": "/abc"}, ""
            route, args = (parts[0], parts[1:]) if len(parts) > 1 else ("index", parts)
            if route == "index" and len(args) == 1 and args[0]:
                session = args[0]
                if method == "POST" and form.get("search_query", "").strip():
                    keywords = form["search_query"].lower().split()
                    return 302, {"Location": f"/search_results/{_q(session)}/{_q(keywords)}/1"}, ""
                return 200, {}, self.start_page(session)
            if route == "search_results" and len(args) == 3:
                session, keywords, page = args
                return 200, {}, self.results_page(session, _literal(keywords, list, "keywords"), self._page(page))
            if route == "item_page" and len(args) == 5:
                session, asin, keywords, page, options = args
                return 200, {}, self.item_page(session, self._product(asin), keywords, page,
                                               _literal(options, dict, "options"))
            if route == "item_sub_page" and len(args) == 6:
                session, asin, keywords, page, sub_page, options = args
                if sub_page not in SUB_PAGES:
                    raise NotFound(f"no sub page {sub_page!r}")
                return 200, {}, self.sub_page(session, self._product(asin), keywords, page, sub_page,
                                              _literal(options, dict, "options"))
            if route == "done" and len(args) == 3:
                session, asin, options = args
                return 200, {}, self.done_page(session, self._product(asin), _literal(options, dict, "options"))
            raise NotFound(f"no route for {path!r}")
        except BadRequest as error:
            return 400, {}, self._error_page("Bad request", str(error))
        except NotFound as error:
            return 404, {}, self._error_page("Not found", str(error))

    def _product(self, asin: str) -> wc.Product:
        product = self.catalogue.by_asin.get(asin.upper())
        if product is None:
            raise NotFound(f"no product {asin!r}")
        return product

    @staticmethod
    def _page(text: str) -> int:
        try:
            page = int(text)
        except ValueError as error:
            raise BadRequest(f"page is not a number: {text!r}") from error
        if page < 1:
            raise BadRequest(f"page must be >= 1, got {page}")
        return page

    def goal(self, session: str) -> wc.Goal:
        if session.startswith("fixed_") and session[len("fixed_"):].isdigit():
            return self.catalogue.goal(int(session[len("fixed_"):]))
        return self.catalogue.goal(zlib.crc32(session.encode()) % RANDOM_SESSION_GOALS)

    # --- pages -------------------------------------------------------------------------

    @staticmethod
    def _html(body: str) -> str:
        return ("<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>WebShop</title></head>\n"
                f"<body>\n<div class=\"container\">\n{body}\n</div>\n</body>\n</html>\n")

    def _instruction(self, session: str) -> str:
        return (f"<div id=\"instruction-text\" class=\"text-center\"><h4>Instruction:<br>"
                f"{_e(self.goal(session).instruction)}</h4></div>")

    @staticmethod
    def _button(action: str, text: str, css: str = "btn btn-primary") -> str:
        return (f"<form method=\"post\" action=\"{_e(action)}\"><button type=\"submit\" class=\"{css}\">"
                f"{_e(text)}</button></form>")

    def start_page(self, session: str) -> str:
        return self._html(
            "<div id=\"logo\" class=\"text-center\"><h2>WebShop</h2></div>\n" + self._instruction(session) + "\n"
            f"<form role=\"form\" id=\"form-buscar\" method=\"post\" action=\"/{_q(session)}\">"
            "<input id=\"search_input\" class=\"form-control\" type=\"text\" name=\"search_query\" "
            "placeholder=\"Search...\" required/>"
            "<button class=\"btn btn-success\" type=\"submit\">Search</button></form>")

    def results_page(self, session: str, keywords: list, page: int) -> str:
        results = self.catalogue.search(" ".join(str(k) for k in keywords))
        shown = results[(page - 1) * PRODUCTS_PER_PAGE: page * PRODUCTS_PER_PAGE]
        kw = _q(keywords)
        parts = [self._instruction(session), self._button(f"/{_q(session)}", "Back to Search", "btn btn-success"),
                 f"<div class=\"display-4\"><h3>Page {page} (Total results: {len(results)})</h3></div>"]
        if page > 1:
            parts.append(self._button(f"/search_results/{_q(session)}/{kw}/{page - 1}", "< Prev"))
        parts.append(self._button(f"/search_results/{_q(session)}/{kw}/{page + 1}", "Next >"))
        for p in shown:
            url = f"/item_page/{_q(session)}/{p.asin}/{kw}/{page}/{_q({})}"
            parts.append(f"<div class=\"list-group-item searched-product\">"
                         f"<h4 class=\"product-asin\"><a class=\"product-link\" href=\"{_e(url)}\">{p.asin}</a></h4>"
                         f"<h4 class=\"product-title\">{_e(p.title)}</h4>"
                         f"<h5 class=\"product-price\">{p.price_text}</h5></div>")
        return self._html("\n".join(parts))

    def item_page(self, session: str, p: wc.Product, keywords: str, page: str, options: dict) -> str:
        s, kw = _q(session), _q(_literal(keywords, list, "keywords"))
        parts = [self._instruction(session), self._button(f"/{s}", "Back to Search", "btn btn-success"),
                 self._button(f"/search_results/{s}/{kw}/{_q(page)}", "< Prev")]
        for name, values in p.options.items():
            parts.append(f"<div class=\"option\"><h4>{_e(name)}</h4><div class=\"radio-toolbar\">")
            for i, value in enumerate(values):
                chosen = {**options, name: value}
                url = f"/item_page/{s}/{p.asin}/{kw}/{_q(page)}/{_q(chosen)}"
                checked = " checked" if options.get(name) == value else ""
                parts.append(f"<input type=\"radio\" id=\"radio_{_e(name)}{i}\" name=\"{_e(name)}\" "
                             f"value=\"{_e(value)}\" data-url=\"{_e(url)}\"{checked}>"
                             f"<label for=\"radio_{_e(name)}{i}\">{_e(value)}</label>")
            parts.append("</div></div>")
        parts.append(f"<h2>{_e(p.title)}</h2><h4>Price: {p.price_text}</h4><h4>Rating: {p.rating}</h4>")
        for sub in SUB_PAGES:
            parts.append(self._button(f"/item_sub_page/{s}/{p.asin}/{kw}/{_q(page)}/{sub}/{_q(options)}", sub))
        parts.append(self._button(f"/done/{s}/{p.asin}/{_q(options)}", "Buy Now", "btn btn-lg purchase"))
        return self._html("\n".join(parts))

    def sub_page(self, session: str, p: wc.Product, keywords: str, page: str, sub_page: str, options: dict) -> str:
        s, kw = _q(session), _q(_literal(keywords, list, "keywords"))
        parts = [self._instruction(session), self._button(f"/{s}", "Back to Search", "btn btn-success"),
                 self._button(f"/item_page/{s}/{p.asin}/{kw}/{_q(page)}/{_q(options)}", "< Prev")]
        if sub_page == "Description":
            parts.append(f"<p class=\"product-info\">{_e(p.description)}</p>")
        elif sub_page == "Features":
            parts.append("<ul>" + "".join(f"<li><p class=\"product-info\">{_e(f)}</p></li>" for f in p.features)
                         + "</ul>")
        else:
            for title, score, body in p.reviews:
                parts.append(f"<div class=\"card\"><h4>\"{_e(title)}\"</h4><p><span>{score}</span></p>"
                             f"<p class=\"content\">{_e(body)}</p></div>")
        return self._html("\n".join(parts))

    def done_page(self, session: str, p: wc.Product, options: dict) -> str:
        reward, parts = self.catalogue.reward(p, self.goal(session), {str(k): str(v) for k, v in options.items()})
        details = ", ".join(f"{k}={v:.3g}" for k, v in parts.items())
        return self._html(
            "<div id=\"thankyou\" class=\"text-center\"><h1>Thank you for shopping with us!</h1></div>\n"
            f"<div style=\"display:none\"><h4 id=\"asin\">asin<pre>{p.asin}</pre></h4>"
            f"<h4 id=\"options\">options<pre>{_e(options)}</pre></h4>"
            f"<h4 id=\"reward_info\">details<pre>{_e(details)}</pre></h4></div>\n"
            f"<h3 id=\"reward\">Your score (min 0.0, max 1.0)<pre>{reward!r}</pre></h3>")

    def _error_page(self, title: str, message: str) -> str:
        return self._html(f"<h1>{_e(title)}</h1><p>{_e(message)}</p>")


class _Handler(http.server.BaseHTTPRequestHandler):
    shop: Shop  # set on the subclass made per server
    server_version = "WebShopEmbedded/1"

    def do_GET(self):
        self._answer("GET", {})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        self._answer("POST", form)

    def _answer(self, method: str, form: dict[str, str]) -> None:
        status, headers, body = self.shop.handle(method, self.path, form)
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is noise)
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


@dataclasses.dataclass
class Running:
    """A server started by ``start``: its base URL; ``stop()`` shuts it down."""

    url: str
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def make_server(seed: int = 0, num_products: int = 3000, host: str = "127.0.0.1", port: int = 0) -> _Server:
    """An HTTP server for the shop (port 0: a free one); not yet serving."""
    handler = type("ShopHandler", (_Handler,), {"shop": Shop(wc.catalogue(seed, num_products))})
    return _Server((host, port), handler)


def start(seed: int = 0, num_products: int = 3000, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serves the shop from a daemon thread of this process."""
    server = make_server(seed, num_products, host, port)
    thread = threading.Thread(target=server.serve_forever, name=f"webshop:{server.server_address[1]}", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    return Running(f"http://{host}:{port}", server, thread)


_LOCK = threading.Lock()


@functools.cache
def _embedded(seed: int, num_products: int) -> Running:
    return start(seed, num_products)


def embedded_url(seed: int = 0, num_products: int = 3000) -> str:
    """The base URL of this process's shared in-process server for the shop (started on first use)."""
    with _LOCK:
        return _embedded(seed, num_products).url


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The embedded WebShop server (archer_jax).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0, help="catalogue seed (config.env.catalogue_seed)")
    parser.add_argument("--num_products", type=int, default=3000, help="products (config.env.num_products)")
    args = parser.parse_args(argv)
    server = make_server(args.seed, args.num_products, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"WebShop ({args.num_products} products, seed {args.seed}) serving at http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
