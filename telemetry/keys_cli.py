"""``ragward keys generate``: a signing key pair for a gateway (docs/security.md)."""

from __future__ import annotations

import argparse
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragward.settings import Settings
from telemetry.event_keys import write_pair
from telemetry.signing import thumbprint


def generate(settings: Settings, args: argparse.Namespace) -> int:
    """Write KID.pem (0600, never overwritten) and add the public key to the key set."""
    key = Ed25519PrivateKey.generate()
    kid = args.kid or thumbprint(key.public_key())
    try:
        private = write_pair(args.out, key, kid, args.key_set)
    except FileExistsError:
        print(f"ragward: {args.out / (kid + '.pem')} exists; choose another --kid",
              file=sys.stderr)
        return 2
    print(f"key id:      {kid}")
    print(f"private key: {private} (mode 0600: give it to one gateway as "
          "RAGWARD_EVENT_SIGNING_KEY_FILE, or its text as RAGWARD_EVENT_SIGNING_KEY)")
    print(f"key set:     {args.key_set} (RAGWARD_EVENT_KEYS of every consumer and verifier)")
    return 0
