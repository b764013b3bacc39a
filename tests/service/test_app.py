"""Settings from the environment, `python -m service`, health probes and the OpenAPI docs."""

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

import service.__main__
from service import Settings, create_app
from service import settings as settings_module
from service.settings import DEFAULT_MODELS_DIR


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "WORKERS", "MODELS_DIR", "DEVICE", "INTRA_OP_THREADS"):
        monkeypatch.delenv(f"FORECAST_{name}", raising=False)

    settings = Settings()

    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert (settings.device, settings.intra_op_threads) == ("auto", 1)
    assert settings.models_dir == DEFAULT_MODELS_DIR == Path(service.__file__).parents[1] / "models"
    assert (settings.max_series, settings.max_points, settings.max_horizon) == (1000, 100_000, 1000)
    assert (settings.max_samples, settings.max_body_bytes) == (1000, 8 * 1024 * 1024)


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "HOST": "0.0.0.0",
        "PORT": "9001",
        "WORKERS": "4",
        "MODELS_DIR": str(tmp_path),
        "DEVICE": "cpu",
        "INTRA_OP_THREADS": "2",
        "MAX_HORIZON": "50",
        "MAX_BODY_BYTES": "1024",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"FORECAST_{name}", value)

    settings = Settings()

    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9001, 4)
    assert (settings.models_dir, settings.device, settings.intra_op_threads) == (tmp_path, "cpu", 2)
    assert (settings.max_horizon, settings.max_body_bytes) == (50, 1024)


def test_bad_device_in_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_DEVICE", "tpu")

    with pytest.raises(ValueError, match="device"):
        Settings()


def test_create_app_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, models_dir: Path
) -> None:
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FORECAST_DEVICE", "cpu")

    with TestClient(create_app()) as client:
        names = [m["name"] for m in client.get("/v1/models").json()["models"]]

    assert names == ["multi", "tiny"]


def test_main_runs_uvicorn_with_a_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("FORECAST_WORKERS", "3")
    monkeypatch.setenv("FORECAST_PORT", "8123")

    service.__main__.main()

    ((args, kwargs),) = calls
    assert args == ("service.app:create_app",)
    assert kwargs["factory"] is True
    assert (kwargs["workers"], kwargs["port"]) == (3, 8123)
    assert kwargs["access_log"] is True  # uvicorn's default, FORECAST_ACCESS_LOG=false turns it off


def test_health(client: TestClient) -> None:
    live = client.get("/health/live")
    ready = client.get("/health/ready")

    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": {"multi": True, "tiny": True}}


def test_not_ready_without_the_lifespan(settings: Settings) -> None:
    client = TestClient(create_app(settings))  # no `with`: the lifespan does not run

    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200
    assert client.get("/v1/models").json()["error"]["type"] == "model_not_ready"


def test_openapi_docs_with_request_examples(client: TestClient) -> None:
    docs = client.get("/docs")
    schema = client.get("/openapi.json").json()

    assert docs.status_code == 200
    forecast = schema["paths"]["/v1/models/{name}/forecast"]["post"]
    examples = forecast["requestBody"]["content"]["application/json"]["examples"]
    assert {"next_step", "multi_step_with_error_bars", "rollout_batch"} <= set(examples)
    assert "ForecastResponse" in str(forecast["responses"]["200"])


def test_openapi_examples_are_served(client: TestClient) -> None:
    examples = client.get("/openapi.json").json()["paths"]["/v1/models/{name}/forecast"]["post"]
    for example in examples["requestBody"]["content"]["application/json"]["examples"].values():
        response = client.post("/v1/models/tiny/forecast", json=example["value"])
        assert response.status_code == 200, response.text


def test_workers_auto_is_one_per_available_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FORECAST_WORKERS", "auto")
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    quota = tmp_path / "cpu.max"

    assert Settings().workers == "auto"
    assert settings_module.available_cpus(tmp_path / "absent") == 4
    quota.write_text("max 100000\n")
    assert settings_module.available_cpus(quota) == 4
    quota.write_text("250000 100000\n")  # --cpus 2.5: two workers
    assert settings_module.available_cpus(quota) == 2
    quota.write_text("50000 100000\n")
    assert settings_module.available_cpus(quota) == 1


def test_main_turns_the_access_log_off_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append(k))
    monkeypatch.setenv("FORECAST_ACCESS_LOG", "false")

    service.__main__.main()

    assert calls[0]["access_log"] is False


def test_main_resolves_auto_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append(k))
    monkeypatch.setattr(settings_module, "available_cpus", lambda: 3)
    monkeypatch.setenv("FORECAST_WORKERS", "auto")
    monkeypatch.setattr(service.__main__, "prepare_metrics_dir", lambda workers: None)

    service.__main__.main()

    assert calls[0]["workers"] == 3


def test_batching_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_BATCHING", "false")
    monkeypatch.setenv("FORECAST_BATCH_MAX_ROWS", "32")
    monkeypatch.setenv("FORECAST_BATCH_MAX_WAIT_MS", "2.5")

    settings = Settings()

    assert (settings.batching, settings.batch_max_rows, settings.batch_max_wait_ms) == (
        False,
        32,
        2.5,
    )


@pytest.mark.parametrize(("ms", "during"), [(0.2, 0.0002), (0.0, None)])
def test_the_lifespan_sets_the_gil_switch_interval_and_restores_it(
    settings: Settings, ms: float, during: float | None
) -> None:
    import sys

    before = sys.getswitchinterval()
    app = create_app(settings.model_copy(update={"gil_switch_interval_ms": ms}))
    with TestClient(app):
        seen = sys.getswitchinterval()
    assert seen == pytest.approx(before if during is None else during)
    assert sys.getswitchinterval() == before


@pytest.mark.parametrize("threshold", [20_000, 0])
def test_the_lifespan_tunes_the_garbage_collector_and_restores_it(
    settings: Settings, threshold: int
) -> None:
    import gc

    before = gc.get_threshold()
    app = create_app(settings.model_copy(update={"gc_threshold": threshold}))
    with TestClient(app) as client:
        seen, frozen = gc.get_threshold(), gc.get_freeze_count()
        assert client.get("/v1/models").status_code == 200
    if threshold:
        assert seen == (threshold, *before[1:])
        assert frozen > 10_000  # the app as loaded: FastAPI, pydantic, ORT bindings...
    else:
        assert (seen, frozen) == (before, 0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_gil_switch_interval_setting_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_GIL_SWITCH_INTERVAL_MS", "-1")
    with pytest.raises(ValueError, match="gil_switch_interval_ms"):
        Settings()
