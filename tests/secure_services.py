"""Session fixtures for the secured services (:mod:`ragward.devsecure`), started only by
the tests that ask for them: a SASL_SSL Kafka with SCRAM users and ACLs, and a TLS Redis
with an ACL user. ``RAGWARD_REQUIRE_SERVICES=1`` / ``CI=true`` turn a failed start into a
failure, like the plain services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragward import devservices
from ragward.devsecure import SecureKafka, SecureRedis, start_secure_kafka, start_secure_redis
from ragward.devservices import ServiceError
from tests.services import fail_or_skip


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[SecureKafka]:
    """A Kafka broker with only a SASL_SSL listener, SCRAM-SHA-512 users and the KRaft
    StandardAuthorizer; each test creates its topics and ACLs with ``prepare``."""
    try:
        kafka = start_secure_kafka()
    except ServiceError as exc:
        fail_or_skip("secured Kafka", exc)
        raise
    try:
        yield kafka
    finally:
        devservices.stop(kafka.service)


@pytest.fixture(scope="session")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    """redis-server on TLS only, the default user off, one ACL user for the gateway."""
    from ragward.devcerts import make_pki

    try:
        redis = start_secure_redis(make_pki(tmp_path_factory.mktemp("redis-pki")))
    except ServiceError as exc:
        fail_or_skip("TLS Redis", exc)
        raise
    try:
        yield redis
    finally:
        devservices.stop(redis.service)
