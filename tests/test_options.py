"""Bad options fail where they are given, with a message that says what is wanted:
never later, on every request or every call."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

import ioprofiler
from ioprofiler import access
from ioprofiler.testing import IOExpectation
from ioprofiler.wsgi import IOProfilerMiddleware


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<html><body>page</body></html>"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_events": -1}, ValueError, "max_events must be a whole number of at least 0"),
        ({"max_events": 2.5}, ValueError, "max_events must be a whole number"),
        ({"slow_ms": -1}, ValueError, "slow_ms must be a number of milliseconds, 0 or more"),
        ({"slow_ms": float("nan")}, ValueError, "slow_ms must be a number of milliseconds"),
        ({"slow_ms": "100"}, ValueError, "slow_ms must be a number of milliseconds"),
        ({"max_inject_bytes": -5}, ValueError, "max_inject_bytes must be a whole number"),
        ({"max_inject_bytes": True}, ValueError, "max_inject_bytes must be a whole number"),
        ({"strip_param": "yes"}, TypeError, "strip_param must be True or False"),
        ({"install": 1}, TypeError, "install must be True or False"),
        ({"console": "stderr"}, TypeError, "console must be True, False or a rich Console"),
        ({"param": "a b"}, ValueError, "param must be a plain query parameter name"),
        ({"trusted_proxies": ["lb.example"]}, ValueError, "not an IP network"),
        ({"allow": "127.0.0.1"}, TypeError, "allow must be a rule"),
    ],
)
def test_the_middleware_refuses_bad_options_at_construction(options, error, message):
    with pytest.raises(error, match=message):
        IOProfilerMiddleware(app, **options)


def test_a_middleware_that_was_built_serves_profiled_requests():
    # max_events=-1 used to be accepted here and then raise out of every profiled request
    for options in ({"max_events": 0}, {"slow_ms": 0}, {"max_events": 5, "slow_ms": 2.5}):
        response = Client(IOProfilerMiddleware(app, **options)).get(
            "/?ioprofiler=1", environ_base={"REMOTE_ADDR": "127.0.0.1"}
        )
        assert response.status_code == 200 and b"ioprofiler-panel" in response.data


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ioprofiler.profile(max_events=-1), ValueError, "max_events must be"),
        (lambda: ioprofiler.profile(name=5), TypeError, "a trace's name must be a string"),
        (lambda: ioprofiler.Trace(max_events="10"), ValueError, "max_events must be"),
        (lambda: ioprofiler.configure(redact=1), TypeError, "redact must be True or False"),
        (lambda: ioprofiler.configure(max_events=-3), ValueError, "max_events must be"),
        (lambda: ioprofiler.configure(callsite_skip="myapp"), TypeError, "callsite_skip must"),
        (lambda: ioprofiler.configure(callsite_skip=[3]), ValueError, "callsite_skip entries"),
        (lambda: ioprofiler.configure(callsite_skip=["a b"]), ValueError, "callsite_skip entr"),
        (lambda: ioprofiler.install(only=["sqlalchemy", "nope"]), ValueError, "unknown integ"),
        (lambda: ioprofiler.install(only=5), TypeError, "only= takes an integration name"),
        (lambda: ioprofiler.propagate(5), TypeError, "propagate\\(\\) takes a function"),
        (lambda: access.token("short"), ValueError, "at least 16 characters"),
        (lambda: access.networks("10.0.0.0/33"), ValueError, "not an IP network"),
        (lambda: IOExpectation(db=1, strict="yes"), TypeError, "strict must be True or False"),
        (lambda: IOExpectation(no_repeats=1), TypeError, "no_repeats must be True or False"),
        (lambda: IOExpectation(ignore=[1]), TypeError, "ignore= takes regular expressions"),
    ],
)
def test_public_calls_refuse_bad_options_with_a_clear_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_refused_configure_changes_nothing():
    before = ioprofiler.configure()
    with pytest.raises(ValueError):
        ioprofiler.configure(redact=True, max_events=-1)
    assert ioprofiler.configure() == before


def test_install_takes_one_name_as_well_as_a_list():
    ioprofiler.uninstall()
    assert ioprofiler.install(only="pymemcache") == ["pymemcache"]
    with pytest.raises(ValueError, match="unknown integration 'nope'"):
        ioprofiler.install(only=["sqlalchemy", "nope"])
    assert ioprofiler.installed() == ["pymemcache"]  # nothing patched for a refused list
    assert set(ioprofiler.install(only=("sqlalchemy",))) == {"sqlalchemy", "pymemcache"}


def test_a_second_configure_replaces_callsite_skip():
    ioprofiler.configure(callsite_skip=["myapp.db"])
    settings = ioprofiler.configure(callsite_skip=["myapp.shop:_query"])
    assert settings.callsite_skip == ("myapp.shop:_query",)
    assert ioprofiler.configure(redact=False).callsite_skip == ("myapp.shop:_query",)
