"""Error types for mistakes in what a user gave us (paths, options, files), as opposed to bugs.

Convention of this package: a bad value or a bad file raises ValueError (or a subclass such as
UserError), a missing or unwritable path an OSError. The console scripts (gausstr_core.cli.entry)
print those as one line and exit 2; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input; the message says what was wrong and, where it helps, what to do."""


class UnknownNameError(UserError, KeyError):
    """A name (scene, sample token, camera, ...) that the data does not hold; also a KeyError for lookups."""

    __str__ = UserError.__str__  # KeyError would quote the message


class UnsafeFileError(UserError):
    """A file holds something that could run code when loaded (e.g. a TorchScript archive): refused unread."""


class DamagedFileError(UserError):
    """A file is empty, truncated, corrupt or fails its integrity check."""
