"""``ragward gateway`` with event signing switched off — for bench/gateway.py's
``--compare-signing`` only: the product has no such switch (docs/security.md). Its
events are encoded exactly as before signing existed, and it is served as ``ragward
gateway`` serves (uvicorn on uvloop and httptools, the heap frozen once built), so the
two gateways measured side by side differ by the signature alone."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from gateway.app import create_app
from ragward.logs import configure_logging
from ragward.serve import freeze_heap
from ragward.settings import load_settings
from telemetry.events import encode
from telemetry.signing import EventSigner


class NotSigning(EventSigner):
    """Encodes without signing (the 'before' of the comparison)."""

    def __init__(self) -> None:
        self.key_id = "unsigned"

    def sign(self, event: object) -> bytes:
        return encode(event)  # type: ignore[arg-type]


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings, signer=NotSigning())
    app.on_startup.append(freeze_heap)
    uvicorn.run(app, host=settings.host,
                port=settings.port, log_config=None, access_log=False, loop="uvloop",
                http="httptools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
