"""Headless Chromium through selenium, with Debian's chromium and chromium-driver.

Used by the screenshot script and the browser tests. The flags keep Chromium off the
network: this machine reaches nothing but loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

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
    "--hide-scrollbars",
)


def find(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None) or shutil.which(name)


def missing() -> str | None:
    """Why no browser can be started here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if find(CHROMIUM, "chromium") is None or find(CHROMEDRIVER, "chromedriver") is None:
        return (
            "no Chromium here: `make test` installs Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver)"
        )
    return None


def chromium(width: int = 1280, height: int = 900) -> Any:
    """A selenium driver for a fresh headless Chromium profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find(CHROMIUM, "chromium")
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ioprofiler-chromium-')}")
    return webdriver.Chrome(service=Service(find(CHROMEDRIVER, "chromedriver")), options=options)
