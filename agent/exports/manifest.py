"""Export manifests: the SHA-256 of every file and the policy-pack versions used, signed with Ed25519."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audit import canonical_json
from agent.exports.writers import sha256_file, sha256_stream
from agent.signing import SigningKey, key_id, load_public_pem, signing_key, trusted_default
from agent.signing import verify as verify_signature
from policies.errors import PolicyError

FORMAT = "veu-governor export manifest v1"
SUFFIX = ".manifest.json"


# Bytes of a file name the subject may take: an authorization's name is up to 200 characters, three bytes each in
# some scripts, and file systems take 255 bytes per name with the kind, the period and the table name around it.
SUBJECT_BYTES = 100


def stem(kind: str, subject: str, start: str, end: str) -> str:
    """The name every file of an export starts with: ``KIND[_SUBJECT]_FROM_TO`` (dates as YYYY-MM-DD); a subject
    longer than :data:`SUBJECT_BYTES` is cut and ends with a digest of the whole, so two such still differ."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in (f"_{subject}" if subject else ""))
    if len(safe.encode()) > SUBJECT_BYTES:
        digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        while len(safe.encode()) > SUBJECT_BYTES - len(digest) - 1:
            safe = safe[:-1]
        safe = f"{safe}-{digest}"
    return f"{kind}{safe}_{start}_{end}"


def _stems(manifest_path: Path, manifest: dict[str, Any]) -> set[str]:
    """The name stems of the export a manifest signs: its own file name's, and the one its fields give."""
    out = {manifest_path.name.removesuffix(SUFFIX)} if manifest_path.name.endswith(SUFFIX) else set()
    period = manifest.get("period")
    fields = (manifest.get("kind"), manifest.get("subject") or "",
              *((period.get("from"), period.get("to")) if isinstance(period, dict) else (None, None)))
    if all(isinstance(f, str) for f in fields) and fields[0]:
        out.add(stem(*fields))  # type: ignore[arg-type]
    return out


def _unlisted(manifest_path: Path, manifest: dict[str, Any]) -> list[str]:
    """Files beside the manifest named as part of its export (``STEM.*``, ``STEM_*``) that it does not list."""
    stems = _stems(manifest_path, manifest)
    listed = {f["name"] for f in manifest["files"]} | {manifest_path.name}
    try:
        names = sorted(p.name for p in manifest_path.parent.iterdir() if p.is_file())
    except OSError:
        return []  # the listed files' own checks report an unreadable directory
    return [n for n in names if n not in listed and any(n.startswith((f"{st}.", f"{st}_")) for st in stems)]


def _message(body: dict[str, Any]) -> bytes:
    return FORMAT.encode() + b"\n" + canonical_json(body).encode()


def sign(body: dict[str, Any], key: SigningKey | None = None) -> dict[str, Any]:
    """The manifest with its ``signature`` block (over the canonical JSON of everything else)."""
    key = key or signing_key()
    body = {"format": FORMAT, **body}
    return {**body, "signature": {"alg": "Ed25519", "key_id": key.key_id, "public_key": key.public_pem(),
                                  "value": key.sign(_message(body))}}


class ManifestError(PolicyError):
    """The file given is not an export manifest at all (unreadable, not JSON, not a JSON object, or an object
    without the fields a manifest has: ``format``, ``files`` and ``signature``)."""


def _shape_problem(manifest: dict[str, Any]) -> str | None:
    """What makes a JSON object not a manifest (a missing or wrongly typed field), or None.

    Only the shape is checked here: every value that is there is still untrusted, and whether it is true
    (the signature, each file's SHA-256, a file name that stays inside the export) is :func:`verify`'s answer.
    """
    def kind(v: object) -> str:
        return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(v), "a number")

    if "format" not in manifest:
        return f"format: missing (a manifest says {FORMAT!r})"
    if manifest["format"] != FORMAT:
        shown = repr(manifest["format"])[:80] if isinstance(manifest["format"], str) else kind(manifest["format"])
        return f"format: {shown} is not {FORMAT!r}"
    files = manifest.get("files")
    if files is None:
        return "files: missing (a list of {name, sha256} objects)"
    if not isinstance(files, list):
        return f"files: {kind(files)}, not a list of {{name, sha256}} objects"
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            return f"files[{i}]: {kind(f)}, not a {{name, sha256}} object"
        for key in ("name", "sha256"):
            if not isinstance(f.get(key), str):
                return f"files[{i}].{key}: " + ("missing" if key not in f else f"{kind(f[key])}, not a string")
    sig = manifest.get("signature")
    if sig is None:
        return "signature: missing (an unsigned file is not an export manifest)"
    if not isinstance(sig, dict):
        return f"signature: {kind(sig)}, not an object"
    for key in ("alg", "key_id", "value"):
        if not isinstance(sig.get(key), str):
            return f"signature.{key}: " + ("missing" if key not in sig else f"{kind(sig[key])}, not a string")
    if sig["alg"] != "Ed25519":
        return f"signature.alg: {sig['alg'][:40]!r} is not 'Ed25519'"
    if "public_key" in sig and not isinstance(sig["public_key"], str):
        return f"signature.public_key: {kind(sig['public_key'])}, not a string"
    return None


def load(manifest_path: Path) -> dict[str, Any]:
    """The manifest's JSON object; :class:`ManifestError` names the file when there is none to verify.

    Kept apart from :func:`verify`'s problems: "this is not a manifest" is bad input (not JSON, not an
    object, a field missing or of the wrong type), while a well-formed manifest that does not verify (an
    altered file or field, an untrusted key) is the answer the user asked for (the CLI exits 2 for one and
    1 for the other).
    """
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{manifest_path}: cannot read the manifest ({exc.strerror or exc})") from None
    except ValueError as exc:  # also UnicodeDecodeError: a binary file given by mistake
        raise ManifestError(f"{manifest_path}: the manifest is not JSON ({exc})") from None
    return _parse(text, manifest_path)


def _parse(text: str, manifest_path: Path | str) -> dict[str, Any]:
    """:func:`load`'s checks on a manifest's text (from a file, or a member of an export ZIP)."""
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{manifest_path}: the manifest is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        kind = "array" if isinstance(manifest, list) else type(manifest).__name__
        raise ManifestError(f"{manifest_path}: the manifest must be a JSON object (an export's "
                            f"*{SUFFIX}), not a JSON {kind}")
    problem = _shape_problem(manifest)
    if problem is not None:
        raise ManifestError(f"{manifest_path}: malformed manifest: {problem}")
    return manifest


def verify(manifest_path: Path, keys: list[Ed25519PublicKey] | None = None) -> list[str]:
    """Problems with an export (empty when the signature and every file's SHA-256 check out).

    Trust comes from ``keys`` (default: the configured signing key), never from the key embedded in the
    manifest: anyone could re-sign altered files with a key of their own. Raises :class:`ManifestError`
    when the file is not a manifest (see :func:`load`). An export ZIP is checked by :func:`verify_zip`.
    """
    if zipfile.is_zipfile(manifest_path) and not manifest_path.name.endswith(SUFFIX):
        return verify_zip(manifest_path, keys)
    manifest = load(manifest_path)
    problems = _signature_problems(manifest, manifest_path.name, keys)
    base = manifest_path.parent
    for f in manifest["files"]:  # each a {name, sha256} of strings (load checked)
        name = f["name"]
        p = base / name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            # An export lists files beside its manifest: a path leading elsewhere is not one of them.
            problems.append(f"{name[:80]!r}: not a file of this export (outside its directory; manifest altered)")
            continue
        try:
            if not p.is_file():
                problems.append(f"{name}: missing")
            elif sha256_file(p) != f["sha256"]:
                problems.append(f"{name}: SHA-256 differs from the manifest (file changed)")
        except OSError as exc:
            problems.append(f"{name}: cannot read ({exc.strerror or exc})")
    # A file slipped in beside the export's own (or left by an earlier export of the same period) would be
    # taken for part of the signed set by whoever receives the directory.
    problems += [f"{n}: not listed in the signed manifest (file added to the export, or left from an earlier "
                 "export of the same kind and period)" for n in _unlisted(manifest_path, manifest)]
    return problems


def _signature_problems(manifest: dict[str, Any], label: str, keys: list[Ed25519PublicKey] | None) -> list[str]:
    """Whether a trusted key signed the manifest; removes its ``signature`` block (the rest is the body)."""
    # Past this point the JSON has a manifest's shape (load checked it) but every value is still untrusted:
    # a wrong one is a manifest that does not verify (altered), reported as a problem, never a crash.
    sig = manifest.pop("signature")  # an object with string alg, key_id and value (load checked)
    trusted = {key_id(k): k for k in (keys if keys is not None else trusted_default())}
    pub = trusted.get(sig["key_id"])
    if pub is None:
        embedded = sig.get("public_key")
        return [f"{label}: signed by an untrusted key {sig['key_id'][:16]}…"
                + (" (embedded key not trusted)" if embedded else "")
                + ("" if trusted else "; no signing key here: give the signer's --public-key")]
    if not verify_signature(pub, _message(manifest), sig["value"]):
        return [f"{label}: signature does not verify (manifest altered)"]
    return []


# A manifest lists a handful of files with their hashes: anything this large is not one (and is not read).
_MAX_MANIFEST = 16 << 20


def verify_zip(archive: Path, keys: list[Ed25519PublicKey] | None = None) -> list[str]:
    """Problems with an export downloaded as a ZIP (``GET /api/v1/exports/KIND``), checked in place.

    Nothing is extracted: each member is hashed as it is read, so a hostile archive (``../`` names, huge
    members) writes nothing. Exactly one ``*.manifest.json`` must be in it; every other member must be one it
    lists, and a member that fails the ZIP's own CRC is reported as changed.
    """
    try:
        z = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ManifestError(f"{archive}: cannot read the export ZIP ({exc})") from None
    with z:
        members = {i.filename: i for i in z.infolist() if not i.is_dir()}
        found = [n for n in members if n.endswith(SUFFIX)]
        if len(found) != 1:
            raise ManifestError(f"{archive}: an export ZIP holds exactly one *{SUFFIX}; found "
                                + (", ".join(sorted(found)[:5]) if found else "none"))
        name = found[0]
        if members[name].file_size > _MAX_MANIFEST:
            raise ManifestError(f"{archive}: {name} is {members[name].file_size} bytes, too large for a manifest")
        try:
            text = z.read(name).decode("utf-8")
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise ManifestError(f"{archive}: cannot read {name} ({exc})") from None
        manifest = _parse(text, f"{archive}:{name}")
        problems = _signature_problems(manifest, name, keys)
        listed = set()
        for f in manifest["files"]:  # each a {name, sha256} of strings (_parse checked)
            fname = f["name"]
            listed.add(fname)
            info = members.get(fname)
            if info is None:
                problems.append(f"{fname[:80]}: missing")
                continue
            try:
                with z.open(info) as fh:
                    digest = sha256_stream(fh)
            except (OSError, zipfile.BadZipFile) as exc:
                # zipfile raises on a CRC mismatch: the member's bytes changed inside the archive.
                problems.append(f"{fname}: cannot read from the ZIP ({exc}; file changed)")
                continue
            if digest != f["sha256"]:
                problems.append(f"{fname}: SHA-256 differs from the manifest (file changed)")
        # Everything in the archive came from the export, so a member the manifest does not list was added.
        problems += [f"{n[:80]}: not listed in the signed manifest (file added to the export)"
                     for n in sorted(members) if n != name and n not in listed]
        # Only the last of same-named members is hashed above; which one a reader sees, or an unzip keeps,
        # depends on the tool, so a second member under a signed file's name is a forgery passed as verified.
        seen = Counter(i.filename for i in z.infolist() if not i.is_dir())
        problems += [f"{n[:80]}: in the ZIP {k} times (a member added under the name of a signed file)"
                     for n, k in sorted(seen.items()) if k > 1]
    return problems


def load_key_files(paths: list[Path]) -> list[Ed25519PublicKey] | None:
    return [load_public_pem(p.read_bytes()) for p in paths] if paths else None
