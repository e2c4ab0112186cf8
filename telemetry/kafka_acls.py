"""What each ragward component may do on a secured Kafka cluster: its ACLs, in one place.

Least privilege, per component user (a principal ``User:NAME`` authenticated by
SASL/SCRAM):

=========  ==========================================================================
gateway    Write the audit and usage topics; IdempotentWrite on the cluster
metrics    Read the audit and usage topics and its group; Write the dead-letter topic
alerts     as metrics with its own group, plus Write the alerts topic
audit      Read the audit topic and its group (``audit replay`` uses no group);
           Write the dead-letter topic
serve      all of the above (the all-in-one process is every component)
=========  ==========================================================================

Every consumer also publishes (dead letters, alert events) through the same
idempotent producer as the gateway, hence IdempotentWrite for all. Read and Write
imply Describe, which metadata needs; nobody may create topics (an administrator
does) or touch another component's group.

:func:`grants` is the plan; :func:`acl_commands` prints it as Kafka's own
``kafka-acls.sh`` commands for an operator (``python -m telemetry.kafka_acls``), and
:func:`create_acls` applies it through the admin protocol (devservices, tests).

An ACL the controller has committed is not yet in force: each broker's authorizer
applies it when it replays the metadata log, a moment later. A client started in
that moment is denied (the secured test broker's pipeline test once was), so
:func:`create_acls` returns only once every broker lists every grant
(:func:`wait_until_effective`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request

from ragward.settings import Settings

Component = Literal["gateway", "metrics", "alerts", "audit", "serve"]
COMPONENTS: tuple[Component, ...] = ("gateway", "metrics", "alerts", "audit", "serve")
# the consumer groups `ragward consumer KIND` joins unless given --group
DEFAULT_GROUPS: Mapping[str, str] = {
    "metrics": "ragward-metrics", "alerts": "ragward-alerts", "audit": "ragward-audit",
}
CLUSTER = "kafka-cluster"  # the name Kafka gives the cluster resource

Resource = Literal["topic", "group", "cluster"]
Operation = Literal["Read", "Write", "IdempotentWrite"]

# Kafka's wire codes (org.apache.kafka.common.resource / acl)
_RESOURCE_CODES: dict[Resource, int] = {"topic": 2, "group": 3, "cluster": 4}
_OPERATION_CODES: dict[Operation, int] = {"Read": 3, "Write": 4, "IdempotentWrite": 12}
_RESOURCES: dict[int, Resource] = {code: name for name, code in _RESOURCE_CODES.items()}
_OPERATIONS: dict[int, Operation] = {code: name for name, code in _OPERATION_CODES.items()}
_ANY, _LITERAL, _ALLOW, _ANY_HOST = 1, 3, 3, "*"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL on a literal resource name, from any host."""

    principal: str  # "User:ragward-gateway"
    resource: Resource
    name: str
    operation: Operation


def grants(
    settings: Settings, component: Component, user: str,
    groups: Mapping[str, str] = DEFAULT_GROUPS,
) -> list[Grant]:
    """The ACLs ``user`` needs to run ``component`` with these settings' topics."""
    s, principal = settings, f"User:{user}"
    plan: set[tuple[Resource, str, Operation]] = {("cluster", CLUSTER, "IdempotentWrite")}
    parts: Sequence[str] = (
        ("gateway", "metrics", "alerts", "audit") if component == "serve" else (component,)
    )
    for part in parts:
        if part == "gateway":
            plan |= {("topic", s.topic_audit, "Write"), ("topic", s.topic_usage, "Write")}
            continue
        reads = [s.topic_audit] if part == "audit" else [s.topic_audit, s.topic_usage]
        plan |= {("topic", topic, "Read") for topic in reads}
        plan |= {("group", groups[part], "Read"), ("topic", s.topic_dead_letter, "Write")}
        if part == "alerts":
            plan.add(("topic", s.topic_alerts, "Write"))
    return sorted(Grant(principal, *entry) for entry in plan)


def acl_commands(entries: Iterable[Grant], command_config: str = "admin.properties") -> list[str]:
    """``kafka-acls.sh`` command lines that create ``entries`` (one per principal and
    resource, operations grouped)."""
    by_target: dict[tuple[str, Resource, str], list[str]] = {}
    for g in sorted(entries):
        by_target.setdefault((g.principal, g.resource, g.name), []).append(g.operation)
    lines = []
    for (principal, resource, name), operations in by_target.items():
        target = "--cluster" if resource == "cluster" else f"--{resource} {name}"
        ops = " ".join(f"--operation {op}" for op in operations)
        lines.append(f"kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config "
                     f"{command_config} --add --allow-principal {principal} {ops} {target}")
    return lines


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # untyped base
    """CreateAcls with many creations in one request (aiokafka's admin client has no
    create_acls; its protocol layer has the request)."""

    API_KEY = 30

    def __init__(self, creations: list[tuple[Any, ...]]) -> None:
        self._creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


async def create_acls(admin: AIOKafkaAdminClient, entries: Iterable[Grant],
                      *, timeout_s: float = 30.0) -> None:
    """Create ``entries`` with a started admin client of a super user (idempotent), and
    return once they are in force on every broker (module docstring)."""
    wanted = set(entries)
    creations = [
        (_RESOURCE_CODES[g.resource], g.name, _LITERAL, g.principal, _ANY_HOST,
         _OPERATION_CODES[g.operation], _ALLOW)
        for g in sorted(wanted)
    ]
    if not creations:
        return
    client = admin._client  # the admin client's own connection; no public hook for this
    response = await client.send(client.get_random_node(), _CreateAcls(creations))
    for (code, message), entry in zip(response.creation_responses, creations, strict=True):
        if code:
            raise for_code(code)(f"creating ACL {entry}: {message}")
    await wait_until_effective(admin, wanted, timeout_s=timeout_s)


async def wait_until_effective(admin: AIOKafkaAdminClient, entries: Iterable[Grant],
                               *, timeout_s: float = 30.0) -> None:
    """Poll every broker's DescribeAcls until each lists all of ``entries``; TimeoutError
    naming what is still missing after ``timeout_s``."""
    wanted = set(entries)
    client = admin._client
    deadline = time.monotonic() + timeout_s
    pause = 0.01
    while True:
        missing: set[Grant] = set()
        for node in sorted(b.nodeId for b in client.cluster.brokers()):
            missing |= wanted - await described(admin, node)
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{len(missing)} ACLs not in force after {timeout_s:.0f}s, "
                               f"e.g. {min(missing)}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def described(admin: AIOKafkaAdminClient, node_id: int) -> set[Grant]:
    """The literal ALLOW grants broker ``node_id``'s authorizer holds (of the resource
    types and operations ragward uses)."""
    client = admin._client
    response = await client.send(node_id, DescribeAclsRequest(
        _ANY, None, _LITERAL, None, None, _ANY, _ALLOW))
    if response.error_code:
        raise for_code(response.error_code)(f"describing ACLs: {response.error_message}")
    found = set()
    for resource_type, name, _pattern, acls in response.resources:
        resource = _RESOURCES.get(resource_type)
        for principal, _host, operation, _permission in acls:
            op = _OPERATIONS.get(operation)
            if resource is not None and op is not None:
                found.add(Grant(principal, resource, name, op))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m telemetry.kafka_acls COMPONENT=USER ...``: the kafka-acls.sh commands."""
    from ragward.settings import load_settings

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any("=" not in a or a.split("=", 1)[0] not in COMPONENTS for a in args):
        print(f"usage: python -m telemetry.kafka_acls COMPONENT=USER... "
              f"(COMPONENT: {', '.join(COMPONENTS)})", file=sys.stderr)
        return 2
    settings = load_settings()
    for arg in args:
        component, user = arg.split("=", 1)
        print(f"# {component}: {user}")
        for line in acl_commands(grants(settings, component, user)):  # type: ignore[arg-type]
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
