"""User-facing errors.

Every error a user can cause (bad file, bad flag, bad config) is a `DeepDiffError` whose message is one
line naming the file, line and field where known, and what was expected. The CLI prints it as
``error: <message>`` and exits non-zero without a traceback.
"""


class DeepDiffError(Exception):
    """A user-facing error with a one-line message."""


class DataError(DeepDiffError):
    """Input data files are missing, malformed or inconsistent."""


class ConfigError(DeepDiffError):
    """A configuration value or config file is invalid."""
