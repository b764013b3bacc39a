"""Series sources and windowing: the book's synthetic generator, a CSV loader, seq2seq/seq2vec windows.

TensorFlow-free on purpose: the data side is plain numpy (and pandas for CSV), so it is cheap to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from training.errors import DataError

FloatArray = NDArray[np.float32]
TargetKind = Literal["seq2seq", "seq2vec"]


def generate_time_series(batch_size: int, n_steps: int, seed: int = 42) -> FloatArray:
    """The book's synthetic series: two sines of random frequency and offset plus noise, [B, T, 1]."""
    rng = np.random.default_rng(seed)
    freq1, freq2, offsets1, offsets2 = rng.random((4, batch_size, 1))
    time = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (rng.random((batch_size, n_steps)) - 0.5)
    out: FloatArray = series[..., np.newaxis].astype(np.float32)
    return out


@dataclass
class Windows:
    """Model inputs X [N, T, F] and targets Y ([N, T, H] for seq2seq, [N, H] for seq2vec)."""

    x: FloatArray
    y: FloatArray

    def __len__(self) -> int:
        return len(self.x)


def seq2seq_targets(target: NDArray[np.floating], input_length: int, horizon: int) -> FloatArray:
    """At every time step t of the window, the next `horizon` target values (the book's Y[:, t, :]).

    `target` is [N, input_length + horizon]; the result is [N, input_length, horizon].
    """
    y = np.empty((target.shape[0], input_length, horizon), dtype=np.float32)
    for step_ahead in range(1, horizon + 1):
        y[:, :, step_ahead - 1] = target[:, step_ahead : step_ahead + input_length]
    return y


@dataclass
class SyntheticSplits:
    train: Windows
    valid: Windows
    test: Windows


def synthetic_windows(
    input_length: int = 50,
    horizon: int = 10,
    kind: TargetKind = "seq2seq",
    seed: int = 42,
    sizes: tuple[int, int, int] = (7000, 2000, 1000),
) -> SyntheticSplits:
    """The book's task: 10,000 series of input_length + horizon steps, split 7000/2000/1000."""
    n_train, n_valid, n_test = sizes
    series = generate_time_series(n_train + n_valid + n_test, input_length + horizon, seed)
    x = series[:, :input_length]
    if kind == "seq2seq":
        y = seq2seq_targets(series[:, :, 0], input_length, horizon)
    else:
        y = series[:, input_length:, 0]

    def part(lo: int, hi: int) -> Windows:
        return Windows(x[lo:hi], y[lo:hi])

    return SyntheticSplits(
        part(0, n_train),
        part(n_train, n_train + n_valid),
        part(n_train + n_valid, n_train + n_valid + n_test),
    )


@dataclass
class Scaling:
    """Per-feature standardisation fitted on training data only: x_scaled = (x - mean) / scale."""

    mean: list[float]
    scale: list[float]
    method: Literal["standard", "none"] = "standard"

    @classmethod
    def identity(cls, n_features: int) -> Scaling:
        return cls([0.0] * n_features, [1.0] * n_features, "none")

    @classmethod
    def fit(cls, values: NDArray[np.floating]) -> Scaling:
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls([float(m) for m in mean], [float(s) for s in std])

    def apply(self, values: NDArray[np.floating]) -> FloatArray:
        out: FloatArray = ((values - np.asarray(self.mean)) / np.asarray(self.scale)).astype(
            np.float32
        )
        return out

    def to_json(self) -> dict[str, object]:
        return {"method": self.method, "mean": self.mean, "scale": self.scale}


@dataclass
class CsvSeries:
    """A regular, gap-free multivariate series read from CSV, target column first."""

    dates: NDArray[np.datetime64]
    values: NDArray[np.float64]  # [T, F], unscaled
    features: list[str]
    frequency: str
    notes: list[str] = field(default_factory=list)


def load_csv(
    path: str | Path,
    date_column: str,
    target: str,
    covariates: tuple[str, ...] = (),
    frequency: str | None = None,
    fill_gaps: Literal["error", "interpolate"] = "error",
    known_ahead: tuple[str, ...] = (),
) -> CsvSeries:
    """Read a CSV into a regular series: parse dates, drop exact duplicate rows, check the spacing.

    `known_ahead` names categorical columns known one step in advance (the book's next-day type):
    each becomes one-hot columns `next_<column>=<category>`, where row t holds the category of t+1
    (the last row, whose next step is unknown, is dropped).

    Raises DataError with one message naming the problem: missing file or column, unparsable dates,
    non-numeric values, conflicting duplicate dates, gaps (unless `fill_gaps="interpolate"`) or NaNs.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    columns = [target, *covariates]
    missing = [c for c in [date_column, *columns, *known_ahead] if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found; the file has: "
            + ", ".join(map(str, frame.columns))
        )
    try:
        dates = pd.to_datetime(frame[date_column], format="mixed")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: column {date_column!r} holds values that are not dates") from exc
    numeric = frame[columns].apply(pd.to_numeric, errors="coerce")
    for column in columns:
        bad = numeric[column].isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: column {column!r} is not numeric (row {row + 2}: {frame[column].iloc[row]!r})"
            )
    data = pd.DataFrame(numeric.to_numpy(), index=dates, columns=columns)
    ahead_columns: list[str] = []
    for column in known_ahead:
        if frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise DataError(f"{path}: column {column!r} is empty at row {row + 2}")
        for category in sorted(frame[column].astype(str).unique()):
            name = f"next_{column}={category}"
            data[name] = (frame[column].astype(str) == category).to_numpy(dtype=np.float64)
            ahead_columns.append(name)
    notes: list[str] = []
    before = len(data)
    data = data[~(data.index.duplicated(keep="first") & data.duplicated(keep="first"))]
    if len(data) < before:
        notes.append(f"dropped {before - len(data)} duplicate rows")
    if data.index.has_duplicates:
        dup = data.index[data.index.duplicated()][0]
        raise DataError(f"{path}: date {dup.date()} appears twice with different values")
    data = data.sort_index()
    if len(data) < 3:
        raise DataError(f"{path}: only {len(data)} rows; a series needs many more")
    freq = frequency
    if freq is None:
        with pd.option_context("future.infer_freq_returns_offset", True):
            inferred = pd.infer_freq(data.index)
        freq = None if inferred is None else inferred.freqstr
    if freq is None:
        step = pd.Series(data.index).diff().mode().iloc[0]
        freq = pd.tseries.frequencies.to_offset(step).freqstr
    full = pd.date_range(data.index[0], data.index[-1], freq=freq)
    if len(full) != len(data) or not full.equals(data.index):
        gaps = len(full.difference(data.index))
        if fill_gaps == "error":
            raise DataError(
                f"{path}: {gaps} missing dates at frequency {freq!r} between {full[0].date()} and "
                f"{full[-1].date()}; fill them or pass --fill-gaps interpolate"
            )
        data = data.reindex(full).interpolate(limit_direction="both")
        notes.append(f"interpolated {gaps} missing dates")
    if data.isna().any().any():
        column = str(data.columns[data.isna().any()][0])
        if fill_gaps == "error":
            raise DataError(
                f"{path}: column {column!r} has empty values (NaN); fill them or pass "
                "--fill-gaps interpolate"
            )
        data = data.interpolate(limit_direction="both")
        notes.append("interpolated empty values")
    if ahead_columns:
        data[ahead_columns] = data[ahead_columns].shift(-1)
        data = data.iloc[:-1]
    return CsvSeries(
        dates=data.index.to_numpy(),
        values=data.to_numpy(dtype=np.float64),
        features=[*columns, *ahead_columns],
        frequency=str(freq),
        notes=notes,
    )


def split_series(
    series: CsvSeries,
    train_end: str | None = None,
    valid_end: str | None = None,
    fractions: tuple[float, float] = (0.7, 0.2),
) -> tuple[slice, slice, slice]:
    """Index ranges of the train, validation and test parts, by end dates (inclusive) or fractions."""
    n = len(series.values)
    if train_end is not None:
        t_end = int(np.searchsorted(series.dates, np.datetime64(train_end), side="right"))
        v_end = (
            int(np.searchsorted(series.dates, np.datetime64(valid_end), side="right"))
            if valid_end is not None
            else n
        )
    else:
        t_end = int(n * fractions[0])
        v_end = int(n * (fractions[0] + fractions[1]))
    return slice(0, t_end), slice(t_end, v_end), slice(v_end, n)


def window_series(
    values: FloatArray,
    input_length: int,
    horizon: int,
    kind: TargetKind,
    target: int = 0,
    name: str = "series",
) -> Windows:
    """Slide a window over a [T, F] series: inputs of input_length steps, targets of the target column."""
    needed = input_length + horizon
    if len(values) < needed:
        raise DataError(
            f"the {name} part has {len(values)} rows, too few for a window of {input_length} "
            f"inputs + {horizon} targets ({needed} rows)"
        )
    windows = np.lib.stride_tricks.sliding_window_view(values, needed, axis=0)  # [N, F, needed]
    windows = np.ascontiguousarray(np.moveaxis(windows, 2, 1)).astype(np.float32)
    x = windows[:, :input_length, :]
    if kind == "seq2seq":
        y = seq2seq_targets(windows[:, :, target], input_length, horizon)
    else:
        y = windows[:, input_length:, target]
    return Windows(x, y)
