"""Keras training: seeds, early stopping, one progress line per epoch."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from training.architectures import mask_inputs
from training.datasets import FloatArray, Windows


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def model_inputs(
    model: keras.Model, x: FloatArray, masks: list[FloatArray] | None = None
) -> list[Any]:
    """[x, mask_0, ...]: all-ones masks (dropout off at inference) unless masks are given."""
    if masks is None:
        masks = [np.ones((len(x), width), np.float32) for _, width in mask_inputs(model)]
    return [x, *masks]


@keras.saving.register_keras_serializable(package="forecast")  # type: ignore[untyped-decorator]
def last_time_step_mse(y_true: Any, y_pred: Any) -> Any:
    """The book's metric: MSE of the forecast made at the last time step (seq2seq) or of [B, H]."""
    if len(y_pred.shape) == 3:
        y_true, y_pred = y_true[:, -1], y_pred[:, -1]
    return keras.ops.mean(keras.ops.square(y_true - y_pred))


@keras.saving.register_keras_serializable(package="forecast")  # type: ignore[untyped-decorator]
def last_time_step_mae(y_true: Any, y_pred: Any) -> Any:
    """MAE of the forecast made at the last time step (seq2seq) or of [B, H]: what an MAE-trained
    model is early-stopped on."""
    if len(y_pred.shape) == 3:
        y_true, y_pred = y_true[:, -1], y_pred[:, -1]
    return keras.ops.mean(keras.ops.abs(y_true - y_pred))


def monitored(loss: str) -> str:
    """The validation metric early stopping and the learning-rate schedule follow: the last step's
    MAE for an MAE loss (an MSE monitor stopped an MAE-trained global model after its first
    epoch), else the book's last-step MSE (also for Huber, which tends to it for small errors)."""
    return "val_last_time_step_mae" if loss == "mae" else "val_last_time_step_mse"


class EpochLine(keras.callbacks.Callback):  # type: ignore[misc]
    """One short line per epoch (CI logs have no terminal for Keras' progress bar)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        print(
            f"  epoch {epoch + 1:3d}/{self.epochs}  loss {logs.get('loss', float('nan')):.5f}  "
            f"val_loss {logs.get('val_loss', float('nan')):.5f}  "
            f"val_last_step_mse {logs.get('val_last_time_step_mse', float('nan')):.5f}  "
            f"val_last_step_mae {logs.get('val_last_time_step_mae', float('nan')):.5f}  "
            f"lr {float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)):.1e}  "
            f"{time.monotonic() - self.started:6.1f}s",
            flush=True,
        )


def train(
    model: keras.Model,
    train_windows: Windows,
    valid_windows: Windows,
    epochs: int,
    batch_size: int = 32,
    patience: int = 10,
    learning_rate: float = 1e-3,
    loss: str = "mse",
    huber_delta: float = 1.0,
) -> dict[str, Any]:
    """Fit with Adam on `loss` (mse, mae, or huber with `huber_delta` in scaled units, robust to
    holidays and other outliers), early stopping on the validation last-step MSE (best weights
    restored)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.Huber(huber_delta) if loss == "huber" else loss,
        metrics=[last_time_step_mse, last_time_step_mae],
    )
    monitor = monitored(loss)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode="min",
            patience=patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor,
            mode="min",
            factor=0.5,
            patience=max(2, patience // 2),
            min_lr=1e-5,
        ),
        EpochLine(epochs),
    ]
    started = time.monotonic()
    history = model.fit(
        model_inputs(model, train_windows.x),
        train_windows.y,
        validation_data=(model_inputs(model, valid_windows.x), valid_windows.y),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=0,
    )
    best = int(np.argmin(history.history[monitor]))
    return {
        "epochs_run": len(history.history["loss"]),
        "best_epoch": best + 1,
        "seconds": round(time.monotonic() - started, 1),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "loss": loss if loss != "huber" else f"huber({huber_delta:g})",
    }


def predict(model: keras.Model, x: FloatArray, masks: list[FloatArray] | None = None) -> FloatArray:
    """Keras inference (training=False), called eagerly in chunks: model.predict may compile with XLA,
    whose fused kernels differ from the traced graph tf2onnx converts by about 1e-5."""
    inputs = model_inputs(model, x, masks)
    chunks = [
        np.asarray(model([t[i : i + 1024] for t in inputs], training=False))
        for i in range(0, len(x), 1024)
    ]
    return np.concatenate(chunks)


def keras_mc_samples(model: keras.Model, x: FloatArray, samples: int) -> FloatArray:
    """Keras' own MC dropout (training=True draws fresh variational masks), [S, N, ...].

    One call per chunk of about 8192 paths, each window repeated S times in the batch: the masks are
    drawn per row, so the S copies of a window are S independent draws. (One eager call per sample
    ran the recurrent layers' Python step loop S times: 65 of a small GRU's 78 s of export.)"""
    tiled = np.repeat(x, samples, axis=0)  # window n's S paths at rows n*S .. n*S + S - 1
    inputs = model_inputs(model, tiled)
    chunks = [
        np.asarray(model([t[i : i + 8192] for t in inputs], training=True))
        for i in range(0, len(tiled), 8192)
    ]
    out = np.concatenate(chunks)
    return np.swapaxes(out.reshape(len(x), samples, *out.shape[1:]), 0, 1)
