/* versions.h: the versions of the vendor libraries, each reported by the module
 * that wraps the library, so that `sentinel --version` names what really runs. */
#ifndef SN_VERSIONS_H
#define SN_VERSIONS_H

#include <stddef.h>

/* libcurl's runtime version ("7.88.1"); borrowed, static. */
const char *sn_curl_version(void);

#endif
