"""Layers point down (issue 16): the import graph matches docs/architecture.md.

Read from the source with :mod:`ast` (nothing is imported). For the layers every
``import`` counts, also those inside functions: a lazy import is still a dependency.
For cycles only the imports that run when a module is imported count (module level,
outside ``if TYPE_CHECKING``): a function-level import that closes a loop is a
deliberate late binding, not an import-order trap.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ragward", "telemetry", "alerting", "rag_core", "gateway")

# Higher may import lower, never the reverse; a package may import itself. The order
# and the reasons are drawn in docs/architecture.md.
BOTTOM = {
    "ragward.errors", "ragward.settings", "ragward.logs", "ragward.http_errors",
    "ragward.http_body", "ragward.request_ids", "ragward.identity", "ragward.tokens",
    "ragward.pii_types",
    "rag_core.schemas",
}
TOP = {"ragward.cli", "ragward.serve", "ragward.consumers", "ragward.devservices",
       "ragward.devsecure", "ragward.devcerts", "ragward.devcluster", "ragward.workers"}
LAYER = {"telemetry": 1, "rag_core": 2, "alerting": 2, "gateway": 3}


def layer(module: str) -> int:
    if any(module == m or module.startswith(m + ".") for m in BOTTOM):
        return 0
    if any(module == m or module.startswith(m + ".") for m in TOP):
        return 4
    return LAYER.get(module.split(".")[0], 0)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _import_nodes(tree: ast.Module, module_level: bool) -> list[ast.stmt]:
    if not module_level:
        return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    return [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]


def imports(path: Path, known: dict[str, Path], module_level: bool = False) -> set[str]:
    """The first-party modules ``path`` imports (a name imported from a package
    counts as its submodule when there is one)."""
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), module_level):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.split(".")[0] in PACKAGES):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return out


def graph(module_level: bool = False) -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known, module_level) & known.keys()
            for name, path in known.items()}


# The gateway reads the audit log through a function it is handed; the SQL store (and
# sqlite3, psycopg) stays out of every gateway process that does not serve /v1/audit.
FORBIDDEN = {("gateway", "telemetry.audit_store")}


def _wrong(a: str, b: str) -> bool:
    up = layer(b) > layer(a)
    sibling = layer(a) == layer(b) in (1, 2, 3) and a.split(".")[0] != b.split(".")[0]
    forbidden = any(a.split(".")[0] == src and (b == dst or b.startswith(dst + "."))
                    for src, dst in FORBIDDEN)
    return up or sibling or forbidden


def test_no_import_goes_up_a_layer() -> None:
    """No module imports one of a higher layer, nor a sibling package of its own layer,
    nor what FORBIDDEN names."""
    wrong = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                   if _wrong(a, b))
    assert wrong == []


def test_the_rules_can_fail() -> None:
    """The checker itself: an upward, a sibling and a forbidden import are each caught."""
    assert _wrong("ragward.settings", "gateway.pii.redactor")
    assert _wrong("rag_core.service", "alerting.rules")
    assert _wrong("gateway.components", "telemetry.audit_store.store")
    assert not _wrong("gateway.pipeline", "telemetry.events")
    assert not _wrong("ragward.serve", "gateway.app")


# Components take their own configuration (docs/architecture.md): in the service
# packages a parameter typed ``Settings`` belongs only where Settings is turned into
# configuration (each package's ``configuration`` module) or a process is composed: a
# command-line handler (it also takes the ``argparse.Namespace``) and what it calls.
SERVICE_PACKAGES = ("gateway", "rag_core", "telemetry", "alerting")
SETTINGS_TAKERS = {
    # composition of one process, beside the CLI handler that starts it
    "gateway.app": "create_app builds the gateway from settings; its /metrics route too",
    "gateway.components": "open_components is the gateway's lifespan: it wires the parts",
    "rag_core.app": "create_app and the internal-token check compose rag_core's process",
    "rag_core.evaluate": "make eval's runner",
    "rag_core.ingest_cli": "ragward ingest (its --delete branch)",
    "telemetry.audit_consumer": "ragward consumer audit (its HTTP and headless runners)",
    # not converted yet
    "gateway.fingerprint": "QuestionHasher.from_settings",
    "telemetry.client_address": "ClientAddressPolicy.from_settings",
    "telemetry.event_keys": "key material from settings, reworked with the key sets",
    "telemetry.kafka_security": "KafkaSecurity.from_settings, check_access",
    "telemetry.kafka_acls": "grants(settings, ...) prints a component's ACLs",
}


def settings_parameters() -> list[str]:
    """``module:function`` for every function of the service packages that takes a
    parameter annotated ``Settings``, outside the configuration modules and the CLI
    handlers."""
    found = []
    for name, path in modules().items():
        if name.split(".")[0] not in SERVICE_PACKAGES or name.endswith(".configuration"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            annotations = [ast.unparse(a.annotation) for a in arguments if a.annotation]
            if "Settings" in annotations and not any("Namespace" in a for a in annotations):
                found.append(f"{name}:{node.name}")
    return sorted(found)


def test_components_take_their_own_configuration() -> None:
    """No component of gateway, rag_core, telemetry or alerting takes the whole Settings:
    only the configuration modules, command-line handlers and the modules named in
    SETTINGS_TAKERS (each with its reason) do. Every entry there is still needed."""
    takers = settings_parameters()
    assert [t for t in takers if t.split(":")[0] not in SETTINGS_TAKERS] == []
    assert sorted(SETTINGS_TAKERS.keys() - {t.split(":")[0] for t in takers}) == []


def test_no_import_cycle() -> None:
    """The module graph has no cycle (a package's __init__ re-exporting its own parts is
    not one: it is the package's face)."""
    edges = {
        a: {b for b in targets if not (b.startswith(a + ".") or a.startswith(b + "."))}
        for a, targets in graph(module_level=True).items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []
