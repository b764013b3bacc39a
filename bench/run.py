"""`make bench`: the service (batching on and off) against two anchors, on every shipped model, with wrk.

    python -m bench.run [--models-dir models] [--duration 3] [--concurrency 1 16 64]

Servers run one after the other on 127.0.0.1 under the same uvicorn settings (one worker, uvloop,
httptools, no access log): the service with micro-batching on, the service with
`FORECAST_BATCHING=false`, anchor (b) `bench/anchors/ort_minimal.py` once per model (a few lines
of FastAPI + ORT with no validation) and anchor (a) `bench/anchors/constant.py` (parses the JSON,
answers a constant: the stack's ceiling). wrk (one thread, keep-alive) drives each request kind
for `--duration` seconds after a one-second warm-up; its Lua `done` hook writes requests, latency
percentiles and errors as JSON. The anchors run the deterministic and MC kinds only; the constant
anchor runs next-step only (it answers every body alike). Results go to
`bench-results/<stamp>.json` and `.md` (and `latest.*`).

The targets' ratios (service / anchor, next-step at the top concurrency) are then measured side by
side: per model, the service (batching on and off) and both anchors up at once (an idle server
waits in epoll), and `--rounds` rounds of one wrk run each, the service and the constant anchor
back to back in alternating order (`round_order`); the verdicts take the median of the per-round
ratios. The MC target (lstm, MC 100 + quantiles at c=16) is measured the same way, round by
round beside `bench/ort_ceiling.py`: the same request's graph calls alone on every CPU, no
server, the most requests/s the machine allows at that moment. The machines are shared VMs whose
speed drifts by tens of percent over minutes, so a ratio of two cells measured minutes apart (the
sequential table) says as much about the drift as about the servers.
"""

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from loadtest.server import free_port
from service.settings import available_cpus

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lstm", "gru", "wavenet")
SERVICE_ON = "service"
SERVICE_OFF = "service, batching off"
ANCHOR = "anchor: FastAPI+ORT"
CONSTANT = "anchor: constant"
CEILING = "ORT alone"
MC_KIND = "MC 100 + quantiles"
MC_TARGET_MODEL, MC_TARGET_C = "lstm", 16  # the MC target
# What each target runs: the anchors skip the rollout (and the constant one everything but next-step).
KINDS_FOR = {
    SERVICE_ON: ("next-step", MC_KIND, "100-step rollout"),
    SERVICE_OFF: ("next-step", MC_KIND, "100-step rollout"),
    ANCHOR: ("next-step", MC_KIND),
    CONSTANT: ("next-step",),
}
UVICORN_FLAGS = [
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
  out:close()
end
"""


def series(length: int, phase: float) -> list[float]:
    return [
        round(0.5 * math.sin(0.6 * t + phase) + 0.2 * math.sin(2.7 * t + 2 * phase), 5)
        for t in range(length)
    ]


def kinds(length: int) -> dict[str, dict[str, Any]]:
    """The request bodies, by kind; the same body for every request of a kind."""
    one = series(length, 0.3)
    return {
        "next-step": {"series": one, "horizon": 1},
        MC_KIND: {
            "series": one,
            "horizon": 10,
            "uncertainty": {"samples": 100, "quantiles": [0.05, 0.5, 0.95]},
        },
        "100-step rollout": {"series": one, "horizon": 100},
    }


@dataclass(frozen=True)
class Target:
    name: str
    app: list[str]  # uvicorn's app argument(s)
    env: dict[str, str]
    models: tuple[str, ...]  # the models it serves


def targets(models_dir: Path, models: tuple[str, ...]) -> list[Target]:
    service = ["--factory", "service.app:create_app"]
    env = {"FORECAST_MODELS_DIR": str(models_dir), "FORECAST_DEVICE": "cpu"}
    return [
        Target(SERVICE_ON, service, {**env, "FORECAST_BATCHING": "true"}, models),
        Target(SERVICE_OFF, service, {**env, "FORECAST_BATCHING": "false"}, models),
        *(
            Target(
                ANCHOR,
                ["bench.anchors.ort_minimal:app"],
                {"ANCHOR_MODEL_DIR": str(models_dir / m)},
                (m,),
            )
            for m in models
        ),
        Target(CONSTANT, ["bench.anchors.constant:app"], {}, models[:1]),
    ]


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """One uvicorn process on 127.0.0.1; stopped by its own pid, never by name."""

    def __init__(self, target: Target, log: Path) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "uvicorn", *target.app, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), *UVICORN_FLAGS]
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **target.env}, stdout=self.log, stderr=self.log
        )

    def url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/models/{model}/forecast"

    def wait_ready(self, model: str, body: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                status, answer = post(self.url(model), body, timeout=5)
                if status == 200:
                    return
                raise RuntimeError(f"sanity request answered {status}: {answer[:300]!r}")
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError("server did not answer in time")

    def cpu_seconds(self, loop: bool = False) -> float:
        """User + system CPU time of the server process so far (Linux `/proc`), else NaN; with
        `loop`, of its main thread only (uvicorn's event loop).

        CPU per request is steadier than requests/s on a shared or busy machine."""
        pid = self.process.pid
        stat = Path(f"/proc/{pid}/task/{pid}/stat" if loop else f"/proc/{pid}/stat")
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until the server has drained what the last wrk run left in flight.

        wrk stops at its deadline with up to `c` requests sent, which the server still answers
        (64 MC-100 requests: about half a second of ORT): measured right away, the next cell's
        first requests would queue behind them (a c=1 p99 of 200 ms after the c=64 warm-up).
        Idle: under 5% of a core over 100 ms. Without /proc, a fixed pause."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        if math.isnan(before):
            time.sleep(0.5)
            return
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.cpu_seconds()
            if now - before < 0.005:
                return
            before = now

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def wrk(url: str, body: Path, connections: int, seconds: int, script: Path) -> dict[str, Any]:
    out = body.with_suffix(f".c{connections}.out.json")
    out.unlink(missing_ok=True)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(script), url]
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_OUT": str(out)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    raw: dict[str, Any] = json.loads(out.read_text())
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p95_ms": raw["p95_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "max_ms": raw["max_us"] / 1e3,
        "requests": raw["requests"],
        "errors": errors,
        "wrk": raw,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (make bench installs it: apt-get install wrk)")
    models_dir = args.models_dir.resolve()
    models = tuple(args.models)
    specs = {m: json.loads((models_dir / m / "forecaster.json").read_text()) for m in models}
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    files: dict[str, dict[str, Path]] = {}
    for m in models:
        for k, (kind, body) in enumerate(kinds(specs[m]["input_length"]).items()):
            files.setdefault(m, {})[kind] = work / f"{m}-kind{k}.json"
            files[m][kind].write_text(json.dumps(body))

    # results[model][kind][c][target]
    results: dict[str, Any] = {}
    for target in targets(models_dir, models):
        print(f"== {target.name} ({', '.join(target.models)})", flush=True)
        log = log_path(work, target.name, target.models[0])
        server = Server(target, log)
        try:
            server.wait_ready(target.models[0], files[target.models[0]]["next-step"].read_bytes())
            for m in target.models:
                url = server.url(m)
                for kind in KINDS_FOR[target.name]:
                    path = files[m][kind]
                    status, answer = post(url, path.read_bytes(), timeout=30)
                    if status != 200:
                        raise RuntimeError(f"{target.name} {m} {kind}: {status} {answer[:300]!r}")
                    wrk(url, path, args.concurrency[-1], args.warmup, script)
                    for c in args.concurrency:
                        server.wait_idle()
                        cpu = server.cpu_seconds()
                        r = wrk(url, path, c, args.duration, script)
                        r["cpu_ms_per_request"] = (
                            1e3 * (server.cpu_seconds() - cpu) / max(r["requests"], 1)
                        )
                        cell = results.setdefault(m, {}).setdefault(kind, {}).setdefault(str(c), {})
                        cell[target.name] = r
                        print(
                            f"   {m:<8} {kind:<20} c={c:<3} {r['rps']:8.1f} req/s"
                            f"  p50 {r['p50_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms"
                            f"  errors {r['errors']}  cpu {r['cpu_ms_per_request']:.2f} ms/req",
                            flush=True,
                        )
        finally:
            server.stop()
    setup = Setup(args, models_dir, models, files, script, work)
    side = side_by_side(setup) if args.rounds else {}
    mc_side = mc_side_by_side(setup) if args.rounds else {}
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": list(models),
        "models_dir": str(models_dir),
        "model_sha256": {m: specs[m].get("provenance", {}).get("model_sha256") for m in models},
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "load_generator": "wrk -t1 (keep-alive)",
        "uvicorn": UVICORN_FLAGS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
        "side_by_side": side,
        "mc_side_by_side": mc_side,
    }


def log_path(work: Path, *parts: str) -> Path:
    """A server's log file under `work`, named after `parts` (target names hold spaces, colons)."""
    return work / ("-".join(parts).replace(" ", "_").replace(":", "") + ".log")


class Setup(NamedTuple):
    """What the side-by-side phases share with the sequential one."""

    args: argparse.Namespace
    models_dir: Path
    models: tuple[str, ...]
    files: dict[str, dict[str, Path]]  # request bodies by model and kind
    script: Path  # wrk's Lua script
    work: Path  # the run's scratch folder


def round_order(names: list[str], r: int) -> list[str]:
    """The runs of side-by-side round `r`: the service and the constant anchor (the closest ratio)
    back to back, the service first in even rounds and last in odd ones, so that a drift of the
    machine's speed within a round cancels over pairs of rounds; the others after or before them."""
    first = [SERVICE_ON, *([CONSTANT] if CONSTANT in names else [])]
    order = first + [n for n in names if n not in first]
    return order if r % 2 == 0 else order[::-1]


def side_by_side(setup: Setup) -> dict[str, Any]:
    """Per model: the service (batching on and off) and both anchors up together, interleaved
    next-step runs at the top concurrency, the median of the per-round ratios."""
    args, models_dir, models, files, script, work = setup
    c = max(args.concurrency)
    out: dict[str, Any] = {}
    for m in models:
        # The service with batching on and off, this model's FastAPI+ORT anchor, the constant one.
        chosen = targets(models_dir, (m,))
        print(f"== side by side: {m}, next-step c={c}, {args.rounds} rounds", flush=True)
        servers: dict[str, Server] = {}
        body = files[m]["next-step"]
        try:
            for t in chosen:
                servers[t.name] = Server(t, log_path(work, "side", m, t.name))
            # Each server drains its requests in flight after its run, before the next one starts.
            for server in servers.values():
                server.wait_ready(m, body.read_bytes())
                wrk(server.url(m), body, c, args.warmup, script)
                server.wait_idle()
            rounds: list[dict[str, Any]] = []
            names = list(servers)
            for r in range(args.rounds):
                order = round_order(names, r)
                runs = {}
                for n in order:
                    cpu, loop = servers[n].cpu_seconds(), servers[n].cpu_seconds(loop=True)
                    runs[n] = wrk(servers[n].url(m), body, c, args.duration, script)
                    per = 1e6 / max(runs[n]["requests"], 1)
                    runs[n]["cpu_us_per_request"] = per * (servers[n].cpu_seconds() - cpu)
                    runs[n]["loop_us_per_request"] = per * (
                        servers[n].cpu_seconds(loop=True) - loop
                    )
                    servers[n].wait_idle()
                rounds.append(runs)
                print(
                    f"   round {r + 1}: "
                    + "  ".join(f"{n} {rounds[-1][n]['rps']:.0f}" for n in names)
                    + " req/s",
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()
        ratios = {
            other: [x[SERVICE_ON]["rps"] / x[other]["rps"] for x in rounds] for other in names[1:]
        }
        out[m] = {
            "concurrency": c,
            "rounds": rounds,
            "ratios": ratios,
            "median": {other: statistics.median(v) for other, v in ratios.items()},
        }
        loop_ratio = loop_cpu_ratio(rounds)
        if loop_ratio is not None:
            out[m]["loop_cpu_ratio"] = loop_ratio
    return out


def ort_ceiling(models_dir: Path, model: str, body: dict[str, Any], seconds: int) -> dict[str, Any]:
    """`bench.ort_ceiling` in a process of its own: the MC body's graph calls alone, one thread per
    CPU."""
    command = [sys.executable, "-m", "bench.ort_ceiling", str(models_dir / model)]
    command += ["--samples", str(body["uncertainty"]["samples"]), "--horizon", str(body["horizon"])]
    command += ["--threads", str(available_cpus()), "--seconds", str(seconds)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"ort_ceiling failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def mc_side_by_side(setup: Setup) -> dict[str, Any]:
    """The MC target's model at its concurrency, round by round beside `ORT alone` (the same
    request's graph calls on every CPU, no server): what the machine allows at that moment."""
    args, models_dir, models, files, script, work = setup
    m, c = MC_TARGET_MODEL, MC_TARGET_C
    if m not in models:
        return {}
    body = files[m][MC_KIND]
    request = json.loads(body.read_text())
    print(f"== side by side: {m}, {MC_KIND} c={c} and {CEILING}, {args.rounds} rounds", flush=True)
    server = Server(targets(models_dir, (m,))[0], log_path(work, "side-mc", m))
    rounds: list[dict[str, Any]] = []
    try:
        server.wait_ready(m, body.read_bytes())
        wrk(server.url(m), body, c, args.warmup, script)
        server.wait_idle()
        for r in range(args.rounds):
            runs: dict[str, Any] = {}
            for name in (SERVICE_ON, CEILING) if r % 2 == 0 else (CEILING, SERVICE_ON):
                if name == SERVICE_ON:
                    runs[name] = wrk(server.url(m), body, c, args.duration, script)
                    server.wait_idle()
                else:
                    runs[name] = ort_ceiling(models_dir, m, request, args.duration)
            rounds.append(runs)
            print(
                f"   round {r + 1}: service {runs[SERVICE_ON]['rps']:.0f} req/s, "
                f"{CEILING} {runs[CEILING]['rps']:.0f} req/s ({runs[CEILING]['threads']} threads, "
                f"median call {runs[CEILING]['median_call_ms']:.2f} ms)",
                flush=True,
            )
    finally:
        server.stop()
    return {
        "model": m,
        "kind": MC_KIND,
        "concurrency": c,
        "rounds": rounds,
        "median": {
            SERVICE_ON: statistics.median(x[SERVICE_ON]["rps"] for x in rounds),
            CEILING: statistics.median(x[CEILING]["rps"] for x in rounds),
            "ratio": statistics.median(x[SERVICE_ON]["rps"] / x[CEILING]["rps"] for x in rounds),
        },
    }


def table(report: dict[str, Any]) -> str:
    names = [SERVICE_ON, SERVICE_OFF, ANCHOR]
    lines = [
        f"{report['duration_s']} s per cell, {report['load_generator']}, uvicorn "
        f"{' '.join(report['uvicorn'])}, {report['machine']['cpus']} CPUs; "
        "req/s, then p50/p99 ms and server CPU ms per request for the service (batching on)",
        "",
        "| model | kind | c | "
        + " | ".join(f"{n} req/s" for n in names)
        + " | service p50/p99 ms | service CPU ms/req | errors (all) | on / off | on / FastAPI+ORT "
        "| on / constant |",
        "|---|---|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|---:|",
    ]
    results = report["results"]
    constant = {
        c: by_target.get(CONSTANT)
        for c, by_target in results.get(report["models"][0], {}).get("next-step", {}).items()
    }
    for model, by_kind in results.items():
        for kind, by_c in by_kind.items():
            for c, by_target in by_c.items():
                s = by_target[SERVICE_ON]
                cells = [f"{by_target[n]['rps']:.0f}" if n in by_target else "—" for n in names]
                errors = sum(r["errors"] for r in by_target.values())
                if kind == "next-step" and constant.get(c) and CONSTANT not in by_target:
                    errors += constant[c]["errors"]
                ratios = [
                    _ratio(s, by_target.get(SERVICE_OFF)),
                    _ratio(s, by_target.get(ANCHOR)),
                    _ratio(s, constant.get(c)) if kind == "next-step" else "—",
                ]
                lines.append(
                    f"| {model} | {kind} | {c} | "
                    + " | ".join(cells)
                    + f" | {s['p50_ms']:.1f}/{s['p99_ms']:.1f} | {s['cpu_ms_per_request']:.2f}"
                    + f" | {errors} | "
                    + " | ".join(ratios)
                    + " |"
                )
    lines += [
        "",
        "constant anchor (the stack's ceiling, next-step body): "
        + ", ".join(f"c={c} {r['rps']:.0f} req/s" for c, r in constant.items() if r),
    ]
    side = report.get("side_by_side") or {}
    if side:
        lines += [
            "",
            "side by side (the servers up together, interleaved runs; the verdicts use the "
            "medians):",
            "",
            "| model | c | round | service req/s | batching off req/s | FastAPI+ORT req/s "
            "| constant req/s | on / off | on / FastAPI+ORT | on / constant |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for model, cell in side.items():
            for r, x in enumerate(cell["rounds"], 1):
                off = x.get(SERVICE_OFF)
                off_rps = f"{off['rps']:.0f}" if off else "—"
                lines.append(
                    f"| {model} | {cell['concurrency']} | {r} | {x[SERVICE_ON]['rps']:.0f} | "
                    f"{off_rps} | "
                    f"{x[ANCHOR]['rps']:.0f} | {x[CONSTANT]['rps']:.0f} | "
                    f"{_ratio(x[SERVICE_ON], off)} | "
                    f"{_ratio(x[SERVICE_ON], x[ANCHOR])} | {_ratio(x[SERVICE_ON], x[CONSTANT])} |"
                )
            median = cell["median"]
            off_median = f"{median[SERVICE_OFF]:.2f}x" if SERVICE_OFF in median else "—"
            lines.append(
                f"| {model} | {cell['concurrency']} | median | | | | | {off_median} "
                f"| {median[ANCHOR]:.2f}x | {median[CONSTANT]:.2f}x |"
            )
    cpu_rows = [
        (model, r, x)
        for model, cell in side.items()
        for r, x in enumerate(cell["rounds"], 1)
        if "loop_us_per_request" in x[SERVICE_ON] and CONSTANT in x
    ]
    if cpu_rows:
        lines += [
            "",
            "CPU per request in the same runs (Linux /proc, us; steadier than requests/s when the "
            "machine's speed moves): the service's event loop (main thread) and whole process, "
            "the constant anchor's process (its loop):",
            "",
            "| model | round | service loop | service process | constant | constant / service "
            "loop |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for model, r, x in cpu_rows:
            s, k = x[SERVICE_ON], x[CONSTANT]
            lines.append(
                f"| {model} | {r} | {s['loop_us_per_request']:.0f} | "
                f"{s['cpu_us_per_request']:.0f} | {k['cpu_us_per_request']:.0f} | "
                f"{_loop_ratio(x):.2f}x |"
            )
            if r == len(side[model]["rounds"]) and "loop_cpu_ratio" in side[model]:
                lines.append(f"| {model} | median | | | | {side[model]['loop_cpu_ratio']:.2f}x |")
    mc = report.get("mc_side_by_side") or {}
    if mc:
        lines += [
            "",
            f"{mc['kind']} on {mc['model']} at c={mc['concurrency']}, side by side with "
            f"{CEILING} (the same request's graph calls, one thread per CPU, no server: "
            "`bench/ort_ceiling.py`):",
            "",
            f"| round | service req/s | {CEILING} req/s | {CEILING} median call ms "
            f"| service / {CEILING} |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r, x in enumerate(mc["rounds"], 1):
            lines.append(
                f"| {r} | {x[SERVICE_ON]['rps']:.0f} | {x[CEILING]['rps']:.0f} | "
                f"{x[CEILING]['median_call_ms']:.2f} | {x[SERVICE_ON]['rps'] / x[CEILING]['rps']:.2f}x |"
            )
        median = mc["median"]
        lines.append(
            f"| median | {median[SERVICE_ON]:.0f} | {median[CEILING]:.0f} | | "
            f"{median['ratio']:.2f}x |"
        )
    return "\n".join([*lines, "", *verdicts(report)]) + "\n"


def _loop_ratio(runs: dict[str, Any]) -> float:
    """The constant anchor's event-loop CPU per request over the service's, in one round (NaN
    without /proc or without CPU time counted)."""
    service, constant = (
        runs[SERVICE_ON]["loop_us_per_request"],
        runs[CONSTANT]["loop_us_per_request"],
    )
    return constant / service if service > 0 else math.nan


def loop_cpu_ratio(rounds: list[dict[str, Any]]) -> float | None:
    """The median over side-by-side rounds of `_loop_ratio`; None when no round has one."""
    ratios = [_loop_ratio(x) for x in rounds if CONSTANT in x]
    finite = [r for r in ratios if math.isfinite(r)]
    return statistics.median(finite) if finite else None


def _ratio(a: dict[str, Any], b: dict[str, Any] | None) -> str:
    return f"{a['rps'] / b['rps']:.2f}x" if b else "—"


def verdicts(report: dict[str, Any]) -> list[str]:
    """The issue's targets (#5), checked on this run."""
    results = report["results"]
    out = []

    def check(label: str, value: float, goal: float, unit: str = "x") -> None:
        met = "met" if value >= goal else "NOT met"
        out.append(f"- {label}: {value:.2f}{unit} (target >= {goal:g}{unit}) {met}")

    top = str(max(report["concurrency"]))
    first = report["models"][0]
    ceiling = results.get(first, {}).get("next-step", {}).get(top, {}).get(CONSTANT)
    side = report.get("side_by_side") or {}
    for m in report["models"]:
        if m in side:  # interleaved: the median of the per-round ratios
            median = side[m]["median"]
            label = f"{m} next-step c={top}: service /"
            check(f"{label} FastAPI+ORT anchor (side by side, median)", median[ANCHOR], 1.0)
            check(f"{label} constant anchor (side by side, median)", median[CONSTANT], 0.75)
            if "loop_cpu_ratio" in side[m]:
                out.append(
                    "  - event loop CPU per request, constant anchor / service (same runs, "
                    f"median): {side[m]['loop_cpu_ratio']:.2f}x"
                )
            continue
        cell = results.get(m, {}).get("next-step", {}).get(top, {})
        s = cell.get(SERVICE_ON)
        if s is None:
            continue
        if ANCHOR in cell:
            check(
                f"{m} next-step c={top}: service / FastAPI+ORT anchor",
                s["rps"] / cell[ANCHOR]["rps"],
                1.0,
            )
        if ceiling:
            check(
                f"{m} next-step c={top}: service / constant anchor", s["rps"] / ceiling["rps"], 0.75
            )
    mc_side = report.get("mc_side_by_side") or {}
    label = f"{MC_TARGET_MODEL} {MC_KIND} c={MC_TARGET_C}"
    mc = results.get(MC_TARGET_MODEL, {}).get(MC_KIND, {}).get(str(MC_TARGET_C), {}).get(SERVICE_ON)
    if mc_side:
        median = mc_side["median"]
        check(f"{label} (side by side, median)", median[SERVICE_ON], 300, " req/s")
        out.append(
            f"  - {CEILING} on {mc_side['rounds'][0][CEILING]['threads']} threads in the same "
            f"rounds: {median[CEILING]:.0f} req/s; the service at {median['ratio']:.2f}x of it"
        )
    elif mc:
        check(label, mc["rps"], 300, " req/s")
    gru = results.get("gru", {}).get("next-step", {}).get(top, {})
    if SERVICE_OFF in side.get("gru", {}).get("median", {}):
        check(
            f"gru next-step c={top}: batching on / off (side by side, median)",
            side["gru"]["median"][SERVICE_OFF],
            2.0,
        )
    elif SERVICE_ON in gru and SERVICE_OFF in gru:
        check(
            f"gru next-step c={top}: batching on / off",
            gru[SERVICE_ON]["rps"] / gru[SERVICE_OFF]["rps"],
            2.0,
        )
    errors = sum(
        r["errors"]
        for by_kind in results.values()
        for by_c in by_kind.values()
        for by_target in by_c.values()
        for r in by_target.values()
    ) + sum(r["errors"] for cell in side.values() for x in cell["rounds"] for r in x.values())
    errors += sum(x[SERVICE_ON]["errors"] for x in mc_side.get("rounds", []))
    out.append(f"- errors in every run: {errors} (target 0) {'met' if errors == 0 else 'NOT met'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each kind")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument(
        "--rounds", type=int, default=5, help="side-by-side rounds per model (0: skip that phase)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    for m in args.models:
        if not (args.models_dir / m / "forecaster.json").is_file():
            sys.exit(f"bench: no {m} model under {args.models_dir} (make train, or --models-dir)")

    report = run(args)
    markdown = table(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (stamp, "latest"):
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
        (args.out / f"{name}.md").write_text(markdown)
    print()
    print(markdown)
    print(f"saved {args.out / stamp}.json and .md")


if __name__ == "__main__":
    main()
