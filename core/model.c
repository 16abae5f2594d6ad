/* model.c — everything the model families share: building a
 * model from specs (random init, a checkpoint, a clone), saving it under HF names, positions and
 * rotary tables, attention over the KV cache. See model.h and model_impl.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "fileio.h"
#include "lora.h"
#include "model_impl.h"
#include "safetensors.h"

/* config.json is a few KB; more is not a config. */
#define MAX_CONFIG (16u << 20)

/* Tensors real checkpoints carry that are not parameters (masks, cached frequencies). */
static const char *const BUFFER_SUFFIXES[] = {".attn.bias", ".attn.masked_bias", ".attention.bias",
                                              ".attention.masked_bias", ".rotary_emb.inv_freq"};

void apl_pspec_add(apl_pspec *out, int *n, int layer, int slot, const char *fmt, int ndim,
                   int64_t d0, int64_t d1, apl_init_kind init)
{
    if (out) {
        apl_pspec *s = &out[*n];
        snprintf(s->name, sizeof s->name, fmt, layer);
        s->layer = layer;
        s->slot = slot;
        s->ndim = ndim;
        s->shape[0] = d0;
        s->shape[1] = d1;
        s->init = init;
    }
    (*n)++;
}

apl_tensor *apl_model_w(const apl_model *m, int layer, int slot)
{
    int row = layer < 0 ? (int)m->cfg.n_layer : layer;
    int i = m->slot_of[row * APL_MAX_SLOTS + slot];
    return i < 0 ? NULL : m->p[i];
}

apl_tensor *apl_model_proj(const apl_model *m, int layer, int w_slot, int b_slot, apl_tensor *x)
{
    apl_tensor *w = apl_model_w(m, layer, w_slot), *b = b_slot < 0 ? NULL : apl_model_w(m, layer, b_slot);
    /* HF's Conv1D as a linear layer over the transposed view: libtorch fuses the bias into the
     * matmul (addmm) and multiplies by w as stored, without a copy. */
    if (layer >= 0 && m->arch->conv1d) w = apl_t_transpose(w, 0, 1);
    apl_tensor *y = apl_t_linear(x, w, b);
    return m->lora && m->lora_on ? apl_lora_add(m->lora, m, layer, w_slot, x, y) : y;
}

int apl_model_head_slot(const apl_model *m)
{
    return m->cfg.tie_embeddings ? m->arch->embed_slot : m->arch->head_slot;
}

apl_tensor *apl_model_head(const apl_model *m, apl_tensor *y)
{
    return apl_model_proj(m, -1, apl_model_head_slot(m), -1, y);
}

/* ------------------------------------------------------------------------------------------ */
/* Construction */

void apl_model_free(apl_model *m)
{
    if (!m) return;
    if (m->view_of) { /* shares everything with the model it reads */
        free(m);
        return;
    }
    apl_lora_free(m->lora);
    apl_model_free(m->theta0);
    free(m->source);
    for (int i = 0; m->p && i < m->n; i++) apl_t_free(m->p[i]);
    free(m->p);
    free(m->spec);
    free(m->slot_of);
    free(m->inv_freq);
    free(m->config_json);
    free(m);
}

/* HF's rotary frequencies, with Llama 3's rescaling of the long wavelengths when configured. */
static void rope_freqs(const apl_config *c, double *inv)
{
    int64_t half = c->rot_dims / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->rot_dims);
        if (c->llama3_rope) {
            double orig = (double)c->rs_orig_max_pos, wavelen = 2 * M_PI / f;
            double low_wl = orig / c->rs_low_freq, high_wl = orig / c->rs_high_freq;
            if (wavelen > low_wl) {
                f /= c->rs_factor;
            } else if (wavelen >= high_wl) {
                double smooth = (orig / wavelen - c->rs_low_freq) / (c->rs_high_freq - c->rs_low_freq);
                f = (1 - smooth) * f / c->rs_factor + smooth * f;
            }
        }
        inv[i] = f;
    }
}

/* The number of specs a config asks for, without building them: an architecture's specs are a
 * fixed set per layer plus globals, so two counts (0 and 1 layers) give it for any n_layer.
 * n_layer < 2^31 (config.c) and a layer has < APL_MAX_SLOTS specs: no overflow. */
static int64_t spec_count(const apl_arch *a, const apl_config *c)
{
    apl_config k = *c;
    k.n_layer = 0;
    int64_t base = a->specs(&k, NULL);
    k.n_layer = 1;
    return base + (a->specs(&k, NULL) - base) * c->n_layer;
}

/* Every spec's element count, and their sum, fits an int64 with room for 8-byte elements: the
 * sizes libtorch is asked for must not wrap. */
static apl_status check_numel(const apl_model *m, const char *where)
{
    int64_t total = 0, numel;
    for (int i = 0; i < m->n; i++) {
        const apl_pspec *s = &m->spec[i];
        if (__builtin_mul_overflow(s->shape[0], s->ndim == 2 ? s->shape[1] : 1, &numel) ||
            __builtin_add_overflow(total, numel, &total) || total > INT64_MAX / 8)
            return apl_fail(APL_EFORMAT, "%s: \"%s\" (%lld x %lld) is too large", where,
                            s->name, (long long)s->shape[0], (long long)s->shape[1]);
    }
    return APL_OK;
}

/* A model with its config and specs but no parameters yet. max_specs bounds what the config may
 * ask for before anything is allocated: a checkpoint's tensor count when loading (each spec needs
 * a tensor of its own), APL_MAX_SPECS otherwise. */
static apl_status model_new(const char *json, const char *where, int64_t max_specs, apl_dtype dt,
                            apl_device dev, apl_model **out)
{
    *out = NULL;
    apl_model *m = calloc(1, sizeof *m);
    if (!m) return apl_fail(APL_ENOMEM, "%s: out of memory", where);
    apl_status st = apl_config_parse(json, where, &m->cfg);
    if (st != APL_OK) goto fail;
    m->arch = m->cfg.arch;
    m->dt = dt;
    m->dev = dev;
    int64_t n = spec_count(m->arch, &m->cfg);
    if (n > max_specs) {
        st = apl_fail(APL_EFORMAT, "%s: %lld layers need %lld tensors, more than %s (%lld)", where,
                      (long long)m->cfg.n_layer, (long long)n,
                      max_specs == APL_MAX_SPECS ? "apl builds" : "the checkpoint holds",
                      (long long)max_specs);
        goto fail;
    }
    m->n = (int)n;
    size_t rows = (size_t)(m->cfg.n_layer + 1) * APL_MAX_SLOTS;
    m->spec = calloc((size_t)m->n, sizeof *m->spec);
    m->p = calloc((size_t)m->n, sizeof *m->p);
    m->slot_of = malloc(rows * sizeof *m->slot_of);
    m->config_json = strdup(json);
    if (!m->spec || !m->p || !m->slot_of || !m->config_json) {
        st = apl_fail(APL_ENOMEM, "%s: out of memory", where);
        goto fail;
    }
    m->arch->specs(&m->cfg, m->spec);
    if ((st = check_numel(m, where)) != APL_OK) goto fail;
    for (size_t i = 0; i < rows; i++) m->slot_of[i] = -1;
    for (int i = 0; i < m->n; i++) {
        int row = m->spec[i].layer < 0 ? (int)m->cfg.n_layer : m->spec[i].layer;
        m->slot_of[row * APL_MAX_SLOTS + m->spec[i].slot] = i;
    }
    *out = m;
    return APL_OK;
fail:
    apl_model_free(m);
    return st;
}

/* The rotary table, made once the parameters exist: its size (rot_dims) is then bounded by the
 * attention weights that were allocated or checked against the checkpoint. */
static apl_status model_rope(apl_model *m, const char *where)
{
    if (!m->cfg.rot_dims) return APL_OK;
    m->inv_freq = malloc((size_t)m->cfg.rot_dims / 2 * sizeof(double));
    if (!m->inv_freq) return apl_fail(APL_ENOMEM, "%s: out of memory", where);
    rope_freqs(&m->cfg, m->inv_freq);
    return APL_OK;
}

static apl_tensor *init_param(const apl_pspec *s, double range, apl_dtype dt, apl_device dev,
                              apl_gen *g)
{
    if (s->init != APL_INIT_NORMAL)
        return apl_t_full(s->shape, s->ndim, s->init == APL_INIT_ONES ? 1 : 0, dt, dev);
    int mark = apl_scope_push();
    apl_tensor *r = apl_t_randn(s->shape, s->ndim, APL_F32, APL_CPU, g);
    apl_tensor *t = apl_keep(apl_t_to(apl_t_binary_s(APL_MUL, r, range), dt, dev));
    apl_scope_pop(mark);
    return t;
}

apl_status apl_model_init(const char *config_json, uint64_t seed, apl_dtype dt, apl_device dev,
                          apl_model **out)
{
    apl_model *m;
    apl_status st = model_new(config_json, "config", APL_MAX_SPECS, dt, dev, &m);
    if (st != APL_OK) return st;
    apl_gen *g = apl_gen_new(seed);
    int prev = apl_set_grad_enabled(0);
    for (int i = 0; i < m->n && st == APL_OK && g; i++)
        st = apl_t_ok(m->p[i] = init_param(&m->spec[i], m->cfg.init_range, dt, dev, g));
    apl_set_grad_enabled(prev);
    if (!g) st = APL_ETORCH;
    apl_gen_free(g);
    if (st == APL_OK) st = model_rope(m, "config");
    if (st != APL_OK) {
        apl_model_free(m);
        return st;
    }
    *out = m;
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading */

static const apl_st_info *find_param(const apl_model *m, const apl_st *st, const char *name)
{
    const apl_st_info *e = apl_st_find(st, name);
    const char *pre = m->arch->optional_prefix;
    size_t pl = pre ? strlen(pre) : 0;
    if (!e && pl && strncmp(name, pre, pl) == 0) e = apl_st_find(st, name + pl);
    return e;
}

static int is_buffer(const apl_model *m, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof BUFFER_SUFFIXES / sizeof *BUFFER_SUFFIXES; i++) {
        size_t l = strlen(BUFFER_SUFFIXES[i]);
        if (n >= l && strcmp(name + n - l, BUFFER_SUFFIXES[i]) == 0) return 1;
    }
    /* a tied head some writers store anyway */
    return m->cfg.tie_embeddings && (strcmp(name, "lm_head.weight") == 0 ||
                                     strcmp(name, "embed_out.weight") == 0);
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_spec(const char *const *names, int n, const char *name)
{
    return bsearch(&name, names, (size_t)n, sizeof *names, by_str) != NULL;
}

/* Every tensor of the checkpoint must be a parameter or a known buffer: a stray one (say biases
 * the config does not ask for) means the config and the weights disagree. The spec names are
 * sorted once: a checkpoint may hold millions of (tiny, hostile) tensors. */
static apl_status check_unexpected(const apl_model *m, const apl_st *st)
{
    const char *pre = m->arch->optional_prefix;
    const char **names = malloc((size_t)(m->n ? m->n : 1) * sizeof *names);
    if (!names) return apl_fail(APL_ENOMEM, "model: out of memory");
    for (int j = 0; j < m->n; j++) names[j] = m->spec[j].name;
    qsort(names, (size_t)m->n, sizeof *names, by_str);
    apl_status r = APL_OK;
    char full[sizeof m->spec->name + 32];
    for (int i = 0; i < apl_st_count(st) && r == APL_OK; i++) {
        const apl_st_info *e = apl_st_at(st, i);
        int known = is_buffer(m, e->name) || is_spec(names, m->n, e->name);
        size_t pl = pre ? strlen(pre) : 0, nl = strlen(e->name);
        if (!known && pl && pl + nl < sizeof full) {
            memcpy(full, pre, pl);
            memcpy(full + pl, e->name, nl + 1);
            known = is_spec(names, m->n, full);
        }
        if (!known)
            r = apl_fail(APL_EFORMAT, "%s: unexpected tensor \"%s\" (config.json does not"
                         " describe it)", e->file, e->name);
    }
    free(names);
    return r;
}

static void shape_str(const int64_t *s, int nd, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)s[i]);
    if (o < n) snprintf(buf + o, n - o, nd == 1 ? ",)" : ")");
}

/* The checkpoint's tensor for spec i, of the shape and a float dtype the config implies, with
 * no NaN or infinity in it; checked for every spec before any is loaded. */
static apl_status check_param(const apl_model *m, const apl_st *st, const char *dir, int i)
{
    const apl_pspec *s = &m->spec[i];
    const apl_st_info *e = find_param(m, st, s->name);
    if (!e) return apl_fail(APL_EFORMAT, "%s: missing tensor \"%s\"", dir, s->name);
    if (e->ndim != s->ndim || memcmp(e->shape, s->shape, (size_t)s->ndim * sizeof(int64_t)) != 0) {
        char got[128], want[128];
        shape_str(e->shape, e->ndim, got, sizeof got);
        shape_str(s->shape, s->ndim, want, sizeof want);
        return apl_fail(APL_EFORMAT, "%s: tensor \"%s\" has shape %s, config.json implies %s",
                        e->file, e->name, got, want);
    }
    if (!e->has_dtype || (e->dt != APL_F32 && e->dt != APL_F16 && e->dt != APL_BF16 &&
                          e->dt != APL_F64))
        return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": dtype %s is not a float type", e->file,
                        e->name, e->dtype_name);
    return APL_OK;
}

static apl_status load_param(apl_model *m, apl_st *st, int i)
{
    const apl_st_info *e = find_param(m, st, m->spec[i].name);
    /* NaN weights give NaN logits and losses far from here: refused on load, at memory speed */
    apl_status r = apl_st_check_finite(st, e);
    apl_tensor *t;
    if (r == APL_OK) r = apl_st_tensor(st, e, &t);
    if (r != APL_OK) return r;
    if (e->dt == m->dt && m->dev == APL_CPU) {
        m->p[i] = apl_keep(t); /* a copy-on-write view of the file */
        return APL_OK;
    }
    m->p[i] = apl_keep(apl_t_to(t, m->dt, m->dev));
    apl_t_free(t);
    /* the converted copy is all that is kept: the file's pages need not stay resident */
    if (m->p[i]) apl_st_drop_pages(st, e);
    return apl_t_ok(m->p[i]);
}

/* The checkpoint is opened first: the number of tensors it holds bounds what config.json may ask
 * for, and every shape is checked against it before a parameter is allocated. */
apl_status apl_model_load(const char *dir, apl_dtype dt, apl_device dev, apl_model **out)
{
    char path[4096];
    apl_st *sf = NULL;
    apl_model *m = NULL;
    char *json;
    size_t len;
    *out = NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    apl_status st = apl_read_text(path, MAX_CONFIG, &json, &len);
    if (st != APL_OK) return st;
    if ((st = apl_st_open_dir(dir, &sf)) == APL_OK)
        st = model_new(json, path, apl_st_count(sf), dt, dev, &m);
    free(json);
    if (st == APL_OK) st = check_unexpected(m, sf);
    for (int i = 0; m && i < m->n && st == APL_OK; i++) st = check_param(m, sf, dir, i);
    int prev = apl_set_grad_enabled(0);
    for (int i = 0; m && i < m->n && st == APL_OK; i++) st = load_param(m, sf, i);
    apl_set_grad_enabled(prev);
    if (st == APL_OK) st = model_rope(m, path);
    if (st == APL_OK && !(m->source = strdup(dir))) st = apl_fail(APL_ENOMEM, "%s: out of memory", dir);
    apl_st_close(sf);
    if (st != APL_OK) {
        apl_model_free(m);
        return st;
    }
    *out = m;
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Saving */

static const char *torch_dtype_name(apl_dtype dt)
{
    switch (dt) {
    case APL_F16: return "float16";
    case APL_BF16: return "bfloat16";
    case APL_F64: return "float64";
    default: return "float32";
    }
}

/* The config as loaded, with the dtype and class that transformers reads. */
static char *saved_config(const apl_model *m)
{
    cJSON *j = cJSON_Parse(m->config_json);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "torch_dtype");
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype_name(m->dt));
    if (!cJSON_GetObjectItemCaseSensitive(j, "architectures")) {
        cJSON *a = cJSON_AddArrayToObject(j, "architectures");
        cJSON_AddItemToArray(a, cJSON_CreateString(m->cfg.hf_class));
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    return txt;
}

static apl_status write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = fclose(f) == 0 && ok;
    return ok ? APL_OK : apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
}

apl_status apl_model_save(const apl_model *m, const char *dir)
{
    char path[4096];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return apl_fail(APL_EIO, "%s: %s", dir, strerror(errno));
    const char **names = malloc((size_t)m->n * sizeof *names);
    char *cfg = saved_config(m);
    apl_status st = APL_OK;
    if (!names || !cfg) {
        st = apl_fail(APL_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    for (int i = 0; i < m->n; i++) names[i] = m->spec[i].name;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((st = apl_st_write(path, names, m->p, m->n)) != APL_OK) goto done;
    snprintf(path, sizeof path, "%s/config.json", dir);
    st = write_text(path, cfg);
done:
    free(names);
    free(cfg);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Copies and conversions */

/* Replaces every parameter by f(p) (all or nothing), without recording autograd history. */
static apl_status map_params(apl_model *m, apl_tensor *(*f)(apl_tensor *, apl_dtype, apl_device),
                             apl_dtype dt, apl_device dev, apl_tensor **into)
{
    apl_status st = APL_OK;
    int prev = apl_set_grad_enabled(0);
    int i = 0;
    for (; i < m->n && st == APL_OK; i++) st = apl_t_ok(into[i] = f(m->p[i], dt, dev));
    apl_set_grad_enabled(prev);
    if (st != APL_OK)
        for (int j = 0; j < i; j++) apl_t_free(into[j]);
    return st;
}

static apl_tensor *clone_to(apl_tensor *t, apl_dtype dt, apl_device dev)
{
    (void)dt;
    (void)dev;
    return apl_keep(apl_t_clone(t));
}

apl_status apl_model_clone(const apl_model *m, apl_model **out)
{
    apl_model *c;
    *out = NULL;
    if (m->lora)
        return apl_fail(APL_EINVAL, "clone: the model has LoRA adapters (merge or save them first)");
    apl_status st = model_new(m->config_json, "config", m->n, m->dt, m->dev, &c);
    if (st != APL_OK) return st;
    if ((st = map_params((apl_model *)m, clone_to, m->dt, m->dev, c->p)) != APL_OK)
        memset(c->p, 0, (size_t)c->n * sizeof *c->p);
    if (st == APL_OK) st = model_rope(c, "config");
    if (st != APL_OK) {
        apl_model_free(c);
        return st;
    }
    *out = c;
    return APL_OK;
}

apl_status apl_model_to(apl_model *m, apl_dtype dt, apl_device dev)
{
    if (m->view_of) return apl_fail(APL_EINVAL, "model.to: a reference view follows its model");
    apl_tensor **np = calloc((size_t)m->n, sizeof *np);
    if (!np) return apl_fail(APL_ENOMEM, "model.to: out of memory");
    apl_status st = map_params(m, apl_t_to, dt, dev, np);
    /* the adapters and θ0 follow the model: a reference on another device is no reference */
    if (st == APL_OK && ((m->lora && (st = apl_lora_to(m->lora, dt, dev)) != APL_OK) ||
                         (m->theta0 && (st = apl_model_to(m->theta0, dt, dev)) != APL_OK)))
        for (int i = 0; i < m->n; i++) apl_t_free(np[i]);
    if (st == APL_OK) {
        for (int i = 0; i < m->n; i++) apl_t_free(m->p[i]);
        free(m->p);
        m->p = np;
        m->dt = dt;
        m->dev = dev;
        m->generation++; /* every parameter handle changed: borrowers must not use the old ones */
    } else {
        free(np);
    }
    return st;
}

apl_status apl_model_copy_from(apl_model *dst, const apl_model *src)
{
    if (dst->view_of) return apl_fail(APL_EINVAL, "copy_from: a reference view is read-only");
    if (dst->n != src->n || strcmp(dst->cfg.model_type, src->cfg.model_type) != 0)
        return apl_fail(APL_EINVAL, "copy_from: models of different configs");
    for (int i = 0; i < dst->n; i++)
        if (apl_t_numel(dst->p[i]) != apl_t_numel(src->p[i]))
            return apl_fail(APL_EINVAL, "copy_from: \"%s\" differs in shape", dst->spec[i].name);
    int prev = apl_set_grad_enabled(0);
    apl_status st = APL_OK;
    for (int i = 0; i < dst->n && st == APL_OK; i++) st = apl_t_copy_(dst->p[i], src->p[i]);
    apl_set_grad_enabled(prev);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Accessors */

const char *apl_model_type(const apl_model *m) { return m->cfg.model_type; }
const char *apl_model_config_json(const apl_model *m) { return m->config_json; }
const char *apl_model_source(const apl_model *m) { return m->source; }
int64_t apl_model_vocab_size(const apl_model *m) { return m->cfg.vocab; }
int64_t apl_model_max_positions(const apl_model *m) { return m->cfg.max_pos; }
int64_t apl_model_eos_id(const apl_model *m) { return m->cfg.eos_id; }
apl_dtype apl_model_dtype(const apl_model *m) { return m->dt; }
uint64_t apl_model_generation(const apl_model *m) { return m->generation; }
apl_device apl_model_device(const apl_model *m) { return m->dev; }
int apl_model_num_tensors(const apl_model *m) { return m->n; }

apl_tensor *apl_model_tensor(const apl_model *m, int i)
{
    return i >= 0 && i < m->n ? m->p[i] : NULL;
}

const char *apl_model_tensor_name(const apl_model *m, int i)
{
    return i >= 0 && i < m->n ? m->spec[i].name : NULL;
}

int apl_model_num_trainable(const apl_model *m)
{
    return m->lora ? 2 * apl_lora_count(m) : m->n;
}

apl_tensor *apl_model_trainable(const apl_model *m, int i)
{
    apl_tensor *a = NULL, *b = NULL;
    if (!m->lora) return apl_model_tensor(m, i);
    if (apl_lora_tensor(m, i / 2, NULL, &a, &b) != APL_OK) return NULL;
    return i % 2 ? b : a;
}

int apl_model_is_view(const apl_model *m) { return m->view_of != NULL; }

int apl_model_train(apl_model *m, int on)
{
    int was = m->training;
    m->training = on != 0;
    return was;
}
int apl_model_is_reference_of(const apl_model *view, const apl_model *m) { return view->view_of == m; }

/* ------------------------------------------------------------------------------------------ */
/* θ0: the reference and the reset point */

apl_status apl_model_reference(apl_model *m, apl_model **view)
{
    *view = NULL;
    if (m->view_of) return apl_fail(APL_EINVAL, "reference: already a reference view");
    apl_status st = APL_OK;
    if (!m->lora) /* a full model keeps one θ0 copy, taken now (again, if asked again) */
        st = m->theta0 ? apl_model_copy_from(m->theta0, m) : apl_model_clone(m, &m->theta0);
    if (st != APL_OK) return st;
    apl_model *v = malloc(sizeof *v);
    if (!v) return apl_fail(APL_ENOMEM, "reference: out of memory");
    *v = m->lora ? *m : *m->theta0;
    v->lora_on = 0;
    v->theta0 = NULL;
    v->view_of = m;
    v->generation = m->generation;
    *view = v;
    return APL_OK;
}

apl_status apl_model_reset(apl_model *m)
{
    if (m->view_of) return apl_fail(APL_EINVAL, "reset: a reference view is read-only");
    if (m->lora) return apl_lora_reinit(m);
    if (!m->theta0) return apl_fail(APL_EINVAL, "reset: no θ0 was kept (take a reference first)");
    return apl_model_copy_from(m, m->theta0);
}

int apl_model_is_stale(const apl_model *m)
{
    return m->view_of && m->view_of->generation != m->generation;
}

/* A view reads its model's handles, which apl_model_to and attaching or merging adapters replace. */
static apl_status check_view(const apl_model *m)
{
    if (!apl_model_is_stale(m)) return APL_OK;
    return apl_fail(APL_EINVAL, "forward: this reference view is stale (its model was moved or its"
                    " adapters changed since); take a new reference");
}

int64_t apl_model_num_params(const apl_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n; i++) n += apl_t_numel(m->p[i]);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward building blocks */

apl_tensor *apl_model_layers(const apl_model *m, const apl_fwd *f, apl_tensor *x, apl_block_fn block)
{
    for (int l = 0; l < m->cfg.n_layer && x; l++) {
        int mark = apl_scope_push();
        apl_tensor *y = apl_keep(block(m, f, l, x));
        apl_scope_pop(mark);
        apl_t_free(x);
        x = y;
    }
    return x;
}

apl_tensor *apl_model_heads(apl_tensor *x, int64_t H, int64_t D)
{
    if (!x) return NULL;
    int64_t shape[4] = {apl_t_size(x, 0), apl_t_size(x, 1), H, D};
    return apl_t_transpose(apl_t_reshape(x, shape, 4), 1, 2);
}

apl_tensor *apl_model_rope(const apl_fwd *f, apl_tensor *x)
{
    if (!x || !f->cos) return x; /* NULL passes down the chain; no cos: rotary_pct 0 */
    int64_t D = apl_t_size(x, -1), rot = apl_t_size(f->cos, -1), half = rot / 2;
    apl_tensor *xr = apl_t_narrow(x, -1, 0, rot);                   // (B, H, T, rot)
    apl_tensor *halves[2] = {apl_t_unary(APL_NEG, apl_t_narrow(xr, -1, half, half)),
                             apl_t_narrow(xr, -1, 0, half)};
    apl_tensor *rotated = apl_t_cat(halves, 2, -1);                 // rotate_half(xr)
    apl_tensor *out = apl_t_binary(APL_ADD, apl_t_binary(APL_MUL, xr, f->cos),
                                   apl_t_binary(APL_MUL, rotated, f->sin));
    if (rot == D) return out;
    apl_tensor *parts[2] = {out, apl_t_narrow(x, -1, rot, D - rot)};
    return apl_t_cat(parts, 2, -1);
}

/* Whether `layer` computes its queries, and all that follows attention, only at the last f->tail
 * positions: true of the last layer when only those reach the head (the keys and values still
 * cover every position). Scoring wants the completion span, generation one position. */
static int tail_only(const apl_model *m, const apl_fwd *f, int layer)
{
    return layer == m->cfg.n_layer - 1 && !f->rows && f->tail > 0 && f->tail < f->T;
}

apl_tensor *apl_model_queries(const apl_model *m, const apl_fwd *f, int layer, apl_tensor *x)
{
    if (!x || !tail_only(m, f, layer)) return x;
    return apl_t_narrow(x, 1, f->T - f->tail, f->tail); // (B, tail, C)
}

apl_tensor *apl_model_attend(const apl_model *m, const apl_fwd *f, int layer, apl_tensor *q,
                             apl_tensor *k, apl_tensor *v)
{
    const apl_config *c = &m->cfg;
    if (f->cache) {
        apl_tensor *ck = f->cache->k[layer], *cv = f->cache->v[layer];
        if (!k || !v || apl_t_write_at_(ck, 2, f->past, k) != APL_OK ||
            apl_t_write_at_(cv, 2, f->past, v) != APL_OK)
            return NULL;
        k = apl_t_narrow(ck, 2, 0, f->past + f->T); // (B, H_kv, S, D)
        v = apl_t_narrow(cv, 2, 0, f->past + f->T);
    }
    apl_tensor *bias = f->bias;
    int64_t T = f->T;
    if (tail_only(m, f, layer)) {
        T = f->tail;
        q = apl_t_narrow(q, 2, f->T - T, T); // (B, H, tail, D)
        bias = apl_t_narrow(bias, 2, f->T - T, T);
    }
    apl_tensor *y = apl_t_attention(q, k, v, bias, 1.0 / sqrt((double)c->head_dim));
    int64_t shape[3] = {f->B, T, c->n_head * c->head_dim};
    return apl_t_reshape(apl_t_transpose(y, 1, 2), shape, 3); // (B, T or tail, H*D)
}

apl_tensor *apl_model_act(apl_act a, apl_tensor *x)
{
    static const apl_unary_op OPS[] = {[APL_ACT_GELU] = APL_GELU, [APL_ACT_GELU_TANH] = APL_GELU_TANH,
                                       [APL_ACT_SILU] = APL_SILU, [APL_ACT_RELU] = APL_RELU};
    return apl_t_unary(OPS[a], x);
}

/* ------------------------------------------------------------------------------------------ */
/* Forward */

/* Positions of the new tokens: counted over real tokens (cumsum(mask) - 1, clamped at 0), so a
 * left-padded row sees the positions it would see unpadded. Computed on the CPU, where the
 * rotary tables are made too: both are small, (B, T) and (B, T, rot). */
static apl_status positions(const apl_fwd *f, int64_t *pos)
{
    int64_t S = f->past + f->T;
    if (!f->mask) {
        for (int64_t b = 0; b < f->B; b++)
            for (int64_t t = 0; t < f->T; t++) pos[b * f->T + t] = f->past + t;
        return APL_OK;
    }
    int64_t *mk = malloc((size_t)(f->B * S) * sizeof *mk);
    if (!mk) return apl_fail(APL_ENOMEM, "forward: out of memory");
    apl_status st = apl_t_read(f->mask, APL_I64, mk, (size_t)(f->B * S) * sizeof *mk);
    for (int64_t b = 0; b < f->B && st == APL_OK; b++) {
        int64_t run = 0;
        for (int64_t s = 0; s < S; s++) {
            run += mk[b * S + s] != 0;
            if (s >= f->past) pos[b * f->T + s - f->past] = run > 0 ? run - 1 : 0;
        }
    }
    free(mk);
    return st;
}

static apl_status rope_tables(const apl_model *m, const int64_t *pos, apl_fwd *f)
{
    int64_t rot = m->cfg.rot_dims, half = rot / 2, n = f->B * f->T;
    float *cs = malloc((size_t)(2 * n * rot) * sizeof *cs);
    if (!cs) return apl_fail(APL_ENOMEM, "forward: out of memory");
    float *sn = cs + n * rot;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < half; j++) {
            double a = (double)pos[i] * m->inv_freq[j];
            cs[i * rot + j] = cs[i * rot + half + j] = (float)cos(a);
            sn[i * rot + j] = sn[i * rot + half + j] = (float)sin(a);
        }
    }
    int64_t shape[4] = {f->B, 1, f->T, rot};
    f->cos = apl_t_to(apl_t_from_data(cs, shape, 4, APL_F32), m->dt, m->dev);
    f->sin = apl_t_to(apl_t_from_data(sn, shape, 4, APL_F32), m->dt, m->dev);
    free(cs);
    return f->cos && f->sin ? APL_OK : APL_ETORCH;
}

static apl_status check_ids(apl_tensor *ids)
{
    char buf[64];
    if (apl_t_ndim(ids) != 2 || apl_t_dtype(ids) != APL_I64 || apl_t_size(ids, 1) < 1)
        return apl_fail(APL_EINVAL, "forward: ids must be a (B, T) i64 tensor with T >= 1, got %s %s",
                        apl_dtype_name(apl_t_dtype(ids)), apl_t_shape_str(ids, buf, sizeof buf));
    return APL_OK;
}

static apl_status check_inputs(const apl_model *m, apl_tensor *ids, apl_tensor *mask,
                               const apl_kv_cache *c, int64_t past)
{
    char buf[64];
    apl_status st = check_ids(ids);
    if (st != APL_OK) return st;
    int64_t B = apl_t_size(ids, 0), S = past + apl_t_size(ids, 1);
    if (mask && (apl_t_ndim(mask) != 2 || apl_t_size(mask, 0) != B || apl_t_size(mask, 1) != S))
        return apl_fail(APL_EINVAL, "forward: attention_mask must be (%lld, %lld), got %s",
                        (long long)B, (long long)S, apl_t_shape_str(mask, buf, sizeof buf));
    if (S > m->cfg.max_pos)
        return apl_fail(APL_EINVAL, "forward: %lld positions exceed the model's %lld",
                        (long long)S, (long long)m->cfg.max_pos);
    if (!c) return APL_OK;
    if (c->n_layer != m->cfg.n_layer || c->dt != m->dt || c->dev != m->dev || c->B != B)
        return apl_fail(APL_EINVAL, "forward: the cache was made for another model, dtype, device"
                        " or batch size (%lld rows, ids have %lld)", (long long)c->B, (long long)B);
    if (S > c->max_len)
        return apl_fail(APL_EINVAL, "forward: %lld positions exceed the cache's %lld",
                        (long long)S, (long long)c->max_len);
    return APL_OK;
}

/* The ids, positions (pos, B * T on the host) and rotary tables of a forward. */
static apl_status place_tokens(apl_model *m, apl_tensor *ids, const int64_t *pos, apl_fwd *f)
{
    int64_t shape[2] = {f->B, f->T};
    f->pos = apl_t_to(apl_t_from_data(pos, shape, 2, APL_I64), APL_I64, m->dev);
    f->ids = apl_t_to(ids, APL_I64, m->dev);
    apl_status st = f->pos && f->ids ? APL_OK : APL_ETORCH;
    if (st == APL_OK && m->cfg.rot_dims) st = rope_tables(m, pos, f);
    return st;
}

/* Positions and attention bias from the padding mask and the cache. */
static apl_status prepare(apl_model *m, apl_tensor *ids, apl_tensor *mask, apl_fwd *f)
{
    int64_t n = f->B * f->T;
    int64_t *pos = malloc((size_t)n * sizeof *pos);
    if (!pos) return apl_fail(APL_ENOMEM, "forward: out of memory");
    f->mask = mask ? apl_t_to(mask, APL_I64, m->dev) : NULL;
    apl_status st = mask && !f->mask ? APL_ETORCH : positions(f, pos);
    if (st == APL_OK) st = place_tokens(m, ids, pos, f);
    if (st == APL_OK) {
        f->bias = apl_t_attention_bias(f->mask, f->T, f->past + f->T, m->dt, m->dev);
        st = apl_t_ok(f->bias);
    }
    free(pos);
    return st;
}

apl_tensor *apl_model_tail(const apl_fwd *f, apl_tensor *h)
{
    /* NULL: a layer failed (an id outside the vocabulary, out of memory); the message is set */
    if (!h || !f->rows) return h; // a tail was kept by the last layer (apl_model_queries)
    int64_t flat[2] = {f->B * f->T, apl_t_size(h, 2)};
    apl_tensor *r = apl_t_unsqueeze(apl_t_index_select(apl_t_reshape(h, flat, 2), 0, f->rows), 0);
    apl_t_free(h); // the layers' output, which the caller would have freed
    return r;
}

apl_status apl_model_forward(apl_model *m, apl_tensor *ids, apl_tensor *mask, apl_kv_cache *cache,
                             apl_tensor **logits)
{
    return apl_model_forward_tail(m, ids, mask, cache, 0, logits);
}

apl_status apl_model_forward_tail(apl_model *m, apl_tensor *ids, apl_tensor *mask,
                                  apl_kv_cache *cache, int64_t tail, apl_tensor **logits)
{
    *logits = NULL;
    if (!ids) return apl_fail(APL_EINVAL, "forward: no ids");
    if (check_view(m) != APL_OK) return APL_EINVAL;
    int64_t past = cache ? cache->len : 0;
    apl_status st = check_inputs(m, ids, mask, cache, past);
    if (st != APL_OK) return st;
    apl_fwd f = {.B = apl_t_size(ids, 0), .T = apl_t_size(ids, 1), .past = past, .cache = cache,
                 .tail = tail};
    int mark = apl_scope_push();
    if ((st = prepare(m, ids, mask, &f)) == APL_OK) {
        *logits = apl_keep(m->arch->forward(m, &f));
        st = apl_t_ok(*logits);
    }
    apl_scope_pop(mark);
    if (st == APL_OK && cache) cache->len += f.T;
    return st;
}

apl_status apl_model_forward_packed(apl_model *m, apl_tensor *ids, const int64_t *pos,
                                    apl_tensor *bias, apl_tensor *rows, apl_tensor **logits)
{
    *logits = NULL;
    if (!ids || !pos || !bias || !rows) return apl_fail(APL_EINVAL, "forward_packed: missing input");
    if (check_view(m) != APL_OK) return APL_EINVAL;
    apl_status st = check_ids(ids); // T may pass max_pos: the positions are checked instead
    if (st != APL_OK) return st;
    apl_fwd f = {.B = apl_t_size(ids, 0), .T = apl_t_size(ids, 1), .bias = bias, .rows = rows};
    int64_t maxpos = apl_model_max_positions(m);
    for (int64_t i = 0; i < f.B * f.T; i++)
        if (pos[i] < 0 || (maxpos > 0 && pos[i] >= maxpos))
            return apl_fail(APL_EINVAL, "forward_packed: position %lld outside the model's %lld",
                            (long long)pos[i], (long long)maxpos);
    int mark = apl_scope_push();
    if ((st = place_tokens(m, ids, pos, &f)) == APL_OK) {
        *logits = apl_keep(m->arch->forward(m, &f));
        st = apl_t_ok(*logits);
    }
    apl_scope_pop(mark);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* KV cache */

void apl_kv_cache_free(apl_kv_cache *c)
{
    if (!c) return;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->k) apl_t_free(c->k[l]);
        if (c->v) apl_t_free(c->v[l]);
    }
    free(c->k);
    free(c->v);
    free(c);
}

apl_status apl_kv_cache_new(const apl_model *m, int64_t batch, int64_t max_len, apl_kv_cache **out)
{
    *out = NULL;
    if (batch < 1 || max_len < 1 || max_len > m->cfg.max_pos)
        return apl_fail(APL_EINVAL, "kv_cache: need batch >= 1 and 1 <= max_len <= %lld",
                        (long long)m->cfg.max_pos);
    apl_kv_cache *c = calloc(1, sizeof *c);
    int L = (int)m->cfg.n_layer;
    if (c) {
        c->k = calloc((size_t)L, sizeof *c->k);
        c->v = calloc((size_t)L, sizeof *c->v);
    }
    if (!c || !c->k || !c->v) {
        apl_kv_cache_free(c);
        return apl_fail(APL_ENOMEM, "kv_cache: out of memory");
    }
    *c = (apl_kv_cache){L, batch, max_len, 0, m->dt, m->dev, c->k, c->v};
    int64_t shape[4] = {batch, m->cfg.n_kv_head, max_len, m->cfg.head_dim};
    for (int l = 0; l < L; l++) {
        /* kept: a cache made inside a caller's scope must outlive that scope */
        c->k[l] = apl_keep(apl_t_empty(shape, 4, m->dt, m->dev));
        c->v[l] = apl_keep(apl_t_empty(shape, 4, m->dt, m->dev));
        if (!c->k[l] || !c->v[l]) {
            apl_kv_cache_free(c);
            return APL_ETORCH;
        }
    }
    *out = c;
    return APL_OK;
}

int64_t apl_kv_cache_len(const apl_kv_cache *c) { return c->len; }
void apl_kv_cache_reset(apl_kv_cache *c) { c->len = 0; }

apl_status apl_kv_cache_select_rows(apl_kv_cache *c, apl_tensor *rows)
{
    apl_tensor *r = apl_t_to(rows, APL_I64, c->dev);
    if (!r) return APL_ETORCH;
    apl_status st = APL_OK;
    for (int l = 0; l < c->n_layer && st == APL_OK; l++) {
        apl_tensor *k = apl_t_index_select(c->k[l], 0, r), *v = apl_t_index_select(c->v[l], 0, r);
        st = k && v ? APL_OK : APL_ETORCH;
        if (st == APL_OK) {
            apl_t_free(c->k[l]);
            apl_t_free(c->v[l]);
            c->k[l] = apl_keep(k);
            c->v[l] = apl_keep(v);
        } else {
            apl_t_free(k);
            apl_t_free(v);
        }
    }
    /* every layer or none: a failure can only come from the first (bad rows) */
    if (st == APL_OK) c->B = apl_t_size(c->k[0], 0);
    apl_t_free(r);
    return st;
}
