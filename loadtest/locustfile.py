"""A realistic request mix against the native forecast API, for locust.

    locust -f loadtest/locustfile.py --headless -u 16 -r 8 -t 30s --host http://127.0.0.1:8000

Each kind of request is reported under its own name. `LOADTEST_MODEL` picks the model (default
`lstm`), `LOADTEST_LENGTH` the series length (default 50, the shipped models' input length).
A non-200 answer counts as a failure with the error body as its reason.
"""

import math
import os
import random
from typing import Any

from locust import FastHttpUser, between, task

MODEL = os.environ.get("LOADTEST_MODEL", "lstm")
LENGTH = int(os.environ.get("LOADTEST_LENGTH", "50"))
PATH = f"/v1/models/{MODEL}/forecast"


def series(length: int = LENGTH) -> list[float]:
    """A noisy two-wave series like the book's synthetic data, at a random phase."""
    f1, f2 = random.uniform(0.05, 0.15), random.uniform(0.2, 0.4)
    o1, o2 = random.uniform(0, 10), random.uniform(0, 10)
    return [
        round(
            0.5 * math.sin((t - o1) * f1 * 10)
            + 0.2 * math.sin((t - o2) * f2 * 20)
            + 0.1 * (random.random() - 0.5),
            5,
        )
        for t in range(length)
    ]


class ForecastUser(FastHttpUser):
    """One client of the service; weights make next-step forecasts the bulk of the traffic."""

    wait_time = between(0.0, 0.05)

    def forecast(self, kind: str, body: dict[str, Any]) -> None:
        with self.client.post(PATH, json=body, name=kind, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {(response.text or '')[:200]}")

    @task(10)
    def next_step(self) -> None:
        self.forecast("next-step", {"series": series(), "horizon": 1})

    @task(5)
    def multi_step(self) -> None:
        self.forecast("direct 10-step", {"series": series(), "horizon": 10})

    @task(3)
    def mc_quantiles(self) -> None:
        body = {
            "series": series(),
            "horizon": 10,
            "uncertainty": {"samples": 100, "quantiles": [0.05, 0.5, 0.95]},
        }
        self.forecast("MC 100 samples", body)

    @task(1)
    def rollout(self) -> None:
        self.forecast("100-step rollout", {"series": series(), "horizon": 100})

    @task(2)
    def batch(self) -> None:
        self.forecast("batch of 32", {"batch": [series() for _ in range(32)], "horizon": 10})

    @task(1)
    def list_models(self) -> None:
        self.client.get("/v1/models", name="list models")
