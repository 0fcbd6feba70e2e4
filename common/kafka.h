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
rd_kafka_conf_t *sn_kafka_conf_new(const sn_conf_t *conf, const char *const *defaults, char *errstr,
                                   size_t errstr_size);

/* What a transactional producer commits along with a batch's outputs
 * (KIP-447): the consumer's next offsets and its group metadata, which lets the
 * broker fence a consumer that lost its partitions. Made by the consumer
 * runtime (sn_consumer_batch_offsets), only read by the producer
 * (sn_producer_txn_commit), freed with sn_consumer_offsets_destroy. */
struct sn_kafka_offsets {
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_consumer_group_metadata_t *group;
};

/* An in-process Kafka cluster (librdkafka's mock cluster) for the embedded demo
 * and fault-injection tests: no broker process, no Java. Not for the end-to-end
 * tests, which run against a real broker. */
typedef struct sn_kafka_mock sn_kafka_mock_t;

/* Starts a mock cluster of nbrokers. NULL with errstr set on failure. */
sn_kafka_mock_t *sn_kafka_mock_new(int nbrokers, char *errstr, size_t errstr_size);

/* Creates topic with npartitions (before anyone produces to it). */
int sn_kafka_mock_topic(sn_kafka_mock_t *m, const char *topic, int npartitions, char *errstr,
                        size_t errstr_size);

/* "host:port,..." to use as bootstrap.servers; borrowed from m. */
const char *sn_kafka_mock_bootstraps(const sn_kafka_mock_t *m);

/* Stops the cluster. NULL-safe. Every client of it must be destroyed first. */
void sn_kafka_mock_destroy(sn_kafka_mock_t *m);

/* "2.0.2": the librdkafka this process runs with. */
const char *sn_kafka_version(void);

#endif
