"""Ed25519 signing key for audit checkpoints and export manifests: load, or generate on first use.

The key file is PEM (PKCS#8, unencrypted, mode 0600) at ``VEU_SIGNING_KEY_FILE`` (Settings.signing_key_file),
default ``$XDG_DATA_HOME/veu-governor/signing.key``. Verification needs only the public key, which is
published next to every signature (``key_id`` = SHA-256 of the raw public key, hex, 64 chars).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.config import settings
from policies.errors import PolicyError


class SigningKeyError(PolicyError):
    """The signing key file is missing, unreadable or not an Ed25519 key."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def public_pem(self) -> str:
        return public_pem(self.public)

    def sign(self, message: bytes) -> str:
        """Base64 signature of ``message``."""
        return base64.b64encode(self.private.sign(message)).decode()


_cache: dict[Path, SigningKey] = {}
_lock = threading.Lock()


def key_path() -> Path:
    configured = settings().signing_key_file
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "veu-governor"
    return base / "signing.key"


def raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(pub)).hexdigest()


def public_pem(pub: Ed25519PublicKey) -> str:
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("public key: not an Ed25519 key")
    return key


def generate(path: Path) -> SigningKey:
    """Create a new key at ``path`` (refuses to overwrite an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    priv = Ed25519PrivateKey.generate()
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # O_EXCL: two processes racing to create the key must not overwrite each other's.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return SigningKey(priv, path)


def load(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"VEU_SIGNING_KEY_FILE: cannot read {path}: {exc.strerror}") from exc
    try:
        priv = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"VEU_SIGNING_KEY_FILE: {path} is not an unencrypted PEM private key") from exc
    if not isinstance(priv, Ed25519PrivateKey):
        raise SigningKeyError(f"VEU_SIGNING_KEY_FILE: {path} is not an Ed25519 key; "
                              "create one with `veuctl audit keygen`")
    return SigningKey(priv, path)


def signing_key(create: bool = True) -> SigningKey:
    """The configured signing key, generated on first use when ``create`` (cached per path)."""
    path = key_path()
    with _lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        if not path.exists():
            if not create:
                raise SigningKeyError(f"VEU_SIGNING_KEY_FILE: {path} does not exist")
            try:
                key = generate(path)
            except FileExistsError:
                key = load(path)
            except OSError as exc:
                # A read-only home or a key directory that cannot be made: say which setting to fix.
                raise SigningKeyError(f"VEU_SIGNING_KEY_FILE: cannot create the signing key {path}: "
                                      f"{exc.strerror or exc}; point VEU_SIGNING_KEY_FILE at a writable "
                                      "path or create the key with `veuctl audit keygen --out FILE`") from None
        else:
            key = load(path)
        _cache[path] = key
        return key


def trusted_default() -> list[Ed25519PublicKey]:
    """The configured key's public half, to verify with; none (nothing trusted) when no key file exists.

    Verifying never creates a key: a fresh key on an auditor's machine would trust nothing it checks and
    leave a private key behind.
    """
    if not key_path().exists():
        return []
    return [signing_key(create=False).public]


def verify(pub: Ed25519PublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        pub.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
