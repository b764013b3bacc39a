"""Per-window (instance) normalisation inside the graph: level- and scale-proof, exported as is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

CASES = [(arch, kind) for arch in ("lstm", "gru", "wavenet") for kind in ("seq2vec", "seq2seq")]
CASES += [("gru", "seq2vec+linear"), ("wavenet", "seq2vec+linear")]


def build(architecture: str, kind: str) -> object:
    """`seq2vec+linear`: with the linear path from the last 24 normalised rows."""
    from training.architectures import ARCHITECTURES
    from training.fit import set_seed

    set_seed(0)
    size = {"filters": 8} if architecture == "wavenet" else {"units": 8}
    extra = {"skip": 24} if kind.endswith("+linear") else {}
    return ARCHITECTURES[architecture](
        2, 4, kind.split("+")[0], dropout=0.1, instance_norm=2, **size, **extra
    )


@pytest.mark.parametrize(("architecture", "kind"), CASES)
def test_forecast_moves_with_the_level_and_scale_of_the_window(
    architecture: str, kind: str
) -> None:
    """f(a x + b) = a f(x) + b for the target, with negative values and a constant window."""
    from training.evaluation import last_step
    from training.fit import predict

    model = build(architecture, kind)
    if kind.endswith("+linear"):
        assert "skip_linear" in [layer.name for layer in model.layers]  # type: ignore[attr-defined]
    x = np.random.default_rng(0).normal(size=(5, 30, 2)).astype(np.float32)
    shifted = x * np.float32(3.0) - np.float32(250.0)  # far from zero, negative
    base = last_step(predict(model, x))
    moved = last_step(predict(model, shifted))
    np.testing.assert_allclose(moved, 3.0 * base - 250.0, atol=5e-3 * 250)
    if kind == "seq2seq":  # causal: a step's forecast ignores later values of the window
        changed = x.copy()
        changed[:, 20:] += 100.0
        early = predict(model, x)[:, 10]
        np.testing.assert_allclose(predict(model, changed)[:, 10], early, atol=1e-4)
    constant = np.zeros((2, 30, 2), np.float32)
    assert np.all(np.isfinite(predict(model, constant)))
    np.testing.assert_allclose(last_step(predict(model, constant)), 0.0, atol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_the_network_sees_the_window_centred_and_scaled(causal: bool) -> None:
    from training.architectures import InstanceNorm

    x = np.random.default_rng(2).normal(size=(3, 200, 2)).astype(np.float32) * 7 + 30
    x[:, :, 1] = 1.0  # a one-hot covariate passes unchanged
    normalised, location, spread = (np.asarray(t) for t in InstanceNorm(1, causal=causal)(x))
    assert normalised.shape == x.shape
    np.testing.assert_array_equal(normalised[:, :, 1], 1.0)
    assert 0.8 < float(normalised[:, 100:, 0].std()) < 1.2  # not collapsed to the location
    np.testing.assert_allclose(location[:, -1], x[:, -1, 0])
    np.testing.assert_allclose(spread[:, -1], x[:, :, 0].std(axis=1), rtol=1e-3)


@pytest.mark.parametrize(("architecture", "kind"), CASES)
def test_exports_with_parity_and_live_mc_dropout(
    tmp_path: Path, architecture: str, kind: str
) -> None:
    from training.architectures import mask_inputs
    from training.evaluation import last_step
    from training.export import OnnxForecaster, convert
    from training.fit import predict

    model = build(architecture, kind)
    path = tmp_path / "model.onnx"
    convert(model, path)
    onnx_model = OnnxForecaster(path, mask_inputs(model), 0.1, repeat_rows=True)
    x = np.random.default_rng(1).normal(size=(6, 40, 2)).astype(np.float32) * 5 + 40
    np.testing.assert_allclose(
        last_step(onnx_model.run(x)), last_step(predict(model, x)), atol=1e-4, rtol=1e-5
    )
    samples = onnx_model.mc_samples(x, 16, seed=3)
    assert samples.shape == (16, 6, 4)
    assert float(samples.std(axis=0).mean()) > 0
