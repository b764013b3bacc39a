"""forecaster.json: what the exporter writes, the service reads, through one set of models."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forecaster_format import (
    MAP_FIELDS,
    SPEC_FILE,
    Calibration,
    ForecasterSpec,
    SpecError,
    parse_spec,
    validate_spec,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "models").glob(f"*/{SPEC_FILE}"))


def exported_spec() -> dict[str, Any]:
    """A spec shaped as training.export.export writes it (trimmed lists), with the keys the
    exporter added after the shipped models: calibration.block and .served_fit_windows,
    metrics.baselines with the gate, training."""
    return {
        "schema_version": 1,
        "name": "lstm",
        "version": 1,
        "architecture": "lstm",
        "description": "lstm seq2seq forecaster, book's synthetic series",
        "input_length": 50,
        "min_length": 8,
        "horizon": 3,
        "output": "vector",
        "features": ["value"],
        "target": 0,
        "frequency": None,
        "scaling": {"method": "standard", "mean": [0.25], "scale": [0.5]},
        "onnx": {
            "file": "1/model.onnx",
            "opset": 17,
            "input": {"name": "x", "dtype": "float32", "shape": [None, None, 1]},
            "output": {"name": "y", "dtype": "float32", "shape": [None, 3]},
            "mc_dropout": {
                "method": "mask_inputs",
                "rate": 0.1,
                "masks": [{"name": "mc_mask_0", "size": 12}, {"name": "mc_mask_1", "size": 12}],
                "repeat_rows": True,
            },
        },
        "metrics": {
            "dataset": "synthetic",
            "split": "validation",
            "windows": 300,
            "scaled_units": True,
            "model": {"mse": 0.01, "mae": 0.08, "mse_per_step": [0.01, 0.01, 0.02]},
            "checks": {"parity_max_abs_diff": 1e-6, "mc_dropout": True},
            "baselines": {
                "validation": {"mae": {"model": 0.08, "naive": 0.2}},
                "gate": {"passed": True, "split": "test", "message": "model beats naive"},
            },
        },
        "calibration": {
            "method": "conformal",
            "split": "interleaved",
            "block": 7,
            "coverage_levels": [0.5, 0.8, 0.95],
            "fit_windows": 42,
            "check_windows": 40,
            "coverage_raw": {"0.8": [0.6, 0.55, 0.5]},
            "coverage_calibrated": {"0.8": [0.8, 0.79, 0.81]},
            "check_halves": {"fit_windows": 41, "check_windows": 41},
            "levels": [0.5, 0.8, 0.95],
            "scores": [[0.9, 1.7, 2.6], [1.0, 1.8, 2.9], [1.1, 2.0, 3.1]],
            "served_fit_windows": 82,
        },
        "training": {"seed": 42, "epochs": 2, "task": {"kind": "seq2seq"}, "notes": []},
        "provenance": {
            "trained_at": "2025-01-01T00:00:00+00:00",
            "tensorflow": "2.21.0",
            "model_sha256": "0" * 64,
            "command": "python -m training train --model lstm",
        },
    }


def test_the_repository_ships_models() -> None:
    assert len(SHIPPED) >= 5, SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_forecaster_json_validates(path: Path) -> None:
    spec = parse_spec(path.read_bytes())

    assert spec.name == path.parent.name
    assert (path.parent / spec.onnx.file).is_file()
    # The validated spec holds the file: every key, also those the models do not declare.
    dumped = spec.model_dump(mode="json", exclude_unset=True)
    assert dumped == json.loads(path.read_text())


def test_an_exported_spec_validates_and_round_trips() -> None:
    written = json.loads(json.dumps(exported_spec(), indent=2))  # as the exporter writes it

    spec = validate_spec(written)

    assert spec.calibration is not None
    assert spec.calibration.block == 7
    assert spec.calibration.served_fit_windows == 82
    assert spec.metrics["baselines"]["gate"]["passed"] is True
    assert spec.training["seed"] == 42
    assert [m.size for m in spec.masks] == [12, 12]
    assert spec.model_dump(mode="json", exclude_unset=True) == written
    text = spec.model_dump_json(exclude_unset=True)
    assert parse_spec(text) == spec
    assert json.loads(text) == written


def test_the_calibration_shows_only_the_map() -> None:
    calibration = validate_spec(exported_spec()).calibration
    assert calibration is not None
    shown = calibration.map_fields()
    assert list(shown) == list(MAP_FIELDS)
    assert shown["levels"] == [0.5, 0.8, 0.95]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.update(min_length=60), "min_length=60 > input_length=50"),
        (lambda s: s["scaling"].update(scale=[0.0]), "scaling.scale must be > 0"),
        (lambda s: s["calibration"].update(block=0), "calibration.block"),
        (lambda s: s["calibration"].update(served_fit_windows="all"), "served_fit_windows"),
        (lambda s: s["calibration"].update(scores=[[2.0, 1.0, 3.0]]), "non-decreasing"),
        (lambda s: s["onnx"]["mc_dropout"].update(rate=1.0), "onnx.mc_dropout.rate"),
        (lambda s: s.pop("horizon"), "horizon: Field required"),
    ],
)
def test_an_invalid_spec_names_its_field(change: Any, field: str) -> None:
    spec = copy.deepcopy(exported_spec())
    change(spec)

    with pytest.raises(SpecError, match=r"forecaster\.json is invalid: ") as info:
        validate_spec(spec)
    assert field in info.value.reason
    with pytest.raises(SpecError):
        parse_spec(json.dumps(spec))


def test_bad_json_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="Invalid JSON"):
        parse_spec(b"{not json")


def test_a_spread_factor_calibration() -> None:
    calibration = Calibration(method="spread_factor", factors=[1.5, 2.0])
    assert calibration.map_fields() == {
        "method": "spread_factor",
        "factors": [1.5, 2.0],
        "levels": [],
        "scores": [],
    }
    with pytest.raises(ValueError, match="at least one factor"):
        Calibration(method="spread_factor")


def test_the_format_and_the_service_maths_import_neither_half() -> None:
    """The format: numpy and pydantic only. service.forecasting: no ONNX Runtime either."""
    code = (
        "import sys, forecaster_format, service.forecasting; "
        "print(sorted(m for m in ('onnxruntime', 'tensorflow', 'keras', 'fastapi', 'onnx') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    assert ForecasterSpec.__module__ == "forecaster_format.spec"
