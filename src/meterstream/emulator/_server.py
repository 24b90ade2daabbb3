"""Running the emulator: uvicorn (httptools parser) in a thread or a process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Callable, Optional

from meterstream.emulator._app import DEFAULT_MAX_BODY, create_app
from meterstream.emulator._faults import FaultConfig
from meterstream.emulator._process import SpawnedEmulator, spawn
from meterstream.emulator._state import EmulatorState
from meterstream.emulator._uvicorn_server import (
    DEFAULT_IDLE_TIMEOUT,
    Server,
    base_url,
    bind_socket,
    uvicorn_config,
)

__all__ = ["Emulator", "SpawnedEmulator"]


class Emulator:
    """A local Stripe stand-in served by uvicorn in a daemon thread.

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read it from ``.port``).
        session_ttl: lifetime of session tokens, in seconds.
        api_keys: secret keys accepted; None accepts ``sk_test_*`` / ``rk_test_*``.
        auto_create_meters: events for unknown event names create sum meters.
        faults: initial :class:`FaultConfig`.
        clock: wall-clock function for the state (expiry, dedupe, windows).
        seed: seed of the random choices of fractional faults.
        check_timestamp_range: 400 for timestamps outside the accepted window
            (False: report them as asynchronous validation errors).
        max_body_bytes: larger request bodies are answered 413.
        idle_timeout: seconds a connection has to deliver a whole request,
            from when it opened or its last answer; then it is closed.
        log_level: uvicorn's log level.

    Example::

        with Emulator(auto_create_meters=True) as emu:
            client = stripe.StripeClient("sk_test_x", base_addresses={
                "api": emu.api_base, "meter_events": emu.stream_base})
            ...
            assert emu.state.total("api_calls", "cus_1").count == 3
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        session_ttl: float = 900.0,
        api_keys: Optional[Iterable[str]] = None,
        auto_create_meters: bool = False,
        faults: Optional[FaultConfig] = None,
        clock: Optional[Callable[[], float]] = None,
        seed: Optional[int] = None,
        check_timestamp_range: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        log_level: str = "warning",
    ) -> None:
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a number of seconds > 0, got {idle_timeout!r}")
        self.host = host
        self._idle_timeout = idle_timeout
        self.state = EmulatorState(
            clock=clock,
            session_ttl=session_ttl,
            api_keys=api_keys,
            auto_create_meters=auto_create_meters,
            faults=faults,
            seed=seed,
            check_timestamp_range=check_timestamp_range,
        )
        self.app = create_app(
            self.state, max_body_bytes=max_body_bytes, refuse_hook=self._refuse_from_admin
        )
        self._requested_port = port
        self._port: Optional[int] = None
        self._log_level = log_level
        self._lock = threading.RLock()
        self._server: Optional[Server] = None
        self._thread: Optional[threading.Thread] = None
        self._refusing = False
        self._timer: Optional[threading.Timer] = None

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (chosen by the system for ``port=0``); RuntimeError before
        :meth:`start`."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: both the API and the stream base."""
        return base_url(self.host, self.port)

    @property
    def api_base(self) -> str:
        """The ``api_base`` setting that points a client here (same as :attr:`url`)."""
        return self.url

    @property
    def stream_base(self) -> str:
        """The ``stream_base`` setting that points a client here (same as :attr:`url`)."""
        return self.url

    @property
    def running(self) -> bool:
        """True while requests are served."""
        return self._server is not None

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Emulator:
        """Listen and serve in a daemon thread; return once requests are answered.

        Args:
            timeout: seconds to wait for the server to answer.

        Returns:
            The emulator itself, so ``emu = Emulator().start()`` works.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: already started, or uvicorn did not start in time.
        """
        with self._lock:
            if self._server is not None or self._refusing:
                raise RuntimeError("the emulator is already started")
            sock = bind_socket(self.host, self._port or self._requested_port)
            self._port = sock.getsockname()[1]
            self._serve(sock, timeout)
        return self

    def _serve(self, sock: socket.socket, timeout: float) -> None:
        server = Server(uvicorn_config(self.app, self._log_level, self._idle_timeout), self.app)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"meterstream-emulator-{self._port}",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError("the emulator's server did not start")
            pause.wait(0.002)
        self._server, self._thread = server, thread

    def _halt(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        self.app.release_hung(closing=True)
        server.request_exit()
        thread.join(timeout=10.0)
        if thread.is_alive():  # pragma: no cover - a stuck shutdown
            server.force_exit = True
            thread.join(timeout=5.0)

    def add_webhook(self, url: str, secret: str) -> str:
        """POST the asynchronous validation's reports to *url*, signed as Stripe signs them.

        Args:
            url: the webhook endpoint, e.g. your app's ``/stripe/webhook``.
            secret: the ``whsec_...`` secret the endpoint verifies with.

        Returns:
            The endpoint's id (``we_...``).
        """
        return self.state.webhooks.add(url, secret)["id"]

    def create_meter(self, event_name: str, formula: str = "sum") -> str:
        """Create a meter for *event_name*, as Stripe's dashboard or
        ``POST /v1/billing/meters`` does (display name = event name).

        Args:
            event_name: the event name its events carry.
            formula: ``sum``, ``count`` or ``last``.

        Returns:
            The meter's id (``mtr_...``).
        """
        meter = self.state.create_meter(
            {
                "display_name": event_name,
                "event_name": event_name,
                "default_aggregation[formula]": formula,
            }
        )
        return str(meter["id"])

    def stop(self) -> None:
        """Stop serving (hung requests are answered first). Safe to call twice."""
        self.state.webhooks.stop()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._refusing = False
            self._halt()

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    # -- faults and state ----------------------------------------------------

    def set_faults(self, **changes: Any) -> FaultConfig:
        """Change faults at run time, e.g. ``set_faults(fail_500=1.0)``.

        Args:
            **changes: :class:`FaultConfig` fields and their new values.

        Returns:
            The faults now in force.
        """
        return self.state.set_faults(**changes)

    @property
    def faults(self) -> FaultConfig:
        """The faults now in force."""
        return self.state.faults

    def reset(self) -> None:
        """Forget events, meters and counters; faults back to their start values."""
        self.state.reset()

    def refuse_connections(self, refuse: bool = True, *, seconds: Optional[float] = None) -> None:
        """Stop listening (connections are refused) or listen again on the same port.

        State is kept. With ``seconds``, listening resumes by itself after that long.

        Args:
            refuse: True to stop listening, False to listen again.
            seconds: listen again by itself after this long.

        Raises:
            RuntimeError: the emulator was never started.
        """
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if refuse:
                if self._server is None and not self._refusing:
                    raise RuntimeError("the emulator is not started")
                self._halt()
                self._refusing = True
                if seconds is not None:
                    timer = threading.Timer(seconds, self.refuse_connections, args=(False,))
                    timer.daemon = True
                    self._timer = timer
                    timer.start()
            elif self._refusing:
                self._refusing = False
                self._serve(bind_socket(self.host, self.port), 10.0)

    @property
    def refusing(self) -> bool:
        """True while connections are refused (:meth:`refuse_connections`)."""
        return self._refusing

    def _refuse_from_admin(self, seconds: float) -> None:
        # Called on the server's own thread: stopping it must happen elsewhere.
        threading.Thread(
            target=self.refuse_connections,
            args=(True,),
            kwargs={"seconds": seconds},
            name="meterstream-emulator-refuse",
            daemon=True,
        ).start()

    # -- a separate process --------------------------------------------------

    @staticmethod
    def spawn(
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        session_ttl: float = 900.0,
        api_keys: Optional[Iterable[str]] = None,
        auto_create_meters: bool = False,
        faults: Optional[FaultConfig] = None,
        seed: Optional[int] = None,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 20.0,
    ) -> SpawnedEmulator:
        """Run ``python -m meterstream.emulator`` in a child process.

        Args:
            host: the address to listen on.
            port: the port; 0 lets the system choose.
            session_ttl: lifetime of a session token, in seconds.
            api_keys: secret keys accepted; None accepts ``sk_test_*`` / ``rk_test_*``.
            auto_create_meters: create a meter for an unknown event name.
            faults: faults in force from the start.
            seed: seed of the fault randomness, for repeatable runs.
            extra_args: more command-line arguments for the child.
            startup_timeout: seconds to wait for the child to answer.

        Returns:
            A :class:`SpawnedEmulator` with ``url`` and ``stop()``; it drives
            faults and reads state over the admin HTTP API.
        """
        return spawn(
            host=host,
            port=port,
            session_ttl=session_ttl,
            api_keys=api_keys,
            auto_create_meters=auto_create_meters,
            faults=faults,
            seed=seed,
            extra_args=extra_args,
            startup_timeout=startup_timeout,
        )
