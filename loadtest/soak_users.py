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

from locust import FastHttpUser, constant_throughput, task

from loadtest.locustfile import series

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


class SoakUser(FastHttpUser):
    wait_time = constant_throughput(RATE)

    def forecast(self, kind: str, body: bytes | dict[str, Any], expected: int = 200) -> None:
        return self.post(kind, random.choice(MODELS), body, expected)

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

    @task(10)
    def next_step(self) -> None:
        self.forecast("next-step", {"series": series(), "horizon": 1})

    @task(4)
    def multi_step(self) -> None:
        self.forecast("direct 10-step", {"series": series(), "horizon": 10})

    @task(3)
    def mc_quantiles(self) -> None:
        uncertainty = {"samples": 100, "quantiles": [0.05, 0.5, 0.95]}
        self.forecast("MC 100 samples", {"series": series(), "uncertainty": uncertainty})

    @task(1)
    def rollout(self) -> None:
        self.forecast("100-step rollout", {"series": series(), "horizon": 100})

    @task(2)
    def batch(self) -> None:
        self.forecast("batch of 32", {"batch": [series() for _ in range(32)], "horizon": 10})

    @task(1)
    def list_models(self) -> None:
        self.client.get("/v1/models", name="list models")

    @task(2)
    def bad_request(self) -> None:
        kind = random.choice(list(BAD))
        known, body, expected = BAD[kind]
        self.post(kind, random.choice(MODELS) if known else "no-such-model", body, expected)
