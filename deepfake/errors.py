"""Errors a user can fix. Commands print their message as one line, without a traceback (deepfake.cli)."""


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
