"""Request and response bodies of the native API."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from service.forecasting import DEFAULT_QUANTILES

# `allow_inf_nan=False`: the stdlib JSON parser accepts bare NaN and Infinity tokens.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Quantile = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]
Series = list[FiniteFloat] | list[list[FiniteFloat]]


class UncertaintyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: int = Field(default=100, ge=1, description="MC-dropout sample paths per series")
    quantiles: list[Quantile] = Field(
        default=list(DEFAULT_QUANTILES),
        description="levels in (0, 1), keyed by str(q) in the answer",
    )
    seed: int | None = Field(
        default=None, ge=0, description="same seed, same samples, bit for bit; random when absent"
    )
    calibrated: StrictBool = Field(
        default=True,
        description="apply the model's interval calibration (fitted on held-out data at export) "
        "when it has one; false: the raw MC-dropout spread",
    )


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # `_one_input` in the published schema: exactly one of `series` and `batch`, not null.
        json_schema_extra={
            "oneOf": [
                {"required": ["series"], "properties": {"series": {"type": "array"}}},
                {"required": ["batch"], "properties": {"batch": {"type": "array"}}},
            ]
        },
    )

    series: Series | None = Field(
        default=None, description="one series: numbers, or [F] rows for a multivariate model"
    )
    batch: list[Series] | None = Field(default=None, description="several series, any lengths")
    horizon: int | None = Field(default=None, ge=1, description="steps; default the model's")
    strategy: Literal["auto", "direct", "recursive"] = Field(
        default="auto", description="auto: direct up to the model horizon, recursive beyond"
    )
    uncertainty: UncertaintyRequest | None = Field(
        default=None, description="MC-dropout error bars; deterministic when absent"
    )
    future_covariates: list[list[FiniteFloat]] | list[list[list[FiniteFloat]]] | None = Field(
        default=None,
        description="multivariate models, rollouts beyond the model horizon: for each future "
        "step, the row's non-target features in the model's order; rows for `series`, one list "
        "of rows per series for `batch`",
    )

    @model_validator(mode="after")
    def _one_input(self) -> "ForecastRequest":
        if (self.series is None) == (self.batch is None):
            raise ValueError("give exactly one of 'series' or 'batch'")
        return self


class SeriesForecastBody(BaseModel):
    mean: list[float]
    std: list[float] | None = Field(default=None, description="only with uncertainty")
    quantiles: dict[str, list[float]] | None = Field(
        default=None, description="only with uncertainty"
    )


class ForecastResponse(BaseModel):
    model: str
    version: int
    horizon: int
    strategy: Literal["direct", "recursive"]
    device: str
    calibrated: bool | None = Field(
        default=None, description="with uncertainty: whether calibrated intervals were served"
    )
    forecasts: list[SeriesForecastBody]


class ModelInfo(BaseModel):
    name: str
    ready: bool
    reason: str | None = None
    device: str | None = None
    version: int | None = None
    architecture: str | None = None
    description: str | None = None
    input_length: int | None = None
    min_length: int | None = None
    horizon: int | None = None
    output: str | None = None
    features: list[str] | None = None
    uncertainty: bool | None = Field(default=None, description="whether MC dropout is available")
    calibration: dict[str, Any] | None = Field(
        default=None,
        description="interval calibration served by default (spread factors per horizon step)",
    )
    metrics: dict[str, Any] | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


FORECAST_EXAMPLES: dict[str, Any] = {
    "next_step": {
        "summary": "Next step of one series",
        "value": {"series": [0.1, 0.3, 0.5, 0.4, 0.2, 0.0, -0.2, -0.3, -0.1, 0.1], "horizon": 1},
    },
    "multi_step_with_error_bars": {
        "summary": "The model horizon, with MC-dropout error bars",
        "value": {
            "series": [0.1, 0.3, 0.5, 0.4, 0.2, 0.0, -0.2, -0.3, -0.1, 0.1],
            "uncertainty": {"samples": 100, "quantiles": [0.05, 0.5, 0.95], "seed": 42},
        },
    },
    "rollout_batch": {
        "summary": "A 30-step recursive rollout of two series",
        "value": {
            "batch": [
                [0.1, 0.3, 0.5, 0.4, 0.2, 0.0, -0.2, -0.3, -0.1, 0.1],
                [0.5, 0.4, 0.2, 0.0, -0.2, -0.3, -0.1, 0.1, 0.3, 0.5, 0.4],
            ],
            "horizon": 30,
            "strategy": "recursive",
        },
    },
}
