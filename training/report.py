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
    """Three validation windows with truth, forecast, MC mean and 90% band; MSE per horizon step."""
    valid = task.valid
    truth = last_step(valid.y)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    n_in = valid.x.shape[1]
    future = np.arange(n_in, n_in + truth.shape[1])
    picks = np.linspace(0, len(valid) - 1, 3).astype(int)
    for ax, i in zip(axes[:3], picks, strict=True):
        ax.plot(np.arange(n_in), valid.x[i, :, 0], ".-", color="0.3", label="context")
        ax.plot(future, truth[i], "o-", color="black", label="truth")
        ax.plot(future, preds["point"][i], "x-", color="tab:red", label="forecast (dropout off)")
        if "mc_mean" in preds:
            ax.plot(future, preds["mc_mean"][i], "-", color="tab:blue", label="MC mean")
            ax.fill_between(
                future,
                preds["lo"][i],
                preds["hi"][i],
                color="tab:blue",
                alpha=0.25,
                label="MC 5-95%",
            )
        ax.set_title(f"validation window {i}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    metrics = spec["metrics"]
    steps = np.arange(1, truth.shape[1] + 1)
    for key, style in (
        ("model", "o-"),
        ("model_mc_mean", "s--"),
        ("linear", "^-"),
        ("naive", "v-"),
    ):
        if key in metrics:
            axes[3].plot(steps, metrics[key]["mse_per_step"], style, label=key)
    axes[3].set_yscale("log")
    axes[3].set_xlabel("steps ahead")
    axes[3].set_title("validation MSE per horizon step")
    axes[3].legend(fontsize=8)
    axes[3].grid(alpha=0.3)
    fig.suptitle(f"{spec['name']}: {spec['description']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
