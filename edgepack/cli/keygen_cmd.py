"""edgepack keygen: a new Ed25519 key pair for signing artifacts (PREFIX.key private, PREFIX.pub public)."""
from __future__ import annotations

from edgepack.signing import PRIVATE_SUFFIX, PUBLIC_SUFFIX, generate_keypair, short
from edgepack.validate import check_key_prefix


def add_parser(sub) -> None:
    p = sub.add_parser("keygen", help="create an Ed25519 key pair for `compile --sign-key` / `verify --verify-key`")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX",
                   help="write PREFIX.key (private, mode 0600) and PREFIX.pub (public); never overwrites")
    p.set_defaults(run=run)


def run(args) -> int:
    check_key_prefix(args.output)  # "" or "keys/" would write the hidden files .key and .pub
    private, public = args.output + PRIVATE_SUFFIX, args.output + PUBLIC_SUFFIX
    key = generate_keypair(private, public)
    print(f"wrote {private} (private: keep it secret, sign with `edgepack compile --sign-key {private}`) and "
          f"{public} (public: `edgepack verify ARTIFACT --verify-key {public}`); key fingerprint {short(key)}")
    return 0
