/* json.h: the one JSON helper that does not warrant jansson: escaping a string
 * into a fixed buffer for log lines and hand-built records on the hot path. */
#ifndef SN_JSON_H
#define SN_JSON_H

#include <stddef.h>

/* Writes s escaped for a JSON string body (no quotes) into dst, truncating to
 * fit; dst is always NUL-terminated. Returns the length written. */
size_t sn_json_escape(char *dst, size_t dst_size, const char *s);

#endif
