"""``ragward redact [--json]``: redact PII from stdin, line by line (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys

import msgspec

from gateway.pii import Redactor
from ragward.settings import Settings


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        redactor = Redactor(settings.pii_actions)
    except ValueError as exc:
        print(f"ragward redact: {exc}", file=sys.stderr)
        return 2
    encoder = msgspec.json.Encoder()
    out = sys.stdout
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        # Every line is redacted, whatever the policy: this command never refuses text.
        result = redactor.session().redact(line, enforce_block=False)
        if args.json:
            spans = [{"start": s.start, "end": s.end, "type": str(s.type)} for s in result.spans]
            out.write(encoder.encode({"text": result.text, "spans": spans}).decode() + "\n")
        else:
            out.write(result.text + "\n")
        out.flush()
    return 0
