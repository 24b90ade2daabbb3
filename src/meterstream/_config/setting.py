"""One setting's declaration and how its value is read.

:class:`Setting` says everything about one setting (parser, default,
environment variables, the line of the reference, how a repr hides it);
:func:`setting` declares a field of ``Settings`` as one, and
:func:`read_setting` reads its value: the keyword, else the environment,
else the default. The declarations themselves are in ``_config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Final, Optional

from meterstream.errors import ConfigurationError, safe_type_name

__all__ = ["DECLARED", "UNSET", "Setting", "read_setting", "redact_key", "setting"]


class _Unset:
    """The type of :data:`UNSET`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"  # copies and pickles stay the one sentinel


#: "Not given", where that differs from None. As a keyword value it means the
#: same as leaving the keyword out (None does too, so that a settings dict
#: may hold None for "use the environment or the default"). As a declared
#: default it means "worked out by :meth:`Settings.resolve` from the others".
UNSET: Final[Any] = _Unset()


def redact_key(key: str) -> str:
    """Show what kind of key this is (``sk_test_``...) and nothing of its secret part."""
    prefix, sep, _ = key.rpartition("_")
    return f"{prefix}{sep}***" if sep and len(prefix) <= 12 else "***"


@dataclasses.dataclass(frozen=True)
class Setting:
    """The declaration of one setting; see :data:`SETTINGS`."""

    #: The keyword of ``configure()`` / ``MeterClient()``.
    name: str
    #: ``parse(raw, where)``: the typed value, or ConfigurationError naming *where*.
    parse: Callable[[Any, str], Any]
    #: The value when nothing is given; UNSET: worked out from the other settings.
    default: Any
    #: One line for the configuration reference (Markdown).
    doc: str
    #: The default as the reference shows it (Markdown).
    shown_default: str
    #: The environment variables read, in order: ``METERSTREAM_<NAME>`` first;
    #: the others are read while the value is still None.
    env: tuple[str, ...]
    #: How a repr shows a value that must not leak (a key, a password).
    redact: Optional[Callable[[str], str]] = None


def setting(
    parse: Callable[[Any, str], Any],
    default: Any,
    doc: str,
    *,
    shown: Optional[str] = None,
    fallback_env: tuple[str, ...] = (),
    redact: Optional[Callable[[str], str]] = None,
) -> Any:
    """Declare a field of :class:`Settings` as a setting (see :class:`Setting`).

    Args:
        parse: ``parse(raw, where)`` -> the typed value (see ``_parsing``).
        default: the value when nothing is given; UNSET: worked out in
            :meth:`Settings.resolve` from the other settings.
        doc: the one line of the configuration reference (Markdown, no ``|``).
        shown: the default as the reference shows it, when the value itself
            does not say it (``"auto"``, ``"from HTTPS_PROXY ..."``).
        fallback_env: variables read after ``METERSTREAM_<NAME>`` while the
            value is still None (``STRIPE_API_KEY``).
        redact: how a repr shows the value (secrets).

    Example, one declaration and nothing else to keep in step::

        webhook_secret: Optional[str] = setting(
            _opt_str, None, "`whsec_...` secret that verifies Stripe's webhook signatures",
            shown="none", fallback_env=("STRIPE_WEBHOOK_SECRET",), redact=redact_key,
        )
    """
    declared = Setting("", parse, default, doc, shown or _show(default), fallback_env, redact)
    return dataclasses.field(metadata={DECLARED: declared})


DECLARED = "meterstream.setting"


def _show(default: Any) -> str:
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if default is None:
        return "none"
    if isinstance(default, (frozenset, dict)) and not default:
        return "empty"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def _parse(declared: Setting, raw: Any) -> Any:
    """*raw* (a keyword's value: any object) parsed; only ConfigurationError escapes.

    A parser compares, converts and shows what it is given: an object whose
    ``__repr__``, ``__eq__`` or ``__bool__`` raises (numpy arrays do on
    ``bool()``) must still get the documented error, naming the setting.
    """
    try:
        return declared.parse(_plain(raw), declared.name)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"{declared.name}: cannot be read from {safe_type_name(raw, 'a {}')} "
            f"({safe_type_name(exc)} while reading it)"
        ) from None


def _plain(raw: Any) -> Any:
    """A subclass of str, int or float as the plain value it holds.

    The parsers keep what they accept, and the settings are compared later
    (``customer_payload_key == value_key``): a subclass's overridden
    ``__eq__`` or ``__hash__`` is not ours to call then. The base type's own
    slot makes the copy without calling any override.
    """
    kind = type(raw)
    if kind is str or kind is int or kind is float or kind is bool:
        return raw
    if isinstance(raw, str):
        return str.__str__(raw)
    if isinstance(raw, int):
        return int.__int__(raw)
    if isinstance(raw, float):
        return float.__float__(raw)
    return raw


def read_setting(
    declared: Setting, kwargs: Mapping[str, Any], env: Mapping[str, str], given: set[str]
) -> Any:
    """One setting's value: the keyword, else ``METERSTREAM_<NAME>``, else the default.

    The fallback variables (``STRIPE_API_KEY``) are read while the value is None.
    """
    raw = kwargs.get(declared.name)
    value: Any = None
    if raw is not None and raw is not UNSET:
        value = _parse(declared, raw)
        given.add(declared.name)
    elif declared.env[0] in env:
        value = declared.parse(env[declared.env[0]], declared.env[0])
        given.add(declared.name)
    else:
        value = declared.default
        if isinstance(value, dict):
            value = dict(value)  # each client its own
    for name in declared.env[1:]:
        if value is not None:
            break
        value = declared.parse(env.get(name), name)
        if value is not None:
            given.add(declared.name)
    return value
