"""docs/protocol.md describes every operation, message and status code in proto/coffer/v1."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = (ROOT / "proto" / "coffer" / "v1" / "coffer.proto").read_text()
DOC = (ROOT / "docs" / "protocol.md").read_text()


def test_every_rpc_is_documented():
    rpcs = re.findall(r"^\s*rpc (\w+)\((\w+)\) returns \((?:stream )?(\w+)\)", PROTO, re.M)
    assert len(rpcs) == 19
    for name, request, response in rpcs:
        assert re.search(rf"^### {name}$", DOC, re.M), name
        assert f"`{request}`" in DOC and f"`{response}`" in DOC, name


def test_every_message_field_is_documented():
    for message, body in re.findall(r"^message (\w+) \{(.*?)^\}", PROTO, re.M | re.S):
        assert f"`{message}`" in DOC, message
        for field in re.findall(r"^\s*(?:repeated )?\w+ (\w+) = \d+;", body, re.M):
            assert f"`{field}`" in DOC, f"{message}.{field}"


def test_every_status_code_is_documented_with_its_number():
    body = re.search(r"enum Code \{(.*?)\}", PROTO, re.S).group(1)
    codes = re.findall(r"(\w+) = (\d+);", body)
    assert len(codes) == 17
    for name, number in codes:
        assert re.search(rf"\|\s*{number}\s*\|\s*`{name}`", DOC), name


def test_the_envelope_field_numbers_match():
    for operation, number in re.findall(r"^\s+\w+Request (\w+) = (\d+);", PROTO, re.M):
        assert re.search(rf"`{operation}`\s*\|\s*{number}\b", DOC), operation
