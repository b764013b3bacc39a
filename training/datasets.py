"""Series sources and windowing: the book's synthetic generator, a CSV loader, seq2seq/seq2vec windows.

TensorFlow-free on purpose: the data side is plain numpy (and pandas for CSV), so it is cheap to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from training.errors import DataError
from training.intake import (
    DateRules,
    DateUnit,
    ParsedDates,
    check_frequency,
    day,
    infer_frequency,
    parse_date_columns,
    parse_dates,
)

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
    """A regular, gap-free multivariate series read from CSV, target column first.

    Columns: the target and numeric covariates (`numeric` of them), then one-hot categorical
    covariates (`COL=value`), then one-hot known-ahead columns (`next_COL=value`).
    """

    dates: NDArray[np.datetime64]
    values: NDArray[np.float64]  # [T, F], unscaled
    features: list[str]
    frequency: str
    notes: list[str] = field(default_factory=list)
    numeric: int = 1  # leading columns that are values, not one-hot
    layout: str | None = None  # how the dates were written: "ISO8601", a strftime format, or None
    # first and last date of the file (the last row is dropped with known-ahead columns)
    span: tuple[np.datetime64, np.datetime64] | None = None


def _read_table(path: Path) -> Any:
    """The CSV with every cell as text (NA and blanks as missing), or one clear DataError."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        return pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc


def _require(path: Path, frame: Any, columns: list[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found; the file has: "
            + ", ".join(map(str, frame.columns))
        )


def _read_dates(
    path: Path, frame: Any, date_column: str, date_columns: tuple[str, ...], rules: DateRules
) -> tuple[ParsedDates, str]:
    """The file's dates (one column, or several with --date-columns) and a label for messages."""
    if date_columns:
        label = "/".join(date_columns)
        return parse_date_columns(frame, list(date_columns), f"{path}: {label}"), label
    where = f"{path}: column {date_column!r}"
    return parse_dates(frame[date_column], date_column, rules, where), date_column


def _numeric(
    path: Path, frame: Any, columns: list[str], fill_gaps: str, categorical_hint: set[str]
) -> tuple[Any, list[str]]:
    """The columns as float64; non-numeric cells refused; empty cells refused or noted."""
    import pandas as pd

    numeric = frame[columns].apply(pd.to_numeric, errors="coerce")
    notes = []
    for column in columns:
        bad = (numeric[column].isna() & frame[column].notna()).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            hint = (
                f"; for a categorical covariate pass --categorical {column}"
                if column in categorical_hint
                else ""
            )
            raise DataError(
                f"{path}: column {column!r} is not numeric (row {row + 2}: "
                f"{frame[column].iloc[row]!r}){hint}"
            )
    for column in columns:  # wrong types first, then what is missing
        empty = numeric[column].isna().to_numpy()
        if empty.any():
            count, first = int(empty.sum()), int(np.flatnonzero(empty)[0])
            if fill_gaps == "error":
                raise DataError(
                    f"{path}: column {column!r} has {count} empty values (NA or blank), the first "
                    f"at row {first + 2}; fill them or pass --fill-gaps interpolate"
                )
            notes.append(f"interpolated {count} empty values in column {column!r}")
    return numeric, notes


def _regular(data: Any, frequency: str, fill_gaps: str, where: str) -> tuple[Any, list[str]]:
    """Sorted unique dated rows made regular at `frequency`: off-grid dates refused, gaps refused or
    interpolated, then empty cells interpolated (already counted by the caller)."""
    import pandas as pd

    notes: list[str] = []
    index = data.index
    offset = pd.tseries.frequencies.to_offset(frequency)
    if isinstance(offset, pd.tseries.offsets.Tick) and len(index) > 1:
        spacing = pd.Timedelta(np.diff(index.to_numpy()).min())
        if pd.Timedelta(offset.nanos, "ns") < spacing:  # every date would be a "gap": refuse
            raise DataError(
                f"{where}: --frequency {frequency!r} is finer than the dates, which are at least "
                f"{spacing} apart; pass the --frequency the dates follow"
            )
    full = pd.date_range(index[0], index[-1], freq=frequency)
    off = index.difference(full)
    if len(off):
        grid = ", ".join(day(np.datetime64(d)) for d in full[:2])
        try:
            hint = f" (inferred: {infer_frequency(index.to_numpy(), where)})"
        except DataError:
            hint = ""
        raise DataError(
            f"{where}: date {day(np.datetime64(off[0]))} is not on the {frequency!r} grid (which "
            f"runs {grid}, ...); pass the --frequency the dates follow{hint}"
        )
    if len(full) != len(index):
        gaps = len(full) - len(index)
        if fill_gaps == "error":
            raise DataError(
                f"{where}: {gaps} missing dates at frequency {frequency!r} between "
                f"{day(np.datetime64(full[0]))} and {day(np.datetime64(full[-1]))}; fill them or "
                "pass --fill-gaps interpolate"
            )
        data = data.reindex(full)
        notes.append(f"interpolated {gaps} missing dates")
    if data.isna().to_numpy().any():
        if fill_gaps == "error":  # the callers refuse empty cells first; this is a safety net
            column = str(data.columns[data.isna().any()][0])
            raise DataError(
                f"{where}: column {column!r} has empty values; fill them or pass --fill-gaps "
                "interpolate"
            )
        data = data.interpolate(limit_direction="both")
    return data, notes


def _frequency(
    frequency: str | None, dates: NDArray[np.datetime64], where: str, rules: DateRules
) -> str:
    if frequency is not None:
        return check_frequency(frequency)
    return infer_frequency(dates, where, rules.date_unit)


def load_csv(
    path: str | Path,
    date_column: str,
    target: str,
    covariates: tuple[str, ...] = (),
    frequency: str | None = None,
    fill_gaps: Literal["error", "interpolate"] = "error",
    known_ahead: tuple[str, ...] = (),
    *,
    categorical: tuple[str, ...] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    date_unit: DateUnit | None = None,
    date_columns: tuple[str, ...] = (),
) -> CsvSeries:
    """Read a CSV into a regular series: parse dates, drop exact duplicate rows, check the spacing.

    Dates follow the rules of training.intake: ISO 8601 unless `date_format`, `dayfirst`,
    `date_unit` (epoch numbers, UTC) or `date_columns` (year, month, day, hour... in that order)
    say otherwise; a non-ISO column is read only when one layout fits every row. Zone-aware dates
    are converted to naive UTC, with a note.

    `categorical` names covariates one-hot encoded as `COL=value` columns after the numeric ones.
    `known_ahead` names categorical columns known one step in advance (the book's next-day type):
    each becomes one-hot columns `next_<column>=<category>`, where row t holds the category of t+1
    (the last row, whose next step is unknown, is dropped).

    Raises DataError with one message naming the problem: missing file or column, unparsable or
    ambiguous dates, non-numeric values, conflicting duplicate dates, gaps or empty values (unless
    `fill_gaps="interpolate"`), a bad frequency.
    """
    import pandas as pd

    path = Path(path)
    rules = DateRules(date_format, dayfirst, date_unit)
    if frequency is not None:
        frequency = check_frequency(frequency)
    frame = _read_table(path)
    if target in categorical:
        raise DataError(f"--categorical {target}: the target must be numeric")
    numeric_covariates = [c for c in covariates if c not in categorical]
    categories = list(dict.fromkeys(categorical))
    columns = [target, *numeric_covariates]
    _require(
        path,
        frame,
        [*(date_columns or [date_column]), *columns, *categories, *known_ahead],
    )
    parsed, label = _read_dates(path, frame, date_column, date_columns, rules)
    numeric, notes = _numeric(path, frame, columns, fill_gaps, set(numeric_covariates))
    notes = parsed.notes + notes
    data = pd.DataFrame(numeric.to_numpy(), index=pd.DatetimeIndex(parsed.dates), columns=columns)
    one_hot: list[str] = []
    for column, prefix in [*((c, "") for c in categories), *((c, "next_") for c in known_ahead)]:
        empty = frame[column].isna().to_numpy()
        if empty.any():
            first = int(np.flatnonzero(empty)[0])
            raise DataError(
                f"{path}: categorical column {column!r} is empty at row {first + 2} "
                f"({int(empty.sum())} in all); fill it in the file"
            )
        text = frame[column].astype(str)
        for category in sorted(text.unique()):
            name = f"{prefix}{column}={category}"
            data[name] = (text == category).to_numpy(dtype=np.float64)
            one_hot.append(name)
    ahead_columns = [c for c in one_hot if c.startswith("next_")]
    before = len(data)
    data = data[~(data.index.duplicated(keep="first") & data.duplicated(keep="first"))]
    if len(data) < before:
        notes.append(f"dropped {before - len(data)} duplicate rows")
    if data.index.has_duplicates:
        dup = np.datetime64(data.index[data.index.duplicated()][0])
        raise DataError(f"{path}: date {day(dup)} appears twice with different values")
    data = data.sort_index()
    if len(data) < 3:
        raise DataError(f"{path}: only {len(data)} rows; a series needs many more")
    where = f"{path}: {label}"
    freq = _frequency(frequency, data.index.to_numpy(), where, rules)
    data, gap_notes = _regular(data, freq, fill_gaps, str(path))
    notes += gap_notes
    span = (_dates_ns(data.index[:1])[0], _dates_ns(data.index[-1:])[0])
    if ahead_columns:
        data[ahead_columns] = data[ahead_columns].shift(-1)
        data = data.iloc[:-1]
    return CsvSeries(
        dates=_dates_ns(data.index),
        values=data.to_numpy(dtype=np.float64),
        features=[*columns, *one_hot],
        frequency=freq,
        notes=notes,
        numeric=len(columns),
        layout=parsed.layout,
        span=span,
    )


def _dates_ns(index: Any) -> NDArray[np.datetime64]:
    out: NDArray[np.datetime64] = np.asarray(index, dtype="datetime64[ns]")
    return out


@dataclass
class Panel:
    """Many univariate series (long CSV or M4 wide): one 1-D float64 array each, in time order."""

    ids: list[str]
    values: list[NDArray[np.float64]]  # one 1-D array per series, time order, no NaN
    frequency: str | None  # pandas alias, or None (M4 has no dates)
    starts: list[np.datetime64] | None  # first date of each series, None without dates
    notes: list[str] = field(default_factory=list)
    layout: str | None = None  # how the dates were written (see CsvSeries.layout)

    def __len__(self) -> int:
        return len(self.ids)


def load_long_csv(
    path: str | Path,
    id_column: str = "unique_id",
    date_column: str = "ds",
    target: str = "y",
    frequency: str | None = None,
    fill_gaps: Literal["error", "interpolate"] = "error",
    *,
    date_format: str | None = None,
    dayfirst: bool = False,
    date_unit: DateUnit | None = None,
) -> Panel:
    """Nixtla's long format (one row per series and date: unique_id, ds, y) as a Panel.

    Dates follow load_csv's rules; every series must be regular at one common frequency (given, or
    inferred per series and agreed); gaps and empty values are refused unless interpolated.
    Series keep the order in which their ids first appear.
    """
    import pandas as pd

    path = Path(path)
    rules = DateRules(date_format, dayfirst, date_unit)
    if frequency is not None:
        frequency = check_frequency(frequency)
    frame = _read_table(path)
    _require(path, frame, [id_column, date_column, target])
    no_id = frame[id_column].isna().to_numpy()
    if no_id.any():
        first = int(np.flatnonzero(no_id)[0])
        raise DataError(f"{path}: column {id_column!r} has no series id at row {first + 2}")
    parsed = parse_dates(frame[date_column], date_column, rules, f"{path}: column {date_column!r}")
    numeric, notes = _numeric(path, frame, [target], fill_gaps, set())
    notes = parsed.notes + notes
    table = pd.DataFrame(
        {
            "id": frame[id_column].astype(str).str.strip().to_numpy(),
            "date": parsed.dates,
            "value": numeric[target].to_numpy(dtype=np.float64),
        }
    )
    before = len(table)
    table = table.drop_duplicates()
    if len(table) < before:
        notes.append(f"dropped {before - len(table)} duplicate rows")
    groups = {str(k): g for k, g in table.groupby("id", sort=False)}
    if not groups:
        raise DataError(f"{path}: no rows")
    series: dict[str, Any] = {}
    for key, group in groups.items():
        data = group.set_index("date")[["value"]].sort_index()
        if data.index.has_duplicates:
            dup = np.datetime64(data.index[data.index.duplicated()][0])
            raise DataError(
                f"{path}: series {key!r} has date {day(dup)} twice with different values"
            )
        series[key] = data
    if frequency is None:
        inferred: dict[str, str] = {}
        for key, data in series.items():
            if len(data) >= 3:
                inferred[key] = infer_frequency(
                    data.index.to_numpy(), f"{path}: series {key!r}", rules.date_unit
                )
        if not inferred:
            raise DataError(f"{path}: every series is under 3 rows; pass --frequency")
        kinds = dict.fromkeys(inferred.values())
        if len(kinds) > 1:
            a, b = list(kinds)[:2]
            ka = next(k for k, f in inferred.items() if f == a)
            kb = next(k for k, f in inferred.items() if f == b)
            raise DataError(
                f"{path}: series {ka!r} is at frequency {a} but series {kb!r} at {b}; the series "
                "need one common frequency (pass --frequency to check them all against one)"
            )
        frequency = next(iter(kinds))
    ids: list[str] = []
    values: list[NDArray[np.float64]] = []
    starts: list[np.datetime64] = []
    filled = 0
    for key, data in series.items():
        regular, _ = _regular(data, frequency, fill_gaps, f"{path}: series {key!r}")
        filled += len(regular) - len(data)
        ids.append(key)
        values.append(regular["value"].to_numpy(dtype=np.float64))
        starts.append(np.datetime64(regular.index[0].to_datetime64(), "ns"))
    if filled:
        notes.append(f"interpolated {filled} missing dates across the series")
    return Panel(ids, values, frequency, starts, notes, parsed.layout)


def load_m4_wide(path: str | Path) -> Panel:
    """M4's wide CSV (header V1, V2...; one row per series: its id, then its values, then trailing
    empties) as a Panel without dates."""
    import pandas as pd

    path = Path(path)
    frame = _read_table(path)
    if frame.shape[1] < 2:
        raise DataError(f"{path}: an M4 file has an id column and value columns")
    id_name = str(frame.columns[0])
    ids_raw = frame[id_name]
    if ids_raw.isna().any():
        first = int(np.flatnonzero(ids_raw.isna().to_numpy())[0])
        raise DataError(f"{path}: row {first + 2} has no series id")
    ids = [str(i).strip() for i in ids_raw]
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: series id {ids[first]!r} appears twice (row {first + 2})")
    cells = frame.iloc[:, 1:]
    numbers = cells.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    present = cells.notna().to_numpy()
    bad = present & np.isnan(numbers)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"{path}: series {ids[row]!r} (row {row + 2}) holds {cells.iat[row, col]!r} in column "
            f"{cells.columns[col]!r}, not a number"
        )
    values: list[NDArray[np.float64]] = []
    for row, key in enumerate(ids):
        filled = np.flatnonzero(present[row])
        if not len(filled):
            raise DataError(f"{path}: series {key!r} (row {row + 2}) has no values")
        length = int(filled[-1]) + 1
        if len(filled) != length:
            hole = int(np.flatnonzero(~present[row, :length])[0])
            raise DataError(
                f"{path}: series {key!r} (row {row + 2}) is empty in column "
                f"{cells.columns[hole]!r} before its last value; an M4 row holds its values, then "
                "trailing empties"
            )
        values.append(numbers[row, :length].copy())
    return Panel(ids, values, None, None, [])


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV file (its first line)."""
    import pandas as pd

    if not Path(path).is_file():
        raise DataError(f"data file not found: {path}")
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc


def detect_format(path: str | Path, id_column: str = "unique_id", date_column: str = "date") -> str:
    """`--format auto`: 'long' when the header has the id column, 'm4' when its first column is
    like V1 and it has no date column, else 'wide' (one series: a date column, value columns)."""
    import re

    header = csv_header(path)
    if id_column in header:
        return "long"
    if header and re.fullmatch(r"V\d+", header[0]) and date_column not in header:
        return "m4"
    return "wide"


def split_series(
    series: CsvSeries,
    train_end: str | np.datetime64 | None = None,
    valid_end: str | np.datetime64 | None = None,
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
