"""CSV intake: dates are never guessed silently, frequencies and split dates are checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.errors import DataError
from training.intake import (
    DateRules,
    check_frequency,
    check_split_order,
    infer_frequency,
    parse_date_columns,
    parse_dates,
    parse_split_date,
)


def dates(*values: str, **rules: object) -> np.ndarray:
    return parse_dates(pd.Series(values), "date", DateRules(**rules), "f.csv: column 'date'").dates  # type: ignore[arg-type]


def days(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[ns]")


def test_iso_dates_are_read_strictly_as_written() -> None:
    np.testing.assert_array_equal(dates("1960-01", "1960-02"), days("1960-01-01", "1960-02-01"))
    np.testing.assert_array_equal(
        dates("2016-07-01 00:00:00", "2016-07-01T01:00"),
        days("2016-07-01T00:00", "2016-07-01T01:00"),
    )
    parsed = parse_dates(pd.Series(["2020-01-01"]), "d", DateRules(), "w")
    assert parsed.layout == "ISO8601"
    assert parsed.notes == []


def test_ambiguous_day_month_dates_are_refused_naming_rows_and_flags() -> None:
    with pytest.raises(DataError) as exc:
        dates("01/01/1981", "01/02/1981", "01/03/1981")
    message = str(exc.value)
    assert "'01/02/1981' (rows 3, 4)" in message
    assert "--dayfirst" in message
    assert "--date-format '%m/%d/%Y'" in message


def test_dayfirst_and_date_format_read_the_dates_as_told() -> None:
    expected = days("1981-01-01", "1981-02-01", "1981-03-01")
    np.testing.assert_array_equal(
        dates("01/01/1981", "01/02/1981", "01/03/1981", dayfirst=True), expected
    )
    np.testing.assert_array_equal(
        dates("01.01.1981", "01.02.1981", "01.03.1981", date_format="%d.%m.%Y"), expected
    )
    np.testing.assert_array_equal(
        dates("01/01/1981", "02/01/1981", date_format="%m/%d/%Y"), days("1981-01-01", "1981-02-01")
    )


def test_a_layout_only_one_order_fits_is_read_with_a_note() -> None:
    parsed = parse_dates(
        pd.Series(["12/01/1981", "13/01/1981", "01/02/1981"]), "Date", DateRules(), "w"
    )
    np.testing.assert_array_equal(parsed.dates, days("1981-01-12", "1981-01-13", "1981-02-01"))
    assert parsed.layout == "%d/%m/%Y"
    assert parsed.notes == [
        "read 'Date' day-first (%d/%m/%Y): row 3 ('13/01/1981') fits no other order; pass "
        "--dayfirst to state it"
    ]


def test_inconsistent_orders_are_refused_naming_the_rows() -> None:
    with pytest.raises(DataError, match=r"inconsistent: row 3 \('13/01/1981'\) read only "):
        dates("12/01/1981", "13/01/1981", "01/13/1981")
    with pytest.raises(DataError, match=r"inconsistent with --dayfirst: row 4 \('01/13/1981'\)"):
        dates("12/01/1981", "01/02/1981", "01/13/1981", dayfirst=True)


def test_date_format_mismatch_names_the_row() -> None:
    with pytest.raises(
        DataError, match=r"1 value\(s\) do not match --date-format '%Y-%m-%d', the "
    ):
        dates("2020-01-01", "2020/01/02", date_format="%Y-%m-%d")


def test_epoch_numbers_need_a_unit() -> None:
    with pytest.raises(DataError, match=r"holds numbers, not dates .* --date-unit s"):
        dates("1577836800", "1577923200")
    np.testing.assert_array_equal(
        dates("1577836800", "1577923200", date_unit="s"), days("2020-01-01", "2020-01-02")
    )
    np.testing.assert_array_equal(
        dates("1577836800000", "1577836801500", date_unit="ms"),
        days("2020-01-01T00:00:00", "2020-01-01T00:00:01.5"),
    )
    with pytest.raises(DataError, match="pass --date-unit ms"):
        dates("1577836800000", date_unit="s")
    with pytest.raises(DataError, match="pass --date-unit s"):
        dates("1577836800", date_unit="ms")
    with pytest.raises(DataError, match="--date-unit s reads Unix epoch numbers, but row 2"):
        dates("2020-01-01", date_unit="s")


def test_zone_aware_dates_become_utc_across_dst() -> None:
    parsed = parse_dates(
        pd.Series(["2020-03-29T01:00:00+01:00", "2020-03-29T03:00:00+02:00"]),
        "date",
        DateRules(),
        "w",
    )
    np.testing.assert_array_equal(parsed.dates, days("2020-03-29T00:00", "2020-03-29T01:00"))
    assert parsed.notes == [
        "converted the time-zone-aware dates in 'date' (UTC offsets +01:00, +02:00) to UTC and "
        "dropped the zone"
    ]
    parsed = parse_dates(
        pd.Series(["2020-03-29 01:00+0100", "2020-03-29 03:00+0200"]),
        "date",
        DateRules(date_format="%Y-%m-%d %H:%M%z"),
        "w",
    )
    np.testing.assert_array_equal(parsed.dates, days("2020-03-29T00:00", "2020-03-29T01:00"))
    assert "(UTC offsets +0100, +0200) to UTC" in parsed.notes[0]
    with pytest.raises(DataError, match=r"mixes dates with a UTC offset \(row 2: .*\) and without"):
        dates("2020-01-01T00:00+01:00", "2020-01-01T01:00")


def test_missing_and_non_dates_are_refused() -> None:
    with pytest.raises(DataError, match="has no date at row 3"):
        dates("2020-01-01", "")
    with pytest.raises(DataError, match="not dates"):
        dates("monday", "tuesday")


def test_date_columns_are_read_in_order() -> None:
    frame = pd.DataFrame({"year": ["2010", "2010"], "month": ["1", "1"], "d": ["1", "1"]})
    frame["hour"] = ["0", "1"]
    parsed = parse_date_columns(frame, ["year", "month", "d", "hour"], "w")
    np.testing.assert_array_equal(parsed.dates, days("2010-01-01T00", "2010-01-01T01"))
    with pytest.raises(DataError, match="column 'month' is given as the year"):
        parse_date_columns(frame, ["month", "year"], "w")
    frame.loc[1, "hour"] = "24"
    with pytest.raises(DataError, match=r"row 3 holds hour 24 in column 'hour' \(0..23\)"):
        parse_date_columns(frame, ["year", "month", "d", "hour"], "w")
    frame.loc[1, "hour"] = "1"
    frame.loc[1, "d"] = "31"
    frame.loc[1, "month"] = "2"
    with pytest.raises(DataError, match=r"row 3 \(2010-2-31-1\) is not a valid date"):
        parse_date_columns(frame, ["year", "month", "d", "hour"], "w")


@pytest.mark.parametrize(
    "alias", ["D", "h", "W", "W-MON", "ME", "MS", "QE", "QS", "YE", "min", "2h"]
)
def test_current_frequency_aliases_are_accepted(alias: str) -> None:
    assert check_frequency(alias) == alias


@pytest.mark.parametrize(
    ("alias", "current"),
    [
        ("M", "ME (month end) or MS"),
        ("H", "pass h"),
        ("T", "pass min"),
        ("S", "pass s"),
        ("A", "YE (year end)"),
        ("Y", "YE (year end)"),
        ("Q", "QE (quarter end)"),
        ("BM", "pass BME"),
        ("2H", "pass 2h"),
        ("A-DEC", "or YS (year start)-DEC"),
    ],
)
def test_old_frequency_aliases_name_the_current_one(alias: str, current: str) -> None:
    with pytest.raises(DataError, match="old pandas alias") as exc:
        check_frequency(alias)
    assert current in str(exc.value)


@pytest.mark.parametrize("text", ["bogus", "0D", "-1D", "4 parsecs"])
def test_nonsense_frequencies_are_refused(text: str) -> None:
    with pytest.raises(DataError, match=f"--frequency '{text}'"):
        check_frequency(text)


def test_inferred_frequency_with_gaps_and_implausible_spacing() -> None:
    monthly = pd.date_range("2020-01-01", periods=12, freq="MS").delete(5).to_numpy()
    assert infer_frequency(monthly, "w") == "MS"
    weekly = pd.date_range("2020-01-06", periods=10, freq="W-MON").delete(3).to_numpy()
    assert infer_frequency(weekly, "w") == "W-MON"
    daily = pd.date_range("2020-01-01", periods=10, freq="D").delete(3).to_numpy()
    assert infer_frequency(daily, "w") == "D"
    nanos = np.array([0, 4, 8, 12], dtype="datetime64[ns]")
    with pytest.raises(DataError, match="not a plausible frequency"):
        infer_frequency(nanos, "w")


def test_split_dates_accept_iso_the_file_layout_and_year_first() -> None:
    expected = np.datetime64("1986-12-31", "ns")
    assert parse_split_date("1986-12-31", "--train-end", "%d/%m/%Y") == expected
    assert parse_split_date("31/12/1986", "--train-end", "%d/%m/%Y") == expected
    assert parse_split_date("1986/12/31", "--train-end", "ISO8601") == expected
    assert parse_split_date("2020-01-01T01:00+01:00", "--x", None) == np.datetime64("2020-01-01")
    assert parse_split_date("1577836800", "--x", None, "s") == np.datetime64("2020-01-01")
    with pytest.raises(DataError, match=r"--train-end '31/12/1986' is not a date: write it as ISO"):
        parse_split_date("31/12/1986", "--train-end", "ISO8601")


def test_split_order_is_checked_before_range() -> None:
    first, last = np.datetime64("2020-01-01"), np.datetime64("2020-12-31")
    with pytest.raises(DataError, match="--train-end 2021-06-30 must come before --valid-end"):
        check_split_order(
            [
                ("--train-end", np.datetime64("2021-06-30")),
                ("--valid-end", np.datetime64("2020-03-01")),
            ],
            first,
            last,
        )
    with pytest.raises(DataError, match=r"is after the last date of the data \(2020-01-01..2020"):
        check_split_order([("--train-end", np.datetime64("2021-06-30"))], first, last)
    check_split_order([("--train-end", np.datetime64("2020-06-30"))], first, last)
