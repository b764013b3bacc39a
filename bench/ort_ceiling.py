"""The ORT ceiling of an MC request: its graph calls alone, on every CPU, with no server at all.

    python -m bench.ort_ceiling models/lstm [--samples 100] [--horizon 10] [--threads 2] [--seconds 3]

One process, one session (one intra-op thread, as the service's), `--threads` Python threads each
calling `session.run` back to back on the feeds of one MC request (the window and `--samples`
mask rows, repeated as the service repeats them); ORT releases the GIL, so the threads run side by
side. Prints one JSON line: calls/s, requests/s (calls per request: the rollout's, horizon over the
model's) and the median call. No HTTP, no validation, no statistics: the most requests/s any server
could get out of this model on this machine at this moment, which `make bench` measures beside the
service's MC requests (`bench.run`), since the machine's speed moves by tens of percent.
"""

import argparse
import json
import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from forecaster_format import draw_masks


def mc_feeds(spec: dict[str, Any], series: list[float], samples: int) -> dict[str, NDArray[Any]]:
    """The graph inputs of one MC request on a univariate `series`, as the service builds them."""
    if len(spec["features"]) != 1:
        raise SystemExit(f"ort_ceiling: {spec['name']} is multivariate; only univariate models")
    mean, scale = spec["scaling"]["mean"][0], spec["scaling"]["scale"][0]
    window = (np.asarray(series[-spec["input_length"] :], np.float64) - mean) / scale
    x = window.astype(np.float32)[None, :, None]
    dropout = spec["onnx"]["mc_dropout"]
    if not dropout.get("repeat_rows", False):
        x = np.repeat(x, samples, axis=0)
    masks = dropout["masks"]
    drawn = draw_masks(
        np.random.default_rng(0), samples, [m["size"] for m in masks], dropout["rate"]
    )
    feeds: dict[str, NDArray[Any]] = {"x": x}
    feeds |= {mask["name"]: d for mask, d in zip(masks, drawn, strict=True)}
    return feeds


def measure(
    model_dir: Path, series: list[float], samples: int, horizon: int, threads: int, seconds: float
) -> dict[str, Any]:
    spec = json.loads((model_dir / "forecaster.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_dir / spec["onnx"]["file"]), options, providers=["CPUExecutionProvider"]
    )
    feeds = mc_feeds(spec, series, samples)
    output = [spec["onnx"]["output"]["name"]]
    for _ in range(5):  # warm-up: first calls allocate
        session.run(output, feeds)
    times: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def work(mine: list[float]) -> None:
        start.wait()
        while True:
            began = time.perf_counter()
            if began >= deadline:
                return
            session.run(output, feeds)
            mine.append(time.perf_counter() - began)

    workers = [threading.Thread(target=work, args=(t,)) for t in times]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    calls = sum(len(t) for t in times)
    per_request = math.ceil(horizon / spec["horizon"])
    return {
        "model": spec["name"],
        "samples": samples,
        "threads": threads,
        "calls_per_s": calls / elapsed,
        "calls_per_request": per_request,
        "rps": calls / elapsed / per_request,
        "median_call_ms": 1e3 * statistics.median([x for t in times for x in t]),
    }


def main() -> None:
    from bench.run import MC_KIND, kinds

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.samples < 1 or args.horizon < 1 or args.threads < 1 or args.seconds <= 0:
        parser.error("--samples, --horizon and --threads must be >= 1, --seconds > 0")
    spec = json.loads((args.model_dir / "forecaster.json").read_text())
    series = kinds(spec["input_length"])[MC_KIND]["series"]
    result = measure(args.model_dir, series, args.samples, args.horizon, args.threads, args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
