"""The test session's own vhost: one a killed session left behind is deleted by the next,
one of a session still running is not."""

from __future__ import annotations

import subprocess
import sys

from tests.support import services


def _vhosts() -> set[str]:
    return set(services._rabbitmqctl("list_vhosts", "--quiet", "--no-table-headers",
                                     "name").split())


def test_the_vhost_of_a_killed_session_is_deleted_and_a_running_ones_is_kept() -> None:
    # a stand-in for another test session: alive until it is killed
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                          stdin=subprocess.PIPE) as session:
        _stands_for(session)


def _stands_for(session: subprocess.Popen[bytes]) -> None:
    vhost = f"fw_test_{session.pid}"
    services._rabbitmqctl("add_vhost", vhost)
    try:
        assert vhost not in services.forget_dead_sessions()
        assert vhost in _vhosts()
        session.kill()
        session.wait(timeout=30)
        assert vhost in services.forget_dead_sessions()
        assert vhost not in _vhosts()
    finally:
        session.kill()
        session.wait(timeout=30)
        if vhost in _vhosts():
            services._rabbitmqctl("delete_vhost", vhost)
