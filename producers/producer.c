#include "producers/producer.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/kafka.h"
#include "common/log.h"

struct sn_producer {
    rd_kafka_t *rk;
    int transactional;
    atomic_uint_fast64_t enqueued, delivered, failed;
    char last_error[256];
};

/* Runs on the polling thread (ours): count, and keep the first failure's text
 * so the caller's summary can say why. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    sn_producer_t *p = opaque;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        /* an aborted transaction's records: discarded on purpose, not lost */
        sn_log_debug("producer", "purged by an abort: %s", rd_kafka_err2str(m->err));
    } else if (m->err) {
        if (atomic_fetch_add(&p->failed, 1) == 0)
            snprintf(p->last_error, sizeof(p->last_error), "%s", rd_kafka_err2str(m->err));
        sn_log_debug("producer", "delivery failed: %s", rd_kafka_err2str(m->err));
    } else {
        atomic_fetch_add(&p->delivered, 1);
    }
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

/* The one constructor behind both public ones: transactional_id NULL gives
 * the plain idempotent producer. */
static sn_producer_t *producer_new(const sn_conf_t *conf, const char *bootstrap,
                                   const char *transactional_id, char *errstr, size_t errstr_size) {
    sn_producer_t *p = calloc(1, sizeof(*p));
    /* Idempotence is what makes retries safe: no duplicates, no reordering
     * within a partition. A small linger batches without adding visible
     * latency. */
    static const char *const defaults[] = {"enable.idempotence", "true", "linger.ms", "5", NULL};
    rd_kafka_conf_t *rk_conf = NULL;
    char rk_err[512];

    if (!p) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!(rk_conf = sn_kafka_conf_new(conf, defaults, errstr, errstr_size))) goto fail;
    if (bootstrap &&
        rd_kafka_conf_set(rk_conf, "bootstrap.servers", bootstrap, rk_err, sizeof(rk_err))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "librdkafka: %s", rk_err);
        goto fail;
    }
    if (transactional_id &&
        rd_kafka_conf_set(rk_conf, "transactional.id", transactional_id, rk_err, sizeof(rk_err))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "librdkafka: %s", rk_err);
        goto fail;
    }
    p->transactional = transactional_id != NULL;
    rd_kafka_conf_set_dr_msg_cb(rk_conf, on_delivery);
    rd_kafka_conf_set_log_cb(rk_conf, on_log);
    rd_kafka_conf_set_opaque(rk_conf, p);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rk_conf, rk_err, sizeof(rk_err)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "librdkafka: %s", rk_err);
        goto fail; /* rd_kafka_new did not take rk_conf */
    }
    return p;
fail:
    if (rk_conf) rd_kafka_conf_destroy(rk_conf);
    free(p);
    return NULL;
}

sn_producer_t *sn_producer_new(const sn_conf_t *conf, const char *bootstrap, char *errstr,
                               size_t errstr_size) {
    return producer_new(conf, bootstrap, NULL, errstr, errstr_size);
}

/* Translates a transactional API error: SN_ERR_TRANSIENT for one that only
 * needs the transaction aborted (or the call retried), SN_ERR_FATAL for a
 * fenced or otherwise dead producer. Takes over error. */
static int txn_error(rd_kafka_error_t *error, const char *what, char *errstr, size_t errstr_size) {
    int rc = rd_kafka_error_is_fatal(error) ? SN_ERR_FATAL : SN_ERR_TRANSIENT;

    sn_err_set(errstr, errstr_size, rc, "%s: %s%s", what, rd_kafka_error_string(error),
               rc == SN_ERR_FATAL ? " (fatal: fenced by a newer instance, or the producer is dead)"
                                  : "");
    rd_kafka_error_destroy(error);
    return rc;
}

sn_producer_t *sn_producer_new_transactional(const sn_conf_t *conf, const char *bootstrap,
                                             const char *transactional_id, int timeout_ms,
                                             char *errstr, size_t errstr_size) {
    sn_producer_t *p = NULL;
    rd_kafka_error_t *error;

    if (!transactional_id || !*transactional_id) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "an empty transactional id");
        return NULL;
    }
    if (!(p = producer_new(conf, bootstrap, transactional_id, errstr, errstr_size))) return NULL;
    /* Fences any older producer with this id and aborts what it left open
     * (the transaction of a scorer killed mid-batch). */
    if ((error = rd_kafka_init_transactions(p->rk, timeout_ms))) {
        txn_error(error, "initialising transactions", errstr, errstr_size);
        sn_producer_destroy(p, 0);
        return NULL;
    }
    return p;
}

int sn_producer_txn_begin(sn_producer_t *p, char *errstr, size_t errstr_size) {
    rd_kafka_error_t *error = rd_kafka_begin_transaction(p->rk);

    return error ? txn_error(error, "beginning a transaction", errstr, errstr_size) : 0;
}

/* Commits, retrying what librdkafka calls retriable (a timeout: the commit goes
 * on in the background and the call resumes it) a bounded number of times; on
 * anything abortable, aborts so that the producer is ready for the next
 * transaction. */
int sn_producer_txn_commit(sn_producer_t *p, const sn_kafka_offsets_t *offsets, char *errstr,
                           size_t errstr_size) {
    rd_kafka_error_t *error = NULL;
    int rc, sent = !offsets || offsets->offsets->cnt == 0;

    /* a retry resumes the step that timed out, not the ones that succeeded */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (!sent && !(error = rd_kafka_send_offsets_to_transaction(p->rk, offsets->offsets,
                                                                    offsets->group, -1)))
            sent = 1;
        if (!error) error = rd_kafka_commit_transaction(p->rk, -1);
        if (!error) return 0;
        if (!rd_kafka_error_is_retriable(error) || rd_kafka_error_txn_requires_abort(error) ||
            rd_kafka_error_is_fatal(error))
            break;
        sn_log_warn("producer", "committing the transaction: %s; retrying",
                    rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        error = NULL;
    }
    rc = error ? txn_error(error, "committing the transaction", errstr, errstr_size)
               : sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                            "committing the transaction: still retriable after 3 tries");
    if (rc == SN_ERR_FATAL) return rc;
    {
        char why[256];

        if (sn_producer_txn_abort(p, why, sizeof(why)) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "%s", why);
    }
    return SN_ERR_TRANSIENT;
}

int sn_producer_txn_abort(sn_producer_t *p, char *errstr, size_t errstr_size) {
    rd_kafka_error_t *error = rd_kafka_abort_transaction(p->rk, -1);

    if (!error) return 0;
    /* an abort that fails leaves the producer unusable for transactions */
    txn_error(error, "aborting the transaction", errstr, errstr_size);
    return SN_ERR_FATAL;
}

void sn_producer_destroy(sn_producer_t *p, int flush_ms) {
    if (!p) return;
    if (p->rk) {
        rd_kafka_flush(p->rk, flush_ms);
        rd_kafka_destroy(p->rk);
    }
    free(p);
}

int sn_producer_send(sn_producer_t *p, const char *topic, int32_t partition, const void *key,
                     size_t keylen, const void *value, size_t len,
                     const sn_producer_header_t *headers, size_t nheaders, int timeout_ms,
                     char *errstr, size_t errstr_size) {
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;
    int waited = 0;

    for (;;) {
        if (nheaders) {
            hdrs = rd_kafka_headers_new(nheaders);
            for (size_t i = 0; i < nheaders; i++)
                rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                    (ssize_t)headers[i].len);
        }
        /* RD_KAFKA_V_HEADERS takes over hdrs only on success. */
        err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(NULL),
            RD_KAFKA_V_END);
        if (!err) break;
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        hdrs = NULL;
        if (err == RD_KAFKA_RESP_ERR__STATE && p->transactional)
            return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                              "produce to %s: the transaction must be aborted (%s)", topic,
                              rd_kafka_err2str(err));
        if (err == RD_KAFKA_RESP_ERR__FATAL)
            return sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "produce to %s: %s", topic,
                              rd_kafka_err2str(err));
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "produce to %s: %s", topic,
                              rd_kafka_err2str(err));
        if (waited >= timeout_ms)
            return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                              "produce to %s: local queue still full after %d ms", topic, waited);
        /* Back-pressure: serve delivery reports, which frees queue space. */
        rd_kafka_poll(p->rk, 10);
        waited += 10;
    }
    atomic_fetch_add(&p->enqueued, 1);
    rd_kafka_poll(p->rk, 0);
    return 0;
}

void sn_producer_poll(sn_producer_t *p, int timeout_ms) { rd_kafka_poll(p->rk, timeout_ms); }

int sn_producer_flush(sn_producer_t *p, int timeout_ms) {
    return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : SN_ERR_TRANSIENT;
}

void sn_producer_stats(const sn_producer_t *p, sn_producer_stats_t *out) {
    out->enqueued = atomic_load(&((sn_producer_t *)p)->enqueued);
    out->delivered = atomic_load(&((sn_producer_t *)p)->delivered);
    out->failed = atomic_load(&((sn_producer_t *)p)->failed);
}

const char *sn_producer_last_error(const sn_producer_t *p) { return p->last_error; }
