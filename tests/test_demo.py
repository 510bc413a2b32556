"""The demo shop: each page's shard queries and cache calls, and the demo as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pymemcache.client.base import Client as MemcacheClient
from werkzeug.test import Client

import ioprofiler
from demo_app.app import CALLSITE_SKIP, ShopApp
from demo_app.data import FIRST_LISTING_ID
from demo_app.shop import Shop
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.conftest import mysql_or_skip
from tests.test_findings import TIMING

ROOT = Path(__file__).resolve().parent.parent
LISTING = FIRST_LISTING_ID + 1
LINE = re.compile(r"^\[(?P<target>[^\]]+)\] (?P<ms>\d+\.\d{3}) ms (?P<what>.*?)(  <- .*)?$")


@pytest.fixture
def demo(tmp_path, memcached):
    cache = MemcacheClient(memcached.address, no_delay=True)
    cache.flush_all()
    shop = Shop.from_urls(f"sqlite:///{tmp_path}/{{shard}}.db", cache)
    ioprofiler.configure(callsite_skip=CALLSITE_SKIP)
    yield Client(IOProfilerMiddleware(ShopApp(shop)))
    shop.close()


CONNECTION_OPS = ("CONNECT", "POOL WAIT", "COMMIT", "ROLLBACK")


def listing(client: Client, url: str) -> list[tuple[str, str]]:
    """(target, what) for each call of ``url``'s ?ioprofiler=text listing (the connects
    and transaction ends around the calls left out)."""
    joiner = "&" if "?" in url else "?"
    response = client.get(f"{url}{joiner}ioprofiler=text", environ_base={"REMOTE_ADDR": "::1"})
    assert response.status_code == 200
    lines = []
    for line in response.get_data(as_text=True).splitlines():
        match = LINE.match(line)
        if match and not match["what"].startswith(CONNECTION_OPS):
            lines.append((match["target"], match["what"]))
    return lines


def test_listing_page_misses_then_hits_the_cache(demo):
    first = listing(demo, f"/listing/{LISTING}")
    assert first[0][0] == "memcache" and first[0][1].startswith("Cache MISS, keys: Etsy_Cache")
    assert first[1] == (
        "index",
        f"SELECT shard, shop_id FROM ListingIndex WHERE listing_id = {LISTING}",
    )
    assert (
        "dbshard01",
        f"SELECT count(*) FROM FavoriteListingUser WHERE listing_id = {LISTING}",
    ) in first
    assert first[-1][1].startswith("Cache SET")
    second = listing(demo, f"/listing/{LISTING}")
    assert len(second) == 1 and second[0][1].startswith("Cache HIT, keys: Etsy_Cache_Results:")


def test_the_n_plus_one_page_is_flagged_and_the_fixed_one_is_not(demo):
    text = demo.get("/shop/7?ioprofiler=text", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    text = text.get_data(as_text=True)
    assert re.search(
        r"repeated \d+x on index, likely N\+1: SELECT shard FROM UserIndex WHERE user_id = \?"
        r"  <- demo_app/shop\.py:\d+ in shop_fans",
        text,
    ), text
    fixed = demo.get("/shop/7?fixed=1&ioprofiler=text", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert "likely N+1" not in fixed.get_data(as_text=True)
    shards = {target for target, _ in listing(demo, "/shop/7?fixed=1")}
    assert {"index", "dbshard01", "dbshard02", "dbshard03", "dbshard04"} <= shards


def findings_of(client: Client, url: str, kinds: list[str]) -> list[dict]:
    """The findings of ``url``'s page, which must be ``kinds``, but for the timing kinds: a
    loaded machine that stalls mid-query makes a slow call out of nothing."""
    joiner = "&" if "?" in url else "?"
    response = client.get(f"{url}{joiner}ioprofiler=json", environ_base={"REMOTE_ADDR": "::1"})
    found = [f for f in json.loads(response.get_data())["findings"] if f["kind"] not in TIMING]
    assert [f["kind"] for f in found] == kinds, found
    return found


def test_the_shop_page_shows_its_n_plus_one_and_the_fixed_page_its_serial_fan_out(demo):
    found = findings_of(demo, "/shop/7", ["n_plus_one", "n_plus_one"])
    messages = sorted(f["message"] for f in found)
    assert re.fullmatch(
        r"N\+1: SELECT login FROM User WHERE user_id = \? ran 12× on dbshard0\d.* "
        r"\(\d+\.\d{3} ms\) <- demo_app/shop\.py:\d+ in shop_fans",
        messages[0],
    ), messages
    assert messages[1].startswith(
        "N+1: SELECT shard FROM UserIndex WHERE user_id = ? ran 12× on index ("
    )
    fixed = findings_of(demo, "/shop/7?fixed=1", ["serial_fanout"])
    assert re.match(
        r"serial fan-out: SELECT user_id, login FROM User WHERE user_id IN \(\?…\) sent to "
        r"4 shards one after another",
        fixed[0]["message"],
    )


def test_home_reads_the_featured_counts_in_one_get_many_and_fills_the_misses(demo):
    first = listing(demo, "/")
    reads = [what for target, what in first if target == "memcache"]
    assert reads[0].startswith("Cache MISS 0/12, keys: Etsy_Cache_Results:")
    assert reads[1].startswith("Cache SET, keys: Etsy_Cache_Results:")
    grouped = [what for target, what in first if "GROUP BY listing_id" in what]
    assert len(grouped) == 4  # one grouped count per shard, not one per listing
    second = listing(demo, "/")
    assert [what.split(",")[0] for t, what in second if t == "memcache"] == ["Cache HIT 12/12"]
    assert not any("FavoriteListingUser" in what for _, what in second)


def test_the_failing_query_is_shown_and_the_page_still_answers(demo):
    response = demo.get("/broken/5773401?ioprofiler=1", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Reviews could not be loaded" in html
    assert "SELECT body FROM ListingReview WHERE listing_id = 5773401" in html
    assert '<b class="e">OperationalError</b>' in html


def test_the_json_api_with_ioprofiler_json(demo):
    plain = json.loads(demo.get(f"/api/listing/{LISTING}").get_data())
    assert plain["listing_id"] == LISTING
    document = json.loads(
        demo.get(
            f"/api/listing/{LISTING}?ioprofiler=json", environ_base={"REMOTE_ADDR": "127.0.0.1"}
        ).get_data()
    )
    assert document["schema"] == "ioprofiler.trace"
    assert [e["target"] for e in document["events"]] == ["memcache"]
    assert document["events"][0]["hit"] is True


def test_the_streamed_and_slow_pages(demo):
    streamed = listing(demo, "/stream")
    assert len(streamed) == 12 and {t for t, _ in streamed} == {f"dbshard0{i}" for i in range(1, 5)}
    response = demo.get("/slow?ioprofiler=1", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    html = response.get_data(as_text=True)
    # The panel marks the slow call (over 100 ms): its row carries the "slow" class.
    assert re.search(
        r'<tr class="d slow" id="e\d+">.*?dbshard03</td><td>\d{3}\.\d{3}</td>'
        r"<td>SELECT SLEEP\(0\.25\)</td>",
        html,
    ), html[-3000:]


def test_demo_on_mariadb(memcached):
    mysql_or_skip()
    cache = MemcacheClient(memcached.address)
    cache.flush_all()
    shop = Shop.from_urls("mysql+pymysql://root@127.0.0.1:3306/ioprofiler_demo_{shard}", cache)
    try:
        client = Client(IOProfilerMiddleware(ShopApp(shop)))
        lines = listing(client, f"/listing/{LISTING}")
        assert (
            "dbshard01",
            f"SELECT count(*) FROM FavoriteListingUser WHERE listing_id = {LISTING}",
        ) in lines
    finally:
        shop.close()


# -- the demo as a process ------------------------------------------------------------------


def start_demo(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "demo_app", "--quiet", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def wait_for_url(process: subprocess.Popen[str]) -> tuple[str, int]:
    line = process.stdout.readline()
    match = re.match(r"Sharded Shop on (http://[\d.:]+)  \(memcached started on port (\d+)", line)
    assert match, line + process.stderr.read()
    return match.group(1), int(match.group(2))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP])
def test_the_demo_process_serves_and_stops_cleanly(tmp_path, stop):
    process = start_demo("--port", "0", "--data-dir", str(tmp_path), cwd=tmp_path)
    try:
        base, memcached_port = wait_for_url(process)
        with urllib.request.urlopen(f"{base}/listing/{LISTING}?ioprofiler=1", timeout=30) as page:
            html = page.read().decode()
        assert '<div id="ioprofiler-panel"' in html and "Cache MISS" in html
    finally:
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out
    with pytest.raises(OSError):  # its memcached is gone too
        socket.create_connection(("127.0.0.1", memcached_port), timeout=1).close()


def test_a_killed_demo_takes_its_memcached_with_it(tmp_path):
    process = start_demo("--port", "0", "--data-dir", str(tmp_path), cwd=tmp_path)
    _, memcached_port = wait_for_url(process)
    process.kill()  # no chance to clean up: the kernel ends memcached (PR_SET_PDEATHSIG)
    process.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", memcached_port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.1)
    pytest.fail(f"memcached on port {memcached_port} outlived the demo")


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_demo("--port", str(port), "--data-dir", str(tmp_path), cwd=tmp_path)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"port {port} on 127.0.0.1 is taken: pass --port with another one" in err


def test_an_unreachable_memcached_or_database_is_a_clear_error(tmp_path):
    process = start_demo("--memcache", "127.0.0.1:1", "--data-dir", str(tmp_path), cwd=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "memcached at 127.0.0.1:1 does not answer" in err

    process = start_demo(
        "--port", "0", "--db-url", "mysql+pymysql://root@127.0.0.1:1/{shard}", cwd=tmp_path
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "cannot open the shop's databases at mysql+pymysql://root@127.0.0.1:1/<shard>" in err


def test_a_missing_memcached_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("IOPROFILER_MEMCACHED", str(tmp_path / "no-memcached-here"))
    process = start_demo("--port", "0", "--data-dir", str(tmp_path), cwd=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "memcached is not installed" in err and "apt-get install -y memcached" in err


def test_bad_options_are_refused(tmp_path):
    process = start_demo("--db-url", "sqlite:///one.db", cwd=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "--db-url must contain {shard}" in err
