"""Anchor (b): what a careful engineer writes first. FastAPI + ONNX Runtime, no validation.

Loads one model folder (`ANCHOR_MODEL_DIR`, default models/lstm), parses the body into a dict,
`np.asarray`s the series, runs ORT in FastAPI's thread pool (a plain `def` endpoint) and returns
FastAPI's default JSON. Recursive rollouts and MC dropout are the few obvious lines each.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import Body, FastAPI

folder = Path(os.environ.get("ANCHOR_MODEL_DIR", "models/lstm"))
spec = json.loads((folder / "forecaster.json").read_text())
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(
    str(folder / spec["onnx"]["file"]), options, ["CPUExecutionProvider"]
)
masks = spec["onnx"]["mc_dropout"]["masks"]
keep = 1.0 - spec["onnx"]["mc_dropout"]["rate"]
mean, scale = spec["scaling"]["mean"][0], spec["scaling"]["scale"][0]
T, H = spec["input_length"], spec["horizon"]

rng = np.random.default_rng()
app = FastAPI()


@app.post("/v1/models/{name}/forecast")
def forecast(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
    batch = [body["series"]] if "series" in body else body["batch"]
    x = ((np.asarray(batch, dtype=np.float32)[:, -T:] - mean) / scale)[:, :, None]
    horizon, mc = body.get("horizon", H), body.get("uncertainty")
    n = mc["samples"] if mc else 1
    x = np.repeat(x, n, axis=0)
    feeds = {m["name"]: np.ones((len(x), m["size"]), np.float32) for m in masks}
    if mc:
        feeds = {
            k: (rng.random(v.shape) < keep).astype(np.float32) / keep for k, v in feeds.items()
        }
    chunks: list[Any] = []
    while sum(c.shape[1] for c in chunks) < horizon:
        y = session.run(None, {"x": x, **feeds})[0]
        chunks.append(y[:, -1, :] if y.ndim == 3 else y)  # a sequence's last step, or the vector
        x = np.concatenate([x, chunks[-1][:, :, None]], axis=1)[:, -T:]
    paths = (np.concatenate(chunks, axis=1)[:, :horizon] * scale + mean).reshape(len(batch), n, -1)
    if not mc:
        return {"forecasts": [{"mean": p[0].tolist()} for p in paths]}
    qs = mc.get("quantiles", [0.05, 0.5, 0.95])
    return {
        "forecasts": [
            {
                "mean": p.mean(0).tolist(),
                "std": p.std(0).tolist(),
                "quantiles": {
                    str(q): v.tolist() for q, v in zip(qs, np.quantile(p, qs, axis=0), strict=True)
                },
            }
            for p in paths
        ]
    }
