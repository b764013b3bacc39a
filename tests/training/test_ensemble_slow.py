"""Seed ensembles: members averaged inside one graph, exported as one ONNX model (TensorFlow: slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SMALL = ["--epochs", "1", "--units", "8", "--synthetic-sizes", "300", "200", "40"]
SMALL += ["--allow-worse-than-baseline"]  # a one-epoch model is not meant to beat them


def members(count: int, window_norm: int = 0) -> list[object]:
    from training.architectures import build_gru
    from training.fit import set_seed

    built = []
    for seed in range(count):
        set_seed(seed)
        kind = "seq2vec" if window_norm else "seq2seq"
        built.append(build_gru(2, 3, kind, units=6, window_norm=window_norm, weeks=2, skip=7))
    return built


def test_ensemble_averages_members_and_shares_their_inputs(tmp_path: Path) -> None:
    import keras

    from forecaster_format import draw_masks
    from training.architectures import (
        RepeatRows,
        all_layers,
        build_ensemble,
        dropout_rate,
        ensemble_size,
        mask_inputs,
    )
    from training.fit import predict

    parts = members(3, window_norm=2)
    model = build_ensemble(parts)
    assert ensemble_size(model) == 3
    assert mask_inputs(model) == [("mc_mask_0", 6), ("mc_mask_1", 6)]
    assert dropout_rate(model) == pytest.approx(0.1)
    assert sum(isinstance(layer, RepeatRows) for layer in all_layers(model)) == 3

    rng = np.random.default_rng(0)
    x = (1.0 + rng.random((5, 30, 2))).astype(np.float32)  # positive, as window scaling needs
    mean = np.mean([predict(p, x) for p in parts], axis=0)
    np.testing.assert_allclose(predict(model, x), mean, atol=1e-6)

    # Shared masks: one mask row drives every member; with repeat_rows, 4 paths per window.
    masks = draw_masks(rng, 20, [6, 6], 0.1)
    paths = np.mean([np.asarray(p([x, *masks])) for p in parts], axis=0)
    np.testing.assert_allclose(np.asarray(model([x, *masks])), paths, atol=1e-6)
    assert paths.shape == (20, 3)

    model.save(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "model.keras")
    assert ensemble_size(again) == 3
    np.testing.assert_array_equal(predict(again, x), predict(model, x))


def test_one_member_is_the_member_and_members_must_match() -> None:
    from training.architectures import build_ensemble, build_gru

    (single,) = members(1)
    assert build_ensemble([single]) is single
    with pytest.raises(ValueError, match="differ in their inputs"):
        build_ensemble([single, build_gru(2, 3, units=4)])
    with pytest.raises(ValueError, match="at least one member"):
        build_ensemble([])


def test_cli_trains_and_exports_an_ensemble(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--ensemble 2`: progress per member, one ONNX graph equal to the members' mean, served."""
    import keras
    import onnxruntime as ort
    from fastapi.testclient import TestClient

    import training.architectures  # noqa: F401  (registers the custom layers for loading)
    from service.app import create_app
    from service.settings import Settings
    from training.cli import main
    from training.datasets import generate_time_series
    from training.fit import predict

    out = tmp_path / "models" / "pair"
    argv = ["train", "--model", "gru", "--name", "pair", "--ensemble", "2", "--seed", "3", *SMALL]
    code = main([*argv, "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ensemble: member 1/2, seed 3" in printed
    assert "ensemble: member 2/2, seed 4" in printed
    assert "ensemble: mean of 2 members; validation next-step MAE" in printed

    spec = json.loads((out / "forecaster.json").read_text())
    assert spec["training"]["ensemble"]["seeds"] == [3, 4]
    assert spec["description"].startswith("mean of 2 gru seq2seq forecasters")
    assert spec["onnx"]["mc_dropout"]["repeat_rows"] is True
    assert [m["name"] for m in spec["onnx"]["mc_dropout"]["masks"]] == ["mc_mask_0", "mc_mask_1"]
    assert spec["metrics"]["checks"]["parity_max_abs_diff"] <= 1e-5

    model = keras.models.load_model(tmp_path / "runs" / "pair" / "model.keras")
    session = ort.InferenceSession(str(out / "1" / "model.onnx"))
    x = generate_time_series(4, 50, seed=9)
    ones = {
        m["name"]: np.ones((4, m["size"]), np.float32) for m in spec["onnx"]["mc_dropout"]["masks"]
    }
    got = session.run(["y"], {"x": x, **ones})[0]
    assert np.max(np.abs(got - predict(model, x))) <= 1e-5

    with TestClient(create_app(Settings(models_dir=out.parent))) as client:
        body = {
            "series": x[0, :, 0].tolist(),
            "horizon": 12,
            "uncertainty": {"samples": 8, "seed": 1},
        }
        response = client.post("/v1/models/pair/forecast", json=body)
        assert response.status_code == 200, response.text
        forecast = response.json()["forecasts"][0]
        assert len(forecast["mean"]) == 12
        assert min(forecast["std"]) > 0
