"""A forecasting task: the windows to train and validate on, with everything the export must record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from training.baselines import season_for_frequency
from training.datasets import (
    FloatArray,
    Panel,
    Scaling,
    TargetKind,
    Windows,
    csv_header,
    detect_format,
    generate_time_series,
    load_csv,
    load_long_csv,
    load_m4_wide,
    split_series,
    synthetic_windows,
    window_series,
)
from training.errors import DataError
from training.intake import (
    DateUnit,
    check_frequency,
    check_split_order,
    day,
    parse_split_date,
)


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
    season: int = 0  # 0: from the data's frequency (training.baselines.season_for_frequency)
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
    # CSV intake (training.intake): how the dates are written; None/False/empty: ISO 8601
    date_format: str | None = None  # strftime, e.g. %d/%m/%Y
    dayfirst: bool = False
    date_columns: list[str] = field(default_factory=list)  # year month day hour..., in that order
    date_unit: str | None = None  # "s" or "ms": the date column holds Unix epoch numbers (UTC)
    categorical: list[str] = field(default_factory=list)  # covariates one-hot encoded as COL=value
    # "auto", "wide" (one series), "long" (unique_id, ds, y) or "m4" (id, then values)
    data_format: str = "auto"
    id_column: str = "unique_id"
    test_data: str | None = None  # a panel's test continuation (M4's *-test.csv)
    max_windows_per_series: int = 200  # a panel's most recent training windows per series

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
    # Row of the one series (scaled_series) where each window's first target lies, when the
    # windows come from one series: the baselines' AutoETS forecasts from the same origins.
    valid_origins: NDArray[np.intp] | None = None
    test_origins: NDArray[np.intp] | None = None
    train_rows: slice | None = None  # the training part's rows of scaled_series (MASE's scale)
    # Panels (--format long or m4): valid and test hold one window per series, in panel_ids order;
    # each series was divided by its scale (mean |value| of its training part) before windowing.
    panel_ids: list[str] | None = None
    series_scales: list[float] | None = None
    panel_series: list[FloatArray] | None = None  # each scaled series [T, 1], history only

    def sample_inputs(self, batch: int, length: int, rng: np.random.Generator) -> FloatArray:
        """Windows of any length drawn from the task's own data, for parity checks.

        Parity is measured on the data the model serves: on white noise, float32 rounding in a
        200-step recurrence drifts past 1e-5 in both runtimes alike, which says nothing about export.
        """
        if self.panel_series is not None:
            lengths = np.array([len(s) for s in self.panel_series])
            length = min(length, int(lengths.max()))
            picks = rng.choice(np.flatnonzero(lengths >= length), batch)
            offsets = [int(rng.integers(0, lengths[i] - length + 1)) for i in picks]
            return np.stack(
                [self.panel_series[i][o : o + length] for i, o in zip(picks, offsets, strict=True)]
            ).astype(np.float32)
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
        config.season = max(config.season, 1)
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
    data_format = resolve_format(config)
    if data_format != "wide":
        return build_panel_task(config, data_format)
    if config.test_data is not None:
        raise DataError(
            "--test-data gives the test continuation of a panel (--format long or m4); a one-series "
            "CSV tests on its own rows after --valid-end, up to --test-end"
        )
    series = load_csv(
        config.data,
        config.date_column,
        config.target,
        tuple(config.covariates),
        config.frequency,
        "interpolate" if config.fill_gaps == "interpolate" else "error",
        tuple(config.known_ahead),
        categorical=tuple(config.categorical),
        date_format=config.date_format,
        dayfirst=config.dayfirst,
        date_unit=date_unit(config),
        date_columns=tuple(config.date_columns),
    )
    numeric = series.numeric
    if config.season < 1:
        config.season = season_for_frequency(series.frequency)
    bounds = split_dates(config, series.span or (series.dates[0], series.dates[-1]), series.layout)
    train_part, valid_part, test_part = split_series(
        series, bounds.get("--train-end"), bounds.get("--valid-end")
    )
    if config.train_start is not None:
        start = int(np.searchsorted(series.dates, bounds["--train-start"], side="left"))
        train_part = slice(start, train_part.stop)
    if train_part.stop - train_part.start < 1:
        raise DataError(
            f"no training rows between --train-start {config.train_start} and --train-end "
            f"{config.train_end}"
        )
    if config.scaling == "window":
        if config.kind != "seq2vec":
            raise DataError("--scaling window needs --kind seq2vec")
        check_positive(series.values[train_part, :numeric], series.features, "column")
        # Values stay positive (the in-graph window level divides by them): no centring.
        peak = np.abs(series.values[train_part]).max(axis=0)
        scaling = Scaling([0.0] * len(peak), [float(p) if p > 0 else 1.0 for p in peak])
    else:
        scaling = Scaling.fit(series.values[train_part])
    # One-hot covariates (the columns after the numeric ones) stay 0/1.
    scaling.mean[numeric:] = [0.0] * (len(scaling.mean) - numeric)
    scaling.scale[numeric:] = [1.0] * (len(scaling.scale) - numeric)
    scaled = scaling.apply(series.values)

    def first_row(part: slice, inside: bool = False) -> int:
        # Windows may start in the previous period: only their targets must be unseen. The book
        # forms them inside the period, so its first targets come input_length steps in.
        return int(part.start) if inside else max(int(part.start) - config.input_length, 0)

    def windows(part: slice, name: str, inside: bool = False) -> Windows:
        return window_series(
            scaled[first_row(part, inside) : part.stop],
            config.input_length,
            config.horizon,
            config.kind,
            0,
            name,
        )

    def origins(part: slice, count: int, inside: bool = False) -> NDArray[np.intp]:
        """The row of each window's first target (as `windows` forms them)."""
        start = first_row(part, inside) + config.input_length
        rows: NDArray[np.intp] = start + np.arange(count, dtype=np.intp)
        return rows

    train = window_series(
        scaled[train_part], config.input_length, config.horizon, config.kind, 0, "training"
    )
    inside = config.valid_context == "inside"
    notes = list(series.notes)
    if config.test_end is not None:
        end = int(np.searchsorted(series.dates, bounds["--test-end"], side="right"))
        test_part = slice(test_part.start, end)
    else:
        # Calibration always: the rows after validation, or else the end of validation, are held
        # out (never trained or early-stopped on) to calibrate the intervals and run the gate.
        rows_needed = config.input_length + config.horizon + MIN_CALIBRATION_WINDOWS - 1
        rest = len(series.values) - first_row(test_part)
        if rest < rows_needed:
            cut = valid_part.start + (valid_part.stop - valid_part.start) * 2 // 3
            valid_part, test_part = slice(valid_part.start, cut), slice(cut, len(series.values))
    valid = windows(valid_part, "validation", inside)
    test = None
    test_dates = None
    test_origins = None
    # at least one window: the part holds a horizon of targets after input_length rows of context
    if test_part.stop - first_row(test_part) >= config.input_length + config.horizon:
        test = windows(test_part, "test")
        test_origins = origins(test_part, len(test))
        test_dates = [str(np.datetime_as_string(series.dates[o], "D")) for o in test_origins]
        if config.test_end is None:
            notes.append(
                f"no --test-end: the {test_part.stop - test_part.start} rows "
                f"{np.datetime_as_string(series.dates[test_part.start], 'D')}.."
                f"{np.datetime_as_string(series.dates[test_part.stop - 1], 'D')} are held out "
                f"({len(test)} windows) to calibrate the intervals and check the baselines"
            )
    if test is None or len(test) < MIN_CALIBRATION_WINDOWS:
        notes.append(
            f"warning: {0 if test is None else len(test)} held-out windows, fewer than "
            f"{MIN_CALIBRATION_WINDOWS}: intervals are calibrated roughly or not at all; give "
            "more rows after --valid-end (--test-end)"
        )
    drift = None
    if config.drift_eval is not None:
        start = int(np.searchsorted(series.dates, bounds["--drift-eval START"], side="left"))
        end = int(np.searchsorted(series.dates, bounds["--drift-eval END"], side="right"))
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
        notes,
        scaled,
        test,
        drift,
        numeric,
        test_dates,
        valid_origins=origins(valid_part, len(valid), inside),
        train_rows=train_part,
        test_origins=test_origins,
    )


FORMATS = ("auto", "wide", "long", "m4")
# Held-out windows below which interval calibration is rough (a warning) or, below
# training.export.CALIBRATION_MIN_FIT fitting windows, skipped.
MIN_CALIBRATION_WINDOWS = 50


def date_unit(config: TaskConfig) -> DateUnit | None:
    if config.date_unit is None:
        return None
    if config.date_unit == "s":
        return "s"
    if config.date_unit == "ms":
        return "ms"
    raise DataError(f"--date-unit must be s or ms, got {config.date_unit!r}")


def resolve_format(config: TaskConfig) -> str:
    """The data format: as given, or for `auto` long when the header has the id column, m4 when it
    starts with V1 and has no date column, else one wide series."""
    if config.data_format not in FORMATS:
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {config.data_format!r}")
    if config.data_format != "auto":
        return config.data_format
    return detect_format(config.data, config.id_column, config.date_column)


def split_dates(
    config: TaskConfig, span: tuple[np.datetime64, np.datetime64], layout: str | None
) -> dict[str, np.datetime64]:
    """The split flags' dates, parsed like the file's (ISO 8601 or its own layout) and checked
    first for order (train-start < train-end < valid-end < test-end) and then for range."""
    unit = date_unit(config)
    given = [
        ("--train-start", config.train_start),
        ("--train-end", config.train_end),
        ("--valid-end", config.valid_end),
        ("--test-end", config.test_end),
    ]
    bounds = [(flag, parse_split_date(text, flag, layout, unit)) for flag, text in given if text]
    drift: list[tuple[str, np.datetime64]] = []
    if config.drift_eval is not None:
        drift = _drift_dates(config.drift_eval, layout, unit)
    check_split_order(bounds, *span)
    check_split_order(drift, *span)
    named = dict(bounds)
    if "--valid-end" in named and "--train-end" not in named:
        raise DataError("--valid-end needs --train-end (without them the split is 70/20/10%)")
    if "--test-end" in named and "--valid-end" not in named:
        raise DataError("--test-end needs --valid-end: the test split starts after validation")
    return named | dict(drift)


def _drift_dates(
    text: str, layout: str | None, unit: DateUnit | None
) -> list[tuple[str, np.datetime64]]:
    """--drift-eval START:END, split at the colon that leaves two dates (times have colons too)."""
    for i, char in enumerate(text):
        if char != ":":
            continue
        try:
            start = parse_split_date(text[:i], "--drift-eval START", layout, unit)
            end = parse_split_date(text[i + 1 :], "--drift-eval END", layout, unit)
        except DataError:
            continue
        return [("--drift-eval START", start), ("--drift-eval END", end)]
    raise DataError(f"--drift-eval {text!r} is not START:END with two dates (ISO 8601)")


def check_positive(values: NDArray[np.floating], names: list[str], what: str) -> None:
    """--scaling window divides by window means: every value must be above zero."""
    lowest = values.min(axis=0)
    for name, low in zip(names, lowest, strict=False):
        if low <= 0:
            raise DataError(
                f"--scaling window divides each window by its mean, but {what} {name!r} has "
                f"values <= 0 in the training data (minimum {low:g}); use --scaling standard"
            )


def build_panel_task(config: TaskConfig, data_format: str) -> Task:
    """Many univariate series (long CSV or M4 wide) as one task, windowed like the one-series path.

    Per series, the last `horizon` points of the history are its one validation target (context:
    the input_length points before); training windows lie wholly before it, the most recent
    max_windows_per_series of them. With --test-data, one test window per series: the last
    input_length points of the history, then the first `horizon` test values. Series shorter than
    input_length + 2 x horizon are dropped (with a note). Each series is divided by its scale (mean
    |value| of its training part) first; the model normalises each window in-graph, so it serves
    raw values.
    """
    other = [
        flag
        for flag, value in (
            ("--covariates", config.covariates),
            ("--known-ahead", config.known_ahead),
            ("--categorical", config.categorical),
            ("--date-columns", config.date_columns),
            ("--train-start", config.train_start),
            ("--train-end", config.train_end),
            ("--valid-end", config.valid_end),
            ("--test-end", config.test_end),
            ("--drift-eval", config.drift_eval),
        )
        if value
    ]
    if other:
        raise DataError(
            f"{' and '.join(other)} apply to one-series CSVs; --format {data_format} reads "
            "univariate series, validated on each one's last --horizon points and tested on "
            "--test-data"
        )
    if config.max_windows_per_series < 1:
        raise DataError(
            f"--max-windows-per-series must be at least 1, got {config.max_windows_per_series}"
        )
    panel, test_panel, target = _read_panels(config, data_format)
    frequency = check_frequency(config.frequency) if config.frequency else panel.frequency
    if config.season < 1:
        config.season = season_for_frequency(frequency)
    length, horizon, kind = config.input_length, config.horizon, config.kind
    need = length + 2 * horizon
    keep = [i for i, v in enumerate(panel.values) if len(v) >= need]
    notes = list(panel.notes)
    if not keep:
        raise DataError(
            f"{config.data}: all {len(panel)} series are shorter than input_length + 2 x horizon "
            f"= {need} points (the longest has {max(len(v) for v in panel.values)})"
        )
    if len(keep) < len(panel):
        dropped = [panel.ids[i] for i in range(len(panel)) if i not in set(keep)]
        notes.append(
            f"dropped {len(dropped)} of {len(panel)} series shorter than input_length + 2 x "
            f"horizon = {need} points: {', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''}"
        )
    cap = config.max_windows_per_series
    train: list[Windows] = []
    valid: list[Windows] = []
    test: list[Windows] = []
    scales: list[float] = []
    scaled_series: list[FloatArray] = []
    capped = 0
    for i in keep:
        history = panel.values[i]
        fit_part = history[:-horizon]
        scale = float(np.mean(np.abs(fit_part)))
        scale = scale if np.isfinite(scale) and scale > 0 else 1.0
        scaled = (history / scale).astype(np.float32)[:, None]
        if config.scaling == "window":
            check_positive(scaled[:-horizon], [panel.ids[i]], "series")
        part = scaled[:-horizon]
        if len(part) - (length + horizon) + 1 > cap:
            part = part[-(cap + length + horizon - 1) :]
            capped += 1
        name = f"series {panel.ids[i]!r}"
        train.append(window_series(part, length, horizon, kind, 0, f"{name} training"))
        valid.append(window_series(scaled[-(length + horizon) :], length, horizon, kind, 0, name))
        if test_panel is not None:
            future = (test_panel.values[i][:horizon] / scale).astype(np.float32)[:, None]
            window = np.concatenate([scaled[-length:], future])
            test.append(window_series(window, length, horizon, kind, 0, f"{name} test"))
        scales.append(scale)
        scaled_series.append(scaled)
    if capped:
        notes.append(
            f"{capped} series have more than {cap} training windows: kept their most recent {cap} "
            "(--max-windows-per-series)"
        )
    notes.append(
        "each series divided by its own scale (mean |value| of its training part); forecasts in "
        "these units are multiplied back by Task.series_scales"
    )

    def joined(parts: list[Windows]) -> Windows:
        return Windows(np.concatenate([w.x for w in parts]), np.concatenate([w.y for w in parts]))

    ids = [panel.ids[i] for i in keep]
    train_windows = joined(train)
    description = (
        f"{config.data}: {len(ids)} series ({data_format}), {len(train_windows)} training windows "
        f"(at most {cap} per series), validation on each series' last {horizon} points"
        + (f", test on {config.test_data}" if test_panel is not None else "")
    )
    validation = joined(valid)
    return Task(
        config,
        train_windows,
        validation,
        [target],
        Scaling.identity(1),
        frequency,
        description,
        [
            *notes,
            f"the intervals are calibrated and the baseline gate decided on each series' last "
            f"{horizon} points (the validation windows, used for early stopping only)"
            + (
                f"; {config.test_data} is scored as an extra evaluation, never to decide"
                if test
                else ""
            ),
        ],
        test=validation,
        drift=joined(test) if test else None,
        panel_ids=ids,
        series_scales=scales,
        panel_series=scaled_series,
    )


def _read_panels(config: TaskConfig, data_format: str) -> tuple[Panel, Panel | None, str]:
    """The panel, its test continuation (--test-data, checked against it) and the target's name."""
    if data_format == "m4":
        panel = load_m4_wide(config.data)
        test = load_m4_wide(config.test_data) if config.test_data else None
        if test is not None:
            _same_ids(panel, test, config.test_data or "")
            _long_enough(test, config.horizon, config.test_data or "")
        return panel, test, "value"
    header = csv_header(config.data)
    # Nixtla's names are the defaults of --format long: ds and y, unless the file has the others.
    date_column = config.date_column
    if date_column == "date" and "date" not in header and "ds" in header:
        date_column = "ds"
    target = config.target
    if target == "value" and "value" not in header and "y" in header:
        target = "y"
    fill: Literal["error", "interpolate"] = (
        "interpolate" if config.fill_gaps == "interpolate" else "error"
    )
    rules: dict[str, Any] = {
        "date_format": config.date_format,
        "dayfirst": config.dayfirst,
        "date_unit": date_unit(config),
    }
    panel = load_long_csv(
        config.data, config.id_column, date_column, target, config.frequency, fill, **rules
    )
    if config.test_data is None:
        return panel, None, target
    test = load_long_csv(
        config.test_data,
        config.id_column,
        date_column,
        target,
        config.frequency or panel.frequency,
        fill,
        **rules,
    )
    order = {key: i for i, key in enumerate(test.ids)}
    missing = [key for key in panel.ids if key not in order]
    if missing:
        raise DataError(
            f"{config.test_data}: no test rows for series {', '.join(map(repr, missing[:3]))}"
            f"{' ...' if len(missing) > 3 else ''} ({len(missing)} of {len(panel)})"
        )
    test = Panel(
        panel.ids,
        [test.values[order[key]] for key in panel.ids],
        test.frequency,
        None if test.starts is None else [test.starts[order[key]] for key in panel.ids],
    )
    _long_enough(test, config.horizon, config.test_data)
    if panel.starts is not None and test.starts is not None and panel.frequency is not None:
        import pandas as pd

        for key, start, values, test_start in zip(
            panel.ids, panel.starts, panel.values, test.starts, strict=True
        ):
            expected = pd.date_range(start, periods=len(values) + 1, freq=panel.frequency)[-1]
            if np.datetime64(expected.to_datetime64(), "ns") != test_start:
                raise DataError(
                    f"{config.test_data}: series {key!r} starts at {day(test_start)}, not right "
                    f"after its history ({day(np.datetime64(expected.to_datetime64(), 'ns'))})"
                )
    return panel, test, target


def _same_ids(panel: Panel, test: Panel, path: str) -> None:
    if test.ids != panel.ids:
        for row, (a, b) in enumerate(zip(panel.ids, test.ids, strict=False)):
            if a != b:
                raise DataError(
                    f"{path}: row {row + 2} holds series {b!r} where the training file has {a!r}; "
                    "the test file needs the same ids in the same order"
                )
        raise DataError(
            f"{path}: {len(test)} series, the training file {len(panel)}; the test file needs the "
            "same ids in the same order"
        )


def _long_enough(test: Panel, horizon: int, path: str) -> None:
    for key, values in zip(test.ids, test.values, strict=True):
        if len(values) < horizon:
            raise DataError(
                f"{path}: series {key!r} has {len(values)} test values, fewer than --horizon "
                f"{horizon}"
            )
