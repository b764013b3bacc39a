# The training image: TensorFlow, tf2onnx and the training package. By default it trains the LSTM
# on the synthetic series and exports it into /app/models/lstm (mount ./models there):
#   docker compose --profile train run --rm train
#   docker compose --profile train run --rm train train --model gru --epochs 60

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
o = p['optional-dependencies']; print('\n'.join(p['dependencies'] + o['cpu'] + o['train']))" \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY forecaster_format/ forecaster_format/
COPY service/ service/
COPY training/ training/
RUN pip install --no-deps . \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /app app \
 && mkdir -p /app/models /app/runs && chown 1000:1000 /app /app/models /app/runs
USER 1000:1000
ENV HOME=/app MPLCONFIGDIR=/tmp/matplotlib
ENTRYPOINT ["python", "-m", "training"]
CMD ["train", "--model", "lstm", "--data", "synthetic", "--horizon", "10", "--epochs", "60", "--out", "/app/models/lstm"]
