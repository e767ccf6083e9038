"""Which characters of a text its model did not read: the one place this rule lives.

A tokenizer reads every non-space character of a text into some token (``clean_text`` turns ``<br />`` and
invisible characters into spaces first), so text outside the tokens' spans is unread only where it holds more
than spaces, and only when the encoding is full (a truncated input): its tail, or with ``head+tail`` truncation
its middle. The explanation JSON carries the result as ``unread``, so the renderers, the browser's included,
never repeat the tokenizer's rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from attnkit.data.text.tokenizer import clean_text


def unread_gaps(text: str, offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The character spans ``[start, end)`` between the tokens' spans (and after the last one) that hold more
    than what the tokenizer reads as spaces (whitespace, ``<br />``, invisible characters: ``clean_text``).

    For a full encoding these are the parts its model did not read (:func:`unread_spans`).
    """
    cleaned, cursor, gaps = clean_text(text), 0, []
    for start, end in offsets:
        if start > cursor and cleaned[cursor:start].strip():
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cleaned[cursor:].strip():
        gaps.append((cursor, len(text)))
    return gaps


def unread_spans(text: str, offsets: Sequence[tuple[int, int]], max_length: int) -> list[tuple[int, int]]:
    """The spans of ``text`` the model did not read (:func:`unread_gaps`); none unless the encoding is full."""
    return unread_gaps(text, offsets) if len(offsets) >= max_length else []
