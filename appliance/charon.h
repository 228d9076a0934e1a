/*
 * The charon daemon when the supervisor owns it (charon.start: true): started
 * when nothing answers on the vici socket, restarted with backoff when it
 * dies, stopped at shutdown. A charon that answers at start-up (left by a
 * supervisor that was killed) is attached to, not replaced.
 */
#ifndef APPLIANCE_CHARON_H
#define APPLIANCE_CHARON_H

#include <sys/types.h>

#include <event2/event.h>

#include "mllp-bridge/config.h"

#define CHARON_BACKOFF_MIN_MS 1000
#define CHARON_BACKOFF_MAX_MS 30000

struct charon_proc;

/* cfg is read now: a reload's charon settings take effect at the
 * supervisor's next start. pidfile (may be NULL) records the charon
 * started, so that a supervisor restarted after a crash adopts it instead
 * of starting a second one. Returns 0 and *out, or -ENOMEM. */
__attribute__((warn_unused_result)) int charon_proc_new(struct event_base *base,
							const struct cfg_charon *cfg,
							const char *pidfile,
							struct charon_proc **out);

/* vici is down: start charon unless one of ours is running or starting. */
void charon_proc_vici_down(struct charon_proc *p);

/* The SIGCHLD reaper's result; returns 1 when pid was our charon. */
int charon_proc_reaped(struct charon_proc *p, pid_t pid, int wstatus);

/* SIGTERM, SIGKILL after timeout_ms; never restarted after this. */
void charon_proc_stop(struct charon_proc *p, int timeout_ms);

/* Our charon's PID (started or adopted), or 0. */
pid_t charon_proc_pid(const struct charon_proc *p);

void charon_proc_free(struct charon_proc *p);

#endif
