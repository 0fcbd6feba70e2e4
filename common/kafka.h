/* kafka.h: librdkafka configuration from Sentinel's config.
 *
 * The one place that turns kafka.* keys into an rd_kafka_conf_t, so that a bad
 * pass-through key is reported the same way by every subcommand: the key, where
 * it came from, and librdkafka's own message as it is. */
#ifndef SN_KAFKA_H
#define SN_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "common/conf.h"

/* Returns a new librdkafka config holding defaults (borrowed; pairs of key and
 * value ending with NULL, or NULL: what the caller's role needs, such as
 * enable.idempotence) and then every kafka.* key, so an operator's own keys win.
 * The caller frees it with rd_kafka_conf_destroy or hands it to rd_kafka_new,
 * which takes it over. NULL with errstr set on a bad key. */
rd_kafka_conf_t *sn_kafka_conf_new(const sn_conf_t *conf, const char *const *defaults,
                                   char *errstr, size_t errstr_size);

/* "2.0.2": the librdkafka this process runs with. */
const char *sn_kafka_version(void);

#endif
