"""Class names from labels, the same for every source and modality: ``1``, ``1.0``, ``"1.0"`` and ``" 1 "`` are
the class ``"1"`` in a CSV column, a JSON field, a label folder of texts, images or recordings, or a Python list."""

from __future__ import annotations

import math
import re
from typing import Any

from attnkit.data.errors import DataError

# An integer in another spelling ("1.0", "+1", "-0"); zero-padded codes such as "007" are left as they are.
_INTEGRAL_NUMBER = re.compile(r"[+-]?(?:0|[1-9]\d*)(?:\.0*)?")


def label_to_str(value: Any, where: str) -> str | None:
    """A label as a stripped string, or ``None`` when missing (None, empty, NaN)."""
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip()
        # "1.0" (a CSV written from a float column, e.g. by pandas) is the class 1, as the numbers 1 and 1.0 are.
        return str(int(s.split(".")[0])) if _INTEGRAL_NUMBER.fullmatch(s) else (s or None)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    raise DataError(
        f"{where}: label is {type(value).__name__} ({value!r:.60}); expected one string or integer per row "
        "(multi-label data is not supported)"
    )


def label_name(value: Any, where: str = "label") -> str | None:
    """The class name a source file would give ``value``: ``1``, ``1.0`` and ``"1.0"`` -> ``"1"``, ``True`` ->
    ``"true"``, strings stripped; ``None`` for a missing label (None, empty, NaN). For in-memory labels."""
    value = value.item() if hasattr(value, "item") and not isinstance(value, str) else value  # numpy scalars
    return label_to_str(value, where)
