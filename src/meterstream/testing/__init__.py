"""Helpers for testing code that meters usage (used by the pytest plugin).

Example::

    def test_search_is_metered(meter_events):
        with meterstream.customer("cus_1"):
            search("shoes")
        meter_events.assert_recorded("ai_search_api", customer="cus_1", value=1)

With aggregation (``@pytest.mark.meter_events(aggregate={"llm_tokens": "sum"})``),
``meter_events.uses`` lists each use recorded and ``meter_events.events``
the aggregated events they became.

With a parallel run (``@pytest.mark.meter_events(destinations=["stripe",
"metronome"])``: every destination on the memory exporter),
``meter_events.destinations["metronome"]`` shows what that destination
received, with the same assertions.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

from meterstream._client.client import MeterClient
from meterstream._exporters.memory import MemoryExporter

__all__ = ["MeterEvents", "Use"]


@dataclass(frozen=True)
class Use:
    """One use as the application recorded it, before any aggregation.

    Attributes:
        event_name: the meter's event name.
        customer: the customer it was recorded for.
        value: the value as checked (an int, float or ``Decimal``).
        timestamp: when it was recorded (Unix seconds).
        dimensions: its dimensions, or None.
        identifier: the identifier given to ``record()`` / ``meter()``, or
            None for a generated one (and for every aggregated use).
    """

    event_name: str
    customer: str
    value: Any
    timestamp: float
    dimensions: Optional[dict[str, str]] = None
    identifier: Optional[str] = None


class MeterEvents:
    """What a memory-exporter client has recorded, with assertions about it.

    The ``meter_events`` fixture gives one for the default client.

    Args:
        client: a client with ``exporter="memory"``.

    Raises:
        TypeError: the client has another exporter.
    """

    def __init__(self, client: MeterClient) -> None:
        if not isinstance(client.exporter, MemoryExporter):
            raise TypeError("MeterEvents needs a client with exporter='memory'")
        self.client = client
        #: With ``destinations``: what each destination received, by name
        #: (this object itself shows the first destination's); else empty.
        self.destinations: dict[str, MeterEvents] = {}
        self._uses: list[Use] = []
        self._exporter: MemoryExporter = client.exporter
        lanes: Optional[dict[str, MeterClient]] = getattr(client, "destinations", None)
        if lanes:
            self.destinations = {name: MeterEvents(lane) for name, lane in lanes.items()}
            first = next(iter(self.destinations.values()))
            self._exporter = first._exporter
            self._uses = first._uses
            return
        client._watch_uses(self._on_use)

    def _on_use(
        self,
        event_name: str,
        customer: str,
        value: Any,
        timestamp: float,
        dimensions: Optional[dict[str, str]],
        identifier: Optional[str],
    ) -> None:
        dims = dict(dimensions) if dimensions else None
        self._uses.append(Use(event_name, customer, value, timestamp, dims, identifier))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event sent so far, in wire shape, in order (flushes first).

        With aggregation these are the aggregated events: one per customer,
        event name, dimensions and window (flushing closes open windows).
        """
        self.client.flush()
        return list(self._exporter.events)

    @property
    def cancellations(self) -> list[dict[str, str]]:
        """Every cancellation sent so far (``{"event_name", "identifier"}``), in
        order (flushes first). A use cancelled before it was sent is neither
        here nor in :attr:`events`: it never left."""
        self.client.flush()
        return list(self._exporter.cancellations)

    @property
    def uses(self) -> list[Use]:
        """Every use recorded so far, in order, as recorded: before aggregation.

        Without aggregation each use is one event of :attr:`events`.
        """
        return list(self._uses)

    def clear(self) -> None:
        """Forget every event and use recorded so far (flushes first)."""
        self.client.flush()
        for view in (self, *self.destinations.values()):
            view._exporter.clear()
            view._uses.clear()

    def _matching(self, event_name: str, customer: Optional[str]) -> list[dict[str, Any]]:
        """The events of *event_name* (and *customer*) the meter still counts:
        those cancelled are left out, as Stripe's summaries leave them out."""
        customer_key, _ = self.client.settings.payload_keys_for(event_name)
        events = self.events
        cancelled = {(c["event_name"], c["identifier"]) for c in list(self._exporter.cancellations)}
        return [
            event
            for event in events
            if event["event_name"] == event_name
            and (customer is None or event["payload"].get(customer_key) == customer)
            and (event_name, event.get("identifier")) not in cancelled
        ]

    def total(self, event_name: str, customer: Optional[str] = None) -> Decimal:
        """The sum of the values of *event_name* (for *customer*, if given).

        Args:
            event_name: the meter's event name.
            customer: only this customer's events; default every customer.

        Returns:
            The sum, exact (a ``Decimal``); 0 when nothing matched.
        """
        _, value_key = self.client.settings.payload_keys_for(event_name)
        return sum(
            (
                Decimal(event["payload"][value_key])
                for event in self._matching(event_name, customer)
            ),
            Decimal(0),
        )

    def count(self, event_name: str, customer: Optional[str] = None) -> int:
        """How many *event_name* events were recorded.

        Args:
            event_name: the meter's event name.
            customer: only this customer's events; default every customer.

        Returns:
            The number of matching events.
        """
        return len(self._matching(event_name, customer))

    def assert_recorded(
        self,
        event_name: str,
        customer: Optional[str] = None,
        value: Any = None,
        *,
        count: Optional[int] = None,
    ) -> None:
        """Assert that *event_name* was recorded (for *customer*, with *value*).

        With *value*, at least one matching event has that value; with
        *count*, exactly that many matching events were recorded.

        Args:
            event_name: the meter's event name.
            customer: only this customer's events; default any customer.
            value: only events with this value (compared as decimals).
            count: exactly this many matching events; default at least one.

        Raises:
            AssertionError: nothing (or not *count*) matched; the message
                lists what was recorded.
        """
        _, value_key = self.client.settings.payload_keys_for(event_name)
        matching = self._matching(event_name, customer)
        if value is not None:
            wanted = Decimal(str(value))
            matching = [e for e in matching if Decimal(e["payload"][value_key]) == wanted]
        where = f" for customer {customer!r}" if customer is not None else ""
        with_value = f" with value {value!r}" if value is not None else ""
        if count is not None and len(matching) != count:
            raise AssertionError(
                f"expected {count} {event_name!r} events{where}{with_value}, "
                f"got {len(matching)}; recorded: {self._summary()}"
            )
        if count is None and not matching:
            raise AssertionError(
                f"no {event_name!r} event{where}{with_value} was recorded; "
                f"recorded: {self._summary()}"
            )

    def assert_nothing_recorded(self) -> None:
        """Assert that no event at all was recorded.

        Raises:
            AssertionError: something was; the message lists it.
        """
        events = self.events
        if events:
            raise AssertionError(f"expected no meter events, got {len(events)}: {self._summary()}")

    def _summary(self) -> str:
        events = self._exporter.events
        if not events:
            return "nothing"
        shown = [f"{e['event_name']} {e['payload']}" for e in events[:10]]
        more = f" (+{len(events) - 10} more)" if len(events) > 10 else ""
        return "; ".join(shown) + more

    def __len__(self) -> int:
        return len(self.events)
