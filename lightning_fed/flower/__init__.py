"""lightning-fed on Flower: the same clients, strategies and round loop, with each client on its own machine.

Everything that imports ``flwr`` lives in this subpackage and is imported only when ``federation.runtime`` is
``flower`` (or by a user who imports it): the project works without the ``flower`` extra.
"""

from __future__ import annotations

from lightning_fed.errors import ConfigurationError

INSTALL_HINT = "pip install 'lightning-fed[flower]'"


def require_flower() -> None:
    """Raise a one-line :class:`ConfigurationError` naming the extra to install when ``flwr`` is missing."""
    try:
        import flwr  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"federation.runtime: flower needs the Flower engine, which is not installed: {INSTALL_HINT}"
        ) from None
