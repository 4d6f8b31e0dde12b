"""A model and a strategy fit when the strategy sends a payload kind the model declares it receives."""

from __future__ import annotations

from typing import Any

from lightning_fed.errors import ConfigurationError
from lightning_fed.strategies.base import Strategy

#: What each payload kind means, for messages.
PAYLOAD_MEANING = {
    "nothing": "nothing (local training only)",
    "peer_states": "every other client's own upload, keyed by client",
    "average": "one average of all uploads",
    "personalized": "an aggregate and a personalized mix per client",
}


def strategies_sending(kinds: frozenset[str]) -> list[str]:
    """Class paths of the project's strategies that send one of ``kinds``."""
    import lightning_fed.strategies as package

    found = []
    for name in package.__all__:
        cls = getattr(package, name)
        if isinstance(cls, type) and issubclass(cls, Strategy) and getattr(cls, "sends", None) in kinds:
            found.append(f"lightning_fed.strategies.{name}")
    return found


def check_compatible(model: Any, strategy: Strategy) -> None:
    """Raise a :class:`ConfigurationError` naming both and the strategies to use when they do not fit."""
    receives = frozenset(model.receives)
    sends = getattr(strategy, "sends", None)
    if sends in receives:
        return
    accepted = " or ".join(PAYLOAD_MEANING.get(k, k) for k in sorted(receives))
    use = " or ".join(strategies_sending(receives)) or "a strategy that sends one of " + ", ".join(sorted(receives))
    raise ConfigurationError(
        f"federation.strategy: {type(strategy).__name__} sends each client {PAYLOAD_MEANING.get(sends, sends)}, but "
        f"model {type(model).__name__} receives {accepted}; use federation.strategy {use}"
    )
