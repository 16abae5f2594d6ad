/* apl_lua.h — what every binding file (lua/l*.c) shares: raising errors as CONTRIBUTING.md says and
 * moving tensors between C and Lua.
 *
 *   static int l_model_forward(lua_State *L) {
 *       apl_model *m = check_model(L, 1);
 *       apl_tensor *ids = apl_lua_checktensor(L, 2);
 *       apl_tensor *logits;
 *       apl_lua_check(L, apl_model_forward(m, ids, NULL, NULL, &logits), "apl.model.forward");
 *       apl_lua_pushtensor(L, logits, "apl.model.forward");   // Lua owns it now
 *       return 1;
 *   }
 *
 * Free C temporaries before calling anything here that can raise: raising never returns.
 */
#ifndef APL_LUA_H
#define APL_LUA_H

#include <lauxlib.h>
#include <lua.h>

#include "status.h"
#include "torch_shim.h"

#define APL_TENSOR_MT "apl.Tensor"

/* The apl.Tensor userdata: one handle, NULL once freed (so :free() is safe twice). */
typedef struct { apl_tensor *t; } apl_tensor_box;

/* Raises "fname: <message>" (only the message when fname is NULL). Never returns. */
int apl_lua_error(lua_State *L, const char *fname, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Raises "fname: apl_last_error()" when st != APL_OK. */
void apl_lua_check(lua_State *L, apl_status st, const char *fname);

/* Pushes a new apl.Tensor userdata that owns t. When t is NULL, raises "fname: <last error>". */
void apl_lua_pushtensor(lua_State *L, apl_tensor *t, const char *fname);
/* Like pushtensor, and records `base` (a stack index) as the new tensor's user value, so that
 * the base object is collected only after the tensor. */
void apl_lua_pushtensor_ref(lua_State *L, apl_tensor *t, int base, const char *fname);
apl_tensor *apl_lua_checktensor(lua_State *L, int idx);
apl_tensor *apl_lua_totensor(lua_State *L, int idx); /* NULL when not a live apl.Tensor */

/* Option tables: one field k of the options at idx (none or nil: every field absent), def when it
 * is nil. Each error names the function and the option: "fname: option 'k' must be a number, got
 * string"; options that are not a table raise "fname: options must be a table, got string". */
lua_Integer apl_lua_opt_int(lua_State *L, int idx, const char *k, lua_Integer def, const char *fname);
lua_Number apl_lua_opt_num(lua_State *L, int idx, const char *k, lua_Number def, const char *fname);
const char *apl_lua_opt_str(lua_State *L, int idx, const char *k, const char *def, const char *fname);
int apl_lua_opt_bool(lua_State *L, int idx, const char *k, int def, const char *fname);
/* A string option that must be one of names (NULL-terminated): its index, def when absent. */
int apl_lua_opt_enum(lua_State *L, int idx, const char *k, const char *const names[], int def,
                     const char *fname);

/* dtype and device names, for every binding that takes them. dtypes: the shim's names (f32, f16,
 * bf16, f64, i64, i32, u8, bool) and torch's (float32, half, long, ...); devices: "cpu", "cuda",
 * "cuda:N". Errors name the function and the value; a CUDA device raises when libtorch has no
 * CUDA or fewer devices. */
int apl_lua_parse_dtype(const char *s, apl_dtype *out); /* 1 when s names a dtype; never raises */
apl_dtype apl_lua_check_dtype(lua_State *L, const char *s, int float_only, const char *fname);
/* 0 when s is not a device name; raises when it names a CUDA device that is not there. */
int apl_lua_parse_device(lua_State *L, const char *s, apl_device *out, const char *fname);
apl_device apl_lua_check_device(lua_State *L, const char *s, const char *fname);
/* x:to(s): s is a dtype (sets *dt) or a device (sets *dev); raises when it is neither. */
void apl_lua_to_target(lua_State *L, const char *s, int float_only, apl_dtype *dt, apl_device *dev,
                       const char *fname);
void apl_lua_pushdevice(lua_State *L, apl_device dev); /* "cpu", "cuda:0", ... */

/* The progress callback that prints a status line with counts and ETA to stderr (lprogress.c). */
typedef struct apl_lua_progress apl_lua_progress;
void apl_lua_progress_cb(void *ud, const char *phase, long done, long total);
/* A reporter for apl_lua_progress_cb (ud) printing through apl.progress.new(phase, total); may
 * raise, so make it before allocating C temporaries. _free prints the final line. */
apl_lua_progress *apl_lua_progress_new(lua_State *L, const char *phase, long total);
void apl_lua_progress_free(apl_lua_progress *p);

/* The model of the apl.Model userdata at idx (lua/lmodel.c); raises when it is not one or was
 * freed. */
typedef struct apl_model apl_model;
apl_model *apl_lua_checkmodel(lua_State *L, int idx);

/* Registered modules: main.c preloads each luaopen_* that is linked in. */
int luaopen_apl_tensor(lua_State *L);
int luaopen_apl_core_sys(lua_State *L);

#endif
