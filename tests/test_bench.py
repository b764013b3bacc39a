"""`make bench`'s report: the verdicts take the side-by-side medians when that phase ran."""

from typing import Any

from bench.run import ANCHOR, CONSTANT, SERVICE_OFF, SERVICE_ON, round_order, table, verdicts


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
