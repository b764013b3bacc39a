"""The models in the repository's `models/` folder, when training has shipped them."""

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from service.settings import DEFAULT_MODELS_DIR
from training.datasets import generate_time_series  # numpy only: no TensorFlow

SHIPPED = ["lstm", "gru", "wavenet"]


@pytest.fixture(scope="module")
def shipped() -> Iterator[TestClient]:
    settings = Settings(models_dir=DEFAULT_MODELS_DIR, device="cpu")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("name", SHIPPED)
def test_mc_spread_grows_along_a_long_rollout(shipped: TestClient, name: str) -> None:
    if not (DEFAULT_MODELS_DIR / name / "forecaster.json").is_file():
        pytest.skip(f"models/{name} has not been trained and exported")
    info = shipped.get(f"/v1/models/{name}").json()
    assert info["ready"], info["reason"]
    series = generate_time_series(8, info["input_length"], seed=42)[:, :, 0]  # univariate lists

    response = shipped.post(
        f"/v1/models/{name}/forecast",
        json={
            "batch": series.tolist(),
            "horizon": 100,
            "uncertainty": {"samples": 100, "seed": 0},
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["strategy"] == "recursive" or info["horizon"] >= 100
    std = np.array([f["std"] for f in body["forecasts"]])
    assert std.shape == (8, 100)
    assert std[:, 79:100].mean() > std[:, 0:10].mean()
