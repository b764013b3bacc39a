"""CSV intake that never guesses silently: dates, time zones, epoch times, frequencies, split dates.

Every function returns what it read, with a note for anything it converted, or raises DataError with
one line naming the problem, the CSV rows (the header is row 1) and the flag that fixes it.

Dates are parsed as ISO 8601 unless told otherwise (--date-format, --dayfirst, --date-unit,
--date-columns). A non-ISO column is read only when exactly one layout fits every row: when both a
day-first and a month-first reading fit (01/02/1981), the file is refused and the flag named.
Time-zone-aware dates are converted to UTC and made naive. Works with pandas 2.2+ and 3.x.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from training.errors import DataError

DateUnit = Literal["s", "ms"]

# ISO 8601 extended form: YYYY, YYYY-MM, YYYY-MM-DD, then an optional time (T or space) and offset.
ISO_DATE = (
    r"\d{4}(?:-\d{2}(?:-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
    r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
NUMBER = r"[+-]?\d+(?:\.\d+)?"
# The date parts --date-columns reads, in this order.
DATE_PARTS = ("year", "month", "day", "hour", "minute", "second")
PART_RANGES = {
    "month": (1, 12),
    "day": (1, 31),
    "hour": (0, 23),
    "minute": (0, 59),
    "second": (0, 59),
}
# pandas' removed or deprecated frequency aliases and what replaced them (pandas 2.2 deprecated
# them, pandas 3 removed most): refused with the current one named.
OLD_FREQUENCIES = {
    "M": "ME (month end) or MS (month start)",
    "Q": "QE (quarter end) or QS (quarter start)",
    "A": "YE (year end) or YS (year start)",
    "Y": "YE (year end) or YS (year start)",
    "AS": "YS",
    "BA": "BYE",
    "BAS": "BYS",
    "BY": "BYE",
    "BM": "BME",
    "BQ": "BQE",
    "CBM": "CBME",
    "SM": "SME",
    "H": "h",
    "BH": "bh",
    "CBH": "cbh",
    "T": "min",
    "S": "s",
    "L": "ms",
    "U": "us",
    "N": "ns",
}
FREQUENCY_EXAMPLES = "D, h, min, W, MS, ME, QS, QE, YS, YE"
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class DateRules:
    """How to read the date column: the CLI's --date-format, --dayfirst and --date-unit."""

    date_format: str | None = None
    dayfirst: bool = False
    date_unit: DateUnit | None = None


@dataclass
class ParsedDates:
    """Naive datetime64[ns] dates in file order, the layout that read them, notes on conversions."""

    dates: NDArray[np.datetime64]
    layout: str | None  # "ISO8601", a strftime format, or None (epoch numbers, date columns)
    notes: list[str] = field(default_factory=list)


def csv_rows(positions: NDArray[np.intp] | list[int], limit: int = 3) -> str:
    """CSV row numbers of 0-based data positions (the header is row 1): 'row 5' or 'rows 5, 6, 9'."""
    rows = [int(p) + 2 for p in list(positions)[:limit]]
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(map(str, rows))


def _to_ns(values: Any) -> NDArray[np.datetime64]:
    """Naive datetime64[ns] numpy dates from a pandas datetime Series (pandas 3 may use [us] or [s])."""
    out: NDArray[np.datetime64] = np.asarray(values, dtype="datetime64[ns]")
    return out


def _to_datetime(text: Any, **kwargs: Any) -> Any:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' own "could not infer format" chatter
        return pd.to_datetime(text, **kwargs)


def _written_offsets(text: Any) -> list[str]:
    """The distinct UTC offsets (or zone names) the date text ends with, for the note."""
    found = text.str.extract(r"([+-]\d{2}:?\d{2}|Z|[A-Za-z_/]{3,})\s*$")[0].dropna()
    return sorted(set(found)) or ["named zones"]


def _aware_to_utc(parsed: Any, label: str, offsets: list[str]) -> tuple[Any, str]:
    """UTC-converted naive dates, and the note saying so."""
    shown = ", ".join(offsets[:4]) + (", ..." if len(offsets) > 4 else "")
    note = (
        f"converted the time-zone-aware dates in {label!r} (UTC offsets {shown}) to UTC and "
        "dropped the zone"
    )
    return parsed.dt.tz_convert(None), note


def parse_dates(values: Any, label: str, rules: DateRules, where: str) -> ParsedDates:
    """Parse one column of date text (a pandas Series in file order) by `rules`.

    `where` prefixes every message (e.g. "data.csv: column 'date'").
    """
    import pandas as pd

    raw = pd.Series(values).reset_index(drop=True)
    missing = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        positions = np.flatnonzero(missing)
        raise DataError(
            f"{where} has no date at {csv_rows(positions)} ({len(positions)} in all); every row "
            "needs one"
        )
    text = raw.astype(str).str.strip()
    if rules.date_format is not None:
        return _with_format(text, rules.date_format, label, where)
    numeric = text.str.fullmatch(NUMBER).to_numpy(dtype=bool)
    if rules.date_unit is not None:
        if not numeric.all():
            first = int(np.flatnonzero(~numeric)[0])
            raise DataError(
                f"{where}: --date-unit {rules.date_unit} reads Unix epoch numbers, but row "
                f"{first + 2} holds {text[first]!r}"
            )
        return _epoch(text, rules.date_unit, label, where)
    iso = text.str.fullmatch(ISO_DATE).to_numpy(dtype=bool)
    if iso.all():
        parsed = _iso(text, label, where)
        if rules.dayfirst:
            parsed.notes.append(f"--dayfirst ignored: the dates in {label!r} are ISO 8601")
        return parsed
    if numeric.all():
        raise DataError(
            f"{where} holds numbers, not dates (row 2: {text[0]!r}); for Unix epoch times pass "
            "--date-unit s or --date-unit ms, for another layout --date-format (e.g. %Y%m%d)"
        )
    return _guess(text, label, rules.dayfirst, where)


def _iso(text: Any, label: str, where: str) -> ParsedDates:
    offsets = text.str.extract(f"^{ISO_DATE}$")["offset"]
    aware = offsets.notna().to_numpy()
    if aware.any() and not aware.all():
        a, n = int(np.flatnonzero(aware)[0]), int(np.flatnonzero(~aware)[0])
        raise DataError(
            f"{where} mixes dates with a UTC offset (row {a + 2}: {text[a]!r}) and without (row "
            f"{n + 2}: {text[n]!r}); give every date an offset, or none"
        )
    parsed = _to_datetime(text, format="ISO8601", errors="coerce", utc=bool(aware.any()))
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: row {first + 2} ({text[first]!r}) is not a valid date")
    notes = []
    if aware.any():
        parsed, note = _aware_to_utc(parsed, label, sorted(set(offsets)))
        notes.append(note)
    return ParsedDates(_to_ns(parsed), "ISO8601", notes)


def _with_format(text: Any, date_format: str, label: str, where: str) -> ParsedDates:
    aware = "%z" in date_format or "%Z" in date_format
    try:
        parsed = _to_datetime(text, format=date_format, errors="coerce", utc=aware)
    except (ValueError, TypeError) as exc:
        raise DataError(f"--date-format {date_format!r} is not a usable format ({exc})") from exc
    bad = parsed.isna().to_numpy()
    if bad.any():
        positions = np.flatnonzero(bad)
        first = int(positions[0])
        raise DataError(
            f"{where}: {len(positions)} value(s) do not match --date-format {date_format!r}, the "
            f"first at row {first + 2} ({text[first]!r})"
        )
    notes = []
    if aware:
        parsed, note = _aware_to_utc(parsed, label, _written_offsets(text))
        notes.append(note)
    return ParsedDates(_to_ns(parsed), date_format, notes)


def _epoch(text: Any, unit: DateUnit, label: str, where: str) -> ParsedDates:
    import pandas as pd

    numbers = pd.to_numeric(text)
    biggest = float(numbers.abs().max())
    if unit == "s" and biggest > 1e10:  # 1e10 s is the year 2286
        raise DataError(
            f"{where}: epoch values up to {biggest:.0f} are far in the future as seconds; if they "
            "are milliseconds pass --date-unit ms"
        )
    if unit == "ms" and 0 < biggest < 1e10:  # 1e10 ms is 1970-04-26
        raise DataError(
            f"{where}: epoch values up to {biggest:.0f} would all fall in early 1970 as "
            "milliseconds; if they are seconds pass --date-unit s"
        )
    try:
        parsed = _to_datetime(numbers, unit=unit, utc=True)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{where}: epoch values out of range for --date-unit {unit}") from exc
    name = "seconds" if unit == "s" else "milliseconds"
    return ParsedDates(
        _to_ns(parsed.dt.tz_convert(None)),
        None,
        [f"read {label!r} as Unix epoch {name} (UTC)"],
    )


def _order(date_format: str) -> str:
    """'dm', 'md' or '' (no numeric day and month pair, or year first: Y-m-d is the only reading)."""
    day, month = date_format.find("%d"), date_format.find("%m")
    if day < 0 or month < 0:
        return ""
    year = max(date_format.find("%Y"), date_format.find("%y"))
    if 0 <= year < min(day, month):
        return ""
    return "dm" if day < month else "md"


def _swap(date_format: str) -> str:
    return date_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _guess(text: Any, label: str, dayfirst: bool, where: str) -> ParsedDates:
    """A non-ISO column: read it only when one layout fits every row; otherwise name the rows."""
    import pandas as pd
    from pandas.tseries.api import guess_datetime_format

    unique = pd.unique(text.to_numpy())
    step = max(1, len(unique) // 40)
    sample = {*unique[:20], *unique[-20:], *unique[::step]}
    guessed: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for value in sample:
            for first in (False, True):
                layout = guess_datetime_format(str(value), dayfirst=first)
                if layout is not None:
                    guessed.add(layout)
    candidates: set[str] = set()
    for layout in guessed:
        year = max(layout.find("%Y"), layout.find("%y"))
        day, month = layout.find("%d"), layout.find("%m")
        if 0 <= year < day < month:
            continue  # year-day-month: a dayfirst guess for ISO-like text, which nobody writes
        candidates.add(layout)
        if _order(layout):
            candidates.add(_swap(layout))
    if dayfirst:
        candidates = {c for c in candidates if _order(c) != "md"}
    if not candidates:
        raise DataError(
            f"{where} holds values that are not dates (row 2: {text[0]!r}); write them as ISO "
            "8601 (YYYY-MM-DD) or pass --date-format"
        )
    fits: dict[str, NDArray[np.bool_]] = {}
    parsed: dict[str, Any] = {}
    for layout in sorted(candidates):
        try:
            result = _to_datetime(text, format=layout, errors="coerce", utc="%z" in layout)
        except (ValueError, TypeError):
            continue
        parsed[layout] = result
        fits[layout] = result.notna().to_numpy()
    complete = [c for c in sorted(fits) if fits[c].all()]
    if complete:
        chosen = complete[0]
        for other in complete[1:]:
            differ = (parsed[chosen] != parsed[other]).to_numpy()
            if differ.any():
                positions = np.flatnonzero(differ)
                example = text[int(positions[0])]
                pair = {_order(chosen): chosen, _order(other): other}
                if "dm" in pair and "md" in pair:
                    raise DataError(
                        f"{where}: dates such as {example!r} ({csv_rows(positions)}) read either "
                        f"day-first ({pair['dm']}) or month-first ({pair['md']}); pass --dayfirst "
                        f"if the day comes first, or --date-format '{pair['md']}' if the month does"
                    )
                raise DataError(
                    f"{where}: dates such as {example!r} ({csv_rows(positions)}) read as "
                    f"{chosen!r} or {other!r}; pass --date-format"
                )
        notes = []
        if chosen.find("%z") >= 0:
            parsed[chosen], note = _aware_to_utc(parsed[chosen], label, _written_offsets(text))
            notes.append(note)
        order = _order(chosen)
        swapped = fits.get(_swap(chosen)) if order else None
        if order and not dayfirst and swapped is not None:
            proof = int(np.flatnonzero(~swapped)[0])
            notes.append(
                f"read {label!r} {'day' if order == 'dm' else 'month'}-first ({chosen}): row "
                f"{proof + 2} ({text[proof]!r}) fits no other order; pass "
                f"{'--dayfirst' if order == 'dm' else f'--date-format {chosen!r}'} to state it"
            )
        elif not dayfirst:
            notes.append(f"read {label!r} as {chosen!r} (not ISO 8601)")
        return ParsedDates(_to_ns(parsed[chosen]), chosen, notes)
    # No layout fits every row: name the rows that only one order explains, or the odd ones out.
    for layout in sorted(fits):
        if _order(layout) != "dm" or _swap(layout) not in fits:
            continue
        day_first, month_first = fits[layout], fits[_swap(layout)]
        only_day = np.flatnonzero(day_first & ~month_first)
        only_month = np.flatnonzero(month_first & ~day_first)
        if len(only_day) and len(only_month) and (day_first | month_first).all():
            raise DataError(
                f"{where} is inconsistent: {csv_rows(only_day)} ({text[int(only_day[0])]!r}) read "
                f"only day-first ({layout}), {csv_rows(only_month)} "
                f"({text[int(only_month[0])]!r}) only month-first ({_swap(layout)}); fix the "
                "file or pass --date-format"
            )
    if not fits:
        raise DataError(
            f"{where} holds values that are not dates (row 2: {text[0]!r}); write them as ISO "
            "8601 (YYYY-MM-DD) or pass --date-format"
        )
    best = max(sorted(fits), key=lambda c: int(fits[c].sum()))
    bad = np.flatnonzero(~fits[best])
    if dayfirst and _order(best) == "dm":
        swapped = fits.get(_swap(best))
        hint = (
            f"; they read month-first ({_swap(best)})"
            if swapped is not None and swapped[bad].all()
            else ""
        )
        raise DataError(
            f"{where} is inconsistent with --dayfirst: {csv_rows(bad)} "
            f"({text[int(bad[0])]!r}) are not day-first dates ({best}){hint}; fix them or pass "
            "--date-format"
        )
    raise DataError(
        f"{where}: {csv_rows(bad)} ({text[int(bad[0])]!r}) do not fit the layout of the other dates "
        f"({best}); fix them or pass --date-format"
    )


def parse_date_columns(frame: Any, columns: list[str], where: str) -> ParsedDates:
    """Dates spread over columns read, in order, as year, month, day, hour, minute, second."""
    import pandas as pd

    if not 1 <= len(columns) <= len(DATE_PARTS):
        raise DataError(
            f"--date-columns takes 1 to {len(DATE_PARTS)} columns ({', '.join(DATE_PARTS)}, in "
            "that order)"
        )
    parts: dict[str, Any] = {}
    for part, column in zip(DATE_PARTS, columns, strict=False):
        name = str(column).strip().lower()
        if name in DATE_PARTS and name != part:
            raise DataError(
                f"--date-columns are read in the order {', '.join(DATE_PARTS[: len(columns)])}; "
                f"column {column!r} is given as the {part}"
            )
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = (values.isna() | (values != values.round())).to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where}: date column {column!r} needs whole numbers; row {first + 2} holds "
                f"{frame[column].iloc[first]!r}"
            )
        parts[part] = values.astype("int64").to_numpy()
        low, high = PART_RANGES.get(part, (-(10**9), 10**9))
        outside = (parts[part] < low) | (parts[part] > high)
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise DataError(
                f"{where}: row {first + 2} holds {part} {parts[part][first]} in column "
                f"{column!r} ({low}..{high})"
            )
    parts.setdefault("month", np.ones(len(frame), dtype=np.int64))
    parts.setdefault("day", np.ones(len(frame), dtype=np.int64))
    table = pd.DataFrame(parts)
    parsed = _to_datetime(table, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        shown = "-".join(str(table[p].iloc[first]) for p in parts if p in DATE_PARTS)
        raise DataError(
            f"{where}: row {first + 2} ({shown}) is not a valid date in "
            f"{', '.join(DATE_PARTS[: len(columns)])} order"
        )
    return ParsedDates(_to_ns(parsed), None, [])


def check_frequency(text: str, flag: str = "--frequency") -> str:
    """A current pandas frequency alias, as given; old aliases (M, H, T, A...) and nonsense refused."""
    from pandas.tseries.frequencies import to_offset

    value = text.strip()
    match = re.fullmatch(r"(\d*)([A-Za-z]+)(-[A-Za-z]+)?", value)
    if match and match.group(2) in OLD_FREQUENCIES:
        current = OLD_FREQUENCIES[match.group(2)]
        raise DataError(
            f"{flag} {text!r} is an old pandas alias that pandas no longer accepts; pass "
            f"{match.group(1)}{current}{match.group(3) or ''}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            offset = to_offset(value)
    except (ValueError, TypeError, Warning) as exc:
        hint = re.search(r"(?:please use|Please use|Did you mean) '?([\w-]+)'?", str(exc))
        if hint and hint.group(1).upper() != value.upper():
            raise DataError(
                f"{flag} {text!r} is an old pandas alias; pass {hint.group(1)}"
            ) from exc
        raise DataError(
            f"{flag} {text!r} is not a pandas frequency (e.g. {FREQUENCY_EXAMPLES})"
        ) from exc
    if offset is None or offset.n <= 0:
        raise DataError(f"{flag} {text!r} must step forward (e.g. {FREQUENCY_EXAMPLES})")
    return value


def _infer_freq(index: Any) -> str | None:
    import pandas as pd

    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            inferred = pd.infer_freq(index)
    except pd.errors.OptionError:  # pandas < 3 returns a string and has no such option
        inferred = pd.infer_freq(index)
    if inferred is None:
        return None
    return str(getattr(inferred, "freqstr", inferred))


def infer_frequency(dates: NDArray[np.datetime64], where: str, unit: DateUnit | None = None) -> str:
    """The frequency of sorted, unique dates: pandas' inference, else the common spacing (so gaps
    can be reported); refused when implausible (sub-second, or under 1 ms with --date-unit ms)."""
    import pandas as pd

    index = pd.DatetimeIndex(dates)
    freq = _infer_freq(index) if len(index) >= 3 else None
    step = pd.Series(index).diff().dropna()
    common = step.mode().iloc[0] if len(step) else pd.Timedelta(0)
    smallest = pd.Timedelta(1, "ms") if unit == "ms" else pd.Timedelta(1, "s")
    if len(step) and step.min() < smallest:
        raise DataError(
            f"{where}: dates only {step.min()} apart: not a plausible frequency; are they numbers "
            "read as dates? Check the date column or pass --frequency"
        )
    if freq is not None:
        return freq
    days = common / pd.Timedelta(1, "D")
    anchored = {(28, 31): ("MS", "ME"), (89, 92): ("QS", "QE"), (365, 366): ("YS", "YE")}
    for (lo, hi), names in anchored.items():
        if lo <= days <= hi:
            for name in names:
                grid = pd.date_range(index[0], index[-1], freq=name)
                if index.isin(grid).all():
                    return name
            raise DataError(
                f"{where}: cannot infer the frequency: dates about {days:.0f} days apart but not "
                f"all on the first or last day of the period; pass --frequency"
            )
    if days == 7 and (index.day_of_week == index[0].day_of_week).all():
        return f"W-{WEEKDAYS[index[0].day_of_week]}"
    return step_alias(common)


def step_alias(step: Any) -> str:
    """A fixed step as a frequency alias: 1 day is D (pandas 3 would say 24h), 2 hours 2h."""
    import pandas as pd

    for unit, alias in (("D", "D"), ("h", "h"), ("min", "min"), ("s", "s"), ("ms", "ms")):
        count = step / pd.Timedelta(1, unit)
        if count >= 1 and count == int(count):
            return alias if count == 1 else f"{int(count)}{alias}"
    return str(pd.tseries.frequencies.to_offset(step).freqstr)


def parse_split_date(
    text: str, flag: str, layout: str | None, unit: DateUnit | None = None
) -> np.datetime64:
    """A split date given on the command line: ISO 8601, the file's own layout, Y/M/D with / or .,
    or (with --date-unit) an epoch number; time-zone-aware dates converted to naive UTC."""
    import pandas as pd

    value = text.strip()
    readers: list[tuple[bool, dict[str, Any]]] = [
        (bool(re.fullmatch(ISO_DATE, value)), {"format": "ISO8601"}),
        (layout not in (None, "ISO8601"), {"format": layout}),
        (
            bool(re.fullmatch(r"\d{4}([/.])\d{1,2}\1\d{1,2}", value)),
            {"format": f"%Y{value[4:5]}%m{value[4:5]}%d"},
        ),
        (unit is not None and bool(re.fullmatch(NUMBER, value)), {"unit": unit}),
    ]
    stamp: Any = None
    for applies, how in readers:
        if not applies:
            continue
        try:
            stamp = _to_datetime(float(value) if "unit" in how else value, **how)
        except (ValueError, TypeError, OverflowError):
            continue
        break
    if stamp is None or pd.isna(stamp):
        like = f" or like the file's dates ({layout})" if layout not in (None, "ISO8601") else ""
        raise DataError(f"{flag} {text!r} is not a date: write it as ISO 8601 (YYYY-MM-DD){like}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "ns")


def day(value: np.datetime64) -> str:
    """A date for messages: YYYY-MM-DD, with the time when it is not midnight."""
    text = str(np.datetime_as_string(value, "s"))
    return text[:10] if text.endswith("T00:00:00") else text.replace("T", " ")


def check_split_order(
    bounds: list[tuple[str, np.datetime64]], first: np.datetime64, last: np.datetime64
) -> None:
    """Split dates (flag, date), in the order they must ascend, checked for order, then range."""
    for (flag_a, a), (flag_b, b) in pairwise(bounds):
        if not a < b:
            raise DataError(
                f"split dates out of order: {flag_a} {day(a)} must come before {flag_b} {day(b)}"
            )
    for flag, value in bounds:
        if value < first or value > last:
            side = "before the first" if value < first else "after the last"
            raise DataError(
                f"{flag} {day(value)} is {side} date of the data ({day(first)}..{day(last)})"
            )
