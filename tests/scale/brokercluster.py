"""A three-node RabbitMQ cluster of the scale test's own on loopback (ports 5681-5683,
distribution ports 25681-25683, nodes fwscale1..3@localhost, data in a temporary
directory): started, joined, one node stopped and started again, stopped at the end. The
machine's shared broker (5672) is never touched."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.faults.cluster import AMQP_PASSWORD, AMQP_USER, RABBIT_BIN, RabbitNode, _run

PORTS = (5681, 5682, 5683)
VHOST = "fwscale"


class BrokerCluster:
    def __init__(self, base: Path) -> None:
        cookie = "FWSCALECOOKIE" + os.urandom(8).hex().upper()
        self.nodes = [RabbitNode(base / f"rabbit{i}", port=port, dist_port=port + 20000,
                                 node=f"fwscale{i}@localhost", cookie=cookie)
                      for i, port in enumerate(PORTS, start=1)]
        self.running = [False] * len(self.nodes)

    @staticmethod
    def ports_taken() -> str | None:
        for port in (*PORTS, *(p + 20000 for p in PORTS)):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"port {port} is taken (another scale run?)"
        return None

    def start(self) -> None:
        """Three nodes started at once, the second and third joined to the first, a user
        and the vhost made (cluster-wide)."""
        for node in self.nodes:
            node.init()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(RabbitNode.start, self.nodes))
        self.running = [True] * len(self.nodes)
        for node in self.nodes[1:]:
            node.join(self.nodes[0])
        seed = self.nodes[0]
        seed.setup_user()
        seed.add_vhost(VHOST)
        status = seed.ctl("cluster_status").stdout
        missing = [n.node for n in self.nodes if n.node not in status]
        assert not missing, f"not in the cluster: {missing}\n{status}"

    def url(self, i: int) -> str:
        return self.nodes[i].url(VHOST)

    def urls(self, order: list[int]) -> str:
        """AMQP_URL listing the nodes in this order."""
        return ",".join(self.url(i) for i in order)

    def live(self) -> int:
        """The index of a running node."""
        return self.running.index(True)

    def queues(self) -> dict[str, tuple[str, list[str]]]:
        """Each queue of the vhost: its leader and members (quorum queues)."""
        done = _run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.nodes[self.live()].node,
                     "-q", "--no-table-headers", "list_queues", "-p", VHOST, "name",
                     "leader", "members"], env=self.nodes[self.live()].env)
        found = {}
        for line in done.stdout.splitlines():
            name, leader, members = line.split("\t")
            found[name] = (leader, [m.strip(' "') for m in members.strip("[]").split(",")
                                    if m.strip()])
        return found

    def index_of(self, node_name: str) -> int:
        return [n.node for n in self.nodes].index(node_name)

    def stop(self, i: int) -> None:
        self.nodes[i].stop()
        self.running[i] = False

    def restart(self, i: int) -> None:
        self.nodes[i].start()
        self.running[i] = True

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()
        self.running = [False] * len(self.nodes)


__all__ = ["AMQP_PASSWORD", "AMQP_USER", "BrokerCluster"]
