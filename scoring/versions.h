/* versions.h: versions of the libraries the scoring module wraps. */
#ifndef SN_SCORING_VERSIONS_H
#define SN_SCORING_VERSIONS_H

#include <stddef.h>

/* Writes XGBoost's runtime version ("1.7.4") into buf; returns buf. */
const char *sn_scoring_xgboost_version(char *buf, size_t size);

/* hiredis's version ("0.14.1"; hiredis has no runtime call, so the headers'). */
const char *sn_scoring_hiredis_version(void);

#endif
