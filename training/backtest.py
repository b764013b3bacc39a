"""Rolling-origin backtest of an exported model THROUGH THE SERVICE, against statistical baselines.

    python -m training backtest --model models/cta_rail --data data/cta/rides.csv \
        --date-column service_date --target rail_boardings --start 2019-06-01 --end 2019-12-31

At every `stride` steps whose forecast starts in [start, end] (and whose horizon lies in the data),
the raw last `input_length` rows are sent to the running service (started here as a subprocess on
127.0.0.1 unless --url names one), exactly as a client would; the served mean and its MC-dropout
intervals are scored beside the naive, seasonal naive and AutoETS forecasts of the same origins.
No TensorFlow: the model runs in the service, the baselines in numpy and statsforecast.

Panel mode (`run_panel`), the M4 evaluation of a global model:

    python -m training backtest --model models/m4_weekly --data M4-Weekly-train.csv \
        --test-data M4-Weekly-test.csv --out docs/quality/m4_weekly.md

Each series is forecast once, from the end of its history (its raw last `input_length` points, as
a client would send them), and scored on its continuation with M4's sMAPE, MASE and OWA beside
Naive2, naive, seasonal naive, SES, Theta and AutoETS fitted on each series (`m4_scores` scores any
forecasts, no model needed).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from training import baselines
from training.errors import DataError, TrainingError

Array = NDArray[np.float64]
REPO = Path(__file__).resolve().parents[1]
# Series per request beyond the service's own limits: keeps each call well inside its deadline.
MAX_BATCH = 256


@dataclass
class BacktestConfig:
    """What `python -m training backtest` was asked; None: the default the docstrings give."""

    model: Path
    data: Path
    date_column: str = "date"
    target: str | None = None  # the CSV column of the model's target (default: its feature name)
    start: str | None = None  # first date a forecast may start (default: the earliest possible)
    end: str | None = None  # last date a forecast may start (a bare date: the whole day)
    stride: int | None = None  # steps between origins (default: the model horizon)
    season: int | None = None  # seasonal naive and AutoETS season (default: from the frequency)
    levels: tuple[int, ...] = (80, 95)
    samples: int = 100  # MC-dropout paths per origin; 0: no intervals asked
    seed: int = 0
    frequency: str | None = None  # pandas frequency of the CSV (default: the model's, or inferred)
    date_format: str | None = None  # load_csv's date options, passed only when set
    dayfirst: bool = False
    fill_gaps: str = "error"
    url: str | None = None  # a running service; None: start one
    api_key: str | None = None
    out: Path | None = None
    startup_timeout_s: float = 90.0
    request_timeout_s: float = 120.0
    progress_every: int = 10  # batches between progress lines
    # Panel mode (`run_panel`): each series of `data` forecast once, after its history, and scored
    # on its continuation in `test_data`, as M4 scores; `season` is then M4's seasonality m.
    test_data: Path | None = None
    data_format: str = "auto"  # "m4", "long" or "auto" (as `train --format`)
    id_column: str = "unique_id"
    ets: bool = True  # AutoETS per series (the slow baseline)
    theta: bool = True  # statsforecast's Theta per series
    jobs: int = 2  # processes fitting the per-series baselines


@dataclass
class ModelSpec:
    """What the backtest needs of forecaster.json; `name` is the folder's, as the service names it."""

    folder: Path
    name: str
    input_length: int
    horizon: int
    features: list[str]
    frequency: str | None
    uncertainty: bool
    min_length: int = 0  # the shortest series the service accepts (0: input_length)

    @classmethod
    def read(cls, folder: Path) -> ModelSpec:
        path = folder / "forecaster.json"
        if not path.is_file():
            raise TrainingError(f"{path} not found: --model needs an exported model folder")
        try:
            spec = json.loads(path.read_text())
            return cls(
                folder=folder,
                name=folder.resolve().name,
                input_length=int(spec["input_length"]),
                horizon=int(spec["horizon"]),
                features=[str(f) for f in spec["features"]],
                frequency=spec.get("frequency"),
                uncertainty=bool(spec.get("onnx", {}).get("mc_dropout")),
                min_length=int(spec.get("min_length", spec["input_length"])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}: not a readable forecaster.json ({exc!r})") from exc


@dataclass
class BacktestResult:
    spec: ModelSpec
    command: str
    dates: list[str]  # date of each origin's first forecast step
    truth: Array  # [N, H]
    forecasts: dict[str, Array]  # method -> [N, H], the model first
    mae: dict[str, list[float]]  # method -> MAE per step
    scale: float  # MASE denominator
    season: int
    stride: int
    coverage: dict[str, dict[str, float]]  # method -> level ("80") -> coverage over steps
    table: str
    gate: baselines.GateResult
    url: str
    started_service: bool
    data_description: str
    scale_points: int
    seconds: float
    calibrated: bool | None = None
    samples: int = 0  # MC-dropout paths per origin behind the model's mean and intervals
    notes: list[str] = field(default_factory=list)

    @property
    def model_row(self) -> str:
        return next(iter(self.forecasts))


# --- data and origins ------------------------------------------------------------------------------


def load_values(
    config: BacktestConfig, spec: ModelSpec
) -> tuple[NDArray[np.datetime64], Array, str, list[str]]:
    """Dates, values [T, F] in the model's feature order (unscaled), the data's frequency, notes.

    Model features `next_<column>=<category>` are one-hot columns of a categorical CSV column known
    one step ahead (training's --known-ahead); a category absent from the CSV is a column of zeros.
    """
    from training.datasets import load_csv

    target = config.target or spec.features[0]
    known_ahead: list[str] = []
    covariates: list[str] = []
    for name in spec.features[1:]:
        if name.startswith("next_") and "=" in name:
            column = name[len("next_") :].split("=", 1)[0]
            if column not in known_ahead:
                known_ahead.append(column)
        else:
            covariates.append(name)
    kwargs: dict[str, Any] = {
        "path": config.data,
        "date_column": config.date_column,
        "target": target,
        "covariates": tuple(covariates),
        "frequency": config.frequency or spec.frequency,
    }
    if known_ahead:
        kwargs["known_ahead"] = tuple(known_ahead)
    if config.fill_gaps != "error":
        kwargs["fill_gaps"] = config.fill_gaps
    if config.date_format:
        kwargs["date_format"] = config.date_format
    if config.dayfirst:
        kwargs["dayfirst"] = True
    series = load_csv(**kwargs)
    columns = {name: i for i, name in enumerate(series.features)}
    columns[spec.features[0]] = 0
    values = np.zeros((len(series.values), len(spec.features)))
    for j, name in enumerate(spec.features):
        if name in columns:
            values[:, j] = series.values[:, columns[name]]
        elif not name.startswith("next_"):
            raise DataError(f"{config.data}: no column for the model's feature {name!r}")
    return series.dates, values, series.frequency, list(series.notes)


def _when(value: np.datetime64) -> str:
    """A date as the report shows it: YYYY-MM-DD at midnight, else with the time."""
    text = str(value.astype("datetime64[s]")).replace("T", " ")
    return text[:10] if text.endswith("00:00:00") else text[:16]


def _bound(value: str, flag: str, end: bool) -> np.datetime64:
    """A --start/--end date; a bare date as --end means the whole day (up to the next midnight)."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"{flag} {value!r} is not a date") from exc
    if end and stamp == stamp.normalize() and ":" not in value:
        stamp += pd.Timedelta(days=1)
    return np.datetime64(stamp.to_datetime64())


def plan_origins(
    dates: NDArray[np.datetime64],
    input_length: int,
    horizon: int,
    stride: int,
    start: str | None,
    end: str | None,
    season: int = 1,
) -> tuple[list[int], list[str]]:
    """Indices o of the first forecast step, every `stride` steps from the first with dates[o] in
    [start, end], at least max(input_length, season) rows of history and the horizon in the data.
    Returns them and notes (e.g. a first origin later than --start)."""
    n = len(dates)
    first_date, last_date = _when(dates[0]), _when(dates[-1])
    lo = 0 if start is None else int(np.searchsorted(dates, _bound(start, "--start", False)))
    hi = n if end is None else int(np.searchsorted(dates, _bound(end, "--end", True)))
    if lo >= n or hi <= 0 or lo >= hi:
        raise TrainingError(
            f"--start {start} / --end {end}: no date of the data ({first_date} to {last_date}) "
            "lies in that period"
        )
    earliest, latest = max(input_length, season), n - horizon
    first, last = max(lo, earliest), min(hi - 1, latest)
    if first > last:
        raise TrainingError(
            f"no forecast origin in {start} to {end}: a forecast needs {earliest} rows of history "
            f"before it and {horizon} rows from it, so its first step must lie between "
            f"{_when(dates[min(earliest, n - 1)])} and {_when(dates[max(latest, 0)])}"
        )
    notes = []
    if first > lo:
        notes.append(
            f"first origin {_when(dates[first])}, not {_when(dates[lo])}: "
            f"the first {earliest} rows are history"
        )
    if last < hi - 1:
        notes.append(f"last possible origin {_when(dates[last])}: the horizon must lie in the data")
    return list(range(first, last + 1, stride)), notes


# --- the service -----------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def _get_json(url: str, timeout: float, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return int(exc.code), json.loads(body or b"null")
        except ValueError:
            return int(exc.code), body.decode(errors="replace")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_service(models_dir: Path, name: str, timeout_s: float) -> Iterator[str]:
    """`python -m service` on `models_dir` on a free 127.0.0.1 port: its URL once /health/ready says
    model `name` is loaded; always terminated on exit. Readiness is not strict here, so that a
    broken sibling folder does not stop the backtest of a good model."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROMETHEUS_MULTIPROC_DIR", "FORECAST_API_KEYS")
    }
    env.update(
        FORECAST_MODELS_DIR=str(models_dir.resolve()),
        FORECAST_HOST="127.0.0.1",
        FORECAST_PORT=str(port),
        FORECAST_WORKERS="1",
        FORECAST_STRICT_READINESS="false",
        FORECAST_MODEL_POLL_S="0",
        FORECAST_ACCESS_LOG="false",
        FORECAST_LOG_LEVEL="warning",
    )
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="backtest-service-") as folder:
        log = Path(folder) / "service.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "service"],
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise TrainingError(
                        f"the service exited with status {process.returncode} before it was "
                        f"ready: {_tail(log)}"
                    )
                try:
                    status, body = _get_json(f"{url}/health/ready", 1.0, {})
                except (urllib.error.URLError, OSError, ValueError):
                    status, body = 0, None
                if status in (200, 503) and isinstance(body, dict):
                    # The lifespan loads every model before the first answer: this one is final.
                    loaded = body.get("models", {})
                    if loaded.get(name):
                        break
                    raise TrainingError(
                        f"the service on {models_dir} did not load model {name!r} "
                        f"(models: {loaded}): {_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise TrainingError(
                        f"the service was not ready on {url} within {timeout_s:g} s: {_tail(log)}"
                    )
                time.sleep(0.2)
            yield url
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def _limit(name: str, default: int) -> int:
    """A FORECAST_* request limit as the service reads it (service/settings.py defaults)."""
    try:
        return max(1, int(os.environ.get(f"FORECAST_{name}", default)))
    except ValueError:
        return default


def quantile_levels(levels: Sequence[int]) -> list[float]:
    """The quantiles bounding central `levels` (percent): 80 -> 0.1 and 0.9, sorted."""
    out = set()
    for level in levels:
        if not 0 < level < 100:
            raise TrainingError(f"--levels must lie in (0, 100), got {level}")
        out.update({round((1 - level / 100) / 2, 10), round((1 + level / 100) / 2, 10)})
    return sorted(out)


@dataclass
class Served:
    mean: Array  # [N, H]
    quantiles: dict[float, Array]  # q -> [N, H]
    calibrated: bool | None


def _row(context: Array) -> list[Any]:
    """One context [T, F] as the request's series: a list of numbers when univariate."""
    rows: list[Any] = context[:, 0].tolist() if context.shape[1] == 1 else context.tolist()
    return rows


def serve_forecasts(
    url: str,
    spec: ModelSpec,
    contexts: Array | Sequence[Array],
    config: BacktestConfig,
    log: Callable[[str], None],
    unit: str = "origins",
) -> Served:
    """POST the contexts ([N, input_length, F], or N arrays [T_i, F] of any lengths the service
    accepts) in batches within the service's limits; the served means and, with samples, the
    quantiles of the central `levels` intervals."""
    headers = {"content-type": "application/json"}
    if config.api_key:
        headers["authorization"] = f"Bearer {config.api_key}"
    status, info = _get_json(f"{url}/v1/models/{spec.name}", 10.0, headers)
    if status != 200 or not isinstance(info, dict):
        raise TrainingError(f"{url}: model {spec.name!r} not served ({status}: {info})")
    if not info.get("ready", False):
        raise TrainingError(f"{url}: model {spec.name!r} not ready: {info.get('reason')}")
    if info.get("input_length") != spec.input_length or info.get("horizon") != spec.horizon:
        raise TrainingError(
            f"{url}: model {spec.name!r} serves input_length {info.get('input_length')} and "
            f"horizon {info.get('horizon')}, not {spec.input_length} and {spec.horizon} as "
            f"{spec.folder / 'forecaster.json'}"
        )
    quantiles = quantile_levels(config.levels)
    uncertain = config.samples > 0 and bool(info.get("uncertainty", spec.uncertainty))
    if config.samples > _limit("MAX_SAMPLES", 1000):
        raise TrainingError(f"--samples {config.samples} exceeds the service's max_samples")
    size = min(MAX_BATCH, _limit("MAX_SERIES", 1000))
    if uncertain:
        size = min(size, max(1, _limit("MAX_PATHS", 100_000) // config.samples))
    per_series = len(json.dumps(_row(max(contexts, key=len)))) + 2
    size = max(1, min(size, int(_limit("MAX_BODY_BYTES", 8 * 1024 * 1024) * 0.8) // per_series))
    n, horizon = len(contexts), spec.horizon
    mean = np.empty((n, horizon))
    bounds = {q: np.empty((n, horizon)) for q in quantiles} if uncertain else {}
    calibrated: bool | None = None
    batches = math.ceil(n / size)
    started = time.monotonic()
    for b in range(batches):
        part = contexts[b * size : (b + 1) * size]
        body: dict[str, Any] = {
            "batch": [_row(context) for context in part],
            "horizon": horizon,
            "strategy": "direct",
        }
        if uncertain:
            body["uncertainty"] = {
                "samples": config.samples,
                "quantiles": quantiles,
                "seed": config.seed + b,
            }
        answer = _post(f"{url}/v1/models/{spec.name}/forecast", body, headers, config)
        forecasts = answer["forecasts"]
        lo = b * size
        for i, forecast in enumerate(forecasts):
            mean[lo + i] = forecast["mean"]
            for q in bounds:
                bounds[q][lo + i] = forecast["quantiles"][str(q)]
        if uncertain:
            calibrated = answer.get("calibrated")
        done = b + 1
        if done % config.progress_every == 0 or (done == batches and batches > 1):
            log(
                f"backtest: {min(done * size, n):,}/{n:,} {unit} served "
                f"({done}/{batches} requests, {time.monotonic() - started:.1f} s)"
            )
    return Served(mean, bounds, calibrated)


def _post(
    url: str, body: dict[str, Any], headers: dict[str, str], config: BacktestConfig
) -> dict[str, Any]:
    """POST JSON; 503 (overloaded) is retried a few times, any other error is a TrainingError."""
    data = json.dumps(body).encode()
    for attempt in range(5):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=config.request_timeout_s) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if exc.code == 503 and attempt < 4:
                time.sleep(float(exc.headers.get("retry-after") or 1))
                continue
            try:
                message = json.loads(text)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = text[:500]
            raise TrainingError(f"the service answered {exc.code}: {message}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TrainingError(f"no answer from the service at {url}: {exc}") from exc
    raise TrainingError(f"the service at {url} stayed overloaded (503)")


# --- scoring ---------------------------------------------------------------------------------------


def coverage(truth: Array, lo: Array, hi: Array) -> float:
    """Share of the truths inside [lo, hi], over origins and steps."""
    return float(np.mean((truth >= lo) & (truth <= hi)))


def reading_flags(config: BacktestConfig) -> list[str]:
    """The flags that say how the CSV was read (target, dates, gaps), as given."""
    parts = ["--target", config.target] if config.target else []
    if config.date_format:
        parts += ["--date-format", config.date_format]
    if config.dayfirst:
        parts.append("--dayfirst")
    if config.fill_gaps != "error":
        parts += ["--fill-gaps", config.fill_gaps]
    return parts


def command_line(config: BacktestConfig, stride: int, season: int) -> str:
    """The command that reproduces this backtest, defaults resolved."""
    parts = ["python", "-m", "training", "backtest", "--model", str(config.model)]
    parts += ["--data", str(config.data), "--date-column", config.date_column]
    parts += reading_flags(config)
    if config.frequency:
        parts += ["--frequency", config.frequency]
    if config.start:
        parts += ["--start", config.start]
    if config.end:
        parts += ["--end", config.end]
    parts += ["--stride", str(stride), "--season", str(season)]
    parts += ["--levels", *map(str, config.levels), "--samples", str(config.samples)]
    parts += ["--seed", str(config.seed)]
    if config.url:
        parts += ["--url", config.url]
    if config.out:
        parts += ["--out", str(config.out)]
    return shlex.join(parts)


def run(config: BacktestConfig, log: Callable[[str], None] = print) -> BacktestResult:
    """The whole backtest: data, origins, served forecasts, baselines, scores; writes --out."""
    if config.test_data is not None:
        raise TrainingError("--test-data scores a panel: run_panel, not run, does that")
    started = time.monotonic()
    spec = ModelSpec.read(config.model)
    if config.samples < 0:
        raise TrainingError(f"--samples must be >= 0, got {config.samples}")
    dates, values, frequency, notes = load_values(config, spec)
    season = config.season or baselines.season_for_frequency(frequency)
    stride = config.stride or spec.horizon
    horizon, length = spec.horizon, spec.input_length
    origins, origin_notes = plan_origins(
        dates, length, horizon, stride, config.start, config.end, season
    )
    notes += origin_notes
    y = values[:, 0]
    target = config.target or spec.features[0]
    description = (
        f"{config.data}: {len(y):,} rows of {target!r} at frequency {frequency}, "
        f"{_when(dates[0])} to {_when(dates[-1])}"
    )
    log(
        f"backtest: {spec.name} on {len(origins):,} origins, {_when(dates[origins[0]])} to "
        f"{_when(dates[origins[-1]])} every {stride} steps; season {season}"
    )
    for note in notes:
        log(f"backtest: {note}")
    contexts = np.stack([values[o - length : o] for o in origins])
    truth = np.stack([y[o : o + horizon] for o in origins])

    def served_forecasts(url: str) -> Served:
        return serve_forecasts(url, spec, contexts, config, log)

    if config.url:
        url = config.url.rstrip("/")
        served = served_forecasts(url)
    else:
        log(f"backtest: starting the service on {spec.folder.resolve().parent}")
        with local_service(
            spec.folder.resolve().parent, spec.name, config.startup_timeout_s
        ) as url:
            served = served_forecasts(url)

    history = np.stack([y[o - season : o] for o in origins])
    forecasts: dict[str, Array] = {spec.name: served.mean}
    forecasts["naive"] = baselines.seasonal_naive(history, horizon, 1)
    if season > 1:
        forecasts[f"seasonal_naive_{season}"] = baselines.seasonal_naive(history, horizon, season)
    ets_started = time.monotonic()
    log(f"backtest: fitting AutoETS on the {origins[0]:,} rows before the first origin")
    ets = baselines.ets_forecasts(y, origins, horizon, season, config.levels)
    forecasts["AutoETS"] = ets.mean
    notes.append(f"{ets.note} ({time.monotonic() - ets_started:.1f} s)")
    log(f"backtest: {notes[-1]}")

    mae = {name: baselines.mae_per_step(f, truth).tolist() for name, f in forecasts.items()}
    scale = float(baselines.mase_scale(y[: origins[0]], season)[0])
    table = baselines.comparison_table(mae, scale, unit_name=target, model=spec.name)
    result_gate = baselines.gate(mae[spec.name], {k: v for k, v in mae.items() if k != spec.name})
    cover: dict[str, dict[str, float]] = {}
    if served.quantiles:
        cover[spec.name] = {
            f"{level}": coverage(
                truth,
                served.quantiles[round((1 - level / 100) / 2, 10)],
                served.quantiles[round((1 + level / 100) / 2, 10)],
            )
            for level in config.levels
        }
    else:
        notes.append("no model intervals: --samples 0 or a model without MC dropout")
    cover["AutoETS"] = {
        f"{level}": coverage(truth, ets.intervals[f"lo-{level}"], ets.intervals[f"hi-{level}"])
        for level in config.levels
    }
    result = BacktestResult(
        spec=spec,
        command=command_line(config, stride, season),
        dates=[_when(dates[o]) for o in origins],
        truth=truth,
        forecasts=forecasts,
        mae=mae,
        scale=scale,
        season=season,
        stride=stride,
        coverage=cover,
        table=table,
        gate=result_gate,
        url=config.url or "a service started for the backtest",
        started_service=config.url is None,
        data_description=description,
        scale_points=origins[0],
        seconds=round(time.monotonic() - started, 1),
        calibrated=served.calibrated,
        samples=config.samples if served.quantiles else 0,
        notes=notes,
    )
    log(table)
    log(coverage_line(result))
    log(f"backtest: {step_one_line(result)}")
    log(f"backtest: {result.gate.message}")
    if config.out is not None:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(markdown(result))
        log(f"backtest: wrote {config.out}")
    return result


def coverage_line(result: BacktestResult) -> str:
    parts = []
    for method, levels in result.coverage.items():
        shown = ", ".join(f"{level}% {value:.3f}" for level, value in levels.items())
        parts.append(f"{method} {shown}")
    return "interval coverage (nominal in %, over all steps): " + "; ".join(parts)


def step_one_line(result: BacktestResult) -> str:
    model, naive = result.mae[result.model_row][0], result.mae["naive"][0]
    ratio = f"{model / naive:.3f}" if naive > 0 else "n/a"
    digits = baselines._decimals([model, naive])
    return (
        f"step-1 MAE: {result.model_row} (served) {model:,.{digits}f}, naive {naive:,.{digits}f}, "
        f"ratio {ratio}"
    )


def markdown(result: BacktestResult) -> str:
    """The report --out writes."""
    spec = result.spec
    levels = list(next(iter(result.coverage.values())))
    lines = [
        f"# Backtest: {spec.name}",
        "",
        "Rolling-origin backtest through the service (`python -m training backtest`): each origin's "
        "raw last `input_length` rows were sent to the served model, as a client would.",
        "",
        "```bash",
        result.command,
        "```",
        "",
        f"- model: `{spec.folder}` ({spec.name}: input_length {spec.input_length}, horizon "
        f"{spec.horizon}, features {', '.join(spec.features)})",
        f"- data: {result.data_description}",
        f"- period: forecasts starting {result.dates[0]} to {result.dates[-1]}, "
        f"{len(result.dates):,} origins every {result.stride} steps",
        "- baselines: naive (last value)"
        + (
            f", seasonal naive (season {result.season})"
            if f"seasonal_naive_{result.season}" in result.forecasts
            else ""
        )
        + ", AutoETS (statsforecast, fitted once on the data before the first origin)",
        f"- MASE scale: mean |y_t - y_(t-{result.season})| over the {result.scale_points:,} "
        f"rows before the first origin = {result.scale:,.6g}",
        f"- served by {result.url}; the {spec.name} row is the served mean"
        + (
            f" of {result.samples} MC-dropout paths per origin (intervals calibrated: "
            f"{result.calibrated})"
            if result.samples
            else " (dropout off)"
        ),
        f"- run time {result.seconds} s",
        "",
        "## MAE per horizon step",
        "",
        "```text",
        result.table,
        "```",
        "",
        f"{step_one_line(result)}.",
        "",
        f"Gate: {result.gate.message} ({'pass' if result.gate.passed else 'FAIL'}).",
        "",
        "## Interval coverage",
        "",
        "Share of the actual values inside the central intervals, over all origins and steps.",
        "",
        "| method | " + " | ".join(f"{level}%" for level in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for method, values in result.coverage.items():
        lines.append(f"| {method} | " + " | ".join(f"{values[k]:.3f}" for k in levels) + " |")
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


# --- panels: M4-style evaluation of a global model ------------------------------------------------

# M4's seasonality m by frequency (its MASE scale, Naive2's seasonal adjustment and the statistical
# benchmarks): M4 used frequency 1 for daily and weekly series.
M4_SEASONALITY = {"Y": 1, "Q": 4, "M": 12, "W": 1, "D": 1, "H": 24}
# The season of the seasonal naive row by frequency (no row for yearly data).
NAIVE_SEASON = {"Y": 1, "Q": 4, "M": 12, "W": 52, "D": 7, "H": 24}
_FREQUENCY_KINDS = {
    "Y": ("Y", "YE", "YS", "BY", "BYE", "BYS", "A", "AS", "BA", "BAS"),
    "Q": ("Q", "QE", "QS", "BQ", "BQE", "BQS"),
    "M": ("M", "ME", "MS", "BM", "BME", "BMS"),
    "W": ("W",),
    "D": ("D", "B", "C"),
    "H": ("h", "H", "bh", "BH"),
}
# Published M4 results on its weekly subset (Makridakis et al. 2020; 359 series, horizon 13):
# sMAPE, MASE, OWA (relative to Naive2).
M4_WEEKLY_PUBLISHED: dict[str, tuple[float, float, float]] = {
    "Naive2": (9.161, 2.777, 1.000),
    "Theta": (9.093, 2.637, 0.971),
    "SES": (9.012, 2.685, 0.975),
    "ES-RNN (M4 winner)": (7.817, 2.356, 0.851),
    "best weekly entry": (6.582, 2.107, 0.739),
}
M4_WEEKLY_SERIES, M4_WEEKLY_HORIZON = 359, 13


def frequency_kind(frequency: str | None, ids: Sequence[str] = ()) -> str | None:
    """M4's frequency letter (Y, Q, M, W, D or H) of a panel: from its pandas frequency, or, without
    one (M4 files have no dates), from its ids when they all read like M4's (W1, W2, ...)."""
    import re

    if frequency:
        import pandas as pd

        try:
            offset = pd.tseries.frequencies.to_offset(frequency)
        except ValueError:
            return None
        if offset.n != 1:
            return None
        code = str(offset.name).split("-")[0]
        return next((kind for kind, codes in _FREQUENCY_KINDS.items() if code in codes), None)
    letters = {match.group(1) if (match := re.fullmatch(r"([YQMWDH])\d+", i)) else "" for i in ids}
    if len(letters) == 1 and "" not in letters:
        return letters.pop()
    return None


@dataclass(frozen=True)
class M4Score:
    """One method's M4 metrics over the series it forecast (`series`): sMAPE in percent, MASE, and
    OWA relative to Naive2 on the same series."""

    smape: float
    mase: float
    owa: float
    series: int


def m4_scores(
    histories: Sequence[ArrayLike],
    tests: ArrayLike,
    forecasts: Mapping[str, ArrayLike],
    season: int = 1,
) -> dict[str, M4Score]:
    """M4's metrics of each method's `forecasts` [N, H] of the continuations `tests` [N, H] of the
    series `histories` (N 1-D arrays): sMAPE (percent, 200 |y - f| / (|y| + |f|)) and MASE (|y - f|
    over the series' in-sample mean |y_t - y_(t-season)|), each averaged over every step of every
    series, and OWA = (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2 with M4's Naive2 of the same
    series (`baselines.naive2` with `season`). `season` is M4's m: 1 yearly, weekly and daily, 4
    quarterly, 12 monthly, 24 hourly. A method's rows holding NaN are series it did not forecast
    (a seasonal naive forecast of a series shorter than its season): it is scored on the others, and
    its OWA against Naive2 on those. Series with a constant history (MASE scale 0) are left out of
    MASE. The result has a "Naive2" entry (computed unless `forecasts` has one), in the order of
    `forecasts`, Naive2 last when computed."""
    truth = np.asarray(tests, np.float64)
    if truth.ndim != 2 or len(truth) != len(histories):
        raise ValueError(f"tests must be [N, H] with N = {len(histories)} series")
    horizon = truth.shape[1]
    rows = {name: np.asarray(f, np.float64) for name, f in forecasts.items()}
    for name, f in rows.items():
        if f.shape != truth.shape:
            raise ValueError(f"forecasts {name!r} have shape {f.shape}, not {truth.shape}")
    naive2 = rows.get("Naive2")
    if naive2 is None:
        naive2 = baselines.naive2(list(histories), horizon, season)
    scale = baselines.mase_scale(list(histories), season)
    scaled = np.isfinite(scale) & (scale > 0)

    def metrics(f: Array, keep: NDArray[np.bool_]) -> tuple[float, float]:
        smape = baselines.smape(f[keep], truth[keep])
        both = keep & scaled
        mase = baselines.mase(f[both], truth[both], scale[both]) if both.any() else math.nan
        return smape, mase

    out: dict[str, M4Score] = {}
    for name, f in [*rows.items(), *([] if "Naive2" in rows else [("Naive2", naive2)])]:
        keep: NDArray[np.bool_] = np.asarray(np.isfinite(f).all(axis=1))
        if not keep.any():
            out[name] = M4Score(math.nan, math.nan, math.nan, 0)
            continue
        smape, mase = metrics(f, keep)
        reference = metrics(naive2, keep)
        out[name] = M4Score(smape, mase, baselines.owa(smape, mase, *reference), int(keep.sum()))
    return out


def m4_table(
    scores: Mapping[str, M4Score],
    published: Mapping[str, tuple[float, float, float]] | None = None,
    model: str | None = None,
) -> str:
    """The text table of `m4_scores`: method, sMAPE, MASE, OWA, series, and the published numbers
    of the rows that have them; `model`'s row is marked as the served one."""
    header = ["method", "sMAPE", "MASE", "OWA", "series"]
    if published:
        header.append("published sMAPE/MASE/OWA")
    body = []
    for name, score in scores.items():
        row = [name + (" (served)" if name == model else "")]
        row += [_fixed(score.smape), _fixed(score.mase), _fixed(score.owa), f"{score.series:,}"]
        if published:
            ref = published.get(name)
            row.append(" / ".join(f"{v:.3f}" for v in ref) if ref else "")
        body.append(row)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]
        ).rstrip()
        for r in [header, *body]
    )


def _fixed(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


@dataclass
class PanelData:
    """A panel's histories and their test continuations [N, H], in the files' series order."""

    ids: list[str]
    histories: list[Array]
    truth: Array
    kind: str | None  # M4's frequency letter, when known
    data_format: str
    description: str
    notes: list[str] = field(default_factory=list)


def load_panel(config: BacktestConfig, horizon: int, target: str = "value") -> PanelData:
    """`config.data` and its continuation `config.test_data` (--format m4: M4's train and test
    files, same ids in the same order; long: unique_id, ds, y rows, the test rows right after each
    series' history), checked as `train` checks them; every continuation must hold `horizon`
    values."""
    from training.datasets import detect_format
    from training.intake import check_frequency
    from training.tasks import TaskConfig, _read_panels

    if config.test_data is None:
        raise TrainingError("a panel backtest needs --test-data, each series' continuation")
    data_format = config.data_format
    if data_format == "auto":
        data_format = detect_format(config.data, config.id_column, config.date_column)
    if data_format not in ("m4", "long"):
        raise TrainingError(
            f"{config.data} reads as one series (--format {data_format}), but --test-data scores "
            "a panel: pass --format m4 or long, or drop --test-data and give --start and --end"
        )
    if not Path(config.test_data).is_file():
        raise DataError(f"test data file not found: {config.test_data}")
    task = TaskConfig(
        data=str(config.data),
        horizon=1,  # any length is read here; the horizon is checked below, with its own message
        date_column=config.date_column,
        target=target,
        frequency=config.frequency if data_format == "long" else None,
        fill_gaps=config.fill_gaps,
        date_format=config.date_format,
        dayfirst=config.dayfirst,
        data_format=data_format,
        id_column=config.id_column,
        test_data=str(config.test_data),
    )
    panel, test, column = _read_panels(task, data_format)
    assert test is not None
    lengths = sorted({len(v) for v in test.values})
    if lengths != [horizon]:
        held = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]} to {lengths[-1]}"
        raise TrainingError(
            f"{config.test_data} holds {held} values per series, but the model forecasts "
            f"{horizon} step{'s' if horizon != 1 else ''}: the model's horizon must equal the "
            "test horizon"
        )
    frequency = panel.frequency
    if data_format == "m4" and config.frequency:
        frequency = check_frequency(config.frequency)
    kind = frequency_kind(frequency, panel.ids)
    sizes = [len(v) for v in panel.values]
    description = (
        f"{config.data} ({data_format}): {len(panel):,} series of {min(sizes):,} to "
        f"{max(sizes):,} points"
        + (f" of {column!r}" if data_format == "long" else "")
        + (f" at frequency {frequency}" if frequency else "")
        + f"; test: the next {horizon} values of each in {config.test_data}"
    )
    return PanelData(
        ids=list(panel.ids),
        histories=[np.asarray(v, np.float64) for v in panel.values],
        truth=np.stack([np.asarray(v, np.float64) for v in test.values]),
        kind=kind,
        data_format=data_format,
        description=description,
        notes=list(panel.notes),
    )


def _theta_window(job: tuple[Array, int, int]) -> tuple[Array, str]:
    """statsforecast's Theta (the standard theta method, with M4's seasonality test and classical
    multiplicative decomposition for season > 1) of one series; naive when it cannot be fitted."""
    from statsforecast.models import Theta

    y, horizon, season = job
    if len(y) < 3:
        return np.full(horizon, y[-1]), "naive (too short for Theta)"
    try:
        forecast = np.asarray(Theta(season_length=season).forecast(y=y, h=horizon)["mean"])
    except Exception as exc:  # any failure of one series' fit: naive, and counted
        return np.full(horizon, y[-1]), f"naive (Theta failed: {type(exc).__name__})"
    if not np.isfinite(forecast).all():
        return np.full(horizon, y[-1]), "naive (Theta forecast not finite)"
    return forecast.astype(np.float64), ""


def _fit_each(
    fit: Callable[[tuple[Array, int, int]], tuple[Array, str]],
    histories: Sequence[Array],
    horizon: int,
    season: int,
    jobs: int,
    label: str,
    log: Callable[[str], None],
) -> tuple[Array, list[str]]:
    """`fit` on every series ([N, H] forecasts), in `jobs` processes, with about ten progress lines;
    the distinct notes of the series that fell back, with their counts."""
    work = [(y, horizon, season) for y in histories]
    n, started = len(work), time.monotonic()
    every = max(1, math.ceil(n / 10))
    results: list[tuple[Array, str]] = []

    def progress() -> None:
        done = len(results)
        if done % every == 0 or done == n:
            log(f"backtest: {label} {done:,}/{n:,} series ({time.monotonic() - started:.1f} s)")

    if jobs > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for result in pool.map(fit, work, chunksize=max(1, min(8, n // (8 * jobs)))):
                results.append(result)
                progress()
    else:
        for job in work:
            results.append(fit(job))
            progress()
    counts: dict[str, int] = {}
    for _, note in results:
        if note:
            counts[note] = counts.get(note, 0) + 1
    notes = [f"{label}: {count} series {note}" for note, count in counts.items()]
    return np.stack([r[0] for r in results]), notes


def ses_forecasts(histories: Sequence[Array], horizon: int, season: int = 1) -> Array:
    """M4's SES benchmark [N, H]: simple exponential smoothing (statsforecast, alpha optimised) of
    each series, seasonally adjusted first as Naive2 does when M4's seasonality test finds
    `season`; naive where it cannot be fitted."""
    from statsforecast.models import SimpleExponentialSmoothingOptimized

    out = np.empty((len(histories), horizon))
    steps = np.arange(horizon)
    for row, y in enumerate(histories):
        n, future = len(y), np.ones(horizon)
        adjusted = y
        if baselines.seasonality_test(y, season):
            indices = baselines.seasonal_indices(y, season)
            adjusted = y / indices[np.arange(n) % season]
            future = indices[(n + steps) % season]
        forecast = np.full(horizon, adjusted[-1])
        if n >= 2:
            try:
                model = SimpleExponentialSmoothingOptimized()
                fitted = np.asarray(model.forecast(y=adjusted, h=horizon)["mean"], np.float64)
                if np.isfinite(fitted).all():
                    forecast = fitted
            except (ValueError, ZeroDivisionError, FloatingPointError):
                pass
        out[row] = forecast * future
    return out


def panel_baselines(
    histories: Sequence[Array],
    horizon: int,
    season: int = 1,
    naive_season: int | None = None,
    *,
    ets: bool = True,
    theta: bool = True,
    jobs: int = 2,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Array], list[str]]:
    """The statistical forecasts [N, H] of each series after its history, as M4 made them:
    Naive2 (M4's m = `season`), naive (Naive1), seasonal naive (`naive_season`; NaN rows for the
    series shorter than it, no row when none is long enough or it is 1), SES, Theta and AutoETS
    (per series, with season `season`; Theta and AutoETS in `jobs` processes). Returns them and
    notes (fallbacks, skipped series)."""
    forecasts: dict[str, Array] = {"Naive2": baselines.naive2(list(histories), horizon, season)}
    forecasts["naive"] = np.stack([np.full(horizon, y[-1]) for y in histories])
    notes: list[str] = []
    if naive_season is not None and naive_season > 1:
        rows = np.full((len(histories), horizon), np.nan)
        long_enough = [i for i, y in enumerate(histories) if len(y) >= naive_season]
        for i in long_enough:
            rows[i] = baselines.seasonal_naive(histories[i], horizon, naive_season)[0]
        if long_enough:
            forecasts[f"seasonal_naive_{naive_season}"] = rows
        if len(long_enough) < len(histories):
            notes.append(
                f"seasonal_naive_{naive_season}: {len(histories) - len(long_enough)} of "
                f"{len(histories)} series shorter than the season, not scored"
                + ("" if long_enough else " (no row)")
            )
    forecasts["SES"] = ses_forecasts(histories, horizon, season)
    if theta:
        forecasts["Theta"], theta_notes = _fit_each(
            _theta_window, histories, horizon, season, jobs, "Theta", log
        )
        notes += theta_notes
    if ets:
        # baselines' own per-series AutoETS fit (module-level, so it pickles to the workers).
        forecasts["AutoETS"], ets_notes = _fit_each(
            baselines._fit_window, histories, horizon, season, jobs, "AutoETS", log
        )
        notes += ets_notes
    return forecasts, notes


@dataclass
class PanelResult:
    spec: ModelSpec
    command: str
    data: PanelData
    forecasts: dict[str, Array]  # method -> [N, H], the model first; NaN rows: not forecast
    scores: dict[str, M4Score]
    season: int  # M4's m
    naive_season: int | None
    served_series: int  # series the service forecast (the others: at most min_length points)
    coverage: dict[str, float]  # level ("80") -> share of the truths inside, served series
    table: str
    published: bool  # the data is M4 Weekly, where the published numbers apply
    url: str
    seconds: float
    calibrated: bool | None = None
    samples: int = 0
    notes: list[str] = field(default_factory=list)


def panel_command_line(config: BacktestConfig, data_format: str, season: int) -> str:
    """The command that reproduces this panel backtest, defaults resolved."""
    parts = ["python", "-m", "training", "backtest", "--model", str(config.model)]
    parts += ["--data", str(config.data), "--test-data", str(config.test_data)]
    parts += ["--format", data_format]
    if data_format == "long":
        parts += ["--id-column", config.id_column, "--date-column", config.date_column]
        parts += reading_flags(config)
    if config.frequency:
        parts += ["--frequency", config.frequency]
    parts += ["--season", str(season), "--levels", *map(str, config.levels)]
    parts += ["--samples", str(config.samples), "--seed", str(config.seed)]
    if not config.ets:
        parts.append("--no-ets")
    if not config.theta:
        parts.append("--no-theta")
    parts += ["--jobs", str(config.jobs)]
    if config.url:
        parts += ["--url", config.url]
    if config.out:
        parts += ["--out", str(config.out)]
    return shlex.join(parts)


def run_panel(config: BacktestConfig, log: Callable[[str], None] = print) -> PanelResult:
    """M4-style backtest of a global model: each series of `config.data` forecast once through the
    service from its raw last input_length points (series of min_length or more points: the
    service's own rule; shorter ones get the naive forecast, counted in a note), scored on
    `config.test_data` beside the per-series baselines; writes --out."""
    started = time.monotonic()
    mixed = [
        flag
        for flag, value in (
            ("--start", config.start),
            ("--end", config.end),
            ("--stride", config.stride),
        )
        if value is not None
    ]
    if mixed:
        raise TrainingError(
            f"{' and '.join(mixed)} apply to a one-series CSV; with --test-data each series is "
            "forecast once, from the end of its history"
        )
    spec = ModelSpec.read(config.model)
    if len(spec.features) != 1:
        raise TrainingError(
            f"model {spec.name!r} reads {len(spec.features)} features ({', '.join(spec.features)}); "
            "a panel backtest needs a univariate model"
        )
    if config.samples < 0:
        raise TrainingError(f"--samples must be >= 0, got {config.samples}")
    if config.jobs < 1:
        raise TrainingError(f"--jobs must be at least 1, got {config.jobs}")
    quantile_levels(config.levels)  # bad levels fail before the service starts
    data = load_panel(config, spec.horizon, config.target or spec.features[0])
    notes = list(data.notes)
    season = config.season or M4_SEASONALITY.get(data.kind or "", 1)
    naive_season = NAIVE_SEASON[data.kind] if data.kind else (season if season > 1 else None)
    horizon, length = spec.horizon, spec.input_length
    min_length = spec.min_length or length
    served_rows = [i for i, y in enumerate(data.histories) if len(y) >= min_length]
    if not served_rows:
        raise TrainingError(
            f"every series of {config.data} is shorter than the model's min_length {min_length} "
            f"(the longest has {max(len(y) for y in data.histories)} points)"
        )
    short = len(data.histories) - len(served_rows)
    if short:
        notes.append(
            f"{short} of {len(data.histories)} series have fewer than min_length={min_length} "
            f"points, too few for the service: the {spec.name!r} row holds the naive forecast "
            "for them"
        )
    log(
        f"backtest: {spec.name} on {len(data.ids):,} series of {config.data}, horizon {horizon}; "
        f"M4 seasonality {season}"
        + (f", seasonal naive {naive_season}" if naive_season and naive_season > 1 else "")
    )
    contexts = [data.histories[i][-length:, None] for i in served_rows]

    def served_forecasts(url: str) -> Served:
        return serve_forecasts(url, spec, contexts, config, log, unit="series")

    if config.url:
        url = config.url.rstrip("/")
        served = served_forecasts(url)
    else:
        log(f"backtest: starting the service on {spec.folder.resolve().parent}")
        with local_service(
            spec.folder.resolve().parent, spec.name, config.startup_timeout_s
        ) as url:
            served = served_forecasts(url)

    model = np.stack([np.full(horizon, y[-1]) for y in data.histories])
    model[served_rows] = served.mean
    forecasts: dict[str, Array] = {spec.name: model}
    stats, baseline_notes = panel_baselines(
        data.histories,
        horizon,
        season,
        naive_season,
        ets=config.ets,
        theta=config.theta,
        jobs=config.jobs,
        log=log,
    )
    forecasts.update(stats)
    notes += baseline_notes
    if not config.ets:
        notes.append("AutoETS skipped (--no-ets)")
    if not config.theta:
        notes.append("Theta skipped (--no-theta)")
    scores = m4_scores(data.histories, data.truth, forecasts, season)
    scales = baselines.mase_scale(data.histories, season)
    constant = int(np.sum(~(np.isfinite(scales) & (scales > 0))))
    if constant:
        notes.append(f"{constant} series with a constant history (MASE scale 0) left out of MASE")
    published = (
        data.kind == "W"
        and len(data.ids) == M4_WEEKLY_SERIES
        and horizon == M4_WEEKLY_HORIZON
        and season == 1
    )
    table = m4_table(scores, M4_WEEKLY_PUBLISHED if published else None, model=spec.name)
    cover: dict[str, float] = {}
    truth = data.truth[served_rows]
    if served.quantiles:
        for level in config.levels:
            lo = served.quantiles[round((1 - level / 100) / 2, 10)]
            hi = served.quantiles[round((1 + level / 100) / 2, 10)]
            cover[f"{level}"] = coverage(truth, lo, hi)
    else:
        notes.append("no model intervals: --samples 0 or a model without MC dropout")
    result = PanelResult(
        spec=spec,
        command=panel_command_line(config, data.data_format, season),
        data=data,
        forecasts=forecasts,
        scores=scores,
        season=season,
        naive_season=naive_season if naive_season and naive_season > 1 else None,
        served_series=len(served_rows),
        coverage=cover,
        table=table,
        published=published,
        url=config.url or "a service started for the backtest",
        seconds=round(time.monotonic() - started, 1),
        calibrated=served.calibrated,
        samples=config.samples if served.quantiles else 0,
        notes=notes,
    )
    log(table)
    if cover:
        log(f"backtest: {panel_coverage_line(result)}")
    for note in notes:
        log(f"backtest: {note}")
    if config.out is not None:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(panel_markdown(result))
        log(f"backtest: wrote {config.out}")
    return result


def panel_coverage_line(result: PanelResult) -> str:
    shown = ", ".join(f"{level}% {value:.3f}" for level, value in result.coverage.items())
    return (
        f"{result.spec.name} interval coverage over {result.served_series:,} series x "
        f"{result.spec.horizon} steps (nominal in %): {shown}"
    )


def panel_markdown(result: PanelResult) -> str:
    """The report --out writes in panel mode."""
    spec, data = result.spec, result.data
    fitted = [name for name in ("SES", "Theta", "AutoETS") if name in result.forecasts]
    seasonal = (
        f", seasonal naive (season {result.naive_season}; series shorter than it not scored)"
        if result.naive_season and f"seasonal_naive_{result.naive_season}" in result.forecasts
        else ""
    )
    lines = [
        f"# Panel backtest: {spec.name}",
        "",
        "M4-style evaluation through the service (`python -m training backtest --test-data`): each "
        "series' raw last `input_length` points were sent to the served model, as a client would, "
        "and its forecast scored on the series' continuation.",
        "",
        "```bash",
        result.command,
        "```",
        "",
        f"- model: `{spec.folder}` ({spec.name}: input_length {spec.input_length}, min_length "
        f"{spec.min_length or spec.input_length}, horizon {spec.horizon})",
        f"- data: {data.description}",
        f"- served: {result.served_series:,} of {len(data.ids):,} series by {result.url}; the "
        f"{spec.name} row is the served mean"
        + (
            f" of {result.samples} MC-dropout paths per series (intervals calibrated: "
            f"{result.calibrated})"
            if result.samples
            else " (dropout off)"
        ),
        f"- metrics as M4 defines them, with M4's seasonality m = {result.season}: sMAPE in %, "
        f"MASE scaled by each series' in-sample mean |y_t - y_(t-{result.season})|, OWA the mean "
        "of sMAPE and MASE relative to Naive2's on the same series",
        "- baselines: Naive2 (M4's: naive after a classical multiplicative seasonal adjustment "
        "when M4's 90% autocorrelation test finds the season), naive (Naive1)"
        + seasonal
        + (
            f", {', '.join(fitted)} (statsforecast, fitted on each series' whole history with "
            f"season {result.season}"
            + (
                "; SES on the series seasonally adjusted as for Naive2, Theta with its own "
                "seasonality test and decomposition"
                if result.season > 1
                else ""
            )
            + ")"
            if fitted
            else ""
        ),
        f"- run time {result.seconds} s",
        "",
        "## Scores",
        "",
        "| method | sMAPE | MASE | OWA | series |"
        + (" published sMAPE / MASE / OWA |" if result.published else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if result.published else ""),
    ]
    for name, score in result.scores.items():
        label = f"{name} (served)" if name == spec.name else name
        cells = [_fixed(score.smape), _fixed(score.mase), _fixed(score.owa), f"{score.series:,}"]
        if result.published:
            ref = M4_WEEKLY_PUBLISHED.get(name)
            cells.append(" / ".join(f"{v:.3f}" for v in ref) if ref else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Interval coverage", ""]
    if result.coverage:
        lines += [
            f"Share of the actual values inside the {spec.name} central intervals, over the "
            f"{result.served_series:,} served series and all {spec.horizon} steps.",
            "",
            "| level | coverage |",
            "|---:|---:|",
        ]
        lines += [f"| {level}% | {value:.3f} |" for level, value in result.coverage.items()]
    else:
        lines.append("No model intervals (--samples 0, or a model without MC dropout).")
    lines += [
        "",
        "## Published M4 Weekly results",
        "",
        "Makridakis et al. (2020), M4 Weekly (359 series, horizon 13), OWA relative to Naive2. "
        + (
            "This run scores the same series and horizon, so the numbers compare directly."
            if result.published
            else "This run scores other series, so they are a reference only, not comparable."
        ),
        "",
        "| method | sMAPE | MASE | OWA |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {s:.3f} | {m:.3f} | {o:.3f} |"
        for name, (s, m, o) in M4_WEEKLY_PUBLISHED.items()
    ]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"
