"""?ioprofiler=1 through the WSGI middleware: modes, access, safety, streaming, failures."""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import urllib.request

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server
from werkzeug.test import Client

import ioprofiler
from ioprofiler import access
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.webapp import ShopApp

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
SECRET = "s3cret-token-for-tests-only"


@pytest.fixture
def shop(sqlite_shards, memcached):
    app = ShopApp(sqlite_shards, memcached.address)
    app.cache.flush_all()  # the page's first read is a miss, whatever ran before
    return app


def client(app, **options) -> Client:
    return Client(IOProfilerMiddleware(app, **options))


def get(c: Client, url: str, environ=LOCAL, method: str = "GET", **kwargs):
    response = c.open(url, method=method, environ_base=environ, **kwargs)
    response.get_data()
    response.close()
    return response


def has_panel(response) -> bool:
    return '<div id="ioprofiler-panel"' in response.get_data(as_text=True)


def panel_of(html: str) -> str:
    start = html.index('<div id="ioprofiler-panel"')
    return html[start : html.index("</script>", start)]


def test_html_pages_get_the_panel_before_the_last_body_tag(shop):
    response = get(client(shop), "/page?ioprofiler=1")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.count('<div id="ioprofiler-panel"') == 1
    assert html.endswith("</script></body></html>")
    panel = panel_of(html)
    assert "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453" in panel
    assert "Cache MISS, keys: Etsy_Cache_Results:c812331f123321:1121231" in panel
    assert '<template shadowrootmode="open">' in panel
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers


def test_server_timing_names_kinds_and_shards(shop):
    response = get(client(shop), "/page?ioprofiler=1")
    timing = response.headers["Server-Timing"]
    # the ROLLBACK that ends the request's transaction is in db's time, named after the query
    assert re.search(r'db;dur=\d+\.\d{3};desc="1 query, 1 rollback"', timing), timing
    assert re.search(r'app;dur=\d+\.\d{3};desc="not in I/O"', timing), timing
    assert re.search(r'cache;dur=\d+\.\d{3};desc="1 call, 0 hits, 1 miss"', timing), timing
    assert "db-dbshard01;dur=" in timing and "cache-memcache;dur=" in timing


def test_text_plain_responses_get_the_listing_appended(shop):
    response = get(client(shop), "/plain?ioprofiler=1")
    text = response.get_data(as_text=True)
    first, rest = text.split("\n", 1)
    assert first == "favorites: 2"
    assert re.search(
        r"\n\[dbshard02\] \d+\.\d{3} ms SELECT count\(\*\) FROM FavoriteListingUser "
        r"WHERE listing_id = 5773453  <- tests/webapp\.py:\d+ in count\n",
        rest,
    ), rest


def test_other_responses_are_unchanged_but_for_server_timing(shop):
    plain = get(client(shop), "/api")
    profiled = get(client(shop), "/api?ioprofiler=1")
    assert profiled.get_data() == plain.get_data()
    assert profiled.headers["Content-Length"] == plain.headers["Content-Length"]
    assert "db-dbshard03" in profiled.headers["Server-Timing"]


def test_text_mode_replaces_the_body_with_the_listing(shop):
    response = get(client(shop), "/page?ioprofiler=text")
    assert response.mimetype == "text/plain"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "200 OK"
    assert lines[1] == "GET /page?ioprofiler=text"
    assert lines[2] == ""
    assert re.match(r"\[dbshard01\] \d+\.\d{3} ms SELECT count\(\*\)", lines[3])
    assert re.match(r"\[dbshard01\] \d+\.\d{3} ms ROLLBACK(  <- |$)", lines[4])
    assert lines[5].startswith("[memcache] ") and "Cache MISS" in lines[5]


def test_json_mode_has_a_versioned_schema_with_every_event_field(shop):
    response = get(client(shop), "/page?ioprofiler=json")
    document = json.loads(response.get_data())
    assert response.mimetype == "application/json"
    assert (document["schema"], document["version"]) == ("ioprofiler.trace", 2)
    assert document["request"] == {
        "method": "GET",
        "path": "/page?ioprofiler=json",
        "status": "200 OK",
    }
    assert document["summary"]["db_calls"] == 1 and document["summary"]["cache_misses"] == 1
    db, rollback, cache = document["events"]
    assert (rollback["op"], rollback["statement"], rollback["detail"]) == ("rollback", None, None)
    assert document["summary"]["ops"] == {
        "rollback": {"count": 1, "ms": rollback["duration_ms"], "errors": 0}
    }
    assert 0 < document["summary"]["unexplained_ms"] < document["elapsed_ms"]
    assert set(db) == {
        "index",
        "kind",
        "target",
        "op",
        "start_ms",
        "duration_ms",
        "statement",
        "sql",
        "params",
        "rows",
        "status",
        "size",
        "keys",
        "hit",
        "hit_count",
        "miss_count",
        "missed_keys",
        "note",
        "detail",
        "error",
        "error_message",
        "callsite",
        "line",
    }
    assert db["target"] == "dbshard01" and db["params"] == [5773453]
    assert db["sql"] == "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453"
    assert cache["keys"] == ["Etsy_Cache_Results:c812331f123321:1121231"] and cache["hit"] is False
    assert (cache["hit_count"], cache["miss_count"], cache["missed_keys"]) == (0, 1, cache["keys"])
    assert (db["hit"], db["hit_count"], db["miss_count"], db["missed_keys"]) == (None,) * 4


def test_a_refused_client_gets_the_unprofiled_response_byte_for_byte(shop):
    for url in ("/page", "/plain", "/api"):
        plain = get(client(shop), url, REMOTE)
        refused = get(client(shop), url + "?ioprofiler=1", REMOTE)
        assert refused.get_data() == plain.get_data()
        assert sorted(refused.headers.items()) == sorted(plain.headers.items())
        assert refused.status == plain.status


def test_a_refused_client_records_nothing(shop):
    with ioprofiler.profile() as outer:
        get(client(shop), "/page?ioprofiler=1", REMOTE)
        get(client(shop), "/page?ioprofiler=1", LOCAL)
    assert outer.count() == 4  # the test's own trace sees both requests ...
    # ... but the middleware opened a trace only for the allowed one.
    assert shop.request_traces == [None, "request"]


def test_the_outer_trace_sees_the_profiled_request_too(shop):
    with ioprofiler.profile() as outer:
        get(client(shop), "/page?ioprofiler=1")
    assert outer.count(kind="db", target="dbshard01") == 1
    assert outer.count(kind="cache") == 1


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_turning_it_off_is_the_same_as_not_asking(shop, value):
    plain = get(client(shop), "/page")
    off = get(client(shop), f"/page?ioprofiler={value}")
    assert off.get_data() == plain.get_data()
    assert "Server-Timing" not in off.headers


def test_an_unknown_mode_profiles_and_says_what_is_accepted(shop):
    html = get(client(shop), "/page?ioprofiler=%3Cb%3Exml").get_data(as_text=True)
    assert (
        "unknown ioprofiler mode &#x27;&lt;b&gt;xml&#x27;: use ioprofiler=1, text or json" in html
    )


def test_the_app_sees_the_parameter_unless_asked_to_strip_it(shop):
    get(client(shop), "/page?a=1&ioprofiler=1")
    get(client(shop, strip_param=True), "/page?a=1&ioprofiler=1")
    get(client(shop, strip_param=True), "/page?sig=%FF%FE&q=a%2Bb&flag&x=1;y=2&ioprofiler=1&z")
    assert shop.seen_query_strings == [
        "a=1&ioprofiler=1",
        "a=1",
        "sig=%FF%FE&q=a%2Bb&flag&x=1;y=2&z",  # the rest exactly as the client sent it
    ]


def test_networks_rule_and_untrusted_forwarded_for(shop):
    rule = access.networks("10.0.0.0/8")
    spoofed = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "10.1.2.3"}
    assert "ioprofiler-panel" not in get(
        client(shop, allow=rule), "/page?ioprofiler=1", spoofed
    ).get_data(as_text=True)
    assert "ioprofiler-panel" in get(
        client(shop, allow=rule), "/page?ioprofiler=1", {"REMOTE_ADDR": "10.9.9.9"}
    ).get_data(as_text=True)


def test_a_proxied_request_is_refused_unless_the_proxy_is_trusted(shop):
    # nginx on the same host: every request comes from 127.0.0.1 and names its client.
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        proxied = {"REMOTE_ADDR": "127.0.0.1", header: "203.0.113.9"}
        assert not has_panel(get(client(shop), "/page?ioprofiler=1", proxied)), header


def test_a_trusted_proxy_without_forwarded_for_is_not_a_client(shop):
    trusting = client(shop, trusted_proxies=["127.0.0.1"])
    assert not has_panel(get(trusting, "/page?ioprofiler=1", {"REMOTE_ADDR": "127.0.0.1"}))
    via = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1, 127.0.0.1"}
    assert not has_panel(get(trusting, "/page?ioprofiler=1", via))


def test_forwarded_for_is_believed_only_through_trusted_proxies(shop):
    rule = access.networks("198.51.100.0/24")
    via_proxy = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.7"}
    trusting = client(shop, allow=rule, trusted_proxies=["10.0.0.0/8"])
    assert "ioprofiler-panel" in get(trusting, "/page?ioprofiler=1", via_proxy).get_data(
        as_text=True
    )
    not_trusting = client(shop, allow=rule)
    assert "ioprofiler-panel" not in get(not_trusting, "/page?ioprofiler=1", via_proxy).get_data(
        as_text=True
    )


def test_token_rule_by_header_or_cookie(shop):
    c = client(shop, allow=access.token(SECRET))
    assert not has_panel(get(c, "/page?ioprofiler=1", REMOTE))
    wrong = get(c, "/page?ioprofiler=1", REMOTE, headers={"X-IOProfiler-Token": "nope"})
    assert not has_panel(wrong)
    good = get(c, "/page?ioprofiler=1", REMOTE, headers={"X-IOProfiler-Token": SECRET})
    assert has_panel(good)
    c.set_cookie("ioprofiler_token", SECRET)
    assert has_panel(get(c, "/page?ioprofiler=1", REMOTE))


def test_access_rules_refuse_bad_settings():
    with pytest.raises(ValueError, match="not an IP network: 'ten'"):
        access.networks("ten")
    with pytest.raises(ValueError, match="at least 16 characters"):
        access.token("short")
    with pytest.raises(TypeError, match="allow must be a rule"):
        IOProfilerMiddleware(lambda e, s: [], allow="127.0.0.1")
    with pytest.raises(ValueError, match="plain query parameter name"):
        IOProfilerMiddleware(lambda e, s: [], param="a b")


def test_everyone_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ioprofiler"):
        access.everyone()
    assert "every client may see traces" in caplog.text


def test_an_access_rule_that_fails_refuses_and_logs(shop, caplog):
    def broken(request):
        raise RuntimeError("rule bug")

    with caplog.at_level(logging.ERROR, logger="ioprofiler"):
        response = get(client(shop, allow=broken), "/page?ioprofiler=1")
    assert not has_panel(response)
    assert "the access rule failed" in caplog.text


def test_hostile_values_are_rendered_inert(shop):
    html = get(client(shop), "/hostile?ioprofiler=1").get_data(as_text=True)
    panel = panel_of(html)
    assert "<script>alert(1)</script>" not in panel
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in panel
    assert "</body>" not in panel
    assert "&lt;/body&gt;" in panel
    assert html.count("</body>") == 1  # the page's own, after the panel


def test_a_streamed_body_that_queries_while_streaming_is_recorded(shop):
    response = get(client(shop), "/stream?ioprofiler=text")
    lines = response.get_data(as_text=True).splitlines()
    shards = [line.split("]")[0] for line in lines if " ms SELECT " in line]
    assert shards == ["[dbshard01", "[dbshard02", "[dbshard03"]


def test_queries_in_the_bodys_close_are_recorded_and_close_runs_once(shop):
    response = get(client(shop), "/close_query?ioprofiler=text")
    assert "WHERE listing_id = 7" in response.get_data(as_text=True)
    assert shop.closed_bodies == 1


def test_generator_applications_that_start_late_are_profiled(shop):
    html = get(client(shop), "/late_start?ioprofiler=1").get_data(as_text=True)
    assert "WHERE listing_id = 2" in panel_of(html)


@pytest.mark.parametrize("mode", ["1", "text", "json"])
def test_generator_apps_passed_through_lose_nothing(shop, mode):
    body = gzip.compress(b"<html><body>zipped</body></html>")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
        yield body[:10]
        yield body[10:]

    response = get(client(app), f"/?ioprofiler={mode}")
    assert response.get_data() == body
    # a generator may run queries after its headers: a Server-Timing before them is false
    assert "Server-Timing" not in response.headers


def test_data_written_while_the_body_is_iterated_is_kept(shop):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/html")])
        write(b"<html><body>written-before")
        yield b"-yielded-"
        write(b"written-during-iteration")
        yield b"</body></html>"

    profiled = get(client(app), "/?ioprofiler=1").get_data(as_text=True)
    assert profiled.startswith("<html><body>written-before-yielded-written-during-iteration<div")


def test_streams_the_middleware_does_not_change_are_not_held_back(shop):
    import threading as threads

    produced = threads.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        yield b"data: first\n\n"
        produced.set()
        yield b"data: second\n\n"

    response = client(app).get("/?ioprofiler=1", environ_base=LOCAL, buffered=False)
    first = next(iter(response.response))
    assert first == b"data: first\n\n" and not produced.is_set()
    assert (
        "Server-Timing" not in response.headers and response.headers["Cache-Control"] == "no-store"
    )
    response.close()


def test_xhtml_and_partial_content_are_not_changed(shop):
    def app_for(status, content_type):
        def app(environ, start_response):
            start_response(status, [("Content-Type", content_type)])
            return [b"<html><body>part</body></html>"]

        return app

    for status, content_type in (("200 OK", "application/xhtml+xml"), ("206 Partial", "text/html")):
        response = get(client(app_for(status, content_type)), "/?ioprofiler=1")
        assert response.get_data() == b"<html><body>part</body></html>"


def test_profiled_responses_are_never_stored_by_shared_caches(shop):
    def app(environ, start_response):
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=3600")],
        )
        return [b"{}"]

    assert get(client(app), "/").headers["Cache-Control"] == "public, max-age=3600"
    assert get(client(app), "/?ioprofiler=1").headers.getlist("Cache-Control") == ["no-store"]


def test_gzip_responses_are_left_untouched(shop):
    plain = get(client(shop), "/gzip")
    profiled = get(client(shop), "/gzip?ioprofiler=1")
    assert profiled.get_data() == plain.get_data()
    assert b"ioprofiler" not in gzip.decompress(profiled.get_data())
    assert "Server-Timing" in profiled.headers


def test_responses_past_the_size_bound_stream_through_untouched(shop):
    plain = get(client(shop), "/large")
    profiled = get(client(shop), "/large?ioprofiler=1")
    assert profiled.get_data() == plain.get_data()
    assert profiled.headers["Content-Length"] == plain.headers["Content-Length"]
    assert "db-dbshard01" in profiled.headers["Server-Timing"]


def test_head_and_204_pass_through(shop):
    head = get(client(shop), "/page?ioprofiler=1", method="HEAD")
    plain_head = get(client(shop), "/page", method="HEAD")
    assert (
        head.get_data() == b""
        and head.headers["Content-Length"] == plain_head.headers["Content-Length"]
    )
    empty = get(client(shop), "/empty?ioprofiler=1")
    assert empty.status_code == 204 and empty.get_data() == b""
    assert "Server-Timing" in empty.headers


def test_the_applications_exception_propagates_unchanged(shop):
    with ioprofiler.profile() as outer:
        with pytest.raises(ZeroDivisionError, match="the application's own failure"):
            get(client(shop), "/boom?ioprofiler=1")
        assert ioprofiler.current() is outer  # the request's trace did not leak out
    assert outer.count(kind="db") == 1


def test_a_failing_renderer_sends_the_original_response(shop, monkeypatch, caplog):
    import ioprofiler.render.html as html_renderer

    def broken(*args, **kwargs):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(html_renderer, "render_panel", broken)
    plain = get(client(shop), "/page")
    with caplog.at_level(logging.ERROR, logger="ioprofiler"):
        profiled = get(client(shop), "/page?ioprofiler=1")
    assert profiled.get_data() == plain.get_data()
    assert profiled.status == plain.status
    assert "rendering the trace failed" in caplog.text


@pytest.mark.parametrize("mode", ["text", "json"])
def test_a_failing_renderer_in_text_and_json_modes_answers_a_clear_500(shop, monkeypatch, mode):
    import ioprofiler.response as response_module

    def broken(*args, **kwargs):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(response_module, "listing", broken, raising=False)
    monkeypatch.setattr("ioprofiler.render.json.render_json", broken)
    monkeypatch.setattr("ioprofiler.render.text.listing", broken)
    response = get(client(shop), f"/page?ioprofiler={mode}")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert body.startswith("ioprofiler could not render this request's trace (RuntimeError)")
    assert int(response.headers["Content-Length"]) == len(response.get_data())


def test_values_that_cannot_be_encoded_still_render(shop, sqlite_shards):
    # A filename decoded with surrogateescape holds a lone surrogate.
    engine = sqlite_shards["dbshard01"]

    def app(environ, start_response):
        with engine.connect() as conn:
            try:  # sqlite3 refuses it too; the failed call is still recorded, value and all
                conn.execute(sa.text("SELECT :name"), {"name": "caf\udce9.txt"}).all()
            except UnicodeEncodeError:
                pass
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"ok"]

    for mode in ("text", "json", "1"):
        response = get(client(app), f"/?ioprofiler={mode}")
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.get_data())
        assert b"caf\\udce9.txt" in response.get_data()


def test_a_pages_charset_is_respected(shop):
    body = get(client(shop), "/latin1?ioprofiler=1").get_data()
    assert "Caf\xe9".encode("latin-1") in body
    assert body.decode("latin-1").count('<div id="ioprofiler-panel"') == 1


def test_the_pages_csp_nonce_is_used(shop):
    html = get(client(shop), "/csp?ioprofiler=1").get_data(as_text=True)
    panel = html[html.index('<div id="ioprofiler-panel"') :]
    assert '<style nonce="abc123">' in panel and '<script nonce="abc123">' in panel


def test_console_mode_prints_the_listing(shop):
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    get(client(shop, console=Console(file=out, width=200, color_system=None)), "/page?ioprofiler=1")
    text = out.getvalue()
    assert text.startswith("GET /page?ioprofiler=1 200 OK")
    assert "[dbshard01]" in text and "Cache MISS" in text


def test_a_real_server_on_a_loopback_port(shop):
    server = make_server("127.0.0.1", 0, IOProfilerMiddleware(shop), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/stream?ioprofiler=1", timeout=10) as response:
            html = response.read().decode()
            timing = response.headers["Server-Timing"]
        assert html.count('<div id="ioprofiler-panel"') == 1 and "db-dbshard02" in timing
        with urllib.request.urlopen(f"{base}/page", timeout=10) as response:
            assert "ioprofiler" not in response.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_slow_ms_decides_which_calls_the_panel_marks(shop):
    marked = panel_of(get(client(shop, slow_ms=0.0), "/page?ioprofiler=1").get_data(as_text=True))
    assert marked.count('<tr class="d slow" ') == 1 and marked.count('<tr class="k slow" ') == 1
    calm = panel_of(
        get(client(shop, slow_ms=60_000.0), "/page?ioprofiler=1").get_data(as_text=True)
    )
    assert not re.search(r"<tr class=\"[^\"]* slow\"", calm)  # no call marked slow


def test_context_variables_the_app_sets_reach_the_server_as_without_the_profiler(shop):
    import contextvars

    user: contextvars.ContextVar[str | None] = contextvars.ContextVar("user", default=None)

    def app(environ, start_response):
        user.set("alice")  # as a logging or tracing library binds request data
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html><body>hi</body></html>"]

    seen = []

    def access_log(environ, start_response):
        body = IOProfilerMiddleware(app)(environ, start_response)
        seen.append(user.get())
        return body

    for url in ("/", "/?ioprofiler=1", "/?ioprofiler=text"):
        contextvars.copy_context().run(get, Client(access_log), url)
    assert seen == ["alice", "alice", "alice"]
