/* launch.h — apl --nproc N (launch.c). */
#ifndef APL_LAUNCH_H
#define APL_LAUNCH_H

/* Starts N ranks of `/proc/self/exe argv[1..]` and waits for them; returns the exit status. */
int apl_launch(int nproc, char **argv);
/* A TCP port the kernel says is free now on addr (an IPv4 address; else any); 0 when none. */
int apl_free_port(const char *addr);

#endif
