"""A feed's source options in its mapping (sftpKey, sftpHostKey, ftpsMode, caBundle,
tlsVerify): parsed and checked, and what they make of an FTPS URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.support.ftpserver import make_test_certs
from worker.errors import FeedError
from worker.feedmapping import parse_mapping
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sourceopts import is_fingerprint, parse_source_options
from worker.sources.ftpconn import target, tls_context
from worker.sources.sshkeys import client_key
from worker.urls import FeedUrl

FINGERPRINT = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_no_options_are_the_defaults() -> None:
    assert parse_source_options({}) == SourceOptions()
    assert parse_mapping({"fields": {"externalId": "id"}}, "ftp_csv").source == SourceOptions()


def test_every_option_read() -> None:
    options = parse_source_options({"sftpKey": "acme-2024.key", "sftpHostKey": FINGERPRINT,
                                    "ftpsMode": "implicit", "caBundle": PEM})
    assert options == SourceOptions(sftp_key="acme-2024.key", host_keys=(FINGERPRINT,),
                                    ftps_mode="implicit", ca_bundle=PEM)
    assert parse_source_options({"sftpHostKey": [FINGERPRINT, FINGERPRINT]}).host_keys == (
        FINGERPRINT, FINGERPRINT)
    assert parse_source_options({"tlsVerify": False}).tls_verify is False


@pytest.mark.parametrize("resource_type", ["ftp_csv", "xml", "json"])
def test_the_mapping_carries_them_for_every_format(resource_type: str) -> None:
    raw = {"sftpKey": "acme", "record": "/r/i" if resource_type == "xml" else "items"}
    assert parse_mapping(raw, resource_type).source.sftp_key == "acme"


@pytest.mark.parametrize(("raw", "key"), [
    ({"sftpKey": "../etc/passwd"}, "sftpKey"),
    ({"sftpKey": ".hidden"}, "sftpKey"),
    ({"sftpKey": ""}, "sftpKey"),
    ({"sftpKey": 3}, "sftpKey"),
    ({"sftpHostKey": "MD5:aa:bb"}, "sftpHostKey"),
    ({"sftpHostKey": "SHA256:short"}, "sftpHostKey"),
    ({"sftpHostKey": []}, "sftpHostKey"),
    ({"sftpHostKey": [FINGERPRINT, 5]}, "sftpHostKey"),
    ({"ftpsMode": "auto"}, "ftpsMode"),
    ({"caBundle": "not a certificate"}, "caBundle"),
    ({"tlsVerify": "no"}, "tlsVerify"),
    ({"tlsVerify": False, "caBundle": PEM}, "tlsVerify"),
])
def test_bad_options_name_their_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(FeedError, match=rf"^mapping\.{key} "):
        parse_mapping(raw, "ftp_csv")


def test_fingerprints() -> None:
    assert is_fingerprint(FINGERPRINT)
    assert not is_fingerprint(FINGERPRINT + "A")
    assert not is_fingerprint(FINGERPRINT.replace("SHA256:", "sha256:"))
    assert not is_fingerprint(None)


@pytest.mark.parametrize(("url", "mode", "implicit", "port"), [
    ("ftps://h/f.csv", "", False, 21),
    ("ftps://h:990/f.csv", "", True, 990),
    ("ftps://h/f.csv", "implicit", True, 990),
    ("ftps://h:2990/f.csv", "implicit", True, 2990),
    ("ftps://h:990/f.csv", "explicit", False, 990),
    ("ftp://h:990/f.csv", "implicit", False, 990),  # plain FTP stays plain
])
def test_which_ftps(url: str, mode: str, implicit: bool, port: int) -> None:
    t = target(FeedUrl.parse(url), SourceOptions(ftps_mode=mode))
    assert (t.implicit, t.port) == (implicit, port)


def test_a_ca_bundle_that_is_no_certificate_fails_clearly() -> None:
    t = target(FeedUrl.parse("ftps://h/f.csv"), SourceOptions(ca_bundle=PEM))
    with pytest.raises(FeedError, match=r"^mapping\.caBundle cannot be read"):
        tls_context(t)


def test_a_ca_bundle_is_the_only_trust(tmp_path: Path) -> None:
    certs = make_test_certs(tmp_path)
    t = target(FeedUrl.parse("ftps://h/f.csv"),
               SourceOptions(ca_bundle=certs.ca_file.read_text()))
    context = tls_context(t)
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "feed-worker test CA"),),)]


def test_a_key_from_the_environment_is_never_shown(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    text = key.export_private_key("openssh").decode()
    settings = Settings(sftp_key=text, sftp_key_passphrase="phrase")
    assert text not in repr(settings)
    assert "phrase" not in repr(settings)
    assert client_key("default", settings).public_data == key.public_data
    with pytest.raises(FeedError, match="cannot be read") as caught:
        client_key("default", Settings(sftp_key="-----BEGIN OPENSSH PRIVATE KEY-----\nbroken\n"))
    assert "broken" not in str(caught.value)
