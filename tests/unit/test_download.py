"""Download: one cap for every transport's bytes, and what the source learned."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from worker.errors import SourceError
from worker.sources.download import Download, capped
from worker.urls import FeedUrl

URL = FeedUrl.parse("https://u:s3cret@feeds.example.com/stock.csv")


async def pieces(*sizes: int) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


async def test_bytes_under_the_cap_pass_and_are_counted() -> None:
    download = Download(URL, cap=10)
    got = [c async for c in capped(pieces(4, 6), download)]
    assert got == [b"x" * 4, b"x" * 6]
    assert download.transfer.received == 10


async def test_bytes_past_the_cap_fail_before_they_are_given() -> None:
    download = Download(URL, cap=10)
    got: list[bytes] = []

    async def take() -> None:
        async for chunk in capped(pieces(4, 6, 1), download):
            got.append(chunk)

    with pytest.raises(SourceError) as caught:
        await take()
    assert str(caught.value) == ("https://u:***@feeds.example.com/stock.csv passed the 10-byte "
                                 "cap (FEED_WORKER_MAX_FILE_BYTES)")
    assert sum(map(len, got)) == download.transfer.received == 10


def test_an_announced_length_over_the_cap_fails_at_once() -> None:
    download = Download(URL, cap=10)
    download.announce(10, vouched=True)
    assert download.transfer.vouched
    download.taken = "/srv/feeds/stock.csv"
    with pytest.raises(SourceError, match=r"^/srv/feeds/stock\.csv is 11 bytes, over the "
                                          r"10-byte cap \(FEED_WORKER_MAX_FILE_BYTES\)$"):
        download.announce(11, vouched=False)
    download.announce(None, vouched=False)
    assert not download.transfer.vouched
