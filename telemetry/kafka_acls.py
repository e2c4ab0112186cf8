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
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
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
_RESOURCE_CODES = {"topic": 2, "group": 3, "cluster": 4}
_OPERATION_CODES = {"Read": 3, "Write": 4, "IdempotentWrite": 12}
_LITERAL, _ALLOW, _ANY_HOST = 3, 3, "*"


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


async def create_acls(admin: AIOKafkaAdminClient, entries: Iterable[Grant]) -> None:
    """Create ``entries`` with a started admin client of a super user (idempotent)."""
    creations = [
        (_RESOURCE_CODES[g.resource], g.name, _LITERAL, g.principal, _ANY_HOST,
         _OPERATION_CODES[g.operation], _ALLOW)
        for g in entries
    ]
    if not creations:
        return
    client = admin._client  # the admin client's own connection; no public hook for this
    response = await client.send(client.get_random_node(), _CreateAcls(creations))
    for (code, message), entry in zip(response.creation_responses, creations, strict=True):
        if code:
            raise for_code(code)(f"creating ACL {entry}: {message}")


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
