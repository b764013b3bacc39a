"""The model repository format: what `training/` writes and `service/` reads, in one place.

`models/<name>/forecaster.json` as pydantic models (`spec`), and the two formulas that both halves
must compute alike: the MC-dropout masks fed to the graph (`masks`) and the map that calibrates MC
paths (`calibration`). numpy and pydantic only: no TensorFlow, ONNX Runtime or FastAPI, so either
half imports it without the other's dependencies. The contract is docs/model-repository.md; its
tests are tests/contract/.
"""

from forecaster_format.calibration import conformal_map, signed_scores, spread_map
from forecaster_format.masks import draw_masks
from forecaster_format.spec import (
    MAP_FIELDS,
    SPEC_FILE,
    Calibration,
    ForecasterSpec,
    MaskSpec,
    McDropout,
    OnnxSpec,
    Scaling,
    SpecError,
    TensorSpec,
    describe_errors,
    parse_spec,
    validate_spec,
)

__all__ = [
    "MAP_FIELDS",
    "SPEC_FILE",
    "Calibration",
    "ForecasterSpec",
    "MaskSpec",
    "McDropout",
    "OnnxSpec",
    "Scaling",
    "SpecError",
    "TensorSpec",
    "conformal_map",
    "describe_errors",
    "draw_masks",
    "parse_spec",
    "signed_scores",
    "spread_map",
    "validate_spec",
]
