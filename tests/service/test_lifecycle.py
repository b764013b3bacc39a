"""Reloading a model folder while serving: atomic swap, old version kept on failure, in-flight safe."""

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from uvicorn.config import LOGGING_CONFIG

import service.__main__
from service import Settings, create_app, lifecycle
from service.lifecycle import ModelLifecycle, RequestEpochs
from service.repository import Model
from service.runtime import OnnxModel
from tests.service.conftest import write_model

KEY = "admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
SERIES = {"series": [1.0] * 12}


@pytest.fixture
def admin(models_dir: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=models_dir, device="cpu", api_keys=KEY)
    with TestClient(create_app(settings)) as client:
        client.headers.update(AUTH)
        yield client


def lifecycle_of(client: TestClient) -> ModelLifecycle:
    manager: ModelLifecycle = client.app.state.lifecycle
    return manager


def onnx_of(client: TestClient, name: str) -> OnnxModel:
    onnx = lifecycle_of(client).repository.models[name].onnx
    assert onnx is not None
    return onnx


def set_version(folder: Path, version: int) -> None:
    spec = json.loads((folder / "forecaster.json").read_text())
    spec["version"] = version
    (folder / "forecaster.json").write_text(json.dumps(spec))


def is_closed(onnx: OnnxModel) -> bool:
    return onnx.batcher is not None and onnx.batcher._closed


def forecast_version(client: TestClient, name: str = "tiny") -> int:
    response = client.post(f"/v1/models/{name}/forecast", json=SERIES)
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def test_reload_swaps_in_the_new_version_and_closes_the_old(
    admin: TestClient, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.lifecycle")
    old = onnx_of(admin, "tiny")
    assert forecast_version(admin) == 1  # starts the old model's batcher
    set_version(models_dir / "tiny", 2)

    response = admin.post("/v1/admin/models/tiny/reload")
    admin.portal.call(lifecycle_of(admin).wait_retired)

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["ready"] is True
    assert admin.get("/v1/models/tiny").json()["version"] == 2
    assert forecast_version(admin) == 2
    assert onnx_of(admin, "tiny") is not old
    assert is_closed(old)
    assert "model tiny reloaded: version 2" in caplog.text
    assert admin.get("/health/ready").status_code == 200


def test_a_request_in_flight_finishes_on_the_old_model(
    admin: TestClient, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = onnx_of(admin, "tiny")
    entered, release = threading.Event(), threading.Event()
    run = OnnxModel.run

    def held_run(self: OnnxModel, x: Any, masks: Any) -> Any:
        if self is old and not release.is_set():  # the old model's call waits for the test
            entered.set()
            assert release.wait(10)
        return run(self, x, masks)

    monkeypatch.setattr(OnnxModel, "run", held_run)
    set_version(models_dir / "tiny", 2)

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(admin.post, "/v1/models/tiny/forecast", json=SERIES)
        assert entered.wait(10)
        reloaded = admin.post("/v1/admin/models/tiny/reload")
        served_meanwhile = forecast_version(admin)  # a new request gets the new model at once
        time.sleep(0.2)
        still_open = not is_closed(old)  # the old model waits for the request that holds it
        release.set()
        answer = in_flight.result(timeout=10)
    admin.portal.call(lifecycle_of(admin).wait_retired)

    assert reloaded.status_code == 200
    assert served_meanwhile == 2
    assert still_open
    assert answer.status_code == 200
    assert answer.json()["version"] == 1  # finished on the version it started on
    assert is_closed(old)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "forecaster.json").write_text('{"schema_version": 1'), "is invalid"),
        (lambda f: (f / "1" / "model.onnx").write_bytes(b"junk" * 10), "cannot load"),
        (lambda f: (f / "1" / "model.onnx").unlink(), "1/model.onnx is missing"),
        (lambda f: set_horizon(f, 5), "expected [1, 12, 5]"),
    ],
    ids=["bad_json", "bad_onnx", "no_onnx", "wrong_shape"],
)
def test_a_broken_new_version_leaves_the_old_one_serving(
    admin: TestClient, models_dir: Path, damage: Any, reason: str
) -> None:
    old = onnx_of(admin, "tiny")
    damage(models_dir / "tiny")

    native = admin.post("/v1/admin/models/tiny/reload")
    oip = admin.post("/v2/repository/models/tiny/load")

    assert native.status_code == oip.status_code == 409
    assert native.json()["error"]["type"] == "model_reload_failed"
    assert reason in native.json()["error"]["message"]
    assert "the previous version keeps serving" in native.json()["error"]["message"]
    assert reason in oip.json()["error"]
    assert onnx_of(admin, "tiny") is old
    assert not is_closed(old)
    assert admin.get("/v1/models/tiny").json()["ready"] is True
    assert forecast_version(admin) == 1
    assert admin.get("/health/ready").status_code == 200


def set_horizon(folder: Path, horizon: int) -> bool:
    spec = json.loads((folder / "forecaster.json").read_text())
    spec["horizon"] = horizon
    (folder / "forecaster.json").write_text(json.dumps(spec))
    return True


def test_reload_loads_a_new_folder_and_repairs_a_broken_one(
    admin: TestClient, models_dir: Path
) -> None:
    assert admin.post("/v1/models/fresh/forecast", json=SERIES).status_code == 404
    write_model(models_dir, "fresh")

    loaded = admin.post("/v1/admin/models/fresh/reload")

    assert loaded.status_code == 200
    assert forecast_version(admin, "fresh") == 1
    (models_dir / "broken").mkdir()  # appears broken: reported unavailable, like at start-up
    failed = admin.post("/v1/admin/models/broken/reload")
    assert failed.status_code == 409
    assert "it is unavailable" in failed.json()["error"]["message"]
    assert admin.get("/v1/models/broken").json()["ready"] is False
    assert admin.get("/health/ready").status_code == 503  # strict: every model must be loaded
    (models_dir / "broken").rmdir()
    write_model(models_dir, "broken")
    assert admin.post("/v1/admin/models/broken/reload").status_code == 200
    assert admin.get("/health/ready").status_code == 200


def test_invalid_or_unknown_names_never_touch_the_filesystem(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    monkeypatch.setattr(lifecycle, "load_model", lambda folder, s: loads.append(folder))

    invalid = [".hidden", "a..b", "x" * 65, "-dash", "a b", "é"]
    answers = [admin.post(f"/v1/admin/models/{name}/reload") for name in invalid]
    unknown = admin.post("/v1/admin/models/nope/reload")
    slash = admin.post("/v1/admin/models/..%2F..%2Fetc/reload")

    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["type"] == "invalid_model_name"
        assert answer.json()["error"]["message"].startswith("name: ")
    assert unknown.status_code == 404
    assert "no folder 'nope'" in unknown.json()["error"]["message"]
    assert slash.status_code in (404, 422)
    assert loads == []


def test_concurrent_reloads_of_a_model_are_serialised(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, most = 0, 0
    lock = threading.Lock()
    load = lifecycle.load_model

    def slow_load(folder: Path, settings: Settings) -> Model:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return load(folder, settings)

    monkeypatch.setattr(lifecycle, "load_model", slow_load)

    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(lambda _: admin.post("/v1/admin/models/tiny/reload").status_code, range(3))
        )

    assert answers == [200, 200, 200]
    assert most == 1


def test_triton_repository_extension(admin: TestClient, models_dir: Path) -> None:
    (models_dir / "empty").mkdir()
    assert admin.post("/v2/repository/models/empty/load").status_code == 409
    set_version(models_dir / "tiny", 3)

    loaded = admin.post("/v2/repository/models/tiny/load", content=b"{}")
    index = admin.post("/v2/repository/index").json()
    ready = admin.post("/v2/repository/index", json={"ready": True}).json()
    upload = admin.post(
        "/v2/repository/models/tiny/load", json={"parameters": {"config": "{}", "file:1/x": "AA=="}}
    )
    unknown = admin.post("/v2/repository/models/nope/load")

    assert loaded.status_code == 200
    assert loaded.content == b""
    assert {e["name"]: e["state"] for e in index} == {
        "empty": "UNAVAILABLE",
        "multi": "READY",
        "tiny": "READY",
    }
    assert {e["name"]: e["version"] for e in ready} == {"multi": "1", "tiny": "3"}
    assert next(e for e in index if e["name"] == "empty")["reason"] == "forecaster.json is missing"
    assert upload.status_code == 422
    assert "not supported" in upload.json()["error"]  # no model upload through the API
    assert unknown.status_code == 404
    assert isinstance(unknown.json()["error"], str)


def test_poll_reloads_changed_and_new_folders_once(admin: TestClient, models_dir: Path) -> None:
    manager = lifecycle_of(admin)
    reload_changed = lambda: admin.portal.call(manager.reload_changed)  # noqa: E731

    assert reload_changed() == []
    set_version(models_dir / "tiny", 2)
    write_model(models_dir, "fresh")
    assert sorted(reload_changed()) == ["fresh", "tiny"]
    assert reload_changed() == []
    (models_dir / "tiny" / "forecaster.json").write_text("{")
    assert reload_changed() == ["tiny"]  # fails: the loaded version keeps serving...
    assert reload_changed() == []  # ...and the same broken files are not retried
    assert forecast_version(admin) == 2
    assert forecast_version(admin, "fresh") == 1


def test_poll_runs_in_the_background(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, device="cpu", model_poll_s=0.05)
    with TestClient(create_app(settings)) as client:
        set_version(models_dir / "tiny", 7)
        deadline = time.monotonic() + 10
        while client.get("/v1/models/tiny").json()["version"] != 7:
            assert time.monotonic() < deadline, "the poll did not reload the changed folder"
            time.sleep(0.05)


def test_shutdown_closes_a_model_still_waiting_for_its_requests(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, device="cpu", api_keys=KEY)
    with TestClient(create_app(settings), headers=AUTH) as client:
        old = onnx_of(client, "tiny")
        forecast_version(client)
        manager = lifecycle_of(client)
        manager.epochs.enter()  # a request that never finishes
        assert client.post("/v1/admin/models/tiny/reload").status_code == 200
        assert not is_closed(old)
    assert is_closed(old)


def test_epochs_wait_only_for_requests_begun_before() -> None:
    async def scenario() -> list[str]:
        epochs, events = RequestEpochs(), []
        before = epochs.enter()

        async def swap() -> None:
            await epochs.drain()
            events.append("drained")

        task = asyncio.create_task(swap())
        await asyncio.sleep(0)
        after = epochs.enter()  # begun after the swap: not waited for
        await asyncio.sleep(0.01)
        events.append("before leaves")
        epochs.leave(before)
        await asyncio.wait_for(task, 1)
        epochs.leave(after)
        await asyncio.wait_for(epochs.drain(), 1)  # nothing in flight: returns at once
        return events

    assert asyncio.run(scenario()) == ["before leaves", "drained"]


def test_reloaded_model_forecasts_like_a_fresh_start(admin: TestClient, models_dir: Path) -> None:
    body = {"series": list(np.sin(np.arange(20) / 3.0)), "uncertainty": {"samples": 8, "seed": 1}}
    before = admin.post("/v1/models/tiny/forecast", json=body).json()["forecasts"]

    assert admin.post("/v1/admin/models/tiny/reload").status_code == 200
    after = admin.post("/v1/models/tiny/forecast", json=body).json()["forecasts"]

    assert after == before


def test_python_m_service_keeps_the_reload_log_lines() -> None:
    # uvicorn configures only its own loggers; INFO lines of `service.*` need their own entry.
    config = service.__main__.log_config("info")

    assert config["loggers"]["service"] == {"handlers": ["default"], "level": "INFO"}
    assert "service" not in LOGGING_CONFIG["loggers"]  # uvicorn's dict is copied, not changed
