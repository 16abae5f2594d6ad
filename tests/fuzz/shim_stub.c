/* shim_stub.c — the few tensor functions core/safetensors.c calls, without libtorch: a "tensor"
 * is its bytes and shape. from_data copies and from_blob reads every byte it is given, so that
 * AddressSanitizer sees an entry whose offsets reach past its buffer. */
#include <stdlib.h>
#include <string.h>

#include "torch_shim.h"

struct apl_tensor {
    void *copy;
    void (*release)(void *);
    void *ctx;
    int64_t shape[APL_MAX_DIMS];
    int ndim;
    apl_dtype dt;
};

static const size_t SIZES[APL_NDTYPES] = {4, 2, 2, 8, 8, 4, 1, 1};
size_t apl_dtype_size(apl_dtype dt) { return (unsigned)dt < APL_NDTYPES ? SIZES[dt] : 0; }
const char *apl_dtype_name(apl_dtype dt) { return (unsigned)dt < APL_NDTYPES ? "dtype" : "?"; }

static size_t nbytes(const int64_t *shape, int ndim, apl_dtype dt)
{
    size_t n = apl_dtype_size(dt);
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

static apl_tensor *make(const int64_t *shape, int ndim, apl_dtype dt)
{
    apl_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->ndim = ndim;
    t->dt = dt;
    return t;
}

apl_tensor *apl_t_from_data(const void *data, const int64_t *shape, int ndim, apl_dtype dt)
{
    apl_tensor *t = make(shape, ndim, dt);
    size_t n = nbytes(shape, ndim, dt);
    if (t && (t->copy = malloc(n ? n : 1))) memcpy(t->copy, data, n);
    return t;
}

apl_tensor *apl_t_from_blob(void *data, const int64_t *shape, int ndim, apl_dtype dt,
                            void (*release)(void *), void *ctx)
{
    apl_tensor *t = make(shape, ndim, dt);
    if (!t) return NULL;
    volatile unsigned char sum = 0;
    size_t n = nbytes(shape, ndim, dt);
    for (size_t i = 0; i < n; i++) sum ^= ((unsigned char *)data)[i];
    t->release = release;
    t->ctx = ctx;
    return t;
}

void apl_t_free(apl_tensor *t)
{
    if (!t) return;
    if (t->release) t->release(t->ctx);
    free(t->copy);
    free(t);
}

apl_status apl_t_ok(const apl_tensor *t) { return t ? APL_OK : APL_ETORCH; }
/* writing is not fuzzed: these are never reached */
apl_dtype apl_t_dtype(const apl_tensor *t) { return t->dt; }
int apl_t_shape(const apl_tensor *t, int64_t *shape)
{
    memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return t->ndim;
}
int64_t apl_t_numel(const apl_tensor *t) { return (int64_t)(nbytes(t->shape, t->ndim, t->dt) / apl_dtype_size(t->dt)); }
apl_device apl_t_device(const apl_tensor *t) { (void)t; return APL_CPU; }
int apl_t_is_contiguous(const apl_tensor *t) { (void)t; return 1; }
void *apl_t_data(apl_tensor *t) { return t->copy; }
apl_status apl_t_read(const apl_tensor *t, apl_dtype dt, void *buf, size_t n)
{
    (void)dt;
    if (t->copy) memcpy(buf, t->copy, n);
    return APL_OK;
}
