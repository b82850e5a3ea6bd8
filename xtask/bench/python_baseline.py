"""The Python original on psm-bench's workload: `permission-storage-manager` 1.0.2, memory and file providers.

Run by `cargo xtask bench` with the interpreter of the virtual environment it creates under
`target/bench-venv`. The workload has the same shape as psm-bench's (sessions `session_` + 22 URL-safe
characters, 10 per user, 5 permissions each from a pool of 200, a random access sequence computed
before timing, half the single checks true) and is deterministic through `random.Random(seed)`; it is
not the same data, since the two generators differ.

Every operation is timed over the whole sequence on one asyncio loop awaiting each call (single task),
best of the rounds; each round starts from a fresh manager, and `invalidate_session` runs last on the
filled store. `check_permission_sync` (one `asyncio.run` per call) is timed on a subset.

With `--file-dir`, the file provider (its defaults, `storage_dir` in a fresh directory under
`--file-dir`) is measured too, each round on a fresh directory: durable `store_permissions` of
`--file-stores` sessions by `--file-writers` concurrent writers (`asyncio.gather` over batches), then
`--file-checks` single-task `check_permission` calls cycling over those sessions' access sequence.
The original writes one JSON file per session and per user index, each with an fsync, so it is
measured on a smaller count than psm and reported as rates.

Every answer is checked. One JSON object is printed on standard output.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import string
import sys
import time
import tracemalloc
from importlib.metadata import version
from pathlib import Path

from permission_storage_manager import PermissionStorageManager

ID_ALPHABET = string.ascii_letters + string.digits + "-_"
PERMS_PER_SESSION = 5
SESSIONS_PER_USER = 10
LIST_LIMIT = 100
DEFAULT_TTL = 3600
# `check_permission_sync` starts an event loop per call, far slower than the rest: a subset suffices
# for a rate.
SYNC_CALLS = 10_000


class Workload:
    def __init__(self, n, seed):
        rng = random.Random(seed)
        self.pool = [f"res{r}:{a}" for r in range(50) for a in ("read", "write", "admin", "delete")]
        self.users = [f"user_{u:05d}" for u in range(max(n // SESSIONS_PER_USER, 1))]
        seen = set()
        self.sessions = []
        while len(self.sessions) < n:
            sid = "session_" + "".join(rng.choices(ID_ALPHABET, k=22))
            if sid not in seen:
                seen.add(sid)
                self.sessions.append(sid)
        self.owner = [s % len(self.users) for s in range(n)]
        self.perms = [rng.sample(self.pool, PERMS_PER_SESSION) for _ in range(n)]
        # Stores follow one permutation and reads another, as in psm-bench.
        self.insert_order = list(range(n))
        rng.shuffle(self.insert_order)
        self.order = list(range(n))
        rng.shuffle(self.order)
        self.user_order = list(range(len(self.users)))
        rng.shuffle(self.user_order)
        self.check = []
        self.check5 = []
        for k, s in enumerate(self.order):
            held = self.perms[s]
            if k % 2 == 0:
                asked = rng.choice(held)
            else:
                asked = rng.choice(self.pool)
                while asked in held:
                    asked = rng.choice(self.pool)
            others = rng.sample([p for p in self.pool if p != asked], PERMS_PER_SESSION - 1)
            self.check.append(asked)
            self.check5.append([asked] + others)
        # The id each read asks for, as a fresh string laid out in access order (a server holds the
        # id of the request it serves in cache); the store's own data is still accessed at random.
        self.read_ids = [self.sessions[s][:8] + self.sessions[s][8:] for s in self.order]

    def expected(self):
        n = len(self.sessions)
        per_user = [0] * len(self.users)
        for u in self.owner:
            per_user[u] += 1
        check5 = sum(
            sum(1 for p in self.check5[k] if p in self.perms[s]) for k, s in enumerate(self.order)
        )
        return {
            "store": n,
            "check": (n + 1) // 2,
            "check5": check5,
            "get": n,
            "list_user": sum(min(c, LIST_LIMIT) for c in per_user),
            "invalidate": n,
        }


def new_manager(n):
    # The quota is set above the workload; the other settings are the provider's defaults.
    return PermissionStorageManager(
        "memory", {"max_sessions": n + 1}, default_ttl=DEFAULT_TTL, auto_initialize=True
    )


async def fill(m, w, copy_ids=False):
    for s in w.insert_order:
        sid = w.sessions[s]
        if copy_ids:
            # A fresh string, so the store's own copy of the id is counted as psm's is.
            sid = sid[:8] + sid[8:]
        await m.store_permissions(sid, w.users[w.owner[s]], w.perms[s])


async def one_round(w, rates, hits):
    m = new_manager(len(w.sessions))
    await m.initialize()
    sessions, order, users = w.sessions, w.order, w.users

    async def store():
        n = 0
        for s in w.insert_order:
            n += await m.store_permissions(sessions[s], users[w.owner[s]], w.perms[s])
        return n

    async def check():
        n = 0
        for k, sid in enumerate(w.read_ids):
            n += await m.check_permission(sid, w.check[k])
        return n

    async def check5():
        n = 0
        for k, sid in enumerate(w.read_ids):
            result = await m.check_permissions(sid, w.check5[k])
            n += sum(1 for v in result.values() if v)
        return n

    async def get():
        n = 0
        for sid in w.read_ids:
            n += (await m.get_permissions(sid)) is not None
        return n

    async def list_user():
        n = 0
        for u in w.user_order:
            n += len(await m.list_sessions(users[u], LIST_LIMIT, 0))
        return n

    async def invalidate():
        n = 0
        for sid in w.read_ids:
            n += await m.invalidate_session(sid)
        return n

    for name, op, calls in (
        ("store", store, len(order)),
        ("check", check, len(order)),
        ("check5", check5, len(order)),
        ("get", get, len(order)),
        ("list_user", list_user, len(w.user_order)),
        ("invalidate", invalidate, len(order)),
    ):
        start = time.perf_counter()
        got = await op()
        elapsed = time.perf_counter() - start
        rates[name] = max(rates.get(name, 0.0), calls / elapsed)
        hits.setdefault(name, []).append(got)
    await m.close()


def sync_check_rate(w):
    m = new_manager(len(w.sessions))
    asyncio.run(fill(m, w))
    calls = min(SYNC_CALLS, len(w.order))
    start = time.perf_counter()
    n = 0
    for k in range(calls):
        n += m.check_permission_sync(w.read_ids[k], w.check[k])
    elapsed = time.perf_counter() - start
    return calls / elapsed, calls, n, (calls + 1) // 2


def bytes_per_session(w):
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    m = new_manager(len(w.sessions))

    async def build():
        await m.initialize()
        await fill(m, w, copy_ids=True)

    asyncio.run(build())
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del m
    return (after - before) / len(w.sessions)


def file_expected_checks(n, calls):
    """`check_permission` answers `true` at the even positions of the access sequence."""
    return sum(1 for k in range(calls) if (k % n) % 2 == 0)


async def file_round(w, storage_dir, writers, checks, rates, problems):
    """One round of the file provider on a fresh directory: concurrent durable stores, then checks."""
    n = len(w.sessions)
    m = PermissionStorageManager("file", {"storage_dir": storage_dir}, default_ttl=DEFAULT_TTL)
    await m.initialize()
    try:
        stored = 0
        start = time.perf_counter()
        for at in range(0, n, writers):
            batch = w.insert_order[at : at + writers]
            answers = await asyncio.gather(
                *(m.store_permissions(w.sessions[s], w.users[w.owner[s]], w.perms[s]) for s in batch)
            )
            stored += sum(1 for a in answers if a)
        elapsed = time.perf_counter() - start
        rates["store_concurrent"] = max(rates.get("store_concurrent", 0.0), n / elapsed)
        if stored != n:
            problems.append(f"file stores: {stored} of {n} answered true")
        on_disk = len(list((Path(storage_dir) / "sessions").glob("*.json")))
        if on_disk != n:
            problems.append(f"file stores: {on_disk} session files on disk, expected {n}")

        hits = 0
        start = time.perf_counter()
        for k in range(checks):
            j = k % n
            hits += await m.check_permission(w.read_ids[j], w.check[j])
        elapsed = time.perf_counter() - start
        rates["check"] = max(rates.get("check", 0.0), checks / elapsed)
        expected = file_expected_checks(n, checks)
        if hits != expected:
            problems.append(f"file checks: tallied {hits}, expected {expected}")
    finally:
        await m.close()


def file_runs(args):
    """The file provider's rounds; returns its figures and the problems found."""
    w = Workload(args.file_stores, args.seed)
    rates, problems = {}, []
    root = Path(args.file_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    for r in range(args.rounds):
        print(
            f"python baseline: file provider round {r + 1} of {args.rounds} "
            f"({args.file_stores:,} stores by {args.file_writers} writers, {args.file_checks:,} checks)",
            file=sys.stderr,
        )
        storage_dir = root / f"python-{os.getpid()}-{r}"
        shutil.rmtree(storage_dir, ignore_errors=True)
        try:
            asyncio.run(
                file_round(w, str(storage_dir), args.file_writers, args.file_checks, rates, problems)
            )
        finally:
            shutil.rmtree(storage_dir, ignore_errors=True)
    figures = {
        "stores": args.file_stores,
        "writers": args.file_writers,
        "checks": args.file_checks,
        "rounds": args.rounds,
        "storage_dir": args.file_dir,
        **rates,
    }
    return figures, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--file-dir", help="measure the file provider in fresh directories here")
    parser.add_argument("--file-stores", type=int, default=2_000)
    parser.add_argument("--file-writers", type=int, default=64)
    parser.add_argument("--file-checks", type=int, default=20_000)
    args = parser.parse_args()

    started = time.perf_counter()
    w = Workload(args.sessions, args.seed)
    rates, hits = {}, {}
    for r in range(args.rounds):
        print(f"python baseline: round {r + 1} of {args.rounds}", file=sys.stderr)
        asyncio.run(one_round(w, rates, hits))
    print("python baseline: check_permission_sync", file=sys.stderr)
    sync_rate, sync_calls, sync_hits, sync_expected = sync_check_rate(w)
    print("python baseline: bytes per session (tracemalloc)", file=sys.stderr)
    per_session = bytes_per_session(w)
    file_figures, file_problems = file_runs(args) if args.file_dir else (None, [])

    expected = w.expected()
    problems = [
        f"{name} round {i}: tallied {got}, expected {expected[name]}"
        for name, rounds in hits.items()
        for i, got in enumerate(rounds)
        if got != expected[name]
    ]
    if sync_hits != sync_expected:
        problems.append(f"check_permission_sync: tallied {sync_hits}, expected {sync_expected}")
    problems += file_problems
    if problems:
        print("python baseline: wrong answers, so no figures:\n" + "\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"python baseline: every answer checked; done in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "package": "permission-storage-manager " + version("permission-storage-manager"),
                "sessions": len(w.sessions),
                "rounds": args.rounds,
                "single": rates,
                "sync": {"check": sync_rate, "calls": sync_calls},
                "bytes_per_session": per_session,
                "file": file_figures,
                "verified": True,
                "notes": [
                    f"`check_permission_sync` runs `asyncio.run` per call; its rate comes from the first {sync_calls:,} positions of the sequence.",
                    "Bytes per session are `tracemalloc`'s traced growth while a fresh manager is filled; the ids are fresh strings so the store's copies count, and permission strings are shared with the pool, as the original stores the caller's objects.",
                    "The original adds `created_at` and `manager_version` to every session's metadata and keeps a default TTL of one hour, which psm-bench also sets.",
                ]
                + (
                    [
                        f"The file provider ran with its defaults (backups on, atomic writes) in a fresh `storage_dir` under `{file_figures['storage_dir']}` each round; "
                        f"{file_figures['stores']:,} sessions were stored by {file_figures['writers']} concurrent writers (`asyncio.gather` over batches of {file_figures['writers']}, on the default thread pool it hands its file I/O to), "
                        f"then {file_figures['checks']:,} single-task `check_permission` calls cycled over them. Fewer sessions than psm's favour the original (smaller directories)."
                    ]
                    if file_figures
                    else []
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
