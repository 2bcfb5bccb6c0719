"""Every format x transport x compression at least once, end to end into Postgres.

The same four items as CSV, XML (record XPath, attributes and nested paths) and JSON
(record path, dotted fields); each plain, gzip'd and zipped; each served over HTTP, FTP,
explicit FTPS, SFTP and read from a file:// URL (as `feed-worker import --url` does). The
servers and the database are shared by the module's tests (each test pulls a feed of its
own), so the 45 pulls take seconds.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.background import BackgroundLoop
from tests.support.feedserver import FeedServer
from tests.support.ftpserver import PASSWORD, CertBundle, FTPTestServer, make_test_certs
from tests.support.services import admin, dsn_for
from tests.support.sftpserver import SFTPTestServer
from worker.settings import Settings

# external id -> (name, quantity, retail price): quotes, commas, ampersands, non-ASCII.
ITEMS: dict[str, tuple[str, int, Decimal]] = {
    "M-1": ("Lamp & shade", 12, Decimal("105.29")),
    "M-2": ("Café chair, oak", 0, Decimal("49.5")),
    "M-3": ('Rug "Ikat" <large>', 7, Decimal("1234.5")),
    "M-4": ("Übergröße", 3, Decimal("0.99")),
}

FORMATS = ("csv", "xml", "json")
TRANSPORTS = ("http", "ftp", "ftps", "sftp", "file")
COMPRESSIONS = ("none", "gzip", "zip")

MAPPINGS: dict[str, dict[str, Any]] = {
    "csv": {},  # the template's column names map by themselves
    "xml": {"record": "/feed/items/item",
            "fields": {"externalId": "@sku", "name": "title", "inventoryQuantity": "stock/@qty",
                       "retailPrice": "price/amount"}},
    "json": {"record": "data.items",
             "fields": {"externalId": "id", "name": "title",
                        "inventoryQuantity": "stock.available", "retailPrice": "price.amount"}},
}
RESOURCE_TYPES = {"csv": "ftp_csv", "xml": "xml", "json": "json"}
USER = "feeds"  # every server's user, with PASSWORD: credentials travel in the URL


def csv_body() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["external_id", "name", "qty", "retail_price"])
    for ext, (name, qty, price) in ITEMS.items():
        writer.writerow([ext, name, qty, price])
    return out.getvalue().encode()


def xml_body() -> bytes:
    items = "".join(
        f"<item sku={quoteattr(ext)}><title>{escape(name)}</title><stock qty=\"{qty}\"/>"
        f"<price><amount>{price}</amount><currency>EUR</currency></price></item>\n"
        for ext, (name, qty, price) in ITEMS.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<feed><items>\n{items}</items></feed>\n'\
        .encode()


def json_body() -> bytes:
    items = [{"id": ext, "title": name, "stock": {"available": qty},
              "price": {"amount": float(price)}} for ext, (name, qty, price) in ITEMS.items()]
    return orjson.dumps({"data": {"items": items}, "count": len(items)})


def packed(body: bytes, compression: str, entry: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(body)
    if compression == "zip":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(entry, body)
        return out.getvalue()
    return body


def file_name(fmt: str, compression: str) -> str:
    return f"stock.{fmt}" + {"none": "", "gzip": ".gz", "zip": ".zip"}[compression]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("matrix") / "feeds"
    top.mkdir()
    bodies = {"csv": csv_body(), "xml": xml_body(), "json": json_body()}
    for fmt, body in bodies.items():
        for compression in COMPRESSIONS:
            data = packed(body, compression, f"stock.{fmt}")
            (top / file_name(fmt, compression)).write_bytes(data)
    return top


@pytest.fixture(scope="module")
def db_url(pg_template: str) -> Iterator[str]:
    """One database for the module: every test pulls into a feed of its own."""
    name = f"fw_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    try:
        yield dsn_for(name)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("matrix-servers")
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def http(background: BackgroundLoop, root: Path) -> Iterator[FeedServer]:
    server = FeedServer()
    background.run(server.start())
    for path in root.iterdir():
        server.add(f"/{path.name}", path.read_bytes(), auth=(USER, PASSWORD),
                   content_type="application/octet-stream")
    yield server
    background.run(server.stop())


@pytest.fixture(scope="module")
def ftp(root: Path) -> Iterator[FTPTestServer]:
    server = FTPTestServer(root)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    return make_test_certs(tmp_path_factory.mktemp("certs"), names=("localhost", "127.0.0.1"))


@pytest.fixture(scope="module")
def ftps(root: Path, certs: CertBundle) -> Iterator[FTPTestServer]:
    server = FTPTestServer(root, certs=certs)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sftp(background: BackgroundLoop, root: Path) -> Iterator[SFTPTestServer]:
    server = SFTPTestServer(root)
    background.run(server.start())
    yield server
    background.run(server.stop())


@pytest.fixture
def transports(http: FeedServer, ftp: FTPTestServer, ftps: FTPTestServer,
               sftp: SFTPTestServer, root: Path) -> dict[str, Any]:
    return {"http": http, "ftp": ftp, "ftps": ftps, "sftp": sftp, "file": root}


def url_for(transport: str, server: Any, name: str) -> str:
    if transport == "http":
        return f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/{name}"
    if transport == "file":
        return (server / name).as_uri()
    return str(server.url(name))


def served(transport: str, server: Any, name: str) -> int:
    """How many times the server has served the file (a file:// read: 0)."""
    if transport == "http":
        return int(server.routes[f"/{name}"].requests)
    if transport in ("ftp", "ftps"):
        return server.journal.snapshot("commands").count("RETR")
    if transport == "sftp":
        return sum(ok for _, ok in server.logins)
    return 0


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fmt", FORMATS)
async def test_every_item_lands(pool: asyncpg.Pool, settings: Settings, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, transports: dict[str, Any],
                                certs: CertBundle, fmt: str, transport: str,
                                compression: str) -> None:
    server = transports[transport]
    if transport == "ftps":  # the worker checks certificates against the system's CAs
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    if transport == "sftp":
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{server.port} "
                         f"{server.host_key.export_public_key().decode().strip()}\n")
        settings = replace(settings, sftp_known_hosts=str(known))
    name = file_name(fmt, compression)
    url = url_for(transport, server, name)
    before = served(transport, server, name)
    # file:// only through a person's --url: the feed's own setting names no location.
    location = None if transport == "file" else url
    feed_id = await feeds.make_feed(pool, location, resource_type=RESOURCE_TYPES[fmt],
                                    mapping=MAPPINGS[fmt])
    run = await feeds.pull_once(pool, settings, feed_id, url if transport == "file" else None,
                                local_files=transport == "file")
    assert run["status"] == "succeeded", run["error"]
    assert transport == "file" or served(transport, server, name) > before
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (4, 4, 0)
    details = orjson.loads(run["details"])
    assert details["compression"] == compression
    assert run["bytes"] == len((transports["file"] / name).read_bytes())
    got = await feeds.items(pool, feed_id)
    landed = {ext: (i["name"], i["inventory_quantity"], i["retail_price"])
              for ext, i in got.items()}
    assert landed == ITEMS
