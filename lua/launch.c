/* launch.c — `apl --nproc N script.lua ...`: N processes of the script on this machine, each told
 * its place the way torchrun tells it (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT), for apl.dist to join.
 *
 * MASTER_ADDR defaults to 127.0.0.1 and MASTER_PORT to a port free at launch. Each rank gets
 * APL_THREADS and OPENBLAS_NUM_THREADS = cores / N unless they are set (or --threads says
 * otherwise), so that N ranks do not fight over the cores. The launcher waits for all of them: when one fails (an error, a signal),
 * it names it and stops the others (SIGTERM, then SIGKILL after 10 s), and exits with the failed
 * rank's status; Ctrl-C (or a SIGTERM to the launcher) is passed to every rank, escalated the
 * same way. A rank outlives no launcher: each is sent SIGTERM if the launcher dies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"

#define KILL_AFTER_S 10.0 /* from SIGTERM (or a forwarded Ctrl-C) to SIGKILL */

static volatile sig_atomic_t got_signal; /* SIGINT or SIGTERM sent to the launcher */

static void on_signal(int sig) { got_signal = sig; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int apl_free_port(const char *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) sa.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof sa;
    int port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void set_int_env(const char *name, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    setenv(name, buf, 1);
}

/* In the child: its place in the environment, then the same apl binary on the same arguments. */
static void exec_rank(int rank, int nproc, char **argv, pid_t parent)
{
    set_int_env("RANK", rank);
    set_int_env("LOCAL_RANK", rank);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1); /* the launcher died before prctl */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "apl --nproc: rank %d of %d: cannot start /proc/self/exe: %s\n", rank, nproc, strerror(errno));
    _exit(127);
}

static void signal_all(const pid_t *pids, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) kill(pids[i], sig);
}

static int live(const pid_t *pids, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += pids[i] > 0;
    return k;
}

/* Status in the shell's terms: the exit code, or 128 + the signal. */
static int shell_status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

static void say_exit(int rank, pid_t pid, int st)
{
    if (WIFSIGNALED(st))
        fprintf(stderr, "apl --nproc: rank %d (pid %d) was killed by signal %d (%s)", rank, (int)pid,
                WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        fprintf(stderr, "apl --nproc: rank %d (pid %d) exited with status %d", rank, (int)pid, WEXITSTATUS(st));
}

/* The environment every rank shares; 0, or 2 after saying what is wrong. */
static int shared_env(int nproc)
{
    if (getenv("RANK") || getenv("WORLD_SIZE")) {
        fprintf(stderr, "apl --nproc: RANK or WORLD_SIZE is already set: a process started by a launcher "
                        "(torchrun, srun) runs the script itself, without --nproc\n");
        return 2;
    }
    const char *addr = getenv("MASTER_ADDR");
    if (!addr || !*addr) setenv("MASTER_ADDR", addr = "127.0.0.1", 1);
    const char *port = getenv("MASTER_PORT");
    if (!port || !*port) {
        int p = apl_free_port(addr);
        if (!p) {
            fprintf(stderr, "apl --nproc: found no free port on %s; set MASTER_PORT\n", addr);
            return 2;
        }
        set_int_env("MASTER_PORT", p);
    }
    set_int_env("WORLD_SIZE", nproc);
    set_int_env("LOCAL_WORLD_SIZE", nproc);
    /* libtorch's threads and OpenBLAS's own pool (the pthread build ignores libtorch's setting
     * and reads its variable in its constructor, before main) */
    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    int share = cores / nproc > 1 ? cores / nproc : 1;
    if (!getenv("APL_THREADS")) set_int_env("APL_THREADS", share);
    if (!getenv("OPENBLAS_NUM_THREADS")) set_int_env("OPENBLAS_NUM_THREADS", share);
    return 0;
}

int apl_launch(int nproc, char **argv)
{
    if (shared_env(nproc)) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the wait below wakes up */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pid_t *pids = calloc((size_t)nproc, sizeof *pids);
    if (!pids) return 1;
    pid_t self = getpid();
    int rc = 0, stopping = 0;
    double kill_at = 0;
    for (int r = 0; r < nproc && !got_signal; r++) {
        pids[r] = fork();
        if (pids[r] == 0) exec_rank(r, nproc, argv, self);
        if (pids[r] < 0) {
            fprintf(stderr, "apl --nproc: cannot start rank %d: %s\n", r, strerror(errno));
            pids[r] = 0;
            rc = 1, stopping = 1, kill_at = now_s() + KILL_AFTER_S;
            signal_all(pids, nproc, SIGTERM);
            break;
        }
    }
    while (live(pids, nproc) > 0) {
        if (got_signal && !stopping) {
            /* Ctrl-C: the ranks got it from the terminal too; a SIGTERM reached only the launcher */
            signal_all(pids, nproc, got_signal);
            rc = 128 + got_signal, stopping = 1, kill_at = now_s() + KILL_AFTER_S;
        }
        if (stopping && now_s() > kill_at) {
            fprintf(stderr, "apl --nproc: %d rank(s) still running %.0f s after being told to stop: killing them\n",
                    live(pids, nproc), KILL_AFTER_S);
            signal_all(pids, nproc, SIGKILL);
            kill_at = now_s() + 3600;
        }
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) {
            usleep(20000);
            continue;
        }
        for (int r = 0; r < nproc; r++) {
            if (pids[r] != pid) continue;
            pids[r] = 0;
            if (shell_status(st) == 0 || stopping) break;
            say_exit(r, pid, st);
            fprintf(stderr, "%s\n", live(pids, nproc) ? "; stopping the other ranks" : "");
            rc = shell_status(st), stopping = 1, kill_at = now_s() + KILL_AFTER_S;
            signal_all(pids, nproc, SIGTERM);
        }
    }
    free(pids);
    return rc;
}
