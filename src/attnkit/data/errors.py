"""Errors raised by the data layer for problems in the user's data or setup."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with a data source that the user can fix.

    The message is one line that names the file (and, where it applies, the 1-based line or row) and says what
    to do, e.g. ``reviews.csv: line 7: invalid UTF-8 byte 0xff; save the file as UTF-8``.
    """


class DatasetNotFoundError(DataError):
    """A built-in dataset split is not available locally and could not (or may not) be downloaded."""
