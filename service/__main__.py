"""`python -m service`: run the API with uvicorn, configured by `FORECAST_*` variables."""

import os
import tempfile
from pathlib import Path

import uvicorn

from service.settings import Settings


def prepare_metrics_dir(workers: int) -> None:
    """Give prometheus-client its multiprocess folder before any worker process imports it.

    With several workers each process writes its metrics to files there and `/metrics` sums them.
    Files left by an earlier run would be summed too, so a given folder is emptied first.
    """
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    elif workers > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="forecast-metrics-")


def main() -> None:
    settings = Settings()
    workers = settings.worker_count()
    prepare_metrics_dir(workers)
    # An import string with factory=True, so that every worker process builds its own app (and reads
    # the same environment); uvicorn cannot fork an app object into several workers.
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
    )


if __name__ == "__main__":
    main()
