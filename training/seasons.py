"""The season a frequency implies: the period of the seasonal naive baseline, of MASE's scaling,
of AutoETS' seasonal component and of the calibration's blocks, unless `--season` says otherwise."""

from __future__ import annotations

# By the base of a pandas offset alias (its leading multiple stripped: "2h" is hourly too).
SEASONS = {
    "h": 24,  # hourly: a day
    "D": 7,  # daily: a week
    "B": 5,  # business days: a week
    "W": 52,  # weekly: a year
    "MS": 12,  # monthly: a year
    "ME": 12,
    "M": 12,
    "QS": 4,  # quarterly: a year
    "QE": 4,
    "Q": 4,
    "min": 60,  # minutely: an hour
}


def season_of(frequency: str | None) -> int:
    """The season of a pandas frequency alias (`D` -> 7, `h` -> 24, `W-SUN` -> 52, `MS` -> 12);
    1 (no season) when the frequency is unknown or has none (yearly)."""
    if not frequency:
        return 1
    base = frequency.lstrip("0123456789").split("-")[0]
    return SEASONS.get(base, SEASONS.get(base.upper(), 1)) if base not in ("Y", "YE", "YS") else 1
