"""User-facing errors.

Anything the user can fix (a bad file, a malformed benchmark, an impossible config) raises
:class:`InputError`; the CLI turns it into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with something the user gave us: a file, a config value, an argument.

    The message names the offending file or field, what was expected and what was found.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(InputError):
    """An invalid configuration value, named by its dotted field path."""
