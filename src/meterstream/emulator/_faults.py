"""Fault injection: what goes wrong, and how often."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from meterstream.emulator._errors import StripeError, bad_request

__all__ = [
    "ADJUSTMENTS",
    "SESSION",
    "STREAM",
    "FaultConfig",
    "FaultInjector",
    "InjectedFault",
    "fault_headers",
    "parse_fault_changes",
]

Headers = list[tuple[bytes, bytes]]
#: The values of ``FaultConfig.side``.
FAULT_SIDES = ("both", "stripe", "metronome")


@dataclasses.dataclass
class FaultConfig:
    """What the emulator does wrong on purpose.

    Faults apply to ``meter_event_stream`` requests, and to
    ``meter_event_session`` requests too when ``apply_to_sessions`` is set.

    Attributes:
        fail_500: fraction (0..1) of requests answered 500 ``api_error``.
        fail_429: fraction (0..1) of requests answered 429 ``rate_limit``.
        latency_ms: delay added before answering.
        rps_limit: requests per second allowed (a one-second window); past it,
            429 ``rate_limit``. 0 means no limit.
        expire_next: the next N stream requests answer 401
            ``temporary_session_expired`` whatever their token.
        hang: requests wait, unanswered, until hang is turned off or the
            server stops.
        should_retry: when not None, injected errors carry
            ``Stripe-Should-Retry: true|false``.
        retry_after: when not None, injected 429 and 500 answers carry
            ``Retry-After`` with this many seconds.
        apply_to_sessions: apply the faults to session creation as well.
        reject_identifier: a stream request holding an event with this
            identifier is refused 400 ``parameter_invalid``, as Stripe refuses
            a request with one bad event: nothing in it is stored.
        reject_names_event: the 400 above names the event in ``param``
            (``events[i]``), as Stripe does; False: it names none.
        redirect_status: when not 0, requests are answered with this 3xx
            status and ``Location: redirect_location``, as a misconfigured
            proxy or base URL would.
        redirect_location: the ``Location`` of those answers.
        session_trickle_ms: session answers are sent a byte at a time, this
            many milliseconds apart (the head at once).
        session_pad_bytes: session answers carry this many bytes more, in an
            extra ``padding`` field (an oversized answer).
        side: which API the faults apply to: ``both`` (Stripe's meter event
            stream and Metronome's ``/v1/ingest``), ``stripe`` or ``metronome``
            alone (an outage at one destination of a parallel run).
        adjustment_lag: seconds (on the emulator's clock) a meter event
            adjustment stays ``pending`` after it was accepted: until then the
            summaries and totals still count the cancelled event, as Stripe's
            may while it processes the adjustment.
    """

    fail_500: float = 0.0
    fail_429: float = 0.0
    latency_ms: float = 0.0
    rps_limit: float = 0.0
    expire_next: int = 0
    hang: bool = False
    should_retry: Optional[bool] = None
    retry_after: Optional[float] = None
    apply_to_sessions: bool = False
    reject_identifier: Optional[str] = None
    reject_names_event: bool = True
    redirect_status: int = 0
    redirect_location: str = "http://127.0.0.1:9/elsewhere"
    session_trickle_ms: float = 0.0
    session_pad_bytes: int = 0
    side: str = "both"
    adjustment_lag: float = 0.0

    def __post_init__(self) -> None:
        if self.side not in FAULT_SIDES:
            raise ValueError(f"side must be one of {', '.join(FAULT_SIDES)}, got {self.side!r}")
        for name in ("fail_500", "fail_429"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")
        if self.redirect_status and not 300 <= self.redirect_status <= 399:
            raise ValueError(f"redirect_status must be 0 or a 3xx, got {self.redirect_status!r}")
        if self.session_pad_bytes < 0:
            raise ValueError(f"session_pad_bytes must be >= 0, got {self.session_pad_bytes!r}")
        for name in ("latency_ms", "rps_limit", "session_trickle_ms", "adjustment_lag"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.expire_next < 0:
            raise ValueError(f"expire_next must be >= 0, got {self.expire_next!r}")
        if self.retry_after is not None and not (
            self.retry_after >= 0 and math.isfinite(self.retry_after)
        ):
            raise ValueError(f"retry_after must be a finite number >= 0, got {self.retry_after!r}")

    def applies_to(self, side: str) -> bool:
        """Whether the faults apply to one API.

        Args:
            side: ``stripe`` or ``metronome``.

        Returns:
            True when :attr:`side` is ``both`` or *side*.
        """
        return self.side == "both" or self.side == side

    @property
    def active(self) -> bool:
        """True when any per-request fault is on."""
        return bool(
            self.fail_500
            or self.fail_429
            or self.latency_ms
            or self.rps_limit
            or self.expire_next
            or self.hang
            or self.redirect_status
        )

    def to_dict(self) -> dict[str, Any]:
        """The faults as the admin API shows them.

        Returns:
            ``{field: value}`` for every fault.
        """
        return dataclasses.asdict(self)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "fail_500": (int, float),
    "fail_429": (int, float),
    "latency_ms": (int, float),
    "rps_limit": (int, float),
    "expire_next": (int,),
    "hang": (bool,),
    "should_retry": (bool, type(None)),
    "retry_after": (int, float, type(None)),
    "apply_to_sessions": (bool,),
    "reject_identifier": (str, type(None)),
    "reject_names_event": (bool,),
    "redirect_status": (int,),
    "redirect_location": (str,),
    "session_trickle_ms": (int, float),
    "side": (str,),
    "session_pad_bytes": (int,),
    "adjustment_lag": (int, float),
}


def parse_fault_changes(changes: Mapping[str, object]) -> dict[str, Any]:
    """Check changes given as JSON (admin API) or keywords; raise a 400 on nonsense."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        types = _FIELD_TYPES.get(key)
        if types is None:
            raise bad_request(
                f"{key}: unknown fault (known: {', '.join(sorted(_FIELD_TYPES))})",
                code="parameter_unknown",
                param=key,
            )
        ok = False if isinstance(value, bool) and bool not in types else isinstance(value, types)
        if not ok:
            names = "/".join("null" if t is type(None) else t.__name__ for t in types)
            raise bad_request(f"{key}: must be {names}", param=key)
        if isinstance(value, int) and not isinstance(value, bool) and float in types:
            value = float(value)
        out[key] = value
    return out


class InjectedFault:
    """An error answer decided by the fault settings."""

    __slots__ = ("status", "type", "code", "message", "headers")

    def __init__(self, status: int, type: str, code: str, message: str, headers: Headers) -> None:
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.headers = headers

    def as_error(self) -> StripeError:
        return StripeError(self.status, self.type, self.message, code=self.code)


def fault_headers(config: FaultConfig, status: int) -> Headers:
    headers: Headers = []
    if config.should_retry is not None:
        headers.append((b"stripe-should-retry", b"true" if config.should_retry else b"false"))
    if config.retry_after is not None and status in (429, 500):
        # HTTP's Retry-After is whole seconds; a fraction is sent as given
        # (non-standard) so tests of a client's waiting can stay fast.
        seconds = config.retry_after
        text = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
        headers.append((b"retry-after", text.encode()))
    return headers


SESSION = "meter_event_session"
STREAM = "meter_event_stream"
ADJUSTMENTS = "meter_event_adjustments"


class FaultInjector:
    """Holds the fault settings and decides, request by request, what fails.

    Args:
        initial: the settings at start; ``reset()`` returns to them.
        clock: Unix seconds, for the requests-per-second window.
        seed: seed of the random choices of fractional faults.
    """

    def __init__(
        self,
        initial: Optional[FaultConfig],
        *,
        clock: Callable[[], float],
        seed: Optional[int] = None,
    ) -> None:
        self._initial = dataclasses.replace(initial) if initial else FaultConfig()
        self.live = dataclasses.replace(self._initial)
        self.listeners: list[Callable[[FaultConfig], None]] = []
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._window = -1
        self._count = 0
        #: Requests answered with an injected fault: (endpoint, status, code) -> n.
        self._refused: dict[tuple[str, int, str], int] = {}

    @property
    def config(self) -> FaultConfig:
        """A copy of the current settings."""
        return dataclasses.replace(self.live)

    def _notify(self) -> None:
        config = self.config
        for listener in list(self.listeners):
            listener(config)

    def update(self, changes: Mapping[str, object]) -> FaultConfig:
        """Apply changes; raise a 400 ``StripeError`` for unknown faults or bad values."""
        parsed = parse_fault_changes(changes)
        try:
            with self._lock:
                self.live = dataclasses.replace(self.live, **parsed)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        self._notify()
        return self.config

    def reset(self) -> None:
        with self._lock:
            self.live = dataclasses.replace(self._initial)
            self._window, self._count = -1, 0
            self._refused.clear()
        self._notify()

    def refusals(self) -> list[dict[str, Any]]:
        """The requests answered with an injected fault since the start (or the last
        reset): ``[{endpoint, status, code, count}]``."""
        with self._lock:
            counted = sorted(self._refused.items())
        return [
            {"endpoint": e, "status": status, "code": code, "count": n}
            for (e, status, code), n in counted
        ]

    def _count_refused(self, endpoint: str, status: int, code: str) -> None:
        with self._lock:
            key = (endpoint, status, code)
            self._refused[key] = self._refused.get(key, 0) + 1

    def decide(self, endpoint: str) -> Optional[InjectedFault]:
        """The error to answer instead of serving ``endpoint``, if any (counted)."""
        fault = self._decide(endpoint)
        if fault is not None:
            self._count_refused(endpoint, fault.status, fault.code)
        return fault

    def _decide(self, endpoint: str) -> Optional[InjectedFault]:
        f = self.live
        if not f.active or (endpoint == SESSION and not f.apply_to_sessions):
            return None
        if f.redirect_status:
            return InjectedFault(
                f.redirect_status,
                "invalid_request_error",
                "redirected",
                "Moved (injected).",
                [(b"location", f.redirect_location.encode("latin-1", "replace"))],
            )
        with self._lock:
            if f.rps_limit:
                window = int(self._clock())
                if window != self._window:
                    self._window, self._count = window, 0
                self._count += 1
                if self._count > f.rps_limit:
                    return InjectedFault(
                        429,
                        "rate_limit",
                        "rate_limit",
                        f"Too many requests: the limit is {f.rps_limit:g} per second.",
                        fault_headers(f, 429),
                    )
            if endpoint == STREAM and f.expire_next > 0:
                f.expire_next -= 1
                return InjectedFault(
                    401,
                    "temporary_session_expired",
                    "billing_meter_event_session_expired",
                    "The meter event session has expired (injected). Create a new session.",
                    fault_headers(f, 401),
                )
            if f.fail_500 and self._rng.random() < f.fail_500:
                return InjectedFault(
                    500,
                    "api_error",
                    "internal_error",
                    "An unexpected error occurred (injected).",
                    fault_headers(f, 500),
                )
            if f.fail_429 and self._rng.random() < f.fail_429:
                return InjectedFault(
                    429,
                    "rate_limit",
                    "rate_limit",
                    "Too many requests hit the API too quickly (injected).",
                    fault_headers(f, 429),
                )
        return None

    def refused_event(self, body: Any) -> Optional[StripeError]:
        """The 400 for a stream request holding the ``reject_identifier`` event, if any."""
        wanted = self.live.reject_identifier
        if wanted is None or not isinstance(body, dict) or not self.live.applies_to("stripe"):
            return None
        events = body.get("events")
        if not isinstance(events, list):
            return None
        for i, event in enumerate(events):
            if isinstance(event, dict) and event.get("identifier") == wanted:
                param = f"events[{i}]" if self.live.reject_names_event else None
                self._count_refused(STREAM, 400, "parameter_invalid")
                return bad_request(
                    f"events[{i}]: this event was refused (injected).",
                    code="parameter_invalid",
                    param=param,
                )
        return None
