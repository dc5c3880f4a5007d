"""edgepack verify: the check a firmware pipeline runs before shipping an artifact. Every file
against its sha256 in the manifest and, with --verify-key, the manifest against its Ed25519
signature. Exit 0 and one line if it holds, exit 2 and one line if not. Never imports torch."""
from __future__ import annotations

from edgepack import artifact
from edgepack.signing import read_signature, short, verify_signature


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="check an artifact's files against its manifest (and its signature, with --verify-key)")
    p.add_argument("artifact", help="artifact folder written by `edgepack compile`")
    p.add_argument("--verify-key", metavar="PUB", help="Ed25519 public key (from `edgepack keygen`): also require "
                   "manifest.sig to be this key's signature of manifest.json")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.verify_key:
        manifest, key = verify_signature(args.artifact, args.verify_key)
        signed = f"signed by key {short(key)}"
    else:
        manifest = artifact.load(args.artifact)
        sig = read_signature(args.artifact)
        signed = ("unsigned" if sig is None else
                  f"signature by key {short(sig['public_key_sha256'])} not checked: pass --verify-key PUB")
    print(f"artifact {args.artifact} verified ({len(manifest.files)} files, {signed})")
    return 0
