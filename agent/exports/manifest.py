"""Export manifests: the SHA-256 of every file and the policy-pack versions used, signed with Ed25519."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audit import canonical_json
from agent.exports.writers import sha256_file
from agent.signing import SigningKey, key_id, load_public_pem, signing_key
from agent.signing import verify as verify_signature

FORMAT = "veu-governor export manifest v1"
SUFFIX = ".manifest.json"


def _message(body: dict[str, Any]) -> bytes:
    return FORMAT.encode() + b"\n" + canonical_json(body).encode()


def sign(body: dict[str, Any], key: SigningKey | None = None) -> dict[str, Any]:
    """The manifest with its ``signature`` block (over the canonical JSON of everything else)."""
    key = key or signing_key()
    body = {"format": FORMAT, **body}
    return {**body, "signature": {"alg": "Ed25519", "key_id": key.key_id, "public_key": key.public_pem(),
                                  "value": key.sign(_message(body))}}


def verify(manifest_path: Path, keys: list[Ed25519PublicKey] | None = None) -> list[str]:
    """Problems with an export (empty when the signature and every file's SHA-256 check out).

    Trust comes from ``keys`` (default: the configured signing key), never from the key embedded in the
    manifest: anyone could re-sign altered files with a key of their own.
    """
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{manifest_path.name}: unreadable manifest ({exc})"]
    problems: list[str] = []
    sig = manifest.pop("signature", None) or {}
    trusted = {key_id(k): k for k in (keys if keys is not None else [signing_key().public])}
    pub = trusted.get(str(sig.get("key_id", "")))
    if pub is None:
        embedded = sig.get("public_key")
        problems.append(f"{manifest_path.name}: signed by an untrusted key {str(sig.get('key_id', ''))[:16]}…"
                        + (" (embedded key not trusted)" if embedded else ""))
    elif not verify_signature(pub, _message(manifest), str(sig.get("value", ""))):
        problems.append(f"{manifest_path.name}: signature does not verify (manifest altered)")
    base = manifest_path.parent
    for f in manifest.get("files", []):
        p = base / str(f.get("name", ""))
        if not p.is_file():
            problems.append(f"{f.get('name')}: missing")
        elif sha256_file(p) != f.get("sha256"):
            problems.append(f"{f.get('name')}: SHA-256 differs from the manifest (file changed)")
    return problems


def load_key_files(paths: list[Path]) -> list[Ed25519PublicKey] | None:
    return [load_public_pem(p.read_bytes()) for p in paths] if paths else None
