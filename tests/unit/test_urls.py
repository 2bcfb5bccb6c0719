"""urls.mask and urls.scrub: no password survives into what is shown or logged."""

from __future__ import annotations

import pytest
from yarl import URL

from worker.errors import FeedError
from worker.urls import FeedUrl, mask, scrub


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:s3cret@example.com/feed.csv?x=1",
         "https://user:***@example.com/feed.csv?x=1"),
        ("ftp://u:pw@ftp.example.com:2121/in/feed.csv", "ftp://u:***@ftp.example.com:2121/in/feed.csv"),
        ("https://:tok@example.com/f", "https://:***@example.com/f"),
        ("https://user:p%40ss%2Fw@example.com/a", "https://user:***@example.com/a"),
    ],
)
def test_password_is_masked(url: str, expected: str) -> None:
    masked = mask(url)
    assert masked == expected
    password = URL(url).password
    assert password
    assert password not in masked.replace("***", "")
    assert URL(url).raw_password not in masked.replace("***", "")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/feed.csv",
        "https://example.com/feed.csv?page=2&sort=asc",
        "https://user@example.com/feed.csv",
        "http://127.0.0.1:8080/x.csv",
        "ftp://ftp.example.com/pub/feed.csv",
    ],
)
def test_url_without_password_is_unchanged(url: str) -> None:
    assert mask(url) == url


def test_mask_takes_a_url_object() -> None:
    assert mask(URL("https://u:pw@h.example/x")) == "https://u:***@h.example/x"


def test_unparseable_url() -> None:
    assert mask("http://[::1") == "<unparseable URL>"


def test_scrub_removes_the_password() -> None:
    url = "https://user:s3cret@example.com/feed.csv"
    text = f"GET {url} failed: auth s3cret rejected"
    out = scrub(text, url)
    assert "s3cret" not in out
    assert out == "GET https://user:***@example.com/feed.csv failed: auth *** rejected"


def test_scrub_removes_percent_encoded_and_decoded_forms() -> None:
    url = "https://user:p%40ss%2Fw0rd@example.com/a"
    text = f"cannot fetch {url} (password p@ss/w0rd)"
    out = scrub(text, url)
    assert "p%40ss%2Fw0rd" not in out
    assert "p@ss/w0rd" not in out
    assert out == "cannot fetch https://user:***@example.com/a (password ***)"


def test_scrub_without_passwords_leaves_text_alone() -> None:
    text = "user example.com feed.csv timed out"
    assert scrub(text, "https://user@example.com/feed.csv", None, "", "http://[::1") == text


def test_scrub_several_urls() -> None:
    out = scrub("a=alpha1 b=beta22", "https://u:alpha1@h/", "ftp://v:beta22@h/")
    assert out == "a=*** b=***"


def test_feed_url_is_parsed_once_and_shown_masked() -> None:
    url = FeedUrl.parse("FTP://u:s3cret@ftp.example.com:2121/in/feed%201.csv")
    assert (url.scheme, url.host, url.port, url.user, url.password) == (
        "ftp", "ftp.example.com", 2121, "u", "s3cret")
    assert url.path == "/in/feed 1.csv"
    assert str(url) == url.shown == "ftp://u:***@ftp.example.com:2121/in/feed%201.csv"
    assert "s3cret" not in repr(url)
    assert mask(url) == url.shown
    assert url.scrub("login s3cret refused") == "login *** refused"


def test_feed_url_that_cannot_be_parsed_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match=r"^feed URL <unparseable URL> cannot be parsed$"):
        FeedUrl.parse("http://[::1")


def test_feed_url_join() -> None:
    url = FeedUrl.parse("https://u:pw@api.example.com/v1/items?page=1")
    assert url.join("?page=2").shown == "https://u:***@api.example.com/v1/items?page=2"
    assert url.join("https://other.example.com/p/3").shown == "https://other.example.com/p/3"
