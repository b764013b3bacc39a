"""`forecaster.json`, schema version 1, as pydantic models (docs/model-repository.md).

The service reads every model folder through `parse_spec`; the exporter and `training optimize`
check what they write through `validate_spec`. Data only, never code. Keys the models do not
declare (the calibration's coverage records, whatever training adds next) are kept as extras,
so a newer file still loads and a written spec round-trips through the models unchanged.
"""

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SPEC_FILE = "forecaster.json"


class _Spec(BaseModel):
    # Unknown keys are accepted (and kept) so that training can add fields without breaking the
    # service; the service never reads them.
    model_config = ConfigDict(extra="allow", frozen=True)


class Scaling(_Spec):
    """`standard`: x_scaled = (x - mean) / scale per feature, the target inverted with its pair;
    `none`: identity."""

    method: Literal["standard", "none"]
    mean: list[float] = []
    scale: list[float] = []

    @cached_property
    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """`mean` and `scale` as read-only float64 arrays, built once (every request scales)."""
        mean = np.asarray(self.mean, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        mean.flags.writeable = scale.flags.writeable = False
        return mean, scale


class MaskSpec(_Spec):
    name: str
    size: int = Field(ge=1)


class McDropout(_Spec):
    method: Literal["mask_inputs"] = "mask_inputs"
    rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    masks: list[MaskSpec] = []
    # The graph takes one `x` row per series and P = B x S mask rows, and repeats each x row S
    # times before its first dropout site (docs/model-repository.md): MC paths share that prefix.
    repeat_rows: bool = False


class TensorSpec(_Spec):
    name: str
    dtype: str = "float32"
    shape: list[int | None] = []


class OnnxSpec(_Spec):
    file: str = "1/model.onnx"
    opset: int | None = None
    input: TensorSpec = TensorSpec(name="x")
    output: TensorSpec = TensorSpec(name="y")
    mc_dropout: McDropout = McDropout()


# The fields the calibration map reads (forecaster_format.calibration), in this order.
MAP_FIELDS = ("method", "factors", "levels", "scores")


class Calibration(_Spec):
    """How MC-dropout intervals are calibrated, fitted at export on held-out data.

    `spread_factor`: one factor per horizon step, paths = mean + factor * (paths - mean).
    `conformal`: per step, the quantiles `scores[step][i]` of |y - mean| / std at the central
    `levels[i]`; paths are mapped by rank so their central intervals are mean +- score * std.
    Steps beyond the lists reuse the last one (forecaster_format.calibration applies them).

    How it was measured is recorded beside: `block` (windows per block of the interleaved split),
    `served_fit_windows` (the served map was fitted on that many held-out windows; absent, on the
    fit part only), and as extras `split`, `fit_windows`, `check_windows`, `coverage_*`,
    `fit_period`, `check_period`, `check_<other split>`.
    """

    method: Literal["spread_factor", "conformal"]
    factors: list[Annotated[float, Field(gt=0.0)]] = []
    levels: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = []
    scores: list[list[Annotated[float, Field(ge=0.0)]]] = []
    block: int | None = Field(default=None, ge=1)
    served_fit_windows: int | None = Field(default=None, ge=1)

    @cached_property
    def tables(self) -> dict[tuple[int, int], NDArray[np.float64]]:
        """A cache for a reader that keeps `signed_scores` tables by (samples, steps), as the
        service does (service.forecasting.signed_scores); not part of the file."""
        return {}

    def map_fields(self) -> dict[str, Any]:
        """The fields the map reads (`MAP_FIELDS`), as `GET /v1/models` shows them."""
        return self.model_dump(include=set(MAP_FIELDS))

    @model_validator(mode="after")
    def _complete(self) -> "Calibration":
        if self.method == "spread_factor" and not self.factors:
            raise ValueError("spread_factor calibration needs at least one factor")
        if self.method == "conformal":
            if not self.levels or self.levels != sorted(set(self.levels)):
                raise ValueError("conformal calibration needs strictly increasing levels")
            if not self.scores:
                raise ValueError("conformal calibration needs a row of scores per step")
            for row in self.scores:
                if len(row) != len(self.levels) or row != sorted(row):
                    raise ValueError(
                        "each row of conformal scores needs one non-decreasing score per level"
                    )
        return self


class ForecasterSpec(_Spec):
    """`forecaster.json`, schema version 1."""

    schema_version: Literal[1]
    name: str
    version: int
    architecture: str
    description: str = ""
    input_length: int = Field(ge=1)
    min_length: int = Field(ge=1)
    horizon: int = Field(ge=1)
    output: Literal["sequence", "vector"]
    features: list[str] = Field(min_length=1)
    target: int = Field(default=0, ge=0)
    frequency: str | None = None
    scaling: Scaling
    onnx: OnnxSpec
    metrics: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    calibration: Calibration | None = None
    training: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> "ForecasterSpec":
        n = len(self.features)
        if self.min_length > self.input_length:
            raise ValueError(f"min_length={self.min_length} > input_length={self.input_length}")
        if self.target >= n:
            raise ValueError(f"target={self.target} is not an index of features ({n})")
        if self.scaling.method == "standard":
            if len(self.scaling.mean) != n or len(self.scaling.scale) != n:
                raise ValueError(f"scaling mean and scale need one value per feature ({n})")
            if any(s <= 0 for s in self.scaling.scale):
                raise ValueError("scaling.scale must be > 0")
        if self.onnx.input.name != "x":
            raise ValueError(f"onnx.input.name must be 'x', got {self.onnx.input.name!r}")
        return self

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def masks(self) -> list[MaskSpec]:
        return self.onnx.mc_dropout.masks


class SpecError(ValueError):
    """A forecaster.json that does not validate; `reason` names the first few fields at fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{SPEC_FILE} is invalid: {reason}")
        self.reason = reason


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """pydantic's errors in one line, `loc: msg; ...`, the first `limit` of them."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
        for e in exc.errors()[:limit]
    )


def parse_spec(data: str | bytes) -> ForecasterSpec:
    """The spec in a forecaster.json file's text, or SpecError (bad JSON included)."""
    try:
        return ForecasterSpec.model_validate_json(data)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc)) from None


def validate_spec(spec: Mapping[str, Any]) -> ForecasterSpec:
    """The spec a dict about to be written as forecaster.json holds, or SpecError."""
    try:
        return ForecasterSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc)) from None
