"""Serving an image run: multipart uploads and base64 JSON give the library's numbers, every bad image is a 4xx
with a message, text runs are unchanged."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from attnkit.explain.images import explain_images
from attnkit.predictor import Predictor
from attnkit.serve import ExplainPool, Limits, ServeConfig, TorchBackend, create_app
from attnkit.serve.errors import RequestError
from attnkit.serve.images import decode_base64, parse_multipart

LIMITS = Limits(max_images=3, max_explain_images=2, max_image_body_bytes=60_000, max_image_pixels=100_000)


@pytest.fixture(scope="module")
def predictor(image_run: Path) -> Predictor:
    return Predictor(image_run)


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(TorchBackend(predictor), ServeConfig(limits=LIMITS))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def images(image_tools: SimpleNamespace) -> list[bytes]:
    """A PNG of each class at the run's size, a larger PNG of another shape and a JPEG (both resized)."""
    rng = np.random.default_rng(7)
    out = [image_tools.png(image_tools.array(kind, rng)) for kind in image_tools.classes]
    out.append(image_tools.png(image_tools.array("stripes", rng, (41, 57))))
    out.append(image_tools.png(image_tools.array("light", rng, (30, 30)), format="JPEG"))
    return out


def png_bytes(array: np.ndarray) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def files(*blobs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"img{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


def assert_probabilities(served: dict[str, Any], row: np.ndarray, labels: list[str]) -> None:
    assert list(served["probabilities"]) == labels
    assert served["label"] == labels[int(row.argmax())]
    for label, p in zip(labels, row, strict=True):
        assert served["probabilities"][label] == pytest.approx(float(p), abs=1e-5)


# -- the request parsers --------------------------------------------------------------------------------------


def test_multipart_parser_reads_httpx_bodies_byte_for_byte() -> None:
    # Contents with CRLFs, dashes and a fake boundary inside: only the real delimiter may split them.
    first = b"\x89PNG\r\n\x1a\n--\r\n--not-the-boundary\r\n\r\n\x00\xff" * 50
    second = bytes(range(256)) * 4
    request = httpx.Request(
        "POST",
        "http://testserver/explain",
        files=[("file", ("a b.png", first, "image/png")), ("file", ("c.jpg", second, "image/jpeg"))],
        data={"method": ["attention", "ig"], "target": "dark"},
    )
    form = parse_multipart(request.read(), request.headers["content-type"], max_parts=10)
    assert [upload.data for upload in form.files] == [first, second]
    assert [upload.filename for upload in form.files] == ["a b.png", "c.jpg"]
    assert [upload.where for upload in form.files] == ["file[0] (a b.png)", "file[1] (c.jpg)"]
    assert form.fields == {"method": ["attention", "ig"], "target": ["dark"]}


def test_multipart_parser_preamble_epilogue_and_quoted_boundary() -> None:
    body = (
        b'preamble to ignore\r\n--b-1\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        b'Content-Type: image/png\r\n\r\nDATA\r\n--b-1\r\nContent-Disposition: form-data; name="target"\r\n\r\n'
        b"light\r\n--b-1--\r\nepilogue"
    )
    form = parse_multipart(body, 'multipart/form-data; boundary="b-1"', max_parts=5)
    assert [(u.data, u.filename) for u in form.files] == [(b"DATA", "x.png")]
    assert form.fields == {"target": ["light"]}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"--b\r\n", "multipart/form-data", 400),  # no boundary parameter
        (b"nothing here", "multipart/form-data; boundary=b", 400),  # no delimiter
        (
            b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nDATA',
            "multipart/form-data; boundary=b",
            400,
        ),
        (b"--b\r\nContent-Type: image/png\r\n\r\nDATA\r\n--b--", "multipart/form-data; boundary=b", 400),
        (
            b'--b\r\nContent-Disposition: form-data; name="file"\r\nDATA\r\n--b--',
            "multipart/form-data; boundary=b",
            400,
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\xff\r\n--b--',
            "multipart/form-data; boundary=b",
            422,
        ),
    ],
    ids=["no-boundary", "no-delimiter", "unclosed", "no-disposition", "no-header-end", "field-not-utf8"],
)
def test_malformed_multipart_is_a_request_error(body: bytes, content_type: str, status: int) -> None:
    with pytest.raises(RequestError) as err:
        parse_multipart(body, content_type, max_parts=5)
    assert err.value.status == status


def test_too_many_parts_are_refused() -> None:
    request = httpx.Request("POST", "http://t/", files=[("file", (f"{i}.png", b"x")) for i in range(4)])
    with pytest.raises(RequestError) as err:
        parse_multipart(request.read(), request.headers["content-type"], max_parts=3)
    assert err.value.status == 422 and err.value.kind == "too_many_parts"


def test_base64_plain_data_url_and_wrapped_lines() -> None:
    data = bytes(range(200))
    text = b64(data)
    assert decode_base64(text, "image") == data
    assert decode_base64("data:image/png;base64," + text, "image") == data
    assert decode_base64("\n".join(text[i : i + 76] for i in range(0, len(text), 76)), "image") == data
    for bad in ("not base64!", text[:-1], "QUI"):
        with pytest.raises(RequestError) as err:
            decode_base64(bad, "images[3]")
        assert (
            err.value.status == 400 and err.value.kind == "invalid_base64" and "images[3]" in err.value.detail
        )
    with pytest.raises(RequestError) as err:
        decode_base64("  ", "image")
    assert err.value.status == 422


# -- /model, /predict, /explain ---------------------------------------------------------------------------------


def test_model_describes_the_image_run(client: TestClient, predictor: Predictor) -> None:
    info = client.get("/model").json()
    prep = predictor.task.preparation  # type: ignore[attr-defined]
    assert info["modality"] == "image" and info["max_length"] is None and info["name"] == "cnn-attn"
    assert info["truncation"] is None
    assert info["labels"] == predictor.labels == ["dark", "light", "stripes"]
    assert info["image"] == {
        "size": [28, 28],
        "mode": "RGB",
        "mean": pytest.approx(list(prep.mean)),
        "std": pytest.approx(list(prep.std)),
        "unit_size": 4,
        "grid": [7, 7],
    }
    assert info["limits"]["max_images"] == LIMITS.max_images and "ig" in info["methods"]
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}


def test_predict_multipart_and_base64_equal_the_predictor(
    client: TestClient, predictor: Predictor, images: list[bytes]
) -> None:
    want = predictor.predict_proba(images).numpy()  # (5, 3)
    first = client.post("/predict", files=files(*images[:3]))
    assert first.status_code == 200, first.text
    second = client.post("/predict", files=files(*images[3:]))
    served = first.json()["predictions"] + second.json()["predictions"]
    for row, prediction in zip(want, served, strict=True):
        assert_probabilities(prediction, row, predictor.labels)
    many = client.post("/predict", json={"images": [b64(image) for image in images[:3]]})
    assert many.status_code == 200
    for row, prediction in zip(want[:3], many.json()["predictions"], strict=True):
        assert_probabilities(prediction, row, predictor.labels)
    one = client.post("/predict", json={"image": "data:image/jpeg;base64," + b64(images[4])})
    assert one.status_code == 200 and "predictions" not in one.json()
    assert_probabilities(one.json(), want[4], predictor.labels)
    assert len({p["label"] for p in served}) > 1  # the trained model tells the classes apart


def test_explain_multipart_and_base64_equal_explain_images(
    client: TestClient, predictor: Predictor, images: list[bytes]
) -> None:
    methods = ["attention", "grad-input", "loo"]
    want = [e.to_json_dict() for e in explain_images(predictor, images[2:4], methods)]
    served = client.post(
        "/explain", files=files(*images[2:4]), data={"method": ["attention", "grad-input,loo"]}
    )
    assert served.status_code == 200, served.text
    got = served.json()["explanations"]
    for item, expected in zip(got, want, strict=True):
        assert item["methods"] == methods and item["label"] == expected["label"]
        assert item["image"] == expected["image"] and item["grid"] == expected["grid"]
        assert item["source"] in ("img0.png", "img1.png")
        for unit, ref in zip(item["units"], expected["units"], strict=True):
            assert unit["box"] == ref["box"]
            for method in methods:
                assert unit["scores"][method] == pytest.approx(ref["scores"][method], abs=1e-6)
        attention = [unit["scores"]["attention"] for unit in item["units"]]
        assert len(attention) == 49 and sum(attention) == pytest.approx(1.0, abs=1e-4)
    targeted = explain_images(predictor, [images[0]], ["ig"], target="stripes")[0].to_json_dict()
    one = client.post("/explain", json={"image": b64(images[0]), "method": "ig", "target": "stripes"})
    assert one.status_code == 200, one.text
    item = one.json()
    assert item["target"] == "stripes" and item["methods"] == ["ig"] and item["source"] is None
    for unit, ref in zip(item["units"], targeted["units"], strict=True):
        assert unit["scores"]["ig"] == pytest.approx(ref["scores"]["ig"], abs=1e-6)


# -- bad images and bad requests --------------------------------------------------------------------------------


def _corrupt(png: bytes) -> bytes:
    """``png`` with one byte of its image data flipped (the chunk's CRC no longer matches)."""
    at = png.index(b"IDAT") + 10
    return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1 :]


def _bad_cases(images: list[bytes]) -> dict[str, tuple[dict[str, Any], int, str]]:
    """name -> (request keyword arguments, status, error kind)."""
    png = images[0]
    big_noise = png_bytes(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    many_pixels = png_bytes(np.full((320, 320, 3), 128, dtype=np.uint8))  # 102,400 pixels in ~1 KB
    assert len(big_noise) > LIMITS.max_image_body_bytes > len(many_pixels)
    return {
        "not-an-image": ({"files": files(b"this is a text file, not a picture")}, 415, "not_an_image"),
        "not-an-image-base64": ({"json": {"image": b64(b"GIF87a? no")}}, 415, "not_an_image"),
        "truncated": ({"files": files(png[: len(png) // 2])}, 400, "truncated_image"),
        "truncated-base64": ({"json": {"images": [b64(png), b64(png[:-30])]}}, 400, "truncated_image"),
        "corrupt": ({"files": files(_corrupt(png))}, 400, "corrupt_image"),
        "too-many-pixels": ({"files": files(many_pixels)}, 413, "too_many_pixels"),
        "too-many-pixels-base64": ({"json": {"image": b64(many_pixels)}}, 413, "too_many_pixels"),
        "body-too-large": ({"files": files(big_noise)}, 413, "body_too_large"),
        "body-too-large-base64": ({"json": {"image": b64(big_noise)}}, 413, "body_too_large"),
        "bad-base64": ({"json": {"images": [b64(png), "@@not-base64@@"]}}, 400, "invalid_base64"),
        "bad-padding": ({"json": {"image": b64(png)[:-2]}}, 400, "invalid_base64"),
        "no-image": ({"json": {"images": []}}, 422, "no_image"),
        "no-file-field": ({"files": [("upload", ("a.png", png, "image/png"))]}, 422, "validation_error"),
        "empty-file": ({"files": files(b"")}, 422, "empty_image"),
        "too-many-images": ({"files": files(png, png, png, png)}, 422, "too_many_images"),
        "both-keys": ({"json": {"image": b64(png), "images": [b64(png)]}}, 422, "validation_error"),
        "a-text": ({"json": {"text": "a picture of a cat"}}, 422, "validation_error"),
        "not-json": ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 422, "invalid_json"),
        "wrong-type": (
            {"content": png, "headers": {"Content-Type": "image/png"}},
            415,
            "unsupported_media_type",
        ),
    }


CASES = [
    "not-an-image", "not-an-image-base64", "truncated", "truncated-base64", "corrupt", "too-many-pixels",
    "too-many-pixels-base64", "body-too-large", "body-too-large-base64", "bad-base64", "bad-padding", "no-image",
    "no-file-field", "empty-file", "too-many-images", "both-keys", "a-text", "not-json", "wrong-type",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_bad_images_get_a_4xx_with_a_message(
    client: TestClient, images: list[bytes], case: str, path: str
) -> None:
    kwargs, status, kind = _bad_cases(images)[case]
    if path == "/explain" and case == "too-many-images":
        status = 422  # 4 > max_explain_images too
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind and body["detail"] and "\n" not in body["detail"]
    if case in ("truncated-base64", "bad-base64"):
        assert "images[1]" in body["detail"]  # names the image
    if case == "a-text":
        assert "this run classifies images" in body["detail"]
    # the server keeps serving
    assert client.post(path, files=files(images[0])).status_code == 200


def test_explain_options_are_checked_before_decoding(client: TestClient, images: list[bytes]) -> None:
    cases = [
        ({"files": files(images[0]), "data": {"method": "shap"}}, 422, "unknown_method"),
        ({"json": {"image": b64(images[0]), "methods": ["attention", "nope"]}}, 422, "unknown_method"),
        ({"files": files(images[0]), "data": {"target": "cat"}}, 422, "unknown_target"),
        ({"files": files(images[0]), "data": {"target": ["dark", "light"]}}, 422, "validation_error"),
        ({"files": files(images[0]), "data": {"layers": "true"}}, 422, "validation_error"),
        ({"json": {"image": b64(images[0]), "method": "ig", "methods": ["ig"]}}, 422, "validation_error"),
        ({"files": files(b"not an image"), "data": {"method": "shap"}}, 422, "unknown_method"),
    ]
    for kwargs, status, kind in cases:
        response = client.post("/explain", **kwargs)
        assert (response.status_code, response.json()["error"]) == (status, kind), response.text
    too_many = client.post("/explain", files=files(images[0], images[1], images[2]))
    assert too_many.status_code == 422 and "limit is 2" in too_many.json()["detail"]
    extra = client.post("/predict", files=files(images[0]), data={"method": "ig"})
    assert extra.status_code == 422 and "'method'" in extra.json()["detail"]


def test_a_file_in_another_form_field_is_told_where_files_go(client: TestClient, images: list[bytes]) -> None:
    """``curl -F image=@x.png``: the answer names the field files go in (it said the field "is not UTF-8 text")."""
    response = client.post("/predict", files={"image": ("shoe.png", images[0], "image/png")})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        "the form field 'image' holds a file (shoe.png); upload files in the field \"file\""
    )
    binary = client.post("/predict", files={"file": ("a.png", images[0])}, data={"note": "\u00e9"})
    assert binary.status_code == 422 and "'note'" in binary.json()["detail"]  # text fields: as before
    # A text field sent as a file part (curl -F method=@m.txt, a browser Blob) is still a text field.
    as_file = client.post("/explain", files=[("file", ("a.png", images[0])), ("method", ("m.txt", b"loo"))])
    assert as_file.status_code == 200, as_file.text
    assert as_file.json()["explanations"][0]["methods"] == ["loo"]


def test_a_text_run_refuses_uploads_as_before(bag_run: Path) -> None:
    app = create_app(TorchBackend(Predictor(bag_run)))
    with TestClient(app) as text_client:
        upload = text_client.post("/predict", files=files(b"\x89PNG"))
        assert upload.status_code == 415 and upload.json()["error"] == "unsupported_media_type"
        assert upload.json()["detail"].startswith(
            "the body must be JSON sent with Content-Type: application/json, got"
        )
        wrong = text_client.post("/predict", json={"images": ["QUJD"]})
        assert wrong.status_code == 422 and "this run classifies texts" in wrong.json()["detail"]
        assert text_client.get("/model").json()["modality"] == "text"


@pytest.mark.slow  # starts a worker process that loads torch and the run (~9 s)
def test_process_workers_explain_images_like_the_library(predictor: Predictor, images: list[bytes]) -> None:
    import asyncio

    arrays = [predictor.task.to_array(image) for image in images[:2]]  # type: ignore[attr-defined]
    want = [e.to_json_dict() for e in explain_images(predictor, arrays, ["attention", "gradient"])]

    async def scenario() -> list[dict[str, Any]]:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=2, timeout_s=120, isolation="process")
        pool.start()
        try:
            return await pool.run(arrays, ["attention", "gradient"], target=None, layers=False)
        finally:
            pool.stop()

    got = asyncio.run(scenario())
    for item, expected in zip(got, want, strict=True):
        assert item["methods"] == expected["methods"] and item["label"] == expected["label"]
        for unit, ref in zip(item["units"], expected["units"], strict=True):
            for method in ("attention", "gradient"):
                assert unit["scores"][method] == pytest.approx(ref["scores"][method], abs=1e-6)


def test_decoding_runs_apart_from_the_event_loop(client: TestClient, images: list[bytes]) -> None:
    """Concurrent uploads are all answered (the decoder's two workers take them in turn)."""
    from concurrent.futures import ThreadPoolExecutor

    def post(i: int) -> int:
        return client.post("/predict", files=files(images[i % len(images)])).status_code

    with ThreadPoolExecutor(6) as pool:
        codes: list[int] = list(pool.map(post, range(12)))
    assert codes == [200] * 12


def test_image_explanations_check_their_deadline_before_every_unit(
    predictor: Predictor, images: list[bytes]
) -> None:
    from attnkit.serve.explaining import ExplainJob, ExplainTimeout, explain_within

    arrays = [predictor.task.to_array(image) for image in images[:2]]  # type: ignore[attr-defined]
    ticks = iter(range(100))
    work = ExplainJob(arrays, ["attention", "gradient", "loo"], None, False, 3.5, 3.5, "image")
    with pytest.raises(ExplainTimeout, match=r"limit of 3.5 s \(4 of 6 image x method steps done\)"):
        explain_within(predictor, work, clock=lambda: float(next(ticks)))  # one second per unit


def test_access_guards_cover_the_image_endpoints(predictor: Predictor, images: list[bytes]) -> None:
    key = "image-key-" + "k" * 20
    config = ServeConfig(
        api_key=key, allowed_hosts=("localhost",), rate_limit=0.01, rate_burst=3, limits=LIMITS
    )
    with TestClient(create_app(TorchBackend(predictor), config), base_url="http://localhost") as guarded:
        assert guarded.post("/predict", files=files(images[0])).status_code == 401
        ok = guarded.post("/predict", files=files(images[0]), headers={"X-API-Key": key})
        assert ok.status_code == 200
        other_host = guarded.post(
            "/predict", files=files(images[0]), headers={"X-API-Key": key, "Host": "evil.example"}
        )
        assert other_host.status_code == 400 and other_host.json()["error"] == "bad_host"
        codes = [
            guarded.post(
                "/explain", files=files(images[0]), headers={"Authorization": f"Bearer {key}"}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 429, 429]  # a burst of 3 (401 and 200 above took two), then the rate applies
