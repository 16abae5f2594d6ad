/* lcompute.c — apl.core.compute: generation, scoring and training over apl.Model objects.
 *
 *   local C = require "apl.core.compute"
 *   local rows = C.generate(model, {{15496, 11}}, {n = 2, max_new_tokens = 8, seed = 1})
 *   local lp = C.logprob(model, {{15496}}, {{11, 995}}, {batch_size = 8})   -- apl.Tensor (N)
 *   local la, lb = C.logprob_pairs(model, {{15496}}, {{11}}, {{995, 13}})   -- one forward per pair
 *   local opt = C.optim(model, {lr = 1e-5})
 *   local r = C.dpo_accumulate(model, prompts, chosen, rejected, ref_c, ref_r, {beta = 0.1, scale = 1/4})
 *   local d = C.dpo_options{loss = "ipo"}   -- {beta = 0.2, loss = "ipo", label_smoothing = 0}
 *   local gnorm = opt:step()
 *
 * Token sequences are Lua lists of integers; lists of sequences are lists of those. The Lua
 * modules apl.generate, apl.score, apl.dpo and apl.sft wrap these with tokenization and metrics.
 * Buffers handed to the core are Lua userdata, so an error raised half-way frees them.
 */
#include <string.h>

#include "apl_lua.h"
#include "generate.h"
#include "score.h"
#include "train.h"

#define OPTIM_MT "apl.Optim"

/* ------------------------------------------------------------------------------------------ */
/* Lua lists <-> C arrays */

static int64_t list_len(lua_State *L, int idx, const char *fname, const char *what)
{
    if (!lua_istable(L, idx)) apl_lua_error(L, fname, "%s must be a list, got %s", what, luaL_typename(L, idx));
    return (int64_t)luaL_len(L, idx);
}

/* Reads a list of token lists at idx into one userdata pushed on the stack (sequences, then the
 * ids they point into); returns the sequences and their count. */
static apl_seq *check_seqs(lua_State *L, int idx, const char *fname, const char *what, int64_t *n)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) apl_lua_error(L, fname, "%s must be a list, got %s", what, luaL_typename(L, idx));
    /* raw lengths and reads only: a __len or __index could answer differently on the second pass
     * than on the first, which sized the buffer */
    *n = (int64_t)lua_rawlen(L, idx);
    int64_t total = 0;
    for (int64_t i = 1; i <= *n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
            apl_lua_error(L, fname, "%s[%lld] must be a list, got %s", what, (long long)i, luaL_typename(L, -1));
        total += (int64_t)lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    apl_seq *seqs = lua_newuserdatauv(L, sizeof(apl_seq) * (*n + 1) + sizeof(int64_t) * (total + 1), 0);
    int64_t *ids = (int64_t *)(seqs + *n + 1), at = 0;
    for (int64_t i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, i + 1);
        seqs[i].ids = ids + at;
        seqs[i].len = lua_istable(L, -1) ? (int64_t)lua_rawlen(L, -1) : 0;
        /* a finalizer run by the allocation above may have changed a list: never write past */
        if (seqs[i].len > total - at) apl_lua_error(L, fname, "%s changed while being read", what);
        for (int64_t t = 1; t <= seqs[i].len; t++) {
            lua_rawgeti(L, -1, t);
            int ok;
            ids[at++] = (int64_t)lua_tointegerx(L, -1, &ok);
            if (!ok) apl_lua_error(L, fname, "%s[%lld][%lld] is not an integer", what, (long long)i + 1, (long long)t);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return seqs;
}

/* Prompts (arg 2) and completions (arg 3): two id lists of the same length, returned. */
static int64_t check_pairs(lua_State *L, const char *fname, apl_seq **p, apl_seq **c)
{
    int64_t n, nc;
    *p = check_seqs(L, 2, fname, "prompts", &n);
    *c = check_seqs(L, 3, fname, "completions", &nc);
    if (n != nc) apl_lua_error(L, fname, "%lld prompts but %lld completions", (long long)n, (long long)nc);
    return n;
}

/* Reads a list of n numbers into a float userdata pushed on the stack. */
static float *check_floats(lua_State *L, int idx, int64_t n, const char *fname, const char *what)
{
    idx = lua_absindex(L, idx);
    if (list_len(L, idx, fname, what) != n) apl_lua_error(L, fname, "%s must hold %lld numbers", what, (long long)n);
    float *x = lua_newuserdatauv(L, sizeof(float) * (n + 1), 0);
    for (int64_t i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        int ok;
        x[i] = (float)lua_tonumberx(L, -1, &ok);
        if (!ok) apl_lua_error(L, fname, "%s[%lld] is not a number", what, (long long)i + 1);
        lua_pop(L, 1);
    }
    return x;
}

static void *scratch(lua_State *L, size_t bytes) { return lua_newuserdatauv(L, bytes ? bytes : 1, 0); }

static void push_floats(lua_State *L, const float *x, int64_t n)
{
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, x[i]);
        lua_seti(L, -2, i + 1);
    }
}

static void push_ints(lua_State *L, const int64_t *x, int64_t n)
{
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushinteger(L, x[i]);
        lua_seti(L, -2, i + 1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Generation and scoring */

static void generate_opts(lua_State *L, int idx, apl_generate_opts *o, const char *fname)
{
    *o = apl_generate_defaults();
    o->n = apl_lua_opt_int(L, idx, "n", o->n, fname);
    o->max_new_tokens = apl_lua_opt_int(L, idx, "max_new_tokens", o->max_new_tokens, fname);
    o->temperature = apl_lua_opt_num(L, idx, "temperature", o->temperature, fname);
    o->top_k = apl_lua_opt_int(L, idx, "top_k", o->top_k, fname);
    o->top_p = apl_lua_opt_num(L, idx, "top_p", o->top_p, fname);
    o->seed = (uint64_t)apl_lua_opt_int(L, idx, "seed", 0, fname);
    o->batch_size = apl_lua_opt_int(L, idx, "batch_size", o->batch_size, fname);
    o->pad_id = apl_lua_opt_int(L, idx, "pad_id", o->pad_id, fname);
    if (!lua_istable(L, idx)) return;
    if (lua_getfield(L, idx, "stops") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    o->stops = check_seqs(L, -1, fname, "stops", &o->n_stops);
    lua_remove(L, -2); // the buffer stays on the stack for the call, the list goes
}

/* Pushes the rows of the result (light userdata at 1): run protected, so that the C result is
 * freed even when building the tables runs out of memory. */
static int push_generated(lua_State *L)
{
    const apl_generate_result *r = lua_touserdata(L, 1);
    lua_createtable(L, (int)r->rows, 0);
    for (int64_t k = 0; k < r->rows; k++) {
        const float *lp = r->logprobs + k * r->width;
        double sum = 0;
        for (int64_t t = 0; t < r->len[k]; t++) sum += lp[t];
        lua_createtable(L, 0, 3);
        push_ints(L, r->ids + k * r->width, r->len[k]);
        lua_setfield(L, -2, "ids");
        push_floats(L, lp, r->len[k]);
        lua_setfield(L, -2, "logprobs");
        lua_pushnumber(L, sum);
        lua_setfield(L, -2, "logprob");
        lua_seti(L, -2, k + 1);
    }
    return 1;
}

/* generate(model, prompt_ids, opts) -> rows {ids=, logprobs=, logprob=}, row k = prompt
 * (k-1) // n + 1, sample (k-1) % n + 1. Prints a progress line (apl.progress). */
static int l_compute_generate(lua_State *L)
{
    const char *fname = "apl.generate";
    lua_settop(L, 3); /* an absent options table is nil at 3, under the buffers pushed below */
    apl_model *m = apl_lua_checkmodel(L, 1);
    int64_t n;
    apl_seq *prompts = check_seqs(L, 2, fname, "prompts", &n);
    apl_generate_opts o;
    generate_opts(L, 3, &o, fname);
    apl_generate_result r;
    apl_lua_progress *pr = apl_lua_progress_new(L, "generate", (long)(n * o.n)); // last: may raise
    o.progress = apl_lua_progress_cb, o.progress_ud = pr;
    apl_status st = apl_generate(m, prompts, n, &o, &r);
    apl_lua_progress_free(pr);
    apl_lua_check(L, st, fname);
    lua_pushcfunction(L, push_generated);
    lua_pushlightuserdata(L, &r);
    int ok = lua_pcall(L, 1, 1, 0);
    apl_generate_result_free(&r);
    return ok == LUA_OK ? 1 : lua_error(L);
}

/* logprob(model, prompt_ids, completion_ids, opts) -> Tensor (N) f32 [, per-token lists];
 * opts: batch_size, pad_id, per_token, phase (the progress line's name, "score"). */
/* The scoring options at idx (batch_size, pad_id, phase) and a progress line over n items,
 * pushed last (it may raise); the caller frees it after the call. */
static apl_lua_progress *score_opts(lua_State *L, int idx, int64_t n, apl_score_opts *o, const char *fname)
{
    *o = (apl_score_opts){.batch_size = apl_lua_opt_int(L, idx, "batch_size", 16, fname),
                          .pad_id = apl_lua_opt_int(L, idx, "pad_id", -1, fname),
                          .phase = apl_lua_opt_str(L, idx, "phase", "score", fname)};
    apl_lua_progress *pr = apl_lua_progress_new(L, o->phase, (long)n);
    o->progress = apl_lua_progress_cb, o->progress_ud = pr;
    return pr;
}

static int l_compute_logprob(lua_State *L)
{
    const char *fname = "apl.logprob";
    lua_settop(L, 4); /* an absent options table is nil at 4, under the buffers pushed below */
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_seq *p, *c;
    int64_t n = check_pairs(L, fname, &p, &c);
    int per_token = apl_lua_opt_bool(L, 4, "per_token", 0, fname);
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += c[i].len;
    float *sums = scratch(L, sizeof(float) * n), *pt = per_token ? scratch(L, sizeof(float) * total) : NULL;
    apl_score_opts o;
    apl_lua_progress *pr = score_opts(L, 4, n, &o, fname);
    apl_status st = apl_score_logprobs(m, p, c, n, &o, sums, pt);
    apl_lua_progress_free(pr);
    apl_lua_check(L, st, fname);
    int64_t shape[1] = {n};
    apl_lua_pushtensor(L, apl_t_from_data(sums, shape, 1, APL_F32), fname);
    if (!per_token) return 1;
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0, at = 0; i < n; at += c[i].len, i++) {
        push_floats(L, pt + at, c[i].len);
        lua_seti(L, -2, i + 1);
    }
    return 2;
}

/* logprob_pairs(model, prompts, a, b, opts) -> sums_a, sums_b (apl.Tensor (N) each): both
 * completions of each prompt scored in one packed forward, the prompt run once. */
static int l_compute_logprob_pairs(lua_State *L)
{
    const char *fname = "apl.logprob_pairs";
    lua_settop(L, 5); /* an absent options table is nil at 5, under the buffers pushed below */
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_seq *p, *a;
    int64_t n = check_pairs(L, fname, &p, &a), nb;
    apl_seq *b = check_seqs(L, 4, fname, "second completions", &nb);
    if (nb != n) apl_lua_error(L, fname, "%lld prompts but %lld second completions", (long long)n, (long long)nb);
    float *sa = scratch(L, sizeof(float) * n), *sb = scratch(L, sizeof(float) * n);
    apl_score_opts o;
    apl_lua_progress *pr = score_opts(L, 5, n, &o, fname);
    apl_status st = apl_score_pair_logprobs(m, p, a, b, n, &o, sa, sb);
    apl_lua_progress_free(pr);
    apl_lua_check(L, st, fname);
    int64_t shape[1] = {n};
    apl_lua_pushtensor(L, apl_t_from_data(sa, shape, 1, APL_F32), fname);
    apl_lua_pushtensor(L, apl_t_from_data(sb, shape, 1, APL_F32), fname);
    return 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Training */

typedef struct { apl_optim *opt; } optim_box;

/* The optimizer borrows its model's parameters: the model (its user value, which keeps it from
 * being collected first) must not have been freed by m:free() since. */
static optim_box *check_optim(lua_State *L, int idx)
{
    optim_box *b = luaL_checkudata(L, idx, OPTIM_MT);
    if (!b->opt) luaL_argerror(L, idx, "optimizer was freed");
    lua_getiuservalue(L, idx, 1);
    apl_lua_checkmodel(L, -1); // raises "model was freed"
    lua_pop(L, 1);
    return b;
}

/* optim(model, {lr=, weight_decay=, grad_clip=, beta1=, beta2=, eps=}) -> apl.Optim */
static int l_compute_optim(lua_State *L)
{
    const char *fname = "apl.optim";
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_optim_opts o = apl_optim_defaults();
    o.lr = apl_lua_opt_num(L, 2, "lr", o.lr, fname);
    o.beta1 = apl_lua_opt_num(L, 2, "beta1", o.beta1, fname);
    o.beta2 = apl_lua_opt_num(L, 2, "beta2", o.beta2, fname);
    o.eps = apl_lua_opt_num(L, 2, "eps", o.eps, fname);
    o.weight_decay = apl_lua_opt_num(L, 2, "weight_decay", o.weight_decay, fname);
    o.grad_clip = apl_lua_opt_num(L, 2, "grad_clip", o.grad_clip, fname);
    optim_box *b = lua_newuserdatauv(L, sizeof *b, 1); // closed first, then opened
    b->opt = NULL;
    luaL_setmetatable(L, OPTIM_MT);
    lua_pushvalue(L, 1); // the model outlives its optimizer
    lua_setiuservalue(L, -2, 1);
    apl_lua_check(L, apl_optim_new(m, &o, &b->opt), fname);
    return 1;
}

static int l_optim_free(lua_State *L)
{
    optim_box *b = luaL_checkudata(L, 1, OPTIM_MT);
    apl_optim_free(b->opt);
    b->opt = NULL;
    return 0;
}

static int l_optim_step(lua_State *L)
{
    double norm = 0;
    apl_lua_check(L, apl_optim_step(check_optim(L, 1)->opt, &norm), "apl.Optim:step");
    lua_pushnumber(L, norm);
    return 1;
}

static int l_optim_reset(lua_State *L)
{
    apl_lua_check(L, apl_optim_reset(check_optim(L, 1)->opt), "apl.Optim:reset");
    return 0;
}

static int l_optim_zero_grad(lua_State *L)
{
    apl_lua_check(L, apl_optim_zero_grad(check_optim(L, 1)->opt), "apl.Optim:zero_grad");
    return 0;
}

/* opt:grads() -> list over the tensors it trains (apl_model_trainable: every parameter, or the
 * LoRA adapters' A and B) of their gradient (apl.Tensor) or false */
static int l_optim_grads(lua_State *L)
{
    check_optim(L, 1);
    lua_getiuservalue(L, 1, 1);
    apl_model *m = apl_lua_checkmodel(L, -1);
    int n = apl_model_num_trainable(m);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        apl_tensor *g = NULL;
        apl_lua_check(L, apl_t_grad(apl_model_trainable(m, i), &g), "apl.Optim:grads");
        if (g) apl_lua_pushtensor(L, g, "apl.Optim:grads");
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* opt:set_dist(on): sum gradients over the process group before each step (train.h) */
static int l_optim_set_dist(lua_State *L)
{
    apl_optim *opt = check_optim(L, 1)->opt;
    apl_lua_check(L, apl_optim_set_dist(opt, lua_toboolean(L, 2)), "apl.Optim:set_dist");
    return 0;
}

static int l_optim_steps(lua_State *L)
{
    lua_pushinteger(L, apl_optim_steps(check_optim(L, 1)->opt));
    return 1;
}

/* The DPO method's options, their defaults and their checks live here once: beta 0.2 (the DPO
 * paper's), loss "sigmoid" (or "ipo", "hinge"), label_smoothing 0. apl.dpo.new takes them from
 * dpo_options; dpo_accumulate and dpo_loss read them the same way. */
static const char *const DPO_LOSSES[] = {"sigmoid", "ipo", "hinge", NULL};
_Static_assert(APL_DPO_SIGMOID == 0 && APL_DPO_IPO == 1 && APL_DPO_HINGE == 2,
               "DPO_LOSSES is in apl_dpo_loss_type order");

static void dpo_opts(lua_State *L, int idx, apl_dpo_opts *o, const char *fname)
{
    o->loss = (apl_dpo_loss_type)apl_lua_opt_enum(L, idx, "loss", DPO_LOSSES, APL_DPO_SIGMOID, fname);
    o->beta = apl_lua_opt_num(L, idx, "beta", 0.2, fname);
    o->label_smoothing = apl_lua_opt_num(L, idx, "label_smoothing", 0, fname);
}

/* dpo_options(opts [, fname]) -> {beta=, loss=, label_smoothing=}: opts checked, defaults filled
 * in; errors are prefixed with fname ("apl.dpo"). Other fields of opts are not looked at. */
static int l_compute_dpo_options(lua_State *L)
{
    apl_dpo_opts o;
    dpo_opts(L, 1, &o, luaL_optstring(L, 2, "apl.dpo"));
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, o.beta);
    lua_setfield(L, -2, "beta");
    lua_pushstring(L, DPO_LOSSES[o.loss]);
    lua_setfield(L, -2, "loss");
    lua_pushnumber(L, o.label_smoothing);
    lua_setfield(L, -2, "label_smoothing");
    return 1;
}

/* dpo_accumulate(policy, prompts, chosen, rejected, ref_chosen, ref_rejected, opts) ->
 * {loss_sum=, logp_chosen=, logp_rejected=, reward_chosen=, reward_rejected=} */
static int l_compute_dpo_accumulate(lua_State *L)
{
    const char *fname = "apl.dpo";
    lua_settop(L, 7); /* an absent options table is nil at 7, under the buffers pushed below */
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_dpo_batch b;
    int64_t nc, nr;
    b.prompts = check_seqs(L, 2, fname, "prompts", &b.n);
    b.chosen = check_seqs(L, 3, fname, "chosen", &nc);
    b.rejected = check_seqs(L, 4, fname, "rejected", &nr);
    if (nc != b.n || nr != b.n) return apl_lua_error(L, fname, "prompts, chosen and rejected differ in length");
    b.ref_chosen = check_floats(L, 5, b.n, fname, "ref_chosen");
    b.ref_rejected = check_floats(L, 6, b.n, fname, "ref_rejected");
    apl_dpo_opts o;
    dpo_opts(L, 7, &o, fname);
    double scale = apl_lua_opt_num(L, 7, "scale", 1.0, fname);
    int64_t pad = apl_lua_opt_int(L, 7, "pad_id", -1, fname);
    float *buf = scratch(L, sizeof(float) * 4 * b.n);
    apl_dpo_out out = {buf, buf + b.n, buf + 2 * b.n, buf + 3 * b.n, 0};
    apl_lua_check(L, apl_dpo_accumulate(m, &o, &b, pad, scale, &out), fname);
    lua_createtable(L, 0, 5);
    lua_pushnumber(L, out.loss_sum);
    lua_setfield(L, -2, "loss_sum");
    static const char *const keys[] = {"logp_chosen", "logp_rejected", "reward_chosen", "reward_rejected"};
    for (int k = 0; k < 4; k++) {
        push_floats(L, buf + k * b.n, b.n);
        lua_setfield(L, -2, keys[k]);
    }
    return 1;
}

/* dpo_loss(pc, pr, rc, rr, opts) -> mean loss, d loss/d pc (list), d loss/d pr (list) */
static int l_compute_dpo_loss(lua_State *L)
{
    const char *fname = "apl.dpo.loss";
    lua_settop(L, 5); /* an absent options table is nil at 5, under the buffers pushed below */
    int64_t n = list_len(L, 1, fname, "policy_chosen");
    const float *pc = check_floats(L, 1, n, fname, "policy_chosen");
    const float *pr = check_floats(L, 2, n, fname, "policy_rejected");
    const float *rc = check_floats(L, 3, n, fname, "ref_chosen");
    const float *rr = check_floats(L, 4, n, fname, "ref_rejected");
    apl_dpo_opts o;
    dpo_opts(L, 5, &o, fname);
    float *g = scratch(L, sizeof(float) * 2 * n);
    double loss;
    apl_lua_check(L, apl_dpo_loss_grad(&o, n, pc, pr, rc, rr, &loss, g, g + n), fname);
    lua_pushnumber(L, loss);
    push_floats(L, g, n);
    push_floats(L, g + n, n);
    return 3;
}

/* sft_accumulate(model, prompts, completions, {scale=, pad_id=}) -> summed NLL */
static int l_compute_sft_accumulate(lua_State *L)
{
    const char *fname = "apl.sft";
    lua_settop(L, 4); /* an absent options table is nil at 4, under the buffers pushed below */
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_seq *p, *c;
    int64_t n = check_pairs(L, fname, &p, &c);
    double scale = apl_lua_opt_num(L, 4, "scale", 1.0, fname), nll = 0;
    apl_lua_check(L, apl_sft_accumulate(m, p, c, n, apl_lua_opt_int(L, 4, "pad_id", -1, fname), scale, &nll), fname);
    lua_pushnumber(L, nll);
    return 1;
}

int luaopen_apl_core_compute(lua_State *L)
{
    static const luaL_Reg optim_methods[] = {
        {"step", l_optim_step}, {"reset", l_optim_reset}, {"zero_grad", l_optim_zero_grad},
        {"steps", l_optim_steps}, {"grads", l_optim_grads}, {"free", l_optim_free},
        {"set_dist", l_optim_set_dist},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"generate", l_compute_generate}, {"logprob", l_compute_logprob},
        {"logprob_pairs", l_compute_logprob_pairs},
        {"optim", l_compute_optim}, {"dpo_accumulate", l_compute_dpo_accumulate},
        {"dpo_loss", l_compute_dpo_loss}, {"dpo_options", l_compute_dpo_options},
        {"sft_accumulate", l_compute_sft_accumulate},
        {NULL, NULL},
    };
    luaL_newmetatable(L, OPTIM_MT);
    luaL_newlib(L, optim_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_optim_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_optim_free);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
