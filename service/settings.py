"""Service settings, read from `FORECAST_*` environment variables when `Settings()` is built."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository's `models/` folder: `python -m service` serves the shipped models unconfigured.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    """Everything the service can be told; defaults run on a laptop with the shipped models."""

    model_config = SettingsConfigDict(env_prefix="FORECAST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    models_dir: Path = DEFAULT_MODELS_DIR
    device: Device = "auto"
    # One ORT thread per worker process avoids oversubscription; scale with workers (FIELD-NOTES).
    intra_op_threads: int = Field(default=1, ge=1)

    max_series: int = Field(default=1000, ge=1, description="series per request (`batch` length)")
    max_points: int = Field(default=100_000, ge=1, description="points per series")
    max_horizon: int = Field(
        default=1000, ge=1, description="forecast steps, recursive rollouts included"
    )
    max_samples: int = Field(default=1000, ge=1, description="MC-dropout sample paths per series")
    # series x samples rows go through the model together: this bounds the memory of one request.
    max_paths: int = Field(default=100_000, ge=1, description="series x samples per request")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="request body size")
    # The KServe time-series API has no samples field: its quantiles come from this many MC paths.
    timeseries_samples: int = Field(
        default=100, ge=1, description="MC-dropout paths behind KServe time-series quantiles"
    )
