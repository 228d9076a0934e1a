/*
 * SFTP client keys, for `appliancectl sftp ...` (the supervisor runs as root
 * and owns /etc/appliance; the bridge only reads the keys).
 *
 * A channel's `key: PATH` is the key in use; a rotation adds PATH.next:
 *
 *   sftp keys                      every channel's key and next key, with
 *                                  their fingerprints
 *   sftp rotate-key CHANNEL [TYPE] generates PATH.next (TYPE ed25519, or rsa
 *                                  for RSA 4096; default: the current key's
 *                                  type) and prints its public line for the
 *                                  hospital's authorized_keys
 *   sftp retire-key CHANNEL        PATH.next replaces PATH (one rename)
 *
 * The bridge tries PATH.next first and PATH second at every session, so no
 * poll fails while the hospital's administrator installs the new public key,
 * and /metrics (mllp_sftp_next_key_in_use) shows when the new one works and
 * the old one can be retired. A key shared by several channels rotates for
 * all of them.
 */
#ifndef APPLIANCE_SFTPKEYS_H
#define APPLIANCE_SFTPKEYS_H

#include <stddef.h>

#include "mllp-bridge/config.h"

#define SFTPKEYS_RSA_BITS 4096 /* a new RSA key; sftpc accepts 3072 and up */

#define SFTPKEYS_TEXT_MAX 8192 /* an answer */

struct event_base;

/* The answer to one command: ok 1 or 0, and the text for the operator
 * (borrowed for the call). */
typedef void (*sftpkeys_done_cb)(void *arg, int ok, const char *text);

/* Runs one `sftp` command (argv[0] == "sftp") against cfg's channels;
 * done(arg, ...) is called exactly once: at once, or for rotate-key from
 * base's loop once the key exists. The key is made in a child process: an
 * RSA 4096 key takes seconds, and the supervisor must keep watching the
 * SAs meanwhile (fail closed). The child is reaped by whoever reaps the
 * supervisor's children (waitpid(-1)); its answer comes through a pipe.
 * New keys are owned by root and bridge_user's group, mode 0640 (when
 * running as root). cfg and argv are borrowed for the call only. */
void sftpkeys_command(struct event_base *base, const struct cfg *cfg, const char *bridge_user,
		      int argc, char **argv, sftpkeys_done_cb done, void *arg);

#endif
