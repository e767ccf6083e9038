"""Images in requests: multipart uploads and base64 JSON to uint8 arrays, every bad image a 4xx.

An image run's ``/predict`` and ``/explain`` take the images as a ``multipart/form-data`` upload (field ``file``)
or as JSON ``{"image": "<base64>"}`` / ``{"images": [...]}``; the request parts every file modality shares are in
:mod:`attnkit.serve.uploads`. Every image goes through :func:`attnkit.data.vision.decode_image` with the run's
size and mode, the same call the task makes for :meth:`~attnkit.predictor.Predictor.predict_proba`, so a served
image gets exactly the pixels the library would give it. Decoding runs on a small thread pool
(:class:`ImageDecoder`), off the event loop and bounded in how many images are decoded at once (a large PNG costs
hundreds of MB while it is decoded).

What a bad image gets (``{"error", "detail"}``, the detail naming the image): not an image 415, a truncated or
corrupt file 400, more pixels than ``max_image_pixels`` 413 (refused from the header, before decoding), a file
over ``max_image_body_bytes`` 413, base64 that does not decode 400, a malformed multipart body 400, no image,
an empty one or too many 422.

Dimension legend: ``H`` / ``W`` height / width of the run's inputs, ``C`` channels.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.vision.decode import ImageError, ImageMode, decode_image
from attnkit.serve.errors import RequestError
from attnkit.serve.uploads import (
    FILE_FIELD,
    MultipartForm,
    Upload,
    UploadDecoder,
    UploadKind,
    decode_base64,
    parse_multipart,
)

__all__ = [
    "FILE_FIELD",
    "IMAGE_ERRORS",
    "IMAGE_UPLOADS",
    "ImageDecoder",
    "MultipartForm",
    "Upload",
    "decode_base64",
    "image_error",
    "parse_multipart",
]

#: How an image run's requests name their files.
IMAGE_UPLOADS = UploadKind("image", "image", "images", "image", "images", "image files")
#: ``ImageError.reason`` -> (HTTP status, error kind).
IMAGE_ERRORS: dict[str, tuple[int, str]] = {
    "not an image": (415, "not_an_image"),
    "truncated": (400, "truncated_image"),
    "corrupt": (400, "corrupt_image"),
    "too many pixels": (413, "too_many_pixels"),
    "too large": (413, "image_too_large"),
}


def image_error(err: ImageError) -> RequestError:
    """The 4xx answer to an image :func:`decode_image` refused (status by :attr:`ImageError.reason`)."""
    status, kind = IMAGE_ERRORS.get(err.reason, (400, "bad_image"))
    return RequestError(status, kind, str(err))


class ImageDecoder(UploadDecoder[np.ndarray]):
    """Decode image uploads as the run's task does, at most ``workers`` at once, on threads of their own.

    Args:
        size: ``(H, W)`` of the run's inputs.
        mode: ``L`` or ``RGB``.
        max_pixels: images declaring more pixels are refused before decoding (413).
        max_bytes: files longer than this are refused (413).
        workers: images decoded at once.
    """

    def __init__(
        self, size: tuple[int, int], mode: str, *, max_pixels: int, max_bytes: int, workers: int = 2
    ) -> None:
        super().__init__(workers=workers)
        self.size = size
        self.mode: ImageMode = "L" if mode == "L" else "RGB"
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    def decode_one(self, upload: Upload) -> np.ndarray:
        """``(H, W, C)`` uint8 pixels of one upload; :class:`RequestError` for a bad image."""
        try:
            return decode_image(
                upload.data,
                size=self.size,
                mode=self.mode,
                max_pixels=self.max_pixels,
                max_bytes=self.max_bytes,
                where=upload.where,
            )
        except ImageError as err:
            raise image_error(err) from None
