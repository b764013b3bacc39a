# The CPU API image: ONNX Runtime and the service, no TensorFlow.
#   docker build -f docker/api.Dockerfile -t forecast-service/api .
# The shipped models are copied to /app/models; mount another repository there to replace them.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, read from pyproject.toml: this layer is rebuilt only when they change.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['cpu']))" > requirements.txt \
 && pip install -r requirements.txt
COPY forecaster_format/ forecaster_format/
COPY service/ service/
RUN pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FORECAST_HOST=0.0.0.0 \
    FORECAST_PORT=8000 \
    FORECAST_MODELS_DIR=/app/models \
    FORECAST_DEVICE=cpu \
    FORECAST_WORKERS=auto
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /app app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=1000:1000 models/ /app/models/
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('FORECAST_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["python", "-m", "service"]
