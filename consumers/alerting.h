/* alerting.h: one alert per incident, not one per event.
 *
 * A small state machine per machine, driven by event time so that a replay
 * gives the same alerts: the first score at or above the threshold opens an
 * incident; while scores stay high it re-notifies at most once per cooldown;
 * after resolve_after consecutive events below the threshold it resolves. Open
 * incidents are bounded by max_open; machines known to have none by max_known.
 *
 * The state can outlive the process: each machine's state is exported as a
 * record (sn_alert_record_t: the state before and after the machine's events
 * in the current batch, and their offsets) for the caller to persist, and
 * restored from one when the machine is first met (sn_alerter_want,
 * sn_alerter_restore). This module does no I/O. */
#ifndef SN_ALERTING_H
#define SN_ALERTING_H

#include <stddef.h>
#include <stdint.h>

typedef struct sn_alerter sn_alerter_t;

enum sn_alerting_action {
    SN_ALERTING_NONE = 0,
    SN_ALERTING_OPEN,
    SN_ALERTING_RENOTIFY,
    SN_ALERTING_RESOLVE,
};

typedef struct sn_alerter_opts {
    int64_t cooldown_ms;    /* least event time between two notifications */
    uint32_t resolve_after; /* consecutive low scores that resolve an incident */
    size_t max_open;        /* open incidents tracked at most */
    size_t max_known;       /* machines without an open incident kept at most (then
                               dropped between batches: restored again when met) */
    /* How a restored record meets a redelivered offset (one at or below the
     * record's last offset). 0 (at-least-once): the record was written after
     * the batch's outputs were acknowledged, so those events were decided:
     * start from the state after them and skip them. 1 (exactly-once): the
     * record was written inside a transaction that did not commit, so the
     * events are being redone: start from the state before them. */
    int redo_uncommitted;
} sn_alerter_opts_t;

/* One machine's state, as persisted. */
typedef struct sn_alert_mstate {
    int open;               /* an incident is open */
    int64_t last_notify_ms; /* event time of its last notification */
    uint32_t below;         /* consecutive low scores since */
} sn_alert_mstate_t;

/* What is persisted per machine after a batch that changed its state: the
 * state before the batch's first event of the machine and after its last,
 * and their offsets (one partition: a machine's events are keyed to one). */
typedef struct sn_alert_record {
    int32_t partition;
    int64_t first_offset, last_offset;
    sn_alert_mstate_t before, after;
} sn_alert_record_t;

/* Longest text of a record, NUL included. */
#define SN_ALERT_RECORD_MAX 192

typedef struct sn_alerter_stats {
    uint64_t opened, renotified, resolved;
    uint64_t untracked; /* opens beyond max_open: notified, but not tracked */
    size_t open_now;
} sn_alerter_stats_t;

/* NULL when out of memory. */
sn_alerter_t *sn_alerter_new(const sn_alerter_opts_t *opts);
void sn_alerter_destroy(sn_alerter_t *a);

/* Feeds one scored event of machine_id (borrowed) and says what to send. No
 * offset: nothing is skipped as a redelivery. */
enum sn_alerting_action sn_alerter_observe(sn_alerter_t *a, const char *machine_id, int64_t ts_ms,
                                           double score, double threshold);

/* As sn_alerter_observe, for the event at offset of partition. An offset at
 * or below the last one decided for the machine in that partition (restored
 * at-least-once) is a redelivery already decided: SN_ALERTING_NONE and no
 * change. */
enum sn_alerting_action sn_alerter_observe_at(sn_alerter_t *a, const char *machine_id,
                                              int32_t partition, int64_t offset, int64_t ts_ms,
                                              double score, double threshold);

/* Starts a batch: forgets which machines the last batch changed, and drops
 * the machines without an incident beyond max_known (their records are
 * persisted by now). Call before sn_alerter_checkpoint. */
void sn_alerter_batch_begin(sn_alerter_t *a);

/* Forgets every machine's state (the consumer lost partitions: another
 * scorer may change them, so they are restored again when met). Between
 * batches only. */
void sn_alerter_forget(sn_alerter_t *a);

/* Notes that machine_id (borrowed) is met at offset of partition, its first
 * event in the batch. Returns 1 when its state is unknown: it joins the list
 * of machines to restore (sn_alerter_nwanted); 0 when known or listed
 * already; SN_ERR_NOMEM. The list empties at sn_alerter_batch_begin. */
int sn_alerter_want(sn_alerter_t *a, const char *machine_id, int32_t partition, int64_t offset);

/* The machines to restore, and the i-th one's id (borrowed from a, valid
 * until sn_alerter_restore or sn_alerter_batch_begin). */
size_t sn_alerter_nwanted(const sn_alerter_t *a);
const char *sn_alerter_wanted(const sn_alerter_t *a, size_t i);

/* At-least-once, a machine's record is written only when its state changed,
 * so a redelivered event of an unchanged machine would be decided again, on
 * a redelivered score that can differ. So each partition also has a decided
 * offset, written with the batch's records: every event up to it was decided
 * and its alerts sent. sn_alerter_want lists the partitions met for the first
 * time (none exactly-once); these are the list and its i-th partition. */
size_t sn_alerter_nwanted_partitions(const sn_alerter_t *a);
int32_t sn_alerter_wanted_partition(const sn_alerter_t *a, size_t i);

/* Restores every wanted machine from recs (borrowed, nwanted of them; NULL
 * entries: nothing persisted, no incident), choosing before or after as
 * opts.redo_uncommitted says, and every wanted partition's decided offset
 * from decided (borrowed, one per wanted partition, -1: none; NULL: all
 * none). Events at or below it are skipped as decided. Empties both lists.
 * 0 or SN_ERR_NOMEM. */
int sn_alerter_restore(sn_alerter_t *a, const sn_alert_record_t *const *recs,
                       const int64_t *decided);

/* The number of machines whose state the current batch changed, or
 * SN_ERR_NOMEM when one could not be listed (the batch's state cannot be
 * persisted: exit); and the i-th one's id and record (machine_id borrowed
 * from a until the next batch). */
int sn_alerter_nchanged(const sn_alerter_t *a);
void sn_alerter_changed(const sn_alerter_t *a, size_t i, const char **machine_id,
                        sn_alert_record_t *rec);

/* Writes rec as text into buf (caller-owned, SN_ALERT_RECORD_MAX bytes are
 * enough). Returns the length, or SN_ERR_NOMEM when buf is too small. */
int sn_alert_record_format(const sn_alert_record_t *rec, char *buf, size_t size);

/* Parses text (borrowed) written by sn_alert_record_format into *rec. 0, or
 * SN_ERR_INVALID with errstr for anything else (another version, a field out
 * of range, trailing bytes). */
int sn_alert_record_parse(const char *text, sn_alert_record_t *rec, char *errstr,
                          size_t errstr_size);

void sn_alerter_stats(const sn_alerter_t *a, sn_alerter_stats_t *out);

/* Marks the state to return to (exactly-once: the start of a batch's
 * transaction). From the first call on, every observation is journaled until
 * the next checkpoint, so the journal is bounded by the observations in
 * between. */
void sn_alerter_checkpoint(sn_alerter_t *a);

/* Puts every machine's state and the counters back to the last checkpoint (the
 * batch's transaction was aborted: its alerts were never seen, and the redo
 * must decide them again from the same state), and checkpoints there. 0;
 * SN_ERR_INVALID without a checkpoint; SN_ERR_NOMEM when the journal or the
 * restore ran out of memory (the state is then not the checkpoint's: exit). */
int sn_alerter_rollback(sn_alerter_t *a);

#endif
