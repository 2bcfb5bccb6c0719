"""Where an HTTP redirect may lead: only to an http(s) URL with a host; anything else is a
permanent failure of the download with the reason."""

from __future__ import annotations

import pytest
from yarl import URL

from worker.errors import SourceError, TransientError
from worker.sources.http import follow

HERE = URL("http://127.0.0.1:8080/feeds/a.csv")
SHOWN = "http://u:***@127.0.0.1:8080/feeds/a.csv"


@pytest.mark.parametrize(("location", "expected"), [
    ("b.csv", "http://127.0.0.1:8080/feeds/b.csv"),
    ("../b.csv?x=1", "http://127.0.0.1:8080/b.csv?x=1"),
    ("/b.csv", "http://127.0.0.1:8080/b.csv"),
    ("?page=2", "http://127.0.0.1:8080/feeds/a.csv?page=2"),
    ("//feeds.example.com/b.csv", "http://feeds.example.com/b.csv"),
    ("HTTPS://Feeds.Example.com/b.csv", "https://feeds.example.com/b.csv"),
    ("  https://feeds.example.com/b.csv  ", "https://feeds.example.com/b.csv"),
    ("http://[::1]:9/b.csv", "http://[::1]:9/b.csv"),
    ("http://bücher.example/b.csv", "http://xn--bcher-kva.example/b.csv"),
])
def test_http_locations_are_followed(location: str, expected: str) -> None:
    assert str(follow(HERE, location, SHOWN)) == expected


@pytest.mark.parametrize(("location", "reason"), [
    ("file:///etc/hostname", "redirects to file:///etc/hostname: only http and https "
                             "redirects are followed, not 'file'"),
    ("FILE:/etc/passwd", "not 'file'"),
    ("ftp://feeds.example.com/a.csv", "not 'ftp'"),
    ("sftp://feeds.example.com/a.csv", "not 'sftp'"),
    ("data:text/csv,external_id%0AA", "not 'data'"),
    ("javascript:alert(1)", "not 'javascript'"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "not 'gopher'"),
    ("file://u:hunter2@host/x", "redirects to file://u:***@host/x"),
    ("", "redirects with an empty Location header"),
    ("   ", "redirects with an empty Location header"),
    (None, "redirects with no Location header"),
    ("//", "redirects to '//', which has no host"),
    ("http://", "redirects to 'http://', which has no host"),
    ("http:///etc/passwd", "redirects to 'http:///etc/passwd', which has no host"),
    ("http://[::1", "redirects to a Location that cannot be parsed"),
    ("http://exa mple.com/", "redirects to http://exa mple.com/, which has no valid host"),
])
def test_other_locations_fail_for_good(location: str | None, reason: str) -> None:
    with pytest.raises(SourceError) as caught:
        follow(HERE, location, SHOWN)
    assert not isinstance(caught.value, TransientError)
    assert str(caught.value).startswith(f"{SHOWN} redirects")
    assert reason in str(caught.value)
    assert "hunter2" not in str(caught.value)
