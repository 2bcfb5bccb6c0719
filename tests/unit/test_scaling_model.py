"""The scaling model of docs/scaling.md: its arithmetic, not its figures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.bench import scaling_model as m


def test_demand_grows_with_the_suppliers_and_the_pushes() -> None:
    f = m.Figures()
    small = m.demand(m.Load(1_000), f)
    large = m.demand(m.Load(10_000), f)
    assert large[0] == pytest.approx(small[0] * 10)
    assert large[1] == pytest.approx(small[1] * 10)
    pushed = m.demand(m.Load(10_000, pushes_per_s=1_000), f)
    assert pushed[0] - large[0] == pytest.approx(1_000 * f.push_worker_us / 1e6)
    assert pushed[2] - large[2] == pytest.approx(1_000)


def test_more_work_than_one_database_asks_for_citus_workers() -> None:
    f = replace(m.Figures(), db_cores=2.0)
    light = m.plan(m.Load(1_000), f)
    heavy = m.plan(m.Load(10_000, pushes_per_s=10_000, items_per_push=50), f)
    assert light.citus_workers == 0
    assert heavy.citus_workers >= 1
    assert heavy.db_cores / (f.db_cores + heavy.citus_workers * f.db_cores
                             * f.citus_worker_share) <= f.target_utilisation
    assert heavy.replicas * f.replica_cores * f.target_utilisation >= heavy.worker_cores


def test_the_worst_hour_is_never_shorter_than_the_cores_allow() -> None:
    f = m.Figures()
    load = m.Load(5_000, rows_per_feed=20_000)
    one, four = m.burst(load, f, 1), m.burst(load, f, 4)
    worker, db, _ = m.demand(load, f)
    assert one >= worker * load.interval_s / f.replica_cores * 0.5
    assert four < one
    assert four >= db * load.interval_s / f.db_cores * 0.5


def test_the_command_prints_a_row_per_scenario_and_refuses_unknown_figures(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert m.main(["--set", "db_cores=4"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 2 + len(m.SCENARIOS)
    with pytest.raises(SystemExit):
        m.main(["--set", "no_such_figure=1"])


def test_replicas_are_added_until_the_worst_hour_drains_in_time() -> None:
    f = m.Figures()
    load = m.Load(10_000, rows_per_feed=50_000)
    p = m.plan(load, f)
    assert p.burst_s <= f.drain_s
    assert m.burst(load, f, p.replicas - 1) > f.drain_s


def test_the_busiest_queues_leader_carries_every_message() -> None:
    f = m.Figures()
    calm = m.plan(m.Load(1_000), f)
    pushed = m.plan(m.Load(1_000, pushes_per_s=100_000), f)
    assert calm.broker_leader < 0.01
    assert pushed.broker_leader == pytest.approx(m.leader_share(pushed.broker_msgs, f))
    assert pushed.broker_leader > 0.5
