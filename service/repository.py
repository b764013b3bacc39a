"""The model repository: `models/<name>/forecaster.json` + `models/<name>/1/model.onnx`.

The contract is `docs/model-repository.md`. Every folder is loaded on its own; a broken one is
logged and kept with the reason, so `GET /v1/models` can report it while the others serve.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.errors import ForecastError, ModelLoadError, ModelNotFoundError, ModelNotReadyError
from service.runtime import OnnxModel, create_session
from service.settings import Settings

logger = logging.getLogger(__name__)

SPEC_FILE = "forecaster.json"


class _Spec(BaseModel):
    # Unknown keys are accepted so that training can add fields without breaking the service.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Scaling(_Spec):
    method: Literal["standard", "none"]
    mean: list[float] = []
    scale: list[float] = []


class MaskSpec(_Spec):
    name: str
    size: int = Field(ge=1)


class McDropout(_Spec):
    method: Literal["mask_inputs"] = "mask_inputs"
    rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    masks: list[MaskSpec] = []


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


class Calibration(_Spec):
    """Spread factors per horizon step for MC-dropout intervals, fitted at export on held-out data:
    paths = mean + factor * (paths - mean). Steps beyond the list reuse its last factor."""

    method: Literal["spread_factor"]
    factors: list[Annotated[float, Field(gt=0.0)]] = Field(min_length=1)


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


@dataclass
class Model:
    """One repository folder: its spec and session when it loaded, else the reason it did not."""

    name: str
    path: Path
    spec: ForecasterSpec | None = None
    onnx: OnnxModel | None = None
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.onnx is not None

    @property
    def device(self) -> str | None:
        return self.onnx.device if self.onnx is not None else None


class Repository:
    """The loaded models by name, in folder order."""

    def __init__(self, models: list[Model]) -> None:
        self.models = {m.name: m for m in models}

    @property
    def ready(self) -> bool:
        return any(m.ready for m in self.models.values())

    def close(self) -> None:
        """Stop the models' batching threads (the lifespan calls this at shutdown)."""
        for model in self.models.values():
            if model.onnx is not None:
                model.onnx.close()

    def get(self, name: str) -> Model:
        try:
            return self.models[name]
        except KeyError:
            raise ModelNotFoundError(
                f"model {name!r} not found; available: {sorted(self.models)}"
            ) from None

    def get_ready(self, name: str) -> tuple[ForecasterSpec, OnnxModel]:
        """The spec and session of a model that can serve, or a 404/503 error."""
        model = self.get(name)
        if model.spec is None or model.onnx is None:
            raise ModelNotReadyError(f"model {name!r} is not available: {model.reason}")
        return model.spec, model.onnx


def load_repository(settings: Settings) -> Repository:
    """Load every folder under `settings.models_dir`; never raises for a broken folder."""
    root = settings.models_dir
    if not root.is_dir():
        logger.warning("models directory %s does not exist: serving no models", root)
        return Repository([])
    models = [load_model(folder, settings) for folder in sorted(root.iterdir()) if folder.is_dir()]
    for m in models:
        if m.ready:
            logger.info("model %s ready on %s", m.name, m.device)
        else:
            logger.error("model %s unavailable: %s", m.name, m.reason)
    return Repository(models)


def load_model(folder: Path, settings: Settings) -> Model:
    model = Model(name=folder.name, path=folder)
    try:
        model.spec = read_spec(folder / SPEC_FILE)
        model.onnx = _open_session(folder, model.spec, settings)
    except ForecastError as exc:
        model.reason = exc.message
    return model


def read_spec(path: Path) -> ForecasterSpec:
    try:
        return ForecasterSpec.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ModelLoadError(f"{path.name} is missing") from None
    except ValidationError as exc:
        raise ModelLoadError(f"{path.name} is invalid: {_summary(exc)}") from None


def _open_session(folder: Path, spec: ForecasterSpec, settings: Settings) -> OnnxModel:
    path = folder / spec.onnx.file
    if not path.is_file():
        raise ModelLoadError(f"{spec.onnx.file} is missing")
    session = create_session(path, settings.device, settings.intra_op_threads)
    onnx = OnnxModel(session, output=spec.onnx.output.name, name=folder.name)
    _check_graph(onnx, spec)
    if settings.batching:
        onnx.enable_batching(
            settings.batch_max_rows, settings.batch_max_wait_ms / 1e3, settings.batch_threads
        )
    return onnx


def _check_graph(onnx: OnnxModel, spec: ForecasterSpec) -> None:
    """Hold the graph to the contract with one call on a zero window, before any request does."""
    expected = {"x"} | {m.name for m in spec.masks}
    if onnx.input_names != expected:
        raise ModelLoadError(
            f"graph inputs {sorted(onnx.input_names)} do not match "
            f"forecaster.json {sorted(expected)}"
        )
    x = np.zeros((1, spec.input_length, spec.n_features), dtype=np.float32)
    masks = {m.name: np.ones((1, m.size), dtype=np.float32) for m in spec.masks}
    try:
        y = onnx.run(x, masks)
    except Exception as exc:  # any ORT failure here means the folder cannot serve
        raise ModelLoadError(f"test inference failed: {exc}") from exc
    shape = (1, spec.input_length, spec.horizon) if spec.output == "sequence" else (1, spec.horizon)
    if y.shape != shape:
        raise ModelLoadError(
            f"output {spec.onnx.output.name!r} has shape {list(y.shape)} on a "
            f"[1, {spec.input_length}, {spec.n_features}] window; expected {list(shape)} "
            f"for output={spec.output!r}, horizon={spec.horizon}"
        )


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:3]
    )
