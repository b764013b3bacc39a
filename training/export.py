"""Export a trained Keras forecaster to the model repository, after checking the ONNX graph.

The exporter refuses to write a model that fails any check (ExportError, nothing written):
- parity with Keras, dropout off, batch 1/7/256 x length 30/50/200: max abs diff <= 1e-5;
- MC dropout alive: samples differ within one batched call, std > 0;
- a seed repeats bit for bit, also from a new ORT session;
- a row's samples depend only on its own window and masks, not on the rest of its batch;
- ORT's MC mean and spread agree with Keras' own MC dropout (training=True).
Metrics in forecaster.json are measured on the exported ONNX model, i.e. what the service serves.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from forecaster_format import SpecError, conformal_map, draw_masks, spread_map, validate_spec
from training.architectures import (
    FlattenLast,
    RepeatRows,
    all_layers,
    dropout_rate,
    ensemble_size,
    mask_inputs,
    with_repeat_rows,
)
from training.comparison import compare, decide, table
from training.datasets import FloatArray, Windows
from training.errors import ExportError
from training.evaluation import (
    CONFORMAL_LEVELS,
    LinearBaseline,
    calibrate_spread,
    conformal_scores,
    errors,
    interval_coverage,
    last_step,
    naive_forecast,
)
from training.fit import keras_mc_samples, predict
from training.onnx_head import output_rank
from training.rewrites import rewrite, sha256
from training.tasks import Task
from training.triton import write_config_pbtxt

OPSET = 17
PARITY_TOLERANCE = 1e-5
MC_SAMPLES = 100
COVERAGE_LEVELS = (0.5, 0.8, 0.95)


class OnnxForecaster:
    """The exported graph in ONNX Runtime, called the way the service calls it."""

    def __init__(
        self, path: Path, masks: list[tuple[str, int]], rate: float, repeat_rows: bool = False
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.masks = masks
        self.rate = rate
        self.repeat_rows = repeat_rows  # the graph repeats x's rows to meet the masks' (RepeatRows)

    def run(self, x: FloatArray, masks: list[FloatArray] | None = None) -> FloatArray:
        if masks is None:
            masks = [np.ones((len(x), w), np.float32) for _, w in self.masks]
        feeds = {"x": x, **{name: m for (name, _), m in zip(self.masks, masks, strict=True)}}
        return np.asarray(self.session.run(["y"], feeds)[0])

    def run_chunked(
        self, x: FloatArray, masks: list[FloatArray] | None = None, paths: int = 1
    ) -> FloatArray:
        """`run` in chunks of about 8192 mask rows; `paths` mask rows per window of `x` (>1 only
        for a repeat_rows graph)."""
        chunk = max(1, 8192 // paths)
        outs = [
            self.run(
                x[i : i + chunk],
                None if masks is None else [m[i * paths : (i + chunk) * paths] for m in masks],
            )
            for i in range(0, len(x), chunk)
        ]
        return np.concatenate(outs)

    def mc_samples(self, x: FloatArray, samples: int, seed: int) -> FloatArray:
        """[S, N, H] forecasts at the last step, S mask draws per window, one batched pass."""
        rng = np.random.default_rng(seed)
        widths = [w for _, w in self.masks]
        masks = draw_masks(rng, len(x) * samples, widths, self.rate)  # path n*S + s
        if self.repeat_rows:  # one x row per window, S mask rows each: as the service calls it
            out = last_step(self.run_chunked(x, masks, paths=samples))
        else:
            out = last_step(self.run_chunked(np.repeat(x, samples, axis=0), masks))
        return out.reshape(len(x), samples, -1).transpose(1, 0, 2)


def convert(model: keras.Model, path: Path) -> Literal["sequence", "vector"]:
    """Convert to ONNX at `path`, with the rewrites; and the model's `output` kind: a seq2seq model
    exports as a "vector" too, its head run on the last step only (`last_step_head`)."""
    n_features = int(model.inputs[0].shape[-1])
    signature = [tf.TensorSpec((None, None, n_features), tf.float32, name="x")]
    signature += [tf.TensorSpec((None, w), tf.float32, name=n) for n, w in mask_inputs(model)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    # Graph rewrites for ORT's speed, checked below with the rest (check_parity, check_mc).
    proto, notes = rewrite(proto)
    for note in notes:
        print(f"export: {note}", flush=True)
    outputs = [o.name for o in proto.graph.output]
    if outputs != ["y"]:
        raise ExportError(f"expected one ONNX output named 'y', got {outputs}")
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return "sequence" if output_rank(proto) == 3 else "vector"


def rows_read(model: keras.Model, task: Task) -> int:
    """The fewest rows a window must have for the model: 2, or what its in-graph layers read
    from the window's end (a season for window scaling, `weeks` seasons for a profile, the rows
    of a linear path)."""
    floor = max(2, task.config.season) if task.config.scaling == "window" else 2
    for layer in all_layers(model):
        if hasattr(layer, "weeks") and hasattr(layer, "season"):  # a window-level layer
            floor = max(floor, layer.season * layer.weeks)
        if isinstance(layer, FlattenLast):
            floor = max(floor, layer.steps)
    return floor


def check_parity(
    model: keras.Model, onnx_model: OnnxForecaster, task: Task, shortest: int = 2
) -> float:
    """Max abs diff Keras vs ORT with dropout off over batch 1/7/256 and length 30/50/200 (at
    least `shortest`, the rows the model reads)."""
    worst = 0.0
    rng = np.random.default_rng(0)
    for batch in (1, 7, 256):
        for length in sorted({max(shortest, n) for n in (30, 50, 200)}):
            x = task.sample_inputs(batch, length, rng)
            # The forecast after each window: a seq2seq graph computes only that step.
            diff = float(
                np.max(np.abs(last_step(predict(model, x)) - last_step(onnx_model.run(x))))
            )
            worst = max(worst, diff)
            if not diff <= PARITY_TOLERANCE:
                raise ExportError(
                    f"ORT differs from Keras by {diff:.2e} (limit {PARITY_TOLERANCE:g}) at batch "
                    f"{batch}, length {length}"
                )
    return worst


def check_mc(
    model: keras.Model, onnx_model: OnnxForecaster, path: Path, x: FloatArray
) -> dict[str, Any]:
    """MC dropout is alive, seeded, row-independent and agrees with Keras' own MC dropout."""
    if not onnx_model.masks:
        return {"mc_dropout": False}
    samples = onnx_model.mc_samples(x[:8], MC_SAMPLES, seed=7)
    spread = float(samples.std(axis=0).mean())
    if not spread > 0:
        raise ExportError("MC dropout is dead in ORT: all samples of one batched call are equal")
    again = OnnxForecaster(
        path, onnx_model.masks, onnx_model.rate, onnx_model.repeat_rows
    ).mc_samples(x[:8], MC_SAMPLES, 7)
    if not np.array_equal(samples, again):
        raise ExportError("the same seed gave different MC samples from a new ORT session")
    # A row's output must not depend on its neighbours in the batch.
    widths = [w for _, w in onnx_model.masks]
    masks = draw_masks(np.random.default_rng(1), 64, widths, onnx_model.rate)
    together = onnx_model.run(x[:64], masks)
    alone = onnx_model.run(x[:1], [m[:1] for m in masks])
    row_diff = float(np.max(np.abs(together[:1] - alone)))
    if not row_diff <= 1e-6:
        raise ExportError(f"a row's output changed with its batch neighbours by {row_diff:.2e}")
    repeat_diff = None
    if onnx_model.repeat_rows:  # 8 windows x 8 paths: sent once each == sent tiled
        paths = [m[:64] for m in masks]
        once = onnx_model.run(x[:8], paths)
        tiled = onnx_model.run(np.repeat(x[:8], 8, axis=0), paths)
        repeat_diff = float(np.max(np.abs(once - tiled)))
        if not repeat_diff <= 1e-6:
            raise ExportError(f"repeated rows differ from tiled windows by {repeat_diff:.2e}")
    # ORT's MC (numpy masks) vs Keras' own MC (masks drawn by TensorFlow): same distribution.
    subset = x[:200]
    ort_s = onnx_model.mc_samples(subset, 200, seed=11)
    keras_s = last_step_samples(keras_mc_samples(model, subset, 200))
    keras_std = float(keras_s.std(axis=0).mean())
    mean_gap = float(np.abs(ort_s.mean(axis=0) - keras_s.mean(axis=0)).mean())
    std_ratio = float(ort_s.std(axis=0).mean() / keras_std)
    if not (mean_gap < 0.3 * keras_std and 0.8 < std_ratio < 1.25):
        raise ExportError(
            f"ORT MC dropout disagrees with Keras' own: mean gap {mean_gap:.4f} (limit "
            f"{0.3 * keras_std:.4f}), std ratio {std_ratio:.3f} (limit 0.8..1.25)"
        )
    return {
        "mc_dropout": True,
        "mc_std_mean": round(spread, 6),
        "row_independence_max_abs_diff": row_diff,
        "repeat_rows_max_abs_diff": repeat_diff,
        "keras_mc_mean_gap": round(mean_gap, 6),
        "keras_mc_std": round(keras_std, 6),
        "ort_vs_keras_mc_std_ratio": round(std_ratio, 4),
    }


def last_step_samples(samples: FloatArray) -> FloatArray:
    return samples[:, :, -1, :] if samples.ndim == 4 else samples


def measure_min_length(
    onnx_model: OnnxForecaster, valid: Windows, input_length: int, floor: int = 2
) -> int:
    """Shortest context whose validation MSE stays within 2x of the full window's, never below
    `floor` (2, or a season for models that read the last season of the window in-graph)."""
    x, truth = valid.x[:1000], last_step(valid.y[:1000])
    full = float(np.mean((last_step(onnx_model.run_chunked(x)) - truth) ** 2))
    for length in range(floor, input_length):
        mse = float(np.mean((last_step(onnx_model.run_chunked(x[:, -length:])) - truth) ** 2))
        if mse <= 2 * full:
            return length
    return input_length


def evaluate(
    onnx_model: OnnxForecaster, task: Task, seed: int
) -> tuple[dict[str, Any], dict[str, FloatArray]]:
    """Validation metrics of the ONNX model (dropout off and MC mean) beside naive and linear."""
    valid = task.valid
    unit = task.scaling.scale[0] if task.scaling.method != "none" else 1.0
    truth = last_step(valid.y)
    point = last_step(onnx_model.run_chunked(valid.x))
    preds: dict[str, FloatArray] = {"point": point}
    metrics: dict[str, Any] = {
        "dataset": task.description,
        "split": "validation",
        "windows": len(valid),
        "scaled_units": task.scaling.method != "none",
        "model": errors(point, truth, unit),
    }
    if onnx_model.masks:
        samples = onnx_model.mc_samples(valid.x, MC_SAMPLES, seed)
        preds["mc_mean"] = samples.mean(axis=0)
        preds["lo"], preds["hi"] = np.quantile(samples, [0.05, 0.95], axis=0)
        preds["samples"] = samples
        metrics["model_mc_mean"] = {**errors(preds["mc_mean"], truth, unit), "samples": MC_SAMPLES}
        metrics["mc_interval_coverage"] = interval_coverage(samples, truth, COVERAGE_LEVELS)
    metrics |= naive_errors(valid, task.config.season, unit)
    metrics["linear"] = errors(LinearBaseline(task.train).predict(valid.x), truth, unit)
    if task.drift is not None:
        drift_truth = last_step(task.drift.y)
        metrics["drift"] = {
            "period": task.config.drift_eval or task.config.test_data,
            "windows": len(task.drift),
            "model": errors(last_step(onnx_model.run_chunked(task.drift.x)), drift_truth, unit),
            **naive_errors(task.drift, task.config.season, unit),
        }
    return metrics, preds


def compare_with_baselines(
    onnx_model: OnnxForecaster, task: Task, allow_worse: bool
) -> dict[str, Any]:
    """The exported graph (dropout off) against the baselines on validation and test windows,
    printed; ExportError when it loses on the held-out windows and `allow_worse` is not set."""

    def point(x: FloatArray) -> FloatArray:
        return last_step(onnx_model.run_chunked(x))

    season = max(1, task.config.season)
    comparisons = {
        "validation": compare(task, task.valid, point, task.valid_origins, season, "validation")
    }
    if task.test is not None and task.test is not task.valid:
        comparisons["test"] = compare(task, task.test, point, task.test_origins, season, "test")
    for comparison in comparisons.values():
        print(table(comparison), flush=True)
    verdict = decide(comparisons, allow_worse)
    print(f"gate ({verdict['split']} windows): {verdict['message']}", flush=True)
    if not verdict["passed"]:
        if not allow_worse:
            raise ExportError(
                f"not exported: on the {verdict['split']} windows the {verdict['message']}; "
                "pass --allow-worse-than-baseline to export it anyway"
            )
        print("gate: exported anyway (--allow-worse-than-baseline)", flush=True)
    return {**comparisons, "gate": verdict}


def naive_errors(windows: Windows, season: int, unit: float) -> dict[str, Any]:
    """`naive` (last value) and, for a season > 1, `naive_<season>` errors on these windows."""
    truth = last_step(windows.y)
    out = {"naive": errors(naive_forecast(windows), truth, unit)}
    if 1 < season <= windows.x.shape[1]:
        out[f"naive_{season}"] = errors(naive_forecast(windows, season=season), truth, unit)
    return out


# Held-out windows needed to calibrate at all (below tasks.MIN_CALIBRATION_WINDOWS the task warns).
CALIBRATION_MIN_FIT = 10


def calibration_block(n: int, season: int) -> int:
    """Windows per block of the interleaved split: one season (a week of daily data, a day of
    hourly), 7 without one, and small enough for at least 4 blocks."""
    return max(1, min(season if season > 1 else 7, n // 4))


def calibration_split(n: int, split: str, block: int = 7) -> tuple[Any, Any]:
    """Indices (fit, check) of the test windows, in time order.

    `interleaved`: alternate blocks of `block` consecutive windows (calibration_block), so both
    parts span the same seasons and holidays (the default: a time-ordered split of a June..February
    test period fits on summer and checks on the holiday season); neighbouring blocks share target
    days, which makes the check somewhat optimistic. `halves`: the first half fits, the second
    checks, as a forecaster meets the future.
    """
    if split == "halves":
        return np.arange(n // 2), np.arange(n // 2, n)
    parity = (np.arange(n) // block) % 2
    return np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)


def fit_calibration(method: str, samples: FloatArray, truth: FloatArray) -> dict[str, Any]:
    """The calibration of forecaster.json (`method` and its fields) fitted on [S, N, H] samples."""
    if method == "conformal":
        scores = conformal_scores(samples, truth, CONFORMAL_LEVELS)
        return {"method": method, "levels": list(CONFORMAL_LEVELS), "scores": scores}
    return {"method": method, "factors": calibrate_spread(samples, truth, COVERAGE_LEVELS)}


def apply_calibration(calibration: dict[str, Any], samples: FloatArray) -> Any:
    """The served paths [S, N, H] for raw MC samples: the format's map, as the service applies it
    (forecaster_format.calibration)."""
    if calibration["method"] == "conformal":
        return conformal_map(samples, calibration["levels"], calibration["scores"])
    return spread_map(samples, calibration["factors"])


def calibrate(onnx_model: OnnxForecaster, task: Task, seed: int) -> dict[str, Any] | None:
    """Fit the interval calibration on one part of the test split (never trained or early-stopped
    on) and report coverage before and after on the other part, which the fit never saw; the
    service serves calibrated intervals by default.

    `conformal` (default): split-conformal quantiles of |y - MC mean| / MC std per step and level;
    `spread_factor`: one factor on the MC spread per step (fits 80% but not the heavy tails).
    The split is task.config.calibration_split; the other split's coverage is recorded too."""
    if task.test is None or not onnx_model.masks or len(task.test) < CALIBRATION_MIN_FIT:
        return None
    truth = last_step(task.test.y)
    samples = onnx_model.mc_samples(task.test.x, MC_SAMPLES, seed + 1)
    method, split = task.config.calibration, task.config.calibration_split
    out: dict[str, Any] = {"method": method, "split": split}
    dates = task.test_dates
    block = calibration_block(len(truth), task.config.season)
    out["block"] = block
    for name in (split, *(s for s in ("interleaved", "halves") if s != split)):
        fit, check = calibration_split(len(truth), name, block)
        fitted = fit_calibration(method, samples[:, fit], truth[fit])
        result = {
            "fit_windows": len(fit),
            "check_windows": len(check),
            "coverage_raw": interval_coverage(samples[:, check], truth[check], COVERAGE_LEVELS),
            "coverage_calibrated": interval_coverage(
                apply_calibration(fitted, samples[:, check]), truth[check], COVERAGE_LEVELS
            ),
        }
        if dates is not None:  # the first forecast day of the first and last window of each part
            result["fit_period"] = f"{dates[fit[0]]}..{dates[fit[-1]]}"
            result["check_period"] = f"{dates[check[0]]}..{dates[check[-1]]}"
        if name == split:
            out |= {"coverage_levels": list(COVERAGE_LEVELS)} | result
        else:
            out[f"check_{name}"] = result
    # The split measured the method on windows its fit never saw; the served calibration is
    # fitted on every held-out window (twice the data: steadier tails on small test parts).
    return out | fit_calibration(method, samples, truth) | {"served_fit_windows": len(truth)}


def _mean_coverage(coverage: dict[str, list[float]]) -> dict[str, float]:
    return {level: round(float(np.mean(values)), 3) for level, values in coverage.items()}


def describe(architecture: str, kind: str, members: int) -> str:
    if members == 1:
        return f"{architecture} {kind} forecaster"
    return f"mean of {members} {architecture} {kind} forecasters (seeds)"


def export(
    model: keras.Model,
    task: Task,
    out_dir: Path,
    name: str,
    architecture: str,
    training_info: dict[str, Any],
    version: int = 1,
    allow_worse: bool = False,
) -> dict[str, Any]:
    """Convert, check, measure and write models/<name>/ atomically; returns forecaster.json.

    Refused (ExportError, nothing written) when the model loses to the best baseline over the
    horizon on the held-out windows, unless `allow_worse` (training.comparison)."""
    started = time.monotonic()
    laps: dict[str, float] = {}

    def lap(phase: str) -> None:  # where export's time goes, printed at the end
        laps[phase] = time.monotonic() - started - sum(laps.values())

    model = with_repeat_rows(model)  # runs saved before RepeatRows existed export with it too
    masks = mask_inputs(model)
    rate = dropout_rate(model)
    repeat_rows = any(isinstance(layer, RepeatRows) for layer in all_layers(model))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside the target (same filesystem, so the final rename is atomic), hidden by the dot.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir.parent) as tmp:
        staging = Path(tmp) / name
        onnx_path = staging / str(version) / "model.onnx"
        onnx_path.parent.mkdir(parents=True)
        print(f"export: converting with tf2onnx {tf2onnx.__version__}, opset {OPSET}", flush=True)
        output = convert(model, onnx_path)
        lap("convert")
        onnx_model = OnnxForecaster(onnx_path, masks, rate, repeat_rows)
        floor = rows_read(model, task)
        parity = check_parity(model, onnx_model, task, floor)
        lap("parity")
        print(f"export: parity Keras vs ORT, dropout off: max abs diff {parity:.2e}", flush=True)
        baselines = compare_with_baselines(onnx_model, task, allow_worse)
        lap("baselines")
        x_check = (
            task.valid.x
            if len(task.valid) >= 200
            else task.sample_inputs(200, task.config.input_length, np.random.default_rng(0))
        )
        mc = check_mc(model, onnx_model, onnx_path, x_check)
        lap("MC checks")
        print(f"export: MC dropout checks passed {mc}", flush=True)
        min_length = measure_min_length(onnx_model, task.valid, task.config.input_length, floor)
        lap("min_length")
        metrics, preds = evaluate(onnx_model, task, task.config.seed)
        lap("validation metrics")
        metrics["checks"] = {"parity_max_abs_diff": parity, **mc}
        metrics["baselines"] = baselines
        calibration = calibrate(onnx_model, task, task.config.seed)
        lap("calibration")
        if calibration is not None and "samples" in preds:  # the report draws the served band
            served = apply_calibration(calibration, preds.pop("samples"))
            preds["lo"], preds["hi"] = np.quantile(served, [0.05, 0.95], axis=0)
            preds["calibrated"] = np.ones(1, np.float32)
        if calibration is not None:
            print(
                f"export: calibration {calibration['method']}; held-out coverage raw "
                f"{_mean_coverage(calibration['coverage_raw'])} -> calibrated "
                f"{_mean_coverage(calibration['coverage_calibrated'])}",
                flush=True,
            )
        spec: dict[str, Any] = {
            "schema_version": 1,
            "name": name,
            "version": version,
            "architecture": architecture,
            "description": f"{describe(architecture, task.config.kind, ensemble_size(model))}, "
            f"{task.description}",
            "input_length": task.config.input_length,
            "min_length": min_length,
            "horizon": task.config.horizon,
            "output": output,
            "features": task.features,
            "target": 0,
            "frequency": task.frequency,
            "scaling": task.scaling.to_json(),
            "onnx": {
                "file": f"{version}/model.onnx",
                "opset": OPSET,
                "input": {"name": "x", "dtype": "float32", "shape": [None, None, task.n_features]},
                "output": {
                    "name": "y",
                    "dtype": "float32",
                    "shape": [None, None, task.config.horizon]
                    if output == "sequence"
                    else [None, task.config.horizon],
                },
                "mc_dropout": {
                    "method": "mask_inputs",
                    "rate": rate,
                    "masks": [{"name": n, "size": w} for n, w in masks],
                    "repeat_rows": repeat_rows,
                },
            },
            "metrics": metrics,
            "calibration": calibration,
            "training": {**training_info, "task": task.config.to_json(), "notes": task.notes},
            "provenance": {
                "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "model_sha256": sha256(onnx_path),
                "command": " ".join(["python -m training", *sys.argv[1:]]),
            },
        }
        try:  # what the service will read: refused here rather than unavailable there
            validate_spec(spec)
        except SpecError as exc:
            raise ExportError(f"not exported: {exc}") from None
        (staging / "forecaster.json").write_text(json.dumps(spec, indent=2) + "\n")
        write_config_pbtxt(spec, staging)  # so Triton can serve the same models/ tree
        from training.report import plot_report

        plot_report(staging / "report.png", spec, task, preds)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    lap("report and write")
    print(
        f"export: wrote {out_dir} in {time.monotonic() - started:.1f}s ("
        + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in laps.items())
        + ")",
        flush=True,
    )
    return spec
