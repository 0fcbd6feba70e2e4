/* bench_metrics.c: what a metric update costs on the hot path, in ns per op,
 * next to a plain non-atomic increment measured in the same run.
 *
 * Build and run from the repository root:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/bench_metrics.c common/metrics.c common/log.c
 * common/json.c common/err.c -o /tmp/bench_metrics -lpthread -lm && /tmp/bench_metrics
 *
 * Each figure is the best of REPEATS runs of N operations (loop included), so a
 * noisy neighbour inflates nothing. The metric functions live in another
 * translation unit, as in the real build (no LTO), so they cost a call; the
 * second baseline pays the same call for a plain increment. The contended rows
 * run one thread per CPU on the same counter, which is the worst case; the
 * pipeline mostly has one thread per counter (a partition, a stage). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"

#define N 20000000L
#define REPEATS 5
#define MAXTHREADS 16

static double now_ns(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uint64_t plain_cell;
static uint64_t plain_called_cell;

/* A plain increment behind a call, to match the call the metric API costs. */
__attribute__((noinline)) static void plain_inc(uint64_t *p) {
    __asm__ volatile("" ::: "memory");
    (*p)++;
}

static sn_metrics_t *reg;
static sn_counter_t *counter;
static sn_counter_vec_t *vec;
static sn_gauge_t *gauge, *igauge;
static sn_histogram_t *hist8, *hist20;
static double values[1024];

enum op { PLAIN, PLAIN_CALL, CINC, CADD, CADDD, GSET, GINC, H8, H20, VECGET };

static const char *op_name[] = {
    "plain uint64_t++ (volatile, baseline)",
    "plain ++ through a call (baseline 2)",
    "sn_counter_inc",
    "sn_counter_add(c, 3)",
    "sn_counter_add_double(c, 0.5)",
    "sn_gauge_set (double)",
    "sn_gauge_inc (int gauge)",
    "sn_histogram_observe, 8 bounds",
    "sn_histogram_observe, 20 bounds",
    "sn_counter_vec_get (existing) + inc",
};

static void run(enum op op, long n) {
    const char *lv[] = {"bad_magic"};

    switch (op) {
    case PLAIN:
        for (long i = 0; i < n; i++) plain_cell++;
        break;
    case PLAIN_CALL:
        for (long i = 0; i < n; i++) plain_inc(&plain_called_cell);
        break;
    case CINC:
        for (long i = 0; i < n; i++) sn_counter_inc(counter);
        break;
    case CADD:
        for (long i = 0; i < n; i++) sn_counter_add(counter, 3);
        break;
    case CADDD:
        for (long i = 0; i < n; i++) sn_counter_add_double(counter, 0.5);
        break;
    case GSET:
        for (long i = 0; i < n; i++) sn_gauge_set(gauge, (double)i);
        break;
    case GINC:
        for (long i = 0; i < n; i++) sn_gauge_inc(igauge);
        break;
    case H8:
        for (long i = 0; i < n; i++) sn_histogram_observe(hist8, values[i & 1023]);
        break;
    case H20:
        for (long i = 0; i < n; i++) sn_histogram_observe(hist20, values[i & 1023]);
        break;
    case VECGET:
        for (long i = 0; i < n; i++) sn_counter_inc(sn_counter_vec_get(vec, lv));
        break;
    }
}

static double best_ns_per_op(enum op op, long n) {
    double best = INFINITY;

    for (int r = 0; r < REPEATS; r++) {
        double t0 = now_ns(), dt;

        run(op, n);
        dt = (now_ns() - t0) / (double)n;
        if (dt < best) best = dt;
    }
    return best;
}

struct targ {
    enum op op;
    long n;
    pthread_barrier_t *bar;
};

static void *thread_main(void *arg) {
    struct targ *t = arg;

    pthread_barrier_wait(t->bar);
    run(t->op, t->n);
    return NULL;
}

/* Wall time per op per thread with nthreads hammering the same cell. */
static double contended_ns_per_op(enum op op, int nthreads, long n) {
    double best = INFINITY;

    for (int r = 0; r < REPEATS; r++) {
        pthread_t th[MAXTHREADS];
        struct targ t;
        pthread_barrier_t bar;
        double t0, dt;

        pthread_barrier_init(&bar, NULL, (unsigned)nthreads + 1);
        t.op = op;
        t.n = n;
        t.bar = &bar;
        for (int i = 0; i < nthreads; i++) pthread_create(&th[i], NULL, thread_main, &t);
        t0 = now_ns();
        pthread_barrier_wait(&bar);
        for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
        dt = (now_ns() - t0) / (double)n;
        pthread_barrier_destroy(&bar);
        if (dt < best) best = dt;
    }
    return best;
}

int main(void) {
    const double b8[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
    double b20[20];
    double base;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = ncpu < 2 ? 2 : (ncpu > MAXTHREADS ? MAXTHREADS : (int)ncpu);
    char errstr[128];

    sn_log_set_level(SN_LOG_ERROR);
    reg = sn_metrics_new(0, errstr, sizeof(errstr));
    if (!reg) {
        fprintf(stderr, "%s\n", errstr);
        return 1;
    }
    counter = sn_metrics_counter(reg, "bench_events_total", "x");
    gauge = sn_metrics_gauge(reg, "bench_gauge", "x");
    igauge = sn_metrics_gauge_int(reg, "bench_int_gauge", "x");
    hist8 = sn_metrics_histogram(reg, "bench_h8_seconds", "x", b8, 8);
    sn_metrics_buckets_exponential(b20, 20, 0.0001, 2);
    hist20 = sn_metrics_histogram(reg, "bench_h20_seconds", "x", b20, 20);
    vec = sn_metrics_counter_vec(reg, "bench_dlq_total", "x", (const char *[]){"class"}, 1, 16);
    srand(1);
    for (int i = 0; i < 1024; i++) values[i] = (double)rand() / RAND_MAX * 2.0; /* 0..2 s */

    run(PLAIN, N); /* warm up the CPU clock */
    base = best_ns_per_op(PLAIN, N);
    printf("%-40s %8s %8s\n", "single thread, best of 5 x 20M ops", "ns/op", "x plain");
    for (int op = PLAIN; op <= VECGET; op++) {
        double ns = op == PLAIN ? base : best_ns_per_op((enum op)op, N);

        printf("%-40s %8.2f %8.2f\n", op_name[op], ns, ns / base);
    }
    printf("\n%d threads on the same cell (wall ns per op per thread, best of 5 x %ldM)\n",
           nthreads, N / 4 / 1000000);
    printf("%-40s %8.2f\n", "sn_counter_inc, contended",
           contended_ns_per_op(CINC, nthreads, N / 4));
    printf("%-40s %8.2f\n", "sn_histogram_observe 8 bounds, contended",
           contended_ns_per_op(H8, nthreads, N / 4));
    sn_metrics_destroy(reg);
    return 0;
}
