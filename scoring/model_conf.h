/* model_conf.h: the config keys of the model, registry, trainer and promotion
 * gate (model.*, registry.*, train.*, gate.*, label.*). */
#ifndef SN_MODEL_CONF_H
#define SN_MODEL_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_model_conf_defs[];

#endif
