"""The fleet exporter: each event to a NATS JetStream stream (``exporter="nats"``).

Needs the ``nats`` extra (``pip install 'meterstream[nats]'``, the official
``nats-py`` client). nats-py is asyncio; meterstream's delivery threads call
:meth:`NatsExporter.export`, so the connection lives on one asyncio loop on a
private daemon thread and each batch is submitted to it. An event is settled
only when JetStream acknowledged it (stored, replicated as the stream says);
relays (``meterstream relay``) take it from there to Stripe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, Optional

from meterstream._config.nats import redact_nats_urls
from meterstream._exporters.base import EventBatch, Exporter, RetryableExportError
from meterstream._fleet.nats import (
    LoopThread,
    NatsOptions,
    NatsUnreachable,
    connect,
    ensure_stream,
    event_subject,
)
from meterstream.errors import ConfigurationError, DeliveryError

__all__ = ["NatsExporter"]

log = logging.getLogger("meterstream")

#: Publishes awaiting JetStream's acknowledgement, across every batch in flight.
MAX_PENDING_ACKS = 1024


class NatsExporter(Exporter):
    """Publishes batches to JetStream with ``Nats-Msg-Id`` = the event's identifier.

    Args:
        options: where NATS is and how to authenticate.
        request_timeout: how long a batch waits for every acknowledgement
            before it is retried (:class:`RetryableExportError`).
        max_concurrency: batches the delivery may have in flight at once.
        wait_for_server: when no NATS server answers at start, log a WARNING
            and connect at the first publish (retried like any failed
            publish) instead of raising. A client with ``spool_path`` sets
            it: its events wait in the spool through the outage, so an app
            restarted while NATS is down keeps metering.

    Raises:
        ConfigurationError: the URL is wrong, NATS cannot be reached at start
            (unless *wait_for_server*), or the credentials were refused; the
            message names the setting.
    """

    def __init__(
        self,
        options: NatsOptions,
        *,
        request_timeout: float = 10.0,
        max_concurrency: int = 4,
        wait_for_server: bool = False,
    ) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "exporter: 'nats' needs the nats-py client: pip install 'meterstream[nats]'"
            ) from None
        self._options = options
        self._timeout = request_timeout
        self.max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._published = 0
        self._duplicates = 0
        self._closed = False
        self._nc: Any = None
        self._js: Any = None
        self._connecting: Optional[asyncio.Lock] = None
        self._loop = LoopThread("meterstream-nats")
        try:
            self._loop.run(self._connect(), timeout=options.connect_timeout * 3 + 10)
        except (TimeoutError, NatsUnreachable) as exc:
            shown = redact_nats_urls(",".join(options.urls))
            message = (
                str(exc)
                if isinstance(exc, NatsUnreachable)
                else f"{options.url_setting}: no answer from NATS at {shown} in time"
            )
            if not wait_for_server:
                self.shutdown()
                raise ConfigurationError(message) from None
            log.warning("%s; events wait in the spool and are published once NATS answers", message)
        except BaseException:
            self.shutdown()
            raise

    @classmethod
    def from_settings(cls, settings: Any) -> NatsExporter:
        return cls(
            NatsOptions.from_settings(settings),
            request_timeout=settings.request_timeout,
            max_concurrency=settings.max_concurrent_requests,
            wait_for_server=bool(settings.spool_path),
        )

    async def _connect(self) -> None:
        """Connect and make sure the stream exists; only then is the connection kept."""
        nc = await connect(self._options, name="meterstream-exporter")
        js = nc.jetstream(timeout=self._timeout, publish_async_max_pending=MAX_PENDING_ACKS)
        try:
            await ensure_stream(js, self._options)
        except BaseException as exc:
            await nc.close()
            if isinstance(exc, ConfigurationError) or not isinstance(exc, Exception):
                raise
            raise ConfigurationError(
                f"nats_url: NATS at {redact_nats_urls(','.join(self._options.urls))} has no "
                f"working JetStream "
                f"({type(exc).__name__}: {exc}); start the server with JetStream (-js), or wait "
                "for a cluster to elect its leader"
            ) from None
        self._nc, self._js = nc, js

    def stats(self) -> dict[str, int]:
        """``published``: events JetStream acknowledged; ``duplicates``: of those, repeats."""
        with self._lock:
            return {"published": self._published, "duplicates": self._duplicates}

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        if self._closed:
            raise DeliveryError("the exporter was shut down", reason="shutdown")
        try:
            published, duplicates = self._loop.run(
                self._publish(events), timeout=self._timeout + 5.0
            )
        except (DeliveryError, RetryableExportError):
            raise
        except Exception as exc:
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise RetryableExportError(
                f"publishing to NATS failed: {type(exc).__name__}: {exc}"
            ) from None
        with self._lock:
            self._published += published
            self._duplicates += duplicates

    async def _publish(self, events: EventBatch) -> tuple[int, int]:
        if self._nc is None:  # after a fork, or no server at start: connect now
            # Batches in flight at once share one attempt (made on this loop,
            # so the lock belongs to it), and one connection.
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                if self._nc is None:
                    try:
                        await self._connect()
                    except ConfigurationError as exc:  # still unreachable: retried later
                        raise RetryableExportError(str(exc)) from None
        stream = self._options.stream
        js = self._js
        # publish_async: one shared reply subscription for every ack (a
        # request per event costs a reply inbox each). Its semaphore bounds
        # the acknowledgements in flight across all batches (MAX_PENDING_ACKS);
        # a future past the timeout is cancelled, which frees its slot.
        futures: list[asyncio.Future[Any]] = []
        try:
            for event in events:
                future = await js.publish_async(
                    event_subject(stream, event["event_name"]),
                    json.dumps(event, separators=(",", ":")).encode(),
                    wait_stall=self._timeout,
                    headers={"Nats-Msg-Id": event["identifier"]},
                )
                futures.append(future)
        except Exception as exc:
            for future in futures:
                future.cancel()
            raise RetryableExportError(
                f"publishing to JetStream failed: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from None
        try:
            acks = await asyncio.wait_for(asyncio.gather(*futures), self._timeout)
        except Exception as exc:
            for future in futures:
                future.cancel()
            raise RetryableExportError(
                "JetStream did not acknowledge the batch in time"
                if isinstance(exc, asyncio.TimeoutError)
                else f"JetStream refused the batch: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from None
        results = [bool(ack.duplicate) for ack in acks]
        return len(results), sum(results)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        nc = self._nc
        if nc is not None:
            try:
                self._loop.run(nc.close(), timeout=2.0)
            except Exception:
                pass
        self._loop.stop()

    def after_fork_in_child(self) -> None:
        # The parent's loop thread does not exist here and its socket is the
        # parent's: a new loop, and a new connection at the first export.
        self._loop = LoopThread("meterstream-nats")
        self._nc = None
        self._js = None
        self._connecting = None
        self._lock = threading.Lock()
        self._published = 0
        self._duplicates = 0
