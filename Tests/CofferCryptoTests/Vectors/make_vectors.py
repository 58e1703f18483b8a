#!/usr/bin/env python3
"""Computes Coffer's known-answer vectors without Coffer's code or libsodium's KDF: BLAKE2b from hashlib (with
libsodium's KDF salt and personalisation), X25519 from `cryptography`, XChaCha20-Poly1305 from PyNaCl. The Swift
tests (KnownAnswerTests) check Coffer against the JSON this prints:

    python3 -m pip install cryptography pynacl   # in a venv
    python3 Tests/CofferCryptoTests/Vectors/make_vectors.py > Tests/CofferCryptoTests/Vectors/vectors.json
"""

import hashlib
import json
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

CONTEXT = b"coffer.1"
MASTER = bytes(range(32))


def subkey(purpose: int, length: int, generation: int = 1) -> bytes:
    # crypto_kdf_derive_from_key: keyed BLAKE2b of nothing, salt = id (8 bytes little-endian) + 8 zero bytes,
    # personalisation = the 8-byte context + 8 zero bytes. Generation 1 uses the purpose as the id; a later
    # generation puts its number above it.
    subkey_id = purpose if generation == 1 else generation << 8 | purpose
    return hashlib.blake2b(b"", digest_size=length, key=MASTER, salt=struct.pack("<Q", subkey_id) + bytes(8),
                           person=CONTEXT + bytes(8)).digest()


def public_key(seed: bytes) -> bytes:
    # crypto_box_seed_keypair: the secret key is the first 32 bytes of SHA-512(seed), clamped by X25519.
    secret = hashlib.sha512(seed).digest()[:32]
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def field(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def additional_data(fmt: int, key_id: bytes, kind: str, name: str, field_name: str, version: int,
                    incarnation: bytes = b"") -> bytes:
    return (field("coffer.field") + bytes([fmt]) + key_id + field(kind) + field(name) + field(field_name)
            + struct.pack(">Q", version) + incarnation)


def labelled(label: str, table: str, key: bytes) -> bytes:
    return label.encode() + b"\0" + table.encode() + b"\0" + struct.pack(">Q", len(key)) + key


def keyed(data: bytes, key: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size, key=key).digest()


def generation(number: int) -> dict:
    pk = public_key(subkey(1, 32, number))
    return {"number": number, "public_key": pk.hex(), "key_id": hashlib.blake2b(pk, digest_size=8).hexdigest()}


storage_key = subkey(2, 32)
token_key = subkey(3, 32)
check_key = subkey(4, 32)
record_key = subkey(5, 32)
summary_key = subkey(6, 32)
audit_key = subkey(7, 32)
pk = public_key(subkey(1, 32))
key_id = hashlib.blake2b(pk, digest_size=8).digest()
token = b"cft_0123456789abcdef_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY"
nonce = bytes(range(100, 124))
plaintext = b"AKIA-known-answer"
incarnation = bytes(range(200, 216))
ad1 = additional_data(1, key_id, "aws", "prod", "secret_access_key", 7)
ad2 = additional_data(2, key_id, "aws", "prod", "secret_access_key", 7, incarnation)
record_payload = b"\x08\x07\x10\x01"
record_key_bytes = b"aws/prod"
record_tag = keyed(labelled("coffer.record.v2", "connections", record_key_bytes) + record_payload
                   + struct.pack(">Q", 1), record_key, 16)
audit_entry = b"\x08\x01\x12\x06worker\x1a\x03Get"

print(json.dumps({
    "master_key": MASTER.hex(),
    "public_key": pk.hex(),
    "key_id": key_id.hex(),
    "key_check": keyed(b"coffer key check v1", check_key, 32).hex(),
    "token": token.decode(),
    "token_digest": keyed(token, token_key, 32).hex(),
    "generation_2": generation(2),
    "at_rest_format_1": {
        "connection": "aws/prod", "field": "secret_access_key", "record_version": 7, "nonce": nonce.hex(),
        "plaintext": plaintext.hex(), "additional_data": ad1.hex(),
        "stored": (bytes([1]) + key_id + nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad1, nonce, storage_key)).hex(),
    },
    "at_rest": {
        "connection": "aws/prod", "field": "secret_access_key", "record_version": 7, "incarnation": incarnation.hex(),
        "nonce": nonce.hex(), "plaintext": plaintext.hex(), "additional_data": ad2.hex(),
        "stored": (bytes([2]) + key_id + nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad2, nonce, storage_key)).hex(),
    },
    "record": {
        "table": "connections", "key": record_key_bytes.hex(), "payload": record_payload.hex(), "generation": 1,
        "tag": record_tag.hex(),
        "summary_element": keyed(labelled("coffer.summary.v2", "connections", record_key_bytes) + record_tag, summary_key, 32).hex(),
        "metadata_tag": keyed(b"coffer.metadata.v2" + record_payload, summary_key, 16).hex(),
    },
    "audit": {
        "sequence": 42, "entry": audit_entry.hex(),
        "link": keyed(b"coffer.audit.v2" + bytes(16) + struct.pack(">Q", 42) + audit_entry, audit_key, 16).hex(),
        "journal_tag": keyed(b"coffer.journal.v2" + audit_entry, audit_key, 16).hex(),
    },
}, indent=2))
