"""`python -m service`: run the API with uvicorn, configured by `FORECAST_*` variables."""

import copy
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

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


@contextmanager
def sigterm_exits_zero() -> Iterator[None]:
    """Within this block, a SIGTERM that uvicorn has handled ends the process with status 0.

    While it serves, uvicorn handles SIGTERM itself: stop accepting, let requests in flight finish
    (up to `timeout_graceful_shutdown`), run the lifespan shutdown. Then it raises the signal again
    under the handler it found at start-up, so that by default the process dies of it (status 143),
    which supervisors report as a failure. The handler installed here turns that into a clean exit;
    a SIGTERM before uvicorn serves (nothing to drain yet) exits at once, also with 0. The previous
    handler is restored on the way out (a test that calls `main` keeps its own).
    """
    previous = signal.signal(signal.SIGTERM, _exit_zero)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus the service's own loggers (model loads and reloads) at `level`.

    uvicorn configures only its own loggers: without this, INFO lines from `service.*` are dropped.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["service"] = {"handlers": ["default"], "level": level.upper()}
    return config


def main() -> None:
    settings = Settings()
    workers = settings.worker_count()
    prepare_metrics_dir(workers)
    # An import string with factory=True, so that every worker process builds its own app (and reads
    # the same environment); uvicorn cannot fork an app object into several workers.
    with sigterm_exits_zero():
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            log_config=log_config(settings.log_level),
            access_log=settings.access_log,
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
        )


if __name__ == "__main__":
    main()
