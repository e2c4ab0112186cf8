"""The `ragward` command as users run it: help everywhere, redaction, tokens, bad settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from ragward import cli
from tests.conftest import TEST_SECRET

RAGWARD = str(Path(sys.executable).with_name("ragward"))
SUBCOMMANDS = [
    [], ["serve"], ["gateway"], ["rag-core"], ["consumer"], ["consumer", "metrics"],
    ["consumer", "alerts"], ["consumer", "audit"], ["ingest"], ["token"], ["redact"],
    ["audit"], ["audit", "verify"], ["audit", "query"], ["audit", "export"],
    ["audit", "replay"], ["alerts"], ["alerts", "silence"], ["alerts", "silences"],
    ["alerts", "state"],
]


def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAGWARD, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env}, check=False)


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=lambda a: " ".join(a) or "ragward")
def test_every_subcommand_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` works for the command and every subcommand, and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ragward")


def test_help_of_the_installed_command() -> None:
    """The console script itself answers --help."""
    result = run("--help")
    assert result.returncode == 0 and "serve" in result.stdout


def test_redact_json_reports_spans_on_the_input_line() -> None:
    """`ragward redact --json` prints one object per line with offsets into that line."""
    lines = ["Mail jane.doe@example.com or call +86 138 0013 8000.",
             "身份证 11010519491231002X，卡号 4111 1111 1111 1111",
             "version 1.2.3.4, order #20231201-998877"]
    result = run("redact", "--json", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["text"] for o in objects] == [
        "Mail <EMAIL_1> or call <PHONE_1>.", "身份证 <CN_ID_1>，卡号 <CREDIT_CARD_1>",
        "version 1.2.3.4, order #20231201-998877"]
    found = [(line[span["start"]:span["end"]], span["type"])
             for line, obj in zip(lines, objects, strict=True) for span in obj["spans"]]
    assert found == [("jane.doe@example.com", "EMAIL"), ("+86 138 0013 8000", "PHONE"),
                     ("11010519491231002X", "CN_ID"), ("4111 1111 1111 1111", "CREDIT_CARD")]
    assert lines[0][5:25] == "jane.doe@example.com"
    assert objects[0]["spans"][0] == {"start": 5, "end": 25, "type": "EMAIL"}
    plain = run("redact", stdin=lines[0] + "\n")
    assert plain.stdout == "Mail <EMAIL_1> or call <PHONE_1>.\n"


def test_token_mints_a_verifiable_dev_token() -> None:
    """`ragward token` signs HS256 with the configured secret and the given claims."""
    result = run("token", "--sub", "ann", "--tenant", "acme", "--role", "reader",
                 "--role", "batch", "--ttl", "60", RAGWARD_JWT_SECRET=TEST_SECRET)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["tenant"], claims["roles"]) == ("ann", "acme",
                                                                  ["reader", "batch"])
    assert claims["exp"] - claims["iat"] == 60
    missing = run("token", "--sub", "a", "--tenant", "t", "--role", "r",
                  RAGWARD_JWT_SECRET="")
    assert missing.returncode == 2 and "RAGWARD_JWT_SECRET" in missing.stderr


@pytest.mark.parametrize(("variable", "value"), [
    ("RAGWARD_QUOTA_RPM", "many"), ("RAGWARD_LLM", "gpt"), ("RAGWARD_JWT_SECRET", "short"),
    ("RAGWARD_PII_ACTIONS", "not json"), ("RAGWARD_PII_ACTIONS", '{"PASSPORT": "block"}'),
])
def test_malformed_setting_stops_start_up_naming_the_variable(variable: str, value: str) -> None:
    """Any command refuses to start on a malformed setting, naming the variable, in one line."""
    result = run("serve", **{variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
