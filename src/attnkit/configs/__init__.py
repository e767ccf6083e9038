"""The run configs shipped inside the package (``imdb-nb-attn``, ``sst2-bag-attn``, ...), found by name.

``attnkit train --config NAME`` and ``attnkit.fit(config=NAME)`` accept a path to a YAML file or the name of a
shipped config (with or without ``.yaml``); :func:`shipped_configs` lists the names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SUFFIX = ".yaml"


def _config_dir() -> Path:
    return Path(str(resources.files(__name__)))


def shipped_configs() -> list[str]:
    """Names of the shipped configs, sorted (``imdb-bilstm-attn``, ...)."""
    return sorted(path.name[: -len(SUFFIX)] for path in _config_dir().glob(f"*{SUFFIX}"))


def find_config(name_or_path: str | Path) -> Path:
    """The YAML file ``name_or_path`` names: an existing file, else a shipped config of that name.

    Raises:
        ValueError: neither a file nor a shipped config; the message lists the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    if str(path.parent) in (".", "configs"):  # also accept the repository's old spelling configs/NAME.yaml
        shipped = _config_dir() / f"{name}{SUFFIX}"
        if shipped.is_file():
            return shipped
    raise ValueError(
        f"config {str(name_or_path)!r} is neither a file nor a shipped config; shipped configs: "
        + ", ".join(shipped_configs())
    )
