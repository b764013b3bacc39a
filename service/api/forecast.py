"""POST /v1/models/{name}/forecast: parse, call `service.forecasting`, shape the answer."""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from service import forecasting, metrics, runtime
from service.api.dependencies import repository_of, settings_of
from service.api.responses import OrjsonResponse
from service.api.schemas import FORECAST_EXAMPLES, ErrorBody, ForecastRequest, ForecastResponse

router = APIRouter(prefix="/v1/models", tags=["forecast"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503)
}


@router.post(
    "/{name}/forecast",
    response_class=OrjsonResponse,
    responses={200: {"model": ForecastResponse}, **ERRORS},
)
async def forecast(
    name: str,
    request: Annotated[ForecastRequest, Body(openapi_examples=FORECAST_EXAMPLES)],
    http: Request,
) -> OrjsonResponse:
    spec, model = repository_of(http).get_ready(name)
    settings = settings_of(http)
    future: Any = request.future_covariates
    if request.series is not None:
        series, labels = [request.series], ["series"]
        future = None if future is None else [future]
    else:
        series, labels = request.batch or [], None
    uncertainty = None
    if request.uncertainty is not None:
        u = request.uncertainty
        uncertainty = forecasting.Uncertainty(u.samples, u.quantiles, u.seed, u.calibrated)
        metrics.MC_SAMPLES.labels(name).observe(u.samples)
    result = await forecasting.forecast(
        spec,
        series,
        partial(runtime.infer, model),
        forecasting.Limits.from_settings(settings),
        horizon=request.horizon,
        strategy=request.strategy,
        uncertainty=uncertainty,
        labels=labels,
        future_covariates=future,
    )
    forecasts: list[dict[str, Any]] = []
    for f in result.forecasts:
        body: dict[str, Any] = {"mean": f.mean}
        if f.std is not None:
            body["std"] = f.std
            body["quantiles"] = f.quantiles
        forecasts.append(body)
    body = {
        "model": name,
        "version": spec.version,
        "horizon": result.horizon,
        "strategy": result.strategy,
        "device": model.device,
        "forecasts": forecasts,
    }
    if uncertainty is not None:
        body["calibrated"] = result.calibrated
    return OrjsonResponse(body)
