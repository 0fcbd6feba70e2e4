#include "common/versions.h"

#include <curl/curl.h>

const char *sn_curl_version(void) { return curl_version_info(CURLVERSION_NOW)->version; }
