"""The micro-batcher: order, splitting back, bounds, waiting, errors, cancellation, equality."""

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from service import forecasting
from service.batching import Batcher, Steps
from service.repository import load_repository
from service.settings import DEFAULT_MODELS_DIR, Settings

Array32 = forecasting.Array32


class Recorder:
    """A fake graph: y = 2x + sum of the masks, per row; records the rows of every call and can be
    held at a gate so that jobs queue up behind a running call."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(x.shape[0])
        if np.isnan(x).any():
            raise ValueError("NaN in the window")
        extra = sum(m.sum(axis=1) for m in masks.values())
        return (2 * x + np.reshape(extra, (-1,) + (1,) * (x.ndim - 1))).astype(np.float32)


def window(value: float, rows: int = 1, length: int = 4) -> Array32:
    return np.full((rows, length, 1), value, dtype=np.float32)


def masks(rows: int, value: float = 0.0) -> dict[str, Array32]:
    return {"m": np.full((rows, 2), value, dtype=np.float32)}


async def held_batch(
    batcher: Batcher, fake: Recorder, jobs: list[tuple[Array32, dict[str, Array32]]]
) -> list[Array32]:
    """Start one call, queue `jobs` behind it while it is held, then release it."""
    assert fake.gate is not None
    first = asyncio.create_task(batcher.infer(window(-1.0), masks(1)))
    await asyncio.to_thread(fake.started.wait, 5)
    tasks = [asyncio.create_task(batcher.infer(x, m)) for x, m in jobs]
    await asyncio.sleep(0.01)
    fake.gate.set()
    await first
    return list(await asyncio.gather(*tasks))


def test_queued_calls_share_one_call_and_come_back_in_order() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=64, max_wait=0.0)
    jobs = [(window(k, rows=k % 3 + 1), masks(k % 3 + 1, k)) for k in range(6)]

    results = asyncio.run(held_batch(batcher, fake, jobs))
    batcher.close()

    assert fake.calls == [1, sum(k % 3 + 1 for k in range(6))]
    for (x, m), y in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(y, fake(x, m))


def test_max_rows_bounds_every_call_and_a_bigger_job_runs_alone() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=4, max_wait=0.0)
    jobs = [(window(k), masks(1)) for k in range(9)] + [(window(9, rows=6), masks(6))]

    results = asyncio.run(held_batch(batcher, fake, jobs))
    batcher.close()

    assert fake.calls[1:] == [4, 4, 1, 6]
    assert [float(y[0, 0, 0]) for y in results] == [2.0 * k for k in range(10)]


def test_an_idle_model_waits_up_to_max_wait_for_more_rows() -> None:
    fake = Recorder()
    batcher = Batcher(fake, max_rows=3, max_wait=0.2)

    async def main() -> tuple[float, float]:
        started = time.perf_counter()
        await batcher.infer(window(1.0), masks(1))  # alone: held for max_wait
        alone = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(batcher.infer(window(k), masks(1)) for k in range(3)))
        return alone, time.perf_counter() - started  # max_rows reached: no wait

    alone, full = asyncio.run(main())
    batcher.close()

    assert alone >= 0.18
    assert full < 0.15
    assert fake.calls == [1, 3]


def test_greedy_batching_adds_no_wait_to_a_lone_call() -> None:
    batcher = Batcher(Recorder(), max_rows=64, max_wait=0.0)

    async def main() -> float:
        await batcher.infer(window(0.0), masks(1))  # starts the worker thread
        started = time.perf_counter()
        await batcher.infer(window(1.0), masks(1))
        return time.perf_counter() - started

    assert asyncio.run(main()) < 0.05
    batcher.close()


def test_an_error_reaches_only_the_request_that_caused_it() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=64, max_wait=0.0)

    async def main() -> list[Array32 | BaseException]:
        first = asyncio.create_task(batcher.infer(window(-1.0), masks(1)))
        await asyncio.to_thread(fake.started.wait, 5)
        values = [1.0, float("nan"), 3.0]
        tasks = [asyncio.create_task(batcher.infer(window(v), masks(1))) for v in values]
        await asyncio.sleep(0.01)
        fake.gate.set()  # type: ignore[union-attr]
        await first
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    good, bad, also_good = asyncio.run(main())
    batcher.close()

    assert isinstance(bad, ValueError)
    assert isinstance(good, np.ndarray)
    assert isinstance(also_good, np.ndarray)
    assert (float(good[0, 0, 0]), float(also_good[0, 0, 0])) == (2.0, 6.0)


def test_cancelling_a_waiting_request_does_not_break_the_others() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=64, max_wait=0.0)

    async def main() -> tuple[list[Array32], bool]:
        first = asyncio.create_task(batcher.infer(window(-1.0), masks(1)))
        await asyncio.to_thread(fake.started.wait, 5)
        tasks = [asyncio.create_task(batcher.infer(window(k), masks(1))) for k in range(3)]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        await asyncio.sleep(0.01)
        fake.gate.set()  # type: ignore[union-attr]
        await first
        kept = [await tasks[0], await tasks[2]]
        try:
            await tasks[1]
        except asyncio.CancelledError:
            return kept, True
        return kept, False

    kept, cancelled = asyncio.run(main())
    batcher.close()

    assert cancelled
    assert [float(y[0, 0, 0]) for y in kept] == [0.0, 4.0]
    assert fake.calls == [1, 2]  # the cancelled job was dropped before the call


def test_different_lengths_never_share_a_call() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=64, max_wait=0.0)
    jobs = [(window(k, length=4 + k % 2), masks(1)) for k in range(4)]

    results = asyncio.run(held_batch(batcher, fake, jobs))
    batcher.close()

    assert sorted(fake.calls[1:]) == [2, 2]
    assert [y.shape[1] for y in results] == [4, 5, 4, 5]


def test_a_rollout_is_one_job_and_concurrent_rollouts_share_every_step() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=64, max_wait=0.0)

    def doubling(x: Array32, steps: int) -> Steps:
        for _ in range(steps):
            x = yield x
        return x

    async def main() -> list[Array32]:
        first = asyncio.create_task(batcher.infer(window(-1.0), masks(1)))
        await asyncio.to_thread(fake.started.wait, 5)
        jobs = [
            asyncio.create_task(batcher.submit(doubling(window(k), 3), masks(1)))
            for k in (1.0, 2.0)
        ]
        await asyncio.sleep(0.01)
        fake.gate.set()  # type: ignore[union-attr]
        await first
        return list(await asyncio.gather(*jobs))

    results = asyncio.run(main())
    batcher.close()

    assert [float(y[0, 0, 0]) for y in results] == [8.0, 16.0]
    assert fake.calls == [1, 2, 2, 2]  # three steps, each one call for both rollouts


def test_a_closed_batcher_refuses_new_work() -> None:
    batcher = Batcher(Recorder(), max_rows=4, max_wait=0.0)
    batcher.close()

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.infer(window(0.0), masks(1)))


# --- equality on the shipped models ----------------------------------------------------------------

SHIPPED = ("lstm", "gru", "wavenet")


def concurrent_forecasts(
    batching: bool, name: str, uncertainty: forecasting.Uncertainty | None
) -> list[forecasting.Forecast]:
    settings = Settings(models_dir=DEFAULT_MODELS_DIR, device="cpu", batching=batching)
    repository = load_repository(settings)
    spec, model = repository.get_ready(name)
    limits = forecasting.Limits.from_settings(settings)
    t = np.arange(60)
    requests = [
        ([list(np.sin(0.3 * t[: 40 + k] + k))], 1 + 7 * k)  # lengths 40..45, rollouts up to 36
        for k in range(6)
    ]

    async def main() -> list[forecasting.Forecast]:
        return list(
            await asyncio.gather(
                *(
                    forecasting.forecast(
                        spec, series, model, limits, horizon=h, uncertainty=uncertainty
                    )
                    for series, h in requests
                )
            )
        )

    try:
        return asyncio.run(main())
    finally:
        repository.close()


@pytest.mark.skipif(not (DEFAULT_MODELS_DIR / "lstm").is_dir(), reason="no shipped models")
@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("mc", [False, True])
def test_batched_equals_unbatched_on_the_shipped_models(name: str, mc: bool) -> None:
    uncertainty = forecasting.Uncertainty(20, seed=7) if mc else None

    batched = concurrent_forecasts(True, name, uncertainty)
    alone = concurrent_forecasts(False, name, uncertainty)

    for b, a in zip(batched, alone, strict=True):
        (fb,), (fa,) = b.forecasts, a.forecasts
        np.testing.assert_allclose(fb.mean, fa.mean, rtol=0, atol=1e-6)
        if mc:
            assert fb.std is not None
            assert fa.std is not None
            np.testing.assert_allclose(fb.std, fa.std, rtol=0, atol=1e-6)


def test_batched_equals_unbatched_on_a_tiny_model(models_dir: Path) -> None:
    # Not bit for bit: MLAS's GEMM rounds the last bit differently with the batch size (1.5e-7).
    series = [[0.1 * k + 0.05 * j for k in range(10 + j)] for j in range(5)]

    def run(batching: bool) -> list[forecasting.Forecast]:
        settings = Settings(models_dir=models_dir, device="cpu", batching=batching)
        repository = load_repository(settings)
        spec, model = repository.get_ready("tiny")
        limits = forecasting.Limits.from_settings(settings)

        async def main() -> list[forecasting.Forecast]:
            return list(
                await asyncio.gather(
                    *(forecasting.forecast(spec, [s], model, limits, horizon=7) for s in series)
                )
            )

        try:
            return asyncio.run(main())
        finally:
            repository.close()

    for b, a in zip(run(True), run(False), strict=True):
        np.testing.assert_allclose(b.forecasts[0].mean, a.forecasts[0].mean, rtol=0, atol=1e-6)


def test_a_job_of_pool_rows_skips_the_queue() -> None:
    fake = Recorder(threading.Event())
    batcher = Batcher(fake, max_rows=8, max_wait=0.0, pool_rows=4)

    async def main() -> Array32:
        first = asyncio.create_task(batcher.infer(window(-1.0), masks(1)))
        await asyncio.to_thread(fake.started.wait, 5)
        big = asyncio.create_task(batcher.infer(window(3.0, rows=5), masks(5)))
        await asyncio.sleep(0.05)
        assert fake.calls == []  # both wait at the gate, side by side
        fake.gate.set()  # type: ignore[union-attr]
        await first
        return await big

    y = asyncio.run(main())
    batcher.close()

    assert sorted(fake.calls) == [1, 5]
    assert float(y[0, 0, 0]) == 6.0


class SlowCalls:
    """A fake graph that takes 20 ms a call and records the most calls running at once, and the
    threads that ran them."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.names: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, x: Array32, masks: Mapping[str, Array32]) -> Array32:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.names.add(threading.current_thread().name)
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
        return x


def run_all(batcher: Batcher, jobs: int, rows: int) -> None:
    async def main() -> None:
        await asyncio.gather(
            *(batcher.infer(window(1.0, rows=rows), masks(rows)) for _ in range(jobs))
        )

    asyncio.run(main())
    batcher.close()


def test_big_jobs_run_on_at_most_threads_threads_of_their_own() -> None:
    slow = SlowCalls()
    batcher = Batcher(slow, max_rows=8, max_wait=0.0, threads=2, pool_rows=4, name="m")

    run_all(batcher, jobs=8, rows=5)

    assert slow.most == 2
    assert all(name.startswith("batcher-m-pool") for name in slow.names)


@pytest.mark.parametrize(("workers", "expected"), [(1, 1), (2, 2)])
def test_queue_calls_overlap_only_with_a_second_worker(workers: int, expected: int) -> None:
    """One queue worker (the default) runs one call at a time however deep the backlog; a second
    one starts a call beside a running one for a backlog of half a batch."""
    slow = SlowCalls()
    batcher = Batcher(slow, max_rows=4, max_wait=0.0, workers=workers, name="q")

    run_all(batcher, jobs=24, rows=1)

    assert slow.most == expected
    assert all(name.startswith("batcher-q-") for name in slow.names)


def test_settings_reach_each_models_batcher(tmp_path: Path) -> None:
    from tests.service.conftest import write_model

    write_model(tmp_path, "tiny", n_masks=2)
    settings = Settings(
        models_dir=tmp_path, device="cpu", batch_max_rows=96, batch_max_wait_ms=2, batch_threads=3
    )
    repository = load_repository(settings)
    batcher = repository.models["tiny"].onnx.batcher  # type: ignore[union-attr]
    try:
        assert batcher is not None
        assert (batcher.max_rows, batcher.max_wait, batcher.threads) == (96, 0.002, 3)
        assert batcher.workers == 1  # one queue worker; the threads are the big jobs' pool
        # MC-sized jobs (half a batch and more) run side by side instead of behind one thread.
        assert batcher.pool_rows == 48
    finally:
        batcher.close()
