"""Forecast semantics in numpy: context windows, scaling, direct and recursive strategies, MC paths.

Knows nothing of HTTP or ONNX Runtime: the model is reached through an `Infer` callable that takes
the scaled window `x` [B, T, F] and the mask inputs and returns the graph's output.
"""

import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from forecaster_format import Calibration, ForecasterSpec, conformal_map, draw_masks, spread_map
from forecaster_format import signed_scores as format_signed_scores
from service.errors import (
    InvalidRequestError,
    InvalidSeriesError,
    LimitExceededError,
    UnsupportedForecastError,
)
from service.settings import Settings

Array32 = NDArray[np.float32]
Array64 = NDArray[np.float64]
Strategy = Literal["auto", "direct", "recursive"]
ResolvedStrategy = Literal["direct", "recursive"]
Infer = Callable[[Array32, Mapping[str, Array32]], Awaitable[Array32]]


class StepRunner(Protocol):
    """An `Infer` that can also drive a whole rollout (`rollout_steps`) off the event loop."""

    async def run_steps(
        self, steps: Generator[Array32, Array32, Array32], masks: Mapping[str, Array32]
    ) -> Array32: ...


# A univariate series is a list of numbers; a multivariate one a list of [F] rows.
SeriesInput = Sequence[float] | Sequence[Sequence[float]]

DEFAULT_QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class Limits:
    max_series: int
    max_points: int
    max_horizon: int
    max_samples: int
    max_paths: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(
            max_series=settings.max_series,
            max_points=settings.max_points,
            max_horizon=settings.max_horizon,
            max_samples=settings.max_samples,
            max_paths=settings.max_paths,
        )


@dataclass(frozen=True)
class Uncertainty:
    """MC dropout: `samples` paths per series; `seed` makes them reproducible bit for bit."""

    samples: int
    quantiles: Sequence[float] = DEFAULT_QUANTILES
    seed: int | None = None
    calibrated: bool = True  # apply the model's calibration when it has one


@dataclass(frozen=True)
class SeriesForecast:
    mean: Array64
    std: Array64 | None = None
    quantiles: dict[str, Array64] | None = None


@dataclass(frozen=True)
class Forecast:
    horizon: int
    strategy: ResolvedStrategy
    forecasts: list[SeriesForecast]
    calibrated: bool = False  # whether the intervals were widened by the model's calibration


async def forecast(
    spec: ForecasterSpec,
    series: Sequence[SeriesInput],
    infer: Infer,
    limits: Limits,
    *,
    horizon: int | None = None,
    strategy: Strategy = "auto",
    uncertainty: Uncertainty | None = None,
    labels: Sequence[str] | None = None,
    future_covariates: Sequence[Sequence[Sequence[float]]] | None = None,
) -> Forecast:
    """Forecast `horizon` steps after each series, with MC-dropout statistics when asked.

    Series are cut to their last `input_length` points and grouped by length, so each step of the
    rollout is one `infer` call per distinct length, with series x samples rows. `labels` name the
    series in error messages (default `batch[i]`).
    """
    if labels is None:
        labels = [f"batch[{i}]" for i in range(len(series))]
    if not series:
        raise InvalidSeriesError("batch is empty: give at least one series")
    if len(series) > limits.max_series:
        raise LimitExceededError(f"batch has {len(series)} series; max_series={limits.max_series}")
    horizon = spec.horizon if horizon is None else horizon
    used = resolve_strategy(spec, horizon, strategy, limits)
    samples, seed = 1, None
    if uncertainty is not None:
        samples = _check_uncertainty(spec, uncertainty, len(series), limits)
        seed = uncertainty.seed
        if (
            seed is None
        ):  # still one seed for the whole request, split per series as with a given one
            seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    windows = prepare_windows(spec, series, labels, limits)
    future = prepare_future(spec, horizon, future_covariates, len(series))

    paths: list[Array64] = [np.empty(0)] * len(windows)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, window in enumerate(windows):
        by_length[window.shape[0]].append(i)
    for rows in by_length.values():
        x = windows[rows[0]][None] if len(rows) == 1 else np.stack([windows[i] for i in rows])
        if samples > 1 and not spec.onnx.mc_dropout.repeat_rows:
            x = np.repeat(x, samples, axis=0)  # else the graph repeats its prefix's activations
        covariates = (
            None if future is None else np.repeat(np.stack([future[i] for i in rows]), samples, 0)
        )
        masks = _masks(spec, rows, samples, seed)
        scaled = await rollout(spec, x, masks, horizon, infer, covariates)
        values = unscale_target(spec, scaled).reshape(len(rows), samples, horizon)
        for i, value in zip(rows, values, strict=True):
            paths[i] = value

    if uncertainty is None:
        return Forecast(horizon, used, [SeriesForecast(mean=p[0]) for p in paths])
    calibrated = uncertainty.calibrated and spec.calibration is not None
    if calibrated:
        paths = [calibrate(spec, p) for p in paths]
    return Forecast(horizon, used, [summarise(p, uncertainty.quantiles) for p in paths], calibrated)


def calibrate(spec: ForecasterSpec, paths: Array64) -> Array64:
    """Calibrate sample paths [samples, steps] with the model's calibration: the format's map
    (forecaster_format.calibration, docs/model-repository.md), as the exporter measured it."""
    calibration = spec.calibration
    assert calibration is not None
    if calibration.method == "spread_factor":
        return spread_map(paths, calibration.factors)
    table = signed_scores(calibration, len(paths), paths.shape[1])
    return conformal_map(paths, calibration.levels, calibration.scores, table)


SIGNED_SCORE_TABLES = 32  # per calibration: (samples, steps) pairs come from requests


def signed_scores(calibration: Calibration, count: int, steps: int) -> Array64:
    """The conformal map's table [count, steps] (`forecaster_format.signed_scores`), read-only and
    cached on the calibration for up to SIGNED_SCORE_TABLES shapes (an MC request's ~10
    `np.interp` calls and the rank bookkeeping were a fifth of the event loop's time under MC
    load, py-spy)."""
    tables = calibration.tables
    table = tables.get((count, steps))
    if table is None:
        table = format_signed_scores(calibration.levels, calibration.scores, count, steps)
        table.flags.writeable = False
        if len(tables) >= SIGNED_SCORE_TABLES:
            tables.clear()
        tables[(count, steps)] = table
    return table


def resolve_strategy(
    spec: ForecasterSpec, horizon: int, strategy: Strategy, limits: Limits
) -> ResolvedStrategy:
    """`auto` is direct up to the model horizon and recursive beyond; `direct` cannot go beyond."""
    if horizon < 1:
        raise InvalidRequestError(f"horizon must be >= 1, got {horizon}")
    if horizon > limits.max_horizon:
        raise LimitExceededError(f"horizon={horizon} exceeds max_horizon={limits.max_horizon}")
    if strategy == "direct" and horizon > spec.horizon:
        raise UnsupportedForecastError(
            f"horizon={horizon} exceeds the model horizon={spec.horizon} for strategy 'direct'; "
            "use strategy 'recursive' or 'auto'"
        )
    used: ResolvedStrategy = (
        "direct" if horizon <= spec.horizon and strategy != "recursive" else "recursive"
    )
    return used


def fed_back_steps(spec: ForecasterSpec, horizon: int) -> int:
    """Rows a recursive rollout appends to the window before its last call."""
    return spec.horizon * (math.ceil(horizon / spec.horizon) - 1)


def prepare_future(
    spec: ForecasterSpec,
    horizon: int,
    future_covariates: Sequence[Sequence[Sequence[float]]] | None,
    n_series: int,
) -> list[Array32] | None:
    """The scaled covariate rows [steps, F] (target column zero) a multivariate rollout feeds back.

    The model forecasts only its target, so beyond its horizon the client must send, for each
    future step, the other features of that step's row in the model's feature order.
    """
    steps = fed_back_steps(spec, horizon)
    if spec.n_features == 1 or steps == 0:
        if future_covariates is not None and spec.n_features == 1:
            raise InvalidRequestError(
                f"future_covariates given, but model {spec.name!r} has no covariates"
            )
        return None
    others = [f for i, f in enumerate(spec.features) if i != spec.target]
    if future_covariates is None:
        raise UnsupportedForecastError(
            f"horizon={horizon} needs a recursive rollout beyond the model horizon={spec.horizon}, "
            f"and the model forecasts only {spec.features[spec.target]!r}: send future_covariates "
            f"with at least {steps} rows of {others} per series"
        )
    if len(future_covariates) != n_series:
        raise InvalidRequestError(
            f"future_covariates has {len(future_covariates)} entries; expected one per series "
            f"({n_series})"
        )
    out = []
    for i, rows in enumerate(future_covariates):
        try:
            array = np.asarray(rows, dtype=np.float64)
        except (ValueError, TypeError):
            raise InvalidSeriesError(f"future_covariates[{i}] is ragged") from None
        if array.ndim != 2 or array.shape[1] != len(others) or array.shape[0] < steps:
            raise InvalidSeriesError(
                f"future_covariates[{i}] needs at least {steps} rows of {len(others)} values "
                f"{others}; got shape {list(array.shape)}"
            )
        if not np.isfinite(array).all():
            raise InvalidSeriesError(f"future_covariates[{i}] holds NaN or infinite values")
        full = np.zeros((steps, spec.n_features))
        full[:, [j for j in range(spec.n_features) if j != spec.target]] = array[:steps]
        out.append(scale(spec, full))
    return out


def _check_uncertainty(
    spec: ForecasterSpec, uncertainty: Uncertainty, n_series: int, limits: Limits
) -> int:
    samples = uncertainty.samples
    if samples < 1:
        raise InvalidRequestError(f"uncertainty.samples must be >= 1, got {samples}")
    if samples > limits.max_samples:
        raise LimitExceededError(
            f"uncertainty.samples={samples} exceeds max_samples={limits.max_samples}"
        )
    if n_series * samples > limits.max_paths:
        raise LimitExceededError(
            f"{n_series} series x uncertainty.samples={samples} = {n_series * samples} paths "
            f"exceeds max_paths={limits.max_paths}"
        )
    bad = [q for q in uncertainty.quantiles if not 0.0 < q < 1.0]
    if bad:
        raise InvalidRequestError(f"uncertainty.quantiles must lie in (0, 1), got {bad}")
    if not spec.masks:
        raise UnsupportedForecastError(
            f"model {spec.name!r} has no MC-dropout sites: uncertainty is not available"
        )
    return samples


def prepare_windows(
    spec: ForecasterSpec, series: Sequence[SeriesInput], labels: Sequence[str], limits: Limits
) -> list[Array32]:
    """Check each series against the model and return its scaled context window [T, F]."""
    arrays = []
    for raw, label in zip(series, labels, strict=True):
        if len(raw) == 0:
            raise InvalidSeriesError(f"{label} is empty")
        if len(raw) > limits.max_points:
            raise LimitExceededError(
                f"{label} has {len(raw)} points; max_points={limits.max_points}"
            )
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (ValueError, TypeError):
            raise InvalidSeriesError(
                f"{label} is ragged: every row of a multivariate series needs the same "
                "number of features"
            ) from None
        arrays.append(array)

    if len(arrays) > 1:
        if len({a.ndim for a in arrays}) > 1:
            raise InvalidSeriesError("batch mixes univariate and multivariate series")
        if len({a.shape[1:] for a in arrays}) > 1:
            raise InvalidSeriesError("batch mixes multivariate series of different feature counts")

    n_features = spec.n_features
    windows = []
    for array, label in zip(arrays, labels, strict=True):
        if array.ndim > 2:
            raise InvalidSeriesError(f"{label} has {array.ndim} dimensions; expected 1 or 2")
        got = 1 if array.ndim == 1 else array.shape[1]
        if got != n_features or (array.ndim == 1 and n_features != 1):
            shape = "univariate rows" if array.ndim == 1 else f"rows of {got} features"
            raise InvalidSeriesError(
                f"{label} has {shape}; model {spec.name!r} expects rows of {n_features} "
                f"features {spec.features}"
            )
        if len(array) < spec.min_length:
            raise InvalidSeriesError(
                f"{label} has {len(array)} points; the model needs at least "
                f"min_length={spec.min_length}"
            )
        if not np.isfinite(array).all():
            raise InvalidSeriesError(f"{label} holds NaN or infinite values")
        window = array[-spec.input_length :].reshape(-1, n_features)
        windows.append(scale(spec, window))
    return windows


def scale(spec: ForecasterSpec, window: Array64) -> Array32:
    if spec.scaling.method == "none":
        return window.astype(np.float32)
    mean, std = spec.scaling.arrays
    scaled: Array64 = (window - mean) / std
    return scaled.astype(np.float32)


def unscale_target(spec: ForecasterSpec, scaled: Array32) -> Array64:
    values = scaled.astype(np.float64)
    if spec.scaling.method == "none":
        return values
    t = spec.target
    return values * spec.scaling.scale[t] + spec.scaling.mean[t]


def _masks(
    spec: ForecasterSpec, rows: Sequence[int], samples: int, seed: int | None
) -> dict[str, Array32]:
    """The mask inputs for `rows` x `samples`: all ones (dropout off) without a seed."""
    if seed is None:
        return _ones(tuple((m.name, m.size) for m in spec.masks), len(rows))
    drawn = [series_masks(spec, samples, seed, i) for i in rows]
    return {m.name: np.concatenate([d[m.name] for d in drawn]) for m in spec.masks}


_ONES: dict[tuple[tuple[tuple[str, int], ...], int], dict[str, Array32]] = {}


def _ones(sites: tuple[tuple[str, int], ...], rows: int) -> dict[str, Array32]:
    """All-ones masks (dropout off) for `rows` windows; read-only and shared up to 64 rows, since
    every deterministic request needs the same ones (a few microseconds of the hot path)."""
    cached = _ONES.get((sites, rows))
    if cached is None:
        cached = {name: np.ones((rows, size), dtype=np.float32) for name, size in sites}
        for array in cached.values():
            array.flags.writeable = False
        if rows <= 64 and len(_ONES) < 1024:
            _ONES[(sites, rows)] = cached
    return cached


def series_masks(spec: ForecasterSpec, samples: int, seed: int, index: int) -> dict[str, Array32]:
    """MC-dropout masks [samples, size] per site for the series at `index` of a request.

    Each series draws from its own generator, derived from the request seed and its index, so its
    samples depend on nothing else in the request; the masks are the format's (`draw_masks`).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    drawn = draw_masks(rng, samples, [m.size for m in spec.masks], spec.onnx.mc_dropout.rate)
    return {m.name: mask for m, mask in zip(spec.masks, drawn, strict=True)}


async def rollout(
    spec: ForecasterSpec,
    x: Array32,
    masks: Mapping[str, Array32],
    horizon: int,
    infer: Infer,
    covariates: Array32 | None = None,
) -> Array32:
    """Scaled forecasts [B, horizon]: one call when horizon <= the model horizon, else recursive.

    The steps are `rollout_steps`; an `infer` that can run steps itself (`StepRunner`, as
    `runtime.OnnxModel`) runs them all off the event loop, without a hop back per model call.
    """
    steps = rollout_steps(spec, x, horizon, covariates)
    # Not `isinstance(infer, StepRunner)`: a runtime-checkable Protocol check walks the protocol's
    # attributes on every call (2% of the event loop under load, py-spy).
    run_steps = getattr(infer, "run_steps", None)
    if run_steps is not None:
        result: Array32 = await run_steps(steps, masks)
        return result
    window = next(steps)
    while True:
        try:
            window = steps.send(await infer(window, masks))
        except StopIteration as done:
            paths: Array32 = done.value
            return paths


def rollout_steps(
    spec: ForecasterSpec, x: Array32, horizon: int, covariates: Array32 | None = None
) -> Generator[Array32, Array32, Array32]:
    """The rollout as a generator: yields each window to run, receives the graph's output for it,
    and returns the scaled forecasts [B, horizon].

    A recursive rollout appends each chunk to the window, keeps the last `input_length` points and
    calls again with the same masks, so every path stays one sampled network and feeds back its own
    values: the spread grows with the horizon as it should.
    """
    chunks = []
    produced = 0
    for _ in range(math.ceil(horizon / spec.horizon)):
        y = yield x
        chunk = y[:, -1, :] if spec.output == "sequence" else y
        chunks.append(chunk)
        produced += chunk.shape[1]
        if produced < horizon:
            if len(x) < len(chunk):  # a repeat_rows graph's first call: one window per path now
                x = np.repeat(x, len(chunk) // len(x), axis=0)
            if covariates is None:
                rows = chunk[:, :, None]
            else:  # scaled future rows of the other features, the forecast in the target column
                rows = covariates[:, produced - chunk.shape[1] : produced].copy()
                rows[:, :, spec.target] = chunk
            x = np.concatenate([x, rows], axis=1)[:, -spec.input_length :]
    paths: Array32 = np.concatenate(chunks, axis=1)[:, :horizon]
    return paths


def quantile_rows(paths: Array64, quantiles: Sequence[float]) -> Array64:
    """`np.quantile(paths, quantiles, axis=0)` (method "linear"), bit for bit, [Q, horizon].

    numpy's own steps without its generality (an MC request spent ~0.1 ms in `np.quantile`'s
    Python layers): virtual index (n - 1) q, its floor and the next (both the last row at or past
    it), gamma = index - floor, numpy's two-sided lerp, and NaN where a column holds one.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    n = len(paths)
    virtual = (n - 1) * q
    below = np.floor(virtual).astype(np.intp)
    above = below + 1
    past = virtual >= n - 1
    below[past] = above[past] = -1
    ordered = np.sort(paths, axis=0)
    a, b = ordered[below], ordered[above]
    gamma = (virtual - below)[:, None]
    diff = b - a
    out: Array64 = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    nan = np.isnan(ordered[-1])
    if nan.any():
        out[:, nan] = np.nan
    return out


def summarise(paths: Array64, quantiles: Sequence[float]) -> SeriesForecast:
    """Mean, std (ddof=0) and quantiles over the sample paths [samples, horizon]."""
    levels: Array64 | list[Array64] = quantile_rows(paths, quantiles) if quantiles else []
    return SeriesForecast(
        mean=paths.mean(axis=0),
        std=paths.std(axis=0),
        quantiles={str(q): level for q, level in zip(quantiles, levels, strict=True)},
    )
