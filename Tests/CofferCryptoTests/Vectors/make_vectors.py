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


def subkey(subkey_id: int, length: int) -> bytes:
    # crypto_kdf_derive_from_key: keyed BLAKE2b of nothing, salt = id (8 bytes little-endian) + 8 zero bytes,
    # personalisation = the 8-byte context + 8 zero bytes.
    return hashlib.blake2b(b"", digest_size=length, key=MASTER, salt=struct.pack("<Q", subkey_id) + bytes(8),
                           person=CONTEXT + bytes(8)).digest()


def public_key(seed: bytes) -> bytes:
    # crypto_box_seed_keypair: the secret key is the first 32 bytes of SHA-512(seed), clamped by X25519.
    secret = hashlib.sha512(seed).digest()[:32]
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def field(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def additional_data(key_id: bytes, kind: str, name: str, field_name: str, version: int) -> bytes:
    return field("coffer.field") + bytes([1]) + key_id + field(kind) + field(name) + field(field_name) + struct.pack(">Q", version)


seed = subkey(1, 32)
storage_key = subkey(2, 32)
token_key = subkey(3, 32)
check_key = subkey(4, 32)
pk = public_key(seed)
key_id = hashlib.blake2b(pk, digest_size=8).digest()
token = b"cft_0123456789abcdef_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY"
nonce = bytes(range(100, 124))
plaintext = b"AKIA-known-answer"
ad = additional_data(key_id, "aws", "prod", "secret_access_key", 7)
sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, storage_key)

print(json.dumps({
    "master_key": MASTER.hex(),
    "public_key": pk.hex(),
    "key_id": key_id.hex(),
    "key_check": hashlib.blake2b(b"coffer key check v1", digest_size=32, key=check_key).hexdigest(),
    "token": token.decode(),
    "token_digest": hashlib.blake2b(token, digest_size=32, key=token_key).hexdigest(),
    "at_rest": {
        "connection": "aws/prod",
        "field": "secret_access_key",
        "record_version": 7,
        "nonce": nonce.hex(),
        "plaintext": plaintext.hex(),
        "additional_data": ad.hex(),
        "stored": (bytes([1]) + key_id + nonce + sealed).hex(),
    },
}, indent=2))
