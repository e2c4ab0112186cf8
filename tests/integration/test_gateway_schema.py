"""Schemathesis against the gateway's own OpenAPI schema, with a valid token.

Property-based requests (valid and invalid bodies, parameters and headers) must never
produce a 5xx, and every documented response must match the schema Litestar publishes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from telemetry.audit_store import open_store, store_reader
from telemetry.configuration import audit_store_config
from tests.gateway_harness import gateway_settings, make_token, running_gateway
from tests.upstream_server import UpstreamServer

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """Generated requests against every operation: no 5xx, responses match the schema."""
    settings = gateway_settings(tmp_path, upstream.url, quota_rpm=1_000_000)
    token = make_token(roles=["admin"], exp=2_000_000_000)
    store = open_store(audit_store_config(settings))
    async with running_gateway(settings, audit_reader=store_reader(store)) as gw:
        base = str(gw.client.base_url).rstrip("/")
        process = await asyncio.create_subprocess_exec(
            SCHEMATHESIS, "run", f"{base}/schema/openapi.json", "--url", base,
            "--checks", CHECKS, "--header", f"Authorization: Bearer {token}",
            "--phases", "examples,coverage,fuzzing", "--max-time", "25", "--workers", "2",
            "--suppress-health-check", "all", "--exclude-path", "/metrics",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    await store.close()
    report = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(report)
    assert process.returncode == 0, report[-4000:]
    assert "/v1/query" in report
