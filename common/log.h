/* log.h: one line per event on stderr.
 *
 * Text on a terminal, JSON lines otherwise (what a log shipper wants), chosen once
 * at start. The level is checked before the message is formatted, so a debug line
 * on the hot path costs one comparison when debug is off. */
#ifndef SN_LOG_H
#define SN_LOG_H

enum sn_log_level {
    SN_LOG_ERROR = 0,
    SN_LOG_WARN = 1,
    SN_LOG_INFO = 2,
    SN_LOG_DEBUG = 3,
};

enum sn_log_format {
    SN_LOG_FORMAT_AUTO = 0, /* text on a terminal, JSON otherwise */
    SN_LOG_FORMAT_TEXT,
    SN_LOG_FORMAT_JSON,
};

/* Current level; read by the SN_LOG macro, set with sn_log_set_level(). */
extern int sn_log_level;

void sn_log_set_level(enum sn_log_level level);
void sn_log_set_format(enum sn_log_format format);

/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int sn_log_level_parse(const char *name);

/* Emits one line. Use the macros below, which skip formatting when filtered. */
void sn_log_emit(enum sn_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SN_LOG(level, component, ...)                                                              \
    do {                                                                                           \
        if ((int)(level) <= sn_log_level) sn_log_emit((level), (component), __VA_ARGS__);          \
    } while (0)

#define sn_log_error(c, ...) SN_LOG(SN_LOG_ERROR, c, __VA_ARGS__)
#define sn_log_warn(c, ...) SN_LOG(SN_LOG_WARN, c, __VA_ARGS__)
#define sn_log_info(c, ...) SN_LOG(SN_LOG_INFO, c, __VA_ARGS__)
#define sn_log_debug(c, ...) SN_LOG(SN_LOG_DEBUG, c, __VA_ARGS__)

#endif
