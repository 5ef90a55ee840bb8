"""Errors a user can fix. Entry points print their message without a traceback."""

import sys
from collections.abc import Callable


class UserError(ValueError):
    """Base class: the message names the problem and, where there is one, the fix."""


class ImageError(UserError):
    """An input that is not a usable image."""


class DataError(UserError):
    """A dataset root, manifest or data setting that cannot be used."""


class ModelError(UserError):
    """A model that cannot be built or loaded as configured."""


class ConfigError(UserError):
    """A config value that cannot work."""


def run_command(work: Callable[[], int | None]) -> int:
    """A command line's exit status: ``work``'s own (None: 0); 2 with one ``error: ...`` line on stderr
    for a UserError; 130 on Ctrl-C, as shells report it."""
    try:
        return work() or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
