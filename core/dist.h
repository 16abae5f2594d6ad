/* dist.h — several processes, one run: collectives over libtorch's c10d.
 *
 *   apl_dist_opts o = {.rank = 1, .world_size = 2, .master_addr = "10.0.0.1", .master_port = 29500,
 *                      .timeout_s = 300};
 *   if (apl_dist_init(&o) != APL_OK) die(apl_last_error());
 *   apl_dist_all_reduce(t, APL_DIST_SUM);             // in place, every rank the same sum
 *   apl_dist_all_reduce_grads(params, n, 0);         // what an optimizer step does first
 *
 * One process group per process, joined once: rank 0 serves a TCPStore at master_addr:port, every
 * rank meets there, then the process group (Gloo between CPUs, NCCL between GPUs) connects them
 * all. Collectives must be called by every rank in the same order, as in torch.distributed.
 *
 * Faults. Every wait (the rendezvous, each collective) ends after timeout_s. Each rank beats a
 * heartbeat into the store twice a second with the number of the collective it last entered.
 * When a collective fails or times out, the error names the ranks at fault: a rank whose
 * heartbeat stopped ("rank 1 stopped: no heartbeat for 2.0 s, last in collective #57") or one
 * alive but behind ("rank 1 is alive but has not reached collective #57 (all_reduce): it is at
 * #56"); when rank 0 itself is gone, its store is unreachable and the message says so. A port in
 * use, a rank that never arrives and a master that never answers are named too.
 *
 * Gradients. apl_dist_all_reduce_grads sums the gradients of params across ranks in buckets
 * (flattened, up to bucket_bytes each, per dtype and device), as DDP does. Trainers scale each
 * rank's shard by 1 / (the whole minibatch) (train.h), so the sum is the whole minibatch's mean
 * gradient: the average over examples, exact for uneven shards. A parameter with no gradient on
 * any rank keeps none (Adam skips it, as in one process); one that has a gradient on some ranks
 * only is summed with zeros from the others.
 *
 * Statuses: APL_EINVAL (bad option, not joined), APL_EIO (rendezvous, a peer, a timeout),
 * APL_EUNSUPPORTED (built without the backend asked for), APL_ETORCH.
 */
#ifndef APL_DIST_H
#define APL_DIST_H

#include <stddef.h>

#include "torch_shim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { APL_DIST_GLOO, APL_DIST_NCCL } apl_dist_backend;
typedef enum { APL_DIST_SUM, APL_DIST_AVG, APL_DIST_MAX, APL_DIST_MIN } apl_dist_op;

typedef struct {
    int rank, world_size, local_rank;
    const char *master_addr; /* rank 0's address (a name or an IP) */
    int master_port;
    double timeout_s;        /* the rendezvous and every collective */
    apl_dist_backend backend;
} apl_dist_opts;

typedef struct {
    long collectives;
    double bytes, seconds;           /* tensor data through the process group, time in it */
    double grad_bytes, grad_seconds; /* of which gradient all-reduces */
} apl_dist_stats;

int apl_dist_has_gloo(void); /* built with Gloo (libgloo-dev): CPU process groups */
int apl_dist_has_nccl(void); /* built with NCCL (a CUDA libtorch and libnccl-dev) */

apl_status apl_dist_init(const apl_dist_opts *o);
int apl_dist_joined(void);
int apl_dist_rank(void);       /* 0 when not joined */
int apl_dist_world_size(void); /* 1 when not joined */
apl_dist_backend apl_dist_backend_of(void);
/* The device tensors must be on for collectives: the CPU for Gloo, cuda:local_rank for NCCL. */
apl_device apl_dist_device(void);

apl_status apl_dist_barrier(void);
/* In place; t may be on any device (it is moved for the collective and back). */
apl_status apl_dist_all_reduce(apl_tensor *t, apl_dist_op op);
apl_status apl_dist_broadcast(apl_tensor *t, int root);
/* Every rank's n bytes: *out (malloc'd, free it) holds them back to back in rank order, lens[r]
 * (world_size entries, the caller's) their sizes. */
apl_status apl_dist_all_gather_bytes(const void *data, size_t n, char **out, size_t *lens);
/* root's bytes on every rank: *out (malloc'd) and *n; data and n are read on root only. */
apl_status apl_dist_broadcast_bytes(const void *data, size_t n, int root, char **out, size_t *out_n);
/* Sums the gradients of params over the ranks (see above); bucket_bytes 0: 25 MiB, DDP's. */
apl_status apl_dist_all_reduce_grads(apl_tensor *const *params, int n, size_t bucket_bytes);
apl_dist_stats apl_dist_get_stats(void);
/* The end of a run that went well: every rank waits for the others, then all leave together
 * (apl calls it when a script ends without an error; an error leaves at once). */
apl_status apl_dist_finish(void);
/* Leaves the process group now (joins its threads); the process may join again. */
void apl_dist_shutdown(void);

#ifdef __cplusplus
}
#endif
#endif
