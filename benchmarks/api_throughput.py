"""Lease / heartbeat / complete throughput and latency of the job queue against the embedded server.

    python benchmarks/api_throughput.py [--jobs 300] [--clients 1 16 64]

Starts `python -m database` on a free loopback port with a fresh embedded database, then for each
client count drives every job through lease, heartbeat and complete over HTTP, and prints operations
per second with p50/p99 latency per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from database.client import ApiClient  # noqa: E402
from database.embedded import free_port  # noqa: E402

TOKEN = "bench-token"


def start_api(run_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "RUN_DIR": str(run_dir), "API_TOKEN": TOKEN, "MONGODB_URL": "", "EMBEDDING_BACKEND": "tfidf"}
    process = subprocess.Popen([sys.executable, "-m", "database", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the API did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_round(url: str, jobs: int, clients: int) -> dict[str, list[float]]:
    async with ApiClient(url, TOKEN) as admin:
        await asyncio.gather(*(admin.create_job(kind="train") for _ in range(jobs)))
    latencies: dict[str, list[float]] = {"lease": [], "heartbeat": [], "complete": []}

    async def timed(name, call):
        start = time.perf_counter()
        result = await call
        latencies[name].append(time.perf_counter() - start)
        return result

    async def worker(number: int) -> None:
        async with ApiClient(url, TOKEN) as client:
            while (job := await timed("lease", client.lease_job(["train"], f"w{number}"))) is not None:
                await timed("heartbeat", client.heartbeat(job["id"], f"w{number}"))
                await timed("complete", client.complete_job(job["id"], f"w{number}", {}))

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_api(Path(tmp))
        try:
            print(f"{'clients':>7} {'op':>9} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
            for clients in args.clients:
                start = time.perf_counter()
                latencies = await run_round(url, args.jobs, clients)
                wall = time.perf_counter() - start
                for name, values in latencies.items():
                    print(f"{clients:>7} {name:>9} {len(values) / wall:>8.1f} {1000 * statistics.median(values):>8.2f}"
                          f" {1000 * percentile(values, 0.99):>8.2f}")
                print(f"{clients:>7} {'jobs':>9} {args.jobs / wall:>8.1f}  (whole lease-heartbeat-complete cycles)")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    asyncio.run(main())
