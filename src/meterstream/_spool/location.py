"""``spool_path="auto"``: where a spool lives when the user says only "durable".

A per-user state directory, as each platform expects it:

- Linux and other POSIX: ``$XDG_STATE_HOME``, else ``~/.local/state``
  (the XDG Base Directory specification's place for state that should
  outlive a restart but is not worth a backup);
- macOS: ``~/Library/Application Support``;
- Windows: ``%LOCALAPPDATA%``;

then ``meterstream/<application>/spool.db``. The application is the
``spool_app`` setting when given, else the program's name: the module run with
``python -m`` (its top package), else the stem of ``sys.argv[0]`` (``gunicorn``,
``celery``, ``manage``, ``app``), else ``python``. Processes of one program so
share one spool, and two programs never do.

A location that cannot be written is not an error: :func:`resolve` says why,
and the client records in memory with one WARNING naming the path.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Optional

from meterstream._internal import logger

__all__ = ["AUTO", "application_name", "auto_path", "chosen", "resolve"]

AUTO = "auto"


def application_name(argv: Optional[list[str]] = None) -> str:
    """The name ``spool_path="auto"`` files a program's spool under."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = ""
    if spec is not None and getattr(spec, "name", None):
        name = str(spec.name).split(".")[0]
        if name == "__main__":  # python -m package: the package's name
            name = str(getattr(spec, "parent", "") or "").split(".")[0]
    if not name:
        args = sys.argv if argv is None else argv
        if args and args[0] and args[0] not in ("-c", "-"):
            name = os.path.splitext(os.path.basename(args[0]))[0]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name or "python"


def state_home(platform: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> str:
    """The per-user state directory of *platform* (``sys.platform``'s values)."""
    platform = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    if platform.startswith("win"):
        local = env.get("LOCALAPPDATA")
        return local or os.path.join(home, "AppData", "Local")
    if platform == "darwin":
        return os.path.join(home, "Library", "Application Support")
    xdg = env.get("XDG_STATE_HOME", "")
    # The specification: a relative path is invalid and must be ignored.
    return xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "state")


def auto_path(
    app: Optional[str] = None,
    platform: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> str:
    """The spool file ``spool_path="auto"`` means for *app* (default: :func:`application_name`)."""
    return os.path.join(
        state_home(platform, environ), "meterstream", app or application_name(), "spool.db"
    )


def resolve(app: Optional[str] = None) -> tuple[str, Optional[str]]:
    """The automatic spool path, made ready, and None; or the path and why it cannot be used."""
    path = auto_path(app)
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        return path, f"cannot create {directory!r}: {exc.strerror}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return path, f"{directory!r} is not writable by this process"
    return path, None


def chosen(setting: Optional[str], app: Optional[str]) -> Optional[str]:
    """The spool file a ``spool_path`` setting means: itself, the automatic
    location for ``"auto"``, or None (no spool; for ``"auto"`` where the
    location cannot be written, after one WARNING naming it)."""
    if setting != AUTO:
        return setting or None
    path, problem = resolve(app)
    if problem is None:
        return path
    logger.warning(
        'spool_path="auto": %s; events are kept in memory only (not durable): %s',
        path,
        problem,
    )
    return None
