"""`python -m service`: run the API with uvicorn, configured by `FORECAST_*` variables."""

import uvicorn

from service.settings import Settings


def main() -> None:
    settings = Settings()
    # An import string with factory=True, so that every worker process builds its own app (and reads
    # the same environment); uvicorn cannot fork an app object into several workers.
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
    )


if __name__ == "__main__":
    main()
