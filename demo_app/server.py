"""``python -m demo_app``: start the sharded shop behind ioprofiler's middleware.

python -m demo_app                       # SQLite shards in ./.demo-data, a private memcached
python -m demo_app --port 0              # any free port (the URL is printed)
python -m demo_app --memcache 127.0.0.1:11211
python -m demo_app --db-url 'mysql+pymysql://root@127.0.0.1/{shard}'
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

from pymemcache.client.base import Client
from werkzeug.serving import make_server

import ioprofiler
from demo_app.app import CALLSITE_SKIP, ShopApp
from demo_app.shop import Shop
from ioprofiler import access
from ioprofiler.memcached import MemcachedNotInstalled, MemcachedProcess
from ioprofiler.wsgi import IOProfilerMiddleware


class DemoError(Exception):
    """A problem the person starting the demo can fix; the message says how."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo_app", description="A sharded shop that shows ioprofiler at work."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    parser.add_argument(
        "--memcache", metavar="HOST:PORT", help="use this memcached instead of starting one"
    )
    parser.add_argument(
        "--data-dir", default=".demo-data", help="where the SQLite shard files live"
    )
    parser.add_argument(
        "--db-url",
        metavar="TEMPLATE",
        help="a SQLAlchemy URL with {shard}, e.g. 'mysql+pymysql://root@127.0.0.1/{shard}'",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not print each profiled request's listing"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")
    if args.db_url is not None and "{shard}" not in args.db_url:
        parser.error("--db-url must contain {shard}, e.g. 'mysql+pymysql://root@127.0.0.1/{shard}'")
    return args


def memcache_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise DemoError(f"--memcache takes HOST:PORT, like 127.0.0.1:11211, not {text!r}")
    return host.strip("[]"), int(port)


def database_url(args: argparse.Namespace) -> str:
    if args.db_url:
        return args.db_url
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir}/{{shard}}.db"


def open_shop(url: str, cache: Client) -> Shop:
    try:
        return Shop.from_urls(url, cache)
    except Exception as exc:
        shown = url.format(shard="<shard>")
        raise DemoError(f"cannot open the shop's databases at {shown}: {exc}") from exc


def check_port(host: str, port: int) -> None:
    """A clear error for a taken port, before werkzeug prints its own and exits."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(
                    f"port {port} on {host} is taken: pass --port with another one "
                    "(or --port 0 for any free port)"
                ) from exc
            raise DemoError(f"cannot listen on {host}:{port}: {exc}") from exc


def check_memcache(client: Client, where: str) -> None:
    try:
        client.version()
    except Exception as exc:
        raise DemoError(f"memcached at {where} does not answer: {exc}") from exc


def serve(args: argparse.Namespace, ready: threading.Event | None = None) -> None:
    memcached: MemcachedProcess | None = None
    shop = None
    server = None
    try:
        if args.memcache:
            address = memcache_address(args.memcache)
        else:
            try:
                memcached = MemcachedProcess().start()
            except MemcachedNotInstalled as exc:
                raise DemoError(str(exc)) from exc
            address = memcached.address
        client = Client(address, connect_timeout=2, timeout=2, no_delay=True)
        check_memcache(client, f"{address[0]}:{address[1]}")
        shop = open_shop(database_url(args), client)
        ioprofiler.configure(callsite_skip=CALLSITE_SKIP)
        app = IOProfilerMiddleware(
            ShopApp(shop), allow=access.loopback(), console=not args.quiet, follow_requests=True
        )
        check_port(args.host, args.port)
        try:
            server = make_server(args.host, args.port, app, threaded=True)
        except (OSError, SystemExit) as exc:  # werkzeug exits on a taken port
            raise DemoError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
        base = f"http://{args.host}:{server.server_port}"
        where = "memcached " + (
            "at " + args.memcache if args.memcache else f"started on port {address[1]}"
        )
        print(f"Sharded Shop on {base}  ({where}; Ctrl-C stops)", flush=True)
        for path in ("/", "/listing/5773401", "/shop/7", "/shop/7?fixed=1", "/api/listing/5773401"):
            joiner = "&" if "?" in path else "?"
            print(f"  {base}{path}   ->   {base}{path}{joiner}ioprofiler=1", flush=True)
        if ready is not None:
            ready.set()
        server.serve_forever()
    finally:
        if server is not None:
            server.server_close()
        if shop is not None:
            shop.close()
        if memcached is not None:
            memcached.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all stop the demo and its memcached;
    # SIGINT too when it was started in the background, where the shell ignores it.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)
    try:
        serve(args)
    except DemoError as exc:
        print(f"demo_app: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass  # werkzeug usually takes Ctrl-C itself and returns from serve_forever
    print("\nstopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
