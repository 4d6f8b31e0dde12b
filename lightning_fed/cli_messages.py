"""One-line messages for the command line: parser errors, wrapped constructor errors, and the zoo's listing."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType

from lightning_fed.errors import UserInputError

_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_CLASS_PATH = re.compile(r"^- Problem with given class_path '([^']+)':\s*$")
_STRUCTURE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value",
    "- Expected a <class 'NoneType'>",
)


def condense_parser_error(message: str) -> str:
    """Jsonargparse's (often nested, multi-line) error as one line: ``<full.key>: <reason> [(<class>)]``.

    ``Parser key "model": ... Problem with given class_path 'X': Parser key "gate": Expected ...`` becomes
    ``model.init_args.gate: Expected ... (X)``.
    """
    keys: list[str] = []
    class_path = None
    reasons: list[str] = []
    for raw in message.splitlines():
        line = raw.strip()
        if not line or line.startswith(_STRUCTURE):
            continue
        match = _CLASS_PATH.match(line)
        if match:
            class_path = match.group(1)
            continue
        match = _PARSER_KEY.match(line)
        if match:
            keys.append(match.group(1))
            line = match.group(2)
            if not line:
                continue
        reasons.append(line.removeprefix("- "))
    if not reasons:
        return " ".join(message.split())
    key = keys[0] if keys else ""
    for inner in keys[1:]:
        key = f"{key}.init_args.{inner}" if class_path else f"{key}.{inner}"
    reason = reasons[0]
    text = f"{key}: {reason}" if key else reason
    # A required key is named as the config spells it, without the subcommand (fit.federation.strategy).
    text = re.sub(r"\b(?:fit|validate|test)\.(?=(?:model|data|trainer|federation)\.)", "", text)
    return f"{text} ({class_path})" if class_path and class_path not in text else text


def find_user_error(error: BaseException) -> UserInputError | None:
    """The :class:`UserInputError` behind ``error``, following causes and contexts (jsonargparse wraps them)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, UserInputError):
            return current
        stack.extend([current.__cause__, current.__context__])
    return None


def zoo_listing() -> str:
    """The zoo's models, scenarios and strategies, for ``--help``."""
    import lightning

    import lightning_fed.datamodules as datamodules
    import lightning_fed.models as models
    import lightning_fed.strategies as strategies
    from lightning_fed.strategies import Strategy

    def concrete(package: ModuleType, wanted: Callable[[type], bool]) -> str:
        classes = [getattr(package, n) for n in package.__all__]
        return ", ".join(
            c.__name__
            for c in classes
            if isinstance(c, type) and wanted(c)
            and not any(getattr(getattr(c, a, None), "__isabstractmethod__", False) for a in dir(c))
        )  # fmt: skip

    return (
        "Models (--model, lightning_fed.models.<name>): "
        f"{concrete(models, lambda c: issubclass(c, lightning.LightningModule))}. "
        "Scenarios (--data, lightning_fed.datamodules.<name>): "
        f"{concrete(datamodules, lambda c: hasattr(c, 'client_datamodules'))}. "
        "Strategies (--federation.strategy, lightning_fed.strategies.<name>): "
        f"{concrete(strategies, lambda c: issubclass(c, Strategy))}. "
        "Trainer flags marked MANAGED BY THE FEDERATION are refused; the federation section sets them."
    )
