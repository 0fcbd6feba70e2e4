/* The alert state machine: open once, re-notify after the cooldown, resolve
 * after N low scores, machines independent, bounded memory. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "consumers/alerting.h"

static sn_alerter_t *make(size_t max_open) {
    sn_alerter_opts_t o = {.cooldown_ms = 10000, .resolve_after = 3, .max_open = max_open};
    sn_alerter_t *a = sn_alerter_new(&o);

    cr_assert_not_null(a);
    return a;
}

Test(alerting, one_incident_lifecycle) {
    sn_alerter_t *a = make(10);
    sn_alerter_stats_t st;

    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 1000, 0.5, 0.5), SN_ALERTING_OPEN,
                 "at the threshold opens");
    cr_assert_eq(sn_alerter_observe(a, "m1", 2000, 0.9, 0.5), SN_ALERTING_NONE,
                 "inside the cooldown");
    cr_assert_eq(sn_alerter_observe(a, "m1", 10999, 0.9, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 11000, 0.9, 0.5), SN_ALERTING_RENOTIFY);
    cr_assert_eq(sn_alerter_observe(a, "m1", 12000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 13000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 14000, 0.9, 0.5), SN_ALERTING_NONE,
                 "a high score resets the count");
    cr_assert_eq(sn_alerter_observe(a, "m1", 15000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 16000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 17000, 0.1, 0.5), SN_ALERTING_RESOLVE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 18000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 19000, 0.7, 0.5), SN_ALERTING_OPEN, "a new incident");
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.opened, 2);
    cr_assert_eq(st.renotified, 1);
    cr_assert_eq(st.resolved, 1);
    cr_assert_eq(st.open_now, 1);
    sn_alerter_destroy(a);
}

Test(alerting, machines_are_independent) {
    sn_alerter_t *a = make(10);

    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_observe(a, "m2", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    for (int i = 1; i <= 3; i++)
        cr_assert_eq(sn_alerter_observe(a, "m2", i, 0.1, 0.5),
                     i == 3 ? SN_ALERTING_RESOLVE : SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 5, 0.9, 0.5), SN_ALERTING_NONE, "m1 still open");
    sn_alerter_destroy(a);
}

Test(alerting, bounded) {
    sn_alerter_t *a = make(2);
    sn_alerter_stats_t st;

    cr_assert_eq(sn_alerter_observe(a, "a", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_observe(a, "b", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_observe(a, "c", 0, 0.9, 0.5), SN_ALERTING_OPEN, "still notified");
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.untracked, 1);
    cr_assert_eq(st.open_now, 2);
    sn_alerter_destroy(a);
}

/* Feeds a fixed sequence of (machine, time, score) and returns the actions as
 * a string, one letter per observation: the fingerprint of the state. */
static void feed(sn_alerter_t *a, int from, int to, char *out) {
    static const char *const machines[] = {"m1", "m2", "m3"};

    for (int i = from; i < to; i++) {
        double score = ((i * 7) % 10) / 10.0;
        enum sn_alerting_action act =
            sn_alerter_observe(a, machines[i % 3], (int64_t)i * 4000, score, 0.5);

        *out++ = "norR"[act];
    }
    *out = '\0';
}

Test(alerting, rollback_restores_the_checkpoint) {
    sn_alerter_t *a = make(10), *ref = make(10);
    sn_alerter_stats_t st, st_ref;
    char got[64], want[64], aborted[64];

    feed(a, 0, 20, got);
    feed(ref, 0, 20, want);
    cr_assert_str_eq(got, want);
    sn_alerter_checkpoint(a);
    feed(a, 20, 40, aborted); /* opens, renotifies and resolves along the way */
    cr_assert(strpbrk(aborted, "orR") != NULL, "the aborted stretch changed something: %s",
              aborted);
    cr_assert_eq(sn_alerter_rollback(a), 0);
    sn_alerter_stats(a, &st);
    sn_alerter_stats(ref, &st_ref);
    cr_assert_eq(memcmp(&st, &st_ref, sizeof(st)), 0, "counters back to the checkpoint");
    /* the redo decides exactly what the first attempt decided */
    feed(a, 20, 40, got);
    cr_assert_str_eq(got, aborted);
    /* and both continue identically afterwards */
    feed(ref, 20, 60, want);
    feed(a, 40, 60, got);
    cr_assert_str_eq(got, want + 20);
    sn_alerter_destroy(a);
    sn_alerter_destroy(ref);
}

Test(alerting, rollback_twice_and_checkpoint_moves) {
    sn_alerter_t *a = make(10);
    char first[64], again[64];

    cr_assert_eq(sn_alerter_rollback(a), SN_ERR_INVALID, "no checkpoint yet");
    sn_alerter_checkpoint(a);
    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_rollback(a), 0);
    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN, "open undone");
    cr_assert_eq(sn_alerter_rollback(a), 0);
    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN, "again");
    sn_alerter_checkpoint(a); /* committed: the open stays */
    for (int i = 1; i <= 3; i++) sn_alerter_observe(a, "m1", i, 0.1, 0.5); /* resolves */
    cr_assert_eq(sn_alerter_rollback(a), 0);
    cr_assert_eq(sn_alerter_observe(a, "m1", 4, 0.9, 0.5), SN_ALERTING_NONE,
                 "the resolve was undone: still open, inside the cooldown");
    sn_alerter_checkpoint(a);
    feed(a, 0, 30, first);
    cr_assert_eq(sn_alerter_rollback(a), 0);
    feed(a, 0, 30, again);
    cr_assert_str_eq(first, again);
    sn_alerter_destroy(a);
}

Test(alerting, record_round_trip) {
    sn_alert_record_t r = {.partition = 7,
                           .first_offset = 100,
                           .last_offset = 9007199254740991LL,
                           .before = {.open = 1, .last_notify_ms = -5, .below = 3},
                           .after = {.open = 0, .last_notify_ms = 1767225600000LL, .below = 0}},
                      back;
    char buf[SN_ALERT_RECORD_MAX], err[256];

    cr_assert_gt(sn_alert_record_format(&r, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "a1 7 100 9007199254740991 1 -5 3 0 1767225600000 0");
    cr_assert_eq(sn_alert_record_parse(buf, &back, err, sizeof(err)), 0, "%s", err);
    cr_assert(back.partition == r.partition && back.first_offset == r.first_offset &&
              back.last_offset == r.last_offset);
    cr_assert(back.before.open == 1 && back.before.last_notify_ms == -5 && back.before.below == 3);
    cr_assert(back.after.open == 0 && back.after.last_notify_ms == r.after.last_notify_ms &&
              back.after.below == 0);
    cr_assert_eq(sn_alert_record_format(&r, buf, 10), SN_ERR_NOMEM);
}

Test(alerting, record_parse_refuses_bad_text) {
    static const char *const bad[] = {
        "",
        "a2 7 100 200 1 0 0 0 0 0",                  /* another version */
        "a1 7 100 200 1 0 0 0 0",                    /* a field missing */
        "a1 7 100 200 1 0 0 0 0 0 ",                 /* trailing bytes */
        "a1 7 100 200 2 0 0 0 0 0",                  /* open is 0 or 1 */
        "a1 -1 100 200 1 0 0 0 0 0",                 /* partition */
        "a1 7 300 200 1 0 0 0 0 0",                  /* first after last */
        "a1 7 100 200 1 0 4294967296 0 0 0",         /* below beyond uint32 */
        "a1 7 100 99999999999999999999 1 0 0 0 0 0", /* overflow */
        "a1  7 100 200 1 0 0 0 0 0",                 /* two spaces */
        "a1 7 100 200 1 x 0 0 0 0",
    };
    sn_alert_record_t r;
    char err[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(sn_alert_record_parse(bad[i], &r, err, sizeof(err)), SN_ERR_INVALID, "%s",
                     bad[i]);
        cr_assert(strstr(err, "alert state") != NULL, "a clear error for \"%s\": %s", bad[i], err);
    }
}

/* A Redis stand-in for the tests: machine -> record text, written through the
 * text format as the scorer does. */
struct store {
    char machine[3][8];
    char text[3][SN_ALERT_RECORD_MAX];
    size_t n;
    int64_t decided; /* partition 0's decided offset, 0: none (1 + offset) */
};

static const char *store_get(const struct store *st, const char *m) {
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->machine[i], m) == 0) return st->text[i];
    return NULL;
}

static void store_put(struct store *st, const char *m, const char *text) {
    size_t i = 0;

    while (i < st->n && strcmp(st->machine[i], m) != 0) i++;
    if (i == st->n) snprintf(st->machine[st->n++], sizeof(st->machine[0]), "%s", m);
    snprintf(st->text[i], sizeof(st->text[0]), "%s", text);
}

/* One batch of events [from, to) as the scorer runs it: begin, restore the
 * unknown machines from st, observe, and (persist) write the changed records
 * to st. The actions go to out as feed() writes them. */
static void batch(sn_alerter_t *a, struct store *st, int from, int to, int persist, char *out) {
    static const char *const machines[] = {"m1", "m2", "m3"};
    sn_alert_record_t recs[3];
    const sn_alert_record_t *ptr[3];
    char err[256];
    int m;

    sn_alerter_batch_begin(a);
    for (int i = from; i < to; i++) cr_assert_geq(sn_alerter_want(a, machines[i % 3], 0, i), 0);
    cr_assert_leq(sn_alerter_nwanted(a), 3);
    for (size_t i = 0; i < sn_alerter_nwanted(a); i++) {
        const char *text = store_get(st, sn_alerter_wanted(a, i));

        ptr[i] = NULL;
        if (!text) continue;
        cr_assert_eq(sn_alert_record_parse(text, &recs[i], err, sizeof(err)), 0, "%s", err);
        ptr[i] = &recs[i];
    }
    {
        int64_t decided = st->decided - 1;

        cr_assert_leq(sn_alerter_nwanted_partitions(a), 1);
        cr_assert_eq(sn_alerter_restore(a, ptr, &decided), 0);
    }
    for (int i = from; i < to; i++) {
        double score = ((i * 7) % 10) / 10.0;

        *out++ =
            "norR"[sn_alerter_observe_at(a, machines[i % 3], 0, i, (int64_t)i * 4000, score, 0.5)];
    }
    *out = '\0';
    if (!persist) return;
    st->decided = to; /* to - 1, decided */
    cr_assert_geq(m = sn_alerter_nchanged(a), 0);
    for (int i = 0; i < m; i++) {
        const char *id;
        sn_alert_record_t rec;
        char text[SN_ALERT_RECORD_MAX];

        sn_alerter_changed(a, (size_t)i, &id, &rec);
        cr_assert_gt(sn_alert_record_format(&rec, text, sizeof(text)), 0);
        store_put(st, id, text);
    }
}

static sn_alerter_t *make_mode(int eos) {
    sn_alerter_opts_t o = {.cooldown_ms = 10000,
                           .resolve_after = 3,
                           .max_open = 10,
                           .max_known = 10,
                           .redo_uncommitted = eos};
    sn_alerter_t *a = sn_alerter_new(&o);

    cr_assert_not_null(a);
    return a;
}

/* At-least-once: the record is written after the batch's alerts were
 * acknowledged; a restart redelivers from an older committed offset. The
 * redelivered events are skipped (their alerts were sent) and the rest is
 * decided as an uninterrupted run decides it. */
Test(alerting, restart_at_least_once_decides_as_uninterrupted) {
    sn_alerter_t *ref = make_mode(0), *a = make_mode(0), *b = NULL;
    struct store st = {0};
    char want[128], got[128], part[128];

    feed(ref, 0, 90, want);
    batch(a, &st, 0, 30, 1, got);
    batch(a, &st, 30, 60, 1, got + 30); /* stored; its offsets not committed */
    cr_assert_eq(strncmp(got, want, 60), 0);
    sn_alerter_destroy(a); /* kill -9 */
    b = make_mode(0);
    batch(b, &st, 30, 90, 1, part);
    cr_assert_geq(strspn(part, "n"), 30, "the redelivered 30 decided before: %s", part);
    cr_assert_str_eq(part + 30, want + 60);
    sn_alerter_destroy(b);
    sn_alerter_destroy(ref);
}

/* Exactly-once: the record is written inside the batch's transaction, which
 * a kill aborts; the restart redoes the batch from the state before it. */
Test(alerting, restart_exactly_once_decides_as_uninterrupted) {
    sn_alerter_t *ref = make_mode(1), *a = make_mode(1), *b = NULL;
    struct store st = {0};
    char want[128], got[128];

    feed(ref, 0, 90, want);
    batch(a, &st, 0, 30, 1, got);
    batch(a, &st, 30, 60, 1, got + 30); /* stored, then the commit never happened */
    cr_assert_eq(strncmp(got, want, 60), 0);
    cr_assert(strpbrk(got + 30, "orR") != NULL, "the aborted batch changed something");
    sn_alerter_destroy(a);
    b = make_mode(1);
    batch(b, &st, 30, 90, 1, got);
    cr_assert_str_eq(got, want + 30, "redone from the state before the uncommitted batch");
    /* and a restart after a committed batch continues from after it */
    sn_alerter_destroy(b);
    b = make_mode(1);
    batch(b, &st, 90, 120, 1, got);
    feed(ref, 90, 120, want);
    cr_assert_str_eq(got, want);
    sn_alerter_destroy(b);
    sn_alerter_destroy(ref);
}

/* Without the records a restart starts empty: the test above has teeth. */
Test(alerting, restart_without_state_differs) {
    sn_alerter_t *ref = make_mode(1), *b = make_mode(1);
    struct store st = {0};
    char want[128], got[128];

    feed(ref, 0, 90, want);
    batch(b, &st, 30, 90, 0, got);
    cr_assert_str_neq(got, want + 30);
    sn_alerter_destroy(b);
    sn_alerter_destroy(ref);
}

/* A rebalance forgets everything; the records bring it back. Machines
 * without an incident beyond max_known are dropped between batches. */
Test(alerting, forget_and_max_known) {
    sn_alerter_opts_t o = {.cooldown_ms = 10000, .resolve_after = 3, .max_open = 10};
    sn_alerter_t *a = sn_alerter_new(&o);
    sn_alerter_stats_t st;

    cr_assert_not_null(a);
    sn_alerter_batch_begin(a);
    cr_assert_eq(sn_alerter_want(a, "m1", 0, 0), 1);
    cr_assert_eq(sn_alerter_want(a, "m1", 0, 1), 0, "listed once");
    cr_assert_eq(sn_alerter_want(a, "m2", 0, 2), 1);
    cr_assert_eq(sn_alerter_restore(a, (const sn_alert_record_t *[]){NULL, NULL}, NULL), 0);
    cr_assert_eq(sn_alerter_observe_at(a, "m1", 0, 0, 0, 0.9, 0.5), SN_ALERTING_OPEN);
    sn_alerter_batch_begin(a); /* max_known 0: m2 dropped, m1 (open) kept */
    cr_assert_eq(sn_alerter_want(a, "m1", 0, 3), 0);
    cr_assert_eq(sn_alerter_want(a, "m2", 0, 4), 1);
    sn_alerter_forget(a);
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.open_now, 0);
    sn_alerter_batch_begin(a);
    cr_assert_eq(sn_alerter_want(a, "m1", 0, 5), 1, "unknown again after a rebalance");
    sn_alerter_destroy(a);
}

/* At-least-once, a machine whose state a batch did not change has no new
 * record, but its redelivered events were decided too: the partition's
 * decided offset skips them, whatever their (redelivered) score. */
Test(alerting, decided_offset_skips_unchanged_machines) {
    sn_alerter_t *a = make_mode(0);

    sn_alerter_batch_begin(a);
    cr_assert_eq(sn_alerter_want(a, "m1", 4, 5), 1);
    cr_assert_eq(sn_alerter_nwanted_partitions(a), 1);
    cr_assert_eq(sn_alerter_wanted_partition(a, 0), 4);
    cr_assert_eq(sn_alerter_restore(a, (const sn_alert_record_t *[]){NULL}, (int64_t[]){10}), 0);
    cr_assert_eq(sn_alerter_observe_at(a, "m1", 4, 5, 0, 0.9, 0.5), SN_ALERTING_NONE, "decided");
    cr_assert_eq(sn_alerter_observe_at(a, "m1", 4, 10, 0, 0.9, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe_at(a, "m1", 3, 10, 0, 0.9, 0.5), SN_ALERTING_OPEN,
                 "another partition");
    cr_assert_eq(sn_alerter_observe_at(a, "m1", 4, 11, 0, 0.9, 0.5), SN_ALERTING_NONE,
                 "open, in the cooldown");
    sn_alerter_batch_begin(a);
    cr_assert_eq(sn_alerter_want(a, "m2", 4, 12), 1);
    cr_assert_eq(sn_alerter_nwanted_partitions(a), 0, "partition 4 known");
    sn_alerter_destroy(a);
    a = make_mode(1);
    sn_alerter_batch_begin(a);
    cr_assert_eq(sn_alerter_want(a, "m1", 4, 5), 1);
    cr_assert_eq(sn_alerter_nwanted_partitions(a), 0, "exactly-once redoes, never skips");
    sn_alerter_destroy(a);
}

/* Exactly-once, a machine restored inside a batch that then aborts stays
 * restored: the rollback keeps it, and counts it open. */
Test(alerting, restore_then_rollback_counts_the_restored_incident) {
    sn_alerter_t *a = make_mode(1);
    sn_alert_record_t rec = {.partition = 0,
                             .first_offset = 1,
                             .last_offset = 2,
                             .before = {.open = 1, .last_notify_ms = 0},
                             .after = {.open = 1, .last_notify_ms = 0}};
    sn_alerter_stats_t st;

    sn_alerter_batch_begin(a);
    sn_alerter_checkpoint(a);
    cr_assert_eq(sn_alerter_want(a, "m1", 0, 10), 1);
    cr_assert_eq(sn_alerter_restore(a, (const sn_alert_record_t *[]){&rec}, NULL), 0);
    for (int i = 10; i < 13; i++) sn_alerter_observe_at(a, "m1", 0, i, i, 0.1, 0.5);
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.open_now, 0, "resolved");
    cr_assert_eq(sn_alerter_rollback(a), 0);
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.open_now, 1, "the restored incident, open again");
    cr_assert_eq(sn_alerter_observe_at(a, "m1", 0, 10, 10, 0.9, 0.5), SN_ALERTING_NONE,
                 "open, in the cooldown: not a new OPEN");
    sn_alerter_destroy(a);
}
