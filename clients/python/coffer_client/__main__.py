"""coffer-py: put, overwrite, get and list Coffer connections from Python.

    python3 -m coffer_client put TYPE/NAME [--variant V] [--from-file PATH]   fields: a JSON object on stdin
    python3 -m coffer_client overwrite TYPE/NAME [--expect-version N] [--from-file PATH]
    python3 -m coffer_client get TYPE/NAME [--field NAME]          token from COFFER_TOKEN
    python3 -m coffer_client list [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import Client, CofferError, admin_socket, pb, worker_socket


def _read_fields(path: str | None) -> dict[str, str]:
    source = path or "stdin"
    try:
        text = open(path, encoding="utf-8").read() if path else sys.stdin.read()
        fields = json.loads(text)
    except (OSError, ValueError):
        # Never quote the input: it holds values.
        raise CofferError(pb.INVALID_ARGUMENT, f"{source} must hold a JSON object of strings")
    if not isinstance(fields, dict) or not fields or not all(isinstance(v, str) for v in fields.values()):
        raise CofferError(pb.INVALID_ARGUMENT, f"{source} must hold a non-empty JSON object of strings")
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coffer-py", description="Put, overwrite, get and list Coffer connections.")
    parser.add_argument("--admin-socket", default=admin_socket())
    parser.add_argument("--worker-socket", default=worker_socket())
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("put")
    put.add_argument("connection")
    put.add_argument("--from-file")
    put.add_argument("--variant")
    overwrite = commands.add_parser("overwrite")
    overwrite.add_argument("connection")
    overwrite.add_argument("--from-file")
    overwrite.add_argument("--expect-version", type=int, default=0)
    get = commands.add_parser("get")
    get.add_argument("connection")
    get.add_argument("--field")
    listing = commands.add_parser("list")
    listing.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command in ("put", "overwrite"):
            fields = _read_fields(args.from_file)
            with Client(args.admin_socket) as client:
                if args.command == "put":
                    info = client.put(args.connection, fields, variant=args.variant)
                else:
                    info = client.overwrite(args.connection, fields, args.expect_version)
            print(f"{args.command} {info.connection}, now version {info.version}")
        elif args.command == "get":
            token = os.environ.get("COFFER_TOKEN")
            if not token:
                raise CofferError(pb.UNAUTHENTICATED, "no workflow token: set COFFER_TOKEN")
            with Client(args.worker_socket) as client:
                connection = client.get_connection(args.connection, token)
            if args.field is not None:
                if args.field not in connection:
                    raise CofferError(pb.NOT_FOUND, f"connection {args.connection} has no field {args.field}")
                value = connection[args.field]
                sys.stdout.buffer.write(value.encode() if isinstance(value, str) else value)
            else:
                if any(isinstance(v, bytes) for v in connection.fields.values()):
                    raise CofferError(pb.FAILED_PRECONDITION, "a field is not UTF-8 text; print it with --field")
                print(json.dumps({"connection": connection.connection, "type": connection.type,
                                  "variant": connection.variant, "version": connection.version,
                                  "fields": connection.fields, "secret": sorted(connection.secret_fields)}))
        else:
            with Client(args.admin_socket) as client:
                connections = client.list()
            if args.json:
                print(json.dumps([vars(info) for info in connections]))
            else:
                for info in connections:
                    grants = ",".join(info.grants) or "-"
                    print(f"{info.connection}\tversion {info.version}\tfields {','.join(info.fields)}\tgrants {grants}")
    except CofferError as error:
        print(f"coffer-py: error: {error.message} ({error.code_name})", file=sys.stderr)
        return error.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
