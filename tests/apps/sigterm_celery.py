"""A Celery app on kombu's filesystem transport, for the SIGTERM measurements.

Its task records one event through tests/apps/sigterm_app.py and leaves a
file in CELERY_DONE_DIR, so the test knows the event sits in a buffer.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from tests.apps import sigterm_app

celery_app = Celery("sigterm", broker="filesystem://")
celery_app.conf.broker_transport_options = {
    "data_folder_in": os.environ["CELERY_QUEUE_DIR"],
    "data_folder_out": os.environ["CELERY_QUEUE_DIR"],
    "control_folder": os.environ["CELERY_QUEUE_DIR"],
}
celery_app.conf.worker_hijack_root_logger = False


@celery_app.task(name="sigterm.record")
def record(ident: str) -> None:
    sigterm_app.record("id=" + ident)
    Path(os.environ["CELERY_DONE_DIR"], ident).touch()


if os.environ.get("CELERY_SHUTDOWN_HOOK") == "1":
    # Prefork pool processes end with os._exit(), which skips atexit: Celery's
    # own signal is the place to drain them.
    from celery.signals import worker_process_shutdown

    import meterstream

    @worker_process_shutdown.connect
    def _drain(**_: object) -> None:
        meterstream.shutdown()
