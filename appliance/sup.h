/*
 * The supervisor's composition root: one libevent loop, the signals, and the
 * wiring of charon, the tunnels, the bridge child, the heartbeat and the
 * control socket. It owns no policy of its own.
 *
 *   charon ◀─vici─ tunnels ──changed──▶ gate + tunnel snapshots ──ipc──▶ bridge
 *   appliancectl ──control──▶ status / rekey-check / reload
 */
#ifndef APPLIANCE_SUP_H
#define APPLIANCE_SUP_H

#include "mllp-bridge/config.h"

struct sup;

struct sup_opts {
	const char *config_path; /* reloaded on SIGHUP */
	const char *bridge_path; /* used when the file names none */
	int verbose;		 /* passed on to the bridge */
};

/* Takes ownership of cfg. Starts (or attaches to) charon, the control
 * socket, and the bridge. */
__attribute__((warn_unused_result)) int sup_new(const struct sup_opts *o, struct cfg *cfg,
						struct sup **out);

/* Runs until SIGTERM/SIGINT, then stops the bridge and our charon. */
__attribute__((warn_unused_result)) int sup_run(struct sup *s);

void sup_free(struct sup *s);

#endif
