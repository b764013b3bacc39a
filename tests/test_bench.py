"""`make bench`'s report: the verdicts take the side-by-side medians when that phase ran."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.ort_ceiling import mc_feeds, measure
from bench.run import (
    ANCHOR,
    CEILING,
    CONSTANT,
    MC_KIND,
    SERVICE_OFF,
    SERVICE_ON,
    kinds,
    loop_cpu_ratio,
    round_order,
    table,
    verdicts,
)

MODELS = Path(__file__).resolve().parents[1] / "models"


def cell(rps: float, errors: int = 0) -> dict[str, Any]:
    return {
        "rps": rps,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "errors": errors,
        "cpu_ms_per_request": 0.1,
    }


def report(side: dict[str, Any]) -> dict[str, Any]:
    return {
        "duration_s": 3,
        "load_generator": "wrk",
        "uvicorn": ["--workers", "1"],
        "machine": {"cpus": 2},
        "concurrency": [1, 64],
        "models": ["lstm"],
        "results": {
            "lstm": {
                "next-step": {
                    "64": {
                        SERVICE_ON: cell(6000),
                        SERVICE_OFF: cell(3000),
                        ANCHOR: cell(2000),
                        CONSTANT: cell(12000),  # sequential: 0.50x
                    }
                }
            }
        },
        "side_by_side": side,
    }


def side(
    rounds: list[tuple[float, float, float]],
    errors: int = 0,
    model: str = "lstm",
    off: list[float] | None = None,
) -> dict[str, Any]:
    """Side-by-side rounds of (service, FastAPI+ORT, constant) req/s, and batching off's if given."""
    runs = [{SERVICE_ON: cell(s, errors), ANCHOR: cell(a), CONSTANT: cell(k)} for s, a, k in rounds]
    ratios = {
        ANCHOR: [s / a for s, a, _ in rounds],
        CONSTANT: [s / k for s, _, k in rounds],
    }
    if off is not None:
        for run, rps in zip(runs, off, strict=True):
            run[SERVICE_OFF] = cell(rps)
        ratios[SERVICE_OFF] = [s / o for (s, _, _), o in zip(rounds, off, strict=True)]
    return {
        model: {
            "concurrency": 64,
            "rounds": runs,
            "ratios": ratios,
            "median": {n: sorted(v)[len(v) // 2] for n, v in ratios.items()},
        }
    }


def test_without_the_side_by_side_phase_the_sequential_cells_decide() -> None:
    lines = verdicts(report({}))

    assert (
        "- lstm next-step c=64: service / constant anchor: 0.50x (target >= 0.75x) NOT met" in lines
    )


def test_the_side_by_side_median_decides_and_its_rounds_are_in_the_table() -> None:
    # per-round constant ratios 0.70, 0.80, 0.90: the median 0.80 is met; the sequential 0.50 is not
    r = report(side([(7000, 2000, 10000), (8000, 2000, 10000), (9000, 2000, 10000)]))

    lines = verdicts(r)
    text = table(r)

    assert (
        "- lstm next-step c=64: service / constant anchor (side by side, median): 0.80x "
        "(target >= 0.75x) met"
    ) in lines
    assert not any("constant anchor: 0.50x" in line for line in lines)
    assert "| lstm | 64 | 2 | 8000 | — | 2000 | 10000 | — | 4.00x | 0.80x |" in text
    assert "| lstm | 64 | median | | | | | — | 4.00x | 0.80x |" in text


def test_batching_on_off_is_taken_side_by_side_when_that_phase_ran() -> None:
    # sequential gru cells: 4000 on / 2500 off = 1.60x; side by side 8000 over 3000/4000/5000
    r = report(side([(8000, 2000, 10000)] * 3, model="gru", off=[3000, 4000, 5000]))
    r["models"] = ["lstm", "gru"]
    r["results"]["gru"] = {"next-step": {"64": {SERVICE_ON: cell(4000), SERVICE_OFF: cell(2500)}}}

    lines = verdicts(r)
    text = table(r)

    assert (
        "- gru next-step c=64: batching on / off (side by side, median): 2.00x (target >= 2x) met"
        in lines
    )
    assert not any("batching on / off: 1.60x" in line for line in lines)
    assert "| gru | 64 | 3 | 8000 | 5000 | 2000 | 10000 | 1.60x | 4.00x | 0.80x |" in text
    assert "| gru | 64 | median | | | | | 2.00x | 4.00x | 0.80x |" in text


def test_without_the_side_by_side_phase_batching_on_off_is_the_sequential_ratio() -> None:
    r = report({})
    r["models"] = ["lstm", "gru"]
    r["results"]["gru"] = {"next-step": {"64": {SERVICE_ON: cell(4000), SERVICE_OFF: cell(2500)}}}

    assert "- gru next-step c=64: batching on / off: 1.60x (target >= 2x) NOT met" in verdicts(r)


def test_the_event_loops_cpu_per_request_is_shown_beside_the_side_by_side_rounds() -> None:
    r = report(side([(7000, 2000, 10000), (8000, 2000, 10000)]))
    rounds = r["side_by_side"]["lstm"]["rounds"]
    for x, (loop, process, constant) in zip(
        rounds, [(180, 290, 150), (160, 260, 144)], strict=True
    ):
        x[SERVICE_ON].update(loop_us_per_request=loop, cpu_us_per_request=process)
        x[CONSTANT].update(loop_us_per_request=constant, cpu_us_per_request=constant + 1)
    r["side_by_side"]["lstm"]["loop_cpu_ratio"] = 0.87

    text, lines = table(r), verdicts(r)

    assert "| lstm | 1 | 180 | 290 | 151 | 0.83x |" in text
    assert "| lstm | 2 | 160 | 260 | 145 | 0.90x |" in text
    assert "| lstm | median | | | | 0.87x |" in text
    assert (
        "  - event loop CPU per request, constant anchor / service (same runs, median): 0.87x"
        in lines
    )


def test_the_loop_cpu_ratio_is_the_median_of_the_rounds_that_counted_cpu() -> None:
    def runs(service: float, constant: float) -> dict[str, Any]:
        return {
            SERVICE_ON: {"loop_us_per_request": service},
            CONSTANT: {"loop_us_per_request": constant},
        }

    rounds = [runs(200, 160), runs(200, 180), runs(0, 150), runs(200, 140), runs(math.nan, 1)]

    assert loop_cpu_ratio(rounds) == pytest.approx(0.8)  # 0.8, 0.9, 0.7; no CPU: skipped
    assert loop_cpu_ratio([runs(0, 150)]) is None


def test_reports_without_cpu_counts_have_no_cpu_table() -> None:
    text = table(report(side([(7000, 2000, 10000)])))

    assert "CPU per request in the same runs" not in text


def test_errors_in_the_side_by_side_runs_count() -> None:
    lines = verdicts(report(side([(7000, 2000, 10000)], errors=3)))

    assert "- errors in every run: 3 (target 0) NOT met" in lines


def test_rounds_put_the_service_and_the_constant_anchor_back_to_back_in_alternating_order() -> None:
    names = [SERVICE_ON, SERVICE_OFF, ANCHOR, CONSTANT]

    even, odd = round_order(names, 0), round_order(names, 1)

    assert sorted(even) == sorted(names)
    assert even[:2] == [SERVICE_ON, CONSTANT]
    assert odd == even[::-1]
    assert odd[-2:] == [CONSTANT, SERVICE_ON]
    assert round_order(names, 2) == even
    assert round_order([SERVICE_ON, ANCHOR], 1) == [ANCHOR, SERVICE_ON]  # no constant anchor


def mc_side(rounds: list[tuple[float, float]], errors: int = 0) -> dict[str, Any]:
    """MC side-by-side rounds of (service, ORT alone) req/s."""
    runs = [
        {SERVICE_ON: cell(s, errors), CEILING: {"rps": o, "threads": 2, "median_call_ms": 6.0}}
        for s, o in rounds
    ]
    return {
        "model": "lstm",
        "kind": MC_KIND,
        "concurrency": 16,
        "rounds": runs,
        "median": {
            SERVICE_ON: sorted(s for s, _ in rounds)[len(rounds) // 2],
            CEILING: sorted(o for _, o in rounds)[len(rounds) // 2],
            "ratio": sorted(s / o for s, o in rounds)[len(rounds) // 2],
        },
    }


def test_the_mc_target_takes_the_side_by_side_median_and_shows_the_ort_ceiling() -> None:
    r = report({})
    r["results"]["lstm"][MC_KIND] = {"16": {SERVICE_ON: cell(150)}}  # sequential: would fail
    r["mc_side_by_side"] = mc_side([(240, 300), (310, 320), (320, 330)], errors=1)

    lines = verdicts(r)
    text = table(r)

    assert (
        f"- lstm {MC_KIND} c=16 (side by side, median): 310.00 req/s (target >= 300 req/s) met"
        in lines
    )
    assert not any("150.00 req/s" in line for line in lines)
    assert (
        f"  - {CEILING} on 2 threads in the same rounds: 320 req/s; the service at 0.97x of it"
        in lines
    )
    assert "| 1 | 240 | 300 | 6.00 | 0.80x |" in text
    assert "| median | 310 | 320 | | 0.97x |" in text
    assert "- errors in every run: 3 (target 0) NOT met" in lines


def test_without_the_mc_side_by_side_the_sequential_cell_decides() -> None:
    r = report({})
    r["results"]["lstm"][MC_KIND] = {"16": {SERVICE_ON: cell(250)}}

    assert f"- lstm {MC_KIND} c=16: 250.00 req/s (target >= 300 req/s) NOT met" in verdicts(r)


def test_the_ort_ceiling_feeds_one_mc_request_as_the_service_does() -> None:
    spec = json.loads((MODELS / "lstm" / "forecaster.json").read_text())
    series = kinds(spec["input_length"])[MC_KIND]["series"]

    feeds = mc_feeds(spec, series, samples=100)

    assert spec["onnx"]["mc_dropout"]["repeat_rows"]  # one window; the graph repeats it per path
    assert feeds["x"].shape == (1, spec["input_length"], 1)
    np.testing.assert_allclose(feeds["x"][0, :, 0], series[-spec["input_length"] :], rtol=1e-6)
    keep = 1 - spec["onnx"]["mc_dropout"]["rate"]
    for mask in spec["onnx"]["mc_dropout"]["masks"]:
        values = feeds[mask["name"]]
        assert values.shape == (100, mask["size"])
        assert values.dtype == np.float32
        assert set(np.unique(values)) == {np.float32(0), np.float32(1 / keep)}


def test_the_ort_ceiling_counts_calls_per_request_from_the_horizon() -> None:
    spec = json.loads((MODELS / "lstm" / "forecaster.json").read_text())
    series = kinds(spec["input_length"])[MC_KIND]["series"]

    result = measure(MODELS / "lstm", series, samples=4, horizon=25, threads=2, seconds=0.2)

    assert result["calls_per_request"] == 3  # 25 steps of a 10-step model
    assert result["calls_per_s"] > 0
    assert result["median_call_ms"] > 0
    assert result["rps"] == result["calls_per_s"] / 3


@pytest.mark.parametrize("name", ["lstm", "gru", "wavenet"])
def test_the_ort_anchor_answers_every_request_kind_on_every_bench_model(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The anchor reads its model at import; it must follow the shipped output (vector or sequence).
    import importlib

    from fastapi.testclient import TestClient

    import bench.anchors.ort_minimal as anchor

    monkeypatch.setenv("ANCHOR_MODEL_DIR", str(MODELS / name))
    anchor = importlib.reload(anchor)
    client = TestClient(anchor.app)
    for kind, body in kinds(anchor.T).items():
        response = client.post(f"/v1/models/{name}/forecast", json=body)
        assert response.status_code == 200, (kind, response.text)
        forecast = response.json()["forecasts"][0]
        assert len(forecast["mean"]) == body["horizon"]
        assert ("quantiles" in forecast) == ("uncertainty" in body)
