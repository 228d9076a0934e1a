/*
 * Loads the file's tunnels into charon the way `swanctl --load-conns
 * --load-creds` does: secrets and connections the file wants are loaded
 * (load-shared, load-cert, load-key, load-conn), and connections the
 * supervisor loaded before but the file no longer has are unloaded.
 * source: swanctl tunnels are never touched.
 */
#ifndef APPLIANCE_RECONCILE_H
#define APPLIANCE_RECONCILE_H

#include <stddef.h>

#include "mllp-bridge/config.h"
#include "vici-client/vici.h"

/* A tunnel that could not be loaded, with charon's or the file's reason;
 * tunnel is NULL for a connection the file no longer has (an unload that
 * failed). Both borrowed for the call. */
typedef void (*reconcile_error_cb)(void *arg, const char *tunnel, const char *why);
/* Everything was answered; failures were reported through error_cb. */
typedef void (*reconcile_done_cb)(void *arg);

/*
 * Queues the requests on c. old is the configuration loaded before (NULL
 * at start): its appliance tunnels that cfg lacks are unloaded. own_charon:
 * the supervisor started charon, so any connection it has that the file
 * does not name was left by an earlier supervisor and is unloaded too.
 * Both configurations are borrowed for the call only. Returns 0, or a
 * vici_conn_command() error or -ENOMEM (then no callback comes).
 */
__attribute__((warn_unused_result)) int reconcile_run(struct vici_conn *c, const struct cfg *cfg,
						      const struct cfg *old, int own_charon,
						      reconcile_error_cb error_cb,
						      reconcile_done_cb done_cb, void *arg);

/* A certificate tunnel's files as read (PEM, or DER for one certificate). */
struct reconcile_pems {
	char *cert, *key, *ca;
	size_t cert_len, key_len, ca_len;
};

/* The load-conn message for one appliance tunnel, into b (sticky errors):
 * PSK authentication when pems is NULL, else the certificates of pems
 * (borrowed for the call), one list item per certificate of a bundle. */
void reconcile_conn_msg(const struct cfg_tunnel *t, const struct reconcile_pems *pems,
			struct vici_builder *b);

#endif
