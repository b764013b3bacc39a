"""A forecasting task: the windows to train and validate on, with everything the export must record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.datasets import (
    FloatArray,
    Scaling,
    TargetKind,
    Windows,
    generate_time_series,
    load_csv,
    split_series,
    synthetic_windows,
    window_series,
)
from training.errors import DataError


@dataclass
class TaskConfig:
    """What defines a task; stored in runs/<name>/run.json so `export` can rebuild it."""

    data: str = "synthetic"  # "synthetic" or a CSV path
    input_length: int = 50
    horizon: int = 10
    kind: TargetKind = "seq2seq"
    seed: int = 42
    date_column: str = "date"
    target: str = "value"
    covariates: list[str] = field(default_factory=list)
    frequency: str | None = None
    train_start: str | None = None
    train_end: str | None = None
    valid_end: str | None = None
    fill_gaps: str = "error"
    season: int = 1
    known_ahead: list[str] = field(default_factory=list)
    # "standard", or "window": divide by the training max, normalise each window in-graph
    scaling: str = "standard"
    test_end: str | None = None
    # "previous", or "inside": validation windows lie wholly in the period (the book's way)
    valid_context: str = "previous"
    # "START:END", an extra evaluation period, e.g. after a level shift
    drift_eval: str | None = None
    # interval calibration fitted at export: "conformal" or "spread_factor"
    calibration: str = "conformal"
    # which test windows fit it and which check it: "interleaved" weeks or time-ordered "halves"
    calibration_split: str = "interleaved"
    synthetic_sizes: tuple[int, int, int] = (7000, 2000, 1000)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Task:
    config: TaskConfig
    train: Windows
    valid: Windows
    features: list[str]
    scaling: Scaling
    frequency: str | None
    description: str
    notes: list[str] = field(default_factory=list)
    scaled_series: FloatArray | None = None  # the whole scaled CSV series [T, F], if any
    test: Windows | None = None  # never trained or early-stopped on: calibration and its check
    drift: Windows | None = None  # config.drift_eval, when given
    numeric_features: int = 1  # leading columns that are values, not one-hot covariates
    test_dates: list[str] | None = None  # the first forecast date of each test window

    def sample_inputs(self, batch: int, length: int, rng: np.random.Generator) -> FloatArray:
        """Windows of any length drawn from the task's own data, for parity checks.

        Parity is measured on the data the model serves: on white noise, float32 rounding in a
        200-step recurrence drifts past 1e-5 in both runtimes alike, which says nothing about export.
        """
        if self.scaled_series is None:
            return generate_time_series(batch, length, int(rng.integers(1 << 31)))
        series = self.scaled_series
        length = min(length, len(series))
        starts = rng.integers(0, len(series) - length + 1, batch)
        return np.stack([series[s : s + length] for s in starts]).astype(np.float32)

    @property
    def n_features(self) -> int:
        return len(self.features)


def build_task(config: TaskConfig) -> Task:
    """Load and window the data the config names; DataError with a clear message when it cannot."""
    if config.input_length < 2:
        raise DataError(f"--input-length must be at least 2, got {config.input_length}")
    if config.horizon < 1:
        raise DataError(f"--horizon must be at least 1, got {config.horizon}")
    if config.data == "synthetic":
        if config.covariates:
            raise DataError("--covariates needs a CSV file; the synthetic series is univariate")
        splits = synthetic_windows(
            config.input_length,
            config.horizon,
            config.kind,
            config.seed,
            config.synthetic_sizes,
        )
        return Task(
            config,
            splits.train,
            splits.valid,
            ["value"],
            Scaling.identity(1),
            None,
            "the book's synthetic series (two sines + noise), "
            f"{'/'.join(map(str, config.synthetic_sizes))} split, seed {config.seed}",
            test=splits.test if len(splits.test) >= 20 else None,
        )
    series = load_csv(
        config.data,
        config.date_column,
        config.target,
        tuple(config.covariates),
        config.frequency,
        "interpolate" if config.fill_gaps == "interpolate" else "error",
        tuple(config.known_ahead),
    )
    numeric = 1 + len(config.covariates)
    train_part, valid_part, test_part = split_series(series, config.train_end, config.valid_end)
    if config.train_start is not None:
        start = int(np.searchsorted(series.dates, np.datetime64(config.train_start), side="left"))
        train_part = slice(start, train_part.stop)
    if train_part.stop - train_part.start < 1:
        raise DataError(
            f"no training rows between --train-start {config.train_start} and --train-end "
            f"{config.train_end}"
        )
    if config.scaling == "window":
        if config.kind != "seq2vec":
            raise DataError("--scaling window needs --kind seq2vec")
        # Values stay positive (the in-graph window level divides by them): no centring.
        peak = np.abs(series.values[train_part]).max(axis=0)
        scaling = Scaling([0.0] * len(peak), [float(p) if p > 0 else 1.0 for p in peak])
    else:
        scaling = Scaling.fit(series.values[train_part])
    # One-hot covariates (the columns after the numeric ones) stay 0/1.
    scaling.mean[numeric:] = [0.0] * (len(scaling.mean) - numeric)
    scaling.scale[numeric:] = [1.0] * (len(scaling.scale) - numeric)
    scaled = scaling.apply(series.values)

    def windows(part: slice, name: str, inside: bool = False) -> Windows:
        # Windows may start in the previous period: only their targets must be unseen. The book
        # forms them inside the period, so its first targets come input_length steps in.
        lo = part.start if inside else max(part.start - config.input_length, 0)
        return window_series(
            scaled[lo : part.stop], config.input_length, config.horizon, config.kind, 0, name
        )

    train = window_series(
        scaled[train_part], config.input_length, config.horizon, config.kind, 0, "training"
    )
    valid = windows(valid_part, "validation", config.valid_context == "inside")
    test = None
    test_dates = None
    if config.test_end is not None:
        end = int(np.searchsorted(series.dates, np.datetime64(config.test_end), side="right"))
        test = windows(slice(test_part.start, end), "test")
        first = max(test_part.start - config.input_length, 0) + config.input_length
        test_dates = [
            str(np.datetime_as_string(d, "D")) for d in series.dates[first : first + len(test)]
        ]
    drift = None
    if config.drift_eval is not None:
        start_text, _, end_text = config.drift_eval.partition(":")
        start = int(np.searchsorted(series.dates, np.datetime64(start_text), side="left"))
        end = int(np.searchsorted(series.dates, np.datetime64(end_text), side="right"))
        drift = windows(slice(start, end), f"drift evaluation {config.drift_eval}")
    dates = series.dates
    return Task(
        config,
        train,
        valid,
        series.features,
        scaling,
        series.frequency,
        f"{config.data}: target {config.target!r}, train "
        f"{np.datetime_as_string(dates[train_part.start], 'D')}.."
        f"{np.datetime_as_string(dates[train_part.stop - 1], 'D')}, validation until "
        f"{np.datetime_as_string(dates[valid_part.stop - 1], 'D')}",
        series.notes,
        scaled,
        test,
        drift,
        numeric,
        test_dates,
    )
