"""API keys on every route but the probes, admin endpoints only with keys, CORS only when set."""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from service.api import access

KEYS = ["first-key-0123456789", "second-key-0123456789", "third-key-0123456789"]
SERIES = {"series": [1.0] * 12}
OIP_BODY = {"inputs": [{"name": "x", "shape": [1, 12, 1], "datatype": "FP32", "data": [0.0] * 12}]}
TIMESERIES_BODY = {
    "model": "tiny",
    "inputs": [{"name": "s", "type": "UNIVARIATE_TIME_SERIES", "data": [1.0] * 12}],
    "options": {"horizon": 2},
}
# (method, path, body): every kind of route, the fast-path forecast route included.
PROTECTED = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/tiny", None),
    ("POST", "/v1/models/tiny/forecast", SERIES),
    ("POST", "/v1/timeseries/forecast", TIMESERIES_BODY),
    ("GET", "/v1/timeseries/models", None),
    ("GET", "/v2", None),
    ("GET", "/v2/models/tiny", None),
    ("POST", "/v2/models/tiny/infer", OIP_BODY),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("POST", "/v1/admin/models/tiny/reload", None),
    ("POST", "/v2/repository/index", None),
    ("GET", "/v1/nowhere", None),
]
PROBES = ["/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"]


@pytest.fixture
def keyed(models_dir: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=models_dir, device="cpu", api_keys=",".join(KEYS))
    with TestClient(create_app(settings)) as client:
        yield client


def call(client: TestClient, method: str, path: str, body: Any, **headers: str) -> Any:
    return client.request(method, path, json=body, headers=headers)


def test_keys_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_API_KEYS", f" {KEYS[0]} ,,{KEYS[1]}")
    monkeypatch.setenv("FORECAST_CORS_ORIGINS", "https://a.example, https://b.example")

    settings = Settings()

    assert [k.get_secret_value() for k in settings.api_keys] == KEYS[:2]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert KEYS[0] not in repr(settings)
    assert KEYS[0] not in str(settings.model_dump())


def test_without_keys_every_route_is_open_but_admin(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 200
    assert client.post("/v1/models/tiny/forecast", json=SERIES).status_code == 200

    native = client.post("/v1/admin/models/tiny/reload")
    oip = client.post("/v2/repository/models/tiny/load")

    assert native.status_code == oip.status_code == 403
    assert native.json()["error"]["type"] == "forbidden"
    assert "FORECAST_API_KEYS" in native.json()["error"]["message"]
    assert "FORECAST_API_KEYS" in oip.json()["error"]  # the OIP's {"error": "<message>"}


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_route_needs_a_key(keyed: TestClient, method: str, path: str, body: Any) -> None:
    response = call(keyed, method, path, body)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    assert message == access.UNAUTHORIZED
    if path.startswith("/v1/timeseries/"):
        assert error["code"] == "401"  # KServe's error shape
    elif not path.startswith("/v2"):
        assert error["type"] == "unauthorized"


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_a_valid_key_opens_every_route(
    keyed: TestClient, method: str, path: str, body: Any
) -> None:
    bearer = call(keyed, method, path, body, Authorization=f"Bearer {KEYS[1]}")
    header = call(keyed, method, path, body, **{"X-API-Key": KEYS[2]})

    assert bearer.status_code not in (401, 403), bearer.text
    assert header.status_code == bearer.status_code


@pytest.mark.parametrize("path", PROBES)
def test_probes_need_no_key(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": f"Bearer {KEYS[0]}x"},
        {"Authorization": f"Bearer {KEYS[0][:-1]}"},
        {"Authorization": "Bearer"},
        {"X-API-Key": ""},
        {"X-API-Key": KEYS[0].upper()},
    ],
)
def test_a_401_never_says_which_part_failed(keyed: TestClient, headers: dict[str, str]) -> None:
    response = keyed.post("/v1/models/tiny/forecast", json=SERIES, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": {"type": "unauthorized", "message": access.UNAUTHORIZED}}


def test_bearer_scheme_is_case_insensitive(keyed: TestClient) -> None:
    response = keyed.get("/v1/models", headers={"Authorization": f"bearer {KEYS[0]}"})

    assert response.status_code == 200


def test_every_key_is_compared_even_after_a_match(
    keyed: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = access.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", spy)

    for key in KEYS:
        compared.clear()
        assert keyed.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
        # The first key matches as surely as the last: the time taken does not tell which.
        assert len(compared) == len(KEYS)
        assert {len(a) for a, _ in compared} == {32}  # digests: the keys' lengths do not show


def test_keys_never_reach_logs_errors_or_metrics(
    keyed: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-a-key-but-secret-looking"
    caplog.set_level(logging.DEBUG)

    refused = keyed.get("/v1/models", headers={"Authorization": f"Bearer {wrong}"})
    served = keyed.post(
        "/v1/models/tiny/forecast", json=SERIES, headers={"Authorization": f"Bearer {KEYS[0]}"}
    )
    metrics = keyed.get("/metrics", headers={"X-API-Key": KEYS[0]}).text

    assert (refused.status_code, served.status_code) == (401, 200)
    for secret in [wrong, *KEYS]:
        assert secret not in caplog.text
        assert secret not in refused.text
        assert secret not in served.text
        assert secret not in metrics
    assert 'forecast_errors_total{type="unauthorized"}' in metrics


# --- CORS ------------------------------------------------------------------------------------------

ORIGIN = "https://dashboard.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, authorization",
}


def test_cors_is_off_by_default(client: TestClient) -> None:
    preflight = client.options("/v1/models/tiny/forecast", headers=PREFLIGHT)
    simple = client.get("/v1/models", headers={"Origin": ORIGIN})

    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allows_the_configured_origins_only(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, device="cpu", cors_origins=ORIGIN, api_keys=KEYS[0])
    with TestClient(create_app(settings)) as client:
        preflight = client.options("/v1/models/tiny/forecast", headers=PREFLIGHT)
        other = client.options(
            "/v1/models/tiny/forecast", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        refused = client.get("/v1/models", headers={"Origin": ORIGIN})
        served = client.get("/v1/models", headers={"Origin": ORIGIN, "X-API-Key": KEYS[0]})
        foreign = client.get(
            "/v1/models", headers={"Origin": "https://evil.example", "X-API-Key": KEYS[0]}
        )

    # The preflight carries no key and is answered; the browser may then send the key.
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # A 401 carries the CORS headers, so that the page can read why.
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert served.status_code == 200
    assert served.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in foreign.headers
