"""The numpy half on its own: strategies, masks and the rollout loop, with a fake model."""

import asyncio
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from forecaster_format import Calibration, ForecasterSpec, conformal_map, draw_masks
from service import forecasting
from service.errors import LimitExceededError, UnsupportedForecastError
from service.forecasting import Array32, Limits
from service.repository import read_spec
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
    masks = forecasting.series_masks(spec, samples=400, seed=1, index=0)

    assert set(masks) == {"mc_mask_0", "mc_mask_1"}
    for mask in masks.values():
        assert mask.shape == (400, 8)
        assert mask.dtype == np.float32
        assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
        assert abs(mask.mean() - 1.0) < 0.05
    assert not np.array_equal(masks["mc_mask_0"], masks["mc_mask_1"])
    again = forecasting.series_masks(spec, samples=400, seed=1, index=0)
    other_index = forecasting.series_masks(spec, samples=400, seed=1, index=1)
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


# --- the MC summaries, vectorised: the same numbers as numpy's own functions, bit for bit ---------


@pytest.mark.parametrize("count", [1, 2, 3, 7, 100, 101])
def test_quantile_rows_is_numpys_quantile_bit_for_bit(count: int) -> None:
    rng = np.random.default_rng(count)
    levels = [0.0, 0.05, 0.25, 0.5, 0.95, 0.999, 1.0, 1 / 3]
    for paths in (
        rng.standard_normal((count, 10)) * 3 + 1,
        np.round(rng.standard_normal((count, 4)), 1),  # ties
    ):
        np.testing.assert_array_equal(
            forecasting.quantile_rows(paths, levels), np.quantile(paths, levels, axis=0)
        )


def test_quantile_rows_gives_nan_where_a_column_holds_one() -> None:
    paths = np.arange(12.0).reshape(4, 3)
    paths[1, 2] = np.nan

    np.testing.assert_array_equal(
        forecasting.quantile_rows(paths, [0.1, 0.9]), np.quantile(paths, [0.1, 0.9], axis=0)
    )


@pytest.mark.parametrize("count", [1, 2, 5, 100, 101])
def test_conformal_calibration_is_the_format_map_with_cached_tables(count: int) -> None:
    """The map itself is tested in tests/contract; the service keeps its tables per shape."""
    levels, scores = [0.5, 0.8, 0.9, 0.95], [[0.6, 1.2, 1.6, 2.0], [0.7, 1.3, 1.7, 2.2]]
    spec = ForecasterSpec.model_construct(
        calibration=Calibration(method="conformal", levels=levels, scores=scores)
    )
    rng = np.random.default_rng(count)
    for paths in (rng.standard_normal((count, 10)), np.round(rng.standard_normal((count, 3)))):
        for _ in range(2):  # the table built, then reused
            np.testing.assert_array_equal(
                forecasting.calibrate(spec, paths), conformal_map(paths, levels, scores)
            )
    assert spec.calibration is not None
    assert set(spec.calibration.tables) == {(count, 10), (count, 3)}


def test_signed_score_tables_are_bounded() -> None:
    calibration = Calibration(method="conformal", levels=[0.5], scores=[[1.0]])
    for count in range(1, 2 * forecasting.SIGNED_SCORE_TABLES + 1):
        forecasting.signed_scores(calibration, count, 2)

    assert 1 <= len(calibration.tables) <= forecasting.SIGNED_SCORE_TABLES


def test_series_masks_are_the_format_masks_from_seed_and_index(spec: ForecasterSpec) -> None:
    masks = forecasting.series_masks(spec, 200, seed=7, index=3)

    rng = np.random.default_rng(np.random.SeedSequence([7, 3]))
    expected = draw_masks(rng, 200, [m.size for m in spec.masks], spec.onnx.mc_dropout.rate)
    assert list(masks) == [m.name for m in spec.masks]
    for m, mask in zip(spec.masks, expected, strict=True):
        np.testing.assert_array_equal(masks[m.name], mask)
