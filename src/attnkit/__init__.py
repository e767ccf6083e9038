"""attnkit: build, train, explain and measure attention models.

The public API (see :mod:`attnkit.api`)::

    import attnkit
    clf = attnkit.fit(texts, labels, out="runs/reviews")   # or fit("reviews.csv", ...), fit(df, ...)
    clf = attnkit.load("runs/reviews")
    clf.predict(["a wonderful film"]); clf.predict_proba([...]); clf.explain("..."); clf.attention([...])
    clf.evaluate("test.csv")

Names are imported on first use, so ``import attnkit`` (and the ``attnkit`` command's start) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "fit": "attnkit.api",
    "load": "attnkit.api",
    "resume": "attnkit.api",
    "build_config": "attnkit.api",
    "Classifier": "attnkit.api",
    "TokenAttention": "attnkit.api",
    "FrameAttention": "attnkit.api",
    "RegionAttention": "attnkit.api",
    "RunConfig": "attnkit.train.config",
    "Explanation": "attnkit.explain.explanation",
    "shipped_configs": "attnkit.configs",
    "available_models": "attnkit.models.registry",
}

__all__ = [
    "Classifier",
    "Explanation",
    "FrameAttention",
    "RegionAttention",
    "RunConfig",
    "TokenAttention",
    "__version__",
    "available_models",
    "build_config",
    "fit",
    "load",
    "resume",
    "shipped_configs",
]

if TYPE_CHECKING:
    from attnkit.api import (
        Classifier,
        FrameAttention,
        RegionAttention,
        TokenAttention,
        build_config,
        fit,
        load,
        resume,
    )
    from attnkit.configs import shipped_configs
    from attnkit.explain.explanation import Explanation
    from attnkit.models.registry import available_models
    from attnkit.train.config import RunConfig


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
