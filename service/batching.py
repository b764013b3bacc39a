"""Micro-batching: concurrent ORT calls for one model gathered into one call, and split back.

One worker thread per model owns the session's calls. The event loop hands it *jobs*; a job is a
window `x` [B, T, F] with its mask inputs and a step function (a generator) that turns each output
into the next window, so a recursive rollout is one job, not one job per step:

```
event loop                          worker thread (`workers` per model, default one)
  submit(job) -> future  ------->   take the queued jobs (greedy, or wait up to max_wait)
                                    group by (T, F, mask names), oldest first, <= max_rows rows
                                    one session.run on the concatenated rows
                                    split y back; each job steps: next window, or done
  future.set_result  <-----------   one call_soon_threadsafe per loop turn for the finished jobs
```

A rollout's later steps join whatever is queued at that moment (continuous batching): concurrent
rollouts share calls at every step, and a lone rollout runs all its steps without going back to
the event loop. Rows are independent in our graphs (masks are inputs, no random ops), so batching
does not change results beyond the kernels' own batch-size rounding.

A job of at least `pool_rows` rows on its own (MC sample paths; the service sets half of
`max_rows`) skips the queue and runs in the batcher's own pool of `threads` threads, so that several
of them run side by side on several cores (no more than `threads`: the default executor's cpu + 4
threads thrash the caches, measured 6% fewer MC requests/s on lstm at c=16).

Greedy by default (`max_wait=0`): an idle model runs the first job at once, and whatever queues
during a call goes into the next one, which adds no latency at low load. A positive `max_wait`
holds an idle model's first call until `max_rows` rows are queued or the wait is over.

A failing batch is re-run job by job, so an error reaches only the requests that caused it; a
cancelled request is dropped from the queue (or its result is discarded) without touching the others.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

Array32 = NDArray[np.float32]
# Yields the window for each call, receives the graph's output, returns the job's result.
Steps = Generator[Array32, Array32, Array32]
Run = Callable[[Array32, Mapping[str, Array32]], Array32]
Key = tuple[int, ...]


def single_call(x: Array32) -> Steps:
    """The steps of a plain call: one window, and the output is the result."""
    y = yield x
    return y


def _continue(job: "_Job") -> Steps:
    """A started job's steps again from its first window (already taken from the generator)."""
    y = yield job.x
    while True:
        result = job.advance(y)
        if result is not None:
            return result
        y = yield job.x


def run_steps(steps: Steps, masks: Mapping[str, Array32], run: Run) -> Array32:
    """Drive `steps` to the end with `run`, synchronously: the unbatched path, one thread hop."""
    x = next(steps)
    while True:
        y = run(x, masks)
        try:
            x = steps.send(y)
        except StopIteration as done:
            result: Array32 = done.value
            return result


@dataclass(eq=False)
class _Job:
    steps: Steps
    masks: Mapping[str, Array32]
    future: "asyncio.Future[Array32]"
    x: Array32 = field(init=False)
    rows: int = field(init=False)
    key: tuple[Key, tuple[str, ...], int] = field(init=False)

    def start(self) -> None:
        self.x = next(self.steps)
        # Rows of the output: one per mask row, which may be S per window (repeat_rows graphs).
        self.rows = max([int(self.x.shape[0]), *(int(m.shape[0]) for m in self.masks.values())])
        self._rekey()

    def _rekey(self) -> None:
        # Jobs share a call only with the same paths per window, so that the concatenated masks
        # still hold S rows per concatenated window.
        per_window = self.rows // int(self.x.shape[0])
        self.key = (tuple(self.x.shape[1:]), tuple(sorted(self.masks)), per_window)

    def advance(self, y: Array32) -> Array32 | None:
        """Feed one output back: None while the job needs more calls, else its result."""
        try:
            self.x = self.steps.send(y)
        except StopIteration as done:
            result: Array32 = done.value
            return result
        self._rekey()
        return None


class Batcher:
    """Gathers the calls for one model into batched calls on its own worker thread.

    `max_rows` bounds the rows of one call (a single job larger than that runs alone, whole);
    `max_wait` (seconds) is how long an idle model holds its first call for more rows; `workers`
    threads take calls from the queue (one by default: a second one, starting a call beside a
    running one for a backlog of half a batch, measured 4-24% fewer next-step requests/s at c=64 on
    2 cores, from GIL hand-offs); big jobs (`pool_rows`) run on a pool of `threads` threads, so that
    several MC requests use several cores.
    """

    def __init__(
        self,
        run: Run,
        *,
        max_rows: int,
        max_wait: float,
        threads: int = 1,
        pool_rows: int | None = None,
        name: str = "",
        workers: int = 1,
    ) -> None:
        if max_rows < 1 or threads < 1 or workers < 1:
            raise ValueError(
                f"max_rows, threads and workers must be >= 1, got {max_rows}, {threads}, {workers}"
            )
        self._run = run
        self.max_rows = max_rows
        self.max_wait = max(0.0, max_wait)
        self.threads = threads  # the pool's, for big jobs
        self.workers = workers  # the queue's
        self.pool_rows = pool_rows  # jobs this big skip the queue for the thread pool
        self.name = name
        self._queue: list[_Job] = []
        self._queued_rows = 0
        self._busy = 0  # worker threads inside a call
        self._waiting = 0  # worker threads asleep in `_cond.wait`
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        # Big jobs (MC paths) run side by side on `threads` threads of their own: the default
        # executor has cpu + 4, and more ORT calls than cores only thrash the caches.
        self._pool: ThreadPoolExecutor | None = None

    async def infer(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        """One graph call on `x` and `masks`, batched with whatever else is queued."""
        return await self.submit(single_call(x), masks)

    async def submit(self, steps: Steps, masks: Mapping[str, Array32]) -> Array32:
        """Run `steps` to the end; every call it needs may share a batch with other jobs."""
        future: asyncio.Future[Array32] = asyncio.get_running_loop().create_future()
        job = _Job(steps, masks, future)
        job.start()  # the first window, computed here so that a bad request fails here
        if self.pool_rows is not None and job.rows >= self.pool_rows:
            # Half a batch on its own (MC paths): sharing a call gains little, while the thread
            # pool runs several such calls side by side (measured: MC 100 on lstm 1.3x faster).
            loop = asyncio.get_running_loop()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, f"batcher-{self.name}-pool")
            return await loop.run_in_executor(
                self._pool, run_steps, _continue(job), masks, self._run
            )
        self._put(job)
        return await future

    def close(self) -> None:
        """Stop the worker thread once the jobs queued so far are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._workers:
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # big jobs already running finish

    def _put(self, job: _Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"batcher for model {self.name!r} is closed")
            self._queue.append(job)
            self._queued_rows += job.rows
            if not self._workers:  # started on first use, in whatever process serves
                for k in range(self.workers):
                    thread = threading.Thread(
                        target=self._work, name=f"batcher-{self.name}-{k}", daemon=True
                    )
                    thread.start()
                    self._workers.append(thread)
            # Wake a sleeping thread only when the queue is worth a call: under load the threads
            # are in ORT and find the queue when they come back, and a wake-up for nothing costs
            # the event loop a GIL hand-off (py-spy: 4% of its time at c=64 on lstm next-step).
            if self._waiting and self._worth_a_call():
                self._cond.notify()

    # --- worker thread -----------------------------------------------------------------------------

    def _work(self) -> None:
        active: list[_Job] = []  # this thread's rollouts between steps, in arrival order
        while True:
            with self._cond:
                if not active:
                    while not self._worth_a_call() and not self._closed:
                        self._sleep()
                    if not self._queue:  # closed and drained
                        return
                    if self.max_wait > 0 and not self._busy:
                        self._wait_for_rows()
                # Take only this call's jobs: the rest stay queued for the other threads.
                self._queue = [job for job in self._queue if not job.future.done()]
                active = [job for job in active if not job.future.done()]
                batch = self._pick([*active, *self._queue])
                taken = {id(job) for job in batch}
                self._queue = [job for job in self._queue if id(job) not in taken]
                self._queued_rows = sum(job.rows for job in self._queue)
                active = [job for job in active if id(job) not in taken]
                self._busy += 1
            try:
                if batch:
                    finished = self._call(batch)
                    _resolve(finished)
                    done = {id(job) for job, _ in finished}
                    active += [job for job in batch if id(job) not in done]  # next steps
            except Exception as exc:  # a bug here must fail the requests, not hang them
                logger.exception("batcher for model %r failed", self.name)
                _resolve([(job, exc) for job in batch])
            finally:
                with self._cond:
                    self._busy -= 1
                    if self._waiting and self._worth_a_call():
                        self._cond.notify()

    def _worth_a_call(self) -> bool:
        """Whether an idle thread should take the queue: always when no call is running; beside
        a running call only for a backlog of half a batch (an extra call for one row would cost the
        event loop more wake-ups than it saves)."""
        if not self._queue:
            return False
        return self._busy == 0 or self._queued_rows >= max(1, self.max_rows // 2)

    def _wait_for_rows(self) -> None:
        """Hold an idle model's first call until max_rows rows are queued or max_wait is over."""
        deadline = time.monotonic() + self.max_wait
        while not self._closed:
            if self._queued_rows >= self.max_rows:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(left)

    def _sleep(self, timeout: float | None = None) -> None:
        """`_cond.wait`, counted, so that `_put` wakes threads only when one sleeps."""
        self._waiting += 1
        try:
            self._cond.wait(timeout)
        finally:
            self._waiting -= 1

    def _pick(self, jobs: list[_Job]) -> list[_Job]:
        """The oldest job and the next ones that share its key, up to max_rows rows."""
        if not jobs:
            return []
        first = jobs[0]
        batch, rows = [first], first.rows
        for job in jobs[1:]:
            if job.key == first.key and rows + job.rows <= self.max_rows:
                batch.append(job)
                rows += job.rows
        return batch

    def _call(self, batch: list[_Job]) -> list[tuple[_Job, Array32 | BaseException]]:
        """One ORT call for `batch`; returns the jobs that finished with their results or errors."""
        try:
            if len(batch) == 1:
                x, masks = batch[0].x, batch[0].masks
            else:
                x = np.concatenate([job.x for job in batch])
                masks = {
                    name: np.concatenate([job.masks[name] for job in batch])
                    for name in batch[0].masks
                }
            y = self._run(x, masks)
        except Exception as exc:
            if len(batch) == 1:
                return [(batch[0], exc)]
            # Re-run one by one, so that only the jobs that fail get the error.
            return [outcome for job in batch for outcome in self._call([job])]
        finished: list[tuple[_Job, Array32 | BaseException]] = []
        start = 0
        for job in batch:
            part = y if len(batch) == 1 else y[start : start + job.rows]
            start += job.rows
            try:
                result = job.advance(part)
            except Exception as exc:
                finished.append((job, exc))
                continue
            if result is not None:
                finished.append((job, result))
        return finished


def _resolve(finished: list[tuple[_Job, Array32 | BaseException]]) -> None:
    """Set the finished jobs' futures on their event loop: one callback per loop, not per job."""
    if not finished:
        return
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Array32 | BaseException]]] = {}
    for job, outcome in finished:
        by_loop.setdefault(job.future.get_loop(), []).append((job, outcome))
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_all, outcomes)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            logger.debug("event loop closed before %d results could be delivered", len(outcomes))


def _set_all(outcomes: list[tuple[_Job, Array32 | BaseException]]) -> None:
    for job, outcome in outcomes:
        _set(job.future, outcome)


def _set(future: "asyncio.Future[Array32]", outcome: Array32 | BaseException) -> None:
    if future.done():  # cancelled while it ran
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
