/* The scorer's keys. */
#include "consumers/scorer_conf.h"

const sn_conf_def_t sn_scorer_conf_defs[] = {
    {"scorer.group.id", SN_CONF_STR, "sentinel-scorer", 0, 0, NULL, 0,
     "Consumer group of the scorers."},
    {"scorer.batch.max.records", SN_CONF_INT, "500", 1, 100000, NULL, 0,
     "Largest micro-batch, in records."},
    {"scorer.batch.max.ms", SN_CONF_INT, "20", 1, 60000, NULL, 0,
     "A micro-batch is processed at most this long after its first record arrived."},
    {"scorer.scores.enabled", SN_CONF_BOOL, "true", 0, 0, NULL, 0,
     "Send a score record for every event to topic.scores (the prediction log that the archive "
     "and the drift job read)."},
    {"scorer.retry.backoff.max.ms", SN_CONF_INT, "30000", 100, 3600000, NULL, 0,
     "Longest wait between retries of a batch while Redis or the schema registry is down."},
    {"scorer.poll.interval.s", SN_CONF_INT, "300", 1, 86400, NULL, 0,
     "How often the scorer asks the registry where model.alias points."},
    {"scorer.challenger", SN_CONF_ENUM, "off", 0, 0, "off|shadow|canary", 0,
     "What the challenger (model.challenger.alias) does: off; shadow scores every event, its "
     "score records go to topic.shadow and to the agreement metrics, never to alerts; canary "
     "serves the machines selected by scorer.canary.fraction for real (score records and alerts "
     "naming the challenger's version)."},
    {"scorer.canary.fraction", SN_CONF_DOUBLE, "0.05", 0, 1, NULL, 0,
     "Share of machines the canary routes to the challenger: those whose hash of the machine "
     "id (FNV-1a 64 of its bytes, then MurmurHash3's fmix64, divided by 2^64) is below it."},
    {"topic.shadow", SN_CONF_STR, "telemetry.shadow-scores", 0, 0, NULL, 0,
     "Topic of the challenger's score records in shadow mode (schemas/score.avsc)."},
    {"scorer.exactly.once", SN_CONF_BOOL, "false", 0, 0, NULL, 0,
     "Exactly-once outputs: each batch's dead letters, score records, alerts and offsets are "
     "committed in one Kafka transaction (readers must use isolation.level=read_committed, "
     "librdkafka's default). Off: at-least-once (outputs acknowledged, then offsets stored)."},
    {"scorer.transactional.id", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Transactional id of the scorer's producer with scorer.exactly.once; empty: "
     "sentinel-scorer-<host name>. Must be unique per running instance and stable across its "
     "restarts (a restart fences the previous incarnation and aborts what it left open); in "
     "Kubernetes the chart sets it to the pod name."},
    {"topic.dlq", SN_CONF_STR, "telemetry.dlq", 0, 0, NULL, 0,
     "Dead-letter topic: records that cannot be decoded, with the reason in headers."},
    {"topic.alerts", SN_CONF_STR, "machine-failures", 0, 0, NULL, 0, "Topic of failure alerts."},
    {"topic.scores", SN_CONF_STR, "telemetry.scores", 0, 0, NULL, 0,
     "Topic of the per-event score records."},
    {"alert.cooldown.ms", SN_CONF_INT, "600000", 0, 604800000, NULL, 0,
     "While a machine's incident stays open, re-notify at most once per this much event time."},
    {"alert.resolve.after", SN_CONF_INT, "5", 1, 1000000, NULL, 0,
     "Consecutive events below the threshold that resolve an open incident."},
    {"alert.max.open", SN_CONF_INT, "100000", 1, 10000000, NULL, 0,
     "Open incidents tracked at most (memory bound); beyond it alerts are still sent."},
    {"alert.known.max", SN_CONF_INT, "200000", 0, 100000000, NULL, 0,
     "Machines without an open incident whose alert state is kept in memory (memory bound); "
     "beyond it they are dropped between batches and read from Redis again when met."},
    SN_CONF_END,
};
