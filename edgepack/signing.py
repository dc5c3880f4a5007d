"""Signed artifacts: an Ed25519 signature over the exact bytes of manifest.json.

The manifest lists the sha256 of every other file, so one signature covers the whole folder:
``verify_signature`` checks the manifest against the signature, then ``artifact.verify`` checks
every file against the manifest. The signature lives in ``manifest.sig`` (it cannot be inside
the manifest it signs), so a manifest is byte-identical whether the artifact is signed or not;
Ed25519 signatures are deterministic, so a signed compile is reproducible too.

The signed message is manifest.json itself, so a firmware pipeline can also check it without
edgepack: base64-decode the "signature" field into SIG.bin, then ``openssl pkeyutl -verify -pubin
-inkey KEY.pub -rawin -in manifest.json -sigfile SIG.bin`` (and sha256sum every listed file).

``cryptography`` is imported inside the functions: the CLI imports this module before it knows
whether a key is involved.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from edgepack.artifact import MANIFEST, SIGNATURE, Manifest, kind_of, load, read_manifest
from edgepack.errors import ArtifactError, ConfigError, OutputError

FORMAT, VERSION, ALGORITHM = "edgepack-signature", 1, "ed25519"
PRIVATE_SUFFIX, PUBLIC_SUFFIX = ".key", ".pub"


def fingerprint(public_key) -> str:
    """sha256 (hex) of the raw 32-byte Ed25519 public key: what names a key in messages."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def short(fp: str) -> str:
    """The first 16 hex digits of a fingerprint, for one-line messages."""
    return fp[:16]


def generate_keypair(private_path, public_path) -> str:
    """Write a new Ed25519 key pair as PEM (private key mode 0600); return its fingerprint.

    Never overwrites: losing a release key to a typo is not recoverable.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise OutputError(f"{path} already exists: choose another name, or delete it if you mean to replace that key")
        if path.parent.exists() and not path.parent.is_dir():
            raise OutputError(f"the parent of {path} is a file: choose a path in a folder")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    written = []
    try:
        for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_new(path, data, mode)
            written.append(path)
    except BaseException:
        for path in written:  # no half key pair
            path.unlink(missing_ok=True)
        raise
    return fingerprint(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (O_EXCL: never replace a file that appeared meanwhile)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise OutputError(f"{path} already exists: choose another name, or delete it if you mean to replace that key")
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror}): choose a writable folder")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:  # a full disk: no half-written key left behind
        path.unlink(missing_ok=True)
        raise


def _read_pem(path, flag: str) -> bytes:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{flag} {path} does not exist: create a key pair with `edgepack keygen -o PREFIX`")
    if not path.is_file():
        raise ConfigError(f"{flag} {path} is not a file: pass the path of a PEM key file from `edgepack keygen`")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be read ({e.strerror}): check its permissions")


def load_private_key(path, flag: str = "--sign-key"):
    """The Ed25519 private key in PEM file ``path``; ConfigError naming the fix for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_pem(path, flag)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        raise ConfigError(f"{flag} {path} is encrypted with a passphrase: pass an unencrypted key from `edgepack keygen`")
    except Exception:
        if _is_public_pem(data):
            raise ConfigError(f"{flag} {path} is a public key: sign with the private key ({PRIVATE_SUFFIX}) of the pair")
        raise ConfigError(f"{flag} {path} is not a PEM private key: pass the {PRIVATE_SUFFIX} file written by `edgepack keygen`")
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{flag} {path} is not an Ed25519 key ({_kind(key)}): create one with `edgepack keygen -o PREFIX`")
    return key


def load_public_key(path, flag: str = "--verify-key"):
    """The Ed25519 public key in PEM file ``path``; ConfigError naming the fix for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_pem(path, flag)
    try:
        key = serialization.load_pem_public_key(data)
    except Exception:
        if b"PRIVATE KEY-----" in data:
            raise ConfigError(f"{flag} {path} is a private key: verify with the public key ({PUBLIC_SUFFIX}) of the pair, "
                              "and keep the private key off the build machine")
        raise ConfigError(f"{flag} {path} is not a PEM public key: pass the {PUBLIC_SUFFIX} file written by `edgepack keygen`")
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{flag} {path} is not an Ed25519 key ({_kind(key)}): verify with the {PUBLIC_SUFFIX} file of an "
                          "`edgepack keygen` pair")
    return key


def _is_public_pem(data: bytes) -> bool:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_public_key(data)
        return True
    except Exception:
        return False


def _kind(key) -> str:
    """'RSA', 'EllipticCurve', ... from the key's class name."""
    return type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "") or type(key).__name__


def sign_folder(folder, private_key) -> Path:
    """Write ``manifest.sig`` for ``folder``'s manifest.json; ``private_key`` is a key or a PEM path."""
    folder = Path(folder)
    key = private_key if hasattr(private_key, "sign") else load_private_key(private_key)
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{folder} has no {MANIFEST}: compile the artifact before signing it")
    signature = {"format": FORMAT, "version": VERSION, "algorithm": ALGORITHM,
                 "public_key_sha256": fingerprint(key.public_key()),
                 "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii")}
    path = folder / SIGNATURE
    path.write_text(json.dumps(signature, indent=1, sort_keys=True) + "\n")
    return path


def read_signature(folder) -> dict | None:
    """The parsed manifest.sig of ``folder`` (None if unsigned); ArtifactError if it is not one."""
    path = Path(folder) / SIGNATURE
    kind = kind_of(path)
    if kind == "missing":
        return None
    if kind is not None:
        raise ArtifactError(f"{path} is {kind}, not a regular file: recompile the artifact with --sign-key")
    try:
        sig = json.loads(path.read_text())
        raw = base64.b64decode(sig["signature"], validate=True)
        ok = ((sig["format"], sig["version"], sig["algorithm"]) == (FORMAT, VERSION, ALGORITHM)
              and len(raw) == 64 and isinstance(sig["public_key_sha256"], str))
    except Exception:
        ok = False
    if not ok:
        raise ArtifactError(f"{path} is not an edgepack Ed25519 signature: recompile the artifact with --sign-key")
    return {**sig, "signature": raw}


def verify_signature(folder, public_key_path) -> tuple[Manifest, str]:
    """Refuse ``folder`` unless its manifest is signed by the key in ``public_key_path`` and every
    file matches the manifest; return (manifest, fingerprint of the key)."""
    from cryptography.exceptions import InvalidSignature

    folder = Path(folder)
    public_key = load_public_key(public_key_path)
    expected = fingerprint(public_key)
    read_manifest(folder)  # a missing folder or manifest gets its usual message
    sig = read_signature(folder)
    if sig is None:
        raise ArtifactError(f"artifact {folder} is unsigned (no {SIGNATURE}): recompile it with "
                            f"`edgepack compile --sign-key KEY` using the private key of {public_key_path}")
    if sig["public_key_sha256"] != expected:
        raise ArtifactError(f"artifact {folder} is signed by another key (fingerprint {short(sig['public_key_sha256'])}, "
                            f"{public_key_path} is {short(expected)}): do not ship it; recompile with the matching private key")
    try:
        public_key.verify(sig["signature"], (folder / MANIFEST).read_bytes())
    except InvalidSignature:
        raise ArtifactError(f"artifact {folder}: {MANIFEST} does not match its signature (edited or re-signed after "
                            "compile): do not ship it; recompile it with --sign-key")
    return load(folder), expected
