"""The model repository: `models/<name>/forecaster.json` + `models/<name>/1/model.onnx`.

The contract is `docs/model-repository.md`. Every folder is loaded on its own; a broken one is
logged and kept with the reason, so `GET /v1/models` can report it while the others serve.

What is read, and nothing else: `forecaster.json`, parsed by the format's pydantic models
(`forecaster_format`: data, never code), and the ONNX file it names, parsed by ONNX Runtime (no custom-op libraries are registered). No pickle, no
Python module, no other file of a folder is ever opened. Every path is resolved first and must stay
inside the models directory, so a symlink or an `onnx.file` of `../..` cannot reach elsewhere; only
folders directly inside it whose names match `MODEL_NAME` are served.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forecaster_format import SPEC_FILE, ForecasterSpec, SpecError, parse_spec
from service.errors import (
    ForecastError,
    InvalidModelNameError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
)
from service.runtime import OnnxModel, create_session
from service.settings import Settings

logger = logging.getLogger(__name__)

# A model's name is its folder's name: one path component, no `..`, safe in a URL and a metric label.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, no '..'"

# What a folder's files looked like when it was read: (path, size, mtime_ns) of each file.
Fingerprint = tuple[tuple[str, int, int], ...]


def is_model_name(name: str) -> bool:
    return MODEL_NAME.fullmatch(name) is not None and ".." not in name


def validate_model_name(name: str) -> str:
    """`name` if the repository could serve a folder of that name, else a 422 naming the field."""
    if not is_model_name(name):
        raise InvalidModelNameError(
            f"name: {name[:80]!r} is not a model name ({NAME_RULE})", param="name"
        )
    return name


@dataclass
class Model:
    """One repository folder: its spec and session when it loaded, else the reason it did not."""

    name: str
    path: Path
    spec: ForecasterSpec | None = None
    onnx: OnnxModel | None = None
    reason: str | None = None
    # The folder's files as they were just before loading: a poll reloads when they change.
    fingerprint: Fingerprint = field(default=(), repr=False)

    @property
    def ready(self) -> bool:
        return self.onnx is not None

    @property
    def device(self) -> str | None:
        return self.onnx.device if self.onnx is not None else None


class Repository:
    """The loaded models by name, in folder order.

    `ready` follows `strict` (FORECAST_STRICT_READINESS): strict, as Triton, needs at least one model
    and every model loaded; otherwise one loaded model is enough. A reload replaces one entry of
    `models` in one assignment (`service.lifecycle`), so a reader sees the old model or the new one.
    """

    def __init__(self, models: list[Model], strict: bool = True) -> None:
        self.models = {m.name: m for m in models}
        self.strict = strict

    @property
    def ready(self) -> bool:
        loaded = [m.ready for m in self.models.values()]
        return bool(loaded) and (all(loaded) if self.strict else any(loaded))

    def close(self) -> None:
        """Stop the models' batching threads (the lifespan calls this at shutdown)."""
        for model in self.models.values():
            if model.onnx is not None:
                model.onnx.close()

    def get(self, name: str) -> Model:
        try:
            return self.models[name]
        except KeyError:
            if not is_model_name(name):  # no such folder is ever served: say what a name is
                raise ModelNotFoundError(
                    f"model {name[:80]!r} not found: a model name has {NAME_RULE}"
                ) from None
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
        return Repository([], strict=settings.strict_readiness)
    names = model_folders(root)
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name not in names:
            logger.warning("skipping folder %s: not a model name (%s)", entry, NAME_RULE)
    models = [load_model(root / name, settings) for name in names]
    for m in models:
        if m.ready:
            logger.info("model %s ready on %s", m.name, m.device)
            if m.spec is not None and m.spec.masks and m.spec.calibration is None:
                logger.warning(
                    "model %s has no interval calibration: its MC-dropout intervals are raw "
                    "(answers say calibrated: false) and usually too narrow",
                    m.name,
                )
        else:
            logger.error("model %s unavailable: %s", m.name, m.reason)
    return Repository(models, strict=settings.strict_readiness)


def model_folders(root: Path) -> list[str]:
    """The names of the folders directly inside `root` that can be models, sorted.

    Anything else there (files, `.git`, `__pycache__`, a name no URL could carry) is not a model.
    """
    return [e.name for e in sorted(root.iterdir()) if e.is_dir() and is_model_name(e.name)]


def load_model(folder: Path, settings: Settings) -> Model:
    """Read one folder into a complete `Model`: spec, session, test inference; or the reason not."""
    model = Model(name=folder.name, path=folder, fingerprint=fingerprint(folder))
    try:
        root = settings.models_dir.resolve()
        validate_model_name(folder.name)
        _inside(folder, root, "the model folder")
        _inside(folder / SPEC_FILE, root, SPEC_FILE)
        model.spec = read_spec(folder / SPEC_FILE)
        model.onnx = _open_session(folder, model.spec, settings)
    except ForecastError as exc:
        # ORT quotes the file's absolute path: the reason is public (GET /v1/models), the path not.
        model.reason = exc.message
        for prefix in {str(settings.models_dir.resolve()), str(settings.models_dir)}:
            model.reason = model.reason.replace(prefix + os.sep, "")
    return model


def _inside(path: Path, root: Path, what: str) -> None:
    """Refuse `path` unless, resolved (symlinks followed), it stays inside `root`."""
    if not path.resolve().is_relative_to(root):
        raise ModelLoadError(f"{what} resolves outside the models directory; refused")


def fingerprint(folder: Path) -> Fingerprint:
    """(path, size, mtime_ns) of every file in `folder`, sorted: changes when any file does."""
    files = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            try:
                stat = path.stat()
            except OSError:  # vanished while walking, or a dangling symlink
                continue
            files.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


def read_spec(path: Path) -> ForecasterSpec:
    """The spec in a forecaster.json, read through the format (forecaster_format)."""
    try:
        return parse_spec(path.read_bytes())
    except FileNotFoundError:
        raise ModelLoadError(f"{path.name} is missing") from None
    except SpecError as exc:
        raise ModelLoadError(f"{path.name} is invalid: {exc.reason}") from None


def _open_session(folder: Path, spec: ForecasterSpec, settings: Settings) -> OnnxModel:
    path = folder / spec.onnx.file
    _inside(path, settings.models_dir.resolve(), f"onnx.file {spec.onnx.file!r}")
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
    # With repeat_rows, two paths for each of two windows: one output row per mask row. (One
    # window would not do: ORT broadcasts [1, ...] against [2, ...] in any graph.)
    repeat = bool(spec.masks) and spec.onnx.mc_dropout.repeat_rows
    x = np.zeros((2 if repeat else 1, spec.input_length, spec.n_features), dtype=np.float32)
    rows = 4 if repeat else 1
    masks = {m.name: np.ones((rows, m.size), dtype=np.float32) for m in spec.masks}
    try:
        y = onnx.run(x, masks)
    except Exception as exc:  # any ORT failure here means the folder cannot serve
        hint = " (forecaster.json says repeat_rows=true)" if repeat else ""
        raise ModelLoadError(f"test inference failed{hint}: {exc}") from exc
    shape = (
        (rows, spec.input_length, spec.horizon)
        if spec.output == "sequence"
        else (rows, spec.horizon)
    )
    if y.shape != shape:
        raise ModelLoadError(
            f"output {spec.onnx.output.name!r} has shape {list(y.shape)} on "
            f"{list(x.shape)} windows and {rows} mask rows; expected {list(shape)} "
            f"for output={spec.output!r}, horizon={spec.horizon}"
            + (", repeat_rows=true" if repeat else "")
        )
