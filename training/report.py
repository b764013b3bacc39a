"""report.png: what training measured, as a picture (forecasts with MC bands, errors per step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.datasets import FloatArray
from training.evaluation import last_step
from training.tasks import Task


def plot_report(path: Path, spec: dict[str, Any], task: Task, preds: dict[str, FloatArray]) -> None:
    """Three validation windows with truth, forecast, MC mean and 90% band (the served, calibrated
    one when the model has a calibration), in the data's units; error per horizon step against the
    baselines (MAE in data units when the target was scaled, else MSE)."""
    valid = task.valid
    scale, offset = task.scaling.scale[0], task.scaling.mean[0]
    if task.scaling.method == "none":
        scale, offset = 1.0, 0.0

    def units(v: Any) -> Any:
        return np.asarray(v) * scale + offset

    truth = last_step(valid.y)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    n_in = valid.x.shape[1]
    future = np.arange(n_in, n_in + truth.shape[1])
    picks = np.linspace(0, len(valid) - 1, 3).astype(int)
    band = "calibrated 5-95%" if "calibrated" in preds else "MC 5-95%"
    for ax, i in zip(axes[:3], picks, strict=True):
        ax.plot(np.arange(n_in), units(valid.x[i, :, 0]), ".-", color="0.3", label="context")
        ax.plot(future, units(truth[i]), "o-", color="black", label="truth")
        ax.plot(
            future, units(preds["point"][i]), "x-", color="tab:red", label="forecast (dropout off)"
        )
        if "mc_mean" in preds:
            ax.plot(future, units(preds["mc_mean"][i]), "-", color="tab:blue", label="MC mean")
            ax.fill_between(
                future,
                units(preds["lo"][i]),
                units(preds["hi"][i]),
                color="tab:blue",
                alpha=0.25,
                label=band,
            )
        ax.set_title(f"validation window {i}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    metrics = spec["metrics"]
    steps = np.arange(1, truth.shape[1] + 1)
    in_units = "mae_original_units_per_step" in metrics["model"]
    measure = "mae_original_units_per_step" if in_units else "mse_per_step"
    keys = ["model", "model_mc_mean", "linear", "naive"]
    keys += [k for k in metrics if k.startswith("naive_")]
    styles = ["o-", "s--", "^-", "v-", "D-"]
    for key, style in zip([k for k in keys if k in metrics], styles, strict=False):
        axes[3].plot(steps, metrics[key][measure], style, label=key)
    axes[3].set_yscale("log")
    axes[3].set_xlabel("steps ahead")
    axes[3].set_title(f"validation {'MAE (data units)' if in_units else 'MSE'} per horizon step")
    axes[3].legend(fontsize=8)
    axes[3].grid(alpha=0.3)
    fig.suptitle(f"{spec['name']}: {spec['description']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
