"""Errors caused by the user's input (data, configuration): reported as one clear message, no traceback."""

import sys
from typing import NoReturn


class UserInputError(Exception):
    """Base of the errors whose message says everything the user needs (file, line, what is wrong)."""


class DataFormatError(UserInputError, ValueError):
    """A data file is malformed: the message names the file, the line and the problem."""


class MissingDataError(UserInputError, FileNotFoundError):
    """Data is missing: the message names the expected layout and where to get it."""


class ConfigurationError(UserInputError, ValueError):
    """A configuration value is invalid: the message names the option and the accepted values."""


def exit_with_error(message: str) -> NoReturn:
    """End a command as every command of the project does on a user's mistake: ``error: <message>``, status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def check_integer(option: str, value: object, minimum: int = 1) -> None:
    """Raise a :class:`ConfigurationError` naming ``option`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{option} must be an integer of at least {minimum}, got {value!r}")
