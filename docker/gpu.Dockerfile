# The GPU API image: onnxruntime-gpu 1.31 asks for CUDA 13.* and cuDNN 9.* at session creation,
# which this base provides. Ubuntu 24.04's Python is 3.12 (the project needs >= 3.11).
# Not built in CI (no GPU, and the base image is ~3 GB); the service refuses FORECAST_DEVICE=cuda
# at start-up if the CUDA provider does not activate.
#   docker build -f docker/gpu.Dockerfile -t forecast-service/api-gpu .

FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['gpu']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY forecaster_format/ forecaster_format/
COPY service/ service/
RUN pip install --no-deps . && rm -rf forecaster_format service pyproject.toml README.md \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /app app
COPY --chown=1000:1000 models/ /app/models/
ENV FORECAST_HOST=0.0.0.0 FORECAST_PORT=8000 FORECAST_MODELS_DIR=/app/models FORECAST_DEVICE=cuda
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('FORECAST_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["python", "-m", "service"]
