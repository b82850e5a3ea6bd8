"""The Python original's Redis provider on psm-bench's Redis workload: `permission-storage-manager` 1.0.2.

Run by `cargo xtask bench` with the interpreter of its virtual environment (`target/bench-venv`, where
the package pulls in redis-py). The workload is `python_baseline.Workload` (the same shape as
psm-bench's: sessions `session_` + 22 URL-safe characters, 10 per user, 5 permissions each from a pool
of 200, a random access sequence computed before timing, half the checks true).

Every session is stored through the manager (`asyncio.gather` over `--workers` workers), under a fresh
key prefix. Each round then times `--checks` `check_permission` calls cycling over the access sequence,
first from one task awaiting each call (sequential), then split among `--workers` worker coroutines
gathered on the same loop (concurrent); best of the rounds. Every answer is checked, every exception is
counted (and any makes the run fail), and the prefix is removed with SCAN + UNLINK at the end.

One JSON object is printed on standard output.
"""

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import time
from importlib.metadata import version

import redis.asyncio as aioredis
from permission_storage_manager import PermissionStorageManager

from python_baseline import DEFAULT_TTL, Workload

# redis-py's asyncio pool raises "Too many connections" past `max_connections` (the provider's default
# is 50), so the pool gets room for every concurrent worker plus the provider's health check.
MAX_CONNECTIONS_OVER_WORKERS = 16


def expected_hits(n, start, stop):
    """`check_permission` answers `true` at the even positions of the access sequence."""
    return sum(1 for k in range(start, stop) if (k % n) % 2 == 0)


async def checks(m, w, start, stop, errors):
    n = len(w.read_ids)
    hits = 0
    for k in range(start, stop):
        j = k % n
        try:
            hits += await m.check_permission(w.read_ids[j], w.check[j])
        except Exception as e:  # every failure counts; the run fails if there is any
            errors.append(repr(e))
    return hits


def split(calls, workers):
    return [(calls * i // workers, calls * (i + 1) // workers) for i in range(workers)]


async def fill(m, w, workers, errors):
    async def worker(start, stop):
        stored = 0
        for k in range(start, stop):
            s = w.insert_order[k]
            try:
                stored += await m.store_permissions(w.sessions[s], w.users[w.owner[s]], w.perms[s])
            except Exception as e:
                errors.append(repr(e))
        return stored

    return sum(await asyncio.gather(*(worker(a, b) for a, b in split(len(w.sessions), workers))))


async def remove_prefix(url, prefix):
    client = aioredis.from_url(url)
    removed = 0
    try:
        batch = []
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await client.unlink(*batch)
                batch = []
        if batch:
            removed += await client.unlink(*batch)
        left = 0
        async for _ in client.scan_iter(match=prefix + "*", count=1000):
            left += 1
    finally:
        await client.aclose()
    return removed, left


async def run(args):
    w = Workload(args.sessions, args.seed)
    n = len(w.sessions)
    prefix = f"psmbench:{os.getpid()}_{secrets.token_hex(8)}:py:"
    max_connections = args.workers + MAX_CONNECTIONS_OVER_WORKERS
    m = PermissionStorageManager(
        "redis",
        {"url": args.url, "key_prefix": prefix, "max_connections": max_connections},
        default_ttl=DEFAULT_TTL,
    )
    errors, problems = [], []
    rates = {"sequential": [], "concurrent": []}
    try:
        await m.initialize()
        print(f"python redis: storing {n:,} sessions ({args.workers} workers)", file=sys.stderr)
        stored = await fill(m, w, args.workers, errors)
        if stored != n:
            problems.append(f"fill: {stored} of {n} stores answered true")
        expected = expected_hits(n, 0, args.checks)
        for r in range(args.rounds):
            print(
                f"python redis: round {r + 1} of {args.rounds}: {args.checks:,} checks from 1 task, then from {args.workers}",
                file=sys.stderr,
            )
            start = time.perf_counter()
            hits = await checks(m, w, 0, args.checks, errors)
            rates["sequential"].append(args.checks / (time.perf_counter() - start))
            if hits != expected:
                problems.append(f"sequential round {r + 1}: tallied {hits}, expected {expected}")

            start = time.perf_counter()
            parts = await asyncio.gather(
                *(checks(m, w, a, b, errors) for a, b in split(args.checks, args.workers))
            )
            rates["concurrent"].append(args.checks / (time.perf_counter() - start))
            if sum(parts) != expected:
                problems.append(f"concurrent round {r + 1}: tallied {sum(parts)}, expected {expected}")
    finally:
        await m.close()
        removed, left = await remove_prefix(args.url, prefix)
        if left:
            problems.append(f"{left} keys left under {prefix} after cleanup")
    return w, rates, errors, problems, removed, max_connections


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    w, rates, errors, problems, removed, max_connections = asyncio.run(run(args))
    if errors:
        problems.append(f"{len(errors)} calls raised, the first: {errors[0]}")
    if problems:
        print("python redis: wrong answers or errors, so no figures:\n" + "\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"python redis: every answer checked, no errors; done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "package": "permission-storage-manager " + version("permission-storage-manager"),
                "redis_py": version("redis"),
                "sessions": len(w.sessions),
                "checks": args.checks,
                "workers": args.workers,
                "rounds": args.rounds,
                "max_connections": max_connections,
                "sequential": max(rates["sequential"]),
                "concurrent": max(rates["concurrent"]),
                "sequential_rounds": rates["sequential"],
                "concurrent_rounds": rates["concurrent"],
                "errors": len(errors),
                "keys_removed": removed,
                "verified": True,
            }
        )
    )


if __name__ == "__main__":
    main()
