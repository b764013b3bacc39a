"""The KServe time-series API: the spec's own example, partial failures, timestamps, errors."""

import copy
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.timeseries import forecast_start

# The request example of KServe's "TimeSeries LLM Forecast API" reference, with our model's name.
KSERVE_EXAMPLE: dict[str, Any] = {
    "model": "tiny",
    "inputs": [
        {
            "type": "univariate_time_series",
            "name": "stock_price",
            "series": [120, 122, 125, 127, 130, 133, 135],
            "frequency": "D",
            "start_timestamp": "2025-06-05T13:10:00Z",
        },
        {
            "type": "univariate_time_series",
            "name": "humidity",
            "series": [33, 34, 35, 36, 37],
            "frequency": "H",
            "start_timestamp": "2025-06-05T13:10:00Z",
        },
    ],
    "options": {"horizon": 4, "quantiles": [0.1, 0.5, 0.9], "other_options": "value"},
    "metadata": {"request_id": "user_defined_request_id", "other_data": "value"},
    "other_properties": "value",
}


def request(**options: Any) -> dict[str, Any]:
    body = copy.deepcopy(KSERVE_EXAMPLE)
    body["options"].update(options)
    return body


def test_kserve_example_gets_a_valid_response(client: TestClient) -> None:
    response = client.post("/v1/timeseries/forecast", json=KSERVE_EXAMPLE)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["error"] is None
    assert body["model"] == "tiny"
    assert body["id"].startswith("resp_")
    assert isinstance(body["created_at"], int)
    assert len(body["outputs"]) == 2
    expected_starts = {"stock_price": "2025-06-12T13:10:00Z", "humidity": "2025-06-05T18:10:00Z"}
    for output, given in zip(body["outputs"], KSERVE_EXAMPLE["inputs"], strict=True):
        assert output["type"] == "time_series_forecast"
        assert output["status"] == "completed"
        assert output["error"] is None
        (content,) = output["content"]
        assert content["type"] == given["type"]
        assert content["name"] == given["name"]
        assert content["frequency"] == given["frequency"]
        assert content["start_timestamp"] == expected_starts[given["name"]]
        assert len(content["mean_forecast"]) == 4
        assert sorted(content["quantiles"]) == ["0.1", "0.5", "0.9"]
        levels = [content["quantiles"][q] for q in ("0.1", "0.5", "0.9")]
        assert all(len(level) == 4 for level in levels)
        for low, mid, high in zip(*levels, strict=True):
            assert low <= mid <= high


def test_quantiles_are_the_native_mc_forecast(client: TestClient) -> None:
    series = [i["series"] for i in KSERVE_EXAMPLE["inputs"]]
    native = client.post(
        "/v1/models/tiny/forecast",
        json={
            "batch": series,
            "horizon": 4,
            "uncertainty": {"samples": 50, "quantiles": [0.1, 0.5, 0.9], "seed": 7},
        },
    ).json()

    body = client.post("/v1/timeseries/forecast", json=request(samples=50, seed=7)).json()

    for output, expected in zip(body["outputs"], native["forecasts"], strict=True):
        content = output["content"][0]
        assert content["mean_forecast"] == expected["mean"]
        assert content["quantiles"] == expected["quantiles"]


def test_without_quantiles_the_forecast_is_deterministic(client: TestClient) -> None:
    body = copy.deepcopy(KSERVE_EXAMPLE)
    del body["options"]["quantiles"]
    native = client.post(
        "/v1/models/tiny/forecast",
        json={"batch": [i["series"] for i in body["inputs"]], "horizon": 4},
    ).json()

    response = client.post("/v1/timeseries/forecast", json=body)

    assert response.status_code == 200
    for output, expected in zip(response.json()["outputs"], native["forecasts"], strict=True):
        content = output["content"][0]
        assert content["mean_forecast"] == expected["mean"]
        assert "quantiles" not in content


def test_a_failing_input_fails_its_own_output_only(client: TestClient) -> None:
    body = request()
    body["inputs"][1]["series"] = [33, 34]  # below min_length=4
    body["inputs"].append({**body["inputs"][0], "name": "weekly", "frequency": "fortnight"})

    response = client.post("/v1/timeseries/forecast", json=body)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "partial"
    ok, short, bad_frequency = result["outputs"]
    assert ok["status"] == "completed"
    assert short["status"] == "error"
    assert short["content"] == []
    assert short["error"]["code"] == "422"
    assert short["error"]["type"] == "invalid_series"
    assert short["error"]["param"] == "inputs[1].series"
    assert "min_length=4" in short["error"]["message"]
    assert bad_frequency["status"] == "error"
    assert bad_frequency["error"]["param"] == "inputs[2].frequency"


def test_every_input_failing_is_422_with_a_top_level_error(client: TestClient) -> None:
    body = request()
    for item in body["inputs"]:
        item["series"] = [1.0]

    response = client.post("/v1/timeseries/forecast", json=body)

    assert response.status_code == 422
    result = response.json()
    assert result["status"] == "error"
    assert result["error"]["code"] == "422"
    assert [o["status"] for o in result["outputs"]] == ["error", "error"]


def test_multivariate_input_gets_time_major_rows_of_the_target(client: TestClient) -> None:
    body = {
        "model": "multi",
        "inputs": [
            {
                "type": "multivariate_time_series",
                "name": "rides",
                "series": [[1.0 + 0.1 * t, -1.0] for t in range(10)],
                "frequency": "M",
                "start_timestamp": "2024-01-31",
            }
        ],
        "options": {"horizon": 3},
    }

    response = client.post("/v1/timeseries/forecast", json=body)

    assert response.status_code == 200, response.text
    content = response.json()["outputs"][0]["content"][0]
    assert content["type"] == "multivariate_time_series"
    assert [len(row) for row in content["mean_forecast"]] == [1, 1, 1]
    assert content["variables"] == ["target"]
    assert content["start_timestamp"] == "2024-11-30T00:00:00"


def test_type_must_match_the_series(client: TestClient) -> None:
    body = request()
    body["inputs"][0]["type"] = "multivariate_time_series"

    outputs = client.post("/v1/timeseries/forecast", json=body).json()["outputs"]

    assert outputs[0]["status"] == "error"
    assert outputs[0]["error"]["param"] == "inputs[0].series"
    assert outputs[1]["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "status", "type", "param"),
    [
        ({**KSERVE_EXAMPLE, "model": "nope"}, 404, "model_not_found", None),
        ({"model": "tiny", "inputs": KSERVE_EXAMPLE["inputs"]}, 422, "invalid_request", "options"),
        (request(horizon=0), 422, "invalid_request", "options.horizon"),
        (request(horizon=10_000), 422, "limit_exceeded", "options.horizon"),
        (request(quantiles=[1.5]), 422, "invalid_request", "options.quantiles.0"),
        ({**request(), "model": "multi"}, 422, "unsupported_forecast", "options.horizon"),
        (
            {
                "model": "multi",
                "inputs": [
                    {
                        "type": "multivariate_time_series",
                        "name": "no_mc",
                        "series": [[1.0, 2.0]] * 6,
                        "frequency": "D",
                    }
                ],
                "options": {"horizon": 3, "quantiles": [0.5]},
            },
            422,
            "unsupported_forecast",
            None,
        ),
    ],
)
def test_request_errors_use_the_kserve_error_shape(
    client: TestClient, body: dict[str, Any], status: int, type: str, param: str | None
) -> None:
    response = client.post("/v1/timeseries/forecast", json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == str(status)
    assert error["type"] == type
    assert error["param"] == param
    assert error["message"]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/v1/timeseries/forecast", content=b"{not json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "400"


def test_models_lists_the_ready_models(client: TestClient) -> None:
    assert client.get("/v1/timeseries/models").json() == ["multi", "tiny"]


@pytest.mark.parametrize(
    ("start", "frequency", "steps", "expected"),
    [
        ("2025-06-05T13:10:00Z", "D", 7, "2025-06-12T13:10:00Z"),
        ("2025-06-05T13:10:00Z", "hour", 5, "2025-06-05T18:10:00Z"),
        ("2025-06-05T13:10:00+02:00", "T", 90, "2025-06-05T14:40:00+02:00"),
        ("2025-06-05T13:10:00", "S", 61, "2025-06-05T13:11:01"),
        ("2025-06-05", "W", 2, "2025-06-19T00:00:00"),
        ("2024-01-31T00:00:00Z", "M", 1, "2024-02-29T00:00:00Z"),
        ("2023-11-30T00:00:00Z", "quarter", 1, "2024-02-29T00:00:00Z"),
        ("2024-02-29T00:00:00Z", "Y", 1, "2025-02-28T00:00:00Z"),
    ],
)
def test_forecast_start_advances_by_the_series_length(
    start: str, frequency: str, steps: int, expected: str
) -> None:
    assert forecast_start(start, frequency, steps) == expected
    datetime.fromisoformat(expected)


def test_numbers_must_be_json_numbers(client: TestClient) -> None:
    response = client.post("/v1/timeseries/forecast", json=request(horizon="3"))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["param"] == "options.horizon"
