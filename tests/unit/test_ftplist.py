"""FTP directory listings read into entries: MLSD facts, LIST lines, the directory asked."""

from __future__ import annotations

import aioftp
import pytest

from worker.sources.ftplist import _list_entry, _mlsd_entry, directory_of
from worker.sources.names import Entry


@pytest.mark.parametrize(("path", "directory"), [
    ("out/stock_*.csv", "out"), ("/out/in/s.csv", "/out/in"), ("/s_*.csv", "/"),
    ("s_*.csv", ""),
])
def test_the_directory_listed(path: str, directory: str) -> None:
    assert directory_of(path) == directory


@pytest.mark.parametrize(("line", "entry"), [
    ("type=file;size=120;modify=20261205060102.123;perm=r; stock 1;x.csv\r\n",
     Entry("stock 1;x.csv", "2026-12-05T06:01:02Z", 120)),
    ("Type=Dir;Modify=20261205060102; sub", Entry("sub", "2026-12-05T06:01:02Z", None,
                                                  is_file=False)),
    ("type=file; plain.csv", Entry("plain.csv")),
    ("type=cdir;modify=20261205060102; .", None),
    ("type=pdir; ..", None),
    (" bare.csv", Entry("bare.csv")),
    ("no facts", None),
    ("", None),
])
def test_mlsd_lines(line: str, entry: Entry | None) -> None:
    assert _mlsd_entry(line) == entry


def test_list_lines() -> None:
    client = aioftp.Client()
    got = _list_entry(client, "-rw-r--r-- 1 feeds feeds 1234 Nov 14  2023 stock 1.csv\r\n")
    assert got == Entry("stock 1.csv", "2023-11-14T00:00:00Z", 1234)
    folder = _list_entry(client, "drwxr-xr-x 2 feeds feeds 4096 Nov 14  2023 stock_9.csv")
    assert folder is not None
    assert not folder.is_file
    assert _list_entry(client, "total 12") is None
