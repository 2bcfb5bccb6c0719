"""AMQP_URL with several nodes: how the list is read, checked and masked."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.failover import nodes
from worker.settings import Settings
from worker.urls import mask, scrub, several

TWO = "amqp://fw:pw-one@h1:5672/inv,amqp://fw:pw-two@h2:5673/inv"


def test_a_list_is_split_at_commas_that_a_scheme_follows() -> None:
    assert several(TWO) == ["amqp://fw:pw-one@h1:5672/inv", "amqp://fw:pw-two@h2:5673/inv"]
    assert several(" amqp://a@h1/ , amqps://a@h2/ ") == ["amqp://a@h1/", "amqps://a@h2/"]
    assert several("amqp://guest:guest@localhost:5672/") == ["amqp://guest:guest@localhost:5672/"]
    # A comma no scheme follows belongs to its URL: a password, a Postgres DSN's hosts.
    assert several("amqp://u:p,w@h/v") == ["amqp://u:p,w@h/v"]
    assert several("postgresql://u:p@h1:5432,h2:5433/db") == ["postgresql://u:p@h1:5432,h2:5433/db"]


def test_the_nodes_keep_their_order_ports_and_vhosts() -> None:
    found = nodes(TWO)
    assert [(u.host, u.port, u.path, u.password) for u in found] == [
        ("h1", 5672, "/inv", "pw-one"), ("h2", 5673, "/inv", "pw-two")]


def test_every_node_is_masked_and_scrubbed() -> None:
    assert mask(TWO) == "amqp://fw:***@h1:5672/inv,amqp://fw:***@h2:5673/inv"
    text = f"failed: {TWO} (pw-one, pw-two)"
    cleaned = scrub(text, TWO)
    assert "pw-one" not in cleaned
    assert "pw-two" not in cleaned
    assert "h2:5673" in cleaned


def test_settings_take_a_list_and_refuse_a_node_that_is_not_a_whole_url() -> None:
    assert Settings.from_env({"AMQP_URL": TWO}).amqp_url == TWO
    assert Settings.from_env({"AMQP_URL": f"  {TWO} "}).amqp_url == TWO
    with pytest.raises(ConfigError, match="comma in its host or vhost") as bad:
        Settings.from_env({"AMQP_URL": "amqp://fw:pw-one@h1:5672/inv,h2:5673"})
    assert "pw-one" not in str(bad.value)
    with pytest.raises(ConfigError, match="not an amqp:// or amqps:// URL"):
        Settings.from_env({"AMQP_URL": "amqp://fw:pw@h1/inv,http://h2/"})
