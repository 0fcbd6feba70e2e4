/* metrics.h: a small, bounded, thread-safe Prometheus metrics registry.
 *
 * Built for the hot path (100k+ events/s across threads): a counter, gauge or
 * histogram handle is updated with one or two relaxed C11 atomics and never
 * takes a lock. Creating a metric, creating a labelled series and rendering take
 * the registry's mutex; looking up a labelled series that already exists does
 * not (an insert-only open-addressing table read with acquire loads), but the hot
 * path should still keep the handle it got rather than look it up per event.
 *
 * Everything is bounded, and what happens at a bound is defined:
 *   - at most max_metrics metric families per registry (sn_metrics_new);
 *   - at most max_series label sets per family (its constructor), at most
 *     SN_METRICS_MAX_LABELS label names, SN_METRICS_MAX_BUCKETS bucket bounds,
 *     and names, help texts and label values have a maximum length;
 *   - a constructor or a series lookup that would cross a bound, or that gets an
 *     invalid name or label value, returns NULL (or an error code), logs a
 *     warning (once per family for series) and increments the registry's own
 *     counter sentinel_metrics_rejected_total. Nothing grows past its bound;
 *   - every update function accepts NULL and does nothing, so a refused metric
 *     costs the hot path one predictable branch instead of a crash.
 *
 * Metrics are never removed: the registry lives as long as the process
 * (families and series are process-lifetime, like in other client libraries).
 * Values that come and go (per-partition lag after a rebalance) are better
 * served by a collector callback, sn_metrics_gauge_vec_fn(), which reports
 * whatever exists at scrape time.
 *
 * Output is the Prometheus text exposition format 0.0.4. Values are written in
 * the C locale's number format; the process must not change LC_NUMERIC. */
#ifndef SN_METRICS_H
#define SN_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sn_metrics sn_metrics_t;

/* Handles returned by the constructors. They are owned by the registry and stay
 * valid until sn_metrics_destroy(); never free them. */
typedef struct sn_counter sn_counter_t;
typedef struct sn_gauge sn_gauge_t;
typedef struct sn_histogram sn_histogram_t;
typedef struct sn_counter_vec sn_counter_vec_t;
typedef struct sn_gauge_vec sn_gauge_vec_t;
typedef struct sn_histogram_vec sn_histogram_vec_t;

#define SN_METRICS_DEFAULT_MAX_METRICS 256      /* sn_metrics_new(0, ...) */
#define SN_METRICS_MAX_METRICS 4096             /* hard cap on max_metrics */
#define SN_METRICS_DEFAULT_MAX_SERIES 64        /* a family's max_series given as 0 */
#define SN_METRICS_MAX_SERIES 10000             /* hard cap on a family's max_series */
#define SN_METRICS_MAX_LABELS 8                 /* label names per family */
#define SN_METRICS_MAX_BUCKETS 64               /* histogram bounds, +Inf not counted */
#define SN_METRICS_NAME_MAX 128                 /* metric and label name length */
#define SN_METRICS_HELP_MAX 1024                /* help text length */
#define SN_METRICS_VALUE_MAX 256                /* label value length in bytes */
#define SN_METRICS_DEFAULT_MAX_BYTES (4u << 20) /* render cap when given 0 */

/* The registry's own counter of refused metrics, series and samples. */
#define SN_METRICS_REJECTED_NAME "sentinel_metrics_rejected_total"

/* ---- registry ---------------------------------------------------------- */

/* Creates an empty registry holding at most max_metrics families (0 means
 * SN_METRICS_DEFAULT_MAX_METRICS; more than SN_METRICS_MAX_METRICS is an error).
 * The registry counts its own refusals in SN_METRICS_REJECTED_NAME, which takes
 * one of the slots. Returns NULL with errstr filled on failure. */
sn_metrics_t *sn_metrics_new(size_t max_metrics, char *errstr, size_t errstr_size);

/* Frees the registry and every handle it returned. NULL-safe. Must not run
 * concurrently with anything else touching the registry or its handles (stop
 * the HTTP endpoint and the pipeline threads first). */
void sn_metrics_destroy(sn_metrics_t *reg);

/* ---- constructors ------------------------------------------------------
 *
 * name must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most SN_METRICS_NAME_MAX bytes);
 * help must be non-empty (promtool insists). Both are copied. Label names match
 * [a-zA-Z_][a-zA-Z0-9_]*, must not start with "__", must be distinct, and "le"
 * is reserved in histograms; the arrays are borrowed for the call only.
 *
 * Registering a name again with the same type, label names and bucket bounds
 * returns the existing handle (so two components may share a metric); any other
 * clash, including with the _bucket/_sum/_count series of a histogram, is
 * refused. Prometheus conventions that promtool checks are the caller's job:
 * counters end in _total, units are base units spelled out (_seconds, _bytes). */

/* A monotonically increasing counter with no labels. */
sn_counter_t *sn_metrics_counter(sn_metrics_t *reg, const char *name, const char *help);

/* A gauge holding a double. */
sn_gauge_t *sn_metrics_gauge(sn_metrics_t *reg, const char *name, const char *help);

/* A gauge holding an int64: inc/dec/add_int are a single atomic add and the value
 * is rendered exactly. */
sn_gauge_t *sn_metrics_gauge_int(sn_metrics_t *reg, const char *name, const char *help);

/* A histogram with nbounds strictly increasing finite upper bounds (copied; a
 * trailing +Inf is accepted and dropped, the +Inf bucket is always added).
 * nbounds may be 0 (only _sum and _count are then informative). */
sn_histogram_t *sn_metrics_histogram(sn_metrics_t *reg, const char *name, const char *help,
                                     const double *bounds, size_t nbounds);

/* Labelled families: nlabels >= 1 label names, at most max_series label sets
 * (0 means SN_METRICS_DEFAULT_MAX_SERIES, above SN_METRICS_MAX_SERIES is
 * refused). Series are created by the _get functions below. */
sn_counter_vec_t *sn_metrics_counter_vec(sn_metrics_t *reg, const char *name, const char *help,
                                         const char *const *labels, size_t nlabels,
                                         size_t max_series);
sn_gauge_vec_t *sn_metrics_gauge_vec(sn_metrics_t *reg, const char *name, const char *help,
                                     const char *const *labels, size_t nlabels, size_t max_series);
sn_gauge_vec_t *sn_metrics_gauge_int_vec(sn_metrics_t *reg, const char *name, const char *help,
                                         const char *const *labels, size_t nlabels,
                                         size_t max_series);
sn_histogram_vec_t *sn_metrics_histogram_vec(sn_metrics_t *reg, const char *name, const char *help,
                                             const char *const *labels, size_t nlabels,
                                             size_t max_series, const double *bounds,
                                             size_t nbounds);

/* Returns the series for values (one per label name, in the family's order;
 * borrowed for the call, copied on first use), creating it if needed:
 *     sn_counter_vec_get(dlq, (const char *[]){"bad_magic"})
 * Values must be valid UTF-8 of at most SN_METRICS_VALUE_MAX bytes. Returns
 * NULL for a NULL family, an invalid value, or when the family already holds
 * max_series label sets (counted in sentinel_metrics_rejected_total, warned once
 * per family). An existing series is found without a lock; creating one takes
 * the registry mutex. The handle is owned by the registry: keep it. */
sn_counter_t *sn_counter_vec_get(sn_counter_vec_t *vec, const char *const *values);
sn_gauge_t *sn_gauge_vec_get(sn_gauge_vec_t *vec, const char *const *values);
sn_histogram_t *sn_histogram_vec_get(sn_histogram_vec_t *vec, const char *const *values);

/* ---- values computed at render time ------------------------------------ */

/* Returns the gauge's current value; NaN omits the sample from this scrape. */
typedef double (*sn_metrics_value_cb)(void *opaque);

/* Passed to a collector; valid only during the call. */
typedef struct sn_metrics_emitter sn_metrics_emitter_t;

/* Reports the current label sets and values through sn_metrics_emit(). */
typedef void (*sn_metrics_collect_cb)(void *opaque, sn_metrics_emitter_t *em);

/* Registers a gauge whose value fn computes at each render ("age of the oldest
 * unarchived event"). fn runs on the rendering thread (the HTTP thread) with
 * the registry mutex held: it must be thread-safe, quick, and must not call
 * into this registry. opaque is borrowed until sn_metrics_unregister_fn().
 * Registering the same name again replaces fn and opaque. Returns 0 or a
 * negative sn_err (SN_ERR_INVALID for a bad or clashing name, SN_ERR_NOMEM at
 * the max_metrics bound). */
int sn_metrics_gauge_fn(sn_metrics_t *reg, const char *name, const char *help,
                        sn_metrics_value_cb fn, void *opaque);

/* Registers a labelled gauge family whose samples fn reports at each render
 * with sn_metrics_emit() (consumer lag per assigned partition), with the same
 * rules as sn_metrics_gauge_fn(). At most max_series samples are kept per
 * render; the rest are dropped and counted as rejected. fn must not emit the
 * same label set twice in one call. */
int sn_metrics_gauge_vec_fn(sn_metrics_t *reg, const char *name, const char *help,
                            const char *const *labels, size_t nlabels, size_t max_series,
                            sn_metrics_collect_cb fn, void *opaque);

/* Reports one sample from a collector. values is borrowed for the call.
 * Returns 0, SN_ERR_INVALID for a bad label value (sample dropped) or
 * SN_ERR_NOMEM past max_series (sample dropped). NaN values are dropped. */
int sn_metrics_emit(sn_metrics_emitter_t *em, const char *const *values, double value);

/* Stops every callback registered with opaque: once this returns, none of them
 * is running or will run again, and their metrics vanish from the output until
 * registered again. Call it before freeing opaque. Returns how many were
 * stopped. */
size_t sn_metrics_unregister_fn(sn_metrics_t *reg, void *opaque);

/* ---- updates (lock-free, NULL-safe, callable from any thread) ---------- */

/* Adds 1 / n: one relaxed atomic add. */
void sn_counter_inc(sn_counter_t *c);
void sn_counter_add(sn_counter_t *c, uint64_t n);

/* Adds a fractional amount (seconds spent); negative, NaN and infinite values
 * are ignored because a counter never goes down. A compare-and-swap loop on a
 * separate cell, so integer adds stay one instruction. */
void sn_counter_add_double(sn_counter_t *c, double v);

/* Current value (integer part plus fractional adds). */
double sn_counter_value(const sn_counter_t *c);

/* Gauge updates work on both kinds. On an int gauge a double is rounded to the
 * nearest integer and saturated to the int64 range (NaN is ignored); on a double
 * gauge an int64 is converted. inc/dec add +1/-1. */
void sn_gauge_set(sn_gauge_t *g, double v);
void sn_gauge_add(sn_gauge_t *g, double v);
void sn_gauge_set_int(sn_gauge_t *g, int64_t v);
void sn_gauge_add_int(sn_gauge_t *g, int64_t v);
void sn_gauge_inc(sn_gauge_t *g);
void sn_gauge_dec(sn_gauge_t *g);
double sn_gauge_value(const sn_gauge_t *g);

/* Records one observation: one atomic add on its bucket and a CAS on the sum.
 * NaN is ignored (it would poison the sum for the life of the process). */
void sn_histogram_observe(sn_histogram_t *h, double v);

/* Number and sum of the observations so far. */
uint64_t sn_histogram_count(const sn_histogram_t *h);
double sn_histogram_sum(const sn_histogram_t *h);

/* ---- rendering ---------------------------------------------------------- */

/* Renders every metric in text format 0.0.4 into a buffer of at most
 * max_bytes (0 means SN_METRICS_DEFAULT_MAX_BYTES). On success *out is a
 * NUL-terminated string of *out_len bytes that the caller frees with free().
 * Returns SN_ERR_NOMEM when the output would exceed max_bytes or memory runs
 * out (*out is then NULL). Families without any series are left out. The
 * registry mutex is held throughout, so collectors run one render at a time. */
int sn_metrics_render(sn_metrics_t *reg, char **out, size_t *out_len, size_t max_bytes);

/* Renders into out (borrowed), unbounded in size. Returns 0 or SN_ERR_IO. */
int sn_metrics_render_file(sn_metrics_t *reg, FILE *out);

/* ---- bucket helpers ----------------------------------------------------- */

/* Fills out[0..n) with start, start*factor, ... (start > 0, factor > 1). */
int sn_metrics_buckets_exponential(double *out, size_t n, double start, double factor);

/* Fills out[0..n) with start, start+width, ... (width > 0). */
int sn_metrics_buckets_linear(double *out, size_t n, double start, double width);

#endif
