/*
 * The mllp-bridge child: started with dropped privileges, given the gate and
 * the tunnel states over a SOCK_SEQPACKET socketpair (ipc/ipc.h) on its fd 3,
 * restarted with backoff when it dies, stopped with SIGTERM (it drains).
 *
 * The supervisor owns waitpid(): its SIGCHLD handler passes every result to
 * child_reaped(). Everything else runs on the caller's libevent loop.
 */
#ifndef APPLIANCE_CHILD_H
#define APPLIANCE_CHILD_H

#include <sys/types.h>

#include "ipc/ipc.h"

#define CHILD_BACKOFF_MIN_MS 1000  /* first restart delay ... */
#define CHILD_BACKOFF_MAX_MS 60000 /* ... doubling up to this */
#define CHILD_STABLE_MS	     60000 /* up this long: the next restart waits the minimum again */
#define CHILD_EVICT_MS	     10000 /* a stale bridge's time to exit after SIGTERM */
#define CHILD_RESEND_MS	     50	   /* retry a send that found the socket buffer full */

struct event_base;
struct bridge_child;

struct child_opts {
	const char *path;    /* mllp-bridge binary */
	const char *config;  /* appliance.yaml path, passed as -c */
	const char *user;    /* drop to this user when running as root; NULL or not root: no drop */
	const char *pidfile; /* where the running bridge's PID is written; may be NULL */
	int verbose;	     /* pass -v */
};

/* st is borrowed until the callback returns. The callback may call any
 * child_* function except child_free(). */
typedef void (*child_status_cb)(void *arg, const struct ipc_status *st);

/*
 * Creates the supervision object; starts nothing. The strings in o are
 * copied. cb (may be NULL) gets every IPC_STATUS the running bridge sends.
 * Returns 0 and *out (free with child_free), -EINVAL for a missing path or
 * config, -ENOMEM.
 */
__attribute__((warn_unused_result)) int child_new(struct event_base *base,
						  const struct child_opts *o, child_status_cb cb,
						  void *arg, struct bridge_child **out);

/*
 * Starts the bridge. On the first call, a live "mllp-bridge" named by the
 * pidfile (left by a supervisor that was killed) is stopped first: SIGTERM,
 * SIGKILL after CHILD_EVICT_MS; the new bridge starts when it is gone, from
 * the loop, and this returns 0 at once. Returns 0; -EALREADY when a bridge
 * runs, a start is pending or a stop has not called done() yet; -ENOENT for
 * an unknown user; -EPERM for a user whose uid is 0 (to run as root, name no
 * user); -E2BIG for a user in too many groups; or the errno of socketpair()
 * or fork(). A start after a finished child_stop() supervises again.
 */
__attribute__((warn_unused_result)) int child_start(struct bridge_child *c);

/*
 * Feed of the supervisor's waitpid(): returns 1 if pid was the bridge (and
 * handles it: an unexpected exit is logged and restarted with backoff; an
 * exit after child_stop() completes the stop), 0 otherwise.
 */
int child_reaped(struct bridge_child *c, pid_t pid, int wstatus);

/*
 * Remembers g as the latest gate and sends it now if the bridge runs (else at
 * its next start, before anything else). A full socket buffer is retried on
 * a short timer with whatever is latest then. g is copied.
 */
void child_send_gate(struct bridge_child *c, const struct ipc_gate *g);

/*
 * The same for the tunnel states, sent after the gate. bridge_restarts is
 * filled in with child_restarts() when encoding. t is copied.
 */
void child_send_tunnels(struct bridge_child *c, const struct ipc_tunnels *t);

/*
 * Stops the bridge for good (no more restarts): SIGTERM, SIGKILL after
 * timeout_ms. done(arg) (may be NULL) runs from the loop once the bridge was
 * reaped, or on the next loop pass when none was running; never from inside
 * child_stop(). A second child_stop() before done replaces done.
 */
void child_stop(struct bridge_child *c, int timeout_ms, void (*done)(void *arg), void *arg);

/* The running bridge's PID; 0 when none runs. */
pid_t child_pid(const struct bridge_child *c);

/* Unexpected exits since child_new(). */
unsigned child_restarts(const struct bridge_child *c);

/* The latest IPC_STATUS from the running bridge; NULL before its first one,
 * or when it is not running or sent garbage. Valid until the next loop pass. */
const struct ipc_status *child_status(const struct bridge_child *c);

/* The latest IPC_OUTBOX (each destination's queue), or NULL: none yet, a
 * bridge without destinations, or not believed (see child_status()). */
const struct ipc_outbox *child_outbox(const struct bridge_child *c);

/* Frees c. A bridge still running gets SIGTERM without waiting (it would
 * otherwise serve on without anyone updating its gate); its PID stays in the
 * pidfile for the next supervisor. Call child_stop() first to wait. NULL is
 * a no-op. */
void child_free(struct bridge_child *c);

#endif
