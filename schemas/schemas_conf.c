/* The keys of the schemas module: where writer schemas are found (a local
 * directory or a Schema Registry), the reader schema and its field roles, and
 * the bounds the decoder enforces on untrusted input. */
#include "schemas/schemas_conf.h"

const sn_conf_def_t sn_schemas_conf_defs[] = {
    {"schema.dir", SN_CONF_STR, "schemas", 0, 0, NULL, 0,
     "Local schema directory. Its file 'ids' maps each Confluent schema id to an .avsc file "
     "in the directory (one '<id> <file>' per line). Used when schema.registry.url is empty."},
    {"schema.reader", SN_CONF_STR, "schemas/telemetry.avsc", 0, 0, NULL, 0,
     "Reader schema of telemetry events (.avsc path). Every decoded event is resolved to it, "
     "and events are produced with it."},
    {"schema.id", SN_CONF_INT, "1", 1, 2147483647.0, NULL, 0,
     "Writer schema id put in produced telemetry frames (must name schema.reader in the "
     "schema directory or registry). Ignored when schema.registry.mode is lookup or register."},
    {"schema.alert.id", SN_CONF_INT, "2", 1, 2147483647.0, NULL, 0,
     "Writer schema id put in produced failure alerts (schemas/failure_alert.avsc)."},
    {"schema.score.id", SN_CONF_INT, "3", 1, 2147483647.0, NULL, 0,
     "Writer schema id put in produced scores (schemas/score.avsc)."},
    {"schema.key.field", SN_CONF_STR, "machine_id", 0, 0, NULL, 0,
     "Reader schema field (string) that holds the machine id."},
    {"schema.time.field", SN_CONF_STR, "ts", 0, 0, NULL, 0,
     "Reader schema field (long; timestamp-millis, or timestamp-micros which is converted) that "
     "holds the event time."},
    {"schema.unsupported.fields", SN_CONF_ENUM, "error", 0, 0, "error|ignore", 0,
     "What to do with reader schema fields that are neither the key, the time, 'tags' nor "
     "numeric (int, long, float, double, boolean, enum, or a union of null with one): error "
     "refuses the schema naming the field; ignore skips them."},
    {"schema.max.alloc.bytes", SN_CONF_INT, "1048576", 4096, 1073741824.0, NULL, 0,
     "Largest single allocation avro-c may make while decoding one record, and the largest "
     "string or bytes value accepted. A record that needs more is rejected as too_large."},
    {"schema.registry.url", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Confluent-compatible Schema Registry base URL (http://host:8081). When set, writer "
     "schemas are fetched from it by id (GET /schemas/ids/{id}, cached forever) instead of "
     "schema.dir."},
    {"schema.registry.username", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Schema Registry basic-auth user name; empty for no authentication."},
    {"schema.registry.password", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET,
     "Schema Registry basic-auth password."},
    {"schema.registry.timeout.ms", SN_CONF_INT, "5000", 100, 120000, NULL, 0,
     "Bound on one Schema Registry request (connect and transfer). A registry that does not "
     "answer in time is a transient error: the record is retried, not dead-lettered."},
    {"schema.registry.unknown.retry.ms", SN_CONF_INT, "60000", 0, 86400000.0, NULL, 0,
     "How long an id the registry said does not exist is remembered before asking again "
     "(records with it are rejected as unknown_schema meanwhile)."},
    {"schema.registry.mode", SN_CONF_ENUM, "none", 0, 0, "none|lookup|register", 0,
     "How producers learn their writer schema ids from the registry: none uses schema.id, "
     "schema.alert.id and schema.score.id; lookup asks POST /subjects/{subject} (the schema "
     "must be registered already); register uses POST /subjects/{subject}/versions."},
    {"schema.registry.subject", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Subject of the telemetry schema for lookup/register; empty means '<topic.telemetry>-value' "
     "(the topic name strategy)."},
    {"schema.registry.alert.subject", SN_CONF_STR, "machine-failures-value", 0, 0, NULL, 0,
     "Subject of the failure alert schema for lookup/register."},
    {"schema.registry.score.subject", SN_CONF_STR, "scores-value", 0, 0, NULL, 0,
     "Subject of the score schema for lookup/register."},
    SN_CONF_END,
};
