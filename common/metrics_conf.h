/* metrics_conf.h: the config table of the metrics and health HTTP endpoint. */
#ifndef SN_METRICS_CONF_H
#define SN_METRICS_CONF_H

#include "common/conf.h"

/* metrics.* keys read by sn_httpd_new(); register with sn_conf_new(). */
extern const sn_conf_def_t sn_metrics_conf_defs[];

#endif
