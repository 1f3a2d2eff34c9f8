"""One runyard on PostgreSQL against the same on SQLite: workloads 1 to 4 (issue 14).

Starts a throw-away PostgreSQL 15 from the machine's packages (the tests'
``tests/pg.py``, on a unix socket in a temporary folder) with the durability
runyard's SQLite default has: every commit reaches the server's log before it
is answered, neither waits for the disk (``fsync`` on, ``synchronous_commit``
off, as SQLite's WAL at ``synchronous=NORMAL``). Then ``runyard serve --db
postgresql://...`` and ``runyard serve --db FILE.sqlite3`` are measured in
turn each round with the official client: workloads 1 (one stream of 10,000
events), 2 (50 x 1,000), 3 (200 waits) and 4 (call to first event), medians
over the rounds. The target: PostgreSQL's durable single stream (workload 1)
at least half of SQLite's. Prints one JSON object and a table.

    python bench/on_postgres.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import bench

sys.path.insert(0, str(bench.ROOT / "tests"))
import pg  # the tests' throw-away server

W1_TARGET = 0.5  # PostgreSQL's w1 events/s over SQLite's, at least
# As SQLite's default (WAL, synchronous=NORMAL): crash-safe for the server
# process, not flushed to the disk at each commit.
DURABILITY = {"fsync": "on", "synchronous_commit": "off", "full_page_writes": "on"}


def workloads(url: str, sizes: bench.Sizes) -> dict[str, Any]:
    async def all_four() -> dict[str, Any]:
        return {
            "w1": await bench.w1_one_stream(url, sizes.w1_events),
            "w2": await bench.w2_concurrent_streams(url, sizes.w2_runs, sizes.w2_events),
            "w3": await bench.w3_plain_client(url, sizes.w3_runs, 0.5),
            "w4": await bench.w4_first_event(url, sizes.w4_runs),
        }

    return asyncio.run(all_four())


def measure(rounds: int, sizes: bench.Sizes) -> dict[str, Any]:
    binaries = pg.bin_dir()
    if binaries is None:
        raise SystemExit("no PostgreSQL binaries (RUNYARD_PG_BIN or /usr/lib/postgresql/*/bin)")
    pg.SETTINGS.update(DURABILITY)
    server = pg.PostgresServer(binaries)
    server.start()
    targets = {"sqlite": bench.runyard(), "postgresql": bench.runyard()}
    pg_target = targets["postgresql"]
    pg_target.cmd[pg_target.cmd.index("--db") + 1] = server.new_database()
    pg_target.name = "runyard-postgresql"
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    try:
        for t in targets.values():
            asyncio.run(t.start())
        for i in range(rounds):
            for name, t in targets.items():
                runs[name].append(workloads(t.url, sizes))
                print(f"  round {i + 1} {name}: {json.dumps(runs[name][-1])}", flush=True)
    finally:
        for t in targets.values():
            bench.stop_if_running(t)
        server.stop()
    medians = {
        name: {
            w: {k: statistics.median(r[w][k] for r in results) for k in results[0][w]}
            for w in results[0]
        }
        for name, results in runs.items()
    }
    w1 = medians["postgresql"]["w1"]["events_per_s"] / medians["sqlite"]["w1"]["events_per_s"]
    return {"machine": bench.machine(), "rounds": rounds, "medians": medians,
            "w1_ratio": w1, "w1_target": W1_TARGET, "runs": runs}  # fmt: skip


def table(result: dict[str, Any], sizes: bench.Sizes) -> str:
    m = result["medians"]
    rows = [
        (f"1. one run, {sizes.w1_events:,} events", "w1", "events_per_s", "{:,.0f} events/s", True),
        (f"2. {sizes.w2_runs} runs x {sizes.w2_events:,} events", "w2", "events_per_s",
         "{:,.0f} events/s", True),
        (f"3. {sizes.w3_runs} waits of a 0.5 s run (h11 client)", "w3", "wall_s",
         "wall {:.2f} s", False),
        (f"4. call to first event, p50 of {sizes.w4_runs}", "w4", "p50_ms", "{:.1f} ms", False),
    ]  # fmt: skip
    lines = ["| workload | SQLite | PostgreSQL | PostgreSQL / SQLite |", "|---|---|---|---|"]
    for label, w, key, fmt, higher in rows:
        lite, post = m["sqlite"][w][key], m["postgresql"][w][key]
        ratio = post / lite if higher else lite / post
        lines.append(f"| {label} | {fmt.format(lite)} | {fmt.format(post)} | {ratio:.0%} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes, one round")
    args = p.parse_args(argv)
    bench.raise_file_limit()
    bench.RESULTS.mkdir(exist_ok=True)
    sizes = bench.QUICK if args.quick else bench.Sizes()
    result = measure(1 if args.quick else args.rounds, sizes)
    path = bench.RESULTS / f"on-postgres-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(table(result, sizes))
    print(f"w1 on PostgreSQL / on SQLite: {result['w1_ratio']:.0%} (target {W1_TARGET:.0%})")
    print(f"results: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
