"""The soak's locust users (`loadtest/soak.py` runs them): a mixed, paced load on every shipped model.

Each user sends `SOAK_RATE` requests per second (`constant_throughput`), so the load is bounded
whatever the service's speed. The mix: next-step, direct multi-step, MC dropout with quantiles,
a 100-step rollout, a batch of 32, the model list, and bad requests that must get their 4xx (a
5xx or a 200 for one of them is a failure). A good request answered with anything but 200 is a
failure too, with the status and the error body as its reason.
"""

import os
import random
from typing import Any

from locust import constant_throughput, task

from loadtest import locustfile

MODELS = os.environ.get("SOAK_MODELS", "lstm,gru,wavenet").split(",")
RATE = float(os.environ.get("SOAK_RATE", "8"))

# name: (model or None for an unknown one, body, expected status)
BAD: dict[str, tuple[bool, bytes | dict[str, Any], int]] = {
    "bad: series shorter than min_length": (True, {"series": [0.1, 0.2]}, 422),
    "bad: unknown model": (False, {"series": [0.1] * 50}, 404),
    "bad: malformed JSON": (True, b'{"series": [0.1, 0.2', 400),
    "bad: direct beyond the model horizon": (
        True,
        {"series": [0.1] * 50, "horizon": 50, "strategy": "direct"},
        422,
    ),
    "bad: series and batch": (True, {"series": [0.1] * 50, "batch": [[0.1] * 50]}, 422),
    "bad: unknown field": (True, {"series": [0.1] * 50, "horizon": 1, "samples": 3}, 422),
    "bad: horizon over max_horizon": (True, {"series": [0.1] * 50, "horizon": 10**6}, 422),
}


class SoakUser(locustfile.ForecastUser):
    """The load kit's request mix (`loadtest/locustfile.py`), paced, over every model, plus bad
    requests. (The module holds no other User class: locust runs every one it finds.)"""

    wait_time = constant_throughput(RATE)

    def forecast(self, kind: str, body: dict[str, Any]) -> None:
        self.post(kind, random.choice(MODELS), body, 200)

    def post(self, kind: str, model: str, body: bytes | dict[str, Any], expected: int) -> None:
        path = f"/v1/models/{model}/forecast"
        options: dict[str, Any] = (
            {"data": body, "headers": {"content-type": "application/json"}}
            if isinstance(body, bytes)
            else {"json": body}
        )
        with self.client.post(path, name=kind, catch_response=True, **options) as response:
            if response.status_code != expected:
                response.failure(
                    f"{response.status_code} (expected {expected}): {(response.text or '')[:200]}"
                )
            else:
                response.success()

    @task(2)
    def bad_request(self) -> None:
        kind = random.choice(list(BAD))
        known, body, expected = BAD[kind]
        self.post(kind, random.choice(MODELS) if known else "no-such-model", body, expected)
