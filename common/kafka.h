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

/* Returns a new librdkafka config holding every kafka.* key (caller frees with
 * rd_kafka_conf_destroy, or hands it to rd_kafka_new which takes it over), or
 * NULL with errstr set. */
rd_kafka_conf_t *sn_kafka_conf_new(const sn_conf_t *conf, char *errstr, size_t errstr_size);

/* "2.0.2": the librdkafka this process runs with. */
const char *sn_kafka_version(void);

#endif
