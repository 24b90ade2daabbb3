"""What the NATS exporter and the relay share: settings, connecting, the stream.

nats-py is imported only inside the functions that need it; the parsers of
the NATS settings are :mod:`meterstream._config.nats`'s.

Layout of the stream (``nats_stream``, ``METERSTREAM`` by default):

- ``<stream>.events.<event name>``: one message per event, its wire JSON as
  the body and ``Nats-Msg-Id: <identifier>``, so JetStream drops a repeat of
  an identifier within the stream's duplicate window;
- ``<stream>.dead``: events the relays could not deliver for good, with the
  reason in a ``Meterstream-Reason`` header.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import ssl
import threading
import urllib.parse
from collections.abc import Coroutine
from typing import Any, Optional, TypeVar

from meterstream._config.nats import redact_nats_urls
from meterstream.errors import ConfigurationError

__all__ = [
    "DEAD_REASON_HEADER",
    "DUPLICATE_WINDOW",
    "LoopThread",
    "NatsOptions",
    "NatsUnreachable",
    "connect",
    "ensure_stream",
    "event_subject",
]

T = TypeVar("T")

#: JetStream's duplicate window for the events stream: a retry of a publish
#: within it is dropped by Nats-Msg-Id. Retries of one batch happen within
#: seconds (request_timeout x a few attempts); see docs/fleet.md.
DUPLICATE_WINDOW = 120.0
#: How long the stream keeps events nobody took (relays down for days).
MAX_AGE = 7 * 24 * 3600.0
#: The header a dead letter carries its reason in.
DEAD_REASON_HEADER = "Meterstream-Reason"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,100}\Z")


def event_subject(stream: str, event_name: str) -> str:
    """The subject of an event name: itself when it is a plain token, else hex."""
    if _TOKEN.match(event_name):
        return f"{stream}.events.{event_name}"
    return f"{stream}.events.x{event_name.encode().hex()}"[:255]


class NatsOptions:
    """How to reach NATS: URLs, credentials, TLS; names the setting at fault."""

    def __init__(
        self,
        urls: str,
        *,
        stream: str = "METERSTREAM",
        credentials: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        replicas: int = 1,
        connect_timeout: float = 5.0,
        url_setting: str = "nats_url",
    ) -> None:
        self.urls = urls.split(",")
        self.stream = stream
        self.credentials = credentials
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.replicas = replicas
        self.connect_timeout = connect_timeout
        self.url_setting = url_setting

    @classmethod
    def from_settings(cls, settings: Any) -> NatsOptions:
        if not settings.nats_url:
            raise ConfigurationError("exporter: 'nats' needs nats_url (or METERSTREAM_NATS_URL)")
        return cls(
            settings.nats_url,
            stream=settings.nats_stream,
            credentials=settings.nats_credentials,
            tls_ca=settings.nats_tls_ca,
            tls_cert=settings.nats_tls_cert,
            tls_key=settings.nats_tls_key,
            replicas=settings.nats_replicas,
        )

    def tls_context(self) -> Optional[ssl.SSLContext]:
        if not (self.tls_ca or self.tls_cert):
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            where = "nats_tls_cert" if self.tls_cert else "nats_tls_ca"
            raise ConfigurationError(f"{where}: cannot load: {exc}") from None
        return context


class NatsUnreachable(ConfigurationError):
    """No NATS server of the URL answered at start (as opposed to one that
    refused the credentials, or has no JetStream)."""


async def connect(options: NatsOptions, *, name: str) -> Any:
    """Connect, or raise ConfigurationError naming the setting at fault.

    Once connected, the client reconnects by itself, forever: an outage
    after start is a wait (events stay in the buffer or the stream), not
    an error.
    """
    import nats
    import nats.errors

    kwargs: dict[str, Any] = {
        "servers": options.urls,
        "name": name,
        "connect_timeout": options.connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
    }
    tls = options.tls_context()
    if tls is not None:
        kwargs["tls"] = tls
    if options.credentials:
        kwargs["user_credentials"] = options.credentials
    problems: list[str] = []
    shown = redact_nats_urls(",".join(options.urls))

    async def error_cb(exc: Exception) -> None:
        problems.append(f"{type(exc).__name__}: {exc}".strip(": "))

    async def quiet(*_: Any) -> None:
        return None

    kwargs["error_cb"] = error_cb
    await _probe(options, shown)
    # The first attempt is the check at start: give up after one round of
    # the URLs, then reconnect forever once connected.
    try:
        client = await asyncio.wait_for(
            nats.connect(**{**kwargs, "max_reconnect_attempts": 0}),
            timeout=options.connect_timeout * max(1, len(options.urls)) + 1,
        )
    except Exception as exc:
        seen = [*problems, f"{type(exc).__name__}: {exc}".strip(": ")]
        refused = [p for p in seen if "authoriz" in p.lower() or "authentic" in p.lower()]
        detail = refused[0] if refused else seen[0]
        if refused:
            raise ConfigurationError(
                f"nats_credentials: the NATS server at {shown} refused the "
                f"connection ({detail}); give credentials with nats_credentials or in the URL"
            ) from None
        raise NatsUnreachable(
            f"{options.url_setting}: cannot connect to NATS at {shown} ({detail})"
        ) from None
    # Reconnect forever from now on (the option is read on each disconnect).
    client.options["max_reconnect_attempts"] = -1
    client._error_cb = quiet
    return client


_DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "ws": 80, "wss": 443}


async def _probe(options: NatsOptions, shown: str) -> None:
    """Fail fast when no server even accepts a TCP connection.

    nats-py, told to try once, still waits out its whole connect timeout
    when every server refuses; a refused port answers at once.
    """
    problems = []
    for url in options.urls:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 4222)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port), options.connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}".strip(": "))
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return
    raise NatsUnreachable(
        f"{options.url_setting}: cannot connect to NATS at {shown} ({problems[0]})"
    )


async def ensure_stream(js: Any, options: NatsOptions) -> None:
    """Create the events stream when it is missing (an existing one is kept as is)."""
    import nats.js.errors
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig

    try:
        await js.stream_info(options.stream)
        return
    except nats.js.errors.NotFoundError:
        pass
    config = StreamConfig(
        name=options.stream,
        subjects=[f"{options.stream}.events.>", f"{options.stream}.dead"],
        storage=StorageType.FILE,
        num_replicas=options.replicas,
        duplicate_window=DUPLICATE_WINDOW,
        max_age=MAX_AGE,
        # Full: refuse new events (the apps keep them and retry) rather than
        # drop the oldest unbilled ones.
        discard=DiscardPolicy.NEW,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError as exc:
        # Another process created it meanwhile (same name, maybe other config).
        if getattr(exc, "err_code", None) != 10058:
            raise ConfigurationError(
                f"nats_stream: cannot create stream {options.stream!r}: {exc}"
            ) from None


class LoopThread:
    """An asyncio loop on a private daemon thread, for callers on other threads."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        """Run *coro* on the loop and wait for its result (TimeoutError past *timeout*)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from NATS within {timeout:g} s") from None

    def stop(self, timeout: float = 2.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
