/* The keys of the metrics and health endpoint (common/httpd.c). */
#include "common/metrics_conf.h"

const sn_conf_def_t sn_metrics_conf_defs[] = {
    {"metrics.port", SN_CONF_INT, "9464", 0, 65535, NULL, 0,
     "TCP port of the HTTP endpoint serving /metrics (Prometheus), /healthz and /readyz; "
     "0 disables the endpoint."},
    {"metrics.bind", SN_CONF_STR, "0.0.0.0", 0, 0, NULL, 0,
     "Address the endpoint listens on: an IPv4 or IPv6 address, or a host name; "
     "127.0.0.1 keeps it local."},
    {"metrics.max.connections", SN_CONF_INT, "16", 1, 1024, NULL, 0,
     "Most HTTP connections served at once; more are refused until one closes."},
    {"metrics.connection.timeout.s", SN_CONF_INT, "10", 1, 3600, NULL, 0,
     "Seconds an idle or slow HTTP connection is kept before it is closed."},
    {"metrics.max.bytes", SN_CONF_INT, "4194304", 4096, 268435456, NULL, 0,
     "Largest /metrics response in bytes; a larger one fails with HTTP 500 and a log line "
     "rather than growing without bound."},
    {"metrics.liveness.timeout.ms", SN_CONF_INT, "30000", 0, 86400000, NULL, 0,
     "/healthz fails (503) when the main loop has not called its heartbeat for this many "
     "milliseconds; 0 turns the heartbeat check off."},
    SN_CONF_END,
};
