#include "common/json.h"

#include <stdio.h>

size_t sn_json_escape(char *dst, size_t dst_size, const char *s) {
    size_t n = 0;

    if (dst_size == 0) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        const char *out = tmp;
        size_t len;

        switch (c) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        default:
            if (c < 0x20)
                snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            else {
                tmp[0] = (char)c;
                tmp[1] = '\0';
            }
        }
        for (len = 0; out[len]; len++)
            ;
        if (n + len >= dst_size) break; /* never split an escape sequence */
        for (size_t i = 0; i < len; i++) dst[n++] = out[i];
    }
    dst[n] = '\0';
    return n;
}
