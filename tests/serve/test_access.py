"""Who may use the server: Host check, API key, rate limit, refusing unauthenticated binds beyond loopback;
what /model tells (no file paths); the CLI's --port, --host and --device checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from attnkit.cli import main
from attnkit.predictor import Predictor
from attnkit.serve import (
    ServeConfig,
    TorchBackend,
    check_exposure,
    check_port_free,
    create_app,
    read_api_key,
    resolve_device,
)
from attnkit.serve.security import TokenBuckets, client_key, default_allowed_hosts, host_name, is_loopback

KEY = "k3y-" + "x" * 28


@pytest.fixture(scope="module")
def predictor(bag_run: Path) -> Predictor:
    return Predictor(bag_run)


@pytest.fixture(scope="module")
def guarded(predictor: Predictor) -> Iterator[TestClient]:
    """An app with a key and the loopback Host names; the client speaks as http://localhost:8000."""
    config = check_exposure(ServeConfig(api_key=KEY), "127.0.0.1")
    with TestClient(create_app(TorchBackend(predictor), config), base_url="http://localhost:8000") as client:
        yield client


# -- Host header (DNS rebinding) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost:8000", "localhost"), ("[::1]:8000", "::1"), ("127.0.0.1", "127.0.0.1"), ("EVIL.com", "evil.com"),
     ("::1", "::1"), ("", "")],
)  # fmt: skip
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_default_allowed_hosts_follow_the_bind_address() -> None:
    assert default_allowed_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert default_allowed_hosts("127.0.0.2") == ("localhost", "127.0.0.1", "::1", "127.0.0.2")
    assert default_allowed_hosts("10.1.2.3") == ("localhost", "127.0.0.1", "::1", "10.1.2.3")
    assert default_allowed_hosts("0.0.0.0") is None and default_allowed_hosts("::") is None
    assert is_loopback("localhost") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")


def test_a_rebound_host_is_refused(guarded: TestClient) -> None:
    auth = {"X-API-Key": KEY}
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000"):
        assert (
            guarded.post("/predict", json={"text": "fine"}, headers={**auth, "Host": host}).status_code == 200
        )
    refused = guarded.post(
        "/predict", json={"text": "fine"}, headers={**auth, "Host": "attacker.example:8000"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "bad_host" and "attacker.example" in refused.json()["detail"]
    assert guarded.get("/health", headers={"Host": "attacker.example"}).status_code == 400


def test_any_host_with_a_star(predictor: Predictor) -> None:
    app = create_app(TorchBackend(predictor), ServeConfig(allowed_hosts=("*",)))
    with TestClient(app, base_url="http://whatever.example") as client:
        assert client.get("/health").status_code == 200


# -- API key --------------------------------------------------------------------------------------------------


def test_api_key_is_required_except_on_open_paths(guarded: TestClient) -> None:
    missing = guarded.post("/predict", json={"text": "fine"})
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for bad in ({"X-API-Key": KEY + "x"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer "}):
        assert guarded.post("/predict", json={"text": "fine"}, headers=bad).status_code == 401
    assert guarded.get("/model").status_code == 401
    assert guarded.post("/explain", json={"text": "fine"}).status_code == 401
    assert guarded.post("/predict", json={"text": "fine"}, headers={"X-API-Key": KEY}).status_code == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert guarded.post("/predict", json={"text": "fine"}, headers=bearer).status_code == 200
    assert guarded.get("/model", headers=bearer).status_code == 200
    for path in ("/health", "/", "/static/app.js", "/docs", "/openapi.json", "/docs-assets/swagger-ui.css"):
        assert guarded.get(path).status_code == 200, path
    schema = guarded.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/predict"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_read_api_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n", encoding="utf-8")
    assert read_api_key(path, environ={}) == KEY
    assert read_api_key(None, environ={"ATTNKIT_API_KEY": f"  {KEY} "}) == KEY
    assert read_api_key(None, environ={}) is None
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_api_key(path, environ={})
    path.write_text("short\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 16"):
        read_api_key(path, environ={})
    with pytest.raises(ValueError, match="cannot read the API key file"):
        read_api_key(tmp_path / "missing", environ={})


def test_the_key_never_shows_in_the_config() -> None:
    config = ServeConfig(api_key=KEY)
    assert KEY not in repr(config) and KEY not in json.dumps(config.to_json_dict())
    assert config.to_json_dict()["api_key"] is True


def test_unauthenticated_bind_beyond_loopback_is_refused() -> None:
    with pytest.raises(ValueError, match="--allow-unauthenticated"):
        check_exposure(ServeConfig(), "0.0.0.0")
    assert check_exposure(ServeConfig(allow_unauthenticated=True), "0.0.0.0").allowed_hosts is None
    assert check_exposure(ServeConfig(api_key=KEY), "192.168.1.4").allowed_hosts == (
        "localhost", "127.0.0.1", "::1", "192.168.1.4",
    )  # fmt: skip
    given = check_exposure(ServeConfig(allowed_hosts=("models.example",)), "127.0.0.1")
    assert given.allowed_hosts == ("models.example",)


# -- rate limit -----------------------------------------------------------------------------------------------


def test_token_buckets_against_a_hand_count() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert buckets.take("a") == pytest.approx(0.5)  # empty: one token comes in 1/rate s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] = 0.25  # half a token
    assert buckets.take("a") == pytest.approx(0.25)
    now[0] = 10.0  # refilled, but never beyond the burst
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_token_buckets_forget_the_oldest_clients() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_clients=2, clock=lambda: 0.0)
    buckets.take("a")
    buckets.take("b")
    buckets.take("c")  # "a" is forgotten and comes back with a full bucket
    assert buckets.take("a") == 0.0 and buckets.take("c") > 0


def test_client_key_groups_ipv6_by_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1" and client_key("10.0.0.1") == "10.0.0.1"


def test_over_the_rate_is_429_with_retry_after(predictor: Predictor) -> None:
    app = create_app(TorchBackend(predictor), ServeConfig(rate_limit=0.5, rate_burst=3))
    with TestClient(app) as client:
        codes = [client.post("/predict", json={"text": "fine"}).status_code for _ in range(4)]
        limited = client.post("/predict", json={"text": "fine"})
        assert client.get("/health").status_code == 200  # never counted
    assert codes == [200, 200, 200, 429]
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert limited.headers["retry-after"] == "2"  # one token every 2 s


# -- /model ---------------------------------------------------------------------------------------------------


def test_model_info_has_what_a_client_needs_and_no_paths(predictor: Predictor, bag_run: Path) -> None:
    with TestClient(create_app(TorchBackend(predictor))) as client:
        response = client.get("/model")
    info = response.json()
    assert info["labels"] == predictor.labels and info["name"] == "bag-attn"
    assert info["max_length"] == predictor.tokenizer.config.max_length
    assert info["truncation"] == predictor.tokenizer.config.truncation == "head"
    assert info["temperature"] == pytest.approx(predictor.temperature)
    assert info["methods"] == ["attention", "attention-value", "gradient", "grad-input", "ig", "loo"]
    assert info["metrics"]["test"]["accuracy"] == pytest.approx(predictor.metrics["test"]["accuracy"])
    assert info["explain"]["timeout_s"] == 30.0 and info["device"] == "cpu"
    # The run's config names its data files and metrics.json its directory: none of that is served.
    data_file = predictor.config.data.train
    assert isinstance(data_file, str) and data_file in json.dumps(predictor.config.to_dict())
    for secret in (str(bag_run), str(bag_run.parent), data_file, "/tmp"):
        assert secret not in response.text, secret


# -- the CLI --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_bad_port_is_refused_by_the_cli(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "some/run", "--port", port])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and ("0..65535" in err or "not a port number" in err)


def test_cli_refuses_an_open_bind_without_a_key(bag_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(bag_run), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--api-key-file" in err[0] and "Traceback" not in err[0]


def test_cli_rejects_a_short_key_file(
    bag_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "key").write_text("abc\n", encoding="utf-8")
    assert main(["serve", str(bag_run), "--api-key-file", str(tmp_path / "key")]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_device_choice() -> None:
    """``attnkit.serve.resolve_device`` is the one resolver of :mod:`attnkit.devices` (kept importable here)."""
    import torch

    from attnkit import devices

    assert resolve_device is devices.resolve_device
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda"):
        resolve_device("tpu")


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_serve_device_accepts_the_names_of_the_other_commands(name: str) -> None:
    from attnkit.cli import build_parser

    for command in (["serve", "runs/x"], ["predict", "runs/x", "t"]):
        assert build_parser().parse_args([*command, "--device", name]).device == name


def test_cli_serve_on_a_missing_gpu_is_one_line(bag_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the error on a machine without a GPU")
    assert main(["serve", str(bag_run), "--device", "cuda:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device is available" in err[0] and "Traceback" not in err[0]


def test_serve_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    options = capsys.readouterr().out.split("options:", 1)[1]
    for option, default in [
        ("--header-timeout", "10.0"), ("--body-timeout", "30.0"), ("--keep-alive-timeout", "5.0"),
        ("--max-connections", "1000"), ("--max-header-bytes", "65536"), ("--backlog", "2048"),
        ("--explain-timeout", "30.0"), ("--explain-isolation", "process"), ("--explain-workers", "1"),
        ("--max-pending-explains", "4"), ("--device", "auto"), ("--rate-burst", "20"),
    ]:  # fmt: skip
        paragraph = " ".join(options.split(option, 1)[1].split("\n  -", 1)[0].split())
        assert f"default: {default}" in paragraph, (option, paragraph)


def test_a_port_in_use_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn failed only after the model had loaded, with its own "[Errno 98]" line and exit code 3."""
    import socket

    import attnkit.serve as serve
    from attnkit.cli import main

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(serve, "load_backend", no_load)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["serve", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnkit serve: error: cannot listen on 127.0.0.1:")
    assert "another server holds the port: stop it, or pick another with --port" in err
    assert len(err.strip().splitlines()) == 1
    check_port_free("127.0.0.1", port)  # free again once the holder closed
