"""Model lifecycle: reload a model folder while the service runs, atomically, and poll for changes.

```
reload(name)                  one at a time per name (an asyncio.Lock per name)
  load_model in a thread      a complete new Model: spec, session, test inference; or a reason
  failed -> ModelReloadError  (409, with the reason); a ready old version keeps serving
  loaded -> repository.models[name] = new     one assignment: a reader sees the old or the new
         -> the old OnnxModel is retired: closed once every request begun before the swap is done
```

Why a grace period: a request takes its `OnnxModel` from `Repository.get_ready` and calls it
later; closing the old model's batcher in between would fail that call. `RequestEpochs` counts the
requests in flight per epoch (the `TrackRequests` middleware, outside every route and the fast
path, enters and leaves); a swap opens a new epoch, and the old model is closed when no request of
an earlier epoch is left (read-copy-update). `Batcher.close` also lets queued jobs finish.

A worker process reloads only itself: with FORECAST_WORKERS > 1 an admin reload reaches the worker
that answers it, and `FORECAST_MODEL_POLL_S` makes every worker pick up changed folders on its own.
"""

import asyncio
import contextlib
import logging
import math
import time

from starlette.concurrency import run_in_threadpool

from service.errors import ForecastError, ModelNotFoundError, ModelReloadError
from service.metrics import MODEL_RELOADS
from service.repository import (
    Fingerprint,
    Model,
    Repository,
    fingerprint,
    load_model,
    model_folders,
    validate_model_name,
)
from service.runtime import OnnxModel
from service.settings import Settings

logger = logging.getLogger(__name__)

# A retired model waits this long at most for the requests begun before its swap (the deadline of
# a request is far shorter); then it is closed anyway.
RETIRE_TIMEOUT_S = 120.0


class RequestEpochs:
    """Requests in flight per epoch, so that a swap can wait for the requests begun before it.

    Used from the event loop only (ASGI middleware and the lifecycle), so it needs no lock.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self._active: dict[int, int] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def enter(self) -> int:
        epoch = self.epoch
        self._active[epoch] = self._active.get(epoch, 0) + 1
        return epoch

    def leave(self, epoch: int) -> None:
        left = self._active[epoch] - 1
        if left:
            self._active[epoch] = left
            return
        del self._active[epoch]
        if self._waiters:
            self._wake()

    @property
    def in_flight(self) -> int:
        return sum(self._active.values())

    async def drain(self) -> None:
        """Open a new epoch and wait until every request of the earlier ones has finished."""
        boundary = self.epoch
        self.epoch += 1
        if self._oldest() > boundary:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((boundary, future))
        await future

    def _oldest(self) -> float:
        return min(self._active, default=math.inf)

    def _wake(self) -> None:
        oldest = self._oldest()
        waiting = []
        for boundary, future in self._waiters:
            if future.done():  # cancelled (timed out)
                continue
            if oldest > boundary:
                future.set_result(None)
            else:
                waiting.append((boundary, future))
        self._waiters = waiting


class ModelLifecycle:
    """Reloads models of one repository; `start` begins the poll, `close` ends everything."""

    def __init__(self, repository: Repository, settings: Settings, epochs: RequestEpochs) -> None:
        self.repository = repository
        self.settings = settings
        self.epochs = epochs
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: dict[asyncio.Task[None], OnnxModel] = {}
        self._failed: dict[str, Fingerprint] = {}  # the files a reload failed on: not retried
        self._gone: set[str] = set()  # loaded models whose folder has disappeared (logged once)
        self._poll: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.model_poll_s > 0:
            self._poll = asyncio.create_task(self._poll_forever(self.settings.model_poll_s))

    async def close(self) -> None:
        """Stop the poll and close the retired models still waiting (the lifespan's shutdown)."""
        if self._poll is not None:
            self._poll.cancel()
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
        for _, onnx in retiring:
            await run_in_threadpool(onnx.close)

    async def reload(self, name: str) -> Model:
        """Load the folder `name` again (or for the first time) and swap it in if it loads.

        Raises `InvalidModelNameError` (422) before any file is touched, `ModelNotFoundError`
        (404) when there is no such folder, `ModelReloadError` (409) when the new files do not load;
        then a ready old version keeps serving.
        """
        validate_model_name(name)
        folder = self.settings.models_dir / name
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if not await run_in_threadpool(folder.is_dir):
                raise ModelNotFoundError(f"no folder {name!r} in the models directory")
            started = time.perf_counter()
            new = await run_in_threadpool(load_model, folder, self.settings)
            took_ms = (time.perf_counter() - started) * 1e3
            old = self.repository.models.get(name)
            if not new.ready:
                self._failed[name] = new.fingerprint
                serving = old is not None and old.ready
                if not serving:  # nothing serves: report the newest reason
                    self.repository.models[name] = new
                MODEL_RELOADS.labels(name, "failed").inc()
                logger.error("model %s reload failed (%.0f ms): %s", name, took_ms, new.reason)
                keeps = "the previous version keeps serving" if serving else "it is unavailable"
                raise ModelReloadError(f"model {name!r} not reloaded: {new.reason}; {keeps}")
            self._failed.pop(name, None)
            self._gone.discard(name)
            self.repository.models[name] = new  # the swap: one assignment
            MODEL_RELOADS.labels(name, "loaded").inc()
            logger.info(
                "model %s %s: version %s on %s (%.0f ms)",
                name,
                "reloaded" if old is not None else "loaded",
                new.spec.version if new.spec is not None else None,
                new.device,
                took_ms,
            )
            if old is not None and old.onnx is not None:
                self._retire(old.onnx)
            return new

    async def reload_changed(self) -> list[str]:
        """Reload the folders whose files changed since they were loaded, and new folders.

        A folder that disappeared keeps serving what was loaded (logged once): a deployment that
        replaces a folder by removing it first would otherwise flap.
        """
        found = await run_in_threadpool(self._scan)
        changed = []
        for name, files in found.items():
            model = self.repository.models.get(name)
            loaded = model is not None and model.fingerprint == files
            if loaded or self._failed.get(name) == files:
                continue
            changed.append(name)
            # A failure is logged by `reload`; the old version, if any, keeps serving.
            with contextlib.suppress(ForecastError):
                await self.reload(name)
        for name in self.repository.models.keys() - found.keys() - self._gone:
            self._gone.add(name)
            logger.warning("model %s: its folder is gone; the loaded version keeps serving", name)
        return changed

    async def wait_retired(self) -> None:
        """Until the models retired so far are closed (tests, shutdown)."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def _retire(self, onnx: OnnxModel) -> None:
        task = asyncio.create_task(self._close_after_grace(onnx))
        self._retiring[task] = onnx
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def _close_after_grace(self, onnx: OnnxModel) -> None:
        try:
            await asyncio.wait_for(self.epochs.drain(), RETIRE_TIMEOUT_S)
        except TimeoutError:
            logger.warning(
                "model %s: requests begun before the reload still run after %.0f s; "
                "closing the previous session anyway",
                onnx.name,
                RETIRE_TIMEOUT_S,
            )
        await run_in_threadpool(onnx.close)
        logger.info("model %s: previous session closed", onnx.name)

    def _scan(self) -> dict[str, Fingerprint]:
        root = self.settings.models_dir
        if not root.is_dir():
            return {}
        return {name: fingerprint(root / name) for name in model_folders(root)}

    async def _poll_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.reload_changed()
            except Exception:  # a failed scan must not end the poll
                logger.exception("model poll failed")
