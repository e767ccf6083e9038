"""What a data source holds: images, recordings or texts, told from its name or its folder layout."""

from __future__ import annotations

from pathlib import Path


def source_modality(source: str) -> str | None:
    """``image`` or ``audio`` for a built-in image or audio dataset (``name[:split]``, when no such path exists)
    or a folder of image or audio class folders; ``None`` for anything else (text)."""
    from attnkit.data.audio import AUDIO_DATASETS, is_audio_folder
    from attnkit.data.vision import VISION_DATASETS, is_image_folder

    path = Path(source)
    name = source.split(":")[0].strip().lower().replace("_", "-")
    if not path.exists():
        if name in VISION_DATASETS:
            return "image"
        if name in AUDIO_DATASETS:
            return "audio"
        return None
    if path.is_dir() and is_image_folder(path):
        return "image"
    if path.is_dir() and is_audio_folder(path):
        return "audio"
    return None
