#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"

int sn_log_level = SN_LOG_INFO;
static int log_json = -1; /* -1: not decided yet */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void sn_log_set_level(enum sn_log_level level) { sn_log_level = (int)level; }

void sn_log_set_format(enum sn_log_format format) {
    if (format == SN_LOG_FORMAT_AUTO)
        log_json = !isatty(STDERR_FILENO);
    else
        log_json = format == SN_LOG_FORMAT_JSON;
}

int sn_log_level_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void sn_log_emit(enum sn_log_level level, const char *component, const char *fmt, ...) {
    char msg[2048];
    char esc[4096];
    char tbuf[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);

    if (log_json < 0) sn_log_set_format(SN_LOG_FORMAT_AUTO);

    /* One fprintf per line under a lock: lines from librdkafka's threads and ours
     * must not interleave. */
    pthread_mutex_lock(&log_lock);
    if (log_json) {
        sn_json_escape(esc, sizeof(esc), msg);
        fprintf(stderr,
                "{\"ts\":\"%s.%03dZ\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"%s\"}\n",
                tbuf, (int)(tv.tv_usec / 1000), level_names[level], component, esc);
    } else {
        fprintf(stderr, "%s.%03dZ %-5s %s: %s\n", tbuf, (int)(tv.tv_usec / 1000),
                level_names[level], component, msg);
    }
    pthread_mutex_unlock(&log_lock);
}
