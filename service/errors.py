"""Every error the service raises on purpose, each carrying its HTTP status and a stable type.

```
ForecastError                      500 forecast_error
├── UnauthorizedError              401 unauthorized       (FORECAST_API_KEYS set, no valid key)
├── ForbiddenError                 403 forbidden          (admin endpoints without FORECAST_API_KEYS)
├── ModelNotFoundError             404 model_not_found
├── ModelReloadError               409 model_reload_failed (the previous version keeps serving)
├── ModelNotReadyError             503 model_not_ready
├── ModelLoadError                 503 model_load_error    (start-up; becomes a model's `reason`)
│   └── DeviceUnavailableError     503 device_unavailable
├── PayloadTooLargeError           413 payload_too_large
├── OverloadedError                503 overloaded         (FORECAST_MAX_IN_FLIGHT requests in flight)
├── DeadlineExceededError          504 deadline_exceeded  (no answer within FORECAST_REQUEST_TIMEOUT_S)
└── InvalidRequestError            422 invalid_request
    ├── MalformedRequestError      400 malformed_request  (a body that cannot be parsed at all)
    ├── InvalidSeriesError         422 invalid_series     (empty, short, NaN, dimensions, ragged)
    ├── InvalidModelNameError      422 invalid_model_name (not a folder name the repository serves)
    ├── LimitExceededError         422 limit_exceeded     (a configured limit, named)
    └── UnsupportedForecastError   422 unsupported_forecast (strategy, covariates, MC)
```

Domain code raises these and knows nothing of HTTP; one handler in `service.api.errors` turns them
into `{"error": {"type": ..., "message": ...}}`, or into the error shape of the standard protocol that
owns the path (`service.api.responses.error_response`).
"""


class ForecastError(Exception):
    """Base class: `status_code` and `type` are what the client sees, with the message."""

    status_code = 500
    type = "forecast_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The request field at fault, when known: the KServe time-series error shape reports it.
        self.param = param


class UnauthorizedError(ForecastError):
    status_code = 401
    type = "unauthorized"


class ForbiddenError(ForecastError):
    status_code = 403
    type = "forbidden"


class ModelNotFoundError(ForecastError):
    status_code = 404
    type = "model_not_found"


class ModelNotReadyError(ForecastError):
    status_code = 503
    type = "model_not_ready"


class ModelReloadError(ForecastError):
    status_code = 409
    type = "model_reload_failed"


class ModelLoadError(ForecastError):
    status_code = 503
    type = "model_load_error"


class DeviceUnavailableError(ModelLoadError):
    type = "device_unavailable"


class PayloadTooLargeError(ForecastError):
    status_code = 413
    type = "payload_too_large"


class OverloadedError(ForecastError):
    status_code = 503
    type = "overloaded"


class DeadlineExceededError(ForecastError):
    status_code = 504
    type = "deadline_exceeded"


class InvalidRequestError(ForecastError):
    status_code = 422
    type = "invalid_request"


class MalformedRequestError(InvalidRequestError):
    status_code = 400
    type = "malformed_request"


class InvalidSeriesError(InvalidRequestError):
    type = "invalid_series"


class InvalidModelNameError(InvalidRequestError):
    type = "invalid_model_name"


class LimitExceededError(InvalidRequestError):
    type = "limit_exceeded"


class UnsupportedForecastError(InvalidRequestError):
    type = "unsupported_forecast"
