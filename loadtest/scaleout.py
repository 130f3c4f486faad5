"""Scale-out, measured side by side in one run on one machine (docs/scaling.md):

    uv run python loadtest/scaleout.py [--seconds 10]

Starts a private PostgreSQL 15 primary, a streaming replica, PgBouncer (transaction mode) and up to
three service instances (the test rehearsal's servers, loadtest/cluster.py), on a RabbitMQ vhost of
its own on the machine's broker, then measures with wrk (64 connections, 2 threads, a warm-up first):

1. GET /users/{id} and POST /users/ through HAProxy with 1, 2 and 3 instances, and where the CPU went;
2. one instance without HAProxy: straight to PostgreSQL, through PgBouncer (statement cache 0), and
   straight with the cache at 0 too, so the pooler's hop and the unnamed statements are told apart;
3. a client reading its own writes (POST then GET of that user) with and without the token;
4. the replica's lag while the creates run (pg_stat_replication, sampled every 0.1 s);
5. the relay draining a backlog of 20,000 events while two standby relays wait for the lock.

Writes loadtest/results/scaleout.md and scaleout.json. Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtest.cluster import HAProxy, PgBouncer, Postgres  # noqa: E402
from loadtest.service_process import ServiceProcess  # noqa: E402

WRK_DIR = ROOT / "loadtest" / "wrk"
RESULTS = ROOT / "loadtest" / "results"
RESULT = re.compile(r"WRK_RESULT (.*)")
DATABASE = "users"
SEED_USERS = 10_000
BACKLOG = 20_000


def db_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"


def wrk(
    url: str, script: str, seconds: float, env: dict[str, str] | None = None, cpu: CpuShare | None = None
) -> dict[str, Any]:
    command = ["wrk", "-t2", "-c64", f"-d{round(seconds)}s", "--latency", "-s", str(WRK_DIR / script), url]
    run_env = {**os.environ, "WRK_TAG": uuid.uuid4().hex[:8], **(env or {})}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=run_env) as process:
        if cpu is not None:  # the middle of the run, while wrk and every server are busy
            time.sleep(1)
            with cpu:
                time.sleep(max(1.0, seconds - 2))
        out, _ = process.communicate()
    assert process.returncode == 0, out
    match = RESULT.search(out)
    assert match, out
    numbers: dict[str, Any] = {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    numbers["rps"] = numbers["requests"] / (numbers["duration_us"] / 1e6)
    if extra := re.search(r"WRT_RESULT (.*)", out):
        numbers.update({k: float(v) for k, v in (kv.split("=") for kv in extra.group(1).split())})
    if cpu is not None:
        numbers["cpu"] = cpu.shares
    return numbers


def cpu_ticks() -> dict[int, tuple[int, str, int]]:
    """Every process: (cpu ticks, command line, parent pid)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (int(fields[11]) + int(fields[12]), cmdline, int(fields[1]))
    return found


def busy_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuShare:
    """Where the machine's CPU went during a run, by part (seconds of CPU per second of wall time)."""

    def __init__(self, parts: dict[str, set[int]], postmasters: dict[str, int]) -> None:
        self.parts, self.postmasters = parts, postmasters

    def __enter__(self) -> CpuShare:
        self.before, self.busy_before, self.started = cpu_ticks(), busy_ticks(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        after, busy_after = cpu_ticks(), busy_ticks()
        wall = time.monotonic() - self.started
        hz = os.sysconf("SC_CLK_TCK")
        shares: dict[str, float] = dict.fromkeys([*self.parts, *self.postmasters, "wrk"], 0.0)
        mine = 0.0
        for pid, (ticks, cmdline, ppid) in after.items():
            used = (ticks - self.before.get(pid, (0, "", 0))[0]) / hz / wall
            part = next((name for name, pids in self.parts.items() if pid in pids), None)
            if part is None:
                part = next((n for n, pm in self.postmasters.items() if pm in (pid, ppid)), None)
            if part is None and cmdline.startswith("wrk "):
                part = "wrk"
            if part is not None:
                shares[part] += used
                mine += used
        total = (busy_after[0] - self.busy_before[0]) / max(1, busy_after[1] - self.busy_before[1])
        self.shares = {k: round(v, 2) for k, v in shares.items()}
        self.shares["machine_busy_cores"] = round(total * os.cpu_count(), 2)  # type: ignore[operator]
        self.shares["others_cores"] = round(max(0.0, total * os.cpu_count() - mine), 2)  # type: ignore[operator]


class LagSampler:
    """The replica's lag on the primary (pg_stat_replication), every 0.1 s, on a thread of its own."""

    def __init__(self, primary_port: int) -> None:
        self.port = primary_port
        self.samples: list[tuple[float, float]] = []  # (replay lag s, bytes behind)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        conn = await asyncpg.connect(db_url(self.port))
        try:
            while not self._stop.is_set():
                row = await conn.fetchrow(
                    "SELECT coalesce(extract(epoch FROM replay_lag), 0)::float8, "
                    "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 FROM pg_stat_replication"
                )
                if row is not None:
                    self.samples.append((row[0], row[1]))
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        lags = sorted(s[0] for s in self.samples)
        behind = sorted(s[1] for s in self.samples)
        return {
            "replay_lag_p50_ms": round(lags[len(lags) // 2] * 1000, 2),
            "replay_lag_max_ms": round(lags[-1] * 1000, 2),
            "bytes_behind_p50": behind[len(behind) // 2],
            "bytes_behind_max": behind[-1],
        }


def rabbitmq_vhost(name: str, add: bool) -> None:
    ctl = ["rabbitmqctl", "-q"]
    if add:
        subprocess.run([*ctl, "add_vhost", name], check=True, capture_output=True)
        subprocess.run(
            [*ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True, capture_output=True
        )
    else:
        subprocess.run([*ctl, "delete_vhost", name], check=False, capture_output=True)


@contextlib.contextmanager
def instances(count: int, env: dict[str, str]) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    try:
        started.extend(
            ServiceProcess({"LOG_LEVEL": "warning", **env}).start(timeout=90) for _ in range(count)
        )
        yield started
    finally:
        for instance in started:
            with contextlib.suppress(Exception):
                instance.stop()
            instance.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def balancer(ports: list[int]) -> Iterator[HAProxy]:
    proxy = HAProxy(ports).start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{proxy.url}/healthcheck/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        time.sleep(1.5)  # every server's checks risen
        yield proxy
    finally:
        proxy.stop()


def measure(
    url: str, script: str, seconds: float, env: dict[str, str] | None = None, cpu: CpuShare | None = None
) -> dict[str, Any]:
    wrk(url, script, 3, env)  # warm-up
    time.sleep(1)
    load = os.getloadavg()[0]
    result = wrk(url, script, seconds, env, cpu)
    result["load_before"] = round(load, 2)
    return result


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the rounds, the one with the most requests per second: the least disturbed by other load."""
    chosen = dict(max(runs, key=lambda r: r["rps"]))
    chosen["rounds_rps"] = [round(r["rps"]) for r in runs]
    return chosen


async def seed(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "INSERT INTO users (id, username, first_name, last_name) "
            "SELECT gen_random_uuid(), 'seed' || n, 'Seed', 'User' FROM generate_series(1, $1) n "
            "RETURNING id",
            SEED_USERS,
        )
    finally:
        await conn.close()
    return [str(r["id"]) for r in rows]


async def drain_backlog(primary: Postgres) -> dict[str, Any]:
    """BACKLOG events written at once; the time until the active relay has published them all."""
    conn = await asyncpg.connect(db_url(primary.port))
    try:
        await conn.execute(
            "INSERT INTO outbox (id, type, aggregate_id, payload) "
            "SELECT gen_random_uuid(), 'user.created', gen_random_uuid(), "
            "jsonb_build_object('specversion', '1.0', 'n', n) FROM generate_series(1, $1) n",
            BACKLOG,
        )
        started = time.monotonic()
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            if time.monotonic() - started > 120:
                raise TimeoutError("the backlog did not drain")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        holders = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = '' "
            "AND backend_type = 'client backend'",
            DATABASE,
        )
    finally:
        await conn.close()
    return {
        "events": BACKLOG,
        "seconds": round(elapsed, 2),
        "events_per_s": round(BACKLOG / elapsed),
        "lock_holders": holders,
        "relay_sessions": waiting,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2, choices=[1, 2, 3])
    parser.add_argument("--only-read-your-writes", action="store_true", help="measure part 3 alone")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "cpus": os.cpu_count(),
        "load_at_start": os.getloadavg(),
    }
    vhost = f"scaleout-{uuid.uuid4().hex[:8]}"
    primary = Postgres()
    replica = Postgres(replica_of=primary)
    bouncer = PgBouncer(primary, pool_size=40)
    rabbitmq_vhost(vhost, add=True)
    try:
        primary.start()
        asyncio.run(primary.fetchval(f"CREATE DATABASE {DATABASE}"))
        subprocess.run(
            ["uv", "run", "user-service", "migrate"],
            env={**os.environ, "DATABASE_URL": db_url(primary.port)},
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        ids = asyncio.run(seed(db_url(primary.port)))
        ids_file = RESULTS / "tmp" / "scaleout-ids.txt"
        ids_file.parent.mkdir(parents=True, exist_ok=True)
        ids_file.write_text("\n".join(ids) + "\n")
        replica.start()
        bouncer.start()
        broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        full = {
            "DATABASE_URL": bouncer.url(DATABASE),
            "DB_STATEMENT_CACHE_SIZE": "0",
            "DATABASE_READ_URL": db_url(replica.port),
            "RELAY_DATABASE_URL": db_url(primary.port),
            "BROKER_URL": broker,
        }
        reads_env = {"IDS_FILE": str(ids_file)}
        postmasters = {
            "primary": int((primary.data / "postmaster.pid").read_text().split()[0]),
            "replica": int((replica.data / "postmaster.pid").read_text().split()[0]),
        }

        # 1. 1, 2, 3 instances behind HAProxy, in rotating order over the rounds (the machine is shared:
        # a run disturbed by other load shows in its round, and the best round of each is reported).
        scaling: dict[str, Any] = {}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        with instances(3, full) as running, contextlib.ExitStack() as stack:
            proxies = {n: stack.enter_context(balancer([i.port for i in running[:n]])) for n in (1, 2, 3)}
            parts = {
                "instances": {i.process.pid for i in running if i.process},
                "pgbouncer": _pids_named("pgbouncer"),
                "haproxy": _pids_named("haproxy"),
            }
            rounds = 0 if args.only_read_your_writes else args.rounds
            for order in ((1, 2, 3), (3, 2, 1), (2, 3, 1))[:rounds]:
                for count in order:
                    proxy = proxies[count]
                    got = runs.setdefault(str(count), {"get": [], "post": [], "lag": []})
                    got["get"].append(
                        measure(
                            proxy.url, "get_by_id.lua", args.seconds, reads_env, CpuShare(parts, postmasters)
                        )
                    )
                    with LagSampler(primary.port) as lag:
                        got["post"].append(
                            measure(
                                proxy.url, "post_users.lua", args.seconds, cpu=CpuShare(parts, postmasters)
                            )
                        )
                    got["lag"].append(lag.summary())
                    get_rps, post_rps = got["get"][-1]["rps"], got["post"][-1]["rps"]
                    print(f"{count} instance(s): GET {get_rps:.0f}/s, POST {post_rps:.0f}/s", flush=True)
            for count, got in runs.items():
                post = best(got["post"])
                scaling[count] = {
                    "get": best(got["get"]),
                    "post": post,
                    "replica_lag": got["lag"][got["post"].index(max(got["post"], key=lambda r: r["rps"]))],
                }
            proxy = proxies[3]
            # 3. reading one's own writes, through the balancer over three instances
            if True:
                ryw: dict[str, Any] = {}
                for name, token in (("with_token", {"SEND_TOKEN": "1"}), ("without_token", {})):
                    before = _reads_by_reason([i.url for i in running])
                    ryw[name] = measure(proxy.url, "write_then_read.lua", args.seconds, token)
                    after = _reads_by_reason([i.url for i in running])
                    ryw[name]["reads_by_reason"] = {
                        k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)
                    }
            if args.only_read_your_writes:
                print(json.dumps(ryw, indent=2))
                return
            # 5. the relay draining a backlog, two standbys waiting for the lock
            relay = asyncio.run(drain_backlog(primary))
            print(f"relay: {relay}", flush=True)
        results.update(scaling=scaling, read_your_writes=ryw, relay=relay)

        # 2. one instance, no balancer: the pooler's cost, and the unnamed statements' own; all four
        # configurations running at once and measured in rotating order.
        configs = {
            "direct": {"DATABASE_URL": db_url(primary.port)},
            "direct_cache_0": {"DATABASE_URL": db_url(primary.port), "DB_STATEMENT_CACHE_SIZE": "0"},
            "pgbouncer_cache_0": {"DATABASE_URL": bouncer.url(DATABASE), "DB_STATEMENT_CACHE_SIZE": "0"},
            "pgbouncer_cache_0_replica": {k: v for k, v in full.items() if k != "BROKER_URL"},
        }
        pooler: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            ones = {name: stack.enter_context(instances(1, env))[0] for name, env in configs.items()}
            names = list(configs)
            got_p: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"get": [], "post": []} for n in names}
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    got_p[name]["get"].append(
                        measure(ones[name].url, "get_by_id.lua", args.seconds, reads_env)
                    )
                    got_p[name]["post"].append(measure(ones[name].url, "post_users.lua", args.seconds))
                    get_rps, post_rps = got_p[name]["get"][-1]["rps"], got_p[name]["post"][-1]["rps"]
                    print(f"{name}: GET {get_rps:.0f}/s, POST {post_rps:.0f}/s", flush=True)
            pooler = {n: {"get": best(g["get"]), "post": best(g["post"])} for n, g in got_p.items()}
        results["pooler"] = pooler
    finally:
        bouncer.stop()
        replica.stop()
        primary.stop()
        rabbitmq_vhost(vhost, add=False)
    results["load_at_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaleout.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "scaleout.md").write_text(report(results))
    print(report(results))


def _pids_named(name: str) -> set[int]:
    return {pid for pid, (_, cmdline, _) in cpu_ticks().items() if cmdline.split(" ")[0].endswith(name)}


def _reads_by_reason(urls: list[str]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=2).text.splitlines():
            if line.startswith("db_client_reads_total{"):
                series, value = line.rsplit(" ", 1)
                totals[series] = totals.get(series, 0) + float(value)
    return totals


def report(r: dict[str, Any]) -> str:
    lines = [
        f"Run {r['started']} UTC, {r['cpus']} CPUs, load average at start {r['load_at_start'][0]:.2f}, "
        f"at end {r['load_at_end'][0]:.2f}.",
        "",
        "| instances | GET /users/{id} req/s [rounds] | p99 ms | POST /users/ req/s [rounds] | p99 ms "
        "| replica lag p50 / max ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for count, s in r["scaling"].items():
        lag = s["replica_lag"]
        get, post = s["get"], s["post"]
        lines.append(
            f"| {count} | {get['rps']:.0f} {get['rounds_rps']} | {get['p99_ms']:.0f} | "
            f"{post['rps']:.0f} {post['rounds_rps']} | {post['p99_ms']:.0f} | "
            f"{lag.get('replay_lag_p50_ms', 'n/a')} / {lag.get('replay_lag_max_ms', 'n/a')} |"
        )
    lines += [
        "",
        "CPU (cores busy) during each run:",
        "",
        "| behind HAProxy | shape | 3 instances | primary | replica | pgbouncer | haproxy | wrk | others "
        "| machine |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, s in r["scaling"].items():
        for shape in ("get", "post"):
            c = s[shape]["cpu"]
            lines.append(
                f"| {count} | {shape.upper()} | {c['instances']} | {c['primary']} | {c['replica']} | "
                f"{c['pgbouncer']} | {c['haproxy']} | {c['wrk']} | {c['others_cores']} | "
                f"{c['machine_busy_cores']} |"
            )
    lines += [
        "",
        "| one instance, no balancer | GET req/s [rounds] | p99 ms | POST req/s [rounds] | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, p in r["pooler"].items():
        lines.append(
            f"| {name} | {p['get']['rps']:.0f} {p['get']['rounds_rps']} | {p['get']['p99_ms']:.0f} | "
            f"{p['post']['rps']:.0f} {p['post']['rounds_rps']} | {p['post']['p99_ms']:.0f} |"
        )
    ryw = r["read_your_writes"]
    lines += [
        "",
        "| POST then GET, 3 instances | req/s | p50 ms | p99 ms | GET 404 (stale) | 503 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("with_token", "without_token"):
        w = ryw[name]
        lines.append(
            f"| {name} | {w['rps']:.0f} | {w['p50_ms']:.1f} | {w['p99_ms']:.0f} | {w['not_found']:.0f} | "
            f"{w['unavailable']:.0f} |"
        )
    for name in ("with_token", "without_token"):
        lines.append(
            f"\nReads by server and reason, {name} (warm-up included): {ryw[name]['reads_by_reason']}"
        )
    lines += ["", f"Relay: {r['relay']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
