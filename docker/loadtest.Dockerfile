# Locust with the project's locustfile, on the same slim base as the API (no registry image needed).
#   docker compose --profile loadtest run --rm locust

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "locust>=2.30,<3" \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /app app
WORKDIR /app
COPY loadtest/ loadtest/
USER 1000:1000
ENTRYPOINT ["locust", "-f", "/app/loadtest/locustfile.py"]
CMD ["--headless", "--users", "16", "--spawn-rate", "8", "--run-time", "60s", "--only-summary"]
