"""Keras builders for the forecasters, each with Monte-Carlo dropout sites driven by mask inputs.

Every model takes `x` [B, T, F] plus one mask input per dropout site, `mc_mask_<i>` [B, units], and
returns `y`: [B, T, H] (seq2seq, a forecast at every time step as in the book) or [B, H] (seq2vec).
In training the dropout layers draw their own variational masks (one per sequence, shared by all time
steps); at inference they multiply by the mask inputs, so the exported graph has no random operator and
the service drives MC dropout by feeding masks (all ones: dropout off). See docs/model-repository.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers, ops

from training.datasets import TargetKind

MASK_PREFIX = "mc_mask_"


@keras.saving.register_keras_serializable(package="forecast")
class MaskedDropout(layers.Layer):  # type: ignore[misc]
    """Variational dropout whose inference-time mask is a model input.

    training=True: a fresh Bernoulli(keep) / keep mask per sequence and channel (Keras' own MC dropout);
    otherwise: `inputs * mask[:, None, :]` (or `inputs * mask` for [B, U] inputs).
    """

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, inputs: Any, mask_input: Any, training: bool | None = None) -> Any:
        sequence = len(inputs.shape) == 3
        if training and self.rate > 0:
            keep = 1.0 - self.rate
            shape = (
                (ops.shape(inputs)[0], 1, ops.shape(inputs)[-1]) if sequence else ops.shape(inputs)
            )
            draw = keras.random.uniform(shape, seed=self.seed_generator)
            return inputs * ops.cast(draw < keep, inputs.dtype) / keep
        return inputs * (ops.expand_dims(mask_input, 1) if sequence else mask_input)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="forecast")
class WindowLevel(layers.Layer):  # type: ignore[misc]
    """Per-window normalisation for series that drift in level (CTA ridership halved after 2020).

    The first `numeric` columns are divided by their own mean over the window's last `season`
    steps (a week for daily data: the current level, trend included), minus 1; the rest (one-hot
    covariates) pass unchanged. Returns the normalised window and the forecast's base [B, horizon]:
    the seasonal naive forecast (the target `season` steps before each forecast step), so the
    network learns a relative correction to it and can never do worse than it by much.

    With `weeks` > 1 the base is robust instead: per position in the season, the median of the
    last `weeks` seasons (a holiday last week no longer becomes next week's forecast), and the
    network sees the window's last `weeks` seasons with, per numeric column, both the value over
    the level and the value over that median profile (the deseasonalised residual), minus 1.
    """

    def __init__(
        self, numeric: int, horizon: int, season: int = 7, weeks: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.numeric = numeric
        self.horizon = horizon
        self.season = season
        self.weeks = weeks

    def call(self, inputs: Any) -> Any:
        if self.weeks > 1:
            return self._median_profile(inputs)
        values = inputs[:, :, : self.numeric]
        level = ops.mean(values[:, -self.season :, :], axis=1, keepdims=True) + 1e-6
        normalised = ops.concatenate([values / level - 1.0, inputs[:, :, self.numeric :]], axis=-1)
        last_season = inputs[:, -self.season :, 0]
        base = ops.take(last_season, [h % self.season for h in range(self.horizon)], axis=1)
        return normalised, base

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "numeric": self.numeric,
            "horizon": self.horizon,
            "season": self.season,
            "weeks": self.weeks,
        }

    def _median_profile(self, inputs: Any) -> Any:
        span = self.season * self.weeks
        recent = inputs[:, -span:, :]
        values = recent[:, :, : self.numeric]
        level = ops.mean(values[:, -self.season :, :], axis=1, keepdims=True) + 1e-6
        # [B, weeks, season, numeric] -> sorted over the weeks (last axis) -> the median
        seasons = ops.transpose(
            ops.reshape(values, (-1, self.weeks, self.season, self.numeric)), (0, 2, 3, 1)
        )
        ordered = ops.sort(seasons, axis=-1)
        middle = self.weeks // 2
        profile = ordered[..., middle]
        if self.weeks % 2 == 0:
            profile = 0.5 * (profile + ordered[..., middle - 1])
        profile = profile + 1e-6  # [B, season, numeric], aligned with the window's last season
        tiled = ops.tile(profile, (1, self.weeks, 1))
        normalised = ops.concatenate(
            [values / level - 1.0, values / tiled - 1.0, recent[:, :, self.numeric :]], axis=-1
        )
        base = ops.take(profile[:, :, 0], [h % self.season for h in range(self.horizon)], axis=1)
        return normalised, base


@keras.saving.register_keras_serializable(package="forecast")
class InstanceNorm(layers.Layer):  # type: ignore[misc]
    """Per-window normalisation (the RevIN idea, without its learned affine part).

    Each window's own location and spread are removed from its first `numeric` columns before the
    network sees them, and put back on the forecast (RestoreInstance), so a level shift between the
    training data and today moves the forecast with it instead of pulling it back towards the
    training level. The network sees the window centred on its mean and divided by its standard
    deviation; the forecast is put back at the window's last value (as NLinear does: the naive
    forecast is the network's zero, which it only has to correct) times that spread. No division by the level: zero and negative values are safe; the spread has a floor
    relative to the window's magnitude, so a constant window gives zeros, not a blow-up.

    `causal=False` (seq2vec): statistics of the whole window, [B, 1, F].
    `causal=True` (seq2seq, a forecast at every step t): at each step t the mean and spread of the
    prefix ending at t and its own value, [B, T, F], so the output at t never sees the window's later
    values; at the last step they are the whole window's, the same as seq2vec's for the served
    forecast. Prefix sums run on values shifted by the window's first row (causal too), which keeps
    float32 cancellation small for series far from zero.

    Returns the normalised window and the target's location and spread ([B, 1] or [B, T]).
    """

    def __init__(self, numeric: int, causal: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.numeric = numeric
        self.causal = causal

    def call(self, inputs: Any) -> Any:
        values = inputs[:, :, : self.numeric]
        if self.causal:
            shifted = values - values[:, :1, :]
            count = ops.cumsum(ops.ones_like(shifted[:1, :, :1]), axis=1)  # [1, T, 1]: 1..T
            mean = ops.cumsum(shifted, axis=1) / count
            variance = ops.maximum(ops.cumsum(shifted * shifted, axis=1) / count - mean**2, 0.0)
            magnitude = ops.cumsum(ops.abs(values), axis=1) / count
            mean = mean + values[:, :1, :]
            location = values
        else:
            mean = ops.mean(values, axis=1, keepdims=True)
            variance = ops.mean(ops.square(values - mean), axis=1, keepdims=True)
            magnitude = ops.mean(ops.abs(values), axis=1, keepdims=True)
            location = values[:, -1:, :]
        spread = ops.sqrt(variance + ops.square(1e-4 * magnitude) + 1e-10)
        normalised = ops.concatenate(
            [(values - mean) / spread, inputs[:, :, self.numeric :]], axis=-1
        )
        return normalised, location[:, :, 0], spread[:, :, 0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "numeric": self.numeric, "causal": self.causal}


@keras.saving.register_keras_serializable(package="forecast")
class RestoreInstance(layers.Layer):  # type: ignore[misc]
    """Inverse of InstanceNorm for the target: y = location + spread * y_normalised.

    `relative` is [P, H] (seq2vec) or [P, T, H] (seq2seq); location and spread come from `x`
    ([B, 1] or [B, T]) and are repeated to the P = B x S MC paths as RestoreLevel does. `linear`
    [B, H], when given (seq2vec), is added to the network's [P, H] before the spread is put back:
    the linear path (`_linear_path`), outside the MC-dropout sites."""

    def call(self, relative: Any, location: Any, spread: Any, linear: Any = None) -> Any:
        rows = ops.shape(relative)[0]
        location, spread = repeat_rows(location, rows), repeat_rows(spread, rows)
        if linear is not None:  # the linear path of the window (seq2vec), [B, H] -> [P, H]
            relative = relative + repeat_rows(linear, rows)
        if len(relative.shape) == 3:  # [P, T, H] against [P, T]: one location per step
            location, spread = ops.expand_dims(location, -1), ops.expand_dims(spread, -1)
        return location + spread * relative


@keras.saving.register_keras_serializable(package="forecast")
class RestoreLevel(layers.Layer):  # type: ignore[misc]
    """Inverse of WindowLevel for the target: y = (1 + y_relative) * base.

    The base comes from `x` [B, ...], the relative forecast from the paths [P, ...] (RepeatRows):
    each base row is repeated P / B times to meet them."""

    def call(self, relative: Any, level: Any) -> Any:
        return (1.0 + relative) * repeat_rows(level, ops.shape(relative)[0])


def repeat_rows(tensor: Any, rows: Any) -> Any:
    """[B, ...] -> [rows, ...], each row repeated rows / B times in place (as np.repeat, axis 0)."""
    batch = ops.shape(tensor)[0]
    per_row = rows // batch
    expanded = ops.expand_dims(tensor, 1)
    tiled = ops.broadcast_to(
        expanded, (batch, per_row, *[ops.shape(tensor)[i] for i in range(1, len(tensor.shape))])
    )
    return ops.reshape(tiled, (rows, *[ops.shape(tensor)[i] for i in range(1, len(tensor.shape))]))


@keras.saving.register_keras_serializable(package="forecast")
class RepeatRows(layers.Layer):  # type: ignore[misc]
    """Before the first MC-dropout site: the rows of `x` [B, ...] meet the mask rows [P, U].

    MC dropout runs P = B x S paths, S per series. Everything before the first dropout site is the
    same for the S paths of a series, so the service sends each window once and the S mask rows,
    and the graph repeats the (cheap to copy) activations here instead of computing them S times:
    for the shipped LSTM a third of the FLOPs of an MC request, for the WaveNet half. With as many
    mask rows as `x` rows (training, dropout off) this is the identity.
    """

    def call(self, inputs: Any, mask_input: Any) -> Any:
        return repeat_rows(inputs, ops.shape(mask_input)[0])


@keras.saving.register_keras_serializable(package="forecast")
class FlattenLast(layers.Layer):  # type: ignore[misc]
    """[B, T, F] -> [B, steps * F]: the window's last `steps` rows, flattened (T may be dynamic)."""

    def __init__(self, steps: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = steps

    def call(self, inputs: Any) -> Any:
        return ops.reshape(inputs[:, -self.steps :, :], (-1, self.steps * int(inputs.shape[-1])))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package="forecast")
class ScaleBase(layers.Layer):  # type: ignore[misc]
    """base * (1 + correction): a linear skip from the normalised window adjusts the base."""

    def call(self, base: Any, correction: Any) -> Any:
        return base * (1.0 + correction)


@keras.saving.register_keras_serializable(package="forecast")
class LastStep(layers.Layer):  # type: ignore[misc]
    """[B, T, U] -> [B, U]: the seq2vec head reads the last time step."""

    def call(self, inputs: Any) -> Any:
        return inputs[:, -1, :]


class _Sites:
    """Hands out mask inputs for the dropout sites of one model, in order."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.inputs: list[Any] = []

    def drop(self, tensor: Any) -> Any:
        units = int(tensor.shape[-1])
        mask = keras.Input((units,), name=f"{MASK_PREFIX}{len(self.inputs)}")
        if not self.inputs:  # the first site: from here on, one row per MC path
            tensor = RepeatRows(name="repeat_rows")(tensor, mask)
        self.inputs.append(mask)
        return MaskedDropout(self.rate, name=f"mc_dropout_{len(self.inputs) - 1}")(tensor, mask)


def _input(
    n_features: int,
    kind: TargetKind,
    window_norm: int,
    horizon: int,
    season: int,
    weeks: int = 1,
    instance_norm: int = 0,
) -> tuple[Any, Any, Any]:
    """The `x` input, the tensor the network sees, and how the head restores the target: None,
    the WindowLevel base, or the InstanceNorm (location, spread) pair."""
    x = keras.Input((None, n_features), name="x")
    if instance_norm:
        if window_norm:
            raise ValueError("window_norm and instance_norm are alternatives")
        normalised, location, spread = InstanceNorm(
            instance_norm, causal=kind == "seq2seq", name="instance_norm"
        )(x)
        return x, normalised, (location, spread)
    if not window_norm:
        return x, x, None
    if kind != "seq2vec":
        # A seq2seq output at step t must not see the window's later values through the level.
        raise ValueError("window normalisation needs kind='seq2vec'")
    normalised, level = WindowLevel(window_norm, horizon, season, weeks, name="window_level")(x)
    return x, normalised, level


def _head(h: Any, horizon: int, kind: TargetKind, level: Any = None, linear: Any = None) -> Any:
    if kind == "seq2vec" and len(h.shape) == 3:
        h = LastStep(name="last_step")(h)
    if level is None:
        return layers.Dense(horizon, name="y")(h)
    relative = layers.Dense(horizon, name="relative")(h)
    if isinstance(level, tuple):
        if linear is not None:
            return RestoreInstance(name="y")(relative, *level, linear)
        return RestoreInstance(name="y")(relative, *level)
    return RestoreLevel(name="y")(relative, level)


def _linear_path(
    normalised: Any, skip: int, horizon: int, kind: TargetKind, instance_norm: int
) -> Any:
    """With instance normalisation, a seq2vec model's linear path: least squares' shape (NLinear)
    from the last `skip` normalised rows to the normalised forecast, beside the network, which
    then learns what is left; the model is at least as expressive as the linear baseline on the
    same window. None when not asked for or not applicable (seq2seq: its outputs at earlier steps
    must not see the window's later rows)."""
    if not (skip and instance_norm and kind == "seq2vec"):
        return None
    seen = FlattenLast(skip, name="skip_window")(normalised)
    return layers.Dense(horizon, name="skip_linear")(seen)


def _recurrent(cell: type[layers.Layer]) -> Callable[..., keras.Model]:
    def build(
        n_features: int,
        horizon: int,
        kind: TargetKind = "seq2seq",
        units: int = 64,
        layers_count: int = 2,
        dropout: float = 0.1,
        window_norm: int = 0,
        season: int = 7,
        weeks: int = 1,
        skip: int = 0,
        instance_norm: int = 0,
    ) -> keras.Model:
        x, h, level = _input(n_features, kind, window_norm, horizon, season, weeks, instance_norm)
        linear = _linear_path(h, skip, horizon, kind, instance_norm)
        if skip and level is not None and not instance_norm:
            # A linear path from the last `skip` normalised rows to a relative base correction
            # (outside the MC-dropout sites): the recurrent path learns what is left.
            seen = FlattenLast(skip, name="skip_window")(h)
            correction = layers.Dense(horizon, name="skip_correction")(seen)
            level = ScaleBase(name="skip_base")(level, correction)
        sites = _Sites(dropout)
        for i in range(layers_count):
            last = i == layers_count - 1
            h = cell(units, return_sequences=kind == "seq2seq" or not last, name=f"rnn_{i}")(h)
            h = sites.drop(h)
        y = _head(h, horizon, kind, level, linear)
        return keras.Model([x, *sites.inputs], y, name=cell.__name__.lower())

    return build


build_lstm = _recurrent(layers.LSTM)
build_gru = _recurrent(layers.GRU)
build_simple_rnn = _recurrent(layers.SimpleRNN)


def build_wavenet(
    n_features: int,
    horizon: int,
    kind: TargetKind = "seq2seq",
    filters: int = 64,
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1, 2, 4, 8, 16),
    dropout: float = 0.1,
    window_norm: int = 0,
    season: int = 7,
    weeks: int = 1,
    instance_norm: int = 0,
    skip: int = 0,
) -> keras.Model:
    """The book's simplified WaveNet, deeper: two causal dilated Conv1D blocks (1..16, receptive field
    63 > the 50-step window, measured 0.0025 vs 0.0028 for the book's 1..8), with residual additions.

    Dropout sits at two sites (the middle and the end of the stack): before every conv it underfits
    (FIELD-NOTES). Residual additions let 64-filter stacks train in a few minutes on a CPU.
    """
    x, h, level = _input(n_features, kind, window_norm, horizon, season, weeks, instance_norm)
    linear = _linear_path(h, skip, horizon, kind, instance_norm)
    sites = _Sites(dropout)
    h = layers.Conv1D(filters, 1, name="embed")(h)
    middle = len(dilations) // 2 - 1
    for i, rate in enumerate(dilations):
        conv = layers.Conv1D(
            filters, 2, padding="causal", dilation_rate=rate, activation="relu", name=f"conv_{i}"
        )(h)
        h = layers.Add(name=f"residual_{i}")([h, conv])
        if i in (middle, len(dilations) - 1):
            h = sites.drop(h)
    return keras.Model([x, *sites.inputs], _head(h, horizon, kind, level, linear), name="wavenet")


def build_conv_gru(
    n_features: int,
    horizon: int,
    kind: TargetKind = "seq2seq",
    units: int = 64,
    dropout: float = 0.1,
    window_norm: int = 0,
    season: int = 7,
    weeks: int = 1,
    instance_norm: int = 0,
    skip: int = 0,
) -> keras.Model:
    """The book's Conv1D + GRU, with a causal kernel so every output step sees only its past."""
    x, h, level = _input(n_features, kind, window_norm, horizon, season, weeks, instance_norm)
    linear = _linear_path(h, skip, horizon, kind, instance_norm)
    sites = _Sites(dropout)
    h = layers.Conv1D(units, 4, padding="causal", activation="relu", name="conv")(h)
    h = layers.GRU(units, return_sequences=True, name="rnn_0")(h)
    h = sites.drop(h)
    h = layers.GRU(units, return_sequences=kind == "seq2seq", name="rnn_1")(h)
    h = sites.drop(h)
    return keras.Model([x, *sites.inputs], _head(h, horizon, kind, level, linear), name="conv_gru")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "lstm": build_lstm,
    "gru": build_gru,
    "wavenet": build_wavenet,
    "simple_rnn": build_simple_rnn,
    "conv_gru": build_conv_gru,
}


def all_layers(model: keras.Model) -> list[Any]:
    """The layers of `model` and, recursively, of the models nested in it (ensemble members)."""
    found: list[Any] = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(all_layers(layer))
    return found


def with_repeat_rows(model: keras.Model) -> keras.Model:
    """`model` with a RepeatRows layer before its first dropout site, same weights.

    Models trained before RepeatRows existed (their saved config lacks it) export with it too: the
    layer has no weights, so the functional config gains one layer and the weights carry over.
    A model that has it already (in every member, for an ensemble), or has no dropout site, is
    returned as is.
    """
    if any(isinstance(layer, RepeatRows) for layer in all_layers(model)):
        return model
    config = model.get_config()
    first = "mc_dropout_0"
    site = next((layer for layer in config["layers"] if layer["name"] == first), None)
    if site is None:
        return model
    args = site["inbound_nodes"][0]["args"]  # [the activations, the mask input]
    repeat = {
        "module": RepeatRows.__module__,
        "class_name": "RepeatRows",
        "registered_name": "forecast>RepeatRows",
        "config": {"name": "repeat_rows", "trainable": True, "dtype": "float32"},
        "name": "repeat_rows",
        "inbound_nodes": [{"args": list(args), "kwargs": {}}],
    }
    repeated = {
        "class_name": "__keras_tensor__",
        "config": {**args[0]["config"], "keras_history": ["repeat_rows", 0, 0]},
    }
    site["inbound_nodes"][0]["args"] = [repeated, args[1]]
    config["layers"].insert(config["layers"].index(site), repeat)
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def mask_inputs(model: keras.Model) -> list[tuple[str, int]]:
    """(name, width) of each MC-dropout mask input of a built model, in input order."""
    return [
        (t.name.split(":")[0], int(t.shape[-1]))
        for t in model.inputs
        if t.name.startswith(MASK_PREFIX)
    ]


def dropout_rate(model: keras.Model) -> float:
    rates = {layer.rate for layer in all_layers(model) if isinstance(layer, MaskedDropout)}
    if len(rates) > 1:
        raise ValueError(f"one MC-dropout rate per model, got {sorted(rates)}")
    return rates.pop() if rates else 0.0


def build_ensemble(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model averaging the forecasts of `members` (same task, e.g. seeds of one config).

    The members share the ensemble's inputs: `x` and the MC-dropout mask inputs, which they must
    have alike (names and widths). One mask row then drives every member's dropout site of that
    index; as the members' units are not aligned, this is as good as independent masks and keeps
    the service's mask inputs (and their cost) those of one member. Each member keeps its own
    RepeatRows, so a `repeat_rows` graph stays one. Exported as one ONNX graph.
    """
    if not members:
        raise ValueError("an ensemble needs at least one member")
    members = [with_repeat_rows(member) for member in members]
    if len(members) == 1:
        return members[0]
    masks = mask_inputs(members[0])
    shape = tuple(members[0].inputs[0].shape[1:])
    for member in members[1:]:
        if mask_inputs(member) != masks or tuple(member.inputs[0].shape[1:]) != shape:
            raise ValueError("ensemble members differ in their inputs (x or mask widths)")
    x = keras.Input(shape, name="x")
    mask_tensors = [keras.Input((width,), name=mask) for mask, width in masks]
    outputs = []
    for i, member in enumerate(members):
        # A functional view of the member under a unique name, sharing its layers and weights.
        renamed = keras.Model(member.inputs, member.output, name=f"member_{i}")
        outputs.append(renamed([x, *mask_tensors]))
    y = layers.Average(name="y")(outputs)
    return keras.Model([x, *mask_tensors], y, name=name)


def ensemble_size(model: keras.Model) -> int:
    """How many members `model` averages (1 for a plain model)."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return len(members) or 1
