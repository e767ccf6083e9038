"""Files in requests, for runs whose inputs are files (images, recordings): the parts every such modality shares.

``/predict`` and ``/explain`` of an image or audio run take the files either as a ``multipart/form-data`` upload
(the field ``file``, repeated for several; ``/explain`` also reads ``method``, repeated or comma-separated, and
``target``) or as JSON with base64 (``{"image": ...}`` / ``{"images": [...]}``, ``{"audio": ...}`` /
``{"audios": [...]}``; plain base64 or a ``data:`` URL). An upload, and the plural key, are answered with a list
in the order sent, whatever the count; the singular key with one object, as ``text`` is for a text run.

- :func:`parse_multipart`: the body split into its files and fields, bytes exact (400 for a malformed body);
- :func:`decode_base64`: one base64 file (400 when it does not decode);
- :class:`UploadKind`: a modality's JSON keys, nouns and error kinds; :func:`check_count` (422 for none or too
  many);
- :func:`read_upload_request`: a request's files and ``/explain`` options, multipart or JSON;
- :class:`UploadDecoder`: decode files on a small thread pool, off the event loop and bounded in how many are
  decoded at once (a large file costs memory while it is decoded). :mod:`attnkit.serve.images` and
  :mod:`attnkit.serve.audio` implement its :meth:`~UploadDecoder.decode_one`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from attnkit.serve.errors import RequestError, validation_detail
from attnkit.serve.schemas import ExplainOptions, multipart_schema

#: The multipart field that carries the files.
FILE_FIELD = "file"
#: The multipart fields each endpoint reads besides ``file``.
FORM_FIELDS = {"/predict": (), "/explain": ("method", "target")}
_DATA_URL = re.compile(r"^data:[\w.+/-]*(?:;[\w.+=-]+)*;base64,", re.IGNORECASE)

Decoded = TypeVar("Decoded")


@dataclass(frozen=True)
class Upload:
    """One file of a request, still encoded.

    Attributes:
        where: names it in messages (``images[1]``, ``file[0] (cat.png)``).
        data: the file's bytes.
        filename: the upload's file name, if the client gave one (an explanation's ``source``).
    """

    where: str
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class UploadKind:
    """How a modality's requests name their files.

    Attributes:
        modality: ``image`` or ``audio``.
        key: the JSON key of one file (``image``); the response is then one object.
        keys: the JSON key of a list of files (``images``).
        noun: one file in messages (``image``, ``recording``).
        nouns: several (``images``, ``recordings``).
        files: what the multipart upload holds, in messages (``image files``).
        refuse_empty: an empty file is refused before decoding (422 ``empty_<key>``); otherwise the decoder
            judges it.
    """

    modality: str
    key: str
    keys: str
    noun: str
    nouns: str
    files: str
    refuse_empty: bool = True

    @property
    def empty_kind(self) -> str:
        return f"empty_{self.key}"

    @property
    def missing_kind(self) -> str:
        return f"no_{self.key}"

    @property
    def too_many_kind(self) -> str:
        return f"too_many_{self.keys}"


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
        else:  # a text field, also when sent as a file part (curl -F method=@m.txt, a browser Blob)
            try:
                form.fields.setdefault(name, []).append(content.decode("utf-8"))
            except UnicodeDecodeError:
                what = f"holds a file ({filename})" if filename else "is not UTF-8 text"
                raise RequestError(
                    422,
                    "validation_error",
                    f'the form field {name!r} {what}; upload files in the field "{FILE_FIELD}"',
                ) from None
        position = next_delimiter + 2 + len(delimiter)
        index += 1


def decode_base64(text: str, where: str, *, empty_kind: str | None = "empty_file") -> bytes:
    """The bytes of one base64 file (whitespace ignored; a ``data:...;base64,`` prefix allowed).

    Args:
        text: the base64 text.
        where: names the file in messages.
        empty_kind: the error kind of a 422 for an empty payload; ``None``: give ``b""`` (the decoder judges).

    Raises:
        RequestError: 400 ``invalid_base64`` when it does not decode, 422 when it is empty.
    """
    payload = "".join(_DATA_URL.sub("", text.strip(), count=1).split())
    if not payload:
        if empty_kind is None:
            return b""
        raise RequestError(422, empty_kind, f"{where} is empty")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(
            400,
            "invalid_base64",
            f"{where} is not valid base64 ({err}); send the file's bytes in standard base64 (RFC 4648), "
            "or upload it as multipart/form-data",
        ) from None


def check_count(uploads: list[Upload], *, limit: int, kind: UploadKind) -> list[Upload]:
    """The uploads of a request, or :class:`RequestError` (422) when there are none, more than ``limit``, or
    (``kind.refuse_empty``) an empty one."""
    if not uploads:
        raise RequestError(
            422,
            kind.missing_kind,
            f'no {kind.noun} given: upload files in the multipart field "{FILE_FIELD}", or send '
            f'{{"{kind.key}": "<base64>"}} or {{"{kind.keys}": [...]}}',
        )
    if len(uploads) > limit:
        raise RequestError(
            422, kind.too_many_kind, f"{len(uploads)} {kind.nouns} in one request; the limit is {limit}"
        )
    if kind.refuse_empty:
        for upload in uploads:
            if not upload.data:
                raise RequestError(422, kind.empty_kind, f"{upload.where} is empty")
    return uploads


@dataclass
class UploadRequest:
    """The files of one request, still encoded, and its options (from the JSON body or the form fields).

    Attributes:
        uploads: the files, in order.
        single: the JSON body gave one file under the singular key (the response is one object, not a list).
        methods: ``/explain``'s methods as given (None: the default).
        target: ``/explain``'s target label.
    """

    uploads: list[Upload]
    single: bool
    methods: list[str] | None = None
    target: str | None = None


def _form_request(form: MultipartForm, endpoint: str) -> UploadRequest:
    allowed = FORM_FIELDS.get(endpoint, ())
    unknown = sorted(set(form.fields) - set(allowed))
    if unknown:
        accepted = ", ".join((FILE_FIELD, *allowed))
        raise RequestError(
            422,
            "validation_error",
            f"unknown form field(s) {', '.join(map(repr, unknown))}; {endpoint} takes {accepted}",
        )
    methods = [m.strip() for value in form.fields.get("method", []) for m in value.split(",") if m.strip()]
    targets = form.fields.get("target", [])
    if len(targets) > 1:
        raise RequestError(422, "validation_error", "give one target, not several")
    return UploadRequest(form.files, False, methods or None, targets[0] if targets else None)


async def read_upload_request(
    request: Request, body_model: type[BaseModel], *, kind: UploadKind, max_uploads: int
) -> UploadRequest:
    """The files and options of a request to an image or audio run, multipart or JSON.

    Args:
        request: the request (its body already passed the body guard).
        body_model: the JSON body's schema: the fields ``kind.key`` and ``kind.keys`` (and, for ``/explain``,
            :class:`~attnkit.serve.schemas.ExplainOptions`).
        kind: the run's :class:`UploadKind`.
        max_uploads: most files; more base64 files are refused before any is decoded.

    Raises:
        RequestError: a malformed body (400), bad base64 (400), a schema or form mistake (422).
    """
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        form = parse_multipart(body, content_type, max_parts=max_uploads + 16)
        return _form_request(form, request.url.path)
    try:
        parsed = body_model.model_validate_json(body)
    except ValidationError as err:
        error_kind, detail = validation_detail(list(err.errors()), kind.modality)  # type: ignore[arg-type]
        raise RequestError(422, error_kind, detail) from None
    one: str | None = getattr(parsed, kind.key)
    many: list[str] | None = getattr(parsed, kind.keys)
    if one is not None and many is not None:
        raise RequestError(422, "validation_error", f"give either '{kind.key}' or '{kind.keys}', not both")
    encoded = [one] if one is not None else list(many or [])
    if len(encoded) > max_uploads:  # before decoding any of them
        raise RequestError(
            422, kind.too_many_kind, f"{len(encoded)} {kind.nouns} in one request; the limit is {max_uploads}"
        )
    wheres = [kind.key] if one is not None else [f"{kind.keys}[{i}]" for i in range(len(encoded))]
    empty_kind = kind.empty_kind if kind.refuse_empty else None
    uploads = [
        Upload(where, decode_base64(text, where, empty_kind=empty_kind))
        for where, text in zip(wheres, encoded, strict=True)
    ]
    if isinstance(parsed, ExplainOptions):
        if parsed.method is not None and parsed.methods is not None:
            raise RequestError(422, "validation_error", "give either 'method' or 'methods', not both")
        asked = None if parsed.method is None and parsed.methods is None else parsed.all_methods()
        return UploadRequest(uploads, one is not None, asked, parsed.target)
    return UploadRequest(uploads, one is not None)


def upload_request_body(model: type[BaseModel], kind: UploadKind) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an endpoint taking ``kind``'s files: base64 JSON or a multipart upload."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {"schema": multipart_schema(kind.files)},
            },
        }
    }


class UploadDecoder(ABC, Generic[Decoded]):
    """Decode uploads as the run's task does, at most ``workers`` at once, on threads of their own.

    Subclasses implement :meth:`decode_one` (raising :class:`RequestError` for a bad file).

    Args:
        workers: files decoded at once.
    """

    def __init__(self, *, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError(f"decode workers must be >= 1, got {workers}")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attnkit-decode")

    @abstractmethod
    def decode_one(self, upload: Upload) -> Decoded:
        """One upload decoded; :class:`RequestError` (a 4xx) for a bad file."""

    async def decode(self, uploads: list[Upload]) -> list[Decoded]:
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
