"""Targets are named by their integrations through one interface; the core only shows them."""

from __future__ import annotations

import pytest

from ioprofiler.targets import Service, forget_servers, format_server, target_matches


def test_a_service_shows_the_address_always_or_once_it_has_several():
    always = Service("kv", describe=lambda a: f"{format_server(a[:2])}/{a[2]}")
    when_many = Service("mc", address="when_many")
    first = when_many.target(("10.0.0.5", 11211))
    assert str(first) == "mc"
    second = when_many.target(("::1", 11211))
    assert (str(first), str(second)) == ("mc 10.0.0.5:11211", "mc [::1]:11211")
    assert when_many.target(("10.0.0.5", 11211)) is first
    assert str(always.target(("10.0.0.5", 6379, 3))) == "kv 10.0.0.5:6379/3"
    forget_servers()
    assert str(when_many.target("/run/mc.sock")) == "mc"


def test_a_service_name_names_each_of_its_servers_and_nothing_else():
    Service("svc")
    assert target_matches("svc 10.0.0.5:1", "svc")
    assert not target_matches("svcx 10.0.0.5:1", "svc")
    assert not target_matches("dbshard01 replica", "dbshard01")  # not a service: exact only
    assert target_matches("dbshard01", "dbshard01")


@pytest.mark.parametrize("name", ["", "two words"])
def test_a_service_name_is_one_word(name):
    with pytest.raises(ValueError, match="one word"):
        Service(name)


def test_address_takes_always_or_when_many():
    with pytest.raises(ValueError, match="'always' or 'when_many'"):
        Service("x", address="sometimes")  # type: ignore[arg-type]
