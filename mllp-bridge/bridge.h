/*
 * The composition root: one libevent loop, the signals, and the wiring of
 * the modules. It owns no data path.
 *
 *   mllp_in ──stage──▶ commit ──(fsync)──▶ mllp_in: ACK, then the committed
 *   hook ──▶ forward ──▶ lanes ──▶ upstream ──▶ answer ──▶ mllp_in (ack: upstream)
 *
 * Calls go down; results come back up as callbacks: mllp_in and forward
 * never call each other, the hook wired here joins them.
 */
#ifndef BRIDGE_H
#define BRIDGE_H

#include "mllp-bridge/config.h"

struct bridge;

/* Opens the spool, loads what is pending, binds the listeners and the
 * observability endpoint. cfg is borrowed for the bridge's life. */
__attribute__((warn_unused_result)) int bridge_new(const struct cfg *cfg, struct bridge **out);

/* Runs until SIGINT/SIGTERM/SIGHUP; what was read but not yet committed is
 * committed (and answered) before it returns. */
__attribute__((warn_unused_result)) int bridge_run(struct bridge *b);

void bridge_free(struct bridge *b);

#endif
