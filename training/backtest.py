"""Rolling-origin backtest of an exported model THROUGH THE SERVICE, against statistical baselines.

    python -m training backtest --model models/cta_rail --data data/cta/rides.csv \
        --date-column service_date --target rail_boardings --start 2019-06-01 --end 2019-12-31

At every `stride` steps whose forecast starts in [start, end] (and whose horizon lies in the data),
the raw last `input_length` rows are sent to the running service (started here as a subprocess on
127.0.0.1 unless --url names one), exactly as a client would; the served mean and its MC-dropout
intervals are scored beside the naive, seasonal naive and AutoETS forecasts of the same origins.
No TensorFlow: the model runs in the service, the baselines in numpy and statsforecast.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

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


def serve_forecasts(
    url: str,
    spec: ModelSpec,
    contexts: Array,
    config: BacktestConfig,
    log: Callable[[str], None],
) -> Served:
    """POST the contexts [N, input_length, F] in batches within the service's limits; the served
    means and, with samples, the quantiles of the central `levels` intervals."""
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
    per_series = len(json.dumps(contexts[0].tolist())) + 2
    size = max(1, min(size, int(_limit("MAX_BODY_BYTES", 8 * 1024 * 1024) * 0.8) // per_series))
    n, horizon = len(contexts), spec.horizon
    mean = np.empty((n, horizon))
    bounds = {q: np.empty((n, horizon)) for q in quantiles} if uncertain else {}
    calibrated: bool | None = None
    batches = math.ceil(n / size)
    started = time.monotonic()
    for b in range(batches):
        part = contexts[b * size : (b + 1) * size]
        rows = part[:, :, 0] if part.shape[2] == 1 else part
        body: dict[str, Any] = {"batch": rows.tolist(), "horizon": horizon, "strategy": "direct"}
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
                f"backtest: {min(done * size, n):,}/{n:,} origins served "
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


def command_line(config: BacktestConfig, stride: int, season: int) -> str:
    """The command that reproduces this backtest, defaults resolved."""
    parts = ["python", "-m", "training", "backtest", "--model", str(config.model)]
    parts += ["--data", str(config.data), "--date-column", config.date_column]
    if config.target:
        parts += ["--target", config.target]
    if config.frequency:
        parts += ["--frequency", config.frequency]
    if config.date_format:
        parts += ["--date-format", config.date_format]
    if config.dayfirst:
        parts.append("--dayfirst")
    if config.fill_gaps != "error":
        parts += ["--fill-gaps", config.fill_gaps]
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
