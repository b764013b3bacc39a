"""The KServe time-series API: `POST /v1/timeseries/forecast`, over `service.forecasting`.

The shape is KServe's (`kserve/protocol/rest/timeseries/types.py` and its API reference): a request
names a `model`, gives `inputs` (each a named series with a `frequency` and an optional
`start_timestamp`) and `options` (`horizon`, `quantiles`). Each input gets one output, with its own
`status` and `error`: an input that fails (too short, NaN, an unknown frequency) does not fail the
others, and the response is then `partial`. Quantiles come from MC dropout
(`settings.timeseries_samples` paths, or `options.samples`), with `mean_forecast` the MC mean; without
quantiles the forecast is deterministic. `options.seed` makes the paths reproducible. `samples` and
`seed` are extensions: the spec allows extra fields in `options`.
"""

import calendar
import time
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecaster_format import ForecasterSpec
from service import forecasting
from service.api.dependencies import RepositoryDep, SettingsDep
from service.api.errors import describe_validation_errors
from service.api.responses import OrjsonResponse, timeseries_error
from service.api.schemas import FiniteFloat, Quantile
from service.errors import (
    ForecastError,
    InvalidRequestError,
    InvalidSeriesError,
    LimitExceededError,
    MalformedRequestError,
)

router = APIRouter(prefix="/v1/timeseries", tags=["kserve time series"])

UNIVARIATE = "univariate_time_series"
MULTIVARIATE = "multivariate_time_series"

# KServe's `Frequency` values and `FREQUENCY_MAP`: fixed steps, or calendar months.
_FIXED_STEPS = {
    "S": timedelta(seconds=1),
    "second": timedelta(seconds=1),
    "T": timedelta(minutes=1),
    "minute": timedelta(minutes=1),
    "H": timedelta(hours=1),
    "hour": timedelta(hours=1),
    "D": timedelta(days=1),
    "day": timedelta(days=1),
    "W": timedelta(weeks=1),
    "week": timedelta(weeks=1),
}
_MONTH_STEPS = {"M": 1, "month": 1, "Q": 3, "quarter": 3, "Y": 12, "year": 12}
Frequency = Literal[
    "S", "second", "T", "minute", "H", "hour", "D", "day", "W", "week",
    "M", "month", "Q", "quarter", "Y", "year",
]  # fmt: skip


class ForecastOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    horizon: int = Field(ge=1, description="steps to forecast")
    quantiles: list[Quantile] | None = Field(
        default=None, description="levels in (0, 1), keyed by str(q); MC dropout when given"
    )
    samples: int | None = Field(default=None, ge=1, description="extension: MC paths per series")
    seed: int | None = Field(default=None, ge=0, description="extension: reproducible MC paths")


class TimeSeriesForecastRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    # Validated one by one below, so that a bad input fails its own output only.
    inputs: list[Any] = Field(min_length=1)
    options: ForecastOptions
    metadata: dict[str, Any] | None = None


class TimeSeriesInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Annotated[str, Field(description="univariate_time_series | multivariate_time_series")]
    name: str
    series: list[FiniteFloat] | list[list[FiniteFloat]]
    frequency: Frequency
    start_timestamp: str | None = None


# The route parses its body itself (one input failing must not fail the others): described here.
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/TimeSeriesForecastRequest"}}
    },
}


@router.get("/models")
async def list_models(repository: RepositoryDep) -> list[str]:
    """The models this API can call, as KServe lists them: names only."""
    return [m.name for m in repository.models.values() if m.ready]


@router.post(
    "/forecast", response_class=OrjsonResponse, openapi_extra={"requestBody": REQUEST_BODY}
)
async def forecast(
    request: Request, repository: RepositoryDep, settings: SettingsDep
) -> OrjsonResponse:
    body = _parse(await request.body())
    spec, model = repository.get_ready(body.model)
    options = body.options
    limits = forecasting.Limits.from_settings(settings)
    if len(body.inputs) > limits.max_series:
        raise LimitExceededError(
            f"{len(body.inputs)} inputs; max_series={limits.max_series}", param="inputs"
        )
    try:
        forecasting.resolve_strategy(spec, options.horizon, "auto", limits)
        # This API has no future covariates: a multivariate rollout beyond the horizon is refused.
        forecasting.prepare_future(spec, options.horizon, None, 1)
    except ForecastError as exc:
        exc.param = "options.horizon"
        raise

    checked: list[TimeSeriesInput | ForecastError] = [
        _check_input(spec, raw, i, limits) for i, raw in enumerate(body.inputs)
    ]
    valid = [(i, c) for i, c in enumerate(checked) if isinstance(c, TimeSeriesInput)]
    forecasts: dict[int, forecasting.SeriesForecast] = {}
    if valid:
        uncertainty = None
        if options.quantiles:
            samples = options.samples or settings.timeseries_samples
            uncertainty = forecasting.Uncertainty(samples, options.quantiles, options.seed)
        result = await forecasting.forecast(
            spec,
            [c.series for _, c in valid],
            model,
            limits,
            horizon=options.horizon,
            uncertainty=uncertainty,
            labels=[f"inputs[{i}]" for i, _ in valid],
        )
        forecasts = {i: f for (i, _), f in zip(valid, result.forecasts, strict=True)}

    outputs = [
        _output(spec, c, forecasts[i]) if isinstance(c, TimeSeriesInput) else _failed(c)
        for i, c in enumerate(checked)
    ]
    failed = len(checked) - len(valid)
    status = "completed" if not failed else "partial" if valid else "error"
    error = None
    if status == "error":
        error = timeseries_error(
            422, "invalid_request", "every input failed: see outputs[].error", "inputs"
        )
    content = {
        "id": f"resp_{uuid.uuid4().hex}",
        "created_at": int(time.time()),
        "status": status,
        "error": error,
        "model": body.model,
        "outputs": outputs,
    }
    return OrjsonResponse(content, status_code=422 if status == "error" else 200)


def _parse(raw: bytes) -> TimeSeriesForecastRequest:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"body is not valid JSON: {exc}") from None
    try:
        # strict: JSON types as the published schema says ("3" is not a horizon)
        return TimeSeriesForecastRequest.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidRequestError(
            describe_validation_errors(exc.errors()), param=_param(exc)
        ) from None


def _param(exc: ValidationError, prefix: str = "") -> str | None:
    errors = exc.errors()
    if not errors:
        return None
    loc = [str(p) for p in errors[0]["loc"] if not (isinstance(p, str) and "[" in p)]
    return prefix + ".".join(loc) if loc else prefix.rstrip(".") or None


def _check_input(
    spec: ForecasterSpec, raw: Any, index: int, limits: forecasting.Limits
) -> TimeSeriesInput | ForecastError:
    """The input, validated against the spec and the model, or the error for its own output."""
    where = f"inputs[{index}]"
    try:
        item = TimeSeriesInput.model_validate(raw, strict=True)
    except ValidationError as exc:
        return InvalidRequestError(
            f"{where}: {describe_validation_errors(exc.errors())}", param=_param(exc, where + ".")
        )
    kind = item.type.lower()
    if kind not in (UNIVARIATE, MULTIVARIATE):
        return InvalidRequestError(
            f"{where}.type is {item.type!r}; expected {UNIVARIATE!r} or {MULTIVARIATE!r}",
            param=f"{where}.type",
        )
    nested = bool(item.series) and isinstance(item.series[0], list)
    if nested != (kind == MULTIVARIATE):
        return InvalidSeriesError(
            f"{where} is {kind!r} but its series is "
            f"{'a list of rows' if nested else 'a list of numbers'}",
            param=f"{where}.series",
        )
    if item.start_timestamp is not None:
        try:
            datetime.fromisoformat(item.start_timestamp)
        except ValueError:
            return InvalidRequestError(
                f"{where}.start_timestamp {item.start_timestamp!r} is not ISO 8601",
                param=f"{where}.start_timestamp",
            )
    try:
        forecasting.prepare_windows(spec, [item.series], [where], limits)
    except ForecastError as exc:
        exc.param = f"{where}.series"
        return exc
    return item.model_copy(update={"type": kind})


def _output(
    spec: ForecasterSpec, item: TimeSeriesInput, forecast: forecasting.SeriesForecast
) -> dict[str, Any]:
    start = None
    if item.start_timestamp is not None:
        start = forecast_start(item.start_timestamp, item.frequency, len(item.series))
    content: dict[str, Any] = {"type": item.type, "name": item.name}
    if item.type == MULTIVARIATE:
        # Time-major rows, as the input's; the model forecasts its target only, named here.
        content["mean_forecast"] = forecast.mean[:, None]
        content["variables"] = [spec.features[spec.target]]
    else:
        content["mean_forecast"] = forecast.mean
    content["frequency"] = item.frequency
    content["start_timestamp"] = start
    if forecast.quantiles is not None:
        rows = item.type == MULTIVARIATE
        content["quantiles"] = {q: v[:, None] if rows else v for q, v in forecast.quantiles.items()}
    return {
        "type": "time_series_forecast",
        "id": f"ts_{uuid.uuid4().hex}",
        "status": "completed",
        "content": [content],
        "error": None,
    }


def _failed(error: ForecastError) -> dict[str, Any]:
    return {
        "type": "time_series_forecast",
        "id": f"ts_{uuid.uuid4().hex}",
        "status": "error",
        "content": [],
        "error": timeseries_error(error.status_code, error.type, error.message, error.param),
    }


def forecast_start(start_timestamp: str, frequency: str, steps: int) -> str:
    """The input's start advanced by `steps` periods: when the forecast's first point falls.

    Months, quarters and years are calendar steps (Jan 31 + 1 month = Feb 28 or 29), as KServe's
    `relativedelta`; a `Z` suffix in the input is kept in the output.
    """
    start = datetime.fromisoformat(start_timestamp)
    if frequency in _FIXED_STEPS:
        end = start + _FIXED_STEPS[frequency] * steps
    else:
        months = start.month - 1 + _MONTH_STEPS[frequency] * steps
        year, month = start.year + months // 12, months % 12 + 1
        end = start.replace(
            year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1])
        )
    text = end.isoformat()
    if start_timestamp.endswith(("Z", "z")) and text.endswith("+00:00"):
        text = text[: -len("+00:00")] + "Z"
    return text
