#!/usr/bin/env bash
# Create (or bring up to date) the Kafka topics ragward uses. Idempotent: safe to run on every start.
# Used by docker-compose.yml's kafka-init job and by deploy/k8s/dev-deps; for a production cluster run it
# once from any host with Kafka's CLI:
#   BOOTSTRAP=broker:9092 REPLICATION_FACTOR=3 MIN_INSYNC_REPLICAS=2 PARTITIONS=12 deploy/compose/create-topics.sh
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:?BOOTSTRAP=host:port of a Kafka broker}
RF=${REPLICATION_FACTOR:-3}
MIN_ISR=${MIN_INSYNC_REPLICAS:-2}
PARTITIONS=${PARTITIONS:-12}
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
# The audit topic keeps records at least as long as the audit store does
# (RAGWARD_AUDIT_RETENTION_DAYS, default 400 days), so `ragward audit replay` can rebuild it.
AUDIT_RETENTION_MS=${AUDIT_RETENTION_MS:-34560000000}   # 400 days (>= 12 months)

topic() {  # name, retention.ms
  local name=$1 retention=$2
  local configs="cleanup.policy=delete,retention.ms=${retention},min.insync.replicas=${MIN_ISR},unclean.leader.election.enable=false"
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$PARTITIONS" --replication-factor "$RF" \
    --config cleanup.policy=delete --config "retention.ms=${retention}" \
    --config "min.insync.replicas=${MIN_ISR}" --config unclean.leader.election.enable=false
  # Existing topics: enforce the same settings (partitions can only grow; see the operations guide).
  "$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --alter \
    --entity-type topics --entity-name "$name" --add-config "$configs"
}

topic ragward.audit.v1      "$AUDIT_RETENTION_MS"
topic ragward.usage.v1      604800000     # 7 days
topic ragward.alerts.v1     2592000000    # 30 days
topic ragward.deadletter.v1 2592000000    # 30 days
"$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topic 'ragward\..*'
