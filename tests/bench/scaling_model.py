"""What a marketplace of N suppliers and P pushes/s asks of feed-worker's replicas, of
Postgres and of RabbitMQ, from service times measured on this machine (docs/scaling.md
says where each figure comes from and how to measure it again).

Run from the repository root: `.venv/bin/python -m tests.bench.scaling_model`, or with
other figures: `--set pull_fixed_worker_ms=4 --set db_cores=32 ...` (`--list` prints them).

The model is deliberately plain: CPU seconds per second of work on each resource (its
utilisation), against a target utilisation that leaves room for bursts; then a small
simulation of the worst hour, every feed due at the same minute, to see how long the
last one waits behind the others.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Figures:
    """Service times (CPU milliseconds or microseconds of one core) and capacities."""

    # A pull's fixed cost, one row (fleet benchmark L, CPU per run).
    pull_fixed_worker_ms: float = 5.5
    pull_fixed_db_ms: float = 2.6
    pull_fixed_broker_ms: float = 1.4
    # A refresh's cost per row read (pull_csv U: 1M rows, 10% changed): the worker parses,
    # maps and fingerprints every row; Postgres loads the fingerprints of every item and
    # writes the changed ones (each read, then updated, then its history: the segments'
    # merges, 3.1 s for 100,000 changed rows).
    refresh_worker_us_per_row: float = 2.9
    refresh_db_us_per_row: float = 0.3
    refresh_db_us_per_changed_row: float = 31.0
    # A first import's cost per row (pull_csv E).
    import_worker_us_per_row: float = 2.7
    import_db_us_per_row: float = 5.5
    # A single-variant push message (push_latency drain, CPU per message).
    push_worker_us: float = 80.0
    push_db_us: float = 40.0
    push_broker_us: float = 12.0
    # Each more variant of a message (push W, 50-variant messages).
    push_worker_us_per_item: float = 9.0
    push_db_us_per_item: float = 10.0
    # RabbitMQ's CPU a message (publish, deliver, ack) on the node that leads the queue:
    # all of a quorum queue's messages go through its leader, however many nodes the
    # cluster has (push_latency R1, the broker's CPU a message, a queue of one member;
    # make scale's cluster test, three members).
    broker_us_per_msg: float = 21.0
    # Capacities: a replica is one Python process (one core at most); the database's
    # cores; what a Citus worker adds, as a share of one more database (the Citus run's
    # throughput against a single instance); a broker node's cores.
    replica_cores: float = 1.0
    db_cores: float = 16.0
    citus_worker_share: float = 0.7
    broker_node_cores: float = 4.0
    target_utilisation: float = 0.7
    # The worst hour (every feed due at once) must be over within this many seconds.
    drain_s: float = 900.0


@dataclass(frozen=True)
class Load:
    suppliers: int
    rows_per_feed: int = 5_000
    changed_share: float = 0.05
    interval_s: float = 3_600.0
    pushes_per_s: float = 0.0
    items_per_push: int = 1


@dataclass(frozen=True)
class Plan:
    load: Load
    worker_cores: float
    db_cores: float
    broker_msgs: float
    replicas: int
    citus_workers: int
    broker_leader: float
    burst_s: float
    figures: Figures

    @property
    def bottleneck(self) -> str:
        f = self.figures
        shares = {
            "replicas": self.worker_cores / f.replica_cores,
            "database": self.db_cores / f.db_cores,
            "broker": self.broker_leader,
        }
        return max(shares, key=lambda k: shares[k])


def demand(load: Load, f: Figures) -> tuple[float, float, float]:
    """CPU cores of the replicas and of the database, and broker messages/s, the load
    needs on average."""
    runs = load.suppliers / load.interval_s
    rows = load.rows_per_feed
    worker = runs * (f.pull_fixed_worker_ms / 1e3 + rows * f.refresh_worker_us_per_row / 1e6)
    db = runs * (f.pull_fixed_db_ms / 1e3 + rows * f.refresh_db_us_per_row / 1e6
                 + rows * load.changed_share * f.refresh_db_us_per_changed_row / 1e6)
    extra = max(load.items_per_push - 1, 0)
    worker += load.pushes_per_s * (f.push_worker_us + extra * f.push_worker_us_per_item) / 1e6
    db += load.pushes_per_s * (f.push_db_us + extra * f.push_db_us_per_item) / 1e6
    # A pull is a request and a run-completed event; a push is its message.
    broker = runs * 2 + load.pushes_per_s
    return worker, db, broker


def burst(load: Load, f: Figures, replicas: int, concurrency: int = 2,
          seed: int = 7) -> float:
    """Seconds until the last pull of an hour in which every feed fell due at once ends.
    Feed sizes are drawn around the mean with a long tail (a few suppliers have most of
    the rows). The pulls go through `concurrency` slots per replica, each taking its
    worker part then its database part; the answer is never below what the replicas'
    cores or the database's cores need for all of it together."""
    rng = random.Random(seed)
    sizes = [max(1, int(rng.lognormvariate(math.log(load.rows_per_feed) - 0.5, 1.0)))
             for _ in range(load.suppliers)]
    slots = [0.0] * (replicas * concurrency)
    worker_total = db_total = end = 0.0
    for rows in sizes:
        worker = f.pull_fixed_worker_ms / 1e3 + rows * f.refresh_worker_us_per_row / 1e6
        db = (f.pull_fixed_db_ms / 1e3 + rows * f.refresh_db_us_per_row / 1e6
              + rows * load.changed_share * f.refresh_db_us_per_changed_row / 1e6)
        worker_total += worker
        db_total += db
        finish = heapq.heappop(slots) + worker + db
        end = max(end, finish)
        heapq.heappush(slots, finish)
    return max(end, worker_total / (replicas * f.replica_cores), db_total / f.db_cores)


MAX_REPLICAS = 200


def leader_share(msgs: float, f: Figures) -> float:
    """The share of one broker node's cores the busiest queue's leader needs: a queue does
    not spread over the cluster's nodes, so past 1 (at the target utilisation) the queue
    must be split, not the cluster grown."""
    return msgs * f.broker_us_per_msg / 1e6 / f.broker_node_cores


def plan(load: Load, f: Figures) -> Plan:
    worker, db, broker = demand(load, f)
    target = f.target_utilisation
    replicas = max(1, math.ceil(worker / (f.replica_cores * target)))
    while burst(load, f, replicas) > f.drain_s and replicas < MAX_REPLICAS:
        replicas += 1
    over = db / target - f.db_cores
    citus = 0 if over <= 0 else math.ceil(over / (f.db_cores * f.citus_worker_share))
    return Plan(load, worker, db, broker, replicas, citus, leader_share(broker, f),
                burst(load, f, replicas), f)


SCENARIOS = (
    Load(10),
    Load(1_000),
    Load(10_000),
    Load(10_000, pushes_per_s=100),
    Load(10_000, pushes_per_s=10_000),
    Load(10_000, pushes_per_s=10_000, items_per_push=50),
)


def table(f: Figures, loads: tuple[Load, ...] = SCENARIOS) -> str:
    head = (f"{'suppliers':>9} {'pushes/s':>8} {'items':>5} | {'replica cores':>13} "
            f"{'db cores':>8} {'broker msg/s':>12} | {'replicas':>8} {'citus +':>7} "
            f"{'mq leader':>9} {'worst hour (s)':>14}  bottleneck")
    lines = [head, "-" * len(head)]
    for load in loads:
        p = plan(load, f)
        lines.append(
            f"{load.suppliers:>9,} {load.pushes_per_s:>8,.0f} {load.items_per_push:>5} | "
            f"{p.worker_cores:>13.2f} {p.db_cores:>8.2f} {p.broker_msgs:>12,.0f} | "
            f"{p.replicas:>8} {p.citus_workers:>7} {p.broker_leader:>9.0%} {p.burst_s:>14.0f}"
            f"  {p.bottleneck}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scaling_model",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="another value of one of the figures")
    parser.add_argument("--rows", type=int, default=5_000, help="mean rows of a feed")
    parser.add_argument("--changed", type=float, default=0.05,
                        help="share of a feed's rows changed at each refresh")
    parser.add_argument("--list", action="store_true", help="print the figures in use")
    args = parser.parse_args(argv)
    known = {fl.name for fl in fields(Figures)}
    changes: dict[str, float] = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in known:
            parser.error(f"unknown figure {name!r}; --list prints them")
        changes[name] = float(value)
    f = replace(Figures(), **changes)
    if args.list:
        for name, value in asdict(f).items():
            print(f"{name} = {value}")
        return 0
    loads = tuple(replace(load, rows_per_feed=args.rows, changed_share=args.changed)
                  for load in SCENARIOS)
    print(table(f, loads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
