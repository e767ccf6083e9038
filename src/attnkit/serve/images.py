"""Images in requests: multipart uploads and base64 JSON to uint8 arrays, every bad image a 4xx.

An image run's ``/predict`` and ``/explain`` take the images either as a ``multipart/form-data`` upload (the
field ``file``, repeated for several; ``/explain`` also reads ``method``, repeated or comma-separated, and
``target``) or as JSON ``{"image": "<base64>"}`` / ``{"images": [...]}`` (plain base64 or a ``data:`` URL).
An upload, and ``images``, are answered with a list (``{"predictions": [...]}``, ``{"explanations": [...]}``) in
the order sent, whatever the count; ``image`` with one object, as ``text`` is for a text run. Every image goes through :func:`attnkit.data.vision.decode_image` with the run's size and
mode, the same call the task makes for :meth:`~attnkit.predictor.Predictor.predict_proba`, so a served image gets
exactly the pixels the library would give it. Decoding runs on a small thread pool (:class:`ImageDecoder`), off
the event loop and bounded in how many images are decoded at once (a large PNG costs hundreds of MB while it
is decoded).

What a bad image gets (``{"error", "detail"}``, the detail naming the image): not an image 415, a truncated or
corrupt file 400, more pixels than ``max_image_pixels`` 413 (refused from the header, before decoding), a file
over ``max_image_body_bytes`` 413, base64 that does not decode 400, a malformed multipart body 400, no image or
too many 422.

Dimension legend: ``H`` / ``W`` height / width of the run's inputs, ``C`` channels.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import numpy as np

from attnkit.data.vision.decode import ImageError, ImageMode, decode_image
from attnkit.serve.errors import RequestError

#: The multipart field that carries image files.
FILE_FIELD = "file"
#: ``ImageError.reason`` -> (HTTP status, error kind).
IMAGE_ERRORS: dict[str, tuple[int, str]] = {
    "not an image": (415, "not_an_image"),
    "truncated": (400, "truncated_image"),
    "corrupt": (400, "corrupt_image"),
    "too many pixels": (413, "too_many_pixels"),
    "too large": (413, "image_too_large"),
}
_DATA_URL = re.compile(r"^data:[\w.+/-]*(?:;[\w.+=-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class Upload:
    """One image of a request, still encoded.

    Attributes:
        where: names it in messages (``images[1]``, ``file[0] (cat.png)``).
        data: the file's bytes.
        filename: the upload's file name, if the client gave one (an explanation's ``source``).
    """

    where: str
    data: bytes
    filename: str | None = None


@dataclass
class MultipartForm:
    """A parsed ``multipart/form-data`` body: the uploads of the ``file`` field and every other field's values."""

    files: list[Upload] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)


def _boundary(content_type: str) -> bytes:
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise RequestError(
            400, "invalid_multipart", "the multipart/form-data Content-Type has no (valid) boundary parameter"
        )
    return boundary.encode("latin-1")


def _disposition(headers: bytes, index: int) -> tuple[str, str | None]:
    """``(name, filename)`` of a part from its ``Content-Disposition`` header."""
    message = Message()
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            message[key.strip()] = value.strip()
    if message.get_content_disposition() != "form-data":
        raise RequestError(
            400,
            "invalid_multipart",
            f"part {index} of the multipart body has no Content-Disposition: form-data",
        )
    name = message.get_param("name", header="content-disposition")
    filename = message.get_filename()
    if not isinstance(name, str) or not name:
        raise RequestError(400, "invalid_multipart", f"part {index} of the multipart body has no field name")
    return name, filename


def parse_multipart(body: bytes, content_type: str, *, max_parts: int) -> MultipartForm:
    """Split a ``multipart/form-data`` body (RFC 7578) into its uploads and fields, bytes exact.

    Args:
        body: the whole request body.
        content_type: its ``Content-Type`` header (with the ``boundary``).
        max_parts: most parts accepted (files and fields together).

    Raises:
        RequestError: 400 for a malformed body, 422 for more than ``max_parts`` parts or a field that is not
            UTF-8 text.
    """
    delimiter = b"--" + _boundary(content_type)
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise RequestError(400, "invalid_multipart", "the multipart body has no part with its boundary")
        position = found + 2 + len(delimiter)
    form = MultipartForm()
    index = 0
    while True:
        if body.startswith(b"--", position):
            return form  # the closing delimiter
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise RequestError(
                400, "invalid_multipart", "the multipart body ends before its closing boundary"
            )
        head_end = body.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            raise RequestError(
                400, "invalid_multipart", f"part {index} of the multipart body has no header end"
            )
        headers = body[line_end + 2 : head_end]
        content_start = head_end + 4
        next_delimiter = body.find(b"\r\n" + delimiter, content_start)
        if next_delimiter < 0:
            raise RequestError(
                400, "invalid_multipart", "the multipart body ends before its closing boundary"
            )
        if index >= max_parts:
            raise RequestError(422, "too_many_parts", f"the multipart body has more than {max_parts} parts")
        name, filename = _disposition(headers, index)
        content = body[content_start:next_delimiter]
        if name == FILE_FIELD:
            count = len(form.files)
            where = f"{FILE_FIELD}[{count}]" + (f" ({filename})" if filename else "")
            form.files.append(Upload(where, content, filename or None))
        else:
            try:
                form.fields.setdefault(name, []).append(content.decode("utf-8"))
            except UnicodeDecodeError:
                raise RequestError(
                    422, "validation_error", f"the form field {name!r} is not UTF-8 text"
                ) from None
        position = next_delimiter + 2 + len(delimiter)
        index += 1


def decode_base64(text: str, where: str) -> bytes:
    """The bytes of one base64 image (whitespace ignored; a ``data:...;base64,`` prefix allowed).

    Raises:
        RequestError: 400 ``invalid_base64`` when it does not decode, 422 when it is empty.
    """
    payload = "".join(_DATA_URL.sub("", text.strip(), count=1).split())
    if not payload:
        raise RequestError(422, "empty_image", f"{where} is empty")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(
            400,
            "invalid_base64",
            f"{where} is not valid base64 ({err}); send the file's bytes in standard base64 (RFC 4648), "
            "or upload it as multipart/form-data",
        ) from None


def image_error(err: ImageError) -> RequestError:
    """The 4xx answer to an image :func:`decode_image` refused (status by :attr:`ImageError.reason`)."""
    status, kind = IMAGE_ERRORS.get(err.reason, (400, "bad_image"))
    return RequestError(status, kind, str(err))


def check_count(uploads: list[Upload], *, limit: int) -> list[Upload]:
    """The uploads of a request, or :class:`RequestError` (422) when there are none or more than ``limit``."""
    if not uploads:
        raise RequestError(
            422,
            "no_image",
            'no image given: upload files in the multipart field "file", or send {"image": "<base64>"} or '
            '{"images": [...]}',
        )
    if len(uploads) > limit:
        raise RequestError(
            422, "too_many_images", f"{len(uploads)} images in one request; the limit is {limit}"
        )
    for upload in uploads:
        if not upload.data:
            raise RequestError(422, "empty_image", f"{upload.where} is empty")
    return uploads


class ImageDecoder:
    """Decode uploads as the run's task does, at most ``workers`` at once, on threads of their own.

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
        if workers < 1:
            raise ValueError(f"decode workers must be >= 1, got {workers}")
        self.size = size
        self.mode: ImageMode = "L" if mode == "L" else "RGB"
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attnkit-decode")

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

    async def decode(self, uploads: list[Upload]) -> list[np.ndarray]:
        """Every upload decoded (in order); the first bad one's :class:`RequestError` is raised."""
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._executor, self.decode_one, upload) for upload in uploads]
        results: list[Any] = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
