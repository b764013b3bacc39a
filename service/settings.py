"""Service settings, read from `FORECAST_*` environment variables when `Settings()` is built."""

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The repository's `models/` folder: `python -m service` serves the shipped models unconfigured.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    """Everything the service can be told; defaults run on a laptop with the shipped models."""

    model_config = SettingsConfigDict(env_prefix="FORECAST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # An integer, or "auto": one per CPU available to the process (affinity and cgroup quota).
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = 1
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # uvicorn's access log: one line per request on stderr, written on the event loop.
    access_log: bool = Field(default=True, description="uvicorn's access log, one line per request")

    models_dir: Path = DEFAULT_MODELS_DIR
    device: Device = "auto"
    # One ORT thread per worker process avoids oversubscription; scale with workers (FIELD-NOTES).
    intra_op_threads: int = Field(default=1, ge=1)
    # Micro-batching (service/batching.py): concurrent calls to one model share one ORT call.
    batching: bool = True
    # ORT's cost per row rises beyond ~128-256 rows (cache): measured 43 us/row for lstm at 128,
    # 57 at 256, 83 at 1600; gru keeps falling to ~40 (docs/performance.md, Micro-batching).
    batch_max_rows: int = Field(default=128, ge=1, description="rows per batched ORT call")
    batch_max_wait_ms: float = Field(
        default=0.0, ge=0.0, description="how long an idle model waits for more rows; 0: greedy"
    )
    batch_threads: int = Field(
        default=2,
        ge=1,
        description="threads per model for big jobs (MC paths); small calls share one queue worker",
    )

    # How often the interpreter hands the GIL to a waiting thread (`sys.setswitchinterval`), set by
    # the app for its worker process. Python's 5 ms default leaves a finished ORT call waiting that
    # long for the event loop to let go of the GIL: measured at c=64, one worker, next-step
    # requests/s 5,900-6,500 -> 8,100-9,800 at 0.2 ms (lstm, wavenet), MC-100 unchanged
    # (docs/performance.md, Settings that matter). 0 keeps Python's default.
    gil_switch_interval_ms: float = Field(
        default=0.2,
        ge=0.0,
        le=100.0,
        description="GIL switch interval of the worker process (ms); 0: Python's default (5 ms)",
    )

    # The garbage collector of the worker process. Under load a next-step request lives a few ms
    # across a model call, so its coroutines, futures and dicts survive young collections and
    # reach the oldest generation, whose full collections walk every object of the process (the
    # loaded app, ~76,000): measured at c=64 on lstm, 11 full collections of 40 ms each in 5 s and
    # 15% of the event loop in the collector (docs/performance.md, Settings that matter). Forecast requests
    # make no reference cycles (a 14,000-request run with the collector off: nothing to collect),
    # so the lifespan freezes what exists after the models load (`gc.freeze`: never walked
    # again) and raises the first generation's threshold to this many net allocations.
    # 0 leaves Python's collector as it is (threshold 700, nothing frozen).
    gc_threshold: int = Field(
        default=20_000,
        ge=0,
        le=10_000_000,
        description="gen-0 threshold of the worker's garbage collector, with the loaded app "
        "frozen out of collections; 0: Python's defaults",
    )

    max_series: int = Field(default=1000, ge=1, description="series per request (`batch` length)")
    max_points: int = Field(default=100_000, ge=1, description="points per series")
    max_horizon: int = Field(
        default=1000, ge=1, description="forecast steps, recursive rollouts included"
    )
    max_samples: int = Field(default=1000, ge=1, description="MC-dropout sample paths per series")
    # series x samples rows go through the model together: this bounds the memory of one request.
    max_paths: int = Field(default=100_000, ge=1, description="series x samples per request")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="request body size")
    # Overload (service/api/overload.py): beyond this many requests in flight in one worker, an
    # immediate 503 instead of a growing queue. Little's law: in flight = rate x latency, so the
    # worst wait is about max_in_flight / capacity; 128 / ~200 MC requests/s is ~0.65 s. Above
    # the c=64 of `make bench`, which must see no refusal.
    max_in_flight: int = Field(
        default=128, ge=1, description="requests in flight per worker process; 503 beyond"
    )
    retry_after_s: int = Field(
        default=1, ge=0, description="Retry-After (seconds) on an overloaded 503"
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="deadline: 504 when no answer has started by then"
    )
    # SIGTERM: stop accepting, let requests in flight finish for up to this long, then exit.
    # Above request_timeout_s, so that every request admitted before the signal gets its answer.
    shutdown_timeout_s: int = Field(
        default=35, ge=0, description="graceful shutdown: how long requests in flight may drain"
    )
    # The KServe time-series API has no samples field: its quantiles come from this many MC paths.
    timeseries_samples: int = Field(
        default=100, ge=1, description="MC-dropout paths behind KServe time-series quantiles"
    )

    # Access (service/api/access.py). Comma-separated; empty: no authentication, and the admin
    # endpoints answer 403. SecretStr: a logged or printed Settings shows `**********`.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default=[], description="API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="origins allowed by CORS (comma-separated); empty: CORS off"
    )
    # Model lifecycle (service/lifecycle.py). Strict, as Triton: ready only when every model loaded.
    strict_readiness: bool = True
    model_poll_s: float = Field(
        default=0.0, ge=0.0, description="reload changed model folders every N seconds; 0: off"
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def worker_count(self) -> int:
        """`workers`, with "auto" resolved to the CPUs this process may use."""
        return available_cpus() if self.workers == "auto" else self.workers


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs available to this process: its affinity, capped by a cgroup v2 `cpu.max` quota.

    `os.cpu_count()` is the host's count; a container limited with `--cpus 2` still sees every core
    there, and ORT sizes its pools the same way (FIELD-NOTES).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))  # 1.5 CPUs: one worker
    except (OSError, ValueError):
        pass
    return max(1, cpus)
