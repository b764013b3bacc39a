"""ONNX Runtime: one session per model, provider selection, and inference off the event loop.

The request path reaches ORT only through `OnnxModel.infer` (one graph call) and
`OnnxModel.run_steps` (a whole rollout): with batching on they go through the model's
`service.batching.Batcher`, else each request takes one thread-pool hop for all its calls.
"""

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from service.batching import Batcher, Steps, run_steps, single_call
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
        self.batcher: Batcher | None = None

    def enable_batching(self, max_rows: int, max_wait: float, threads: int = 1) -> None:
        """Gather concurrent calls into batched calls on a worker thread (`service.batching`)."""
        # `run` is looked up at each call, so a test's spy on `OnnxModel.run` sees batched calls too.
        self.batcher = Batcher(
            lambda x, masks: self.run(x, masks),
            max_rows=max_rows,
            max_wait=max_wait,
            threads=threads,
            # Half a batch on its own (MC paths) gains little from sharing a call: such jobs run
            # side by side in the thread pool instead of queueing behind one worker thread.
            pool_rows=max(1, max_rows // 2),
            name=self.name,
        )

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def run(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        """Run the graph on `x` [B, T, F] and the mask inputs; returns the output tensor."""
        feeds = {"x": np.ascontiguousarray(x), **masks}
        started = time.perf_counter()
        (y,) = self.session.run([self.output], feeds)
        observe_ort_run(self.name, x.shape[0], started)
        return np.asarray(y, dtype=np.float32)

    async def infer(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        """One graph call off the event loop: batched with other requests, or in the thread pool."""
        return await self.run_steps(single_call(x), masks)

    async def run_steps(self, steps: Steps, masks: Mapping[str, Array32]) -> Array32:
        """All the calls of `steps` (a rollout) off the event loop, with no hop back per step."""
        if self.batcher is not None:
            return await self.batcher.submit(steps, masks)
        return await run_in_threadpool(run_steps, steps, masks, self.run)

    async def __call__(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        """An `OnnxModel` is the `Infer` callable `service.forecasting` takes."""
        return await self.infer(x, masks)


async def infer(model: OnnxModel, x: Array32, masks: Mapping[str, Array32]) -> Array32:
    """Run `model` off the event loop: ORT releases the GIL, and the event loop stays free."""
    return await model.infer(x, masks)


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
