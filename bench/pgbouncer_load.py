"""Benchmark: N clients at once (task pods checking in) through PgBouncer and directly to Postgres.

A scratch Postgres (max_connections sized for the direct run) and a PgBouncer configured as the
chart writes it (transaction pooling, scram clients, the platform values' metadataPoolSize as the
pool size). For each path the clients all connect at once (timed), then each runs short
transactions (its check-in row updated, as a heartbeat does) for ``--seconds``. Figures per path:
server connections held (the most seen in pg_stat_activity during the run: at most the pool size
through PgBouncer), errors (target: zero), seconds until every client was connected, transactions
per second after that; and the throughput ratio PgBouncer/direct. The last line printed is one
JSON object with the figures.

    python bench/pgbouncer_load.py [--clients 300] [--seconds 10] [--pool-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from dataclasses import asdict, dataclass

import psycopg

from ariel_airflow.cluster.render import PLATFORM_DIR, read_values
from ariel_airflow.localdev.scratch import HOST, ScratchPostgres, scratch_pgbouncer, scratch_postgres

DATABASE, USER = "airflow", "airflow"  # the chart's metadataConnection
# Above the clients: the superuser's reserved slots and the bench's own monitoring connection.
RESERVED_CONNECTIONS = 20
SAMPLE_SECONDS = 0.2  # how often pg_stat_activity is read during a run
# As the chart's templates/_helpers.yaml "pgbouncer_config" writes it, on loopback.
PGBOUNCER_INI = """\
[databases]
{database} = host={host} dbname={database} port={pg_port} pool_size={pool_size}
[pgbouncer]
pool_mode = transaction
listen_port = {{port}}
listen_addr = {host}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {{folder}}/users.txt
ignore_startup_parameters = extra_float_digits
max_client_conn = {max_client_conn}
"""


@dataclass
class Run:
    clients: int
    server_connections_max: int
    errors: int
    connect_s: float
    transactions: int
    tx_per_s: float


def platform_pool_size() -> int:
    """The metadata pool size of the platform values (platform/helm/values.yaml)."""
    return int(read_values(PLATFORM_DIR / "helm" / "values.yaml")["pgbouncer"]["metadataPoolSize"])


async def check_in(port: int, password: str, tally: dict[str, int]) -> psycopg.AsyncConnection | None:
    """One client's connection (a task pod checking in), or None when it failed."""
    try:
        return await psycopg.AsyncConnection.connect(
            host=HOST,
            port=port,
            dbname=DATABASE,
            user=USER,
            password=password,
            autocommit=True,
            prepare_threshold=None,  # PgBouncer's transaction pooling: no server-side prepared statements
            connect_timeout=120,
        )
    except psycopg.Error:
        tally["errors"] += 1
        return None


async def heartbeat(
    conn: psycopg.AsyncConnection, number: int, stop: asyncio.Event, tally: dict[str, int]
) -> None:
    """Update this client's row, one transaction at a time, until ``stop``."""
    async with conn:
        while not stop.is_set():
            try:
                await conn.execute("UPDATE checkins SET at = now(), n = n + 1 WHERE id = %s", (number,))
                tally["transactions"] += 1
            except psycopg.Error:
                tally["errors"] += 1
                return


async def held_connections(pg: ScratchPostgres, stop: asyncio.Event) -> int:
    """The most backends of USER seen in pg_stat_activity until ``stop``."""
    most = 0
    async with await psycopg.AsyncConnection.connect(
        host=HOST, port=pg.port, dbname="postgres", user="postgres", password=pg.password, autocommit=True
    ) as monitor:
        while not stop.is_set():
            cursor = await monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (USER,)
            )
            (count,) = await cursor.fetchone()
            most = max(most, count)
            await asyncio.sleep(SAMPLE_SECONDS)
    return most


async def measure(pg: ScratchPostgres, port: int, password: str, clients: int, seconds: float) -> Run:
    tally = {"transactions": 0, "errors": 0}
    stop, monitor_stop = asyncio.Event(), asyncio.Event()
    monitor = asyncio.create_task(held_connections(pg, monitor_stop))
    t0 = time.monotonic()
    conns = await asyncio.gather(*(check_in(port, password, tally) for _ in range(clients)))  # at once
    connect_s = time.monotonic() - t0
    workers = [asyncio.create_task(heartbeat(c, n, stop, tally)) for n, c in enumerate(conns) if c]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - t0
    monitor_stop.set()
    return Run(
        clients=clients,
        server_connections_max=await monitor,
        errors=tally["errors"],
        connect_s=connect_s,
        transactions=tally["transactions"],
        tx_per_s=tally["transactions"] / elapsed,
    )


def prepare(pg: ScratchPostgres, password: str, clients: int) -> None:
    with pg.connect(autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{password}'")
        admin.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
    with psycopg.connect(
        host=HOST, port=pg.port, dbname=DATABASE, user=USER, password=password, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE checkins (id int PRIMARY KEY, at timestamptz, n int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO checkins (id) SELECT generate_series(0, %s)", (clients - 1,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=300, help="clients connecting at once")
    parser.add_argument("--seconds", type=float, default=10, help="how long each run lasts")
    parser.add_argument(
        "--pool-size", type=int, default=platform_pool_size(), help="PgBouncer's server connections"
    )
    args = parser.parse_args()
    password = secrets.token_urlsafe(16)
    runs: dict[str, Run] = {}
    with scratch_postgres(max_connections=args.clients + RESERVED_CONNECTIONS) as pg:
        prepare(pg, password, args.clients)
        print(f"postgres up (max_connections {args.clients + RESERVED_CONNECTIONS})", flush=True)
        ini = PGBOUNCER_INI.format(
            database=DATABASE,
            host=HOST,
            pg_port=pg.port,
            pool_size=args.pool_size,
            max_client_conn=args.clients + RESERVED_CONNECTIONS,
        )
        with scratch_pgbouncer(ini, {"users.txt": f'"{USER}" "{password}"\n'}) as bouncer:
            print(f"pgbouncer up (pool_size {args.pool_size})", flush=True)
            for name, port in (("direct", pg.port), ("pgbouncer", bouncer.port)):
                print(f"{name}: {args.clients} clients for {args.seconds:g} s ...", flush=True)
                runs[name] = asyncio.run(measure(pg, port, password, args.clients, args.seconds))
                print(
                    f"{name}: {runs[name].transactions} transactions, {runs[name].errors} errors", flush=True
                )
    rows = [
        ("clients", "clients", "{:d}"),
        ("server connections (max)", "server_connections_max", "{:d}"),
        ("errors", "errors", "{:d}"),
        ("all connected (s)", "connect_s", "{:.2f}"),
        ("transactions", "transactions", "{:d}"),
        ("transactions/s", "tx_per_s", "{:.0f}"),
    ]
    print(f"{'':26}{'direct':>12}{'pgbouncer':>12}")
    for label, key, form in rows:
        cells = "".join(f"{form.format(getattr(runs[name], key)):>12}" for name in ("direct", "pgbouncer"))
        print(f"{label:26}{cells}")
    ratio = runs["pgbouncer"].tx_per_s / runs["direct"].tx_per_s
    print(f"{'throughput pgbouncer/direct':26}{ratio:>24.2f}")
    figures = {f"{name}_{k}": round(v, 2) for name, run in runs.items() for k, v in asdict(run).items()}
    print(json.dumps({"pool_size": args.pool_size, **figures, "throughput_ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
