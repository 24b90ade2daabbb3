"""Flask: the ``Meterstream`` extension.

Install with ``pip install 'meterstream[flask]'``, then::

    from meterstream.integrations.flask import Meterstream, header

    app = Flask(__name__)
    app.config["METERSTREAM"] = {
        "api_key": os.environ["STRIPE_API_KEY"],
        "customer_resolver": header("X-Customer-Id"),   # see the trust caveat
        "request_event": "api_requests",                # optional
    }
    Meterstream(app)          # or meterstream_ext.init_app(app) in a factory

Resolvers take the :class:`flask.Request`. See ``docs/integrations/flask.md``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

try:
    from flask import Flask, Response, current_app, g, request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "meterstream.integrations.flask needs Flask: pip install 'meterstream[flask]'"
    ) from exc

from meterstream._client.client import MeterClient
from meterstream._default import configure
from meterstream._record.context import current_customer
from meterstream._record.context import customer as customer_block
from meterstream.errors import ConfigurationError
from meterstream.integrations._common import (
    OPTION_NAMES,
    RequestMeter,
    Resolver,
    iterate_as,
    parse_options,
    split_settings,
)
from meterstream.integrations._common import header as header
from meterstream.integrations._common import user_attribute as _user_attribute
from meterstream.integrations._flask_webhook import stripe_webhook, stripe_webhook_view

__all__ = ["Meterstream", "header", "stripe_webhook", "stripe_webhook_view", "user_attribute"]

CONFIG_KEY = "METERSTREAM"
EXTENSION = "meterstream"
_G_KEY = "_meterstream_request"


def user_attribute(path: str, *, user: Optional[Callable[[], Any]] = None) -> Resolver:
    """A resolver reading the customer id at *path* on the current user.

    Args:
        path: a dotted attribute path, e.g. ``"account.stripe_customer_id"``.
        user: returns the current user; default ``flask.g.user`` (set it in a
            ``before_request`` registered before :class:`Meterstream`). With
            Flask-Login: ``user=lambda: flask_login.current_user``.

    Anonymous users (``is_authenticated`` false), and a None along the path,
    mean no customer.

    Returns:
        The resolver.
    """
    get_user = user if user is not None else (lambda: g.get("user"))
    return _user_attribute(path, lambda request: get_user())


class _RequestState:
    __slots__ = ("block", "customer", "streamed")

    def __init__(self, customer: Optional[str], block: Optional[customer_block]) -> None:
        self.customer = customer
        self.block = block
        self.streamed = False


class Meterstream:
    """The Flask extension: a customer per request, configuration from ``app.config``.

    ``init_app`` reads ``app.config["METERSTREAM"]``: the core settings in it
    configure the default client (``meterstream.configure``); the options
    ``customer_resolver``, ``request_event``, ``request_event_statuses``,
    ``flush_each_request`` and ``flush_timeout`` drive the request hooks.
    Keyword arguments given here win over the config.

    A resolver that raises is logged (at most once a minute), counted in
    :attr:`resolver_errors`, and the request goes on without a customer.

    Args:
        app: the app, or None to call :meth:`init_app` later.
        client: record and flush with this client instead of the default one
            (the config's core settings are then not applied).
        **options: integration options, as in the config.

    Raises:
        ConfigurationError: a wrong setting or option (at ``init_app``).
    """

    def __init__(
        self, app: Optional[Flask] = None, *, client: Optional[MeterClient] = None, **options: Any
    ) -> None:
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise ConfigurationError(
                f"Meterstream: unknown option {unknown[0]!r}; options are {', '.join(OPTION_NAMES)}"
            )
        self._client = client
        self._options = options
        self._meters: list[RequestMeter] = []
        if app is not None:
            self.init_app(app)

    @property
    def resolver_errors(self) -> int:
        """How many times the customer resolver failed, over every app."""
        return sum(meter.resolver_errors for meter in self._meters)

    def init_app(self, app: Flask) -> None:
        """Configure meterstream from *app*'s config and install the request hooks.

        Args:
            app: the Flask application.

        Raises:
            ConfigurationError: a setting or option in ``app.config["METERSTREAM"]``
                is wrong.
        """
        core, raw_options = split_settings(app.config.get(CONFIG_KEY), CONFIG_KEY)
        raw_options.update(self._options)
        meter = RequestMeter(parse_options(raw_options, CONFIG_KEY), self._client)
        if core and self._client is None:
            configure(**core)
        self._meters.append(meter)
        app.extensions[EXTENSION] = meter
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)

    @staticmethod
    def _meter() -> RequestMeter:
        meter: RequestMeter = current_app.extensions[EXTENSION]
        return meter

    def _before_request(self) -> None:
        meter = self._meter()
        if meter.resolver is None:
            setattr(g, _G_KEY, _RequestState(current_customer(), None))
            return
        customer = meter.resolve(request._get_current_object())  # type: ignore[attr-defined]
        block = customer_block(customer)
        # Exited in teardown_request, which Flask runs in this same context.
        block.__enter__()
        setattr(g, _G_KEY, _RequestState(customer, block))

    def _after_request(self, response: Response) -> Response:
        state: Optional[_RequestState] = g.get(_G_KEY)
        if state is None:  # a before_request hook answered before ours ran
            return response
        meter = self._meter()
        if response.is_streamed and (meter.resolver is not None or meter.after_response):
            # The body is made after this request's teardown: meter it, with
            # the customer current, as it is produced.
            state.streamed = True
            customer, status = state.customer, response.status_code

            def finish() -> None:
                if meter.after_response:
                    meter.finish(customer, status)

            response.response = iterate_as(customer, response.response, finish)
        elif meter.request_event is not None:
            meter.record_request(state.customer, response.status_code)
        return response

    def _teardown_request(self, exc: Optional[BaseException]) -> None:
        state: Optional[_RequestState] = g.pop(_G_KEY, None)
        if state is None:
            return
        if state.block is not None:
            state.block.__exit__(None, None, None)
        meter = self._meter()
        if meter.flush_each_request and not state.streamed:
            meter.flush()
