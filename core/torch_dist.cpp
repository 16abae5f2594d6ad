// torch_dist.cpp — dist.h over libtorch's c10d: a TCPStore rendezvous, ProcessGroupGloo or
// ProcessGroupNCCL, a heartbeat thread that lets a failed collective name the rank at fault.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "dist.h"
#define APL_COMPAT_C10D
#include "torch_compat.hpp"
#include "torch_shim_impl.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;
constexpr int kBeatMs = 500;        // heartbeat period
constexpr int kStaleMs = 2000;      // no beat for this long: the rank has stopped
constexpr size_t kBucketBytes = 25u << 20;

struct Group {
    apl_dist_opts o{};
    std::string addr;
    ms timeout{0};
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<apl_compat::CommBackend> pg;
    at::Device dev{at::kCPU};
    std::atomic<long> seq{0};        // the collective this rank last entered
    std::atomic<const char *> op{""};
    std::atomic<bool> stop{false};
    std::thread beat;
    apl_dist_stats stats{};
};
Group *G = nullptr;

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The first line of an exception's message (c10d's carry long tails).
std::string message_of(std::exception_ptr e)
{
    std::string m;
    try {
        std::rethrow_exception(e);
    } catch (const c10::Error &x) {
        m = x.what_without_backtrace();
    } catch (const std::exception &x) {
        m = x.what();
    } catch (...) {
        m = "unknown C++ exception";
    }
    m = m.substr(0, m.find('\n'));
    return m.size() > 300 ? m.substr(0, 300) + "..." : m;
}

// torchrun's agent already serves a TCPStore on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True):
// then every rank is its client, and apl's keys live under a prefix of their own, one per
// restart of the agent's workers, so a restarted round never reads the last one's keys.
bool agent_store()
{
    const char *v = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    return v && std::strcmp(v, "True") == 0;
}

// A connection to rank 0's store: served by this process when `server` (rank 0, without
// torchrun's agent), waiting for `world` ranks to arrive when world > 0.
c10::intrusive_ptr<c10d::Store> connect_store(const std::string &addr, int port, bool server,
                                              int world, ms timeout)
{
    bool agent = agent_store();
    c10d::TCPStoreOptions so;
    so.port = (uint16_t)port;
    so.isServer = server && !agent;
    so.waitWorkers = world > 0 && !agent;
    if (so.waitWorkers) so.numWorkers = (size_t)world;
    so.timeout = timeout;
    apl_compat::plain_tcp_store(so);
    c10::intrusive_ptr<c10d::Store> s = c10::make_intrusive<c10d::TCPStore>(addr, so);
    if (!agent) return s;
    const char *restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
    return c10::make_intrusive<c10d::PrefixStore>(std::string("apl/") + (restart ? restart : "0"), s);
}

std::string beat_key(int rank) { return "apl/heartbeat/" + std::to_string(rank); }

// Writes "<beat> <collective>" under this rank's key every kBeatMs, on its own connection (a
// collective may hold the main one). When the store goes away (rank 0 stopped) the heartbeat
// ends quietly: the next collective reports it, and retrying would only fill stderr with
// c10d's connection errors.
void heartbeat(Group *g)
{
    c10::intrusive_ptr<c10d::Store> s;
    for (long beat = 0; !g->stop; beat++) {
        try {
            if (!s) s = connect_store(g->addr, g->o.master_port, false, 0, ms(2000));
            std::string v = std::to_string(beat) + " " + std::to_string(g->seq.load());
            s->set(beat_key(g->o.rank), std::vector<uint8_t>(v.begin(), v.end()));
        } catch (...) {
            return;
        }
        for (int i = 0; i < kBeatMs / 50 && !g->stop; i++) std::this_thread::sleep_for(ms(50));
    }
}

struct Beat {
    long beat = -1, seq = -1;
};

std::vector<Beat> read_beats(c10d::Store &s, int world)
{
    std::vector<Beat> out(world);
    for (int r = 0; r < world; r++) {
        if (!s.check({beat_key(r)})) continue;
        std::vector<uint8_t> v = s.get(beat_key(r));
        std::sscanf(std::string(v.begin(), v.end()).c_str(), "%ld %ld", &out[r].beat, &out[r].seq);
    }
    return out;
}

// Why collective `seq` failed, as far as the heartbeats tell: two readings kStaleMs apart.
std::string diagnose(long seq, const char *op)
{
    const apl_dist_opts &o = G->o;
    std::string why;
    try {
        auto s = connect_store(G->addr, o.master_port, false, 0, ms(3000));
        std::vector<Beat> a = read_beats(*s, o.world_size);
        std::this_thread::sleep_for(ms(kStaleMs));
        std::vector<Beat> b = read_beats(*s, o.world_size);
        for (int r = 0; r < o.world_size; r++) {
            if (r == o.rank) continue;
            char line[200];
            if (b[r].beat < 0)
                std::snprintf(line, sizeof line, "; rank %d never sent a heartbeat", r);
            else if (b[r].beat == a[r].beat)
                std::snprintf(line, sizeof line, "; rank %d stopped: no heartbeat for %.1f s (last seen at collective #%ld)",
                              r, kStaleMs / 1000.0, b[r].seq);
            else if (b[r].seq < seq)
                std::snprintf(line, sizeof line, "; rank %d is alive but has not reached collective #%ld (%s): it is at #%ld",
                              r, seq, op, b[r].seq);
            else
                continue;
            why += line;
        }
        if (why.empty()) why = "; every other rank is alive and has reached it";
    } catch (...) {
        char line[300];
        std::snprintf(line, sizeof line, "; rank 0's store at %s:%d does not answer: rank 0 has stopped",
                      G->addr.c_str(), o.master_port);
        why = line;
    }
    return why;
}

// Runs one collective: numbers it (for the heartbeat), waits up to the timeout, counts its bytes
// and time, and turns any failure into an error that says which rank is at fault.
template <class F> apl_status collective(const char *op, double bytes, bool grads, F &&make_work)
{
    if (!G) return apl_fail(APL_EINVAL, "apl.dist: %s outside a process group (apl_dist_init first)", op);
    long seq = ++G->seq;
    G->op = op;
    auto t0 = Clock::now();
    try {
        c10::intrusive_ptr<c10d::Work> w = make_work();
        if (w) w->wait(G->timeout);
    } catch (...) {
        std::string what = message_of(std::current_exception());
        double took = seconds_since(t0);
        std::string why = diagnose(seq, op);
        return apl_fail(APL_EIO, "apl.dist: rank %d: %s (collective #%ld) failed after %.1f s (timeout %.0f s): %s%s",
                        G->o.rank, op, seq, took, G->o.timeout_s, what.c_str(), why.c_str());
    }
    double dt = seconds_since(t0);
    G->stats.collectives++;
    G->stats.bytes += bytes;
    G->stats.seconds += dt;
    if (grads) {
        G->stats.grad_bytes += bytes;
        G->stats.grad_seconds += dt;
    }
    return APL_OK;
}

// t as the process group takes it: on its device, contiguous (t itself when it already is, so
// the collective writes into t).
at::Tensor for_collective(const at::Tensor &t) { return t.to(G->dev).contiguous(); }

double nbytes(const at::Tensor &t) { return (double)t.numel() * (double)t.element_size(); }

c10d::ReduceOp reduce_op(apl_dist_op op)
{
    switch (op) {
    case APL_DIST_MAX: return c10d::ReduceOp::MAX;
    case APL_DIST_MIN: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM; // AVG is SUM then a division (Gloo has no AVG)
    }
}

apl_status all_reduce_tensor(at::Tensor &x, apl_dist_op op, bool grads, const char *name = "all_reduce")
{
    c10d::AllreduceOptions ao;
    ao.reduceOp = reduce_op(op);
    std::vector<at::Tensor> v{x};
    return collective(name, nbytes(x), grads, [&] { return G->pg->allreduce(v, ao); });
}

// Rank 0's address as this machine reaches it, for Gloo to listen on: the local end of a UDP
// "connection" to it (no packet is sent). On one machine that is 127.0.0.1; in a network
// namespace or on a cluster node, the interface that routes to rank 0.
std::string local_addr_towards(const std::string &host, int port)
{
    struct addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
        throw std::runtime_error("cannot resolve MASTER_ADDR '" + host + "'");
    std::string out;
    int fd = socket(res->ai_family, SOCK_DGRAM, 0);
    struct sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        char buf[INET6_ADDRSTRLEN] = "";
        const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                                 : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
        if (inet_ntop(ss.ss_family, a, buf, sizeof buf)) out = buf;
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    if (out.empty()) throw std::runtime_error("no route from this machine to MASTER_ADDR '" + host + "'");
    return out;
}

void make_gloo(Group *g)
{
#ifdef USE_C10D_GLOO
    auto go = c10d::ProcessGroupGloo::Options::create(g->timeout);
    // GLOO_SOCKET_IFNAME (torch's name) picks an interface; else the one that reaches rank 0
    const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
    go->devices.push_back(ifname && *ifname
                              ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                              : c10d::ProcessGroupGloo::createDeviceForHostname(
                                    local_addr_towards(g->addr, g->o.master_port)));
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, g->o.rank, g->o.world_size, go);
#else
    (void)g;
#endif
}

void make_nccl(Group *g)
{
#ifdef USE_C10D_NCCL
    // a timed-out NCCL collective throws in wait() instead of the watchdog aborting the process
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    setenv("NCCL_BLOCKING_WAIT", "1", 0);
    c10::cuda::set_device((c10::DeviceIndex)g->o.local_rank);
    g->dev = at::Device(at::kCUDA, (c10::DeviceIndex)g->o.local_rank);
    auto no = c10d::ProcessGroupNCCL::Options::create();
    no->timeout = g->timeout;
    g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, g->o.rank, g->o.world_size, no);
#else
    (void)g;
#endif
}

// The rendezvous's failures, said in the user's terms.
std::string rendezvous_error(const apl_dist_opts *o, const std::string &what)
{
    char buf[700];
    if (what.find("ddress already in use") != std::string::npos)
        std::snprintf(buf, sizeof buf, "MASTER_PORT %d is in use on %s (another run?): choose another port",
                      o->master_port, o->master_addr);
    else
        std::snprintf(buf, sizeof buf, "rank %d of %d could not meet the others at %s:%d within %.0f s: %s",
                      o->rank, o->world_size, o->master_addr, o->master_port, o->timeout_s, what.c_str());
    return buf;
}

void at_exit() { apl_dist_shutdown(); }

// libtorch 1.13's store client listens for its server on a thread of its own, which lets an
// exception escape when the connection is reset: the server's process (rank 0) died. That ends
// the process; the message at least says what happened instead of "terminate called ...".
std::terminate_handler previous_terminate;

void on_terminate()
{
    if (G && std::current_exception()) {
        std::string what = message_of(std::current_exception());
        std::fprintf(stderr, "apl [rank %d]: apl.dist: the connection to rank 0's store at %s:%d broke (%s): "
                             "rank 0 has stopped\n", G->o.rank, G->addr.c_str(), G->o.master_port, what.c_str());
        std::fflush(stderr);
        std::_Exit(1);
    }
    if (previous_terminate) previous_terminate();
    std::abort();
}

} // namespace

extern "C" {

int apl_dist_has_gloo(void)
{
#ifdef USE_C10D_GLOO
    return 1;
#else
    return 0;
#endif
}

int apl_dist_has_nccl(void)
{
#ifdef USE_C10D_NCCL
    return 1;
#else
    return 0;
#endif
}

apl_status apl_dist_init(const apl_dist_opts *o)
{
    if (G) return apl_fail(APL_EINVAL, "apl.dist: this process has already joined a process group");
    if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
        return apl_fail(APL_EINVAL, "apl.dist: rank %d is not in 0..%d", o->rank, o->world_size - 1);
    if (!o->master_addr || !*o->master_addr || o->master_port < 1 || o->master_port > 65535)
        return apl_fail(APL_EINVAL, "apl.dist: needs rank 0's address and a port in 1..65535");
    if (!(o->timeout_s > 0)) return apl_fail(APL_EINVAL, "apl.dist: the timeout must be > 0 seconds");
    if (o->backend == APL_DIST_GLOO && !apl_dist_has_gloo())
        return apl_fail(APL_EUNSUPPORTED, "apl.dist: this apl was built without Gloo: install libgloo-dev "
                                          "(make deps) and rebuild (make clean && make)");
    if (o->backend == APL_DIST_NCCL && !apl_dist_has_nccl())
        return apl_fail(APL_EUNSUPPORTED, "apl.dist: this apl was built without NCCL: it needs a CUDA "
                                          "libtorch and NCCL's headers (make deps CUDA=1), then a rebuild");
    auto g = std::make_unique<Group>();
    g->o = *o;
    g->addr = o->master_addr;
    g->o.master_addr = g->addr.c_str();
    g->timeout = ms((long long)(o->timeout_s * 1000));
    try {
        g->store = connect_store(g->addr, o->master_port, o->rank == 0, o->world_size, g->timeout);
    } catch (...) {
        return apl_fail(APL_EIO, "apl.dist: %s", rendezvous_error(o, message_of(std::current_exception())).c_str());
    }
    g->beat = std::thread(heartbeat, g.get());
    try {
        if (o->backend == APL_DIST_NCCL) make_nccl(g.get());
        else make_gloo(g.get());
    } catch (...) {
        std::string what = message_of(std::current_exception());
        g->stop = true;
        g->beat.join();
        return apl_fail(APL_EIO, "apl.dist: %s", rendezvous_error(o, what).c_str());
    }
    G = g.release();
    static bool registered = false;
    if (!registered) {
        registered = std::atexit(at_exit) == 0;
        previous_terminate = std::set_terminate(on_terminate);
    }
    return APL_OK;
}

int apl_dist_joined(void) { return G != nullptr; }
int apl_dist_rank(void) { return G ? G->o.rank : 0; }
int apl_dist_world_size(void) { return G ? G->o.world_size : 1; }
apl_dist_backend apl_dist_backend_of(void) { return G ? G->o.backend : APL_DIST_GLOO; }
apl_device apl_dist_device(void) { return G && G->dev.is_cuda() ? G->dev.index() : APL_CPU; }

apl_status apl_dist_barrier(void)
{
    // an all-reduce of one number: a barrier that goes through the same checks as the rest
    at::Tensor one = at::ones({1}, at::TensorOptions().device(G ? G->dev : at::Device(at::kCPU)));
    return G ? all_reduce_tensor(one, APL_DIST_SUM, false, "barrier")
             : apl_fail(APL_EINVAL, "apl.dist: barrier outside a process group");
}

apl_status apl_dist_all_reduce(apl_tensor *t, apl_dist_op op)
{
    if (!G) return apl_fail(APL_EINVAL, "apl.dist: all_reduce outside a process group");
    if (op == APL_DIST_AVG && !at::isFloatingType(t->t.scalar_type()))
        return apl_fail(APL_EINVAL, "apl.dist: all_reduce avg needs a floating-point tensor");
    at::Tensor x;
    apl_status st = apl_shim::status_op("apl.dist: all_reduce", [&] { x = for_collective(t->t); });
    if (st == APL_OK) st = all_reduce_tensor(x, op, false);
    if (st != APL_OK) return st;
    return apl_shim::status_op("apl.dist: all_reduce", [&] {
        if (op == APL_DIST_AVG) x.div_(G->o.world_size);
        if (!x.is_same(t->t)) t->t.copy_(x);
    });
}

apl_status apl_dist_broadcast(apl_tensor *t, int root)
{
    if (!G) return apl_fail(APL_EINVAL, "apl.dist: broadcast outside a process group");
    if (root < 0 || root >= G->o.world_size)
        return apl_fail(APL_EINVAL, "apl.dist: broadcast from rank %d, which is not in 0..%d", root, G->o.world_size - 1);
    at::Tensor x;
    apl_status st = apl_shim::status_op("apl.dist: broadcast", [&] { x = for_collective(t->t); });
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    std::vector<at::Tensor> v{x};
    if (st == APL_OK) st = collective("broadcast", nbytes(x), false, [&] { return G->pg->broadcast(v, bo); });
    if (st != APL_OK) return st;
    return apl_shim::status_op("apl.dist: broadcast", [&] {
        if (!x.is_same(t->t)) t->t.copy_(x);
    });
}

apl_status apl_dist_all_gather_bytes(const void *data, size_t n, char **out, size_t *lens)
{
    *out = nullptr;
    if (!G) return apl_fail(APL_EINVAL, "apl.dist: all_gather outside a process group");
    const int world = G->o.world_size;
    auto opts = at::TensorOptions().device(G->dev);
    std::vector<std::vector<at::Tensor>> got(1);
    at::Tensor mine;
    int64_t longest = 0;
    try {
        std::vector<at::Tensor> in{at::full({1}, (int64_t)n, opts.dtype(at::kLong))};
        for (int r = 0; r < world; r++) got[0].push_back(at::empty({1}, opts.dtype(at::kLong)));
        apl_status st = collective("all_gather", 8.0 * world, false, [&] { return G->pg->allgather(got, in); });
        if (st != APL_OK) return st;
        for (int r = 0; r < world; r++) {
            lens[r] = (size_t)got[0][r].item<int64_t>();
            longest = std::max(longest, (int64_t)lens[r]);
        }
        // every rank sends the longest length (Gloo's all-gather takes equal sizes); at least 1
        at::Tensor buf = at::zeros({std::max<int64_t>(longest, 1)}, at::kByte);
        if (n) std::memcpy(buf.data_ptr(), data, n);
        std::vector<at::Tensor> in2{buf.to(G->dev)};
        got[0].clear();
        for (int r = 0; r < world; r++) got[0].push_back(at::empty_like(in2[0]));
        st = collective("all_gather", nbytes(in2[0]) * world, false, [&] { return G->pg->allgather(got, in2); });
        if (st != APL_OK) return st;
        size_t total = 0;
        for (int r = 0; r < world; r++) total += lens[r];
        *out = (char *)std::malloc(total ? total : 1);
        if (!*out) return apl_fail(APL_ENOMEM, "apl.dist: all_gather: %zu bytes", total);
        size_t at = 0;
        for (int r = 0; r < world; r++) {
            at::Tensor h = got[0][r].cpu();
            std::memcpy(*out + at, h.data_ptr(), lens[r]);
            at += lens[r];
        }
    } catch (...) {
        std::free(*out);
        *out = nullptr;
        apl_shim::record_exception("apl.dist: all_gather");
        return APL_ETORCH;
    }
    return APL_OK;
}

apl_status apl_dist_broadcast_bytes(const void *data, size_t n, int root, char **out, size_t *out_n)
{
    *out = nullptr;
    if (!G) return apl_fail(APL_EINVAL, "apl.dist: broadcast outside a process group");
    try {
        bool me = G->o.rank == root;
        apl_tensor len{at::full({1}, me ? (int64_t)n : 0, at::kLong)};
        apl_status st = apl_dist_broadcast(&len, root);
        if (st != APL_OK) return st;
        *out_n = (size_t)len.t.item<int64_t>();
        apl_tensor buf{at::zeros({std::max<int64_t>((int64_t)*out_n, 1)}, at::kByte)};
        if (me && n) std::memcpy(buf.t.data_ptr(), data, n);
        if ((st = apl_dist_broadcast(&buf, root)) != APL_OK) return st;
        *out = (char *)std::malloc(*out_n ? *out_n : 1);
        if (!*out) return apl_fail(APL_ENOMEM, "apl.dist: broadcast: %zu bytes", *out_n);
        std::memcpy(*out, buf.t.data_ptr(), *out_n);
    } catch (...) {
        apl_shim::record_exception("apl.dist: broadcast");
        return APL_ETORCH;
    }
    return APL_OK;
}

// Which parameters have a gradient on some rank (one small all-reduce), then buckets of those
// (same dtype and device, in order, up to bucket_bytes): flattened, summed, written back.
apl_status apl_dist_all_reduce_grads(apl_tensor *const *params, int n, size_t bucket_bytes)
{
    if (!G) return apl_fail(APL_EINVAL, "apl.dist: all_reduce_grads outside a process group");
    if (n == 0) return APL_OK;
    if (!bucket_bytes) bucket_bytes = kBucketBytes;
    at::NoGradGuard ng;
    std::vector<int> any;
    std::vector<float> flags((size_t)n);
    for (int i = 0; i < n; i++) flags[i] = params[i]->t.grad().defined() ? 1.0f : 0.0f;
    at::Tensor has;
    apl_status st = apl_shim::status_op("apl.dist: all_reduce_grads", [&] {
        has = at::from_blob(flags.data(), {n}, at::kFloat).to(G->dev, false, true);
    });
    if (st == APL_OK) st = all_reduce_tensor(has, APL_DIST_SUM, true);
    if (st == APL_OK)
        st = apl_shim::status_op("apl.dist: all_reduce_grads", [&] {
            at::Tensor back = has.cpu().contiguous();
            std::memcpy(flags.data(), back.data_ptr<float>(), sizeof(float) * (size_t)n);
        });
    if (st != APL_OK) return st;
    for (int i = 0; i < n; i++)
        if (flags[i] > 0) any.push_back(i);
    size_t k = 0;
    while (k < any.size()) {
        std::vector<int> bucket;
        std::vector<at::Tensor> flat;
        try {
            const at::Tensor &p0 = params[any[k]]->t;
            size_t bytes = 0;
            while (k < any.size()) {
                const at::Tensor &p = params[any[k]]->t;
                size_t b = (size_t)nbytes(p);
                if (!bucket.empty() && (p.scalar_type() != p0.scalar_type() || p.device() != p0.device() ||
                                        bytes + b > bucket_bytes))
                    break;
                at::Tensor g = p.grad();
                flat.push_back(g.defined() ? g.reshape({-1}) : at::zeros({p.numel()}, p.options()));
                bucket.push_back(any[k++]);
                bytes += b;
            }
        } catch (...) {
            apl_shim::record_exception("apl.dist: all_reduce_grads");
            return APL_ETORCH;
        }
        at::Tensor x;
        if ((st = apl_shim::status_op("apl.dist: all_reduce_grads", [&] { x = at::cat(flat).to(G->dev); })) != APL_OK)
            return st;
        if ((st = all_reduce_tensor(x, APL_DIST_SUM, true)) != APL_OK) return st;
        st = apl_shim::status_op("apl.dist: all_reduce_grads", [&] {
            int64_t at = 0;
            for (int i : bucket) {
                at::Tensor &p = params[i]->t;
                at::Tensor part = x.narrow(0, at, p.numel()).view(p.sizes()).to(p.device());
                at += p.numel();
                if (p.grad().defined()) p.mutable_grad().copy_(part);
                else p.mutable_grad() = part.clone();
            }
        });
        if (st != APL_OK) return st;
    }
    return APL_OK;
}

apl_dist_stats apl_dist_get_stats(void) { return G ? G->stats : apl_dist_stats{}; }

// Every rank meets, stops its heartbeat (so no store request is in flight), meets again, and
// only then leaves: rank 0's store then closes on idle connections, which libtorch 1.13's clients
// take quietly (a request left unread would reset them, see on_terminate).
apl_status apl_dist_finish(void)
{
    if (!G) return APL_OK;
    apl_status st = apl_dist_barrier();
    if (st == APL_OK) {
        G->stop = true;
        if (G->beat.joinable()) G->beat.join();
        st = apl_dist_barrier();
    }
    apl_dist_shutdown();
    return st;
}

void apl_dist_shutdown(void)
{
    if (!G) return;
    Group *g = G;
    G = nullptr;
    g->stop = true;
    if (g->beat.joinable()) g->beat.join();
    try {
        g->pg.reset();
        g->store.reset();
    } catch (...) {
        // a peer already gone: nothing left to tell it
    }
    delete g;
}

} // extern "C"
