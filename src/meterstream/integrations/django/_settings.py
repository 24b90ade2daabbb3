"""``settings.METERSTREAM``: configure the default client, validate in a system check."""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import logging
from typing import Any, Optional

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from meterstream._config.settings import Settings
from meterstream._default import configure
from meterstream.errors import ConfigurationError
from meterstream.integrations._common import IntegrationOptions, parse_options, split_settings

__all__ = ["check_settings", "configure_from_settings", "options_from_settings"]

logger = logging.getLogger("meterstream")

SETTING = "METERSTREAM"
MIDDLEWARE_PATH = "meterstream.integrations.django.MeterstreamMiddleware"


def _raw() -> Any:
    return getattr(settings, SETTING, None)


def configure_from_settings() -> Optional[ConfigurationError]:
    """Configure the default client from the core settings in ``settings.METERSTREAM``.

    Called by the app config at startup. A wrong setting is logged and
    returned, not raised: the ``meterstream.E001`` system check reports it,
    so ``manage.py check`` (and ``runserver``, ``migrate``...) fail with the
    message. The default client then stays as the environment makes it.

    Returns:
        The configuration error, or None.
    """
    try:
        core, _ = split_settings(_raw(), SETTING)
        if core:
            configure(**core)
    except ConfigurationError as exc:
        logger.error("%s is not valid, metering is not configured: %s", SETTING, exc)
        return exc
    return None


def options_from_settings() -> IntegrationOptions:
    """The middleware options in ``settings.METERSTREAM``.

    Returns:
        The parsed options (resolver, request event, flushing).

    Raises:
        ImproperlyConfigured: an option is wrong (the system check says which).
    """
    try:
        _, options = split_settings(_raw(), SETTING)
        return parse_options(options, SETTING)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """System check: ``settings.METERSTREAM`` resolves (``meterstream.E001``).

    Also warns (``meterstream.W001``) when the middleware is installed with no
    ``customer_resolver``: it would set no customer.

    Args:
        app_configs: Django's argument, unused.
        **kwargs: Django's arguments, unused.

    Returns:
        The check messages; empty when all is well.
    """
    raw = _raw()
    try:
        core, options = split_settings(raw, SETTING)
        Settings.resolve(core)
        parsed = parse_options(options, SETTING)
    except ConfigurationError as exc:
        return [
            checks.Error(
                str(exc),
                hint="See the settings reference in docs/configuration.md and "
                "docs/integrations/django.md.",
                obj=SETTING,
                id="meterstream.E001",
            )
        ]
    messages: list[checks.CheckMessage] = []
    if parsed.customer_resolver is None and MIDDLEWARE_PATH in getattr(settings, "MIDDLEWARE", ()):
        messages.append(
            checks.Warning(
                f"{MIDDLEWARE_PATH} is installed but {SETTING} has no 'customer_resolver': "
                "it sets no customer for requests.",
                hint="Add e.g. 'customer_resolver': user_attribute('profile.stripe_customer_id').",
                obj=SETTING,
                id="meterstream.W001",
            )
        )
    return messages
