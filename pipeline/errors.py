"""Errors a user can fix: the entry points print their message (no traceback) and exit 2."""


class CnnvisError(Exception):
    """Base class for actionable errors (bad config, missing data, no checkpoint...)."""


class ConfigError(CnnvisError, ValueError):
    """A config value or combination is invalid; the message says which and what is valid."""


class NoCheckpointError(CnnvisError, FileNotFoundError):
    """No trained checkpoint was found; the message names the train command that makes one."""
