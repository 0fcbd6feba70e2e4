/* The keys the scoring module reads. */
#include "scoring/scoring_conf.h"

const sn_conf_def_t sn_scoring_conf_defs[] = {
    {"redis.url", SN_CONF_STR, "redis://127.0.0.1:6379", 0, 0, NULL, 0,
     "Redis holding the online feature state: redis://host[:port][/db] or unix:///path/to.sock. "
     "No credentials in the URL: use redis.username and redis.password."},
    {"redis.username", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Redis ACL user (Redis 6+); empty for the default user."},
    {"redis.password", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET,
     "Redis password (AUTH); empty for none."},
    {"redis.timeout.ms", SN_CONF_INT, "2000", 10, 600000, NULL, 0,
     "Connect and per-reply timeout. A timeout is a transient error: the batch is retried "
     "after a reconnect."},
    {"redis.key.prefix", SN_CONF_STR, "sn", 0, 0, NULL, 0,
     "Prefix of the feature-state keys, <prefix>:{<machine>}:<layout> (no braces)."},
    {"redis.cas.machines.max", SN_CONF_INT, "500", 1, 10000, NULL, 0,
     "Machines whose feature updates go in one script call when the scorer's copy of their "
     "state is current (the usual case): Redis's cost is per call, and a batch of a large "
     "fleet holds about one event per machine. Each machine keeps its own compare-and-set. "
     "Set 1 (one call per machine) for Redis Cluster or a proxy, where one call's keys must "
     "share a slot."},
    {"feature.state.ttl.s", SN_CONF_INT, "604800", 60, 31536000, NULL, 0,
     "Expiry of a machine's feature state after its last update, in seconds; must cover the "
     "feature retention and the longest redelivery delay (offsets expire with the state)."},
    {"feature.cache.machines", SN_CONF_INT, "10000", 0, 10000000, NULL, 0,
     "Machines whose Redis feature state the scorer keeps a copy of, so that the update script "
     "need not send it back (it still checks a version). About retention / bucket * (8 + 64 * "
     "windowed fields) bytes each; 0 disables the copy."},
    SN_CONF_END,
};
