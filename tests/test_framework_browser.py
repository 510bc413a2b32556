"""One profiled page per framework in headless Chromium: FastAPI under uvicorn, Flask and
Django under a werkzeug server; the panel shows on the page with the request's queries."""

from __future__ import annotations

import pytest
from django.test import override_settings

from ioprofiler.asgi import IOProfilerMiddleware
from ioprofiler.flask import IOProfiler
from tests.asgi_app import serving, serving_asgi
from tests.browser import chromium_or_skip
from tests.test_asgi import shop as fastapi_shop  # noqa: F401  (a fixture)
from tests.test_django_middleware import PROFILER
from tests.test_django_middleware import shop as django_shop  # noqa: F401  (a fixture)
from tests.test_flask import shop as flask_shop  # noqa: F401  (a fixture)

PANEL = "document.getElementById('ioprofiler-panel')"


@pytest.fixture
def browser():
    driver = chromium_or_skip()
    yield driver
    driver.quit()


def panel_in(browser, url: str) -> dict:
    browser.get(url)
    return browser.execute_script(
        f"""const host = {PANEL};
        const box = host.getBoundingClientRect();
        return {{height: box.height, width: box.width, text: host.shadowRoot.textContent,
                 page: document.body.innerText}};"""
    )


def test_fastapi_panel(fastapi_shop, browser):  # noqa: F811
    with serving_asgi(IOProfilerMiddleware(fastapi_shop)) as base:
        state = panel_in(browser, f"{base}/gather/5773453?ioprofiler=1")
    assert state["height"] > 100 and state["width"] > 500
    assert "dbshard01" in state["text"] and "dbshard04" in state["text"]
    assert state["page"].startswith("5 favorites")


def test_flask_panel(flask_shop, browser):  # noqa: F811
    IOProfiler(flask_shop)
    with serving(flask_shop) as base:
        state = panel_in(browser, f"{base}/listing/5773453?ioprofiler=1")
    assert state["height"] > 100 and "dbshard02" in state["text"]
    assert "Cache MISS" in state["text"] and state["page"].startswith("2 favorites")


def test_django_panel(django_shop, browser):  # noqa: F811
    from django.core.wsgi import get_wsgi_application

    with override_settings(MIDDLEWARE=[PROFILER]), serving(get_wsgi_application()) as base:
        state = panel_in(browser, f"{base}/listing/5773453?ioprofiler=1")
    assert state["height"] > 100 and "dbshard02" in state["text"]
    assert state["page"].startswith("2 favorites")
