/* lora.c — LoRA adapters (see lora.h). An adapter sits on one (layer, weight slot) of the model;
 * apl_model_proj asks apl_lora_add for it on every projection. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "lora.h"
#include "model_impl.h"

typedef struct {
    char module[96];  /* HF path, "model.layers.0.self_attn.q_proj" */
    int layer, slot;  /* where apl_model_proj finds it */
    int64_t in, out;
    int conv1d;       /* the base weight is (in, out) */
    apl_tensor *a, *b;
} adapter;

struct apl_lora {
    apl_lora_opts o; /* o.targets points into names */
    char **names;
    int n;
    adapter *ad;
    int *of;         /* (n_layer + 1) x APL_MAX_SLOTS -> adapter index or -1 */
    apl_gen *drop;   /* dropout masks */
};

void apl_lora_free(apl_lora *l)
{
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        apl_t_free(l->ad[i].a);
        apl_t_free(l->ad[i].b);
    }
    for (int i = 0; i < l->o.n_targets; i++) free(l->names[i]);
    free(l->names);
    free(l->ad);
    free(l->of);
    apl_gen_free(l->drop);
    free(l);
}

static int row_of(const apl_model *m, int layer) { return layer < 0 ? (int)m->cfg.n_layer : layer; }

apl_tensor *apl_lora_add(const apl_lora *l, const apl_model *m, int layer, int slot, apl_tensor *x,
                         apl_tensor *y)
{
    int i = l->of[row_of(m, layer) * APL_MAX_SLOTS + slot];
    if (i < 0 || !x || !y) return y;
    const adapter *a = &l->ad[i];
    if (l->o.dropout > 0 && m->training) {
        int64_t shape[APL_MAX_DIMS];
        int nd = apl_t_shape(x, shape);
        apl_tensor *keep = apl_t_binary_s(APL_GE, apl_t_rand(shape, nd, APL_F32, m->dev, l->drop),
                                          l->o.dropout);
        x = apl_t_binary(APL_MUL, x, apl_t_binary_s(APL_MUL, apl_t_to(keep, m->dt, m->dev),
                                                    1 / (1 - l->o.dropout)));
    }
    apl_tensor *d = apl_t_linear(apl_t_linear(x, a->a, NULL), a->b, NULL);
    return apl_t_binary(APL_ADD, y, apl_t_binary_s(APL_MUL, d, l->o.alpha / (double)l->o.r));
}

/* PEFT's list matching: the whole path, or its last dotted components. */
static int matches(const char *module, const char *target)
{
    size_t n = strlen(module), k = strlen(target);
    if (k > n) return 0;
    return strcmp(module + n - k, target) == 0 && (k == n || module[n - k - 1] == '.');
}

static int targeted(const apl_lora_opts *o, const char *module, int *hits)
{
    int any = 0;
    for (int t = 0; t < o->n_targets; t++)
        if (matches(module, o->targets[t])) hits[t] = any = 1;
    return any;
}

/* The module behind spec s when it is a layer's projection weight (2-D, ".weight"), or the head. */
static int module_of(const apl_model *m, const apl_pspec *s, char *out, size_t n)
{
    size_t len = strlen(s->name);
    if (s->layer < 0) {
        if (s->slot != apl_model_head_slot(m)) return 0;
        snprintf(out, n, "%s", m->arch->head_module);
        return 1;
    }
    if (s->ndim != 2 || len < 7 || strcmp(s->name + len - 7, ".weight") != 0) return 0;
    snprintf(out, n, "%.*s", (int)(len - 7), s->name);
    return 1;
}

static apl_status add_adapter(apl_model *m, apl_lora *l, const apl_pspec *s, const char *module)
{
    adapter *a = &l->ad[l->n];
    snprintf(a->module, sizeof a->module, "%s", module);
    a->layer = s->layer;
    a->slot = s->slot;
    a->conv1d = s->layer >= 0 && m->arch->conv1d;
    a->in = a->conv1d ? s->shape[0] : s->shape[1];
    a->out = a->conv1d ? s->shape[1] : s->shape[0];
    int64_t sa[2] = {l->o.r, a->in}, sb[2] = {a->out, l->o.r};
    a->a = apl_keep(apl_t_full(sa, 2, 0, m->dt, m->dev));
    a->b = apl_keep(apl_t_full(sb, 2, 0, m->dt, m->dev));
    l->of[row_of(m, s->layer) * APL_MAX_SLOTS + s->slot] = l->n++;
    apl_status st = apl_t_ok(a->a);
    return st != APL_OK ? st : apl_t_ok(a->b);
}

/* Whether name is an item of the ", "-separated list. */
static int listed(const char *list, const char *name)
{
    size_t k = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += k)
        if ((p == list || p[-1] == ' ') && (p[k] == ',' || p[k] == 0)) return 1;
    return 0;
}

/* The error for a target no module has, listing the modules' names (first layer, then the head). */
static apl_status unmatched(const apl_model *m, const char *target)
{
    char names[512] = "", mod[96];
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n; i++) {
            if (m->spec[i].layer != (pass ? -1 : 0) || !module_of(m, &m->spec[i], mod, sizeof mod)) continue;
            const char *last = strrchr(mod, '.') ? strrchr(mod, '.') + 1 : mod;
            size_t n = strlen(names);
            if (!listed(names, last)) snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", last);
        }
    return apl_fail(APL_EINVAL, "lora: target \"%s\" matches no module of this %s model (%s)", target,
                    m->cfg.model_type, names);
}

static apl_status find_modules(apl_model *m, apl_lora *l)
{
    int *hits = calloc((size_t)l->o.n_targets + 1, sizeof *hits);
    char mod[96];
    if (!hits) return apl_fail(APL_ENOMEM, "lora: out of memory");
    apl_status st = APL_OK;
    for (int i = 0; i < m->n && st == APL_OK; i++)
        if (module_of(m, &m->spec[i], mod, sizeof mod) && targeted(&l->o, mod, hits))
            st = add_adapter(m, l, &m->spec[i], mod);
    for (int t = 0; t < l->o.n_targets && st == APL_OK; t++)
        if (!hits[t]) st = unmatched(m, l->o.targets[t]);
    free(hits);
    return st;
}

static apl_status check_opts(const apl_lora_opts *o)
{
    if (o->r < 1 || o->r > 65536)
        return apl_fail(APL_EINVAL, "lora: r must be in [1, 65536], got %lld", (long long)o->r);
    if (!(o->alpha > 0) || !isfinite(o->alpha)) return apl_fail(APL_EINVAL, "lora: alpha must be > 0");
    if (!(o->dropout >= 0 && o->dropout < 1)) return apl_fail(APL_EINVAL, "lora: dropout must be in [0, 1)");
    if (o->targets && o->n_targets < 1) return apl_fail(APL_EINVAL, "lora: targets is empty");
    for (int t = 0; o->targets && t < o->n_targets; t++)
        if (!o->targets[t] || !*o->targets[t]) return apl_fail(APL_EINVAL, "lora: target %d is empty", t + 1);
    return APL_OK;
}

/* The options, with the targets copied (the family's defaults when none were given). */
static apl_status copy_opts(apl_model *m, const apl_lora_opts *o, apl_lora *l)
{
    const char *const *t = o->targets ? o->targets : m->arch->lora_targets;
    int n = o->targets ? o->n_targets : 0;
    while (!o->targets && t[n]) n++;
    l->o = *o;
    l->names = calloc((size_t)n + 1, sizeof *l->names);
    if (!l->names) return apl_fail(APL_ENOMEM, "lora: out of memory");
    for (l->o.n_targets = 0; l->o.n_targets < n; l->o.n_targets++)
        if (!(l->names[l->o.n_targets] = strdup(t[l->o.n_targets])))
            return apl_fail(APL_ENOMEM, "lora: out of memory");
    l->o.targets = (const char *const *)l->names;
    return APL_OK;
}

static apl_status check_writable(const apl_model *m, const char *what)
{
    if (m->view_of) return apl_fail(APL_EINVAL, "lora: %s: a reference view is read-only", what);
    return APL_OK;
}

apl_status apl_lora_attach(apl_model *m, const apl_lora_opts *o)
{
    apl_status st = check_writable(m, "attach");
    if (st != APL_OK || (st = check_opts(o)) != APL_OK) return st;
    if (m->lora) return apl_fail(APL_EINVAL, "lora: the model has adapters already");
    size_t rows = (size_t)(m->cfg.n_layer + 1) * APL_MAX_SLOTS;
    apl_lora *l = calloc(1, sizeof *l);
    if (!l || !(l->ad = calloc((size_t)m->n, sizeof *l->ad)) || !(l->of = malloc(rows * sizeof *l->of)) ||
        !(l->drop = apl_gen_new(apl_splitmix64(o->seed)))) { /* not A's stream */
        apl_lora_free(l);
        return apl_fail(APL_ENOMEM, "lora: out of memory");
    }
    for (size_t i = 0; i < rows; i++) l->of[i] = -1;
    int mark = apl_scope_push();
    if ((st = copy_opts(m, o, l)) == APL_OK && (st = find_modules(m, l)) == APL_OK) {
        m->lora = l;
        st = apl_lora_reinit(m);
    }
    apl_scope_pop(mark);
    if (st != APL_OK) {
        m->lora = NULL;
        apl_lora_free(l);
        return st;
    }
    m->lora_on = 1;
    m->generation++; /* views of θ0 and optimizers made before are stale now */
    apl_model_free(m->theta0); /* θ0 is the adapters off from now on */
    m->theta0 = NULL;
    for (int i = 0; i < m->n && st == APL_OK; i++) st = apl_t_requires_grad_(m->p[i], 0);
    return st;
}

void apl_lora_detach(apl_model *m)
{
    if (!m->lora || m->view_of) return;
    apl_lora_free(m->lora);
    m->lora = NULL;
    m->lora_on = 0;
    m->generation++;
}

int apl_lora_attached(const apl_model *m) { return m->lora != NULL; }
int apl_lora_enabled(const apl_model *m) { return m->lora && m->lora_on; }

apl_status apl_lora_set_enabled(apl_model *m, int on)
{
    if (!m->lora) return apl_fail(APL_EINVAL, "lora: the model has no adapters");
    m->lora_on = on != 0;
    return APL_OK;
}

/* A ~ U(-1/sqrt(in), 1/sqrt(in)), PEFT's kaiming_uniform_(a = sqrt(5)); B = 0. Drawn in f32 on the
 * CPU in adapter order from one generator, so the same seed gives the same adapters anywhere. */
apl_status apl_lora_reinit(apl_model *m)
{
    apl_lora *l = m->lora;
    if (!l) return apl_fail(APL_EINVAL, "lora: the model has no adapters");
    apl_gen *g = apl_gen_new(l->o.seed);
    if (!g) return APL_ETORCH;
    int prev = apl_set_grad_enabled(0), mark = apl_scope_push();
    apl_status st = APL_OK;
    for (int i = 0; i < l->n && st == APL_OK; i++) {
        adapter *a = &l->ad[i];
        double bound = 1 / sqrt((double)a->in);
        int64_t shape[2] = {l->o.r, a->in};
        apl_tensor *u = apl_t_rand(shape, 2, APL_F32, APL_CPU, g);
        st = apl_t_copy_(a->a, apl_t_binary_s(APL_SUB, apl_t_binary_s(APL_MUL, u, 2 * bound), bound));
        if (st == APL_OK) st = apl_t_fill_(a->b, 0);
    }
    apl_scope_pop(mark);
    apl_set_grad_enabled(prev);
    apl_gen_free(g);
    return st;
}

apl_status apl_lora_merge(apl_model *m)
{
    apl_lora *l = m->lora;
    apl_status st = check_writable(m, "merge");
    if (st != APL_OK) return st;
    if (!l) return apl_fail(APL_EINVAL, "lora: the model has no adapters");
    /* a tied head is the embedding matrix: folding its adapter in would change the inputs too */
    for (int i = 0; i < l->n; i++)
        if (l->ad[i].layer < 0 && m->cfg.tie_embeddings)
            return apl_fail(APL_EINVAL, "lora: merge: \"%s\" is tied to the input embeddings "
                            "(tie_word_embeddings); merging its adapter would change them too",
                            l->ad[i].module);
    int prev = apl_set_grad_enabled(0), mark = apl_scope_push();
    for (int i = 0; i < l->n && st == APL_OK; i++) {
        const adapter *a = &l->ad[i];
        apl_tensor *w = apl_model_w(m, a->layer, a->slot);
        /* in f32: a bf16 product would round the small update away before it is added */
        apl_tensor *d = apl_t_matmul(apl_t_to(a->b, APL_F32, m->dev), apl_t_to(a->a, APL_F32, m->dev));
        if (a->conv1d) d = apl_t_transpose(d, 0, 1);
        apl_tensor *sum = apl_t_binary(APL_ADD, apl_t_to(w, APL_F32, m->dev),
                                       apl_t_binary_s(APL_MUL, d, l->o.alpha / (double)l->o.r));
        st = apl_t_copy_(w, sum);
    }
    apl_scope_pop(mark);
    apl_set_grad_enabled(prev);
    if (st == APL_OK) apl_lora_detach(m);
    return st;
}

const apl_lora_opts *apl_lora_options(const apl_model *m) { return m->lora ? &m->lora->o : NULL; }
int apl_lora_count(const apl_model *m) { return m->lora ? m->lora->n : 0; }

apl_status apl_lora_tensor(const apl_model *m, int i, const char **module, apl_tensor **a,
                           apl_tensor **b)
{
    if (!m->lora || i < 0 || i >= m->lora->n) return apl_fail(APL_EINVAL, "lora: no adapter %d", i);
    const adapter *ad = &m->lora->ad[i];
    if (module) *module = ad->module;
    if (a) *a = ad->a;
    if (b) *b = ad->b;
    return APL_OK;
}

const char *const *apl_lora_default_targets(const apl_model *m) { return m->arch->lora_targets; }

apl_status apl_lora_to(apl_lora *l, apl_dtype dt, apl_device dev)
{
    int n = 2 * l->n, prev = apl_set_grad_enabled(0);
    apl_tensor **t = calloc((size_t)n + 1, sizeof *t);
    apl_status st = t ? APL_OK : apl_fail(APL_ENOMEM, "lora: out of memory");
    for (int i = 0; i < n && st == APL_OK; i++) {
        apl_tensor *src = i % 2 ? l->ad[i / 2].b : l->ad[i / 2].a;
        st = apl_t_ok(t[i] = apl_keep(apl_t_to(src, dt, dev)));
        if (st == APL_OK) st = apl_t_requires_grad_(t[i], apl_t_requires_grad(src));
    }
    apl_set_grad_enabled(prev);
    for (int i = 0; i < n && t; i++) {
        adapter *a = &l->ad[i / 2];
        apl_tensor **slot = i % 2 ? &a->b : &a->a;
        apl_t_free(st == APL_OK ? *slot : t[i]);
        if (st == APL_OK) *slot = t[i];
    }
    free(t);
    return st;
}
