"""A connection put by one language's client is got by the others', against a real cofferd."""

from __future__ import annotations

import json

from coffer_client import Client, CofferError, pb


def test_python_put_is_got_by_c_and_swift(daemon, canary):
    key, secret = canary("key"), canary("secret with spaces = and quotes \"")
    with Client(daemon.admin_socket) as admin:
        info = admin.put("aws/from-python", {"access_key_id": key, "secret_access_key": secret})
        assert info.version == 1
        assert admin.list()[0].fields == ["access_key_id", "secret_access_key"]
    assert daemon.swift("grant", "deploy", "aws/from-python").returncode == 0
    token = daemon.token("deploy")

    by_c = daemon.c("get", "aws/from-python", token=token)
    assert by_c.returncode == 0, by_c.stderr
    assert json.loads(by_c.stdout) == {"access_key_id": key, "secret_access_key": secret}
    raw = daemon.c("get", "aws/from-python", "--field", "secret_access_key", token=token)
    assert raw.stdout.decode() == secret

    by_swift = daemon.swift("get", "aws/from-python", token=token)
    assert by_swift.returncode == 0, by_swift.stderr
    assert json.loads(by_swift.stdout) == {"access_key_id": key, "secret_access_key": secret}

    by_python = daemon.python("get", "aws/from-python", "--field", "access_key_id", token=token)
    assert by_python.stdout.decode() == key

    # Python overwrites; the C client and the Swift CLI see the new version's values.
    with Client(daemon.admin_socket) as admin:
        assert admin.overwrite("aws/from-python", {"access_key_id": key + "-2"}, expected_version=1).version == 2
    assert json.loads(daemon.c("get", "aws/from-python", token=token).stdout) == {"access_key_id": key + "-2"}
    assert json.loads(daemon.swift("get", "aws/from-python", token=token).stdout) == {"access_key_id": key + "-2"}

    _assert_no_leak(daemon, [key, secret, token])


def test_c_put_is_got_by_python_and_swift(daemon, canary):
    user, password = canary("user"), canary("password")
    put = daemon.c("put", "basic/from-c", stdin=f"username={user}\npassword={password}\n".encode())
    assert put.returncode == 0, put.stderr
    assert b"version 1" in put.stdout
    assert daemon.swift("grant", "etl", "basic/from-c").returncode == 0
    token = daemon.token("etl")

    with Client(daemon.worker_socket) as worker:
        version, values = worker.get("basic/from-c", token)
    assert version == 1
    assert values == {"username": user.encode(), "password": password.encode()}
    assert json.loads(daemon.swift("get", "basic/from-c", token=token).stdout) == {"username": user,
                                                                                   "password": password}

    # A value from a file, byte for byte, through the C client's overwrite.
    blob = bytes(range(256)) + password.encode()
    path = daemon.directory / "blob"
    path.write_bytes(blob)
    over = daemon.c("overwrite", "basic/from-c", "--expect-version", "1", "--field-file", f"cert={path}")
    assert over.returncode == 0, over.stderr
    with Client(daemon.worker_socket) as worker:
        assert worker.get("basic/from-c", token) == (2, {"cert": blob})
    assert daemon.swift("get", "basic/from-c", "--field", "cert", token=token).stdout == blob

    stale = daemon.c("overwrite", "basic/from-c", "--expect-version", "1", stdin=b"a=b\n")
    assert stale.returncode == 7
    assert b"version 2" in stale.stderr

    _assert_no_leak(daemon, [user, password, token])


def test_swift_put_is_got_by_c_and_python(daemon, canary):
    value = canary("swift")
    assert daemon.swift("put", "http/from-swift", stdin=json.dumps({"token": value}).encode()).returncode == 0
    assert daemon.swift("grant", "w", "http/from-swift").returncode == 0
    token = daemon.token("w")
    assert daemon.c("get", "http/from-swift", "--field", "token", token=token).stdout.decode() == value
    assert daemon.python("get", "http/from-swift", "--field", "token", token=token).stdout.decode() == value
    listed = daemon.python("list", "--json")
    assert json.loads(listed.stdout)[0]["connection"] == "http/from-swift"
    _assert_no_leak(daemon, [value, token])


def test_every_client_reports_status_codes_alike(daemon, canary):
    value = canary()
    assert daemon.swift("put", "aws/x", stdin=json.dumps({"k": value}).encode()).returncode == 0
    stranger = daemon.token("stranger")
    cases = [
        # (what, C and Python arguments, token, exit status, code name)
        ("ungranted", ["get", "aws/x"], stranger, 5, "PERMISSION_DENIED"),
        ("missing and ungranted", ["get", "aws/none"], stranger, 5, "PERMISSION_DENIED"),
        ("forged token", ["get", "aws/x"], stranger + "x", 6, "UNAUTHENTICATED"),
        ("bad name", ["get", "AWS/x"], stranger, 2, "INVALID_ARGUMENT"),
    ]
    for what, args, token, status, name in cases:
        for client in (daemon.c, daemon.python):
            result = client(*args, token=token)
            assert result.returncode == status, (what, client.__name__, result.stderr)
            assert name.encode() in result.stderr, (what, client.__name__, result.stderr)
            assert result.stderr.startswith(b"coffer-"), result.stderr
        assert daemon.swift(*args, token=token).returncode == status, what

    exists = daemon.c("put", "aws/x", stdin=b"k=v\n")
    assert exists.returncode == 4 and b"ALREADY_EXISTS" in exists.stderr
    with Client(daemon.admin_socket) as admin:
        try:
            admin.put("aws/x", {"k": "v"})
            raise AssertionError("a second put succeeded")
        except CofferError as error:
            assert error.code == pb.ALREADY_EXISTS and error.exit_status == 4
    # Put on the worker socket, get on the admin socket.
    wrong = daemon.c("put", "aws/y", "--admin-socket", daemon.worker_socket, stdin=b"k=v\n")
    assert wrong.returncode == 5
    token = daemon.token("w")
    assert daemon.c("get", "aws/x", "--worker-socket", daemon.admin_socket, token=token).returncode == 5
    # No token, no cofferd, bad input.
    assert daemon.c("get", "aws/x").returncode == 6
    gone = daemon.c("get", "aws/x", "--worker-socket", str(daemon.directory / "none.sock"), token=token)
    assert gone.returncode == 9 and b"hint" in gone.stderr
    bad = daemon.c("put", "aws/z", stdin=f"no equals sign {value}\n".encode())
    assert bad.returncode == 2 and value.encode() not in bad.stderr
    assert daemon.c("frobnicate", "aws/x").returncode == 64
    bad_json = daemon.python("put", "aws/z", stdin=f"not json {value}".encode())
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
