"""POST /v1/models/{name}/forecast against tiny ONNX models, checked against ORT called directly."""

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray

from service import runtime

MEAN, SCALE = 1.5, 2.0  # the `tiny` model's scaling (conftest.SCALING)
INPUT_LENGTH, HORIZON, UNITS = 12, 3, 8


def ort_step(
    models_dir: Path, name: str, window: NDArray[np.float64], masks: list[NDArray[np.float32]]
) -> NDArray[np.float32]:
    """One call of the `tiny` graph on scaled windows [B, T] with these masks; returns [B, H]."""
    session = ort.InferenceSession(str(models_dir / name / "1" / "model.onnx"))
    feeds = {"x": window[:, :, None].astype(np.float32)}
    feeds |= {f"mc_mask_{k}": m for k, m in enumerate(masks)}
    (y,) = session.run(["y"], feeds)
    return np.asarray(y)[:, -1, :]


def ones(rows: int) -> list[NDArray[np.float32]]:
    return [np.ones((rows, UNITS), dtype=np.float32)] * 2


def by_hand(
    models_dir: Path,
    series: list[float],
    horizon: int,
    masks: list[NDArray[np.float32]] | None = None,
    rows: int = 1,
) -> NDArray[np.float64]:
    """The recursive rollout done by hand: [rows, horizon] in data units."""
    window = np.tile((np.asarray(series[-INPUT_LENGTH:]) - MEAN) / SCALE, (rows, 1))
    chunks: list[NDArray[np.float32]] = []
    while sum(c.shape[1] for c in chunks) < horizon:
        chunk = ort_step(models_dir, "tiny", window, masks or ones(rows))
        chunks.append(chunk)
        window = np.concatenate([window, chunk], axis=1)[:, -INPUT_LENGTH:]
    return np.concatenate(chunks, axis=1)[:, :horizon].astype(np.float64) * SCALE + MEAN


SERIES = [float(np.sin(0.4 * t) + 0.1 * t) for t in range(30)]


def test_deterministic_forecast_equals_onnx_runtime(client: TestClient, models_dir: Path) -> None:
    response = client.post("/v1/models/tiny/forecast", json={"series": SERIES})

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("model", "version", "horizon", "strategy", "device")} == {
        "model": "tiny",
        "version": 1,
        "horizon": HORIZON,
        "strategy": "direct",
        "device": "cpu",
    }
    (forecast,) = body["forecasts"]
    assert set(forecast) == {"mean"}
    window = (np.asarray([SERIES[-INPUT_LENGTH:]]) - MEAN) / SCALE
    expected = ort_step(models_dir, "tiny", window, ones(1))[0] * SCALE + MEAN
    np.testing.assert_allclose(forecast["mean"], expected, rtol=0, atol=1e-6)


def test_next_step_is_the_first_step(client: TestClient) -> None:
    full = client.post("/v1/models/tiny/forecast", json={"series": SERIES}).json()
    next_step = client.post("/v1/models/tiny/forecast", json={"series": SERIES, "horizon": 1})

    assert next_step.json()["forecasts"][0]["mean"] == full["forecasts"][0]["mean"][:1]


def test_series_shorter_than_input_length_is_used_whole(
    client: TestClient, models_dir: Path
) -> None:
    short = SERIES[:6]

    response = client.post("/v1/models/tiny/forecast", json={"series": short})

    window = (np.asarray([short]) - MEAN) / SCALE
    expected = ort_step(models_dir, "tiny", window, ones(1))[0] * SCALE + MEAN
    np.testing.assert_allclose(response.json()["forecasts"][0]["mean"], expected, atol=1e-6)


def test_multivariate_rows_feed_the_model(client: TestClient, models_dir: Path) -> None:
    rows = [[float(t), float(t % 3)] for t in range(15)]

    response = client.post("/v1/models/multi/forecast", json={"series": rows})

    assert response.status_code == 200
    window = (np.asarray(rows[-INPUT_LENGTH:]) - [1.0, -1.0]) / [0.5, 3.0]
    session = ort.InferenceSession(str(models_dir / "multi" / "1" / "model.onnx"))
    (y,) = session.run(["y"], {"x": window[None].astype(np.float32)})
    np.testing.assert_allclose(
        response.json()["forecasts"][0]["mean"], y[0] * 0.5 + 1.0, rtol=0, atol=1e-6
    )


def test_multivariate_rollout_feeds_back_future_covariates(
    client: TestClient, models_dir: Path
) -> None:
    rows = [[float(t), float(t % 3)] for t in range(15)]
    future = [[float(k % 5)] for k in range(8)]  # 7 steps = 3 calls, 6 rows fed back, 2 spare

    response = client.post(
        "/v1/models/multi/forecast",
        json={"series": rows, "horizon": 7, "future_covariates": future},
    )

    assert response.status_code == 200, response.text
    assert response.json()["strategy"] == "recursive"
    session = ort.InferenceSession(str(models_dir / "multi" / "1" / "model.onnx"))
    mean, scale_ = np.asarray([1.0, -1.0]), np.asarray([0.5, 3.0])
    window = (np.asarray(rows[-INPUT_LENGTH:]) - mean) / scale_
    produced: list[float] = []
    while len(produced) < 7:
        (y,) = session.run(["y"], {"x": window[None].astype(np.float32)})
        chunk = y[0]
        start = len(produced)
        produced += [float(v) for v in chunk]
        if len(produced) >= 7:
            break
        appended = np.stack(
            [chunk, (np.asarray(future[start : start + 3])[:, 0] - mean[1]) / scale_[1]], axis=1
        )
        window = np.concatenate([window, appended])[-INPUT_LENGTH:]
    expected = np.asarray(produced[:7]) * 0.5 + 1.0
    np.testing.assert_allclose(response.json()["forecasts"][0]["mean"], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("future", "fragment"),
    [
        ([[1.0]] * 5, "at least 6 rows of 1 values"),
        ([[1.0, 2.0]] * 6, "at least 6 rows of 1 values"),
        ([[1.0]] * 3 + [[]] + [[1.0]] * 2, "ragged"),
    ],
)
def test_future_covariates_are_checked(client: TestClient, future: Any, fragment: str) -> None:
    rows = [[float(t), 0.0] for t in range(15)]
    body = {"series": rows, "horizon": 7, "future_covariates": future}
    response = client.post("/v1/models/multi/forecast", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]


def test_future_covariates_refused_for_a_univariate_model(client: TestClient) -> None:
    body = {"series": SERIES, "horizon": 7, "future_covariates": [[1.0]] * 6}
    response = client.post("/v1/models/tiny/forecast", json=body)
    assert response.status_code == 422
    assert "has no covariates" in response.json()["error"]["message"]


def test_recursive_rollout_equals_the_loop_by_hand(client: TestClient, models_dir: Path) -> None:
    short = SERIES[:7]  # its window grows from 7 to input_length during the rollout

    response = client.post(
        "/v1/models/tiny/forecast", json={"batch": [SERIES, short, SERIES[:20]], "horizon": 8}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["horizon"], body["strategy"]) == (8, "recursive")
    for series, forecast in zip([SERIES, short, SERIES[:20]], body["forecasts"], strict=True):
        assert len(forecast["mean"]) == 8
        np.testing.assert_allclose(forecast["mean"], by_hand(models_dir, series, 8)[0], atol=1e-6)


def test_auto_within_the_model_horizon_is_direct(client: TestClient) -> None:
    auto = client.post("/v1/models/tiny/forecast", json={"series": SERIES, "horizon": 2}).json()
    recursive = client.post(
        "/v1/models/tiny/forecast",
        json={"series": SERIES, "horizon": 2, "strategy": "recursive"},
    ).json()

    assert auto["strategy"] == "direct"
    assert recursive["strategy"] == "recursive"
    assert auto["forecasts"] == recursive["forecasts"]


def mc(client: TestClient, body: dict[str, Any], **uncertainty: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/models/tiny/forecast", json=body | {"uncertainty": {"samples": 200} | uncertainty}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_mc_dropout_statistics(client: TestClient) -> None:
    body = mc(client, {"series": SERIES, "horizon": 9}, seed=7)

    (forecast,) = body["forecasts"]
    mean, std = np.asarray(forecast["mean"]), np.asarray(forecast["std"])
    q = {k: np.asarray(v) for k, v in forecast["quantiles"].items()}
    assert list(q) == ["0.05", "0.5", "0.95"]
    assert mean.shape == std.shape == q["0.5"].shape == (9,)
    assert (std > 0).all()
    assert (q["0.05"] <= q["0.5"]).all()
    assert (q["0.5"] <= q["0.95"]).all()
    assert ((q["0.05"] <= mean) & (mean <= q["0.95"])).all()


def test_mc_paths_use_the_documented_masks(client: TestClient, models_dir: Path) -> None:
    """Masks per series from SeedSequence([seed, index]), one [samples, size] draw per site."""
    samples, seed, keep = 50, 3, 0.8
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    masks = [((rng.random((samples, UNITS)) < keep) / keep).astype(np.float32) for _ in range(2)]
    paths = by_hand(models_dir, SERIES[:20], 7, masks, rows=samples)

    body = mc(client, {"batch": [SERIES, SERIES[:20]], "horizon": 7}, samples=samples, seed=seed)

    forecast = body["forecasts"][1]
    np.testing.assert_allclose(forecast["mean"], paths.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(forecast["std"], paths.std(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        forecast["quantiles"]["0.95"], np.quantile(paths, 0.95, axis=0), atol=1e-6
    )


def test_same_seed_repeats_and_other_seeds_differ(client: TestClient) -> None:
    first = mc(client, {"series": SERIES, "horizon": 5}, seed=11)
    again = mc(client, {"series": SERIES, "horizon": 5}, seed=11)
    other = mc(client, {"series": SERIES, "horizon": 5}, seed=12)
    unseeded = mc(client, {"series": SERIES, "horizon": 5})

    assert first["forecasts"] == again["forecasts"]
    assert first["forecasts"] != other["forecasts"]
    assert first["forecasts"] != unseeded["forecasts"]


def test_a_series_samples_do_not_depend_on_the_rest_of_the_batch(client: TestClient) -> None:
    alone = mc(client, {"batch": [SERIES], "horizon": 7}, seed=5)
    crowded = mc(
        client, {"batch": [SERIES, SERIES[1:], SERIES[:9], SERIES[::-1]], "horizon": 7}, seed=5
    )

    assert crowded["forecasts"][0] == alone["forecasts"][0]


def test_custom_quantiles_are_keyed_by_their_shortest_string(client: TestClient) -> None:
    body = mc(client, {"series": SERIES}, quantiles=[0.025, 0.1, 0.975], seed=1)

    assert list(body["forecasts"][0]["quantiles"]) == ["0.025", "0.1", "0.975"]


def test_series_as_one_column_rows_is_accepted(client: TestClient) -> None:
    flat = client.post("/v1/models/tiny/forecast", json={"series": SERIES}).json()
    rows = client.post("/v1/models/tiny/forecast", json={"series": [[v] for v in SERIES]}).json()

    assert rows["forecasts"] == flat["forecasts"]


@pytest.mark.parametrize("samples", [1, 3])
def test_few_samples_still_answer(client: TestClient, samples: int) -> None:
    body = mc(client, {"series": SERIES}, samples=samples, seed=0)

    assert len(body["forecasts"][0]["std"]) == HORIZON


def test_inference_runs_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops: list[bool] = []
    run = runtime.OnnxModel.run

    def spy(self: runtime.OnnxModel, x: Any, masks: Any) -> Any:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)
        return run(self, x, masks)

    monkeypatch.setattr(runtime.OnnxModel, "run", spy)

    client.post("/v1/models/tiny/forecast", json={"series": SERIES, "horizon": 7})

    assert loops == [False, False, False]
