"""Settings.from_env with a plain dict: defaults, conversions, refusals, describe()."""

from __future__ import annotations

import dataclasses
import os

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, describe, env_name

FIELDS = dataclasses.fields(Settings)
INT_FIELDS = [f.name for f in FIELDS if f.type == "int"]
FLOAT_FIELDS = [f.name for f in FIELDS if f.type == "float"]
STR_FIELDS = [f.name for f in FIELDS if f.type == "str"]
BOOL_FIELDS = [f.name for f in FIELDS if f.type == "bool"]


def test_every_field_has_a_known_type() -> None:
    assert len(INT_FIELDS) + len(FLOAT_FIELDS) + len(STR_FIELDS) + len(BOOL_FIELDS) == len(FIELDS)
    assert INT_FIELDS
    assert FLOAT_FIELDS


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.database_url == "postgresql://localhost/feed_worker"
    assert s.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert s.log_level == "info"
    assert s.log_format == "auto"
    assert s.http_port == 9187
    assert s.pull_concurrency == 2
    assert s.fetch_connect_timeout_s == 10.0
    assert s.max_file_bytes == 2 * 1024**3
    assert s.lease_s == 60.0
    assert s.merge_work_mem == "512MB"
    assert s.worker_id.endswith(f"-{os.getpid()}")


def test_given_dict_is_used_not_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in describe():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FEED_WORKER_HTTP_PORT", "1234")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    s = Settings.from_env({})
    assert s.http_port == 9187
    assert s.database_url == "postgresql://localhost/feed_worker"
    assert Settings.from_env().http_port == 1234  # None: the process environment


@pytest.mark.parametrize("name", BOOL_FIELDS)
@pytest.mark.parametrize(("raw", "value"), [("true", True), ("ON", True), ("1", True),
                                            ("false", False), ("no", False), ("0", False)])
def test_switches(name: str, raw: str, value: bool) -> None:
    assert getattr(Settings.from_env({env_name(name): raw}), name) is value


@pytest.mark.parametrize("name", BOOL_FIELDS)
def test_switch_refuses_other_words(name: str) -> None:
    with pytest.raises(ConfigError, match=env_name(name)):
        Settings.from_env({env_name(name): "maybe"})


@pytest.mark.parametrize("name", ["cleanup_max_zeroed_share", "cleanup_max_quantity_drop",
                                  "breaker_max_rows_drop", "breaker_max_bytes_drop"])
@pytest.mark.parametrize("raw", ["1.5", "0", "-0.1"])
def test_shares_are_between_0_and_1(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=env_name(name)):
        Settings.from_env({env_name(name): raw})


def test_blank_variable_means_default() -> None:
    assert Settings.from_env({"FEED_WORKER_HTTP_PORT": ""}).http_port == 9187


def test_env_names() -> None:
    assert env_name("database_url") == "DATABASE_URL"
    assert env_name("amqp_url") == "AMQP_URL"
    assert env_name("lease_s") == "FEED_WORKER_LEASE_S"


@pytest.mark.parametrize("name", [n for n in STR_FIELDS
                                  if n not in ("log_format", "log_level", "allowed_networks",
                                               "notify_url", "amqp_url")])
def test_str_fields_are_stripped(name: str) -> None:
    s = Settings.from_env({env_name(name): "  value-x  "})
    assert getattr(s, name) == "value-x"


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("log_format", "json", "json"),
        ("log_format", " console ", "console"),
        ("http_port", "0", 0),
        ("http_port", " 8080 ", 8080),
        ("pull_concurrency", "8", 8),
        ("max_file_bytes", "1048576", 1048576),
        ("fetch_connect_timeout_s", "2.5", 2.5),
        ("fetch_read_timeout_s", "7", 7.0),
        ("lease_s", "3", 3.0),
        ("shutdown_grace_s", "0.25", 0.25),
        ("worker_id", "replica-a", "replica-a"),
        ("database_url", "postgresql://u:p@db:5432/x", "postgresql://u:p@db:5432/x"),
    ],
)
def test_conversions(name: str, raw: str, expected: object) -> None:
    got = getattr(Settings.from_env({env_name(name): raw}), name)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "ten", "0x10"])
def test_bad_int_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({env_name(name): raw})
    assert env_name(name) in str(info.value)


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("raw", ["abc", "1,5", "5s", "--1"])
def test_bad_float_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({env_name(name): raw})
    assert env_name(name) in str(info.value)


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_nan_is_not_a_duration(name: str) -> None:
    """float('nan') parses, and NaN < 3 is False, so it slips past the range checks."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({env_name(name): "nan"})
    assert env_name(name) in str(info.value)


def test_log_format_is_checked() -> None:
    with pytest.raises(ConfigError, match="FEED_WORKER_LOG_FORMAT"):
        Settings.from_env({"FEED_WORKER_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("name", ["pull_concurrency", "copy_batch_rows",
                                  "pipeline_queue_batches", "max_run_attempts",
                                  "delivery_limit", "db_pool_size", "max_inflation_ratio"])
@pytest.mark.parametrize("raw", ["0", "-1"])
def test_counts_must_be_positive(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=env_name(name)):
        Settings.from_env({env_name(name): raw})
    assert getattr(Settings.from_env({env_name(name): "1"}), name) == 1


@pytest.mark.parametrize("raw", ["2.99", "0", "-60"])
def test_lease_has_a_floor(raw: str) -> None:
    with pytest.raises(ConfigError, match="FEED_WORKER_LEASE_S"):
        Settings.from_env({"FEED_WORKER_LEASE_S": raw})


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.http_port = 1  # type: ignore[misc]


def test_describe_lists_every_field_once() -> None:
    rows = describe()
    assert [r[0] for r in rows] == [env_name(f.name) for f in FIELDS]
    assert len({r[0] for r in rows}) == len(FIELDS)
    assert all(r[2] for r in rows), "every setting has help text"
    names = {r[0] for r in rows}
    assert {"DATABASE_URL", "AMQP_URL", "FEED_WORKER_LEASE_S"} <= names
    assert all(n in ("DATABASE_URL", "AMQP_URL") or n.startswith("FEED_WORKER_")
               for n in names)


def test_describe_defaults_read_back_as_the_defaults() -> None:
    """Each default describe() shows, given as the variable, gives the default setting."""
    defaults = {name: default for name, default, _ in describe()}
    assert defaults.pop("FEED_WORKER_WORKER_ID") == "host-pid"
    assert Settings.from_env(defaults) == Settings()


def test_the_push_batch_wait_may_be_zero_but_not_negative() -> None:
    """0: a push group closes at the first pause of the stream."""
    assert Settings.from_env({}).push_batch_wait_s == 0.02
    assert Settings.from_env({"FEED_WORKER_PUSH_BATCH_WAIT_S": "0"}).push_batch_wait_s == 0.0
    assert Settings.from_env({"FEED_WORKER_PUSH_BATCH_WAIT_S": "0.05"}).push_batch_wait_s == 0.05
    with pytest.raises(ConfigError, match="FEED_WORKER_PUSH_BATCH_WAIT_S"):
        Settings.from_env({"FEED_WORKER_PUSH_BATCH_WAIT_S": "-0.01"})
