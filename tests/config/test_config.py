"""Configuration: keywords > ``METERSTREAM_*`` environment > defaults, and clear errors."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

import meterstream
from meterstream import _otel
from meterstream._exporters.base import Exporter

SECRET = "4eC39HqLyjWDarjtT1zdp7dc"
API_KEY = "sk_test_" + SECRET
CUS = "cus_cfg"


def sent(client: meterstream.MeterClient) -> list[dict[str, Any]]:
    assert client.flush(5.0)
    return list(client.exporter.events)  # type: ignore[attr-defined]


# -- precedence --------------------------------------------------------------------------------

PRECEDENCE = [
    ("batch_size", "10", 20, 10, 20),
    ("flush_interval", "2.5", 0.5, 2.5, 0.5),
    ("max_queue_size", "50", 60, 50, 60),
    ("overflow", "drop_oldest", "block", "drop_oldest", "block"),
    ("block_timeout", "3", 0.25, 3.0, 0.25),
    ("raise_errors", "true", False, True, False),
    ("on_missing_customer", "drop", "raise", "drop", "raise"),
    ("max_retry_time", "30", 12.5, 30.0, 12.5),
    ("shutdown_timeout", "1", 2, 1.0, 2),
    ("sync_mode", "yes", False, True, False),
    ("stripe_version", "2025-07-30.preview", "2024-01-01", "2025-07-30.preview", "2024-01-01"),
    ("customer_payload_key", "account", "acct", "account", "acct"),
]


@pytest.mark.parametrize(
    ("name", "env_value", "kwarg", "from_env", "from_kwarg"),
    PRECEDENCE,
    ids=[p[0] for p in PRECEDENCE],
)
def test_environment_variable_is_read(
    monkeypatch: pytest.MonkeyPatch,
    make_client: Any,
    name: str,
    env_value: str,
    kwarg: Any,
    from_env: Any,
    from_kwarg: Any,
) -> None:
    monkeypatch.setenv("METERSTREAM_" + name.upper(), env_value)
    client = make_client(exporter="memory")
    assert getattr(client.settings, name) == from_env


@pytest.mark.parametrize(
    ("name", "env_value", "kwarg", "from_env", "from_kwarg"),
    PRECEDENCE,
    ids=[p[0] for p in PRECEDENCE],
)
def test_keyword_wins_over_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
    make_client: Any,
    name: str,
    env_value: str,
    kwarg: Any,
    from_env: Any,
    from_kwarg: Any,
) -> None:
    monkeypatch.setenv("METERSTREAM_" + name.upper(), env_value)
    client = make_client(exporter="memory", **{name: kwarg})
    assert getattr(client.settings, name) == from_kwarg


def test_keyword_none_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("METERSTREAM_BATCH_SIZE", "7")
    assert make_client(exporter="memory", batch_size=None).settings.batch_size == 7


def test_defaults(make_client: Any) -> None:
    s = make_client().settings
    assert s.enabled is True
    assert s.exporter == "log"
    assert s.batch_size == 100
    assert s.flush_interval == 1.0
    assert s.max_queue_size == 100_000
    assert s.overflow == "drop_newest"
    assert s.on_missing_customer == "warn"
    assert s.raise_errors is False
    assert s.disabled_events == frozenset()
    assert s.max_retry_time == 300
    assert s.shutdown_timeout == 5
    assert s.on_delivery_error is None
    assert s.sync_mode is False
    assert s.customer_payload_key == "stripe_customer_id"
    assert s.value_payload_key == "value"


def test_exporter_from_the_environment(monkeypatch: pytest.MonkeyPatch, make_client: Any) -> None:
    monkeypatch.setenv("METERSTREAM_EXPORTER", "memory")
    client = make_client()
    client.record("calls", customer=CUS)
    assert len(sent(client)) == 1


def test_default_client_reads_the_environment_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERSTREAM_EXPORTER", "memory")
    monkeypatch.setenv("METERSTREAM_BATCH_SIZE", "3")
    client = meterstream.get_client()
    assert client.settings.exporter == "memory"
    assert client.settings.batch_size == 3
    assert meterstream.get_client() is client


def test_configure_returns_the_new_default_client() -> None:
    client = meterstream.configure(exporter="memory")
    assert meterstream.get_client() is client
    assert isinstance(client, meterstream.MeterClient)


def test_configure_flushes_the_client_it_replaces() -> None:
    old = meterstream.configure(exporter="memory", flush_interval=3600)
    meterstream.record("calls", customer=CUS)
    new = meterstream.configure(exporter="memory")
    assert new is not old
    assert len(old.exporter.events) == 1  # type: ignore[attr-defined]


def test_configure_with_a_bad_value_keeps_the_previous_client() -> None:
    old = meterstream.configure(exporter="memory")
    with pytest.raises(meterstream.ConfigurationError):
        meterstream.configure(exporter="memory", batch_size=0)
    assert meterstream.get_client() is old


# -- booleans ----------------------------------------------------------------------------------

TRUE_SPELLINGS = ["true", "True", "TRUE", "1", "yes", "YES", "Yes", "on", "ON", " true "]
FALSE_SPELLINGS = ["false", "False", "FALSE", "0", "no", "NO", "No", "off", "OFF", " off "]


@pytest.mark.parametrize("spelling", TRUE_SPELLINGS)
def test_boolean_true_spellings_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any, spelling: str
) -> None:
    monkeypatch.setenv("METERSTREAM_RAISE_ERRORS", spelling)
    assert make_client(exporter="memory").settings.raise_errors is True


@pytest.mark.parametrize("spelling", FALSE_SPELLINGS)
def test_boolean_false_spellings_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any, spelling: str
) -> None:
    monkeypatch.setenv("METERSTREAM_SYNC_MODE", spelling)
    assert make_client(exporter="memory", raise_errors=True).settings.sync_mode is False


@pytest.mark.parametrize(("spelling", "expected"), [("On", True), ("oFf", False), (True, True)])
def test_boolean_spellings_as_keywords(make_client: Any, spelling: Any, expected: bool) -> None:
    assert make_client(exporter="memory", raise_errors=spelling).settings.raise_errors is expected


@pytest.mark.parametrize("spelling", ["maybe", "", "2", "tru", "y"])
def test_bad_boolean_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.setenv("METERSTREAM_ENABLED", spelling)
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient()
    assert "METERSTREAM_ENABLED" in str(info.value)
    assert "true/false" in str(info.value)


# -- bad values --------------------------------------------------------------------------------

BAD_ENV = [
    ("METERSTREAM_BATCH_SIZE", "abc", "integer"),
    ("METERSTREAM_BATCH_SIZE", "0", "between 1 and 100"),
    ("METERSTREAM_BATCH_SIZE", "101", "between 1 and 100"),
    ("METERSTREAM_BATCH_SIZE", "2.5", "integer"),
    ("METERSTREAM_FLUSH_INTERVAL", "soon", "number"),
    ("METERSTREAM_FLUSH_INTERVAL", "0", "at least"),
    ("METERSTREAM_FLUSH_INTERVAL", "nan", "number"),
    ("METERSTREAM_MAX_QUEUE_SIZE", "0", "at least 1"),
    ("METERSTREAM_OVERFLOW", "sideways", "drop_newest, drop_oldest, block"),
    ("METERSTREAM_ON_MISSING_CUSTOMER", "explode", "warn, raise, drop"),
    ("METERSTREAM_EXPORTER", "kafka", "stripe, log, memory, none"),
    ("METERSTREAM_API_BASE", "ftp://example.invalid", "http:// or https://"),
    ("METERSTREAM_STREAM_BASE", "localhost:12111", "http:// or https://"),
    ("METERSTREAM_MAX_RETRY_TIME", "-1", "at least 0"),
    ("METERSTREAM_SHUTDOWN_TIMEOUT", "forever", "number"),
    ("METERSTREAM_PAYLOAD_KEYS", "{not json", "JSON"),
    ("METERSTREAM_PAYLOAD_KEYS", '{"calls": {"custom": "x"}}', '"customer" and/or "value"'),
    ("METERSTREAM_PAYLOAD_KEYS", "[1, 2]", "event_name"),
    ("METERSTREAM_VALUE_PAYLOAD_KEY", "x" * 101, "1..100"),
    ("METERSTREAM_ON_DELIVERY_ERROR", "no_such_module_xyz:handler", "cannot import"),
]


@pytest.mark.parametrize(
    ("env", "raw", "accepts"), BAD_ENV, ids=[f"{e}={r}" for e, r, _ in BAD_ENV]
)
def test_bad_environment_value_names_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, env: str, raw: str, accepts: str
) -> None:
    monkeypatch.setenv(env, raw)
    # The exporter keyword would hide METERSTREAM_EXPORTER; elsewhere it keeps the test offline.
    settings = {} if env == "METERSTREAM_EXPORTER" else {"exporter": "memory"}
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient(**settings)
    message = str(info.value)
    assert message.startswith(env)
    assert accepts in message


BAD_KWARGS = [
    ("batch_size", 0, "between 1 and 100"),
    ("batch_size", 101, "between 1 and 100"),
    ("batch_size", "ten", "integer"),
    ("batch_size", True, "integer"),
    ("batch_size", 2.5, "integer"),
    ("flush_interval", -1, "at least"),
    ("overflow", "drop_all", "drop_newest, drop_oldest, block"),
    ("on_missing_customer", "ignore", "warn, raise, drop"),
    ("raise_errors", "perhaps", "true/false"),
    ("exporter", 42, "stripe, log, memory, none"),
    ("disabled_events", 5, "list of event names"),
    ("disabled_events", ["ok", 3], "strings"),
    ("payload_keys", {"calls": "account"}, '"customer" and/or "value"'),
    ("on_delivery_error", 42, "callable"),
]


@pytest.mark.parametrize(
    ("name", "raw", "accepts"), BAD_KWARGS, ids=[f"{n}={r!r}" for n, r, _ in BAD_KWARGS]
)
def test_bad_keyword_value_names_the_keyword_and_what_it_accepts(
    name: str, raw: Any, accepts: str
) -> None:
    settings: dict[str, Any] = {"exporter": "memory", name: raw}
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient(**settings)
    message = str(info.value)
    assert message.startswith(name)
    assert accepts in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("size", [1, 100])
def test_batch_size_bounds_are_inclusive(make_client: Any, size: int) -> None:
    assert make_client(exporter="memory", batch_size=size).settings.batch_size == size


def test_stripe_exporter_without_a_key_is_a_configuration_error() -> None:
    with pytest.raises(meterstream.ConfigurationError, match="api_key"):
        meterstream.MeterClient(exporter="stripe")


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ("batchsize", "batch_size"),
        ("flush_intervall", "flush_interval"),
        ("api_keys", "api_key"),
        ("raise_error", "raise_errors"),
        ("disabled_event", "disabled_events"),
    ],
)
def test_unknown_setting_suggests_the_closest_name(typo: str, hint: str) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(**{typo: 1})
    assert repr(typo) in str(info.value)
    assert f"did you mean {hint!r}" in str(info.value)


def test_unknown_setting_without_a_close_match_has_no_hint() -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient(zzzzzz=1)
    assert "unknown setting 'zzzzzz'" in str(info.value)
    assert "did you mean" not in str(info.value)


# -- aggregation and the spool, now supported -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("aggregate", '{"calls": "sum"}', {"calls": "sum"}),
        ("aggregate", "calls=sum,tokens=sum", {"calls": "sum", "tokens": "sum"}),
        ("aggregation_window", "60", 60),
    ],
)
def test_aggregation_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, expected: Any
) -> None:
    monkeypatch.setenv("METERSTREAM_" + name.upper(), raw)
    client = meterstream.MeterClient(exporter="memory")
    try:
        assert getattr(client.settings, name) == expected
    finally:
        client.shutdown(0)


# -- exporter default --------------------------------------------------------------------------


def test_exporter_defaults_to_log_without_an_api_key(make_client: Any) -> None:
    client = make_client()
    assert client.settings.exporter == "log"
    assert client.settings.api_key is None
    assert type(client.exporter).__name__ == "LogExporter"


def test_exporter_defaults_to_stripe_with_an_api_key_keyword(make_client: Any) -> None:
    client = make_client(api_key=API_KEY)
    assert client.settings.exporter == "stripe"
    assert type(client.exporter).__name__ == "StripeExporter"


@pytest.mark.parametrize("env", ["METERSTREAM_API_KEY", "STRIPE_API_KEY"])
def test_exporter_defaults_to_stripe_with_an_api_key_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any, env: str
) -> None:
    monkeypatch.setenv(env, API_KEY)
    client = make_client()
    assert client.settings.api_key == API_KEY
    assert client.settings.exporter == "stripe"


def test_meterstream_api_key_wins_over_stripe_api_key(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fromstripe")
    monkeypatch.setenv("METERSTREAM_API_KEY", API_KEY)
    assert make_client().settings.api_key == API_KEY


def test_explicit_exporter_wins_over_the_api_key_default(make_client: Any) -> None:
    client = make_client(api_key=API_KEY, exporter="memory")
    assert client.settings.exporter == "memory"
    client.record("calls", customer=CUS)
    assert len(sent(client)) == 1


def test_exporter_instance_is_used(make_client: Any) -> None:
    class Collect(Exporter):
        def __init__(self) -> None:
            self.events: list[dict[str, Any]] = []

        def export(self, events: list[dict[str, Any]], batch_id: str = "") -> None:
            self.events.extend(events)

    exporter = Collect()
    client = make_client(exporter=exporter)
    assert client.exporter is exporter
    client.record("calls", customer=CUS)
    assert client.flush(5.0)
    assert len(exporter.events) == 1


# -- disabled events ---------------------------------------------------------------------------


def test_disabled_events_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("METERSTREAM_DISABLED_EVENTS", "noisy, debug_calls ,")
    client = make_client(exporter="memory")
    assert client.settings.disabled_events == frozenset({"noisy", "debug_calls"})
    for name in ("noisy", "debug_calls", "billable"):
        client.record(name, customer=CUS)
    assert [e["event_name"] for e in sent(client)] == ["billable"]
    assert client.stats()["dropped"] == 0


def test_disabled_events_as_a_list(make_client: Any) -> None:
    client = make_client(exporter="memory", disabled_events=["noisy"])
    client.record("noisy", customer=CUS)
    client.record("billable", customer=CUS)
    assert [e["event_name"] for e in sent(client)] == ["billable"]


def test_disabled_event_decorator_runs_the_function_and_records_nothing() -> None:
    client = meterstream.configure(
        exporter="memory", disabled_events="noisy", on_missing_customer="raise"
    )

    @meterstream.meter("noisy", value=lambda call: call.result)
    def fn() -> int:
        return 5

    # No customer, on_missing_customer="raise": a disabled event must not raise either.
    assert fn() == 5
    with meterstream.customer(CUS):
        assert fn() == 5
    assert sent(client) == []
    assert client.stats()["recorded"] == 0


# -- payload keys ------------------------------------------------------------------------------


def test_payload_keys_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv(
        "METERSTREAM_PAYLOAD_KEYS", '{"api_calls": {"customer": "account", "value": "count"}}'
    )
    client = make_client(exporter="memory")
    client.record("api_calls", 3, customer=CUS, dimensions={"model": "m"})
    client.record("other", 4, customer=CUS)
    assert [e["payload"] for e in sent(client)] == [
        {"account": CUS, "count": "3", "model": "m"},
        {"stripe_customer_id": CUS, "value": "4"},
    ]


def test_payload_keys_can_override_one_key_only(make_client: Any) -> None:
    client = make_client(exporter="memory", payload_keys={"api_calls": {"value": "n"}})
    client.record("api_calls", 2, customer=CUS)
    assert sent(client)[0]["payload"] == {"stripe_customer_id": CUS, "n": "2"}


def test_global_payload_keys(make_client: Any) -> None:
    client = make_client(
        exporter="memory", customer_payload_key="account_id", value_payload_key="amount"
    )
    client.record("calls", 2, customer=CUS)
    assert sent(client)[0]["payload"] == {"account_id": CUS, "amount": "2"}


def test_global_payload_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("METERSTREAM_CUSTOMER_PAYLOAD_KEY", "account_id")
    monkeypatch.setenv("METERSTREAM_VALUE_PAYLOAD_KEY", "amount")
    client = make_client(exporter="memory")
    client.record("calls", 2, customer=CUS)
    assert sent(client)[0]["payload"] == {"account_id": CUS, "amount": "2"}


@pytest.mark.parametrize(
    "settings",
    [
        {"customer_payload_key": "id", "value_payload_key": "id"},
        {"payload_keys": {"calls": {"customer": "value"}}},
    ],
    ids=["global keys", "per-event keys"],
)
def test_customer_and_value_payload_keys_must_differ(settings: dict[str, Any]) -> None:
    with pytest.raises(meterstream.ConfigurationError):
        meterstream.MeterClient(exporter="memory", **settings)


# -- on_delivery_error -------------------------------------------------------------------------


class Refuse(Exporter):
    """Refuses every batch for good, as Stripe does with a 400."""

    def export(self, events: list[dict[str, Any]], batch_id: str = "") -> None:
        raise meterstream.DeliveryError("refused", reason="rejected", status=400)


@pytest.fixture
def hooks_module(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """An importable module ``meterstream_test_hooks`` with a delivery error handler."""
    received: list[tuple[list[dict[str, Any]], BaseException]] = []
    module = types.ModuleType("meterstream_test_hooks")

    def handler(events: list[dict[str, Any]], error: BaseException) -> None:
        received.append((events, error))

    module.handler = handler  # type: ignore[attr-defined]
    module.nested = types.SimpleNamespace(handler=handler)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "meterstream_test_hooks", module)
    return types.SimpleNamespace(handler=handler, received=received)


@pytest.mark.parametrize(
    "path",
    [
        "meterstream_test_hooks:handler",
        "meterstream_test_hooks.handler",
        "meterstream_test_hooks:nested.handler",
    ],
)
def test_on_delivery_error_dotted_path_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    make_client: Any,
    hooks_module: types.SimpleNamespace,
    path: str,
) -> None:
    monkeypatch.setenv("METERSTREAM_ON_DELIVERY_ERROR", path)
    client = make_client(exporter=Refuse())
    assert client.settings.on_delivery_error is hooks_module.handler
    client.record("calls", customer=CUS, identifier="evt_refused")
    assert client.flush(5.0)
    ((events, error),) = hooks_module.received
    assert [e["identifier"] for e in events] == ["evt_refused"]
    assert isinstance(error, meterstream.DeliveryError)
    assert client.stats()["failed_rejected"] == 1


def test_on_delivery_error_missing_attribute_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, hooks_module: types.SimpleNamespace
) -> None:
    monkeypatch.setenv("METERSTREAM_ON_DELIVERY_ERROR", "meterstream_test_hooks:nope")
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient(exporter="memory")
    assert str(info.value).startswith("METERSTREAM_ON_DELIVERY_ERROR")
    assert "cannot import" in str(info.value)


def test_on_delivery_error_must_be_callable(
    monkeypatch: pytest.MonkeyPatch, hooks_module: types.SimpleNamespace
) -> None:
    monkeypatch.setenv("METERSTREAM_ON_DELIVERY_ERROR", "meterstream_test_hooks:__name__")
    with pytest.raises(meterstream.ConfigurationError, match="callable"):
        meterstream.MeterClient(exporter="memory")


# -- sync mode ---------------------------------------------------------------------------------


def test_sync_mode_sends_before_record_returns(make_client: Any) -> None:
    before = {t for t in threading.enumerate() if t.name == "meterstream-flusher"}
    client = make_client(exporter="memory", sync_mode=True)
    client.record("calls", customer=CUS)
    assert len(client.exporter.events) == 1
    after = {t for t in threading.enumerate() if t.name == "meterstream-flusher"}
    assert after <= before


# -- the api key is never shown ----------------------------------------------------------------


def assert_no_secret(text: str) -> None:
    assert API_KEY not in text
    assert SECRET not in text
    assert SECRET[:8] not in text


def test_api_key_not_in_repr_or_str_of_the_client_or_settings(make_client: Any) -> None:
    client = make_client(api_key=API_KEY, exporter="memory")
    for text in (repr(client), str(client), repr(client.settings), str(client.settings)):
        assert_no_secret(text)
    assert "sk_test_" in repr(client.settings)  # the kind of key is still shown


def test_api_key_from_the_environment_not_in_repr(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    client = make_client(exporter="memory")
    assert client.settings.api_key == API_KEY
    assert_no_secret(repr(client.settings))
    assert_no_secret(repr(client))


def test_api_key_not_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client = meterstream.configure(api_key=API_KEY, exporter="log")
        with meterstream.customer(CUS):
            meterstream.record("calls")
            meterstream.record("calls", "not a number")
        meterstream.record("calls")  # no customer: a warning
        assert client.flush(5.0)
        client.shutdown(1.0)
        meterstream.record("calls", customer=CUS)  # after shutdown: a warning
    assert len(caplog.records) >= 3
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        assert_no_secret(repr(record.args))


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_size": 0},
        {"overflow": "nope"},
        {"bogus_setting": 1},
        {"exporter": "kafka"},
        {"spool_path": "/nonexistent-directory/x.db"},
        {"api_base": "not a url"},
    ],
)
def test_api_key_not_in_configuration_error_messages(settings: dict[str, Any]) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(api_key=API_KEY, **settings)
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))


def test_api_key_from_the_environment_not_in_configuration_error_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERSTREAM_API_KEY", API_KEY)
    monkeypatch.setenv("METERSTREAM_BATCH_SIZE", "many")
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient()
    assert_no_secret(str(info.value))


# -- enabled=False ------------------------------------------------------------------------------


class NoNetwork(Exception):
    pass


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Make every attempt at an internet socket fail, and remember it.

    Unix sockets stay allowed: asyncio's event loop makes a socketpair for itself.
    """
    attempts: list[tuple[Any, ...]] = []
    real_socket = socket.socket
    internet = {-1, socket.AF_INET, socket.AF_INET6}

    class GuardedSocket(real_socket):  # type: ignore[misc, valid-type]
        def __init__(
            self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None
        ) -> None:
            if fileno is None and family in internet:
                attempts.append(("socket", family))
                raise NoNetwork("an internet socket was opened")
            super().__init__(family, type, proto, fileno)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise NoNetwork("a connection or name lookup was attempted")

    monkeypatch.setattr(socket, "socket", GuardedSocket)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_disabled_client_runs_functions_untouched_with_no_thread_and_no_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = forbid_network(monkeypatch)
    flushers_before = {t for t in threading.enumerate() if t.name == "meterstream-flusher"}

    otel_errors_before = _otel.errors
    client = meterstream.configure(enabled=False, api_key=API_KEY, on_missing_customer="raise")
    assert client.enabled is False

    @meterstream.meter("calls", value=lambda call: call.result)
    def sync_fn(x: int) -> int:
        return x + 1

    @meterstream.meter("calls")
    async def async_fn() -> str:
        return "async"

    @meterstream.meter("calls")
    def gen_fn() -> Iterator[int]:
        yield from range(3)

    # No customer anywhere and on_missing_customer="raise": disabled means untouched.
    assert sync_fn(1) == 2
    assert asyncio.run(async_fn()) == "async"
    assert list(gen_fn()) == [0, 1, 2]
    with meterstream.metering("calls") as usage:
        usage.value = 3
    meterstream.record("calls", 5, customer=CUS)
    meterstream.record("calls", "garbage")
    assert meterstream.flush(1.0) is True
    stats = meterstream.stats()
    # otel_errors is process-wide (OpenTelemetry is): other tests may have counted some.
    assert stats.pop("otel_errors") == otel_errors_before
    assert all(count == 0 for count in stats.values()), stats
    assert meterstream.shutdown(1.0) is True

    flushers_after = {t for t in threading.enumerate() if t.name == "meterstream-flusher"}
    assert flushers_after <= flushers_before
    assert attempts == []


def test_network_guard_catches_an_internet_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = forbid_network(monkeypatch)
    with pytest.raises(NoNetwork):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert attempts


def test_disabled_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_ENABLED", "off")
    client = meterstream.configure(exporter="memory")
    assert client.enabled is False
    meterstream.record("calls", customer=CUS)
    assert client.flush(1.0)
    assert client.exporter.events == []  # type: ignore[attr-defined]


def test_enabled_client_starts_one_named_flusher_thread(
    memory_client: meterstream.MeterClient,
) -> None:
    meterstream.record("calls", customer=CUS)
    assert memory_client.flush(5.0)
    flushers = [t for t in threading.enumerate() if t.name == "meterstream-flusher"]
    assert flushers
    assert all(t.daemon for t in flushers)


def test_a_zero_aggregation_window_is_refused_too() -> None:
    with pytest.raises(meterstream.ConfigurationError, match="aggregation_window"):
        meterstream.MeterClient(exporter="memory", aggregation_window=0)
