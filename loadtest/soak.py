"""`make soak`: a long, mixed, bounded load on the shipped models; server RSS and errors reported.

    python -m loadtest.soak [--seconds 600] [--users 8] [--rate 8] [--warmup 60]

Starts `python -m service` (one worker, the shipped models, default limits) on 127.0.0.1, sends a
warm-up burst (`prime`: every kind on every model from 2 x `--users` clients, `--prime-seconds`),
then runs the locust users of `loadtest/soak_users.py` against it for `--seconds` (`SOAK_SECONDS`;
default 10 minutes): `--users` users of `--rate` requests per second each (next-step, direct, MC,
rollout, batch, model list, and bad requests that must get their 4xx). The server's RSS and thread
count are read from /proc every `--sample-every` seconds (all samples in `rss.csv`). At the end it
prints the requests and failures per kind, the errors the service counted by type, and the RSS
curve, and exits 1 when:

- any request failed (a good one not answered 200, a bad one not answered its 4xx, a 5xx);
- the RSS grew by 10% or more from the end of the warm-up (`--warmup` seconds from the server's
  start, the burst included) to the end.
"""

import argparse
import asyncio
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from loadtest.overload import Connections
from loadtest.server import ROOT, LiveServer

RSS_GROWTH = 0.10
MODELS = ("lstm", "gru", "wavenet")
SERIES = [round(0.5 * math.sin(t * 0.35) + 0.2 * math.sin(t * 1.3), 5) for t in range(50)]
PRIME_BODIES = [
    {"series": SERIES, "horizon": 1},
    {"series": SERIES, "horizon": 10},
    {"series": SERIES, "uncertainty": {"samples": 100, "quantiles": [0.05, 0.5, 0.95]}},
    {"series": SERIES, "horizon": 100},
    {"batch": [SERIES] * 32, "horizon": 10},
]


async def prime(url: str, concurrency: int, seconds: float) -> dict[str, int]:
    """Every kind on every model from `concurrency` clients at once, for `seconds`.

    Part of the warm-up: thread pools grow one thread at a time as requests overlap, and ONNX
    Runtime's memory arenas as larger batches meet (each keeps its high-water mark). A burst at
    peak concurrency takes them there before the baseline is taken, instead of by chance minutes
    into the run; what grows after that is what the soak is for.
    """
    pairs = [
        Connections(url, f"/v1/models/{m}/forecast", json.dumps(b).encode())
        for m in MODELS
        for b in PRIME_BODIES
    ]
    statuses: dict[str, int] = {}
    end = time.monotonic() + seconds

    async def client(k: int) -> None:
        i = k
        while time.monotonic() < end:
            status, _ = await pairs[i % len(pairs)].post(30.0)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            i += 1

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    for connections in pairs:
        connections.close()
    return statuses


Sample = tuple[float, int, int]  # seconds since start, RSS bytes, threads


def sample_rss(server: LiveServer, every: float, stop: threading.Event) -> list[Sample]:
    """(seconds since start, RSS, threads) every `every` seconds until `stop` is set."""
    samples: list[Sample] = []
    started = time.monotonic()

    def run() -> None:
        while True:
            samples.append((time.monotonic() - started, server.rss(), server.threads()))
            if stop.wait(every):
                return

    threading.Thread(target=run, daemon=True).start()
    return samples


def service_errors(url: str) -> dict[str, float]:
    """`forecast_errors_total` by type, and the 5xx answers the service timed, from `/metrics`."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    errors: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "forecast_errors_total":
                errors[s.labels["type"]] = s.value
            elif s.name == "forecast_request_duration_seconds_count" and s.labels.get(
                "status", ""
            ).startswith("5"):
                errors["5xx answers"] = errors.get("5xx answers", 0) + s.value
    return errors


def read_stats(prefix: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        stats = list(csv.DictReader(f))
    failures_file = Path(f"{prefix}_failures.csv")
    failures = []
    if failures_file.exists():
        with open(failures_file, newline="") as f:
            failures = list(csv.DictReader(f))
    return stats, failures


def rss_report(samples: list[Sample], warmup: float) -> tuple[str, float]:
    after = [s for s in samples if s[0] >= warmup] or samples[-1:]
    base, end = after[0][1], after[-1][1]
    growth = end / base - 1
    t = np.array([s[0] for s in after])
    r = np.array([s[1] for s in after]) / 2**20
    slope = float(np.polyfit(t / 60, r, 1)[0]) if len(after) > 2 else 0.0
    marks = [samples[0], *after[:: max(1, len(after) // 6)], after[-1]]
    curve = ", ".join(
        f"{t_:.0f}s {r_ / 2**20:.1f} ({n} threads)" for t_, r_, n in dict.fromkeys(marks)
    )
    text = (
        f"server RSS MB: start {samples[0][1] / 2**20:.1f}, after warm-up ({after[0][0]:.0f} s) "
        f"{base / 2**20:.1f}, end {end / 2**20:.1f}, max {max(s[1] for s in samples) / 2**20:.1f}"
        f"; growth after warm-up {growth:+.1%}, trend {slope:+.2f} MB/min ({len(samples)} samples)"
        f"\nRSS curve (s, MB, threads): {curve}"
    )
    return text, growth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "600")))
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rate", type=float, default=8.0, help="requests/s per user")
    parser.add_argument("--warmup", type=float, help="seconds; default 10%% of the run, <= 60")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument(
        "--prime-seconds", type=float, default=15.0, help="warm-up burst at 2x the users"
    )
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.seconds / 10)

    out = Path(tempfile.mkdtemp(prefix="soak-"))
    env = {"FORECAST_MODELS_DIR": str(args.models_dir)}
    print(
        f"soak: {args.seconds} s, {args.users} users x {args.rate:g} req/s, warm-up {warmup:.0f} s; "
        f"locust output in {out}",
        file=sys.stderr,
    )
    with LiveServer(env, log=out / "server.log") as server:
        stop = threading.Event()
        samples = sample_rss(server, args.sample_every, stop)
        primed = asyncio.run(prime(server.url, 2 * args.users, args.prime_seconds))
        print(f"warm-up burst ({2 * args.users} clients): {primed}", file=sys.stderr)
        command = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "soak_users.py"),
            "--headless", "--users", str(args.users), "--spawn-rate", str(args.users),
            "--run-time", f"{args.seconds}s", "--stop-timeout", "10", "--host", server.url,
            "--csv", str(out / "soak"), "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        locust_env = {**os.environ, "SOAK_RATE": str(args.rate), "PYTHONPATH": str(ROOT)}
        with open(out / "locust.log", "wb") as log:
            locust = subprocess.run(
                command, cwd=ROOT, env=locust_env, stdout=log, stderr=log,
                timeout=args.seconds + 120, check=False,
            )  # fmt: skip
        time.sleep(args.sample_every)  # one more sample at rest
        stop.set()
        errors = service_errors(server.url)

    stats, failures = read_stats(out / "soak")
    print("| request | count | failures | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in stats:
        print(
            f"| {row['Name']} | {int(row['Request Count']):,} | {int(row['Failure Count']):,} "
            f"| {row['50%']} | {row['99%']} | {float(row['Max Response Time']):,.0f} |"
        )
    total = next(r for r in stats if r["Name"] == "Aggregated")
    failed = int(total["Failure Count"])
    print(f"errors the service counted, by type: {errors}")
    with open(out / "rss.csv", "w") as f:
        f.write("seconds,rss_bytes,threads\n")
        f.writelines(f"{t:.1f},{r},{n}\n" for t, r, n in samples)
    rss_text, growth = rss_report(samples, warmup)
    print(rss_text)

    broken = []
    if failed:
        broken.append(f"{failed} requests failed (unexpected status)")
        for failure in failures[:10]:
            print(f"  {failure['Occurrences']} x {failure['Name']}: {failure['Error'][:200]}")
    if locust.returncode not in (0, 1):  # 1: failures, reported above
        broken.append(f"locust exited with {locust.returncode} (see {out / 'locust.log'})")
    if errors.get("5xx answers"):
        broken.append(f"{errors['5xx answers']:.0f} 5xx answers")
    if growth >= RSS_GROWTH:
        broken.append(f"RSS grew {growth:.1%} after warm-up (>= {RSS_GROWTH:.0%})")
    for promise in broken:
        print(f"FAIL: {promise}")
    if not broken:
        print(
            f"OK: {int(total['Request Count']):,} requests, 0 unexpected, RSS growth {growth:+.1%}"
        )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
