/* The keys that every subcommand reads. */
#include "common/common_conf.h"

const sn_conf_def_t sn_common_conf_defs[] = {
    {"log.level", SN_CONF_ENUM, "info", 0, 0, "error|warn|info|debug", 0,
     "Least severe level that is logged."},
    {"log.format", SN_CONF_ENUM, "auto", 0, 0, "auto|text|json", 0,
     "Log line format; auto is text on a terminal and JSON lines otherwise."},
    {"kafka.bootstrap.servers", SN_CONF_STR, "localhost:9092", 0, 0, NULL, 0,
     "Kafka brokers, host:port[,host:port]. Passed to librdkafka as bootstrap.servers."},
    {"topic.telemetry", SN_CONF_STR, "telemetry", 0, 0, NULL, 0,
     "Topic the telemetry events are produced to and consumed from."},
    SN_CONF_END,
};
