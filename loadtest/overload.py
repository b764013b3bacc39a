"""`make overload`: 4x capacity against a live service with a small in-flight limit.

    python -m loadtest.overload [--kind mc] [--max-in-flight 8] [--factor 4] [--seconds 20]
                                [--capacity REQ_PER_S] [--compare]

Starts `python -m service` (one worker, the shipped models) on 127.0.0.1 with
`FORECAST_MAX_IN_FLIGHT=--max-in-flight`, then:

1. capacity: a closed loop of `--max-in-flight` clients for `--capacity-seconds`; the completed
   requests per second are the capacity (or `--capacity` gives it);
2. overload: an open loop offering `--factor` x capacity requests per second for `--seconds`
   (arrivals on a fixed schedule, whatever the answers: the queue a real overload builds), at most
   `--max-requests` requests, each with a client timeout of `--timeout` s;
3. with `--compare`, the same overload against a service without the limit, for contrast.

It prints a table: requests sent, answered 200, refused 503, other answers, client timeouts, the
latency of accepted and of refused requests, the server's RSS before and after. It exits 1 when the
overload phase breaks a promise: accepted p99 >= 1 s, refused p99 >= 0.25 s, any timeout, any
answer other than 200 or 503, no refusal at all (not an overload), or RSS growth >= 10%.

The kinds are the bench's: `mc` (lstm, 100 MC paths, 10 steps: ~200 req/s on one worker, so
that a Python client can offer 4x) and `next-step` (~2,000 req/s: the client, not the service,
becomes the bottleneck at 4x on 2 cores).
"""

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from loadtest.server import ROOT, LiveServer

SERIES = [round(0.5 * math.sin(t * 0.35) + 0.2 * math.sin(t * 1.3), 5) for t in range(50)]
KINDS = {
    "mc": {"series": SERIES, "horizon": 10, "uncertainty": {"samples": 100}},
    "next-step": {"series": SERIES, "horizon": 1},
}
ACCEPTED_P99_S = 1.0
REFUSED_P99_S = 0.25
RSS_GROWTH = 0.10


@dataclass
class Outcomes:
    """What came back: latency in seconds by outcome ("200", "503", other statuses, "timeout")."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    lag_s: float = 0.0  # how late the client sent its last request (client saturation)
    connections: int = 0  # connections the client opened

    def add(self, outcome: str, latency: float) -> None:
        self.latencies.setdefault(outcome, []).append(latency)

    def count(self, outcome: str) -> int:
        return len(self.latencies.get(outcome, []))

    @property
    def sent(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def others(self) -> int:
        return self.sent - self.count("200") - self.count("503") - self.count("timeout")

    def percentile(self, outcome: str, q: float) -> float:
        values = self.latencies.get(outcome)
        return float(np.percentile(values, q)) if values else math.nan


class Connections:
    """A minimal HTTP/1.1 client: keep-alive connections to one server, opened when none is idle.

    Python clients are slower than the service: httpx's pool, with hundreds of requests
    outstanding, took seconds per request on this machine and measured itself, not the service.
    This one costs tens of microseconds a request; one connection per request outstanding, so
    nothing waits on the client side.
    """

    def __init__(self, url: str, path: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post(self, timeout: float) -> tuple[int, dict[str, str]]:
        """Send the request; (status, headers) of the answer, its body read and dropped."""
        async with asyncio.timeout(timeout):
            while self.idle:
                reused = self.idle.pop()
                if reused[0].at_eof():  # closed by the server after its keep-alive timeout
                    reused[1].close()
                    continue
                try:
                    return await self._exchange(reused)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    # Closed while idle, as any HTTP client knows: retry on a new connection,
                    # unless the server had started answering.
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise
            connection = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
            return await self._exchange(connection)

    async def _exchange(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    ) -> tuple[int, dict[str, str]]:
        reader, writer = connection
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append(connection)
        return status, headers

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def send(connections: Connections, outcomes: Outcomes, timeout: float) -> None:
    started = time.perf_counter()
    try:
        status, headers = await connections.post(timeout)
        outcome = str(status)
        if status == 503 and "retry-after" not in headers:
            outcome = "503 without Retry-After"
    except TimeoutError:
        outcome = "timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        outcome = type(exc).__name__
    outcomes.add(outcome, time.perf_counter() - started)


async def closed_loop(url: str, path: str, body: bytes, users: int, seconds: float) -> Outcomes:
    outcomes = Outcomes()
    connections = Connections(url, path, body)
    end = time.perf_counter() + seconds

    async def user() -> None:
        while time.perf_counter() < end:
            await send(connections, outcomes, 10.0)

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(users)))
    outcomes.seconds = time.perf_counter() - started
    connections.close()
    return outcomes


async def open_loop(
    url: str, path: str, body: bytes, rate: float, requests: int, timeout: float
) -> Outcomes:
    """`requests` arrivals at `rate` per second, each sent on time whatever the earlier answers."""
    outcomes = Outcomes()
    connections = Connections(url, path, body)
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = []
    for i in range(requests):
        due = started + i / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(connections, outcomes, timeout)))
    outcomes.lag_s = max(0.0, loop.time() - (started + (requests - 1) / rate))
    await asyncio.gather(*tasks)
    outcomes.seconds = loop.time() - started
    outcomes.connections = connections.opened
    connections.close()
    return outcomes


@dataclass
class Phase:
    name: str
    offered: float | None  # requests per second offered (None: closed loop)
    outcomes: Outcomes
    rss_before: int
    rss_after: int


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f}"


def table(phases: list[Phase]) -> str:
    lines = [
        "| phase | offered req/s | sent | 200 | 503 | other | timeouts | accepted p50 / p99 ms "
        "| refused p50 / p99 ms | served req/s | server RSS MB before -> after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in phases:
        o = p.outcomes
        offered = "closed loop" if p.offered is None else f"{p.offered:,.0f}"
        lines.append(
            f"| {p.name} | {offered} | {o.sent:,} | {o.count('200'):,} | {o.count('503'):,} "
            f"| {o.others:,} | {o.count('timeout'):,} "
            f"| {ms(o.percentile('200', 50))} / {ms(o.percentile('200', 99))} "
            f"| {ms(o.percentile('503', 50))} / {ms(o.percentile('503', 99))} "
            f"| {o.count('200') / o.seconds:,.0f} "
            f"| {p.rss_before / 2**20:,.1f} -> {p.rss_after / 2**20:,.1f} |"
        )
    return "\n".join(lines)


def verdict(phase: Phase) -> list[str]:
    """The promises the overload phase broke (empty: all kept)."""
    o = phase.outcomes
    broken = []
    if not o.count("503"):
        broken.append("no request was refused: the load did not exceed the limit")
    if o.count("200") and o.percentile("200", 99) >= ACCEPTED_P99_S:
        broken.append(f"accepted p99 {o.percentile('200', 99):.3f} s >= {ACCEPTED_P99_S} s")
    if o.count("503") and o.percentile("503", 99) >= REFUSED_P99_S:
        broken.append(f"refused p99 {o.percentile('503', 99):.3f} s >= {REFUSED_P99_S} s")
    if o.count("timeout"):
        broken.append(f"{o.count('timeout')} client timeouts (hangs)")
    if o.others:
        others = {k: len(v) for k, v in o.latencies.items() if k not in {"200", "503", "timeout"}}
        broken.append(f"unexpected answers: {others}")
    growth = phase.rss_after / phase.rss_before - 1
    if growth >= RSS_GROWTH:
        broken.append(f"server RSS grew {growth:.1%} (>= {RSS_GROWTH:.0%})")
    return broken


async def overload_phase(
    server: LiveServer, name: str, path: str, body: bytes, rate: float, args: argparse.Namespace
) -> Phase:
    requests = min(args.max_requests, int(rate * args.seconds))
    before = server.rss()
    outcomes = await open_loop(server.url, path, body, rate, requests, args.timeout)
    await asyncio.sleep(1.0)  # let the server settle before reading its memory
    return Phase(name, rate, outcomes, before, server.rss())


async def run(args: argparse.Namespace) -> int:
    body = json.dumps(KINDS[args.kind]).encode()
    path = f"/v1/models/{args.model}/forecast"
    env = {"FORECAST_MODELS_DIR": str(args.models_dir), "FORECAST_RETRY_AFTER_S": "1"}
    phases: list[Phase] = []
    limited = {**env, "FORECAST_MAX_IN_FLIGHT": str(args.max_in_flight)}
    with LiveServer(limited) as server:
        await closed_loop(server.url, path, body, args.max_in_flight, 2.0)  # warm-up
        rss = server.rss()
        capacity = args.capacity
        if capacity is None:
            measured = await closed_loop(
                server.url, path, body, args.max_in_flight, args.capacity_seconds
            )
            phases.append(Phase("capacity", None, measured, rss, server.rss()))
            capacity = measured.count("200") / measured.seconds
        rate = args.factor * capacity
        print(
            f"{args.kind} on {args.model}: capacity {capacity:,.0f} req/s with "
            f"max_in_flight={args.max_in_flight}; offering {args.factor:g}x = {rate:,.0f} req/s "
            f"for {args.seconds:g} s",
            file=sys.stderr,
        )
        name = f"{args.factor:g}x, max_in_flight={args.max_in_flight}"
        overload = await overload_phase(server, name, path, body, rate, args)
        phases.append(overload)
        lag = overload.outcomes.lag_s
    if args.compare:
        unlimited = {**env, "FORECAST_MAX_IN_FLIGHT": "1000000", "FORECAST_SHUTDOWN_TIMEOUT_S": "5"}
        with LiveServer(unlimited) as server:
            await closed_loop(server.url, path, body, args.max_in_flight, 2.0)
            name = f"{args.factor:g}x, no limit (contrast)"
            phases.append(await overload_phase(server, name, path, body, rate, args))

    print(table(phases))
    for phase in phases:
        known = {"200", "503", "timeout"}
        others = {k: len(v) for k, v in phase.outcomes.latencies.items() if k not in known}
        if others:
            print(f"other answers in {phase.name!r}: {others}")
    if lag > 0.5:
        print(f"note: the client fell {lag:.1f} s behind its schedule (client-bound)")
    broken = verdict(overload)
    for promise in broken:
        print(f"FAIL: {promise}")
    if not broken:
        print(
            f"OK: accepted p99 < {ACCEPTED_P99_S} s, refused p99 < {REFUSED_P99_S} s, "
            f"no timeouts, RSS growth < {RSS_GROWTH:.0%}"
        )
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--kind", choices=sorted(KINDS), default="mc")
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--capacity", type=float, help="requests/s; measured when absent")
    parser.add_argument("--capacity-seconds", type=float, default=5.0)
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=40_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout, seconds")
    parser.add_argument("--compare", action="store_true", help="also run without the limit")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
