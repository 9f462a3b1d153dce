"""Errors a user can cause, each with a one-line message and an exit code.

Exit codes (documented in the README and `deemo-edge --help`):
  0  success
  2  usage error (bad flag, bad config value)
  3  input error (missing / corrupt / empty media, no camera, wrong model file)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INPUT = 3


class DeemoError(Exception):
    """Base class: `str(err)` is a complete one-line message for the user."""

    exit_code = EXIT_INPUT


class UsageError(DeemoError):
    exit_code = EXIT_USAGE


class InputError(DeemoError):
    """The input media cannot be used (missing, corrupt, empty, no streams)."""

    exit_code = EXIT_INPUT


class ModelError(DeemoError):
    """A model file is missing or is not what it claims to be."""

    exit_code = EXIT_INPUT
