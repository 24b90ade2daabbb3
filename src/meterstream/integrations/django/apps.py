"""The Django app: ``INSTALLED_APPS += ["meterstream.integrations.django"]``."""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

from meterstream.integrations.django._settings import check_settings, configure_from_settings

__all__ = ["MeterstreamConfig"]


class MeterstreamConfig(AppConfig):  # type: ignore[misc]
    """Configures the default client from ``settings.METERSTREAM`` at startup."""

    name = "meterstream.integrations.django"
    label = "meterstream"
    verbose_name = "meterstream"
    default = True

    def ready(self) -> None:
        checks.register(check_settings)
        configure_from_settings()
