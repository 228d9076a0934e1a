/*
 * The tunnels as the supervisor keeps them: loaded into charon, initiated,
 * re-initiated with backoff, audited (DH 14 and 21 only), and reported.
 *
 * Every state comes from charon's own list-sas, re-read after each event
 * (ike-updown, child-updown, ike-rekey, child-rekey), after every initiate
 * and after every vici reconnect: events only say that something changed.
 */
#ifndef APPLIANCE_TUNNELS_H
#define APPLIANCE_TUNNELS_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "appliance/sas.h"
#include "appliance/vloop.h"
#include "ipc/ipc.h"
#include "mllp-bridge/config.h"

#define TUNNELS_BACKOFF_MIN_MS 1000  /* first re-initiate after a failure */
#define TUNNELS_BACKOFF_MAX_MS 30000 /* ceiling of the doubling */
#define TUNNELS_REASON_MAX     256

struct tunnels;

/* The gate or a tunnel's state changed: send the bridge the new snapshots. */
typedef void (*tunnels_changed_cb)(void *arg);
/* A rekey-check finished: ok, and one line saying what happened (borrowed). */
typedef void (*tunnels_check_cb)(void *arg, int ok, const char *text);

/*
 * Starts watching on v's connection (subscriptions). cfg is
 * borrowed until tunnels_set_config() replaces it or tunnels_free().
 * own_charon: the supervisor started charon (see reconcile_run()).
 */
__attribute__((warn_unused_result)) int tunnels_new(struct event_base *base, struct vloop *v,
						    const struct cfg *cfg, int own_charon,
						    tunnels_changed_cb changed, void *arg,
						    struct tunnels **out);

/* The vici connection went up or down (the owner of the connection's state
 * callback forwards it here): up reconciles and re-reads list-sas; down
 * marks every tunnel down, which closes the gate. */
void tunnels_on_vici(struct tunnels *t, enum vici_state state, int err);

/* A reloaded file: reconciles charon with it, keeps the state of tunnels
 * that kept their name. old is borrowed for the call only. */
void tunnels_set_config(struct tunnels *t, const struct cfg *cfg, const struct cfg *old);

/* Stops initiating (shutdown): nothing is re-initiated after this. */
void tunnels_stop(struct tunnels *t);

/* The remote traffic selectors of every installed CHILD_SA of a configured
 * tunnel: the peers the bridge may accept. */
void tunnels_gate(const struct tunnels *t, struct ipc_gate *g);
/* Each tunnel's state for the bridge's /metrics (bridge_restarts left 0). */
void tunnels_ipc(const struct tunnels *t, struct ipc_tunnels *out);
/* Is addr inside an installed CHILD_SA's remote traffic selectors? */
int tunnels_covers(const struct tunnels *t, const struct sockaddr *addr);
/* Is the vici connection up? */
int tunnels_connected(const struct tunnels *t);

/* Forces a CHILD_SA rekey of tunnel name and reports whether the peer
 * accepted a PFS group of 14 or 21. Returns 0 (cb follows, exactly once,
 * also on tunnels_free()), -ENOENT (no such tunnel), -ENOTCONN (not up),
 * -EBUSY (a check of it is running). arg is borrowed until cb. */
__attribute__((warn_unused_result)) int tunnels_rekey_check(struct tunnels *t, const char *name,
							    tunnels_check_cb cb, void *arg);

/* One tunnel as `appliancectl status` shows it. Borrowed: valid until the
 * loop runs again. */
struct tunnel_view {
	const struct cfg_tunnel *cfg;
	int up;
	int64_t since_unix;
	const struct sas_ike *ike; /* its newest IKE_SA, or NULL */
	const char *last_error;	   /* "" when none yet */
	int64_t last_error_unix;
	const char *pfs_result; /* never, ok, failed: the last rekey-check */
	unsigned pfs_group;
	const char *pfs_reason;
};

size_t tunnels_count(const struct tunnels *t);
/* i < tunnels_count(); in the file's order. */
void tunnels_view(const struct tunnels *t, size_t i, struct tunnel_view *v);

void tunnels_free(struct tunnels *t);

#endif
