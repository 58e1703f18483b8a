"""docs/connections.md describes every built-in type, variant and field, and each of its put examples is
accepted by a real cofferd and got back as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "connections.md").read_text()
EXAMPLE = re.compile(r"^```json put=(\S+)(?: variant=(\S+))?\n(.*?)^```", re.M | re.S)


def _section(name: str) -> str:
    match = re.search(rf"^### {re.escape(name)}\n(.*?)(?=^##)", DOC, re.M | re.S)
    assert match, f"docs/connections.md has no section for type {name}"
    return match.group(1)


def test_every_type_variant_and_field_is_described(daemon):
    listed = daemon.swift("types", "--json")
    assert listed.returncode == 0, listed.stderr
    types = json.loads(listed.stdout)["types"]
    assert {t["name"] for t in types} == {"generic", "aws", "http", "azure", "gcp", "kubernetes", "ssh", "basic"}
    examples = [(ref, variant) for ref, variant, _ in EXAMPLE.findall(DOC)]
    for type_ in types:
        section = _section(type_["name"])
        for variant in type_["variants"]:
            assert f"`{variant['name']}`" in section, (type_["name"], variant["name"])
            default = variant["name"] == type_["variants"][0]["name"]
            assert any(ref.split("/")[0] == type_["name"] and (named == variant["name"] or (default and not named))
                       for ref, named in examples), f"no put example for {type_['name']} ({variant['name']})"
            for field in variant["fields"]:
                name = field["name"] + "NAME" if field["name"].endswith(".") else field["name"]
                if name != "*":
                    assert f"`{name}`" in section, (type_["name"], name)


def test_every_put_example_is_accepted_and_got_back_as_written(daemon):
    examples = EXAMPLE.findall(DOC)
    assert len(examples) >= 12
    for ref, variant, body in examples:
        fields = json.loads(body)
        args = ["put", ref] + (["--variant", variant] if variant else [])
        put = daemon.swift(*args, stdin=body.encode())
        assert put.returncode == 0, (ref, put.stderr)
        assert daemon.swift("grant", "docs", ref).returncode == 0
    token = daemon.token("docs")
    for ref, variant, body in examples:
        got = daemon.swift("get", ref, token=token)
        assert got.returncode == 0, (ref, got.stderr)
        typed = json.loads(got.stdout)
        written = json.loads(body)
        assert {k: v for k, v in typed["fields"].items() if k in written} == written, ref
        assert set(typed["fields"]) - set(written) <= {"externalID"}, ref
        assert typed["variant"] == (variant or typed["variant"]), ref
