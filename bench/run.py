"""`make bench`: the service against two anchors, each request kind at two concurrencies, with wrk.

    python -m bench.run [--models-dir models] [--duration 5] [--concurrency 16 64]

Three servers run one after the other on 127.0.0.1 under the same uvicorn settings (one worker,
uvloop, httptools, no access log): the service, anchor (a) `bench/anchors/constant.py` (parses
the JSON, answers a constant: the stack's ceiling) and anchor (b) `bench/anchors/ort_minimal.py`
(a few lines of FastAPI + ORT with no validation). wrk (one thread, keep-alive) drives each
request kind for `--duration` seconds after a one-second warm-up; its Lua `done` hook writes
requests, latency percentiles and errors as JSON. Results go to `bench-results/<stamp>.json` and
`.md` (and `latest.*`).
"""

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "lstm"
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
        "direct 10-step": {"series": one, "horizon": 10},
        "MC 100 + quantiles": {
            "series": one,
            "horizon": 10,
            "uncertainty": {"samples": 100, "quantiles": [0.05, 0.5, 0.95]},
        },
        "100-step rollout": {"series": one, "horizon": 100},
        "batch of 32": {"batch": [series(length, 0.1 * k) for k in range(32)], "horizon": 10},
    }


@dataclass(frozen=True)
class Target:
    name: str
    app: list[str]  # uvicorn's app argument(s)
    env: dict[str, str]


def targets(models_dir: Path) -> list[Target]:
    service_env = {"FORECAST_MODELS_DIR": str(models_dir), "FORECAST_DEVICE": "cpu"}
    return [
        Target("service", ["--factory", "service.app:create_app"], service_env),
        Target(
            "anchor: FastAPI+ORT",
            ["bench.anchors.ort_minimal:app"],
            {"ANCHOR_MODEL_DIR": str(models_dir / MODEL)},
        ),
        Target("anchor: constant", ["bench.anchors.constant:app"], {}),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
        self.url = f"http://127.0.0.1:{self.port}/v1/models/{MODEL}/forecast"
        command = [sys.executable, "-m", "uvicorn", *target.app, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), *UVICORN_FLAGS]
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **target.env}, stdout=self.log, stderr=self.log
        )

    def wait_ready(self, body: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                status, answer = post(self.url, body, timeout=5)
                if status == 200:
                    return
                raise RuntimeError(f"sanity request answered {status}: {answer[:300]!r}")
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError("server did not answer in time")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux `/proc`), else NaN.

        CPU per request is steadier than requests/s on a shared or busy machine."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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
    spec = json.loads((models_dir / MODEL / "forecaster.json").read_text())
    bodies = kinds(spec["input_length"])
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    files = {}
    for k, (kind, body) in enumerate(bodies.items()):
        files[kind] = work / f"kind{k}.json"
        files[kind].write_text(json.dumps(body))

    results: dict[str, Any] = {}
    for target in targets(models_dir):
        print(f"== {target.name}", flush=True)
        server = Server(target, work / f"{target.name.replace(' ', '_').replace(':', '')}.log")
        try:
            server.wait_ready(files["next-step"].read_bytes())
            for kind, path in files.items():
                status, answer = post(server.url, path.read_bytes(), timeout=30)
                if status != 200:
                    raise RuntimeError(f"{target.name} {kind}: {status} {answer[:300]!r}")
                wrk(server.url, path, args.concurrency[0], args.warmup, script)
                for c in args.concurrency:
                    cpu = server.cpu_seconds()
                    r = wrk(server.url, path, c, args.duration, script)
                    r["cpu_ms_per_request"] = (
                        1e3 * (server.cpu_seconds() - cpu) / max(r["requests"], 1)
                    )
                    results.setdefault(kind, {}).setdefault(str(c), {})[target.name] = r
                    print(
                        f"   {kind:<20} c={c:<3} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f}"
                        f"  p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}"
                        f"  cpu {r['cpu_ms_per_request']:.2f} ms/req",
                        flush=True,
                    )
        finally:
            server.stop()
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": MODEL,
        "models_dir": str(models_dir),
        "model_sha256": spec.get("provenance", {}).get("model_sha256"),
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "load_generator": "wrk -t1 (keep-alive)",
        "uvicorn": UVICORN_FLAGS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    names = ["service", "anchor: FastAPI+ORT", "anchor: constant"]
    lines = [
        f"model `{report['model']}`, {report['duration_s']} s per cell, {report['load_generator']}, "
        f"uvicorn {' '.join(report['uvicorn'])}, {report['machine']['cpus']} CPUs",
        "",
        "| kind | c | "
        + " | ".join(f"{n} req/s | p50/p95/p99 ms | err | CPU ms/req" for n in names)
        + " | service / FastAPI+ORT |",
        "|---|---:|" + "---:|---:|---:|---:|" * len(names) + "---:|",
    ]
    for kind, by_c in report["results"].items():
        for c, by_target in by_c.items():
            cells = []
            for n in names:
                r = by_target.get(n)
                if r is None:
                    cells.append("— | — | — | —")
                    continue
                cells.append(
                    f"{r['rps']:.0f} | {r['p50_ms']:.1f}/{r['p95_ms']:.1f}/{r['p99_ms']:.1f}"
                    f" | {r['errors']} | {r['cpu_ms_per_request']:.2f}"
                )
            anchor = by_target.get("anchor: FastAPI+ORT")
            ratio = f"{by_target['service']['rps'] / anchor['rps']:.2f}x" if anchor else "—"
            lines.append(f"| {kind} | {c} | " + " | ".join(cells) + f" | {ratio} |")
    verdicts = []
    for c, by_target in report["results"].get("next-step", {}).items():
        s, a = by_target["service"], by_target["anchor: FastAPI+ORT"]
        ok = s["rps"] >= 0.8 * a["rps"] and s["errors"] == 0
        verdicts.append(
            f"- next-step c={c}: service {s['rps']:.0f} req/s = {s['rps'] / a['rps']:.2f}x the "
            f"FastAPI+ORT anchor, {s['errors']} errors: target (>= 0.8x, 0 errors) "
            f"{'met' if ok else 'NOT met'}"
        )
    return "\n".join([*lines, "", *verdicts]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each kind")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    if not (args.models_dir / MODEL / "forecaster.json").is_file():
        sys.exit(f"bench: no {MODEL} model under {args.models_dir} (make train, or --models-dir)")

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
