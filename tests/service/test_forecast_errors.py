"""Bad input gets a 4xx in the one error shape, with a message naming the field and the limit."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app

SERIES = [float(t % 7) for t in range(20)]
ROWS = [[float(t), 1.0] for t in range(20)]


@pytest.fixture
def limited(models_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        models_dir=models_dir,
        device="cpu",
        max_series=3,
        max_points=50,
        max_horizon=20,
        max_samples=10,
        max_paths=20,
        max_body_bytes=2000,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def assert_error(response: Any, status: int, type: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type
    for fragment in fragments:
        assert fragment in body["error"]["message"]


@pytest.mark.parametrize(
    ("model", "body", "status", "type", "fragments"),
    [
        ("nope", {"series": SERIES}, 404, "model_not_found", ["'nope'", "tiny"]),
        ("tiny", {"series": []}, 422, "invalid_series", ["series is empty"]),
        ("tiny", {"batch": [SERIES, []]}, 422, "invalid_series", ["batch[1] is empty"]),
        ("tiny", {"batch": []}, 422, "invalid_series", ["batch is empty"]),
        ("tiny", {"series": [1.0, 2.0, 3.0]}, 422, "invalid_series", ["3 points", "min_length=4"]),
        ("tiny", {"series": [1, 2, None, 4, 5]}, 422, "validation_error", ["series.2: "]),
        ("tiny", {"series": "12345"}, 422, "validation_error", ["series"]),
        ("tiny", {"series": ROWS}, 422, "invalid_series", ["rows of 2 features", "'tiny'"]),
        ("multi", {"series": SERIES}, 422, "invalid_series", ["univariate", "2 features"]),
        ("multi", {"series": [[1.0, 2.0, 3.0]] * 9}, 422, "invalid_series", ["3 features"]),
        ("multi", {"series": [[1.0, 2.0], [3.0]] * 5}, 422, "invalid_series", ["ragged"]),
        ("tiny", {"batch": [SERIES, ROWS]}, 422, "invalid_series", ["mixes univariate"]),
        (
            "multi",
            {"batch": [ROWS, [[1.0, 2.0, 3.0]] * 9]},
            422,
            "invalid_series",
            ["different feature counts"],
        ),
        ("tiny", {"series": SERIES, "batch": [SERIES]}, 422, "validation_error", ["exactly one"]),
        ("tiny", {}, 422, "validation_error", ["exactly one"]),
        ("tiny", {"series": SERIES, "horizon": 0}, 422, "validation_error", ["horizon"]),
        ("tiny", {"series": SERIES, "horizon": -2}, 422, "validation_error", ["horizon"]),
        (
            "tiny",
            {"series": SERIES, "horizon": 1001},
            422,
            "limit_exceeded",
            ["horizon=1001", "max_horizon=1000"],
        ),
        (
            "tiny",
            {"series": SERIES, "horizon": 4, "strategy": "direct"},
            422,
            "unsupported_forecast",
            ["horizon=4", "model horizon=3", "'direct'"],
        ),
        (
            "multi",
            {"series": ROWS, "horizon": 4},
            422,
            "unsupported_forecast",
            ["future_covariates", "at least 3 rows"],
        ),
        ("tiny", {"series": SERIES, "strategy": "sideways"}, 422, "validation_error", ["strategy"]),
        (
            "tiny",
            {"series": SERIES, "uncertainty": {"samples": 0}},
            422,
            "validation_error",
            ["uncertainty.samples"],
        ),
        (
            "tiny",
            {"series": SERIES, "uncertainty": {"samples": 1001}},
            422,
            "limit_exceeded",
            ["uncertainty.samples=1001", "max_samples=1000"],
        ),
        (
            "tiny",
            {"series": SERIES, "uncertainty": {"quantiles": [0.5, 1.0]}},
            422,
            "validation_error",
            ["uncertainty.quantiles.1"],
        ),
        (
            "tiny",
            {"series": SERIES, "uncertainty": {"quantiles": [0.0]}},
            422,
            "validation_error",
            ["uncertainty.quantiles.0"],
        ),
        (
            "multi",
            {"series": ROWS, "uncertainty": {"samples": 10}},
            422,
            "unsupported_forecast",
            ["no MC-dropout"],
        ),
        ("tiny", {"series": SERIES, "horizn": 3}, 422, "validation_error", ["horizn"]),
    ],
)
def test_bad_request(
    client: TestClient,
    model: str,
    body: dict[str, Any],
    status: int,
    type: str,
    fragments: list[str],
) -> None:
    response = client.post(f"/v1/models/{model}/forecast", json=body)

    assert_error(response, status, type, *fragments)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_tokens_are_refused(client: TestClient, token: str) -> None:
    body = '{"series": [1, 2, 3, TOKEN, 5, 6]}'.replace("TOKEN", token)

    response = client.post(
        "/v1/models/tiny/forecast", content=body, headers={"content-type": "application/json"}
    )

    assert_error(response, 422, "validation_error", "series.3: Input should be a finite number")


def test_non_finite_row_value_names_the_row(client: TestClient) -> None:
    body = '{"batch": [[1, 2, 3, 4], [[1], [2], [NaN], [4]]]}'

    response = client.post(
        "/v1/models/tiny/forecast", content=body, headers={"content-type": "application/json"}
    )

    assert_error(response, 422, "validation_error", "batch.1.2.0: Input should be a finite number")


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/v1/models/tiny/forecast",
        content=b'{"series": [1, 2,',
        headers={"content-type": "application/json"},
    )

    assert_error(response, 400, "malformed_json", "not valid JSON")


@pytest.mark.parametrize(
    ("body", "type", "fragments"),
    [
        ({"batch": [SERIES] * 4}, "limit_exceeded", ["4 series", "max_series=3"]),
        ({"series": [1.0] * 51}, "limit_exceeded", ["series has 51 points", "max_points=50"]),
        ({"batch": [SERIES, [1.0] * 51]}, "limit_exceeded", ["batch[1]", "max_points=50"]),
        ({"series": SERIES, "horizon": 21}, "limit_exceeded", ["max_horizon=20"]),
        (
            {"series": SERIES, "uncertainty": {"samples": 11}},
            "limit_exceeded",
            ["max_samples=10"],
        ),
        (
            {"batch": [SERIES] * 3, "uncertainty": {"samples": 7}},
            "limit_exceeded",
            ["21 paths", "max_paths=20"],
        ),
    ],
)
def test_configured_limits(
    limited: TestClient, body: dict[str, Any], type: str, fragments: list[str]
) -> None:
    response = limited.post("/v1/models/tiny/forecast", json=body)

    assert_error(response, 422, type, *fragments)


def test_limits_are_inclusive(limited: TestClient) -> None:
    body = {"batch": [[1.0] * 50, SERIES], "horizon": 20, "uncertainty": {"samples": 10}}

    assert limited.post("/v1/models/tiny/forecast", json=body).status_code == 200


def test_body_over_the_size_limit_by_content_length(limited: TestClient) -> None:
    response = limited.post("/v1/models/tiny/forecast", json={"series": [0.123456789] * 300})

    assert_error(response, 413, "payload_too_large", "max_body_bytes=2000")


def test_body_over_the_size_limit_when_streamed(limited: TestClient) -> None:
    chunks = [b'{"series": [', *[b"0.123456789, " for _ in range(300)], b"1.0]}"]

    response = limited.post(
        "/v1/models/tiny/forecast",
        content=iter(chunks),  # chunked transfer: no Content-Length to check up front
        headers={"content-type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large", "max_body_bytes=2000")


def test_streamed_body_within_the_limit_is_served(limited: TestClient) -> None:
    chunks = [b'{"series": [', *[b"0.5, " for _ in range(20)], b"1.0]}"]

    response = limited.post(
        "/v1/models/tiny/forecast",
        content=iter(chunks),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 200, response.text


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "http_error")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"series": [1.0, 2.0, 3.0, 4.0, 5.0], "horizon": "2"}, "horizon"),
        ({"series": [1.0, 2.0, 3.0, 4.0, 5.0], "horizon": True}, "horizon"),
        ({"series": [1.0, "2", 3.0, 4.0, 5.0]}, "series"),
        ({"series": [1.0, 2.0, 3.0, 4.0, 5.0], "uncertainty": {"samples": "10"}}, "samples"),
    ],
)
def test_numbers_must_be_json_numbers(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/models/tiny/forecast", json=body)
    assert response.status_code == 422
    assert field in response.json()["error"]["message"]


def test_an_unexpected_error_is_a_500_that_tells_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from service import forecasting

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(forecasting, "forecast", broken)
    response = client.post("/v1/models/tiny/forecast", json={"series": [1.0, 2.0, 3.0, 4.0, 5.0]})

    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "internal_error", "message": "internal server error"}
    }
    assert "secret internals" not in response.text
    assert "secret internals" in caplog.text  # logged with the traceback
