"""Stripe's asynchronous error reports as one client takes them in.

Stripe validates meter events after it accepted them, and reports the ones
in error by webhook (see :mod:`meterstream._truth.webhooks`). A client counts
them by error code for ``stats()`` (under the public ``rejected_by_stripe``
keys), moves the named events to its spool's dead letters, and hands the
report to ``on_validation_error``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable, Optional

from meterstream._internal import RateLimitedLog, report_internal_error

if TYPE_CHECKING:
    from meterstream._spool.spool import Spool
    from meterstream._truth.webhooks import ValidationReport

__all__ = ["ErrorReports"]


class ErrorReports:
    """The error reports one client has taken in, counted by Stripe's error code."""

    def __init__(self) -> None:
        self._by_code: dict[str, int] = {}
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """``rejected_by_stripe`` and ``rejected_by_stripe_<code>``, for ``stats()``."""
        with self._lock:
            by_code = dict(self._by_code)
        out = {"rejected_by_stripe": sum(by_code.values())}
        out.update({f"rejected_by_stripe_{code}": n for code, n in sorted(by_code.items())})
        return out

    def take(
        self,
        report: ValidationReport,
        spool: Optional[Spool],
        callback: Optional[Callable[[ValidationReport], object]],
        log: RateLimitedLog,
    ) -> None:
        """Count *report*, bury the events it names in *spool*, call *callback*.

        Never raises: a failing spool or callback is logged.
        """
        with self._lock:
            for error in report.errors:
                self._by_code[error.code] = self._by_code.get(error.code, 0) + error.error_count
        log.log(
            logging.WARNING,
            "reported_by_stripe",
            "Stripe reported %d metered event(s) in error after accepting them (%s, event %s)",
            report.error_count,
            ", ".join(e.code for e in report.errors) or "no code",
            report.event_id,
        )
        if spool is not None:
            _bury(report, spool, log)
        if callback is not None:
            try:
                callback(report)
            except Exception as exc:
                log.log(
                    logging.ERROR,
                    "on_validation_error",
                    "on_validation_error raised %r; the report is counted all the same",
                    exc,
                )

    def after_fork_in_child(self) -> None:
        """A fresh lock: the parent's may have been held at the fork."""
        self._lock = threading.Lock()


def _bury(report: ValidationReport, spool: Spool, log: RateLimitedLog) -> None:
    """Move the events *report* names to the spool's dead letters, with Stripe's reason."""
    for error in report.errors:
        if not error.identifiers:
            continue
        try:
            moved = spool.bury_identifiers(
                error.identifiers, "rejected_by_stripe", error.code, error.message
            )
        except Exception as exc:
            report_internal_error(exc)
            log.log(logging.ERROR, "bury", "moving reported events to dead letters failed: %r", exc)
            continue
        if moved < len(error.identifiers):
            log.log(
                logging.WARNING,
                "unknown_identifiers",
                "%d identifier(s) Stripe reported (%s) are not in the spool",
                len(error.identifiers) - moved,
                error.code,
            )
