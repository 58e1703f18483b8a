"""A connection put by one language's client is got by the others', against a real cofferd."""

from __future__ import annotations

import json
import secrets

from coffer_client import Client, Coffer, CofferError, pb


def _aws_secret() -> str:
    """A secret access key of the form AWS gives (40 characters), unique to the test: a canary of its own."""
    return "CANARY" + secrets.token_hex(17)


def test_python_put_is_got_by_c_and_swift_typed(daemon, canary):
    key, secret, session = "AKIA" + secrets.token_hex(8).upper(), _aws_secret(), canary("session")
    with Client(daemon.admin_socket) as admin:
        info = admin.put("aws/from-python", {"accessKeyID": key, "secretAccessKey": secret, "sessionToken": session})
        assert info.version == 1 and info.type == "aws" and info.variant == "access-key"
        assert info.public_fields == {"accessKeyID": key}
        assert info.secret_fields == ["secretAccessKey", "sessionToken"]
        listed = admin.list()[0]
        assert listed.fields == ["accessKeyID", "secretAccessKey", "sessionToken"]
    assert daemon.swift("grant", "deploy", "aws/from-python").returncode == 0
    token = daemon.token("deploy")

    expected = {"connection": "aws/from-python", "type": "aws", "variant": "access-key", "version": 1,
                "fields": {"accessKeyID": key, "secretAccessKey": secret, "sessionToken": session},
                "secret": ["secretAccessKey", "sessionToken"]}
    for client in (daemon.c, daemon.swift, daemon.python):
        got = client("get", "aws/from-python", token=token)
        assert got.returncode == 0, (client.__name__, got.stderr)
        assert json.loads(got.stdout) == expected, client.__name__
    assert daemon.c("get", "aws/from-python", "--field", "secretAccessKey", token=token).stdout.decode() == secret
    assert daemon.python("get", "aws/from-python", "--field", "accessKeyID", token=token).stdout.decode() == key

    # What a step does in Python: attribute access, the environment its type maps, and nothing in a repr.
    step = Coffer(token=token, socket_path=daemon.worker_socket).get("aws/from-python")
    assert (step.accessKeyID, step.secretAccessKey, step.type, step.variant) == (key, secret, "aws", "access-key")
    assert step.secret_fields == {"secretAccessKey", "sessionToken"}
    assert step.env() == {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": session}
    assert secret not in repr(step) and session not in str(step)

    # Python overwrites (a region added, the session token gone); C and Swift see the new version.
    with Client(daemon.admin_socket) as admin:
        over = admin.overwrite("aws/from-python", {"accessKeyID": key, "secretAccessKey": secret,
                                                   "region": "eu-west-1"}, expected_version=1)
        assert over.version == 2 and over.public_fields == {"accessKeyID": key, "region": "eu-west-1"}
        # An update replaces nothing secret it does not name.
        assert admin.update("aws/from-python", set_public={"region": "us-east-2"}).version == 3
    for client in (daemon.c, daemon.swift):
        fields = json.loads(client("get", "aws/from-python", token=token).stdout)["fields"]
        assert fields == {"accessKeyID": key, "secretAccessKey": secret, "region": "us-east-2"}, client.__name__

    _assert_no_leak(daemon, [secret, session, token])


def test_c_put_is_got_by_python_and_swift_typed(daemon, canary):
    user, password = "etl-user", canary("password")
    put = daemon.c("put", "basic/from-c", "--public", "username",
                   stdin=f"username={user}\npassword={password}\n".encode())
    assert put.returncode == 0, put.stderr
    assert b"version 1" in put.stdout
    assert daemon.swift("grant", "etl", "basic/from-c").returncode == 0
    token = daemon.token("etl")

    with Client(daemon.worker_socket) as worker:
        version, values = worker.get("basic/from-c", token)
        typed = worker.get_connection("basic/from-c", token)
    assert version == 1
    assert values == {"username": user.encode(), "password": password.encode()}
    assert typed.secret_fields == {"password"} and typed.username == user
    swift = json.loads(daemon.swift("get", "basic/from-c", token=token).stdout)
    assert swift["fields"] == {"username": user, "password": password} and swift["secret"] == ["password"]

    # The password sent in clear is refused, naming the field and never the value.
    clear = daemon.c("put", "basic/in-clear", "--public", "username", "--public", "password",
                     stdin=f"username=u\npassword={password}\n".encode())
    assert clear.returncode == 2 and b"password" in clear.stderr and password.encode() not in clear.stderr

    # A value from a file, byte for byte, in an untyped (generic) connection through the C client.
    blob = bytes(range(256)) + password.encode()
    path = daemon.directory / "blob"
    path.write_bytes(blob)
    assert daemon.c("put", "generic/blob", stdin=b"note=v1\n").returncode == 0
    over = daemon.c("overwrite", "generic/blob", "--expect-version", "1", "--field-file", f"cert={path}")
    assert over.returncode == 0, over.stderr
    assert daemon.swift("grant", "etl", "generic/blob").returncode == 0
    with Client(daemon.worker_socket) as worker:
        assert worker.get("generic/blob", token) == (2, {"cert": blob})
    assert daemon.swift("get", "generic/blob", "--field", "cert", token=token).stdout == blob

    stale = daemon.c("overwrite", "generic/blob", "--expect-version", "1", stdin=b"a=b\n")
    assert stale.returncode == 7
    assert b"version 2" in stale.stderr

    _assert_no_leak(daemon, [password, token])


def test_swift_put_is_got_by_c_and_python(daemon, canary):
    value = canary("swift")
    put = daemon.swift("put", "http/from-swift",
                       stdin=json.dumps({"baseURL": "https://api.example.com", "token": value}).encode())
    assert put.returncode == 0, put.stderr
    assert daemon.swift("grant", "w", "http/from-swift").returncode == 0
    token = daemon.token("w")
    assert daemon.c("get", "http/from-swift", "--field", "token", token=token).stdout.decode() == value
    assert daemon.python("get", "http/from-swift", "--field", "token", token=token).stdout.decode() == value
    assert daemon.c("get", "http/from-swift", "--field", "baseURL", token=token).stdout == b"https://api.example.com"
    listed = json.loads(daemon.python("list", "--json").stdout)[0]
    assert listed["connection"] == "http/from-swift" and listed["public_fields"] == {
        "baseURL": "https://api.example.com"}
    _assert_no_leak(daemon, [value, token])


def test_every_client_reports_status_codes_alike(daemon, canary):
    value = canary()
    assert daemon.swift("put", "generic/x", stdin=json.dumps({"k": value}).encode()).returncode == 0
    stranger = daemon.token("stranger")
    cases = [
        # (what, C and Python arguments, token, exit status, code name)
        ("ungranted", ["get", "generic/x"], stranger, 5, "PERMISSION_DENIED"),
        ("missing and ungranted", ["get", "generic/none"], stranger, 5, "PERMISSION_DENIED"),
        ("forged token", ["get", "generic/x"], stranger + "x", 6, "UNAUTHENTICATED"),
        ("bad name", ["get", "GENERIC/x"], stranger, 2, "INVALID_ARGUMENT"),
    ]
    for what, args, token, status, name in cases:
        for client in (daemon.c, daemon.python):
            result = client(*args, token=token)
            assert result.returncode == status, (what, client.__name__, result.stderr)
            assert name.encode() in result.stderr, (what, client.__name__, result.stderr)
            assert result.stderr.startswith(b"coffer-"), result.stderr
        assert daemon.swift(*args, token=token).returncode == status, what

    exists = daemon.c("put", "generic/x", stdin=b"k=v\n")
    assert exists.returncode == 4 and b"ALREADY_EXISTS" in exists.stderr
    with Client(daemon.admin_socket) as admin:
        try:
            admin.put("generic/x", {"k": "v"})
            raise AssertionError("a second put succeeded")
        except CofferError as error:
            assert error.code == pb.ALREADY_EXISTS and error.exit_status == 4
    # Put on the worker socket, get on the admin socket.
    wrong = daemon.c("put", "generic/y", "--admin-socket", daemon.worker_socket, stdin=b"k=v\n")
    assert wrong.returncode == 5
    token = daemon.token("w")
    assert daemon.c("get", "generic/x", "--worker-socket", daemon.admin_socket, token=token).returncode == 5
    # No token, no cofferd, bad input.
    assert daemon.c("get", "generic/x").returncode == 6
    gone = daemon.c("get", "generic/x", "--worker-socket", str(daemon.directory / "none.sock"), token=token)
    assert gone.returncode == 9 and b"hint" in gone.stderr
    bad = daemon.c("put", "generic/z", stdin=f"no equals sign {value}\n".encode())
    assert bad.returncode == 2 and value.encode() not in bad.stderr
    assert daemon.c("frobnicate", "generic/x").returncode == 64
    bad_json = daemon.python("put", "generic/z", stdin=f"not json {value}".encode())
    assert bad_json.returncode == 2 and value.encode() not in bad_json.stderr
    _assert_no_leak(daemon, [value])


def _assert_no_leak(daemon, secrets_: list[str]) -> None:
    audit = daemon.swift("audit", "--json")
    assert audit.returncode == 0
    records = json.loads(audit.stdout)
    assert any(r["operation"] == "Get" for r in records)
    text = daemon.output + audit.stdout.decode()
    for secret in secrets_:
        assert secret not in text
