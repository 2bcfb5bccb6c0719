"""pull-request bodies: decode_pull accepts exactly what schemas/pull-request.schema.json does.

The schema is judged by the jsonschema package (Draft 2020-12).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from worker.errors import BadMessage, PermanentError
from worker.messages import PullRequest, decode_pull, encode_pull

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "pull-request.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
BIGINT_MAX = 2**63 - 1  # inventory_feeds.id is bigint

VALID: list[tuple[bytes, PullRequest]] = [
    (b'{"feedId": 1}', PullRequest(1, False)),
    (b'{"feedId": 42, "force": true}', PullRequest(42, True)),
    (b'{"force": false, "feedId": 7}', PullRequest(7, False)),
    (b' \n{ "feedId" : 3 }\n ', PullRequest(3, False)),
    (b'{"feedId": %d}' % BIGINT_MAX, PullRequest(BIGINT_MAX, False)),
]

INVALID: list[tuple[bytes, str]] = [
    (b"", "not JSON"),
    (b"feed 1", "not JSON"),
    (b'{"feedId": 1', "not JSON"),
    (b'{"feedId": 1} x', "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b"[1]", "JSON object"),
    (b'"feedId"', "JSON object"),
    (b"null", "JSON object"),
    (b"12", "JSON object"),
    (b"{}", "lacks feedId"),
    (b'{"force": true}', "lacks feedId"),
    (b'{"feedId": "1"}', "positive integer"),
    (b'{"feedId": null}', "positive integer"),
    (b'{"feedId": true}', "positive integer"),
    (b'{"feedId": false}', "positive integer"),
    (b'{"feedId": 0}', "positive integer"),
    (b'{"feedId": -5}', "positive integer"),
    (b'{"feedId": 1.5}', "positive integer"),
    (b'{"feedId": [1]}', "positive integer"),
    (b'{"feedId": {"id": 1}}', "positive integer"),
    (b'{"feedId": 1, "extra": 1}', "unknown properties: extra"),
    (b'{"feedId": 1, "FeedId": 1}', "unknown properties: FeedId"),
    (b'{"feedId": 1, "force": "yes"}', "force"),
    (b'{"feedId": 1, "force": 1}', "force"),
    (b'{"feedId": 1, "force": null}', "force"),
]

# Bodies decode_pull rejects that the schema, as written, accepts: JSON Schema's "integer"
# includes 1.0, and the schema sets no maximum. Each is explained where it is listed.
SCHEMA_ONLY: list[tuple[bytes, str]] = [
    (b'{"feedId": 1.0}', "JSON Schema counts 1.0 as an integer; the decoder wants an int"),
]


@pytest.mark.parametrize(("body", "expected"), VALID)
def test_valid_bodies(body: bytes, expected: PullRequest) -> None:
    assert decode_pull(body) == expected


@pytest.mark.parametrize(("body", "reason"), INVALID)
def test_invalid_bodies_are_bad_messages(body: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as info:
        decode_pull(body)
    assert reason in str(info.value)
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize(("body", "why"), SCHEMA_ONLY)
def test_bodies_no_feed_can_match_are_bad_messages(body: bytes, why: str) -> None:
    with pytest.raises(BadMessage, match="feedId"):
        decode_pull(body)


def test_long_feed_id_value_message_is_bounded() -> None:
    with pytest.raises(BadMessage) as info:
        decode_pull(b'{"feedId": "' + b"x" * 10_000 + b'"}')
    assert len(str(info.value)) <= 200


def test_many_unknown_properties_message_is_bounded() -> None:
    body = orjson.dumps({"feedId": 1, **{f"k{i:04}": i for i in range(1000)}})
    with pytest.raises(BadMessage) as info:
        decode_pull(body)
    assert len(str(info.value)) <= 300


@pytest.mark.parametrize(("feed_id", "force"), [(1, False), (99, True), (BIGINT_MAX, False)])
def test_encode_then_decode(feed_id: int, force: bool) -> None:
    body = encode_pull(feed_id, force)
    assert orjson.loads(body) == {"feedId": feed_id, "force": force}
    assert decode_pull(body) == PullRequest(feed_id, force)


def test_encode_default_is_not_forced() -> None:
    assert decode_pull(encode_pull(5)).force is False


# -- agreement with the JSON Schema -------------------------------------------------------

def _schema_valid(body: bytes) -> bool:
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return bool(jsonschema.Draft202012Validator(SCHEMA).is_valid(value))


@pytest.mark.parametrize("body", [b for b, _ in VALID])
def test_schema_accepts_what_decode_accepts(body: bytes) -> None:
    assert _schema_valid(body)


@pytest.mark.parametrize("body", [b for b, _ in INVALID])
def test_schema_rejects_what_decode_rejects(body: bytes) -> None:
    assert not _schema_valid(body)


@pytest.mark.parametrize(("body", "why"), SCHEMA_ONLY)
def test_schema_only_exceptions_are_still_exceptions(body: bytes, why: str) -> None:
    """If the schema is tightened (say a maximum is added), move the body to INVALID."""
    assert _schema_valid(body), why


def test_schema_names_the_properties_the_decoder_knows() -> None:
    assert SCHEMA["type"] == "object"
    assert set(SCHEMA["properties"]) == {"feedId", "force"}
    assert SCHEMA["required"] == ["feedId"]
    assert SCHEMA["additionalProperties"] is False
    assert SCHEMA["properties"]["feedId"]["type"] == "integer"
    assert SCHEMA["properties"]["feedId"]["minimum"] == 1
    assert SCHEMA["properties"]["force"]["type"] == "boolean"
    assert SCHEMA["properties"]["force"]["default"] is PullRequest(1).force
