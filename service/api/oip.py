"""Open Inference Protocol v2 (REST), as Triton and KServe speak it: every model as its raw tensor model.

A model `m` takes `x` [B, T, F] FP32, the scaled window, and returns its raw network output `y`
([B, T, H] for a `sequence` model, [B, H] for a `vector` one). The MC-dropout mask inputs
`mc_mask_i` [B, U_i] FP32 are optional: a client that omits them gets all ones (dropout off), so any
OIP client can call a model with the series tensor alone. No scaling, no rollout: that is the native
API's and the KServe time-series API's job; here the same `runtime.infer` runs the graph as sent.

Bodies are parsed by hand: tritonclient sends no Content-Type header, and with binary tensors
(`Inference-Header-Content-Length`) the body is a JSON header followed by raw little-endian bytes.
Errors on these paths are `{"error": "<message>"}` (see `responses.error_response`).
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from numpy.typing import NDArray
from starlette.responses import Response

from forecaster_format import ForecasterSpec
from service import runtime
from service.api.dependencies import RepositoryDep, SettingsDep
from service.api.responses import OIP_PREFIX, OrjsonResponse
from service.errors import (
    InvalidRequestError,
    LimitExceededError,
    MalformedRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
)
from service.repository import Repository
from service.settings import Settings

router = APIRouter(prefix=OIP_PREFIX, tags=["open inference protocol v2"])

SERVER_NAME = "forecast-service"
PLATFORM = "onnxruntime_onnx"
FP32 = "FP32"
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]

Array32 = NDArray[np.float32]

# The JSON inference request as this server reads it (the protocol's, with FP32 tensors only);
# the binary extension sends the same JSON header followed by raw tensor bytes.
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": [FP32]},
        "parameters": {"type": "object"},
        "data": {"type": "array", "description": "the values, row-major, flat or nested"},
    },
}
INFERENCE_REQUEST: dict[str, Any] = {
    "title": "InferenceRequest",
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
INFERENCE_RESPONSE: dict[str, Any] = {
    "title": "InferenceResponse",
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {**_TENSOR, "required": ["name", "shape"]}},
    },
}
_REF = "#/components/schemas/"
INFER_BODY = {
    "required": True,
    "description": "JSON; or, with the binary tensor extension, a JSON header of "
    f"`{HEADER_LENGTH}` bytes followed by the raw little-endian tensors",
    "content": {"application/json": {"schema": {"$ref": _REF + "InferenceRequest"}}},
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the outputs: JSON, or with binary outputs a JSON header of "
        f"`{HEADER_LENGTH}` bytes followed by the raw tensors",
        "content": {
            "application/json": {"schema": {"$ref": _REF + "InferenceResponse"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
# Health and readiness answer with the status alone, as the protocol says: no body.
EMPTY: dict[str, Any] = {"response_class": Response}
LIVE: dict[int | str, dict[str, Any]] = {200: {"description": "live (empty body)"}}
READY: dict[int | str, dict[str, Any]] = {
    200: {"description": "ready (empty body)"},
    400: {"description": "not ready (empty body)"},
}


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    shape: list[int]  # -1 for a dynamic dimension
    datatype: str = FP32

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


def signature(spec: ForecasterSpec) -> tuple[list[TensorMetadata], list[TensorMetadata]]:
    """The graph's inputs and outputs as the protocol describes them, from `forecaster.json`."""
    inputs = [TensorMetadata("x", [-1, -1, spec.n_features])]
    inputs += [TensorMetadata(m.name, [-1, m.size]) for m in spec.masks]
    y = [-1, -1, spec.horizon] if spec.output == "sequence" else [-1, spec.horizon]
    return inputs, [TensorMetadata(spec.onnx.output.name, y)]


# --- server ----------------------------------------------------------------------------------------


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live", responses=LIVE, **EMPTY)
async def server_live() -> Response:
    return Response(status_code=200)


@router.get("/health/ready", responses=READY, **EMPTY)
async def server_ready(request: Request) -> Response:
    # The protocol: 200 means true, a 4xx means false, and the body is empty.
    repository: Repository | None = getattr(request.app.state, "repository", None)
    return Response(status_code=200 if repository is not None and repository.ready else 400)


# --- models ----------------------------------------------------------------------------------------


@router.get("/models/{name}")
async def model_metadata(name: str, repository: RepositoryDep) -> dict[str, Any]:
    return _metadata(repository, name, None)


@router.get("/models/{name}/versions/{version}")
async def model_version_metadata(
    name: str, version: str, repository: RepositoryDep
) -> dict[str, Any]:
    return _metadata(repository, name, version)


@router.get("/models/{name}/ready", responses=READY, **EMPTY)
async def model_ready(name: str, repository: RepositoryDep) -> Response:
    return _ready(repository, name, None)


@router.get("/models/{name}/versions/{version}/ready", responses=READY, **EMPTY)
async def model_version_ready(name: str, version: str, repository: RepositoryDep) -> Response:
    return _ready(repository, name, version)


@router.post(
    "/models/{name}/infer",
    responses=INFER_RESPONSES,
    response_class=Response,
    openapi_extra={"requestBody": INFER_BODY},
)
async def infer(
    name: str, request: Request, repository: RepositoryDep, settings: SettingsDep
) -> Response:
    return await _infer(name, None, request, repository, settings)


@router.post(
    "/models/{name}/versions/{version}/infer",
    responses=INFER_RESPONSES,
    response_class=Response,
    openapi_extra={"requestBody": INFER_BODY},
)
async def infer_version(
    name: str, version: str, request: Request, repository: RepositoryDep, settings: SettingsDep
) -> Response:
    return await _infer(name, version, request, repository, settings)


def _spec(repository: Repository, name: str, version: str | None) -> ForecasterSpec:
    model = repository.get(name)
    if model.spec is None:
        raise ModelNotReadyError(f"model {name!r} is not available: {model.reason}")
    _check_version(model.spec, version)
    return model.spec


def _check_version(spec: ForecasterSpec, version: str | None) -> None:
    if version is not None and version != str(spec.version):
        raise ModelNotFoundError(
            f"model {spec.name!r} has no version {version!r}; versions: [{str(spec.version)!r}]"
        )


def _metadata(repository: Repository, name: str, version: str | None) -> dict[str, Any]:
    spec = _spec(repository, name, version)
    inputs, outputs = signature(spec)
    return {
        "name": name,
        "versions": [str(spec.version)],
        "platform": PLATFORM,
        "inputs": [t.to_json() for t in inputs],
        "outputs": [t.to_json() for t in outputs],
    }


def _ready(repository: Repository, name: str, version: str | None) -> Response:
    model = repository.get(name)
    if model.spec is not None:
        _check_version(model.spec, version)
    return Response(status_code=200 if model.ready else 400)


# --- inference -------------------------------------------------------------------------------------


async def _infer(
    name: str, version: str | None, request: Request, repository: Repository, settings: Settings
) -> Response:
    spec, model = repository.get_ready(name)
    _check_version(spec, version)
    header, binary = split_body(await request.body(), request.headers.get(HEADER_LENGTH))
    body = json_object(header, "inference request")
    tensors = decode_inputs(body, binary)
    x, masks = feeds(spec, tensors, settings)
    requested = requested_outputs(spec, body)
    y = await runtime.infer(model, x, masks)
    return encode_response(
        name, str(spec.version), body.get("id"), {spec.onnx.output.name: y}, requested
    )


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data): the binary extension puts the header's length in a header."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise MalformedRequestError(
            f"{HEADER_LENGTH}={header_length!r} is not a length within the {len(body)}-byte body"
        )
    n = int(header_length)
    return body[:n], body[n:]


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """`raw` parsed as a JSON object, else a 400 naming `what` (the protocol's bodies are objects)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRequestError(f"{what} must be a JSON object")
    return body


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequestError(f"{where}.{key} must be a {kind.__name__}")
    return value


def decode_inputs(body: dict[str, Any], binary: bytes) -> dict[str, Array32]:
    """Every input tensor by name, from JSON `data` or from its slice of the binary data."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequestError("inputs must be a non-empty list of tensors")
    tensors: dict[str, Array32] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise InvalidRequestError(f"{where} must be an object")
        name = _field(tensor, "name", str, where)
        shape = _field(tensor, "shape", list, where)
        datatype = _field(tensor, "datatype", str, where)
        if name in tensors:
            raise InvalidRequestError(f"{where}: input {name!r} is given twice")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise InvalidRequestError(f"{where}.shape must be a list of integers >= 0, got {shape}")
        if datatype != FP32:
            raise InvalidRequestError(
                f"input {name!r} has datatype {datatype!r}; expected {FP32!r}"
            )
        count = math.prod(shape)
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or size != 4 * count:
                raise InvalidRequestError(
                    f"input {name!r}: binary_data_size={size} but shape {shape} in {FP32} "
                    f"needs {4 * count} bytes"
                )
            if offset + size > len(binary):
                raise MalformedRequestError(
                    f"input {name!r}: binary data ends after {len(binary)} bytes, "
                    f"{offset + size} needed"
                )
            array = np.frombuffer(binary[offset : offset + size], dtype="<f4").reshape(shape)
            offset += size
        else:
            array = _from_json(name, tensor.get("data"), shape, count)
        tensors[name] = np.ascontiguousarray(array, dtype=np.float32)
    if offset != len(binary):
        raise MalformedRequestError(
            f"{len(binary) - offset} bytes of binary data belong to no input"
        )
    return tensors


def _from_json(name: str, data: Any, shape: list[int], count: int) -> Array32:
    if not isinstance(data, list):
        raise InvalidRequestError(f"input {name!r} has neither data nor binary_data_size")
    try:
        array = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        raise InvalidRequestError(f"input {name!r}: data must be numbers, flat or nested") from None
    if array.size != count:
        raise InvalidRequestError(
            f"input {name!r}: {array.size} values in data, shape {shape} needs {count}"
        )
    return array.reshape(shape)


def feeds(
    spec: ForecasterSpec, tensors: dict[str, Array32], settings: Settings
) -> tuple[Array32, dict[str, Array32]]:
    """Hold the tensors to the graph's signature; an omitted mask is all ones (dropout off)."""
    expected = ["x", *(m.name for m in spec.masks)]
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise InvalidRequestError(
            f"model {spec.name!r} has no input {unknown[0]!r}; inputs: {expected}"
        )
    if "x" not in tensors:
        raise InvalidRequestError(f"input 'x' [B, T, {spec.n_features}] is required")
    x = tensors["x"]
    if x.ndim != 3 or x.shape[2] != spec.n_features or 0 in x.shape:
        raise InvalidRequestError(
            f"input 'x' has shape {list(x.shape)}; model {spec.name!r} expects "
            f"[B, T, {spec.n_features}] with B, T >= 1"
        )
    batch, length = x.shape[0], x.shape[1]
    if batch > settings.max_paths:
        raise LimitExceededError(f"input 'x' has B={batch} rows; max_paths={settings.max_paths}")
    if length > settings.max_points:
        raise LimitExceededError(
            f"input 'x' has T={length} steps; max_points={settings.max_points}"
        )
    # A repeat_rows graph takes P = B x S mask rows (S MC paths per window); else P = B.
    sent = [tensors[m.name] for m in spec.masks if m.name in tensors]
    paths = batch
    if spec.onnx.mc_dropout.repeat_rows and sent and sent[0].ndim == 2:
        rows = sent[0].shape[0]
        if rows % batch == 0 and rows > 0:
            paths = rows
    if paths > settings.max_paths:
        raise LimitExceededError(f"the masks have {paths} rows; max_paths={settings.max_paths}")
    expected_rows = f"[{paths}, " if paths == batch else f"[{paths} (a multiple of B), "
    masks = {}
    for m in spec.masks:
        mask = tensors.get(m.name)
        if mask is None:
            mask = np.ones((paths, m.size), dtype=np.float32)
        elif mask.shape != (paths, m.size):
            raise InvalidRequestError(
                f"input {m.name!r} has shape {list(mask.shape)}; expected {expected_rows}"
                f"{m.size}] (B of 'x', the site's width)"
            )
        masks[m.name] = mask
    return x, masks


def requested_outputs(spec: ForecasterSpec, body: dict[str, Any]) -> list[tuple[str, bool]]:
    """(name, binary) per output to return: all of them unless the request lists some.

    A listed output's `parameters.binary_data` wins; otherwise the request's
    `parameters.binary_data_output` decides (tritonclient sets it when it lists no outputs).
    """
    parameters = body.get("parameters") or {}
    default = (
        bool(parameters.get("binary_data_output", False)) if isinstance(parameters, dict) else False
    )
    names = [spec.onnx.output.name]
    outputs = body.get("outputs")
    if outputs is None:
        return [(n, default) for n in names]
    if not isinstance(outputs, list):
        raise InvalidRequestError("outputs must be a list")
    requested = []
    for i, output in enumerate(outputs):
        if not isinstance(output, dict):
            raise InvalidRequestError(f"outputs[{i}] must be an object")
        name = _field(output, "name", str, f"outputs[{i}]")
        if name not in names:
            raise InvalidRequestError(
                f"model {spec.name!r} has no output {name!r}; outputs: {names}"
            )
        params = output.get("parameters") or {}
        binary = params.get("binary_data", default) if isinstance(params, dict) else default
        requested.append((name, bool(binary)))
    return requested


def encode_response(
    name: str,
    version: str,
    request_id: Any,
    results: dict[str, Array32],
    requested: list[tuple[str, bool]],
) -> Response:
    """JSON `data` per output, or the binary extension: a JSON header, then the raw bytes in order."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output, binary in requested:
        array = results[output]
        tensor: dict[str, Any] = {"name": output, "datatype": FP32, "shape": list(array.shape)}
        if binary:
            raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.ravel()
        outputs.append(tensor)
    content: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": outputs}
    if isinstance(request_id, str) and request_id:
        content["id"] = request_id
    if not chunks:
        return OrjsonResponse(content)
    header = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )
