#include "consumers/consumer.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/kafka.h"
#include "common/log.h"

#define REVOKED_MAX 1024

struct sn_consumer {
    rd_kafka_t *rk;
    sn_consumer_opts_t opts;
    int paused;
    int assigned;
    /* Partitions revoked since the last commit of a batch: their offsets must
     * not be stored (the partition belongs to someone else now). Bounded: past
     * REVOKED_MAX we just skip storing everything of that batch, which is safe
     * (at-least-once, redelivered). */
    struct {
        char topic[256];
        int32_t partition;
    } revoked[REVOKED_MAX];
    int nrevoked;
    int revoked_overflow;
};

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (level <= 3)
        sn_log_error("kafka", "%s: %s", fac, buf);
    else if (level <= 4)
        sn_log_warn("kafka", "%s: %s", fac, buf);
    else
        sn_log_debug("kafka", "%s: %s", fac, buf);
}

static void note_revoked(sn_consumer_t *c, const rd_kafka_topic_partition_list_t *parts) {
    for (int i = 0; i < parts->cnt; i++) {
        if (c->opts.on_revoke)
            c->opts.on_revoke(c->opts.opaque, parts->elems[i].topic, parts->elems[i].partition);
        if (c->nrevoked >= REVOKED_MAX) {
            c->revoked_overflow = 1;
            continue;
        }
        snprintf(c->revoked[c->nrevoked].topic, sizeof(c->revoked[0].topic), "%s",
                 parts->elems[i].topic);
        c->revoked[c->nrevoked++].partition = parts->elems[i].partition;
    }
}

static int is_revoked(const sn_consumer_t *c, const char *topic, int32_t partition) {
    if (c->revoked_overflow) return 1;
    for (int i = 0; i < c->nrevoked; i++)
        if (c->revoked[i].partition == partition && strcmp(c->revoked[i].topic, topic) == 0)
            return 1;
    return 0;
}

/* Rebalances arrive inside rd_kafka_consumer_poll. On revocation we let the
 * pipeline finish with the partitions (on_revoke) and commit what it stored
 * before giving them up, so the next owner starts where we stopped instead of
 * redoing work. Both the eager and the cooperative protocols are handled. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    sn_consumer_t *c = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        sn_log_info("consumer", "group %s: %d partitions assigned", c->opts.group_id, parts->cnt);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        c->assigned += parts->cnt;
        if (c->paused) rd_kafka_pause_partitions(rk, parts);
    } else {
        sn_log_info("consumer", "group %s: %d partitions revoked%s", c->opts.group_id, parts->cnt,
                    rd_kafka_assignment_lost(rk) ? " (lost)" : "");
        note_revoked(c, parts);
        if (!rd_kafka_assignment_lost(rk)) rd_kafka_commit(rk, NULL, 0);
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        c->assigned = cooperative ? c->assigned - parts->cnt : 0;
        if (c->assigned < 0) c->assigned = 0;
    }
    if (error) {
        sn_log_error("consumer", "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

sn_consumer_t *sn_consumer_new(const sn_conf_t *conf, const sn_consumer_opts_t *opts, char *errstr,
                               size_t errstr_size) {
    /* Offsets are stored by us after a batch is done and committed by
     * librdkafka's auto-commit: at-least-once without a commit per batch.
     * read_committed (librdkafka's default, spelled out): the scorer's
     * exactly-once outputs must not show aborted transactions to `sentinel
     * alerts` or the archiver. An operator's kafka.* keys still win over these
     * defaults. */
    static const char *const defaults[] = {"isolation.level",
                                           "read_committed",
                                           "enable.auto.offset.store",
                                           "false",
                                           "enable.auto.commit",
                                           "true",
                                           "auto.commit.interval.ms",
                                           "1000",
                                           "auto.offset.reset",
                                           "earliest",
                                           "enable.partition.eof",
                                           "false",
                                           "partition.assignment.strategy",
                                           "cooperative-sticky",
                                           NULL};
    sn_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *rk_conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_resp_err_t err;
    char rk_err[512];

    if (!c) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->opts = *opts;
    c->opts.topics = NULL;
    if (!(rk_conf = sn_kafka_conf_new(conf, defaults, errstr, errstr_size))) goto fail;
    /* Not overridable: an auto-commit would commit offsets outside the
     * transactions, so an aborted batch would count as done. */
    if (opts->transactional &&
        rd_kafka_conf_set(rk_conf, "enable.auto.commit", "false", rk_err, sizeof(rk_err))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "librdkafka: %s", rk_err);
        goto fail;
    }
    if (rd_kafka_conf_set(rk_conf, "group.id", opts->group_id, rk_err, sizeof(rk_err)) ||
        (opts->bootstrap && rd_kafka_conf_set(rk_conf, "bootstrap.servers", opts->bootstrap, rk_err,
                                              sizeof(rk_err)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "librdkafka: %s", rk_err);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(rk_conf, on_log);
    rd_kafka_conf_set_rebalance_cb(rk_conf, on_rebalance);
    rd_kafka_conf_set_opaque(rk_conf, c);
    if (!(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, rk_conf, rk_err, sizeof(rk_err)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "librdkafka: %s", rk_err);
        goto fail;
    }
    rk_conf = NULL; /* taken over by rd_kafka_new */
    rd_kafka_poll_set_consumer(c->rk);
    topics = rd_kafka_topic_partition_list_new((int)opts->ntopics);
    for (size_t i = 0; i < opts->ntopics; i++)
        rd_kafka_topic_partition_list_add(topics, opts->topics[i], RD_KAFKA_PARTITION_UA);
    if ((err = rd_kafka_subscribe(c->rk, topics))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "subscribe: %s", rd_kafka_err2str(err));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(topics);
    return c;
fail:
    if (topics) rd_kafka_topic_partition_list_destroy(topics);
    if (rk_conf) rd_kafka_conf_destroy(rk_conf);
    if (c->rk) rd_kafka_destroy(c->rk);
    free(c);
    return NULL;
}

void sn_consumer_destroy(sn_consumer_t *c) {
    if (!c) return;
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    free(c);
}

static int batch_grow(sn_batch_t *b, size_t want) {
    sn_record_t *p;

    if (b->cap >= want) return 0;
    if (!(p = realloc(b->records, want * sizeof(*p)))) return SN_ERR_NOMEM;
    b->records = p;
    b->cap = want;
    return 0;
}

int sn_consumer_poll_batch(sn_consumer_t *c, sn_batch_t *batch, int timeout_ms) {
    int64_t start = now_ms(), first = -1;
    char errstr[512];

    sn_consumer_release_batch(batch);
    if (batch_grow(batch, c->opts.batch_max_records) != 0) return SN_ERR_NOMEM;
    while (batch->n < c->opts.batch_max_records) {
        int64_t now = now_ms();
        int wait =
            first < 0 ? (int)(start + timeout_ms - now) : (int)(first + c->opts.batch_max_ms - now);
        rd_kafka_message_t *m;
        sn_record_t *r;

        if (wait <= 0) break;
        if (!(m = rd_kafka_consumer_poll(c->rk, wait))) continue;
        if (m->err) {
            rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(c->rk, errstr, sizeof(errstr));

            if (fatal) {
                sn_log_error("consumer", "fatal: %s", errstr);
                rd_kafka_message_destroy(m);
                return SN_ERR_FATAL;
            }
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sn_log_warn("consumer", "%s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (first < 0) first = now_ms();
        r = &batch->records[batch->n++];
        r->topic = rd_kafka_topic_name(m->rkt);
        r->partition = m->partition;
        r->offset = m->offset;
        r->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
        r->key = m->key;
        r->keylen = m->key_len;
        r->value = m->payload;
        r->len = m->len;
        r->msg = m;
    }
    return (int)batch->n;
}

int sn_consumer_commit_batch(sn_consumer_t *c, sn_batch_t *batch, char *errstr,
                             size_t errstr_size) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(16);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc = 0;

    for (size_t i = 0; i < batch->n; i++) {
        const sn_record_t *r = &batch->records[i];
        rd_kafka_topic_partition_t *tp;

        if (is_revoked(c, r->topic, r->partition)) continue;
        tp = rd_kafka_topic_partition_list_find(offs, r->topic, r->partition);
        if (!tp) tp = rd_kafka_topic_partition_list_add(offs, r->topic, r->partition);
        if (r->offset + 1 > tp->offset) tp->offset = r->offset + 1;
    }
    if (offs->cnt > 0 && (err = rd_kafka_offsets_store(c->rk, offs))) {
        /* A partition revoked between our check and the store: harmless, its
         * records will be redelivered to the new owner. */
        sn_log_warn("consumer", "storing offsets: %s", rd_kafka_err2str(err));
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "storing offsets: %s",
                        rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(offs);
    c->nrevoked = 0;
    c->revoked_overflow = 0;
    sn_consumer_release_batch(batch);
    return rc;
}

int sn_consumer_batch_offsets(sn_consumer_t *c, const sn_batch_t *batch, sn_kafka_offsets_t **out,
                              char *errstr, size_t errstr_size) {
    sn_kafka_offsets_t *o = calloc(1, sizeof(*o));
    int rc = 0;

    *out = NULL;
    if (!o || !(o->offsets = rd_kafka_topic_partition_list_new(16))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < batch->n; i++) {
        const sn_record_t *r = &batch->records[i];
        rd_kafka_topic_partition_t *tp;

        if (is_revoked(c, r->topic, r->partition)) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                            "partition %s/%d was revoked during the batch", r->topic,
                            (int)r->partition);
            goto out;
        }
        tp = rd_kafka_topic_partition_list_find(o->offsets, r->topic, r->partition);
        if (!tp) tp = rd_kafka_topic_partition_list_add(o->offsets, r->topic, r->partition);
        if (r->offset + 1 > tp->offset) tp->offset = r->offset + 1;
    }
    /* The generation in the metadata is what lets the broker refuse these
     * offsets if the group moved on without us (KIP-447). */
    if (!(o->group = rd_kafka_consumer_group_metadata(c->rk))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "no consumer group metadata yet");
        goto out;
    }
    *out = o;
    o = NULL;
out:
    if (rc == 0) { /* else sn_consumer_rewind still needs to know */
        c->nrevoked = 0;
        c->revoked_overflow = 0;
    }
    sn_consumer_offsets_destroy(o);
    return rc;
}

void sn_consumer_offsets_destroy(sn_kafka_offsets_t *o) {
    if (!o) return;
    if (o->offsets) rd_kafka_topic_partition_list_destroy(o->offsets);
    if (o->group) rd_kafka_consumer_group_metadata_destroy(o->group);
    free(o);
}

void sn_consumer_rewind(sn_consumer_t *c, sn_batch_t *batch) {
    rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_new(16);
    rd_kafka_error_t *error;

    for (size_t i = 0; i < batch->n; i++) {
        const sn_record_t *r = &batch->records[i];
        rd_kafka_topic_partition_t *tp;

        if (is_revoked(c, r->topic, r->partition)) continue;
        tp = rd_kafka_topic_partition_list_find(at, r->topic, r->partition);
        if (!tp) {
            tp = rd_kafka_topic_partition_list_add(at, r->topic, r->partition);
            tp->offset = r->offset;
        }
        if (r->offset < tp->offset) tp->offset = r->offset;
    }
    /* Seeking also drops what was fetched beyond these offsets. A partition
     * revoked between our check and the seek fails here, harmlessly. */
    if (at->cnt > 0 && (error = rd_kafka_seek_partitions(c->rk, at, 10000))) {
        sn_log_warn("consumer", "rewinding: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    for (int i = 0; i < at->cnt; i++)
        if (at->elems[i].err)
            sn_log_warn("consumer", "rewinding %s/%d to %lld: %s", at->elems[i].topic,
                        (int)at->elems[i].partition, (long long)at->elems[i].offset,
                        rd_kafka_err2str(at->elems[i].err));
    rd_kafka_topic_partition_list_destroy(at);
    c->nrevoked = 0;
    c->revoked_overflow = 0;
    sn_consumer_release_batch(batch);
}

void sn_consumer_release_batch(sn_batch_t *batch) {
    for (size_t i = 0; i < batch->n; i++) rd_kafka_message_destroy(batch->records[i].msg);
    batch->n = 0;
}

void sn_batch_free(sn_batch_t *batch) {
    sn_consumer_release_batch(batch);
    free(batch->records);
    batch->records = NULL;
    batch->cap = 0;
}

void sn_consumer_pause(sn_consumer_t *c, int paused) {
    rd_kafka_topic_partition_list_t *parts = NULL;

    if (c->paused == paused) return;
    c->paused = paused;
    if (rd_kafka_assignment(c->rk, &parts) || !parts) return;
    if (paused)
        rd_kafka_pause_partitions(c->rk, parts);
    else
        rd_kafka_resume_partitions(c->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

void sn_consumer_serve(sn_consumer_t *c, sn_batch_t *batch, int timeout_ms) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);

    (void)batch;
    /* Paused partitions deliver nothing, but a message fetched just before the
     * pause can still arrive: rewind so it is fetched again later rather than
     * lost. */
    if (m) {
        if (!m->err) {
            rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_new(1);

            rd_kafka_topic_partition_list_add(at, rd_kafka_topic_name(m->rkt), m->partition)
                ->offset = m->offset;
            rd_kafka_seek_partitions(c->rk, at, 1000);
            rd_kafka_topic_partition_list_destroy(at);
        }
        rd_kafka_message_destroy(m);
    }
}

int sn_consumer_commit_sync(sn_consumer_t *c) {
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);

    return (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
               ? 0
               : SN_ERR_TRANSIENT;
}

int sn_consumer_assigned(const sn_consumer_t *c) { return c->assigned; }

int64_t sn_consumer_lag(sn_consumer_t *c) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t lag = 0;

    if (rd_kafka_assignment(c->rk, &parts) || !parts) return -1;
    if (rd_kafka_position(c->rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt; i++) {
            int64_t lo, hi;

            if (rd_kafka_get_watermark_offsets(c->rk, parts->elems[i].topic,
                                               parts->elems[i].partition, &lo, &hi) ||
                hi < 0)
                continue;
            lag += parts->elems[i].offset >= 0 ? hi - parts->elems[i].offset : hi - lo;
        }
    } else {
        lag = -1;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return lag;
}
