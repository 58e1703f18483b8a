"""A Python client for cofferd: typed connections for workflow steps, and the admin operations.

A step gets a connection the way Puppet Relay's SDK offers it:

    from coffer_client import Coffer
    aws = Coffer().get("aws/my-aws-account")      # token from COFFER_TOKEN, socket from COFFER_WORKER_SOCKET
    session = boto3.Session(aws_access_key_id=aws.accessKeyID, aws_secret_access_key=aws.secretAccessKey)

Messages are protobuf (code generated from proto/coffer/v1/coffer.proto by protoc, shipped in the package;
generate.sh redoes it), framed length-delimited on a Unix socket. Secret values are sealed with libsodium's
crypto_box_seal (pynacl's SealedBox) to cofferd's public key before they leave the process; public fields
(a base URL, a region, a username) travel in clear, as the connection's type says.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

from nacl.public import PublicKey, SealedBox

from ._generated.coffer.v1 import coffer_pb2 as pb

__all__ = ["CofferError", "Client", "Coffer", "Connection", "ConnectionInfo", "pb", "EXIT_STATUS"]

DEFAULT_ADMIN_SOCKET = "/run/coffer/admin.sock"
DEFAULT_WORKER_SOCKET = "/run/coffer/worker.sock"
MAX_FRAME_SIZE = 64 * 1024 * 1024  # responses; a List of many connections can be large

# The exit status the command-line tools use for each status code (the same as the Swift `coffer`).
EXIT_STATUS = {
    pb.INVALID_ARGUMENT: 2, pb.NOT_FOUND: 3, pb.ALREADY_EXISTS: 4, pb.PERMISSION_DENIED: 5,
    pb.UNAUTHENTICATED: 6, pb.FAILED_PRECONDITION: 7, pb.RESOURCE_EXHAUSTED: 8, pb.UNAVAILABLE: 9,
    pb.DATA_LOSS: 10, pb.DEADLINE_EXCEEDED: 11,
}


class CofferError(Exception):
    """A status other than OK, or a transport failure (UNAVAILABLE). Never carries a value or a token."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        return pb.Code.Name(self.code)

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(self.code, 1)


@dataclass(frozen=True)
class ConnectionInfo:
    """What an admin may know of a connection: never a secret value."""
    connection: str
    fields: list[str]
    version: int
    created_unix_ms: int
    updated_unix_ms: int
    grants: list[str]
    type_version: int = 0
    variant: str = ""
    public_fields: dict = field(default_factory=dict)
    secret_fields: list = field(default_factory=list)

    @property
    def type(self) -> str:
        """The type it is served as: generic for a connection stored before types."""
        return self.connection.split("/", 1)[0] if self.type_version else "generic"


class Connection:
    """A connection as a step gets it: its fields by attribute (`aws.accessKeyID`) or by key
    (`http["header.Accept"]`). Secret fields are named in `secret_fields`, so a runner can mask them; the repr
    never shows a value."""

    def __init__(self, response):
        self.connection: str = response.connection
        self.version: int = response.version
        self.type_version: int = response.type_version
        self.type: str = self.connection.split("/", 1)[0] if response.type_version else "generic"
        self.variant: str = response.variant or "default"
        self.fields: dict[str, str | bytes] = {}
        self.secret_fields: set[str] = set()
        self.environment: dict[str, str] = {}
        for item in response.fields:
            value = bytes(item.value)
            try:
                self.fields[item.name] = value.decode("utf-8")
            except UnicodeDecodeError:
                self.fields[item.name] = value
            if not item.public:
                self.secret_fields.add(item.name)
            if item.environment:
                self.environment[item.environment] = item.name

    def __getattr__(self, name: str):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"connection {self.__dict__.get('connection')} has no field {name}")

    def __getitem__(self, name: str):
        return self.fields[name]

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def env(self) -> dict[str, str]:
        """The environment variables the connection's type maps its fields to (for aws: AWS_ACCESS_KEY_ID, ...)."""
        return {variable: str(self.fields[name]) for variable, name in self.environment.items()}

    def __repr__(self) -> str:
        return (f"Connection({self.connection}, type {self.type}, variant {self.variant}, version {self.version}, "
                f"fields {sorted(self.fields)}, values <redacted>)")

    __str__ = __repr__


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Client:
    """One connection to a cofferd socket. Use as a context manager."""

    def __init__(self, socket_path: str, timeout: float = 30.0, server_uid: int | None = None):
        self.socket_path = socket_path
        self._next_id = 1
        self._buffer = b""
        # The change feed's revision of the last change a request on this client committed; 0 before one.
        self.last_revision = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except PermissionError:
            self._sock.close()
            raise CofferError(pb.PERMISSION_DENIED, f"cannot connect to cofferd at {socket_path}: permission denied")
        except OSError as error:
            self._sock.close()
            raise CofferError(pb.UNAVAILABLE,
                              f"cannot connect to cofferd at {socket_path}: {error.strerror}; is cofferd running?")
        try:
            _verify_server(self._sock, socket_path, server_uid)
        except CofferError:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Admin socket.

    def public_key(self) -> tuple[bytes, str]:
        result = self._call("get_public_key", pb.GetPublicKeyRequest())
        return bytes(result.public_key), result.key_id

    def put(self, connection: str, values: dict[str, bytes | str], variant: str | None = None) -> ConnectionInfo:
        """Creates a connection. The fields its type declares public travel in clear; every other is sealed."""
        request = pb.PutRequest(connection=connection, variant=variant or "")
        secret = self._split(connection, variant, values, request.public_fields)
        request.key_id = self._seal(secret, request.fields)
        return _info(self._call("put", request).connection)

    def overwrite(self, connection: str, values: dict[str, bytes | str], expected_version: int = 0,
                  variant: str | None = None) -> ConnectionInfo:
        current = self.describe(connection)
        request = pb.OverwriteRequest(connection=connection, expected_version=expected_version, variant=variant or "")
        if current.type_version:
            secret = self._split(connection, variant or current.variant, values, request.public_fields)
        else:
            secret = values  # stored before types: every field stays secret
        request.key_id = self._seal(secret, request.fields)
        return _info(self._call("overwrite", request).connection)

    def update(self, connection: str, set_public: dict[str, str] | None = None,
               set_secret: dict[str, bytes | str] | None = None, remove: list[str] | None = None,
               expected_version: int = 0) -> ConnectionInfo:
        """Sets public fields, replaces secret ones and removes optional ones; secrets not named are kept."""
        request = pb.UpdateRequest(connection=connection, expected_version=expected_version, remove=remove or [])
        for name, value in sorted((set_public or {}).items()):
            request.set_public.add(name=name, value=value)
        if set_secret:
            request.key_id = self._seal(set_secret, request.set_secret)
        return _info(self._call("update", request).connection)

    def describe(self, connection: str) -> ConnectionInfo:
        return _info(self._call("describe", pb.DescribeRequest(connection=connection)).connection)

    def types(self) -> list:
        """The connection types cofferd knows (ConnectionType messages)."""
        return list(self._call("list_types", pb.ListTypesRequest()).types)

    def list(self) -> list[ConnectionInfo]:
        return [_info(info) for info in self._call("list", pb.ListRequest()).connections]

    def grant(self, workflow: str, connection: str) -> bool:
        return self._call("grant", pb.GrantRequest(workflow=workflow, connection=connection)).created

    def revoke(self, workflow: str, connection: str) -> None:
        """Takes a workflow's grant for a connection away."""
        self._call("revoke", pb.RevokeRequest(workflow=workflow, connection=connection))

    def delete(self, connection: str, expected_version: int = 0) -> None:
        """Deletes a connection and revokes its grants."""
        self._call("delete", pb.DeleteRequest(connection=connection, expected_version=expected_version))

    def issue_token(self, workflow: str, ttl_seconds: int = 0, run_id: str = "") -> tuple[str, str]:
        """Returns (token, token_id). The token is shown once: keep it secret."""
        result = self._call("issue_token", pb.IssueTokenRequest(workflow=workflow, ttl_seconds=ttl_seconds,
                                                                  run_id=run_id))
        return result.token, result.token_id

    def revoke_token(self, token_id: str) -> int:
        """Revokes a token by its id; returns when it was revoked (Unix milliseconds)."""
        return self._call("revoke_token", pb.RevokeTokenRequest(token_id=token_id)).revoked_unix_ms

    def rotate_key(self):
        """Makes a new key generation active; returns it (a KeyGeneration message)."""
        return self._call("rotate_key", pb.RotateKeyRequest()).generation

    def key_status(self):
        """Every key generation and the re-encryption's progress (a KeyStatusResponse message)."""
        return self._call("key_status", pb.KeyStatusRequest())

    def retire_key(self, generation: int):
        return self._call("retire_key", pb.RetireKeyRequest(generation=generation)).generation

    # Worker socket.

    def get(self, connection: str, token: str) -> tuple[int, dict[str, bytes]]:
        """Returns (version, {field: value}) with every field, public and secret, as bytes."""
        result = self._call("get", pb.GetRequest(connection=connection, token=token))
        return result.version, {item.name: bytes(item.value) for item in result.fields}

    def get_connection(self, connection: str, token: str) -> Connection:
        """The connection typed: fields by attribute, which are secret, the environment its type maps."""
        return Connection(self._call("get", pb.GetRequest(connection=connection, token=token)))

    def watch(self, token: str, connections=(), with_values: bool = False, after_revision: int = 0):
        """Watches connections (none: every one the token's workflow is granted) on the worker socket; yields
        each WatchEvent message (kind, revision, connection, version, fields, reason) until the ENDED one. The
        client is the watch's from then on. Resume with the last revision seen as `after_revision`."""
        request = pb.Request(id=self._next_id)
        self._next_id += 1
        request.watch.CopyFrom(pb.WatchRequest(token=token, connections=list(connections), with_values=with_values,
                                               after_revision=after_revision))
        body = request.SerializeToString()
        try:
            self._sock.sendall(_varint(len(body)) + body)
            while True:
                try:
                    response = pb.Response.FromString(self._read_frame())
                except socket.timeout:
                    continue  # a heartbeat comes every few seconds; keep waiting
                if response.status.code != pb.OK:
                    raise CofferError(response.status.code, response.status.message or pb.Code.Name(response.status.code))
                if response.id != request.id or response.WhichOneof("result") != "watch_event":
                    raise CofferError(pb.INTERNAL, "cofferd answered a watch with something else")
                yield response.watch_event
                if response.watch_event.kind == pb.WatchEvent.ENDED:
                    return
        except OSError as error:
            raise CofferError(pb.UNAVAILABLE, f"cannot talk to cofferd at {self.socket_path}: {error.strerror}")

    def health(self) -> str:
        return self._call("health", pb.HealthRequest()).status

    # The wire.

    def _split(self, connection: str, variant: str | None, values: dict[str, bytes | str], public_fields) -> dict:
        """Puts the fields the type declares public into `public_fields`; returns the others, to be sealed. A type
        or field cofferd does not know is sealed, and cofferd names what is wrong."""
        type_name = connection.split("/", 1)[0]
        specs = []
        for known in self.types():
            if known.name == type_name and known.variants:
                chosen = next((v for v in known.variants if v.name == variant), known.variants[0])
                specs = list(chosen.fields)
        secret = {}
        for name, value in sorted(values.items()):
            spec = next((s for s in specs if s.name == name), None) or next(
                (s for s in specs if s.name.endswith(".") and name.startswith(s.name) and len(name) > len(s.name)),
                None)
            if spec is not None and not spec.secret and isinstance(value, str):
                public_fields.add(name=name, value=value)
            else:
                secret[name] = value
        return secret

    def _seal(self, values: dict[str, bytes | str], fields) -> str:
        key, key_id = self.public_key()
        box = SealedBox(PublicKey(key))
        for name, value in sorted(values.items()):
            plaintext = value.encode() if isinstance(value, str) else bytes(value)
            fields.add(name=name, sealed_value=box.encrypt(plaintext))
        return key_id

    def _call(self, operation: str, message):
        request = pb.Request(id=self._next_id)
        self._next_id += 1
        getattr(request, operation).CopyFrom(message)
        body = request.SerializeToString()
        try:
            self._sock.sendall(_varint(len(body)) + body)
            response = pb.Response.FromString(self._read_frame())
        except socket.timeout:
            raise CofferError(pb.DEADLINE_EXCEEDED, "cofferd did not answer in time")
        except OSError as error:
            raise CofferError(pb.UNAVAILABLE, f"cannot talk to cofferd at {self.socket_path}: {error.strerror}")
        if response.status.code != pb.OK:
            raise CofferError(response.status.code, response.status.message or pb.Code.Name(response.status.code))
        if response.id != request.id:
            raise CofferError(pb.INTERNAL, "cofferd answered another request")
        if response.WhichOneof("result") != operation:
            raise CofferError(pb.INTERNAL, "cofferd answered with a result of another operation")
        if response.revision:
            self.last_revision = response.revision
        return getattr(response, operation)

    def _read_frame(self) -> bytes:
        while True:
            length, shift, used = 0, 0, 0
            for byte in self._buffer:
                used += 1
                length |= (byte & 0x7F) << shift
                if length > MAX_FRAME_SIZE or used > 10:
                    raise CofferError(pb.INTERNAL, "cofferd sent a malformed frame")
                if not byte & 0x80:
                    if len(self._buffer) >= used + length:
                        frame = self._buffer[used:used + length]
                        self._buffer = self._buffer[used + length:]
                        return frame
                    break
                shift += 7
            chunk = self._sock.recv(65536)
            if not chunk:
                raise CofferError(pb.UNAVAILABLE, "cofferd closed the connection")
            self._buffer += chunk


def _verify_server(sock: socket.socket, socket_path: str, expected: int | None) -> None:
    """Before anything is sent: the listener's uid, from the kernel (SO_PEERCRED), must be `expected` (by default
    COFFER_SERVER_UID), or without one the owner of the socket's directory; root is always taken. An impostor
    bound in a directory others can write never sees a token or a sealed value."""
    _, peer, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if peer == 0:
        return
    if expected is None:
        configured = os.environ.get("COFFER_SERVER_UID", "")
        if configured:
            if not configured.isdigit():
                raise CofferError(pb.INVALID_ARGUMENT, "COFFER_SERVER_UID must be a numeric uid")
            expected, source = int(configured), "COFFER_SERVER_UID"
        else:
            directory = os.path.dirname(socket_path) or "."
            expected, source = os.stat(directory).st_uid, f"the owner of {directory}"
    else:
        source = "server_uid"
    if peer != expected:
        raise CofferError(pb.FAILED_PRECONDITION,
                          f"the process listening on {socket_path} runs as uid {peer}, not {expected} ({source}): it "
                          f"is not cofferd, or cofferd runs as another user (then set COFFER_SERVER_UID); nothing was "
                          f"sent to it")


def _info(info) -> ConnectionInfo:
    return ConnectionInfo(info.connection, list(info.fields), info.version, info.created_unix_ms,
                          info.updated_unix_ms, list(info.grants), info.type_version, info.variant,
                          {item.name: item.value for item in info.public_fields}, list(info.secret_fields))


class Coffer:
    """What a workflow step uses: `Coffer().get("aws/my-aws-account")`. The token comes from `token` or
    COFFER_TOKEN, the worker socket from `socket_path` or COFFER_WORKER_SOCKET."""

    def __init__(self, token: str | None = None, socket_path: str | None = None, timeout: float = 30.0):
        self._token = token or os.environ.get("COFFER_TOKEN") or ""
        if not self._token:
            raise CofferError(pb.UNAUTHENTICATED, "no workflow token: set COFFER_TOKEN or pass token=")
        self._socket_path = socket_path or worker_socket()
        self._timeout = timeout

    def get(self, connection: str) -> Connection:
        with Client(self._socket_path, self._timeout) as client:
            return client.get_connection(connection, self._token)

    def __repr__(self) -> str:
        return f"Coffer({self._socket_path}, token <redacted>)"


def admin_socket() -> str:
    return os.environ.get("COFFER_ADMIN_SOCKET") or DEFAULT_ADMIN_SOCKET


def worker_socket() -> str:
    return os.environ.get("COFFER_WORKER_SOCKET") or DEFAULT_WORKER_SOCKET
