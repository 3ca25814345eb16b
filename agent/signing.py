"""Ed25519 signing key for audit checkpoints and export manifests: load, or generate on first use.

The key file is PEM (PKCS#8, unencrypted, mode 0600) at ``VEU_SIGNING_KEY_FILE`` (Settings.signing_key_file),
default ``$XDG_DATA_HOME/veu-governor/signing.key``. Verification needs only the public key, which is
published next to every signature (``key_id`` = SHA-256 of the raw public key, hex, 64 chars).

Rotation (``veuctl audit keygen --rotate``) appends the old key's public half to the retired keys file beside
the key (``signing.key.retired.pub``, PEM, one key after another) before the new key replaces it, so the
checkpoints and manifests the old key signed still verify; a retired key is trusted, never used to sign.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.config import settings
from agent.files import Stamp, file_stamp
from policies.errors import PolicyError

log = logging.getLogger("veu.signing")


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
_stamps: dict[Path, Stamp | None] = {}  # the key file as it was when its cached key was read
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


def retired_path(path: Path) -> Path:
    """The retired keys file for the key at ``path``: earlier public keys, still trusted to verify."""
    return path.with_name(path.name + ".retired.pub")


def _write_new(path: Path, priv: Ed25519PrivateKey) -> None:
    """Write ``priv`` to a file that must not exist yet (mode 0600 from the start, never briefly readable)."""
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # O_EXCL: two processes racing to create the key must not overwrite each other's.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        # A half-written key (full disk) would be taken for a corrupt key on every later start.
        path.unlink(missing_ok=True)
        raise


def generate(path: Path) -> SigningKey:
    """Create a new key at ``path`` (refuses to overwrite an existing file)."""
    # 0700: a directory made for the key is nobody else's to list (an existing one is left as it is).
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    priv = Ed25519PrivateKey.generate()
    _write_new(path, priv)
    return SigningKey(priv, path)


def rotate(path: Path) -> tuple[SigningKey, SigningKey]:
    """Replace the key at ``path`` with a new one, keeping the old public half trusted: (old, new).

    The old public key is appended to :func:`retired_path` (and synced) before the key file is replaced,
    so an interruption never leaves checkpoints signed by a key nothing trusts any more.
    """
    old = load(path)
    retired = retired_path(path)
    known = {key_id(k) for k in load_retired(retired)}
    if old.key_id not in known:
        with open(retired, "a", encoding="ascii") as fh:
            fh.write(old.public_pem())
            fh.flush()
            os.fsync(fh.fileno())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    priv = Ed25519PrivateKey.generate()
    _write_new(tmp, priv)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with _lock:
        _cache.pop(path, None)
        _stamps.pop(path, None)
    return old, SigningKey(priv, path)


def load_retired(path: Path) -> list[Ed25519PublicKey]:
    """The public keys in a retired keys file (none when it does not exist)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SigningKeyError(f"retired signing keys: cannot read {path}: {exc.strerror}") from exc
    marker = b"-----END PUBLIC KEY-----"
    keys = []
    for block in data.split(marker):
        if not block.strip():
            continue
        try:
            keys.append(load_public_pem(block.strip() + b"\n" + marker + b"\n"))
        except (ValueError, SigningKeyError) as exc:
            # A damaged file must not silently drop trust in the keys it holds: fail loudly instead.
            raise SigningKeyError(f"retired signing keys: {path} holds something that is not an Ed25519 "
                                  "public key (PEM)") from exc
    return keys


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
    """The configured signing key, generated on first use when ``create``.

    Cached per path while the file stays the same, and read again when it changes: a key rotated by another
    process (``veuctl audit keygen --rotate``, a Secret updated under the pod) signs the next checkpoint and
    export, where the first key read used to sign until a restart (after a rotation for a leak, with the leaked
    key). A changed file that does not load (half-written) keeps the previous key signing, logged, and is read
    again on the next call: a write must not fail over a rotation in progress."""
    path = key_path()
    with _lock:
        stamp = file_stamp(path)
        cached = _cache.get(path)
        if cached is not None and (stamp is None or _stamps.get(path) == stamp):
            if stamp is None and _stamps.get(path) is not None:
                log.warning("signing key %s is gone; still signing with the key read before (%s)", path,
                            cached.key_id[:16])
                _stamps[path] = None
            return cached
        if stamp is None:
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
            stamp = file_stamp(path)
        else:
            try:
                key = load(path)
            except SigningKeyError as exc:
                if cached is None:
                    raise
                log.warning("%s; still signing with the key read before (%s) until it loads", exc,
                            cached.key_id[:16])
                return cached
        if cached is not None and cached.key_id != key.key_id:
            log.info("signing key %s changed: now signing with %s (was %s)", path, key.key_id[:16],
                     cached.key_id[:16])
        _cache[path], _stamps[path] = key, stamp
        return key


def trusted_default() -> list[Ed25519PublicKey]:
    """The configured key's public half and the retired keys beside it, to verify with; the retired keys
    alone when no key file exists.

    Verifying never creates a key: a fresh key on an auditor's machine would trust nothing it checks and
    leave a private key behind.
    """
    path = key_path()
    current = [signing_key(create=False).public] if path.exists() else []
    return current + load_retired(retired_path(path))


def verify(pub: Ed25519PublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        pub.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
