"""Whatever a setting's value does in its dunders, the error is ConfigurationError naming it.

Issue 24, item 4 (from a fuzzing run): an object whose ``__repr__`` raised
escaped as that object's RuntimeError from 33 settings, and a numpy array
given as ``nats_tls_ca`` escaped as numpy's ValueError (its ``bool()``
raises). And item 3: a publishable key is refused at ``configure()``.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

import meterstream
from meterstream._config.settings import SETTING_NAMES


class Hostile:
    """Raises from every dunder a parser could touch, as a broken or hostile object may."""

    def _raise(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("hostile dunder")

    __repr__ = __str__ = __bool__ = __len__ = __iter__ = __eq__ = __ne__ = _raise
    __lt__ = __le__ = __gt__ = __ge__ = __float__ = __int__ = __index__ = _raise
    __fspath__ = __getattr__ = __contains__ = _raise
    __hash__ = None  # type: ignore[assignment]


class AmbiguousTruth:
    """What numpy arrays do: ``bool()`` and comparisons raise ValueError."""

    def __bool__(self) -> NoReturn:
        raise ValueError("The truth value of an array with more than one element is ambiguous")

    def __eq__(self, other: object) -> Any:
        return self

    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Any:
        return iter([self, self])

    def __repr__(self) -> str:
        return "array([1, 2])"


@pytest.mark.parametrize("value", [Hostile(), AmbiguousTruth()], ids=["hostile", "array"])
@pytest.mark.parametrize("name", SETTING_NAMES)
def test_any_object_as_any_setting_is_refused_naming_the_setting(name: str, value: Any) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.MeterClient(**{name: value})
    assert str(info.value).startswith(f"{name}: "), str(info.value)


def test_a_numpy_like_array_as_a_ca_bundle_is_a_configuration_error() -> None:
    with pytest.raises(meterstream.ConfigurationError, match=r"^nats_tls_ca: "):
        meterstream.MeterClient(nats_tls_ca=AmbiguousTruth())


@pytest.mark.parametrize(
    "key", ["pk_test_51Hx4eC39HqLyjWDarjtT1zdp7dc", "pk_live_51Hx4eC39HqLyjWDarjtT1zdp7dc"]
)
def test_a_publishable_key_is_refused_at_configure_without_showing_it(key: str) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(api_key=key)
    message = str(info.value)
    assert message.startswith("api_key: ")
    assert "publishable" in message
    assert "4eC39HqLyjWDarjtT1zdp7dc" not in message


def test_a_publishable_key_in_the_environment_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "pk_test_51Hx4eC39HqLyjWDarjtT1zdp7dc")
    monkeypatch.delenv("METERSTREAM_API_KEY", raising=False)
    with pytest.raises(meterstream.ConfigurationError, match=r"^STRIPE_API_KEY: .*publishable"):
        meterstream.MeterClient()
