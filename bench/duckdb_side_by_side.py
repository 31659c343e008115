#!/usr/bin/env python3
"""Runs `integration-health bench ingest` and DuckDB on the same NDJSON file, in one run, and
prints both ingest rates on 1 and 2 threads and the dashboard queries of the largest tenant,
with the ratios.

    python3 bench/duckdb_side_by_side.py --input events.ndjson [--json]

DuckDB comes from PyPI: on first use the script makes `target/bench-venv` and installs the
pinned version there, then runs itself again inside it. See docs/performance.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DUCKDB_VERSION = "2.0.1"
REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "target" / "bench-venv"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

COLUMNS = {
    "event_id": "VARCHAR",
    "tenant_id": "VARCHAR",
    "occurred_at": "BIGINT",
    "integration_type": "VARCHAR",
    "integration_id": "VARCHAR",
    "integration_name": "VARCHAR",
    "outcome": "VARCHAR",
    "status_code": "INTEGER",
    "error_message": "VARCHAR",
    "flow_id": "VARCHAR",
    "flow_name": "VARCHAR",
    "service_id": "VARCHAR",
    "service_name": "VARCHAR",
    "latency_ms": "DOUBLE",
}


def ensure_duckdb():
    try:
        import duckdb  # noqa: F401
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"duckdb=={DUCKDB_VERSION}"], check=True
    )
    os.execv(str(python), [str(python), *sys.argv])


def ours(binary, path, rounds):
    if not Path(binary).exists():
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    out = subprocess.run(
        [binary, "bench", "ingest", "--input", str(path), "--rounds", str(rounds), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def source(path):
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    return f"read_json('{path}', format = 'newline_delimited', columns = {{{columns}}})"


def timed(run, repeats):
    """Median seconds of `repeats` runs."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def duckdb_cube(con, path, threads, repeats):
    """Events per second reading the file straight into one cube, as the issue measured it."""
    con.execute(f"SET threads = {threads}")
    query = f"""
        CREATE OR REPLACE TEMP TABLE cube AS
        SELECT tenant_id, integration_type, status_code, outcome,
               occurred_at // {DAY_MS} AS day, count(*) AS events
        FROM {source(path)}
        GROUP BY ALL"""
    return timed(lambda: con.execute(query), repeats)


def duckdb_queries(con, now_ms, rounds):
    """Median microseconds of each dashboard query for the largest tenant, on a loaded table."""
    (tenant,) = con.execute(
        "SELECT tenant_id FROM events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    ).fetchone()
    end = (now_ms // HOUR_MS + 1) * HOUR_MS
    start = (now_ms - 30 * DAY_MS) // HOUR_MS * HOUR_MS
    day_start = (now_ms - DAY_MS) // 60_000 * 60_000
    in_range = f"tenant_id = '{tenant}' AND occurred_at >= {start} AND occurred_at < {end}"
    failed = "outcome = 'failure'"
    top_group = con.execute(
        f"""SELECT integration_id, service_id, flow_id, status_code, error_message
            FROM events WHERE {in_range} AND {failed}
            GROUP BY ALL ORDER BY count(*) DESC LIMIT 1"""
    ).fetchone()
    group_filter = " AND ".join(
        f"{name} IS NOT DISTINCT FROM ?"
        for name in ["integration_id", "service_id", "flow_id", "status_code", "error_message"]
    )
    queries = {
        "overview": f"""SELECT integration_type, count(*) FILTER ({failed}), count(*)
            FROM events WHERE {in_range} GROUP BY 1""",
        "change_1d": f"""SELECT integration_type,
              count(*) FILTER (occurred_at >= {day_start}),
              count(*) FILTER (occurred_at < {day_start})
            FROM events WHERE tenant_id = '{tenant}' AND {failed}
              AND occurred_at >= {day_start - DAY_MS} AND occurred_at < {day_start + DAY_MS}
            GROUP BY 1""",
        "errors": f"""SELECT integration_type, status_code, count(*)
            FROM events WHERE {in_range} AND {failed} GROUP BY ALL ORDER BY 3 DESC""",
        "trends_day": f"""SELECT occurred_at // {DAY_MS}, integration_type,
              count(*) FILTER ({failed}), count(*)
            FROM events WHERE {in_range} GROUP BY ALL ORDER BY 1""",
        "trends_hour": f"""SELECT occurred_at // {HOUR_MS}, integration_type,
              count(*) FILTER ({failed}), count(*)
            FROM events WHERE {in_range} GROUP BY ALL ORDER BY 1""",
        "failures": f"""SELECT integration_type, integration_id, service_id, flow_id,
              status_code, error_message, count(*), min(occurred_at), max(occurred_at)
            FROM events WHERE {in_range} AND {failed}
            GROUP BY ALL ORDER BY 7 DESC LIMIT 50""",
        "failure_details": f"""SELECT occurred_at // {HOUR_MS}, count(*),
              max(event_id ORDER BY occurred_at)
            FROM events WHERE {in_range} AND {failed} AND {group_filter}
            GROUP BY 1 ORDER BY 1""",
    }
    medians = {}
    for name, sql in queries.items():
        params = list(top_group) if name == "failure_details" else []
        run = lambda: con.execute(sql, params).fetchall()  # noqa: E731
        medians[name] = timed(run, rounds) * 1e6
    return tenant, medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="NDJSON from `bench gen`")
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "integration-health"))
    parser.add_argument("--rounds", type=int, default=50, help="runs of each query")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each DuckDB ingest")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ensure_duckdb()
    import duckdb

    path = args.input.resolve()
    report = ours(args.bin, path, args.rounds)
    con = duckdb.connect()
    cube = {threads: duckdb_cube(con, path, threads, args.repeats) for threads in (1, 2)}
    con.execute("SET threads = 2")
    load = timed(lambda: con.execute(f"CREATE OR REPLACE TABLE events AS SELECT * FROM {source(path)}"), 1)
    (last,) = con.execute("SELECT max(occurred_at) FROM events").fetchone()
    tenant, medians = duckdb_queries(con, last + 60_000, args.rounds)

    events = report["events"]
    rows = [
        ("ingest, 1 thread (events/s)", report["single_thread"]["events_per_sec"], events / cube[1]),
        ("ingest, 2 threads (events/s)", report["all_threads"]["events_per_sec"], events / cube[2]),
        ("DuckDB loading a table, 2 threads (events/s)", None, events / load),
    ]
    ours_p50 = {q["query"]: q["p50_us"] for q in report["queries"] if q["tenant"] == tenant}
    query_rows = [(name, ours_p50.get(name), medians[name]) for name in medians]
    if args.json:
        print(json.dumps({"tenant": tenant, "ingest": rows, "queries_p50_us": query_rows}))
        return
    print(f"{events} events, DuckDB {duckdb.__version__}, largest tenant {tenant}\n")
    print("| figure | integration-health | DuckDB | ours / DuckDB |")
    print("|---|---|---|---|")
    for name, mine, theirs in rows:
        ratio = f"{mine / theirs:.2f}×" if mine else ""
        mine_text = f"{mine / 1e6:.2f}M" if mine else ""
        print(f"| {name} | {mine_text} | {theirs / 1e6:.2f}M | {ratio} |")
    for name, mine, theirs in query_rows:
        # A query is better when it takes less time, so the ratio is theirs over ours.
        ratio = f"{theirs / mine:.0f}× faster" if mine else ""
        mine_text = f"{mine:.0f} µs" if mine is not None else "not run"
        print(f"| query {name}, median | {mine_text} | {theirs:.0f} µs | {ratio} |")


if __name__ == "__main__":
    main()
