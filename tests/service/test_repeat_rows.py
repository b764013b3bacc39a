"""`mc_dropout.repeat_rows` graphs: one window per series, the graph repeats it per MC path.

The same weights with and without repeat_rows must give the same forecasts, deterministic and
seeded MC, direct and recursive, with batching on and off: only where the rows are repeated moves.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service import Settings, create_app
from service.repository import load_repository
from tests.service.conftest import TestClient, write_model

SERIES = [float(np.sin(0.5 * t)) for t in range(20)]


@pytest.fixture(params=[True, False], ids=["batching", "no-batching"])
def client(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    root = tmp_path / "models"
    write_model(root, "tiled", n_masks=2)
    write_model(root, "repeated", n_masks=2, repeat_rows=True)
    settings = Settings(models_dir=root, device="cpu", batching=request.param)
    with TestClient(create_app(settings)) as client:
        yield client


def forecast(client: TestClient, model: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/forecast", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    "body",
    [
        {"series": SERIES},
        {"series": SERIES, "uncertainty": {"samples": 50, "seed": 3}},
        {"batch": [SERIES, SERIES[:15]], "uncertainty": {"samples": 20, "seed": 4}},
        {"series": SERIES, "horizon": 10, "uncertainty": {"samples": 30, "seed": 5}},
        {"batch": [SERIES, SERIES[2:]], "horizon": 7},
    ],
    ids=["deterministic", "mc", "mc-batch-lengths", "mc-recursive", "recursive-batch"],
)
def test_repeated_rows_forecast_as_tiled_windows(client: TestClient, body: dict[str, Any]) -> None:
    tiled = forecast(client, "tiled", body)["forecasts"]
    repeated = forecast(client, "repeated", body)["forecasts"]
    for a, b in zip(tiled, repeated, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key == "quantiles":
                for q in a[key]:
                    np.testing.assert_allclose(a[key][q], b[key][q], rtol=0, atol=1e-6)
            else:
                np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6)


def test_mc_request_sends_each_window_once(client: TestClient, monkeypatch: Any) -> None:
    from service.runtime import OnnxModel

    calls: list[tuple[int, int]] = []
    run = OnnxModel.run

    def spy(self: OnnxModel, x: Any, masks: Any) -> Any:
        calls.append((x.shape[0], masks["mc_mask_0"].shape[0]))
        return run(self, x, masks)

    monkeypatch.setattr(OnnxModel, "run", spy)
    forecast(client, "repeated", {"series": SERIES, "uncertainty": {"samples": 40, "seed": 1}})
    assert calls == [(1, 40)]
    calls.clear()
    forecast(client, "tiled", {"series": SERIES, "uncertainty": {"samples": 40, "seed": 1}})
    assert calls == [(40, 40)]


def test_a_graph_that_does_not_repeat_is_refused_at_load(tmp_path: Path) -> None:
    """forecaster.json says repeat_rows but the graph wants as many x rows as mask rows."""
    root = tmp_path / "models"
    folder = write_model(root, "liar", n_masks=1)
    spec = (folder / "forecaster.json").read_text()
    (folder / "forecaster.json").write_text(
        spec.replace('"repeat_rows": false', '"repeat_rows": true')
    )
    model = load_repository(Settings(models_dir=root, device="cpu")).models["liar"]
    assert not model.ready
    assert model.reason is not None
    assert "repeat_rows" in model.reason


def test_oip_takes_s_mask_rows_per_window(client: TestClient) -> None:
    x = np.asarray(SERIES[-12:], dtype=np.float32).reshape(1, 12, 1)
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 8)) < 0.8).astype(np.float32) / 0.8

    def infer(model: str, rows: int) -> Any:
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": [rows, 12, 1],
                    "datatype": "FP32",
                    "data": np.repeat(x, rows, 0).ravel().tolist(),
                },
                *[
                    {
                        "name": f"mc_mask_{k}",
                        "shape": [3, 8],
                        "datatype": "FP32",
                        "data": masks.ravel().tolist(),
                    }
                    for k in range(2)
                ],
            ]
        }
        return client.post(f"/v2/models/{model}/infer", json=body)

    repeated = infer("repeated", 1)
    assert repeated.status_code == 200, repeated.text
    tiled = infer("tiled", 3)
    assert tiled.status_code == 200, tiled.text
    out_r, out_t = repeated.json()["outputs"][0], tiled.json()["outputs"][0]
    assert out_r["shape"] == out_t["shape"] == [3, 12, 3]
    np.testing.assert_allclose(out_r["data"], out_t["data"], atol=1e-6)
    # Two windows and three mask rows: not S rows per window.
    bad = client.post(
        "/v2/models/repeated/infer",
        json={
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 12, 1],
                    "datatype": "FP32",
                    "data": np.repeat(x, 2, 0).ravel().tolist(),
                },
                {
                    "name": "mc_mask_0",
                    "shape": [3, 8],
                    "datatype": "FP32",
                    "data": masks.ravel().tolist(),
                },
            ]
        },
    )
    assert bad.status_code == 400 or bad.status_code == 422
    assert "mc_mask_0" in bad.json()["error"]
