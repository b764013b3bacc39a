"""`/metrics`: what it counts, by which labels, and what it leaves out."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import TestClient

SERIES = [0.1, 0.3, 0.5, 0.4, 0.2, 0.0, -0.2, -0.3, -0.1, 0.1]
FORECAST = "/v1/models/{name}/forecast"


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `/metrics` by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_forecast_is_timed_by_route_template_and_model(client: TestClient) -> None:
    labels = {"method": "POST", "route": FORECAST, "model": "tiny", "status": "200"}
    before = scrape(client)

    for _ in range(3):
        assert client.post("/v1/models/tiny/forecast", json={"series": SERIES}).status_code == 200

    after = scrape(client)
    count = "forecast_request_duration_seconds_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 3
    assert value(after, "forecast_request_duration_seconds_sum", **labels) > value(
        before, "forecast_request_duration_seconds_sum", **labels
    )


def test_ort_runs_batch_rows_and_mc_samples_are_recorded(client: TestClient) -> None:
    before = scrape(client)
    body = {"batch": [SERIES, SERIES], "uncertainty": {"samples": 20, "seed": 1}}

    assert client.post("/v1/models/tiny/forecast", json=body).status_code == 200

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("forecast_ort_run_duration_seconds_count", model="tiny") == 1
    # two series of the same length x 20 samples ride in one call of 40 rows
    assert delta("forecast_ort_batch_rows_sum", model="tiny") == 40
    assert delta("forecast_mc_samples_sum", model="tiny") == 20
    assert delta("forecast_mc_samples_count", model="tiny") == 1


def test_errors_are_counted_by_type(client: TestClient) -> None:
    before = scrape(client)

    client.post("/v1/models/tiny/forecast", json={"series": [1.0]})  # shorter than min_length
    client.post("/v1/models/nope/forecast", json={"series": SERIES})
    client.post(
        "/v1/models/tiny/forecast",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )

    after = scrape(client)
    for type in ("invalid_series", "model_not_found", "malformed_json"):
        name = "forecast_errors_total"
        assert value(after, name, type=type) - value(before, name, type=type) == 1, type


def test_unknown_models_and_paths_do_not_become_labels(client: TestClient) -> None:
    client.post("/v1/models/some-client-string/forecast", json={"series": SERIES})
    client.get("/no/such/path")

    samples = scrape(client)

    label_values = {v for _, labels in samples for _, v in labels}
    assert "some-client-string" not in label_values
    assert "/no/such/path" not in label_values
    assert (
        value(
            samples,
            "forecast_request_duration_seconds_count",
            method="GET",
            route="<unmatched>",
            model="",
            status="404",
        )
        >= 1
    )


def test_health_and_metrics_are_not_timed(client: TestClient) -> None:
    client.get("/health/live")
    client.get("/health/ready")

    samples = scrape(client)

    routes = {
        dict(labels).get("route")
        for name, labels in samples
        if name.startswith("forecast_request_duration_seconds")
    }
    assert not {"/health/live", "/health/ready", "/metrics"} & routes


def test_metrics_sum_over_processes_in_multiprocess_mode(tmp_path: Path, models_dir: Path) -> None:
    """Two processes that forecast write to PROMETHEUS_MULTIPROC_DIR; a third's /metrics sums them.

    prometheus-client picks its mode at import, so each process is a fresh interpreter.
    """
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    script = textwrap.dedent(
        f"""
        import sys, warnings
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
        from service import Settings, create_app
        settings = Settings(models_dir={str(models_dir)!r}, device="cpu")
        with TestClient(create_app(settings)) as client:
            if sys.argv[1] == "forecast":
                r = client.post("/v1/models/tiny/forecast", json={{"series": {SERIES!r}}})
                assert r.status_code == 200, r.text
            else:
                print(client.get("/metrics").text)
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script, "forecast"], env=env, check=True)
    scraped = subprocess.run(
        [sys.executable, "-c", script, "scrape"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    counts = [
        s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "forecast_request_duration_seconds_count" and s.labels.get("model") == "tiny"
    ]
    assert counts == [2.0]


def test_client_chosen_model_names_never_become_labels(client: TestClient) -> None:
    """A bad body for an unknown model fails validation (422) before the model lookup: the name
    the client sent must not become a label value (unbounded cardinality)."""
    for name in ("no-such-model-1", "no-such-model-2"):
        assert client.post(f"/v1/models/{name}/forecast", json={"series": "x"}).status_code == 422
        assert (
            client.post(f"/v1/models/{name}/forecast", json={"series": SERIES}).status_code == 404
        )
    assert client.post("/v1/models/tiny/forecast", json={"series": "x"}).status_code == 422
    labels = {s[1] for s in scrape(client) if s[0] == "forecast_request_duration_seconds_count"}
    models = {dict(label).get("model") for label in labels}
    assert not any(m and m.startswith("no-such-model") for m in models)
    assert "tiny" in models  # a real model's 422 keeps its label
