"""The browser tests' Chromium: skip with the reason when there is none, fail under CI."""

from __future__ import annotations

import os

import pytest

from demo_app import browser


def chromium_or_skip():
    reason = browser.missing()
    if reason is not None:
        if os.environ.get("IOPROFILER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(reason)
    return browser.chromium()
