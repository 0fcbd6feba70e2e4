#include "scoring/model.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xgboost/c_api.h>

#include "common/err.h"
#include "common/log.h"

#define UBJ_MAX_DEPTH 64

struct sn_model {
    BoosterHandle booster;
    size_t nfeatures;
    int rounds;
    int nthread;
};

struct sn_model_ctx {
    DMatrixHandle proxy;
};

/* ---- XGBoost plumbing ---- */

/* XGBoost prints warnings (unused parameters, deprecated formats) on its own
 * stream; route them through our log so that they carry a level and land in
 * the JSON log in production. */
static void xgb_log(const char *msg) { sn_log_warn("xgboost", "%s", msg); }

static void xgb_init_once(void) {
    XGBRegisterLogCallback(xgb_log);
    XGBSetGlobalConfig("{\"verbosity\": 1}");
}

static pthread_once_t xgb_once = PTHREAD_ONCE_INIT;

static void xgb_init(void) { pthread_once(&xgb_once, xgb_init_once); }

/* XGBoost reports failures as -1 with a thread-local message of the form
 * "[10:10:58] ./src/learner.cc:1463: Unsupported prediction type:2" followed
 * by a multi-line stack trace. Our logs are one line per event, so only the
 * message itself is kept. */
static int xgb_fail(char *errstr, size_t errstr_size, const char *what) {
    const char *m = XGBGetLastError(), *p;
    size_t len;

    if (!m) m = "unknown XGBoost error";
    if (m[0] == '[' && (p = strstr(m, "] ")) && (p = strstr(p + 2, ": "))) m = p + 2;
    len = strcspn(m, "\n");
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: %s: %.*s", what, (int)len, m);
}

/* The __array_interface__ of a row-major float32 matrix, as XGBoost's
 * in-place prediction and dense DMatrix constructor want it: the data pointer
 * travels as an integer inside the JSON. */
static void array_interface(char *buf, size_t size, const float *x, size_t nrows, size_t ncols) {
    snprintf(buf, size,
             "{\"data\": [%" PRIuPTR ", true], \"shape\": [%zu, %zu], \"typestr\": \"<f4\", "
             "\"version\": 3}",
             (uintptr_t)x, nrows, ncols);
}

/* A dense DMatrix over x; XGBoost copies the data, so x may go afterwards. */
static int dmatrix_dense(const float *x, size_t nrows, size_t ncols, int nthread,
                         DMatrixHandle *out, char *errstr, size_t errstr_size) {
    char ai[256], cfg[64];

    array_interface(ai, sizeof(ai), x, nrows, ncols);
    snprintf(cfg, sizeof(cfg), "{\"missing\": NaN, \"nthread\": %d}", nthread);
    if (XGDMatrixCreateFromDense(ai, cfg, out) != 0) return xgb_fail(errstr, errstr_size, "matrix");
    return 0;
}

/* ---- validation before XGBoost sees the bytes ----
 *
 * XGBoost 1.7 trusts the model it loads: a truncated UBJSON document makes its
 * reader run past the buffer, and a corrupted child index or feature index in
 * a tree makes loading or prediction read out of bounds. So the document is
 * decoded here first (UBJSON into the same JSON tree as a .json model, every
 * length checked against the bytes left), and the trees are checked for what
 * XGBoost relies on: array lengths, child and parent links, feature indices,
 * numerical splits only. Only a model that passes is handed to XGBoost. */

struct ubj {
    const uint8_t *p;
    size_t len, pos;
    char *errstr;
    size_t errstr_size;
};

static int ubj_bad(struct ubj *u, const char *why) {
    return sn_err_set(u->errstr, u->errstr_size, SN_ERR_INVALID,
                      "model: corrupt UBJSON at byte %zu: %s", u->pos, why);
}

static int ubj_need(struct ubj *u, size_t n) {
    if (n > u->len - u->pos) return ubj_bad(u, "truncated");
    return 0;
}

/* Size of a fixed-size scalar's payload, or -1 for markers with a length. */
static int ubj_fixed_size(uint8_t m) {
    switch (m) {
    case 'Z':
    case 'N':
    case 'T':
    case 'F': return 0;
    case 'i':
    case 'U':
    case 'C': return 1;
    case 'I': return 2;
    case 'l':
    case 'd': return 4;
    case 'L':
    case 'D': return 8;
    default: return -1;
    }
}

static uint64_t ubj_be(const uint8_t *p, int n) {
    uint64_t r = 0;

    for (int i = 0; i < n; i++) r = (r << 8) | p[i];
    return r;
}

/* Decodes a fixed-size scalar with marker m at u->pos. */
static int ubj_scalar(struct ubj *u, uint8_t m, json_t **out) {
    int sz = ubj_fixed_size(m);
    const uint8_t *p;

    if (sz < 0) return ubj_bad(u, "unknown marker");
    if (ubj_need(u, (size_t)sz)) return SN_ERR_INVALID;
    p = u->p + u->pos;
    u->pos += (size_t)sz;
    switch (m) {
    case 'Z': *out = json_null(); break;
    case 'T': *out = json_true(); break;
    case 'F': *out = json_false(); break;
    case 'i': *out = json_integer((int8_t)p[0]); break;
    case 'U': *out = json_integer(p[0]); break;
    case 'C': *out = json_stringn((const char *)p, 1); break;
    case 'I': *out = json_integer((int16_t)ubj_be(p, 2)); break;
    case 'l': *out = json_integer((int32_t)ubj_be(p, 4)); break;
    case 'L': *out = json_integer((json_int_t)ubj_be(p, 8)); break;
    case 'd': {
        uint32_t bits = (uint32_t)ubj_be(p, 4);
        float f;

        memcpy(&f, &bits, sizeof(f));
        *out = isfinite(f) ? json_real(f) : json_null();
        break;
    }
    case 'D': {
        uint64_t bits = ubj_be(p, 8);
        double d;

        memcpy(&d, &bits, sizeof(d));
        *out = isfinite(d) ? json_real(d) : json_null();
        break;
    }
    default: return ubj_bad(u, "no-op where a value belongs");
    }
    if (!*out) return sn_err_set(u->errstr, u->errstr_size, SN_ERR_NOMEM, "model: out of memory");
    return 0;
}

/* Reads an integer (marker included) used as a length or count. */
static int ubj_length(struct ubj *u, uint64_t *out) {
    uint8_t m;
    json_t *v = NULL;
    json_int_t n;

    if (ubj_need(u, 1)) return SN_ERR_INVALID;
    m = u->p[u->pos++];
    if (m != 'i' && m != 'U' && m != 'I' && m != 'l' && m != 'L')
        return ubj_bad(u, "bad length marker");
    if (ubj_scalar(u, m, &v)) return SN_ERR_INVALID;
    n = json_integer_value(v);
    json_decref(v);
    if (n < 0) return ubj_bad(u, "negative length");
    *out = (uint64_t)n;
    return 0;
}

/* A string body (length then bytes); *out NULL-terminated copy when asked. */
static int ubj_string(struct ubj *u, char **key, json_t **out) {
    uint64_t n;
    const char *s;

    if (ubj_length(u, &n)) return SN_ERR_INVALID;
    if (n > u->len - u->pos) return ubj_bad(u, "string longer than the data");
    s = (const char *)u->p + u->pos;
    u->pos += (size_t)n;
    if (key) {
        if (!(*key = malloc((size_t)n + 1)))
            return sn_err_set(u->errstr, u->errstr_size, SN_ERR_NOMEM, "model: out of memory");
        memcpy(*key, s, (size_t)n);
        (*key)[n] = '\0';
        if (strlen(*key) != n) {
            free(*key);
            *key = NULL;
            return ubj_bad(u, "NUL in a key");
        }
        return 0;
    }
    if (!(*out = json_stringn(s, (size_t)n))) return ubj_bad(u, "string is not UTF-8");
    return 0;
}

static int ubj_value(struct ubj *u, uint8_t m, int depth, json_t **out);

/* Decodes an array or object after its opening marker, both the plain form
 * (closed by ']' or '}') and the optimised one ('$' type, '#' count) that
 * XGBoost uses for its typed arrays. */
static int ubj_container(struct ubj *u, int object, int depth, json_t **out) {
    uint8_t type = 0;
    uint64_t count = 0;
    int counted = 0, rc = SN_ERR_INVALID;
    json_t *c = object ? json_object() : json_array();

    *out = NULL;
    if (!c) return sn_err_set(u->errstr, u->errstr_size, SN_ERR_NOMEM, "model: out of memory");
    if (depth > UBJ_MAX_DEPTH) {
        ubj_bad(u, "nested too deep");
        goto fail;
    }
    if (ubj_need(u, 1)) goto fail;
    if (u->p[u->pos] == '$') {
        u->pos++;
        if (ubj_need(u, 1)) goto fail;
        type = u->p[u->pos++];
        if (type == 'N' || (ubj_fixed_size(type) < 0 && type != 'S' && type != 'H' && type != '[' &&
                            type != '{')) {
            ubj_bad(u, "bad container type");
            goto fail;
        }
        if (ubj_need(u, 1) || u->p[u->pos] != '#') {
            ubj_bad(u, "typed container without a count");
            goto fail;
        }
    }
    if (ubj_need(u, 1) == 0 && u->p[u->pos] == '#') {
        int sz = type ? ubj_fixed_size(type) : -1;

        u->pos++;
        if (ubj_length(u, &count)) goto fail;
        counted = 1;
        /* refuse counts the data cannot hold before looping on them */
        if ((sz > 0 && count > (u->len - u->pos) / (uint64_t)sz) ||
            (sz == 0 && count > ((uint64_t)1 << 20)) || (sz < 0 && count > u->len - u->pos)) {
            ubj_bad(u, "count beyond the data");
            goto fail;
        }
    }
    for (uint64_t i = 0;; i++) {
        char *key = NULL;
        json_t *v = NULL;
        uint8_t m;

        if (counted && i == count) break;
        if (!counted) {
            if (ubj_need(u, 1)) goto fail;
            if (u->p[u->pos] == (object ? '}' : ']')) {
                u->pos++;
                break;
            }
            if (u->p[u->pos] == 'N' && !object) { /* no-op: not an element */
                u->pos++;
                continue;
            }
        }
        if (object && ubj_string(u, &key, NULL)) goto fail;
        if (type) {
            m = type;
        } else if (ubj_need(u, 1)) {
            free(key);
            goto fail;
        } else {
            m = u->p[u->pos++];
        }
        if (ubj_value(u, m, depth + 1, &v)) {
            free(key);
            goto fail;
        }
        rc = object ? json_object_set_new(c, key, v) : json_array_append_new(c, v);
        free(key);
        if (rc != 0) {
            rc = sn_err_set(u->errstr, u->errstr_size, SN_ERR_NOMEM, "model: out of memory");
            goto fail;
        }
        rc = SN_ERR_INVALID;
    }
    *out = c;
    return 0;
fail:
    json_decref(c);
    return rc;
}

static int ubj_value(struct ubj *u, uint8_t m, int depth, json_t **out) {
    switch (m) {
    case 'S':
    case 'H': return ubj_string(u, NULL, out);
    case '[': return ubj_container(u, 0, depth, out);
    case '{': return ubj_container(u, 1, depth, out);
    default: return ubj_scalar(u, m, out);
    }
}

/* Decodes buf into a JSON tree, from UBJSON or JSON text. XGBoost's legacy
 * binary format is refused: it is deprecated and has no structure that
 * could be checked. */
static int decode_document(const void *buf, size_t len, int *is_json, json_t **doc, char *errstr,
                           size_t errstr_size) {
    const uint8_t *p = buf;
    size_t i = 0;

    *doc = NULL;
    if (len == 0) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: empty file");
    while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')) i++;
    if (i + 1 < len && p[i] == '{' &&
        (p[i + 1] == '"' || p[i + 1] == '}' || p[i + 1] == ' ' || p[i + 1] == '\n' ||
         p[i + 1] == '\t' || p[i + 1] == '\r')) {
        json_error_t jerr;

        if (!(*doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "model: corrupt JSON at byte %d: %s", jerr.position, jerr.text);
        *is_json = 1;
        return 0;
    }
    if (p[0] == '{') {
        struct ubj u = {p, len, 1, errstr, errstr_size};

        if (ubj_container(&u, 1, 0, doc)) return SN_ERR_INVALID;
        if (u.pos != len) {
            json_decref(*doc);
            *doc = NULL;
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "model: %zu bytes after the end of the UBJSON document", len - u.pos);
        }
        *is_json = 0;
        return 0;
    }
    return sn_err_set(
        errstr, errstr_size, SN_ERR_INVALID,
        "model: not an XGBoost UBJSON or JSON model (legacy binary models are refused)");
}

/* XGBoost stores its scalar parameters as decimal strings ("num_feature":
 * "9"); reads one as a bounded integer. */
static int param_int(json_t *obj, const char *key, long long lo, long long hi, long long *out) {
    const char *s = json_string_value(json_object_get(obj, key));
    char *end;
    long long v;

    if (!s || !*s) return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int tree_bad(char *errstr, size_t errstr_size, size_t t, const char *why) {
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: tree %zu: %s", t, why);
}

static json_int_t arr_int(json_t *a, size_t i) { return json_integer_value(json_array_get(a, i)); }

/* The checks XGBoost's tree loader and predictor skip. A node's children
 * come after it (XGBoost allocates them on expansion), each non-root node
 * has exactly the parent that points at it, and a split reads an existing
 * feature. Together these make every walk from the root end at a leaf. */
static int check_tree(json_t *tree, size_t t, long long nf, char *errstr, size_t errstr_size) {
    static const char *const arrays[] = {"left_children", "right_children",   "parents",
                                         "split_indices", "split_conditions", "default_left",
                                         "base_weights",  "loss_changes",     "sum_hessian"};
    json_t *tp = json_object_get(tree, "tree_param"), *left, *right, *parents, *split, *stype,
           *cond;
    long long nodes, tnf, v;

    if (!json_is_object(tp) || param_int(tp, "num_nodes", 1, 1 << 26, &nodes) != 0 ||
        param_int(tp, "num_feature", 0, 1 << 30, &tnf) != 0)
        return tree_bad(errstr, errstr_size, t, "bad tree_param");
    if (tnf != nf) return tree_bad(errstr, errstr_size, t, "num_feature differs from the model's");
    if (param_int(tp, "num_deleted", 0, 0, &v) != 0)
        return tree_bad(errstr, errstr_size, t, "has deleted nodes");
    if (json_object_get(tp, "size_leaf_vector") && param_int(tp, "size_leaf_vector", 0, 0, &v) != 0)
        return tree_bad(errstr, errstr_size, t, "has leaf vectors");
    for (size_t k = 0; k < sizeof(arrays) / sizeof(arrays[0]); k++) {
        json_t *a = json_object_get(tree, arrays[k]);

        if (!json_is_array(a) || json_array_size(a) != (size_t)nodes) {
            char why[96];

            snprintf(why, sizeof(why), "%s is missing or not num_nodes long", arrays[k]);
            return tree_bad(errstr, errstr_size, t, why);
        }
    }
    if (json_integer_value(json_object_get(tree, "id")) != (json_int_t)t)
        return tree_bad(errstr, errstr_size, t, "id out of order");
    left = json_object_get(tree, "left_children");
    right = json_object_get(tree, "right_children");
    parents = json_object_get(tree, "parents");
    split = json_object_get(tree, "split_indices");
    cond = json_object_get(tree, "split_conditions");
    stype = json_object_get(tree, "split_type");
    if (stype && (!json_is_array(stype) || json_array_size(stype) != (size_t)nodes))
        return tree_bad(errstr, errstr_size, t, "split_type is not num_nodes long");
    if (json_array_size(json_object_get(tree, "categories_nodes")) != 0)
        return tree_bad(errstr, errstr_size, t, "categorical splits are not supported");
    if (arr_int(parents, 0) != 2147483647)
        return tree_bad(errstr, errstr_size, t, "root has a parent");
    for (long long i = 0; i < nodes; i++) {
        json_int_t l = arr_int(left, (size_t)i), r = arr_int(right, (size_t)i);

        if (!json_is_integer(json_array_get(left, (size_t)i)) ||
            !json_is_integer(json_array_get(right, (size_t)i)) ||
            !json_is_integer(json_array_get(parents, (size_t)i)) ||
            !json_is_integer(json_array_get(split, (size_t)i)) ||
            !json_is_number(json_array_get(cond, (size_t)i)))
            return tree_bad(errstr, errstr_size, t, "a node entry has the wrong type");
        if (stype && arr_int(stype, (size_t)i) != 0)
            return tree_bad(errstr, errstr_size, t, "categorical splits are not supported");
        if (l == -1 && r == -1) continue; /* leaf */
        if (l <= i || r <= i || l >= nodes || r >= nodes || l == r)
            return tree_bad(errstr, errstr_size, t, "child index out of range");
        if (arr_int(parents, (size_t)l) != i || arr_int(parents, (size_t)r) != i)
            return tree_bad(errstr, errstr_size, t, "children and parents disagree");
        if (arr_int(split, (size_t)i) < 0 || arr_int(split, (size_t)i) >= nf)
            return tree_bad(errstr, errstr_size, t, "split on a feature the model does not have");
    }
    for (long long i = 1; i < nodes; i++) {
        json_int_t p = arr_int(parents, (size_t)i);

        if (p < 0 || p >= i || (arr_int(left, (size_t)p) != i && arr_int(right, (size_t)p) != i))
            return tree_bad(errstr, errstr_size, t, "a node is not its parent's child");
    }
    return 0;
}

/* Checks the learner around the trees: a single-output gbtree with as many
 * trees as it says, every tree valid. Returns the number of features. */
static int check_model(json_t *doc, long long *nf_out, char *errstr, size_t errstr_size) {
    json_t *learner = json_object_get(doc, "learner"), *lmp, *gb, *model, *trees, *info, *gmp;
    const char *gbname;
    long long nf, v, ntrees;
    size_t i;
    json_t *tree;

    if (!json_is_object(learner))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: no learner: not an XGBoost model");
    lmp = json_object_get(learner, "learner_model_param");
    if (!json_is_object(lmp) || param_int(lmp, "num_feature", 1, 1 << 30, &nf) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: bad learner_model_param.num_feature");
    if (param_int(lmp, "num_class", 0, 0, &v) != 0 ||
        (json_object_get(lmp, "num_target") && param_int(lmp, "num_target", 1, 1, &v) != 0))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: not a single-output model");
    gb = json_object_get(learner, "gradient_booster");
    gbname = json_string_value(json_object_get(gb, "name"));
    if (!gbname || strcmp(gbname, "gbtree") != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: booster is %s, expected gbtree", gbname ? gbname : "(none)");
    model = json_object_get(gb, "model");
    trees = json_object_get(model, "trees");
    info = json_object_get(model, "tree_info");
    gmp = json_object_get(model, "gbtree_model_param");
    if (!json_is_array(trees) || !json_is_array(info) ||
        json_array_size(info) != json_array_size(trees) ||
        param_int(gmp, "num_trees", 0, 1 << 26, &ntrees) != 0 ||
        (size_t)ntrees != json_array_size(trees) ||
        param_int(gmp, "num_parallel_tree", 1, 1, &v) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: trees, tree_info and num_trees disagree");
    json_array_foreach(trees, i, tree) {
        int rc;

        if (arr_int(info, i) != 0 || !json_is_integer(json_array_get(info, i)))
            return tree_bad(errstr, errstr_size, i, "tree_info is not 0 (multi-class model)");
        if ((rc = check_tree(tree, i, nf, errstr, errstr_size)) != 0) return rc;
    }
    *nf_out = nf;
    return 0;
}

/* The objective is part of the model: a regression or multi-class model
 * would load and predict, but its outputs would not be failure probabilities. */
static int check_objective(BoosterHandle b, char *errstr, size_t errstr_size) {
    bst_ulong len = 0;
    const char *cfg = NULL;
    json_t *doc = NULL;
    const char *obj;
    int rc = 0;

    if (XGBoosterSaveJsonConfig(b, &len, &cfg) != 0) return xgb_fail(errstr, errstr_size, "config");
    if (!(doc = json_loadb(cfg, len, 0, NULL)))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: unreadable config");
    obj = json_string_value(
        json_object_get(json_object_get(json_object_get(doc, "learner"), "objective"), "name"));
    if (!obj || strcmp(obj, "binary:logistic") != 0)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "model: objective is %s, expected binary:logistic", obj ? obj : "(none)");
    json_decref(doc);
    return rc;
}

static int set_nthread(BoosterHandle b, int nthread, char *errstr, size_t errstr_size) {
    char v[16];

    snprintf(v, sizeof(v), "%d", nthread);
    if (XGBoosterSetParam(b, "nthread", v) != 0) return xgb_fail(errstr, errstr_size, "nthread");
    return 0;
}

/* Wraps a booster we own into a model, reading its shape. Frees b on failure. */
static sn_model_t *model_wrap(BoosterHandle b, size_t expect_nfeatures, int nthread, char *errstr,
                              size_t errstr_size) {
    sn_model_t *m = NULL;
    bst_ulong nf = 0;
    int rounds = 0;

    if (nthread < 1) nthread = 1;
    if (XGBoosterGetNumFeature(b, &nf) != 0) {
        xgb_fail(errstr, errstr_size, "number of features");
        goto fail;
    }
    if (XGBoosterBoostedRounds(b, &rounds) != 0) {
        xgb_fail(errstr, errstr_size, "rounds");
        goto fail;
    }
    if (nf == 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: has no features");
        goto fail;
    }
    if (expect_nfeatures && nf != expect_nfeatures) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "model: expects %llu features, the card's feature spec yields %zu",
                   (unsigned long long)nf, expect_nfeatures);
        goto fail;
    }
    if (check_objective(b, errstr, errstr_size) != 0) goto fail;
    if (set_nthread(b, nthread, errstr, errstr_size) != 0) goto fail;
    if (!(m = calloc(1, sizeof(*m)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->booster = b;
    m->nfeatures = (size_t)nf;
    m->rounds = rounds;
    m->nthread = nthread;
    return m;
fail:
    XGBoosterFree(b);
    return NULL;
}

/* ---- loading ---- */

sn_model_t *sn_model_load(const void *buf, size_t len, size_t expect_nfeatures, int nthread,
                          char *errstr, size_t errstr_size) {
    BoosterHandle b = NULL;
    json_t *doc = NULL;
    long long nf = 0;
    int is_json = 0, rc;

    xgb_init();
    if (!buf || len > SN_MODEL_MAX_BYTES) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: missing or larger than %u bytes",
                   SN_MODEL_MAX_BYTES);
        return NULL;
    }
    if (decode_document(buf, len, &is_json, &doc, errstr, errstr_size) != 0) return NULL;
    rc = check_model(doc, &nf, errstr, errstr_size);
    json_decref(doc);
    if (rc != 0) return NULL;
    if (XGBoosterCreate(NULL, 0, &b) != 0) {
        xgb_fail(errstr, errstr_size, "create");
        return NULL;
    }
    if (XGBoosterLoadModelFromBuffer(b, buf, (bst_ulong)len) != 0) {
        xgb_fail(errstr, errstr_size, is_json ? "load JSON" : "load UBJSON");
        XGBoosterFree(b);
        return NULL;
    }
    return model_wrap(b, expect_nfeatures, nthread, errstr, errstr_size);
}

sn_model_t *sn_model_load_file(const char *path, size_t expect_nfeatures, int nthread, char *errstr,
                               size_t errstr_size) {
    FILE *fp = NULL;
    struct stat st;
    uint8_t *buf = NULL;
    sn_model_t *m = NULL;

    if (!(fp = fopen(path, "rb"))) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "model: cannot open %s: %s", path,
                   strerror(errno));
        goto out;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SN_MODEL_MAX_BYTES) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "model: %s is not a regular file of at most %u bytes", path, SN_MODEL_MAX_BYTES);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        sn_err_set(errstr, errstr_size, SN_ERR_IO, "model: cannot read %s", path);
        goto out;
    }
    m = sn_model_load(buf, (size_t)st.st_size, expect_nfeatures, nthread, errstr, errstr_size);
out:
    free(buf);
    if (fp) fclose(fp);
    return m;
}

void sn_model_destroy(sn_model_t *model) {
    if (!model) return;
    XGBoosterFree(model->booster);
    free(model);
}

size_t sn_model_nfeatures(const sn_model_t *model) { return model->nfeatures; }

int sn_model_rounds(const sn_model_t *model) { return model->rounds; }

int sn_model_save(const sn_model_t *model, const char *format, uint8_t **out, size_t *out_len,
                  char *errstr, size_t errstr_size) {
    char cfg[64];
    bst_ulong len = 0;
    const char *data = NULL;

    *out = NULL;
    *out_len = 0;
    if (strcmp(format, "ubj") != 0 && strcmp(format, "json") != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: unknown format \"%s\"",
                          format);
    snprintf(cfg, sizeof(cfg), "{\"format\": \"%s\"}", format);
    if (XGBoosterSaveModelToBuffer(model->booster, cfg, &len, &data) != 0)
        return xgb_fail(errstr, errstr_size, "save");
    /* The buffer is XGBoost's thread-local scratch: copy it out now. */
    if (!(*out = malloc(len ? len : 1)))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    memcpy(*out, data, len);
    *out_len = len;
    return 0;
}

/* ---- prediction ---- */

sn_model_ctx_t *sn_model_ctx_new(char *errstr, size_t errstr_size) {
    sn_model_ctx_t *ctx = calloc(1, sizeof(*ctx));

    xgb_init();
    if (!ctx) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (XGProxyDMatrixCreate(&ctx->proxy) != 0) {
        xgb_fail(errstr, errstr_size, "proxy matrix");
        free(ctx);
        return NULL;
    }
    return ctx;
}

void sn_model_ctx_destroy(sn_model_ctx_t *ctx) {
    if (!ctx) return;
    XGDMatrixFree(ctx->proxy);
    free(ctx);
}

/* In-place prediction: XGBoost reads the caller's matrix through the array
 * interface without copying it into a DMatrix, which is what keeps batch
 * scoring cheap. 1.7.4 requires every key of the config below ("cache_id"
 * must be 0, "missing" is mandatory), and the proxy matrix is filled by the
 * call, hence one per thread. */
int sn_model_predict(const sn_model_t *model, sn_model_ctx_t *ctx, const float *x, size_t nrows,
                     float *out, char *errstr, size_t errstr_size) {
    static const char cfg[] = "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
                              "\"iteration_end\": 0, \"strict_shape\": false, \"cache_id\": 0, "
                              "\"missing\": NaN}";
    char ai[256];
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0, total = 1;
    const float *res = NULL;

    if (nrows == 0) return 0;
    if (!x || !out || !ctx)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: predict: NULL argument");
    array_interface(ai, sizeof(ai), x, nrows, model->nfeatures);
    if (XGBoosterPredictFromDense(model->booster, ai, cfg, ctx->proxy, &shape, &dim, &res) != 0)
        return xgb_fail(errstr, errstr_size, "predict");
    for (bst_ulong i = 0; i < dim; i++) total *= shape[i];
    if (total != nrows)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: predict returned %llu values for %zu rows",
                          (unsigned long long)total, nrows);
    memcpy(out, res, nrows * sizeof(float));
    return 0;
}

/* SHAP values need a real DMatrix: XGBoost 1.7's in-place prediction only
 * computes values and margins and aborts on contributions. */
int sn_model_contribs(const sn_model_t *model, const float *x, size_t nrows, float *out,
                      char *errstr, size_t errstr_size) {
    static const char cfg[] = "{\"type\": 2, \"training\": false, \"iteration_begin\": 0, "
                              "\"iteration_end\": 0, \"strict_shape\": false}";
    DMatrixHandle dm = NULL;
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0, total = 1;
    const float *res = NULL;
    int rc;

    if (nrows == 0) return 0;
    if (!x || !out)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: contributions: NULL argument");
    if ((rc = dmatrix_dense(x, nrows, model->nfeatures, model->nthread, &dm, errstr,
                            errstr_size)) != 0)
        return rc;
    if (XGBoosterPredictFromDMatrix(model->booster, dm, cfg, &shape, &dim, &res) != 0) {
        rc = xgb_fail(errstr, errstr_size, "contributions");
        goto out;
    }
    for (bst_ulong i = 0; i < dim; i++) total *= shape[i];
    if (total != nrows * (model->nfeatures + 1)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "model: contributions: %llu values for %zu rows", (unsigned long long)total,
                        nrows);
        goto out;
    }
    memcpy(out, res, total * sizeof(float));
out:
    XGDMatrixFree(dm);
    return rc;
}

/* The k (<= nf) largest contributions of one row c (nf + 1 floats, the bias
 * last and never picked), largest first, with the row's values from x. k is
 * tiny (3 for an alert): a partial selection beats a sort. */
static void top_k(const float *c, const float *x, size_t nf, size_t k, sn_model_reason_t *out) {
    for (size_t i = 0; i < k; i++) {
        size_t best = nf;

        for (size_t j = 0; j < nf; j++) {
            int taken = 0;

            for (size_t t = 0; t < i; t++) taken |= out[t].feature == j;
            if (!taken && (best == nf || c[j] > c[best])) best = j;
        }
        out[i] = (sn_model_reason_t){(uint32_t)best, x[best], c[best]};
    }
}

int sn_model_explain(const sn_model_t *model, const float *x, size_t k, sn_model_reason_t *out,
                     size_t *nout, char *errstr, size_t errstr_size) {
    return sn_model_explain_rows(model, x, NULL, 1, k, out, nout, errstr, errstr_size);
}

/* Every XGBoost contributions call builds a DMatrix, and building one costs
 * about as much as explaining a row (the copy, and XGBoost 1.7 reading the
 * cgroup CPU quota files for the matrix's own thread count): explaining the
 * alerts of a batch in one call pays that once. The rows are gathered into
 * one dense block first, since the alert rows are scattered over the batch. */
int sn_model_explain_rows(const sn_model_t *model, const float *x, const size_t *rows, size_t nrows,
                          size_t k, sn_model_reason_t *out, size_t *nout, char *errstr,
                          size_t errstr_size) {
    size_t nf = model->nfeatures;
    float *c = NULL, *g = NULL;
    const float *block = x;
    int rc = 0;

    *nout = 0;
    if (k > nf) k = nf;
    if (nrows == 0) return 0;
    if (!x || !out)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "model: explain: NULL argument");
    if (nrows > SN_MODEL_EXPLAIN_ROWS_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: explain: %zu rows in one call, more than %d", nrows,
                          SN_MODEL_EXPLAIN_ROWS_MAX);
    if (!(c = malloc(nrows * (nf + 1) * sizeof(*c)))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (rows) {
        if (!(g = malloc(nrows * nf * sizeof(*g)))) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nrows; i++) memcpy(g + i * nf, x + rows[i] * nf, nf * sizeof(*g));
        block = g;
    }
    if ((rc = sn_model_contribs(model, block, nrows, c, errstr, errstr_size)) != 0) goto out;
    for (size_t i = 0; i < nrows; i++) top_k(c + i * (nf + 1), block + i * nf, nf, k, out + i * k);
    *nout = k;
out:
    free(g);
    free(c);
    return rc;
}

int sn_model_warmup(const sn_model_t *model, sn_model_ctx_t *ctx, char *errstr,
                    size_t errstr_size) {
    float *row = malloc(model->nfeatures * sizeof(*row)), score = 0;
    sn_model_reason_t r[3];
    size_t n;
    int rc;

    if (!row) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < model->nfeatures; i++) row[i] = NAN;
    rc = sn_model_predict(model, ctx, row, 1, &score, errstr, errstr_size);
    if (rc == 0) rc = sn_model_explain(model, row, 3, r, &n, errstr, errstr_size);
    if (rc == 0 && !(score >= 0 && score <= 1))
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "model: warm-up score %g is not a probability", (double)score);
    free(row);
    return rc;
}

/* ---- training ---- */

static int metric_maximised(const char *metric) { return strcmp(metric, "logloss") != 0; }

char *sn_model_params_json(const sn_model_params_t *p, double spw) {
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:I, s:i, s:i, s:i}", "objective",
        "binary:logistic", "tree_method", "hist", "max_depth", p->max_depth, "eta", p->eta,
        "subsample", p->subsample, "colsample_bytree", p->colsample_bytree, "min_child_weight",
        p->min_child_weight, "lambda", p->lambda, "gamma", p->gamma, "scale_pos_weight", spw,
        "eval_metric", p->eval_metric, "seed", (json_int_t)p->seed, "nthread", p->nthread,
        "num_boost_round", p->rounds, "early_stopping_rounds", p->early_stopping_rounds);
    char *s = o ? json_dumps(o, JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;

    json_decref(o);
    return s;
}

static int set_params(BoosterHandle b, const sn_model_params_t *p, double spw, char *errstr,
                      size_t errstr_size) {
    char v[10][48];
    const char *kv[][2] = {
        {"objective", "binary:logistic"},
        {"tree_method", "hist"},
        {"validate_parameters", "1"},
        {"max_depth", v[0]},
        {"eta", v[1]},
        {"subsample", v[2]},
        {"colsample_bytree", v[3]},
        {"min_child_weight", v[4]},
        {"lambda", v[5]},
        {"gamma", v[6]},
        {"scale_pos_weight", v[7]},
        {"seed", v[8]},
        {"nthread", v[9]},
        {"eval_metric", p->eval_metric},
    };

    snprintf(v[0], sizeof(v[0]), "%d", p->max_depth);
    snprintf(v[1], sizeof(v[1]), "%.17g", p->eta);
    snprintf(v[2], sizeof(v[2]), "%.17g", p->subsample);
    snprintf(v[3], sizeof(v[3]), "%.17g", p->colsample_bytree);
    snprintf(v[4], sizeof(v[4]), "%.17g", p->min_child_weight);
    snprintf(v[5], sizeof(v[5]), "%.17g", p->lambda);
    snprintf(v[6], sizeof(v[6]), "%.17g", p->gamma);
    snprintf(v[7], sizeof(v[7]), "%.17g", spw);
    snprintf(v[8], sizeof(v[8]), "%" PRIu64, p->seed);
    snprintf(v[9], sizeof(v[9]), "%d", p->nthread > 0 ? p->nthread : 1);
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (XGBoosterSetParam(b, kv[i][0], kv[i][1]) != 0)
            return xgb_fail(errstr, errstr_size, kv[i][0]);
    return 0;
}

/* Finds "<split>-<metric>:<value>" in XGBoost's evaluation line. */
static int parse_eval(const char *line, const char *split, const char *metric, double *out) {
    char key[64];
    const char *p;
    char *end;

    snprintf(key, sizeof(key), "\t%s-%s:", split, metric);
    if (!(p = strstr(line, key))) return -1;
    p += strlen(key);
    *out = strtod(p, &end);
    return end == p ? -1 : 0;
}

static int make_split(const sn_model_data_t *d, size_t nf, int nthread, DMatrixHandle *out,
                      char *errstr, size_t errstr_size) {
    float *lab = NULL;
    int rc;

    if ((rc = dmatrix_dense(d->x, d->nrows, nf, nthread, out, errstr, errstr_size)) != 0) return rc;
    if (!(lab = malloc(d->nrows * sizeof(*lab))))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < d->nrows; i++) lab[i] = d->y[i];
    if (XGDMatrixSetFloatInfo(*out, "label", lab, (bst_ulong)d->nrows) != 0)
        rc = xgb_fail(errstr, errstr_size, "labels");
    free(lab);
    return rc;
}

/* Trains round by round rather than in one call so that early stopping and
 * progress are ours: the watched metric on validation decides the best round
 * (strictly better, as XGBoost's Python callback does), and the model is cut
 * to it with XGBoosterSlice so that what is saved is what was validated
 * (Python's xgb.train keeps the extra rounds and only records
 * best_iteration). */
int sn_model_train(const sn_model_params_t *p, size_t nf, const sn_model_data_t *train,
                   const sn_model_data_t *valid, sn_model_progress_fn progress, void *opaque,
                   sn_model_t **out, sn_model_train_info_t *info, char *errstr,
                   size_t errstr_size) {
    DMatrixHandle dm[2] = {NULL, NULL};
    BoosterHandle b = NULL, cut = NULL;
    const char *names[2] = {"train", "valid"};
    uint64_t pos = 0;
    double spw = p->scale_pos_weight, last = NAN;
    int rc = 0, maxim = metric_maximised(p->eval_metric), nthread = p->nthread > 0 ? p->nthread : 1;

    xgb_init();
    *out = NULL;
    memset(info, 0, sizeof(*info));
    snprintf(info->metric, sizeof(info->metric), "%s", p->eval_metric);
    if (strcmp(p->eval_metric, "aucpr") != 0 && strcmp(p->eval_metric, "auc") != 0 &&
        strcmp(p->eval_metric, "logloss") != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: eval metric must be aucpr, auc or logloss");
    if (!train->nrows || !valid->nrows || nf == 0 || p->rounds < 1)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: empty training or validation data");
    for (size_t i = 0; i < train->nrows; i++) pos += train->y[i];
    if (pos == 0 || pos == train->nrows)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "model: the training rows have only one class (%llu positives of %zu)",
                          (unsigned long long)pos, train->nrows);
    if (spw <= 0) spw = (double)(train->nrows - pos) / (double)pos;
    info->scale_pos_weight = spw;
    if ((rc = make_split(train, nf, nthread, &dm[0], errstr, errstr_size)) != 0) goto out;
    if ((rc = make_split(valid, nf, nthread, &dm[1], errstr, errstr_size)) != 0) goto out;
    if (XGBoosterCreate(dm, 2, &b) != 0) {
        rc = xgb_fail(errstr, errstr_size, "create");
        goto out;
    }
    if ((rc = set_params(b, p, spw, errstr, errstr_size)) != 0) goto out;
    info->best_round = -1;
    for (int r = 0; r < p->rounds; r++) {
        const char *line = NULL;
        double tv = NAN, vv = NAN;

        if (XGBoosterUpdateOneIter(b, r, dm[0]) != 0) {
            rc = xgb_fail(errstr, errstr_size, "boosting round");
            goto out;
        }
        if (XGBoosterEvalOneIter(b, r, dm, names, 2, &line) != 0) {
            rc = xgb_fail(errstr, errstr_size, "evaluation");
            goto out;
        }
        if (parse_eval(line, "train", p->eval_metric, &tv) != 0 ||
            parse_eval(line, "valid", p->eval_metric, &vv) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "model: unexpected evaluation \"%s\"", line);
            goto out;
        }
        info->rounds_run = r + 1;
        last = vv;
        if (info->best_round < 0 || (maxim ? vv > info->best_valid : vv < info->best_valid)) {
            info->best_round = r;
            info->best_valid = vv;
        }
        if (progress)
            progress(opaque, r, p->rounds, p->eval_metric, tv, vv, info->best_round,
                     info->best_valid);
        if (p->early_stopping_rounds > 0 && r - info->best_round >= p->early_stopping_rounds) break;
    }
    if (p->early_stopping_rounds == 0) { /* no early stopping: keep every round */
        info->best_round = info->rounds_run - 1;
        info->best_valid = last;
    }
    if (XGBoosterSlice(b, 0, info->best_round + 1, 1, &cut) != 0) {
        rc = xgb_fail(errstr, errstr_size, "slice");
        goto out;
    }
    if (!(*out = model_wrap(cut, nf, nthread, errstr, errstr_size))) rc = SN_ERR_INVALID;
    cut = NULL; /* owned by the model now, or freed by model_wrap */
out:
    if (b) XGBoosterFree(b);
    if (dm[1]) XGDMatrixFree(dm[1]);
    if (dm[0]) XGDMatrixFree(dm[0]);
    return rc;
}
