/*
 * The composition root: one libevent loop, the signals, and the wiring of
 * the modules. It owns no data path.
 *
 *   mllp_in ──stage──▶ commit ──(fsync)──▶ mllp_in: ACK, then the committed
 *   hook ──▶ forward ──▶ lanes ──▶ upstream ──▶ answer ──▶ mllp_in (ack: upstream)
 *
 * Calls go down; results come back up as callbacks: mllp_in and forward
 * never call each other, the hook wired here joins them.
 *
 *   supervisor ──▶ tunnel ──gate_set──▶ gate ◀──gate_allows── mllp_in
 *                  tunnel ──status hook──▶ here: forward's snapshots
 *                  tunnel ──lost hook──▶ here: stop, as on SIGTERM
 *
 * Without a supervisor link the gate never opens in closed mode: the bridge
 * then accepts no MLLP connection (`gate: open` runs it without tunnels).
 */
#ifndef BRIDGE_H
#define BRIDGE_H

#include "mllp-bridge/config.h"

struct bridge;

/* Opens the spool, loads what is pending, binds the listeners and the
 * observability endpoint, and serves the supervisor link on supervisor_fd
 * (a connected SOCK_SEQPACKET socket; -1: none). cfg is borrowed for the
 * bridge's life; supervisor_fd is owned by the bridge from this call on,
 * also when it fails. */
__attribute__((warn_unused_result)) int bridge_new(const struct cfg *cfg, int supervisor_fd,
						   struct bridge **out);

/* Runs until SIGINT/SIGTERM/SIGHUP or the loss of the supervisor link;
 * what was read but not yet committed is committed (and answered, where
 * the gate still allows the peer) before it returns. */
__attribute__((warn_unused_result)) int bridge_run(struct bridge *b);

void bridge_free(struct bridge *b);

#endif
