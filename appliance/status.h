/*
 * What `appliancectl status` prints, as a table or as JSON
 * (docs/appliance.md), rendered from the modules' snapshots: the tunnels'
 * views, the bridge child's last STATUS, the heartbeat's results.
 */
#ifndef APPLIANCE_STATUS_H
#define APPLIANCE_STATUS_H

#include <stdio.h>
#include <sys/types.h>

#include "appliance/child.h"
#include "appliance/heartbeat.h"
#include "appliance/tunnels.h"
#include "mllp-bridge/config.h"

/* Everything borrowed for the call. */
struct status_src {
	const struct cfg *cfg;
	const char *config_path;
	const struct tunnels *tun;
	const struct bridge_child *bridge;
	const struct heartbeat *hb; /* may be NULL */
	pid_t charon_pid;	    /* the charon the supervisor runs, or 0 */
};

/* One JSON object and a newline. */
void status_json(const struct status_src *s, FILE *out);
/* The same for people. */
void status_text(const struct status_src *s, FILE *out);

#endif
