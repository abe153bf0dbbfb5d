"""An open-loop HTTP load generator, run as its own process by the API benchmark.

``python -m bench.loadgen --base URL --kind get|post --rate 50 --seconds 20 --ids FILE``
sends request *i* at ``start + i / rate`` whatever happened to the earlier ones, and measures
each latency from that scheduled instant (so a stall shows up as latency, not as a lower rate).
The API key comes from ``BENCH_API_KEY``. Prints one JSON object: latencies in milliseconds,
status counts and transport errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.specs import job_specs


async def _one(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any,
    scheduled: float,
    out: dict[str, Any],
) -> None:
    try:
        response = await client.request(method, path, json=body)
        out["statuses"][str(response.status_code)] += 1
        out["latencies_ms"].append((time.perf_counter() - scheduled) * 1000)
    except httpx.HTTPError as exc:
        out["errors"][type(exc).__name__] += 1


async def run(args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    rng = random.Random(1)
    total = int(args.rate * args.seconds)
    specs = job_specs(total, tag=f"loadgen {time.time_ns()}") if args.kind == "post" else []
    out: dict[str, Any] = {"latencies_ms": [], "statuses": Counter(), "errors": Counter()}
    headers = {"Authorization": f"Bearer {os.environ['BENCH_API_KEY']}"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(
        base_url=args.base, headers=headers, timeout=30, limits=limits
    ) as client:
        tasks = []
        start = time.perf_counter() + 0.2
        for i in range(total):
            scheduled = start + i / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if args.kind == "get":
                method, path, body = "GET", f"/v1/jobs/{rng.choice(ids)}", None
            else:
                method, path, body = "POST", "/v1/jobs", specs[i]
            tasks.append(asyncio.create_task(_one(client, method, path, body, scheduled, out)))
        await asyncio.gather(*tasks)
        out["offered_seconds"] = args.seconds
        out["sent"] = total
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--kind", choices=("get", "post"), required=True)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ids", default="")
    args = parser.parse_args(argv)
    if not args.base.startswith("http://127.0.0.1"):
        parser.error("load goes to 127.0.0.1 only")
    ids = Path(args.ids).read_text().split() if args.ids else []
    json.dump(asyncio.run(run(args, ids)), sys.stdout)


if __name__ == "__main__":
    main()
