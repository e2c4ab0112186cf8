"""The secured local services: Kafka on SASL_SSL with SCRAM users and ACLs, Redis on TLS.

What a production cluster looks like, on loopback, for development and tests
(``python -m ragward.devservices up --secure``, ``make services SECURE=1``, the
``secure_kafka`` / ``secure_redis`` test fixtures):

Kafka (the same jars and KRaft node as :func:`ragward.devservices.start_kafka`)
    * one ``SASL_SSL`` listener for clients and between brokers: TLS with a
      certificate from :mod:`ragward.devcerts` (PEM key and trust stores), SASL
      SCRAM-SHA-512; the users — a super user ``admin`` and one user per
      component, ``ragward-gateway``, ``ragward-metrics``, ``ragward-alerts``,
      ``ragward-audit``, ``ragward-serve`` — are created when storage is
      formatted (``--add-scram``), with random passwords;
    * the controller listener on mutual TLS: only the holder of the broker's
      certificate (super user ``User:CN=ragward-broker``) gets in; a second
      client listener, ``MTLS``, takes TLS with a client certificate instead of SASL;
    * the KRaft ``StandardAuthorizer``, nothing allowed without an ACL; the
      ragward topics created by ``admin`` and each component's ACLs from
      :mod:`telemetry.kafka_acls`.
Redis
    TLS only (``tls-port``, plain port off), the default user off, one ACL user
    ``ragward-gateway`` limited to ragward's keys.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragward.devcerts import DevPki, make_pki
from ragward.devservices import (
    RunningService,
    ServiceError,
    format_storage,
    free_port,
    kafka_libs,
    kafka_properties,
    launch_kafka,
    redis_binary,
    stop,
)
from ragward.settings import Settings, env_name, load_settings
from telemetry.kafka_acls import Component
from telemetry.kafka_security import KafkaSecurity

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
COMPONENT_USERS: dict[Component, str] = {
    "gateway": "ragward-gateway", "metrics": "ragward-metrics", "alerts": "ragward-alerts",
    "audit": "ragward-audit", "serve": "ragward-serve",
}
REDIS_USER = "ragward-gateway"


def _password() -> str:
    return secrets.token_hex(16)  # hex: safe inside --add-scram's [name=...,password=...]


@dataclass
class SecureKafka:
    """A running SASL_SSL broker, its CA and its users' passwords."""

    service: RunningService
    pki: DevPki
    passwords: dict[str, str] = field(repr=False)  # user -> password
    mtls_bootstrap: str = ""  # an SSL listener that requires a client certificate

    @property
    def bootstrap(self) -> str:
        return self.service.address

    def overrides(self, user: str, password: str | None = None) -> dict[str, Any]:
        """Settings fields for a client logged in as ``user`` (``password`` to get it wrong)."""
        return {
            "kafka_bootstrap": self.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": user,
            "kafka_sasl_password": self.passwords[user] if password is None else password,
            "kafka_ssl_cafile": self.pki.ca_file,
        }

    def exports(self, user: str) -> list[str]:
        return [f"export {env_name(name)}={value}" for name, value in self.overrides(user).items()]

    def settings(self, user: str, **extra: Any) -> Settings:
        return load_settings(**self.overrides(user), **extra)

    def security(self, user: str) -> KafkaSecurity:
        return KafkaSecurity.from_settings(self.settings(user))

    async def prepare(self, settings: Settings, groups: Mapping[str, str] | None = None,
                      timeout_s: float = 30.0) -> None:
        """As the super user: create ``settings``' topics and every component's ACLs on
        them (for each component user of :data:`COMPONENT_USERS`), and return only once
        the broker serves the topics and enforces the ACLs — a client started right after
        is never denied for a grant still on its way (:mod:`telemetry.kafka_acls`)."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        from telemetry.kafka_acls import DEFAULT_GROUPS, create_acls, grants

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=15_000,
                                    **self.security(ADMIN).client_kwargs())
        await admin.start()
        try:
            s = settings
            topics = {s.topic_audit, s.topic_usage, s.topic_alerts, s.topic_dead_letter}
            missing = sorted(topics - set(await admin.list_topics()))
            if missing:
                await admin.create_topics([NewTopic(t, s.kafka_partitions, 1) for t in missing])
            entries = [
                grant for component, user in COMPONENT_USERS.items()
                for grant in grants(s, component, user, groups or DEFAULT_GROUPS)
            ]
            await create_acls(admin, entries, timeout_s=timeout_s)
            deadline, pause = time.monotonic() + timeout_s, 0.01
            while unknown := topics - set(await admin.list_topics()):
                if time.monotonic() >= deadline:
                    raise ServiceError(f"topics {sorted(unknown)} not served after "
                                       f"{timeout_s:.0f}s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
        finally:
            await admin.close()


def start_secure_kafka(timeout: float = 120.0, pki: DevPki | None = None) -> SecureKafka:
    """Start the SASL_SSL broker described in the module docstring (topics and ACLs come
    with :meth:`SecureKafka.prepare`)."""
    libs = kafka_libs()
    workdir = Path(tempfile.mkdtemp(prefix="ragward-kafka-secure-"))
    pki = pki or make_pki(workdir / "pki")
    port, controller_port, mtls_port = free_port(), free_port(), free_port()
    passwords = {user: _password() for user in (ADMIN, *COMPONENT_USERS.values())}
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{ADMIN}" password="{passwords[ADMIN]}";')
    # the plain node's properties, with listeners, TLS, SASL and the authorizer overridden
    props = kafka_properties(workdir, port, controller_port, {
        "listeners": f"SASL_SSL://127.0.0.1:{port},MTLS://127.0.0.1:{mtls_port},"
                     f"CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port},MTLS://127.0.0.1:{mtls_port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL,MTLS:SSL",
        "listener.name.mtls.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.keystore_file),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca_file),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};{pki.principal}",
        "allow.everyone.if.no.acl.found": "false",
    })
    scram = [arg for user, password in passwords.items()
             for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")]
    format_storage(libs, workdir, props, *scram)
    secure = SecureKafka(RunningService("kafka-secure", "", 0, str(workdir)), pki, passwords,
                         f"127.0.0.1:{mtls_port}")
    # the readiness round trip runs as the super user, who may create its topic
    admin = secure.security(ADMIN)
    service = launch_kafka(libs, workdir, props, port, timeout, admin.client_kwargs())
    service.name = "kafka-secure"
    secure.service = service
    return secure


@dataclass
class SecureRedis:
    service: RunningService
    pki: DevPki
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        return self.service.address

    def overrides(self) -> dict[str, Any]:
        return {"redis_url": self.url, "redis_ssl_ca_file": self.pki.ca_file,
                "redis_username": REDIS_USER, "redis_password": self.password}

    def exports(self) -> list[str]:
        return [f"export {env_name(name)}={value}" for name, value in self.overrides().items()]


def start_secure_redis(pki: DevPki, timeout: float = 20.0) -> SecureRedis:
    """redis-server on TLS only, the default user off, one ACL user for the gateway."""
    binary = redis_binary()
    workdir = Path(tempfile.mkdtemp(prefix="ragward-redis-secure-"))
    port, password = free_port(), _password()
    conf = workdir / "redis.conf"
    conf.write_text("\n".join([
        "port 0", f"tls-port {port}", "bind 127.0.0.1", "protected-mode yes",
        f"tls-cert-file {pki.cert_file}", f"tls-key-file {pki.key_file}",
        f"tls-ca-cert-file {pki.ca_file}", "tls-auth-clients no",
        'save ""', "appendonly no", f"dir {workdir}",
        "user default off",
        # the gateway's keys only (quotas, cache) and no administration
        f"user {REDIS_USER} on >{password} resetkeys ~ragward:* resetchannels "
        "+@all -@admin -@dangerous",
        "",
    ]))
    conf.chmod(0o600)
    with (workdir / "redis.log").open("wb") as log:
        # our own binary and config file (devservices is exempt from S603 the same way)
        proc = subprocess.Popen([binary, str(conf)], stdout=log,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)
    service = RunningService("redis-secure", f"rediss://127.0.0.1:{port}/0", proc.pid,
                             str(workdir), proc)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (workdir / "redis.log").read_text(errors="replace")[-400:]
            stop(service)
            raise ServiceError(f"redis-server (TLS) exited with code {proc.returncode}: {tail}")
        if _tls_ping(port, context, password):
            return SecureRedis(service, pki, password)
        time.sleep(0.05)
    stop(service)
    raise ServiceError(f"redis-server (TLS) did not answer PING in {timeout:.0f}s")


def _tls_ping(port: int, context: ssl.SSLContext, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(f"AUTH {REDIS_USER} {password}\r\nPING\r\n".encode())
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    break
                answer += chunk
            return answer == b"+OK\r\n+PONG\r\n"
    except OSError:
        return False


def up_secure() -> tuple[list[RunningService], list[str]]:
    """Start both secured services for ``make services SECURE=1``; (services, lines to
    print): the shared exports, then each component's user and password."""
    kafka = start_secure_kafka()
    try:
        asyncio.run(kafka.prepare(load_settings()))
        redis = start_secure_redis(kafka.pki)
    except BaseException:
        stop(kafka.service)
        raise
    own = ("kafka_sasl_username", "kafka_sasl_password")
    shared = {k: v for k, v in kafka.overrides(ADMIN).items() if k not in own}
    serve = COMPONENT_USERS["serve"]
    lines = ["# Kafka on SASL_SSL (SCRAM-SHA-512, ACLs) and Redis on TLS with an ACL user",
             *(f"export {env_name(k)}={v}" for k, v in shared.items()), *redis.exports(),
             f"# `ragward serve` runs as {serve}; separate processes each take their own user:"]
    for component, user in COMPONENT_USERS.items():
        line = (f"export {env_name(own[0])}={user} "
                f"{env_name(own[1])}={kafka.passwords[user]}")
        lines.append(line if user == serve else f"#   {component}: {line}")
    return [kafka.service, redis.service], lines
