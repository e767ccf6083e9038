"""The HTTP API: predictions equal the library's, bad input is a 4xx JSON error, the server keeps serving."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from attnkit.explain import explain
from attnkit.predictor import Predictor
from attnkit.serve import Limits, ServeConfig, TorchBackend, create_app, load_backend

ServerFactory = Callable[[FastAPI], AbstractContextManager[str]]
LIMITS = Limits(max_texts=4, max_chars=200, max_body_bytes=2000, max_explain_texts=2)


@pytest.fixture(scope="module")
def predictor(bag_run: Path) -> Predictor:
    return Predictor(bag_run)


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[TestClient]:
    app = create_app(TorchBackend(predictor), ServeConfig(limits=LIMITS))
    with TestClient(app) as test_client:
        yield test_client


def assert_matches(served: dict[str, Any], expected: dict[str, Any]) -> None:
    assert served["label"] == expected["label"]
    assert served["probabilities"].keys() == expected["probabilities"].keys()
    for label, p in expected["probabilities"].items():
        assert served["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_health_model_docs_and_page(client: TestClient, predictor: Predictor) -> None:
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/model").json()
    assert info["labels"] == predictor.labels and info["model"] == "bag-attn" and info["backend"] == "torch"
    assert info["metrics"]["test"]["accuracy"] == pytest.approx(predictor.metrics["test"]["accuracy"])
    assert info["name"] == "bag-attn" and "history" not in info["metrics"]
    assert info["limits"]["max_texts"] == LIMITS.max_texts and info["self_attention"] is False
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/health", "/model"} <= set(paths)
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in page.text and "http" not in page.text.split("<main>")[0]  # no CDN
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    renderer = client.get("/assets/attnkit-viz.js")  # the shared explanation renderer
    assert renderer.status_code == 200 and "window.attnkit" in renderer.text


def test_predict_one_and_many_equal_the_predictor(client: TestClient, predictor: Predictor) -> None:
    texts = ["a great film", "the plot was awful and boring .", "it was"]
    expected = [p.to_json_dict() for p in predictor.predict(texts)]
    one = client.post("/predict", json={"text": texts[0]})
    assert one.status_code == 200
    assert_matches(one.json(), expected[0])
    many = client.post("/predict", json={"texts": texts})
    assert many.status_code == 200
    for served, want in zip(many.json()["predictions"], expected, strict=True):
        assert_matches(served, want)


def test_explain_returns_the_explanation_format(client: TestClient, predictor: Predictor) -> None:
    text = "The plot was GREAT, really."
    served = client.post("/explain", json={"text": text, "methods": ["attention", "grad-input"]})
    assert served.status_code == 200
    body = served.json()
    expected = explain(predictor, [text], ["attention", "grad-input"])[0].to_json_dict()
    assert body["methods"] == ["attention", "grad-input"] and body["label"] == expected["label"]
    assert [t["text"] for t in body["tokens"]] == [text[t["start"] : t["end"]] for t in body["tokens"]]
    assert [t["text"] for t in body["tokens"]] == ["The", "plot", "was", "GREAT", ",", "really", "."]
    for got, want in zip(body["tokens"], expected["tokens"], strict=True):
        for method in ("attention", "grad-input"):
            assert got["scores"][method] == pytest.approx(want["scores"][method], abs=1e-5)
    assert sum(t["scores"]["attention"] for t in body["tokens"]) == pytest.approx(1.0, abs=1e-4)
    assert body["signed"] == {"attention": False, "grad-input": True} and body["layers"] is None

    several = client.post(
        "/explain", json={"texts": ["a great film", "awful"], "method": "loo", "target": "neg"}
    )
    assert several.status_code == 200
    items = several.json()["explanations"]
    assert [e["target"] for e in items] == ["neg", "neg"] and all(e["methods"] == ["loo"] for e in items)
    default = client.post("/explain", json={"text": "a great film"}).json()
    assert default["methods"] == ["attention"]


def _error_cases() -> list[tuple[str, dict[str, Any], int, str, str]]:
    """(path, request kwargs, status, error kind, words in the detail)."""
    long_text = "great " * 40
    return [
        ("/predict", {"json": {"text": ""}}, 422, "empty_text", "empty"),
        ("/predict", {"json": {"texts": ["fine", "   \n"]}}, 422, "empty_text", "texts[1]"),
        ("/predict", {"json": {"texts": []}}, 422, "validation_error", "no text"),
        ("/predict", {"json": {}}, 422, "validation_error", "no text"),
        ("/predict", {"json": {"texts": ["a"] * 5}}, 422, "too_many_texts", "limit is 4"),
        ("/predict", {"json": {"text": long_text}}, 422, "text_too_long", "limit is 200"),
        ("/predict", {"json": {"text": 5}}, 422, "validation_error", "text: Input should be a valid string"),
        ("/predict", {"json": {"texts": "one string"}}, 422, "validation_error", "texts"),
        ("/predict", {"json": {"texts": ["ok", None]}}, 422, "validation_error", "texts[1]"),
        ("/predict", {"json": {"text": "a", "texts": ["b"]}}, 422, "validation_error", "not both"),
        ("/predict", {"json": {"txt": "a"}}, 422, "validation_error", "txt"),
        ("/predict", {"json": ["a", "b"]}, 422, "validation_error", "JSON object"),
        ("/predict", {"content": b'{"text": "a"', "headers": {"content-type": "application/json"}}, 422,
         "invalid_json", "not valid JSON"),
        ("/predict", {"content": b'{"text": "caf\xe9"}', "headers": {"content-type": "application/json"}}, 400,
         "invalid_utf8", "UTF-8"),
        ("/predict", {"content": b'{"text": "\\ud800 x"}', "headers": {"content-type": "application/json"}}, 422,
         "invalid_text", "surrogate"),
        ("/predict", {"content": b'{"text": "' + b"a" * 3000 + b'"}',
                      "headers": {"content-type": "application/json"}}, 413, "body_too_large", "2000 bytes"),
        ("/predict", {"content": b"text=a", "headers": {"content-type": "application/x-www-form-urlencoded"}},
         415, "unsupported_media_type", "Content-Type: application/json"),
        ("/explain", {"json": {"text": "a", "method": "magic"}}, 422, "unknown_method", "magic"),
        ("/explain", {"json": {"text": "a", "methods": ["attention", "shap"]}}, 422, "unknown_method", "shap"),
        ("/explain", {"json": {"text": "a", "method": "ig", "methods": ["ig"]}}, 422, "validation_error",
         "not both"),
        ("/explain", {"json": {"text": "a", "target": "maybe"}}, 422, "unknown_target", "pos"),
        # A number names its class ("1", not a label of this run), as it does in data; a boolean is no label.
        ("/explain", {"json": {"text": "a", "target": 1.0}}, 422, "unknown_target", "'1'"),
        ("/explain", {"json": {"text": "a", "target": True}}, 422, "validation_error", "target"),
        ("/explain", {"json": {"text": "a", "layers": True}}, 422, "no_layers", "self-attention"),
        ("/explain", {"json": {"text": "a", "layers": "yes"}}, 422, "validation_error", "layers"),
        ("/explain", {"json": {"texts": ["a", "b", "c"]}}, 422, "too_many_texts", "limit is 2"),
        ("/explain", {"json": {"text": ""}}, 422, "empty_text", "empty"),
    ]  # fmt: skip


@pytest.mark.parametrize(("path", "kwargs", "status", "kind", "words"), _error_cases())
def test_bad_input_is_a_4xx_json_error(
    client: TestClient, path: str, kwargs: dict[str, Any], status: int, kind: str, words: str
) -> None:
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind and isinstance(body["detail"], str)
    assert words in body["detail"], body["detail"]
    assert client.get("/health").status_code == 200
    assert client.post("/predict", json={"text": "still serving"}).status_code == 200


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


class SlowBackend(TorchBackend):
    """The real model, plus a delay per call and a count of calls."""

    def __init__(self, predictor: Predictor, delay: float) -> None:
        super().__init__(predictor)
        self.delay = delay
        self.calls = 0

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay)
        return super().predict_proba(texts)


def test_concurrent_clients_are_batched_over_real_http(
    predictor: Predictor, running_server: ServerFactory
) -> None:
    backend = SlowBackend(predictor, delay=0.05)
    app = create_app(backend, ServeConfig(max_batch_size=16, max_wait_ms=20))
    texts = [f"the {'great' if i % 2 else 'awful'} film number {i}" + " and" * (i % 7) for i in range(24)]
    expected = {t: p.to_json_dict() for t, p in zip(texts, predictor.predict(texts), strict=True)}
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:

        def ask(text: str) -> dict[str, Any]:
            response = http.post("/predict", json={"text": text})
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, texts))
        stats = http.get("/health").json()["batching"]
    for text, answer in zip(texts, answers, strict=True):
        assert_matches(answer, expected[text])  # each caller got its own result
    assert stats["requests"] == len(texts) and stats["items"] == len(texts)
    assert backend.calls == stats["calls"] < len(texts) // 2  # batched
    assert stats["largest_batch"] > 1


def test_overload_is_503_and_the_server_recovers(predictor: Predictor, running_server: ServerFactory) -> None:
    backend = SlowBackend(predictor, delay=0.3)
    app = create_app(backend, ServeConfig(max_batch_size=1, max_wait_ms=0, max_queue=2))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: http.post("/predict", json={"text": f"film {i}"}), range(8)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) == {200, 503} and codes.count(200) >= 2
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.json()["error"] == "overloaded" and refused.headers["retry-after"] == "1"
        assert http.get("/health").status_code == 200
        assert http.post("/predict", json={"text": "calm again"}).status_code == 200


def test_oversized_bodies_over_real_http(predictor: Predictor, running_server: ServerFactory) -> None:
    app = create_app(TorchBackend(predictor), ServeConfig(limits=Limits(max_body_bytes=1000)))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        announced = http.post("/predict", json={"text": "a" * 2000})
        assert announced.status_code == 413 and announced.json()["error"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            yield b'{"text": "'
            for _ in range(20):
                yield b"a" * 100
            yield b'"}'

        chunked = http.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"] == "body_too_large"
        assert http.post("/predict", json={"text": "short"}).status_code == 200
        assert http.get("/health").json()["status"] == "ok"


def test_explain_runs_off_the_event_loop(
    predictor: Predictor, running_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a slow explanation runs, /health still answers at once."""
    import attnkit.explain

    real_explain = attnkit.explain.explain

    def slow_explain(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(attnkit.explain, "explain", slow_explain)
    app = create_app(TorchBackend(predictor))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        result: dict[str, Any] = {}
        slow = threading.Thread(
            target=lambda: result.update(r=http.post("/explain", json={"text": "great film", "method": "ig"}))
        )
        slow.start()
        time.sleep(0.2)
        start = time.perf_counter()
        assert http.get("/health").status_code == 200
        health_seconds = time.perf_counter() - start
        assert slow.is_alive()  # the explanation is still running
        slow.join()
    assert health_seconds < 0.5
    assert result["r"].status_code == 200 and result["r"].json()["methods"] == ["ig"]


def test_load_backend_rejects_bad_choices(bag_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend(bag_run, "tensorflow")
    with pytest.raises(FileNotFoundError, match="attnkit export"):
        load_backend(bag_run, "onnx", onnx_path=tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="run directory"):
        load_backend(tmp_path, "torch")


def test_a_numeric_target_names_its_class() -> None:
    """A run trained on labels 0 / 1 is asked {"target": 1}; it got "Input should be a valid string"."""
    from attnkit.serve.schemas import ExplainRequest, ImageExplainRequest

    assert ExplainRequest(text="a", target=1).target == "1"
    assert ExplainRequest(text="a", target=2.0).target == "2"
    assert ImageExplainRequest(image="aGk=", target=0).target == "0"
    assert ExplainRequest(text="a", target=" x ").target == " x "  # strings as given
    with pytest.raises(ValueError, match="target"):  # NaN names no class (it became None: the predicted one)
        ExplainRequest(text="a", target=float("nan"))
