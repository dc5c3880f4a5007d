"""Signed artifacts: keygen, compile --sign-key, and `verify` / `bench --verify-key` refusing an
unsigned, re-signed or edited artifact with exit 2 and one stderr line."""
import json
import shutil
import stat
import subprocess
import sys

import pytest

from edgepack.artifact import MANIFEST, SIGNATURE, sha256
from edgepack.signing import fingerprint, load_public_key, short, sign_folder
from tests.conftest import run_cli

SMALL = ["--target", "host", "--alpha", "0.25", "--resolution", "32", "--eval-size", "16"]


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """Two key pairs (release, other) and one artifact signed with the release key."""
    from edgepack.cli.main import main

    root = tmp_path_factory.mktemp("signing")
    for name in ("release", "other"):
        assert main(["keygen", "-o", str(root / name)]) == 0
    assert main(["compile", *SMALL, "-o", str(root / "art"), "--sign-key", str(root / "release.key")]) == 0
    return root


def _copy(signed, tmp_path):
    return shutil.copytree(signed / "art", tmp_path / "art")


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _update_manifest(folder, name):
    """What a tamperer does after editing ``name``: record its new sha256 and size."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name] = {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _forge_fingerprint(folder, fp):
    sig = json.loads((folder / SIGNATURE).read_text())
    (folder / SIGNATURE).write_text(json.dumps({**sig, "public_key_sha256": fp}, indent=1, sort_keys=True) + "\n")


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(capsys, tmp_path):
    code, out, err = run_cli(capsys, "keygen", "-o", str(tmp_path / "keys" / "fw"))
    assert code == 0 and err == ""
    private, public = tmp_path / "keys" / "fw.key", tmp_path / "keys" / "fw.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert short(fingerprint(load_public_key(public))) in out
    before = private.read_bytes()
    code, out, err = run_cli(capsys, "keygen", "-o", str(tmp_path / "keys" / "fw"))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert f"{private} already exists" in err
    assert private.read_bytes() == before


@pytest.mark.slow
def test_signed_artifact_verifies_with_its_key(signed, capsys):
    art, pub = signed / "art", signed / "release.pub"
    fp = short(fingerprint(load_public_key(pub)))
    assert (art / SIGNATURE).is_file()
    code, out, err = run_cli(capsys, "verify", str(art), "--verify-key", str(pub))
    assert (code, err) == (0, "")
    files = len(json.loads((art / "manifest.json").read_text())["files"])
    assert out == f"artifact {art} verified ({files} files, signed by key {fp})\n"
    code, out, err = run_cli(capsys, "verify", str(art))  # manifest.sig is not an unlisted file
    assert code == 0 and "not checked: pass --verify-key" in out, err
    code, out, err = run_cli(capsys, "bench", str(art), "--verify-key", str(pub), "--count", "2", "--warmup", "1")
    assert code == 0, err
    assert f"signed by key {fp}" in out


@pytest.mark.slow
def test_signing_leaves_the_artifact_byte_identical_and_is_deterministic(signed, capsys, tmp_path):
    """The manifest is the same with or without --sign-key; the same key signs it to the same bytes."""
    plain = tmp_path / "plain"
    code, _, err = run_cli(capsys, "compile", *SMALL, "-o", str(plain))
    assert code == 0, err
    assert not (plain / SIGNATURE).exists()
    files = sorted(json.loads((plain / MANIFEST).read_text())["files"]) + [MANIFEST]
    assert [sha256(plain / f) for f in files] == [sha256(signed / "art" / f) for f in files]
    sign_folder(plain, signed / "release.key")
    assert (plain / SIGNATURE).read_bytes() == (signed / "art" / SIGNATURE).read_bytes()


def _unsigned(art, keys):
    (art / SIGNATURE).unlink()


def _edited_file(art, keys):
    _flip_byte(art / "plan.npz")


def _resigned_by_another_key(art, keys):
    _flip_byte(art / "plan.npz")
    _update_manifest(art, "plan.npz")
    sign_folder(art, keys / "other.key")


def _resigned_with_forged_fingerprint(art, keys):
    _resigned_by_another_key(art, keys)
    _forge_fingerprint(art, fingerprint(load_public_key(keys / "release.pub")))


def _sha256_updated_old_signature_kept(art, keys):
    _flip_byte(art / "plan.npz")
    _update_manifest(art, "plan.npz")


def _corrupt_signature_file(art, keys):
    (art / SIGNATURE).write_text("{not json")


REFUSALS = {  # case: (tamper, key file to verify with, what the one line must say)
    "unsigned": (_unsigned, "release.pub", "is unsigned (no manifest.sig)"),
    "another key's public key": (None, "other.pub", "is signed by another key"),
    "edited file, manifest not updated": (_edited_file, "release.pub", "plan.npz was modified (sha256 mismatch)"),
    "re-signed by another key": (_resigned_by_another_key, "release.pub", "is signed by another key"),
    "re-signed, fingerprint forged": (_resigned_with_forged_fingerprint, "release.pub", "does not match its signature"),
    "sha256 updated, old signature kept": (_sha256_updated_old_signature_kept, "release.pub", "does not match its signature"),
    "corrupt manifest.sig": (_corrupt_signature_file, "release.pub", "is not an edgepack Ed25519 signature"),
    "private key as --verify-key": (None, "release.key", "is a private key: verify with the public key"),
    "missing key file": (None, "missing.pub", "does not exist: create a key pair with `edgepack keygen"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["verify", "bench"])
@pytest.mark.parametrize("case", REFUSALS)
def test_verify_key_refuses(signed, capsys, tmp_path, case, command):
    tamper, key, message = REFUSALS[case]
    art = _copy(signed, tmp_path)
    if tamper:
        tamper(art, signed)
    code, out, err = run_cli(capsys, command, str(art), "--verify-key", str(signed / key))
    assert code == 2, (out, err)
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"edgepack {command}: error: ") and message in err, err


@pytest.mark.slow
@pytest.mark.parametrize("key, message", [
    ("release.pub", "is a public key: sign with the private key (.key)"),
    ("missing.key", "does not exist: create a key pair with `edgepack keygen"),
    ("not-pem.key", "is not a PEM private key"),
    ("rsa.key", "is not an Ed25519 key (RSA)"),
])
def test_compile_refuses_a_bad_sign_key_before_any_work(signed, capsys, tmp_path, key, message):
    (signed / "not-pem.key").write_text("hello\n")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    if not (signed / "rsa.key").exists():
        (signed / "rsa.key").write_bytes(rsa.generate_private_key(65537, 1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    code, out, err = run_cli(capsys, "compile", *SMALL, "-o", str(tmp_path / "art"), "--sign-key", str(signed / key))
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("edgepack compile: error: --sign-key ") and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_sign_key_fails_fast_with_one_line(signed, tmp_path):
    """From a fresh process: nothing heavy (torch) is imported before the key is checked."""
    probe = ("import sys; from edgepack.cli.main import main; code = main(sys.argv[1:]); "
             "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", probe, "compile", *SMALL, "-o", str(tmp_path / "art"),
                           "--sign-key", str(signed / "release.pub")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "torch not imported\n", (proc.stdout, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1 and "is a public key" in proc.stderr, proc.stderr
    assert not (tmp_path / "art").exists()
