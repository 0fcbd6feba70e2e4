/* alerting.h: one alert per incident, not one per event.
 *
 * A small state machine per machine, driven by event time so that a replay
 * gives the same alerts: the first score at or above the threshold opens an
 * incident; while scores stay high it re-notifies at most once per cooldown;
 * after resolve_after consecutive events below the threshold it resolves. Only
 * machines with an open incident take memory, bounded by max_open. */
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
} sn_alerter_opts_t;

typedef struct sn_alerter_stats {
    uint64_t opened, renotified, resolved;
    uint64_t untracked; /* opens beyond max_open: notified, but not tracked */
    size_t open_now;
} sn_alerter_stats_t;

/* NULL when out of memory. */
sn_alerter_t *sn_alerter_new(const sn_alerter_opts_t *opts);
void sn_alerter_destroy(sn_alerter_t *a);

/* Feeds one scored event of machine_id (borrowed) and says what to send. */
enum sn_alerting_action sn_alerter_observe(sn_alerter_t *a, const char *machine_id, int64_t ts_ms,
                                           double score, double threshold);

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
