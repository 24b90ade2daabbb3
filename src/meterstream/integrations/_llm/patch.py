"""How the token meter sees calls: ``_post`` replaced on resource instances, streams tapped.

Both SDKs (Stainless-generated) send every request through ``resource._post``,
an instance attribute bound to ``client.post``; replacing it on the client's
resource objects catches every method and helper that sends a billable
request. A stream's events go through a :class:`StreamTap` by replacing the
stream instance's ``_iterator`` and ``close``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Callable, Optional, TypeVar

from meterstream._internal import report_internal_error
from meterstream.errors import MissingCustomerError
from meterstream.integrations._llm.meter import Counts, TokenMeter, field_of

__all__ = ["StreamTap", "instrument_resources", "tap_stream"]

T = TypeVar("T")

#: The header the SDKs add for ``with_raw_response`` / ``with_streaming_response``.
_RAW_HEADER = "X-Stainless-Raw-Response"


class StreamTap:
    """Watches one stream's events; records its tokens once.

    A provider's subclass reads usage in :meth:`see` and either records as
    soon as the final usage arrives or leaves it to :meth:`finish`, which
    runs on the first of: the stream's end, an error inside it, ``close()``,
    or the generator's finalization.
    """

    __slots__ = ("_done", "_lock", "customer", "meter", "model")

    def __init__(self, meter: TokenMeter, customer: Optional[str], model: Any) -> None:
        self.meter = meter
        self.customer = customer
        self.model = model
        self._done = False
        self._lock = threading.Lock()

    def see(self, item: Any) -> bool:
        """Look at one event; False hides it from the caller."""
        raise NotImplementedError

    def counts(self) -> Optional[Counts]:
        """The tokens reported so far, or None when none were."""
        raise NotImplementedError

    def finish(self) -> None:
        """Record what was reported, the first time only. Never raises."""
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            counts = self.counts()
        except Exception as exc:
            report_internal_error(exc)
            self.meter.failed("internal", exc)
            return
        if counts:
            self.meter.record(self.customer, self.model, counts)


def _tap_sync(iterator: Iterator[Any], tap: StreamTap) -> Iterator[Any]:
    see = tap.see
    try:
        for item in iterator:
            if see(item):
                yield item
    finally:
        tap.finish()


async def _tap_async(iterator: AsyncIterator[Any], tap: StreamTap) -> AsyncIterator[Any]:
    see = tap.see
    try:
        async for item in iterator:
            if see(item):
                yield item
    finally:
        tap.finish()


def tap_stream(stream: T, tap: StreamTap, *, is_async: bool) -> T:
    """Route *stream*'s events through *tap*; the same object is returned.

    The SDKs' ``Stream`` and ``AsyncStream`` iterate ``self._iterator`` and
    close through ``self.close()``, so both are replaced on the instance.
    """
    s: Any = stream
    iterator = s._iterator
    if is_async:
        s._iterator = _tap_async(iterator, tap)
        for name in ("close", "aclose"):
            original = getattr(s, name, None)
            if original is not None:
                s.__dict__[name] = _async_closer(original, tap)
    else:
        s._iterator = _tap_sync(iterator, tap)
        s.__dict__["close"] = _sync_closer(s.close, tap)
    return stream


def _sync_closer(original: Callable[[], Any], tap: StreamTap) -> Callable[[], Any]:
    def close() -> Any:
        tap.finish()
        return original()

    return close


def _async_closer(original: Callable[[], Any], tap: StreamTap) -> Callable[[], Any]:
    async def close() -> Any:
        tap.finish()
        return await original()

    return close


#: ``begin(path, kwargs) -> (kwargs to send, finish(result) -> result)`` or None: not billable.
Begin = Callable[[str, dict[str, Any]], Optional[tuple[dict[str, Any], Callable[[Any], Any]]]]

_MARK = "__meterstream_tokens__"


def _is_raw(kwargs: Mapping[str, Any]) -> bool:
    options = kwargs.get("options")
    headers = field_of(options, "headers")
    return isinstance(headers, Mapping) and _RAW_HEADER in headers


def _sync_post(post: Callable[..., Any], begin: Begin, meter: TokenMeter) -> Callable[..., Any]:
    def _post(*args: Any, **kwargs: Any) -> Any:
        path = args[0] if args else kwargs.get("path")
        started = None
        if type(path) is str and not _is_raw(kwargs):
            try:
                started = begin(path, kwargs)
            except MissingCustomerError:
                raise  # asked for by on_missing_customer="raise", before any token is spent
            except Exception as exc:
                report_internal_error(exc)
                meter.failed("internal", exc)
        if started is None:
            return post(*args, **kwargs)
        result = post(*args, **started[0])
        try:
            return started[1](result)
        except Exception as exc:
            report_internal_error(exc)
            meter.failed("internal", exc)
            return result

    setattr(_post, _MARK, meter)
    return _post


def _async_post(post: Callable[..., Any], begin: Begin, meter: TokenMeter) -> Callable[..., Any]:
    async def _post(*args: Any, **kwargs: Any) -> Any:
        path = args[0] if args else kwargs.get("path")
        started = None
        if type(path) is str and not _is_raw(kwargs):
            try:
                started = begin(path, kwargs)
            except MissingCustomerError:
                raise
            except Exception as exc:
                report_internal_error(exc)
                meter.failed("internal", exc)
        if started is None:
            return await post(*args, **kwargs)
        result = await post(*args, **started[0])
        try:
            return started[1](result)
        except Exception as exc:
            report_internal_error(exc)
            meter.failed("internal", exc)
            return result

    setattr(_post, _MARK, meter)
    return _post


def instrument_resources(
    client: Any,
    paths: tuple[tuple[str, ...], ...],
    begin_for: Callable[[bool], Begin],
    meter: TokenMeter,
    is_async: bool,
) -> None:
    """Replace ``_post`` on each resource of *client* at the attribute *paths*.

    A resource already instrumented is left alone (instrumenting twice bills
    once); a path the SDK version does not have is skipped. The client's
    ``with_options`` / ``copy`` are wrapped so the copies they make are
    instrumented the same way.
    """
    import warnings

    begin = begin_for(is_async)
    for path in paths:
        resource: Any = client
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated namespaces (beta.*) warn
                for name in path:
                    resource = getattr(resource, name)
        except Exception:
            continue
        post = resource.__dict__.get("_post")
        if post is None or getattr(post, _MARK, None) is not None:
            continue
        wrap = _async_post if is_async else _sync_post
        resource._post = wrap(post, begin, meter)
    for name in ("copy", "with_options"):
        original = getattr(client, name, None)
        if original is not None and getattr(original, _MARK, None) is None:
            client.__dict__[name] = _copier(original, paths, begin_for, meter, is_async)


def _copier(
    original: Callable[..., Any],
    paths: tuple[tuple[str, ...], ...],
    begin_for: Callable[[bool], Begin],
    meter: TokenMeter,
    is_async: bool,
) -> Callable[..., Any]:
    def copy(*args: Any, **kwargs: Any) -> Any:
        new = original(*args, **kwargs)
        try:
            instrument_resources(new, paths, begin_for, meter, is_async)
        except Exception as exc:
            report_internal_error(exc)
            meter.failed("internal", exc)
        return new

    setattr(copy, _MARK, meter)
    return copy
