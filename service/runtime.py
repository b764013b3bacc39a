"""ONNX Runtime: one session per model, provider selection, and inference off the event loop.

`infer` is the only way the request path reaches ORT, so a micro-batcher can later stand in for it.
"""

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from service.errors import DeviceUnavailableError, ModelLoadError
from service.metrics import observe_ort_run
from service.settings import Device

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

Array32 = NDArray[np.float32]


class OnnxModel:
    """An ORT session with the names of its inputs and output; safe to run from several threads."""

    def __init__(self, session: ort.InferenceSession, output: str, name: str = "") -> None:
        self.session = session
        self.name = name  # the model's name in metrics
        self.output = output
        self.device = "cuda" if CUDA in session.get_providers() else "cpu"
        self.input_names = frozenset(i.name for i in session.get_inputs())

    def run(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        """Run the graph on `x` [B, T, F] and the mask inputs; returns the output tensor."""
        feeds = {"x": np.ascontiguousarray(x), **masks}
        started = time.perf_counter()
        (y,) = self.session.run([self.output], feeds)
        observe_ort_run(self.name, x.shape[0], started)
        return np.asarray(y, dtype=np.float32)


async def infer(model: OnnxModel, x: Array32, masks: Mapping[str, Array32]) -> Array32:
    """Run `model` in the thread pool: ORT releases the GIL, and the event loop stays free."""
    return await run_in_threadpool(model.run, x, masks)


def create_session(path: Path, device: Device, intra_op_threads: int) -> ort.InferenceSession:
    """Create a session on the requested device and check which provider ORT actually activated.

    onnxruntime-gpu lists CUDA as available on machines without CUDA libraries and then falls
    back to CPU without an exception, so the decision is made on `session.get_providers()` after
    creation: `auto` accepts the fallback (logged), `cuda` turns it into a `DeviceUnavailableError`.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    wants_cuda = device == "cuda" or (device == "auto" and CUDA in available)
    if device == "cuda" and CUDA not in available:
        raise DeviceUnavailableError(
            f"device 'cuda' requested but onnxruntime offers only {available}"
        )
    providers = [CUDA, CPU] if wants_cuda else [CPU]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises several unrelated types for unreadable models
        raise ModelLoadError(f"onnxruntime cannot load {path.name}: {exc}") from exc
    active = session.get_providers()
    if wants_cuda and CUDA not in active:
        if device == "cuda":
            raise DeviceUnavailableError(
                f"device 'cuda' requested but CUDAExecutionProvider did not activate "
                f"(active: {active}); check the CUDA and cuDNN libraries"
            )
        logger.warning("%s: CUDA listed but not active, running on CPU", path)
    return session
