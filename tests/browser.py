"""Headless Chromium through selenium, with Debian's chromium and chromium-driver."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None) or shutil.which(name)


def chromium_or_skip():
    """A selenium Chrome driver, or skip saying why (fail with IOPROFILER_REQUIRE_BROWSER=1)."""
    browser, driver = _first(CHROMIUM, "chromium"), _first(CHROMEDRIVER, "chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install -e '.[test]')"
    else:
        reason = None
        if browser is None or driver is None:
            reason = (
                "no Chromium here: `make test` installs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver)"
            )
    if reason is not None:
        if os.environ.get("IOPROFILER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ioprofiler-chromium-')}")
    return webdriver.Chrome(service=Service(driver), options=options)
