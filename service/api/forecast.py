"""POST /v1/models/{name}/forecast: parse, call `service.forecasting`, shape the answer.

The hot path: the body is parsed and validated in one pass by pydantic-core
(`model_validate_json`), not by FastAPI (stdlib `json.loads`, then validation of the Python
objects, inside its dependency machinery): measured with py-spy, that was a sixth of the CPU of a
next-step request. The OpenAPI document still describes the body (`openapi_components`).
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service import forecasting, metrics
from service.api.dependencies import limits_of, repository_of
from service.api.responses import OrjsonResponse
from service.api.schemas import FORECAST_EXAMPLES, ErrorBody, ForecastRequest, ForecastResponse

router = APIRouter(prefix="/v1/models", tags=["forecast"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503)
}


REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ForecastRequest"},
            "examples": FORECAST_EXAMPLES,
        }
    },
}


def openapi_components() -> dict[str, Any]:
    """The request body's schemas, for the app's OpenAPI document (the route parses by hand)."""
    schema = ForecastRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "ForecastRequest": schema}


def parse_request(body: bytes) -> ForecastRequest:
    """Parse and validate in one pass; errors go to the same handler as FastAPI's own."""
    try:
        # strict: JSON types as the published schema says ("5" and true are not numbers)
        return ForecastRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.post(
    "/{name}/forecast",
    response_class=OrjsonResponse,
    responses={200: {"model": ForecastResponse}, **ERRORS},
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def forecast(name: str, http: Request) -> OrjsonResponse:
    # `service.api.fast` answers this route before FastAPI's router sees it; this handler stays for
    # the OpenAPI document and for an app mounted without the fast path.
    return OrjsonResponse(await answer(http.app.state, name, await http.body()))


async def answer(state: Any, name: str, raw: bytes) -> dict[str, Any]:
    """The response body for request body `raw` sent to model `name`; raises the errors the
    app's handlers map (`service.api.errors`)."""
    request = parse_request(raw)
    spec, model = repository_of(state).get_ready(name)
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
        model,
        limits_of(state),
        horizon=request.horizon,
        strategy=request.strategy,
        uncertainty=uncertainty,
        labels=labels,
        future_covariates=future,
    )
    forecasts: list[dict[str, Any]] = []
    for f in result.forecasts:
        item: dict[str, Any] = {"mean": f.mean}
        if f.std is not None:
            item["std"] = f.std
            item["quantiles"] = f.quantiles
        forecasts.append(item)
    body: dict[str, Any] = {
        "model": name,
        "version": spec.version,
        "horizon": result.horizon,
        "strategy": result.strategy,
        "device": model.device,
        "forecasts": forecasts,
    }
    if uncertainty is not None:
        body["calibrated"] = result.calibrated
    return body
