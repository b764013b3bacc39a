"""The numpy half on its own: strategies, masks and the rollout loop, with a fake model."""

import asyncio
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from service import forecasting
from service.errors import LimitExceededError, UnsupportedForecastError
from service.forecasting import Array32, Limits
from service.repository import ForecasterSpec, read_spec
from tests.service.conftest import write_model

LIMITS = Limits(max_series=10, max_points=100, max_horizon=50, max_samples=10, max_paths=100)


@pytest.fixture
def spec(tmp_path: Path) -> ForecasterSpec:
    return read_spec(write_model(tmp_path, "tiny", n_masks=2, rate=0.25) / "forecaster.json")


@pytest.mark.parametrize(
    ("horizon", "strategy", "used"),
    [
        (1, "auto", "direct"),
        (3, "auto", "direct"),
        (4, "auto", "recursive"),
        (2, "recursive", "recursive"),
        (3, "direct", "direct"),
        (50, "recursive", "recursive"),
    ],
)
def test_resolve_strategy(spec: ForecasterSpec, horizon: int, strategy: str, used: str) -> None:
    assert forecasting.resolve_strategy(spec, horizon, strategy, LIMITS) == used  # type: ignore[arg-type]


def test_strategy_errors(spec: ForecasterSpec) -> None:
    with pytest.raises(UnsupportedForecastError):
        forecasting.resolve_strategy(spec, 4, "direct", LIMITS)
    with pytest.raises(LimitExceededError):
        forecasting.resolve_strategy(spec, 51, "auto", LIMITS)


def test_masks_are_inverted_dropout_and_depend_on_seed_and_index(spec: ForecasterSpec) -> None:
    masks = forecasting.draw_masks(spec, samples=400, seed=1, index=0)

    assert set(masks) == {"mc_mask_0", "mc_mask_1"}
    for mask in masks.values():
        assert mask.shape == (400, 8)
        assert mask.dtype == np.float32
        assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
        assert abs(mask.mean() - 1.0) < 0.05
    assert not np.array_equal(masks["mc_mask_0"], masks["mc_mask_1"])
    again = forecasting.draw_masks(spec, samples=400, seed=1, index=0)
    other_index = forecasting.draw_masks(spec, samples=400, seed=1, index=1)
    np.testing.assert_array_equal(again["mc_mask_0"], masks["mc_mask_0"])
    assert not np.array_equal(other_index["mc_mask_0"], masks["mc_mask_0"])


def test_rollout_feeds_back_chunks_and_keeps_the_masks(spec: ForecasterSpec) -> None:
    """A fake model that forecasts `last value + 1, + 2, + 3` and records what it was fed."""
    calls: list[tuple[Array32, Mapping[str, Array32]]] = []

    async def infer(x: Array32, masks: Mapping[str, Array32]) -> Array32:
        calls.append((x, masks))
        last = x[:, -1:, 0]
        chunk = (last + np.arange(1, 4, dtype=np.float32))[:, None, :]
        return np.repeat(chunk, x.shape[1], axis=1)

    x = np.zeros((2, 6, 1), dtype=np.float32)
    masks = {"mc_mask_0": np.ones((2, 8), dtype=np.float32)}

    y = asyncio.run(forecasting.rollout(spec, x, masks, horizon=8, infer=infer))

    np.testing.assert_array_equal(y, np.tile(np.arange(1, 9, dtype=np.float32), (2, 1)))
    assert [c[0].shape[1] for c in calls] == [6, 9, 12]  # grows up to input_length=12
    assert all(c[1] is masks for c in calls)


def test_rollout_window_is_capped_at_input_length(spec: ForecasterSpec) -> None:
    lengths: list[int] = []

    async def infer(x: Array32, masks: Mapping[str, Array32]) -> Array32:
        lengths.append(x.shape[1])
        return np.zeros((x.shape[0], x.shape[1], 3), dtype=np.float32)

    x = np.zeros((1, 12, 1), dtype=np.float32)
    asyncio.run(forecasting.rollout(spec, x, {}, horizon=10, infer=infer))

    assert lengths == [12, 12, 12, 12]


def test_scaling_round_trip(spec: ForecasterSpec) -> None:
    window = np.array([[1.5], [3.5], [-0.5]])

    scaled = forecasting.scale(spec, window)

    np.testing.assert_allclose(scaled[:, 0], [0.0, 1.0, -1.0])
    np.testing.assert_allclose(forecasting.unscale_target(spec, scaled.T), window.T)


def test_summarise_uses_population_std_and_string_keys() -> None:
    paths = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])

    summary = forecasting.summarise(paths, [0.5, 0.25])

    np.testing.assert_allclose(summary.mean, [2.0, 3.0])
    assert summary.std is not None
    assert summary.quantiles is not None
    np.testing.assert_allclose(summary.std, np.std(paths, axis=0, ddof=0))
    assert list(summary.quantiles) == ["0.5", "0.25"]
    np.testing.assert_allclose(summary.quantiles["0.25"], [1.0, 2.0])
