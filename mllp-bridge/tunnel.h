/*
 * The supervisor link: the bridge's end of the SOCK_SEQPACKET socketpair
 * (ipc/ipc.h), on the bridge's loop.
 *
 *   supervisor ──IPC_GATE────▶ tunnel ──gate_set()──▶ gate ──watchers──▶ mllp_in
 *   supervisor ──IPC_TUNNELS─▶ tunnel: the latest snapshot, for /metrics
 *   supervisor ◀─IPC_STATUS── tunnel ◀─status hook── bridge (forward's stats)
 *   supervisor ◀─IPC_OUTBOX── tunnel ◀─outbox hook── bridge (the senders' stats)
 *
 * The link is trusted exactly as long as it behaves: end of file, an error,
 * a datagram too long, or one that does not decode loses it. Then the gate
 * is emptied first (fail closed: no SA is known to be installed), the loss
 * is logged (`supervisor_link_lost`), and the `lost` hook runs; the bridge
 * stops, and the supervisor starts a fresh one. The link is never re-used.
 */
#ifndef TUNNEL_H
#define TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/ipc.h"

struct event_base;
struct gate;
struct tunnel;

#define TUNNEL_STATUS_MS    1000 /* IPC_STATUS period */
#define TUNNEL_READS_PER_CB 16	 /* datagrams read per wake-up, then the others' turn */

struct tunnel_hooks {
	/* Fills *st (zeroed before the call) with each integration's spool
	 * state, at most IPC_INTEGRATIONS_MAX; names must follow ipc.h. */
	void (*status)(void *arg, struct ipc_status *st);
	/* Fills *ob (zeroed) with each outbound destination's queue; NULL, or
	 * n left 0, sends no IPC_OUTBOX. */
	void (*outbox)(void *arg, struct ipc_outbox *ob);
	/* The link is gone (reason: a short text); the gate is already empty.
	 * Called once; the tunnel stays inert until freed. */
	void (*lost)(void *arg, const char *reason);
	void *arg;
};

/* Takes ownership of fd (a connected SOCK_SEQPACKET socket; made
 * non-blocking here) and serves it on base; gate and hooks are borrowed for
 * the tunnel's life. The gate is marked linked, and the first IPC_STATUS
 * leaves at once. Returns 0, -EINVAL (fd is not a SOCK_SEQPACKET socket:
 * fd is closed) or -ENOMEM. */
__attribute__((warn_unused_result)) int tunnel_new(struct event_base *base, int fd,
						   struct gate *gate,
						   const struct tunnel_hooks *hooks,
						   struct tunnel **out);

/* Closes the link (the supervisor sees end of file). No hook runs. */
void tunnel_free(struct tunnel *t);

struct tunnel_stats {
	int linked;		    /* 1 until the link was lost */
	uint32_t generation;	    /* of the last IPC_GATE applied */
	uint64_t gates;		    /* IPC_GATE messages applied */
	uint64_t status_sent;	    /* IPC_STATUS messages sent */
	uint64_t status_skipped;    /* ... not sent: the supervisor was not reading */
	int have_tunnels;	    /* an IPC_TUNNELS arrived: `tunnels` holds it */
	struct ipc_tunnels tunnels; /* the latest one; bridge_restarts included */
};

/* A copy of the counters and the latest tunnels snapshot (a few KiB). */
void tunnel_stats(const struct tunnel *t, struct tunnel_stats *st);

#endif
