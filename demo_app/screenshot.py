"""Take the README's screenshot: the demo's listing page with the panel, in headless Chromium.

make screenshot            # writes demo_app/screenshot.png
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from pymemcache.client.base import Client
from werkzeug.serving import make_server

import ioprofiler
from demo_app import browser
from demo_app.app import CALLSITE_SKIP, ShopApp
from demo_app.shop import Shop
from ioprofiler.memcached import MemcachedProcess
from ioprofiler.wsgi import IOProfilerMiddleware

OUTPUT = Path(__file__).with_name("screenshot.png")


def main() -> int:
    with tempfile.TemporaryDirectory() as data, MemcachedProcess() as memcached:
        shop = Shop.from_urls(f"sqlite:///{data}/{{shard}}.db", Client(memcached.address))
        ioprofiler.configure(callsite_skip=CALLSITE_SKIP)
        server = make_server("127.0.0.1", 0, IOProfilerMiddleware(ShopApp(shop)), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = browser.chromium(1280, 1000)
        try:
            driver.get(f"http://127.0.0.1:{server.server_port}/shop/7?ioprofiler=1")
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1280, min(max(height, 800), 1600))
            driver.save_screenshot(str(OUTPUT))
        finally:
            driver.quit()
            server.shutdown()
            shop.close()
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
