/*
 * A blocking SFTP client on libssh (0.10), for the file channels' worker
 * threads (files.c). A connection is used by one thread at a time; the only
 * call another thread may make is shutdown(sftpc_fd(c), SHUT_RDWR), which
 * makes a blocked call fail soon with -ECONNABORTED or -EIO (cancellation),
 * and only before sftpc_close() (which closes the fd; its number may then be
 * reused).
 *
 * Security policy (fixed, not configurable):
 *  - host keys are pinned: the server's key must equal one of params->host_keys
 *    (type and key blob), never learned, never written to known_hosts; the
 *    host key algorithms offered are only those of the pinned keys (an "ssh-rsa"
 *    pin offers rsa-sha2-512,rsa-sha2-256, never SHA-1);
 *  - client keys: Ed25519, or RSA of at least SFTPC_RSA_MIN_BITS bits signing
 *    with rsa-sha2-512/rsa-sha2-256 only (never ssh-rsa/SHA-1); ECDSA is
 *    accepted too; a key file that is missing, unreadable, encrypted, of
 *    another type or too small is skipped with a reason in the error text;
 *  - key exchange, ciphers and MACs limited to modern ones (curve25519,
 *    ECDH nistp*, DH group 16/18 sha512, group14-sha256; AES-GCM,
 *    chacha20-poly1305, aes-ctr with *-etm SHA-2 MACs);
 *  - ~/.ssh/config and the system ssh config are never read
 *    (SSH_OPTIONS_PROCESS_CONFIG false), no agent, no password.
 *
 * Timeouts: libssh 0.10 waits for an SFTP answer without any limit, so each
 * connection runs one watchdog thread (started by sftpc_connect, joined by
 * sftpc_close) that shuts the socket down when the handshake or a request
 * makes no progress for timeout_ms (a long get/put restarts the clock at
 * every chunk). The call then fails with -ETIMEDOUT and the connection is
 * unusable: every later request fails with -ECONNABORTED; close it.
 *
 * Every call returns 0 or a negative errno; a text for the log is kept in the
 * connection (sftpc_error()) or the err buffer of sftpc_connect(). Texts name
 * paths, key files, fingerprints and libssh/sftp status, never file contents.
 */
#ifndef SFTPC_H
#define SFTPC_H

#include <stddef.h>
#include <stdint.h>

#define SFTPC_RSA_MIN_BITS	3072
#define SFTPC_HOST_RSA_MIN_BITS 2048  /* an RSA host key (pin) */
#define SFTPC_KEYS_MAX		4     /* client key files tried, in order */
#define SFTPC_HOSTKEYS_MAX	8     /* pinned host keys */
#define SFTPC_PIN_MAX		16384 /* one pin line "type base64 [comment]" */
#define SFTPC_PATH_MAX		1024  /* a remote path */
#define SFTPC_LIST_MAX		10000 /* entries read from one directory; more: -E2BIG */
#define SFTPC_ERR_MAX		512   /* error texts are cut to this */
#define SFTPC_FPR_MAX		128   /* "SHA256:" + base64, NUL included */
#define SFTPC_CHUNK		32768 /* bytes per SFTP read/write request */
/* Read requests a get keeps outstanding (each SFTPC_CHUNK bytes): at most
 * this many chunks are on the wire per round trip, so a download runs at up
 * to READS_IN_FLIGHT * CHUNK / RTT (16 * 32 KiB / 20 ms = 26 MB/s) instead of
 * one chunk per round trip. */
#define SFTPC_READS_IN_FLIGHT 16

struct sftpc;

struct sftpc_params {
	const char *host; /* numeric IPv4/IPv6 address */
	unsigned port;	  /* 1..65535 */
	const char *user;
	const char *const *keys;      /* private key files (OpenSSH format), tried in order */
	size_t nkeys;		      /* 1..SFTPC_KEYS_MAX */
	const char *const *host_keys; /* pinned: "ssh-ed25519 AAAA... [comment]" lines */
	size_t nhost_keys;	      /* 1..SFTPC_HOSTKEYS_MAX */
	unsigned timeout_ms;	      /* connect, handshake, and each SFTP request */
};

/* One directory entry. name is owned by the array (sftpc_entries_free). */
struct sftpc_entry {
	char *name; /* the entry's name, no directory part */
	uint64_t size;
	int64_t mtime; /* seconds since the epoch */
	int regular;   /* 1 for a regular file (symlinks are not followed: 0) */
};

/* Connects, checks the host key against the pins, authenticates with the
 * first key the server accepts and starts the SFTP subsystem.
 * Errors: -EINVAL (params), -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH,
 * -ECONNRESET (transport), -EKEYREJECTED (host key not pinned: err names the
 * offered key's type and its SHA256 fingerprint), -EACCES (no key accepted),
 * -ENOKEY (no key file usable; err says why for each), -EPROTO (handshake or
 * SFTP start failed), -ENOMEM. err (errlen bytes, may be NULL) gets the text. */
__attribute__((warn_unused_result)) int sftpc_connect(const struct sftpc_params *p,
						      struct sftpc **out, char *err, size_t errlen);
void sftpc_close(struct sftpc *c); /* NULL is a no-op */

const char *sftpc_error(const struct sftpc *c);
int sftpc_fd(const struct sftpc *c);		     /* the socket, for cancellation */
size_t sftpc_key_index(const struct sftpc *c);	     /* which params->keys[] authenticated */
const char *sftpc_server_fpr(const struct sftpc *c); /* the server key's SHA256 fingerprint */

/* Regular files and others in dir (not "." and ".."), in server order.
 * *out is malloc'd (free with sftpc_entries_free). -ENOENT, -EACCES, -E2BIG. */
__attribute__((warn_unused_result)) int sftpc_list(struct sftpc *c, const char *dir,
						   struct sftpc_entry **out, size_t *n);
void sftpc_entries_free(struct sftpc_entry *e, size_t n);

/* lstat: -ENOENT when there is no such path. out->name is NULL. */
__attribute__((warn_unused_result)) int sftpc_stat(struct sftpc *c, const char *path,
						   struct sftpc_entry *out);

/* Downloads path into fd (written from its current offset; the caller fsyncs),
 * at most max bytes: -EFBIG past that. *len gets the bytes written and
 * sha256 the digest of them. -ENOENT, -EACCES, -EIO. */
__attribute__((warn_unused_result)) int sftpc_get(struct sftpc *c, const char *path, int fd,
						  uint64_t max, uint8_t sha256[32], uint64_t *len);

/* Writes body to "path.part" (created or truncated, mode 0640), then
 * fsync@openssh.com when the server offers it (*synced = 1, else 0), closes
 * it, and renames it to path, replacing an existing path atomically with
 * posix-rename@openssh.com when offered (else remove, then rename). On any
 * failure the .part file is removed (best effort). */
__attribute__((warn_unused_result)) int sftpc_put(struct sftpc *c, const char *path,
						  const void *body, size_t len, int *synced);

/* Renames from → to, replacing an existing `to` (as sftpc_put). -ENOENT. */
__attribute__((warn_unused_result)) int sftpc_rename(struct sftpc *c, const char *from,
						     const char *to);
/* -ENOENT when there is nothing to remove. */
__attribute__((warn_unused_result)) int sftpc_remove(struct sftpc *c, const char *path);
/* Creates dir (mode 0750); 0 when it exists already as a directory. */
__attribute__((warn_unused_result)) int sftpc_mkdir(struct sftpc *c, const char *dir);

/* ---- Pure helpers, no network (unit-tested; config.c and the supervisor use them). */

/* Checks one pin line "type base64 [comment]": a known type (ssh-ed25519,
 * ssh-rsa, ecdsa-sha2-nistp256/384/521) whose base64 decodes to a key blob
 * of that type (an RSA key of at least SFTPC_HOST_RSA_MIN_BITS). Returns 0,
 * or -EINVAL with a reason in why (never the key). */
__attribute__((warn_unused_result)) int sftpc_pin_check(const char *line, char *why, size_t whylen);

/* The SHA256 fingerprint ("SHA256:" + unpadded base64, as ssh-keygen -l
 * prints it) of a pin line, into fpr (SFTPC_FPR_MAX). 0 or -EINVAL. */
__attribute__((warn_unused_result)) int sftpc_pin_fpr(const char *line, char *fpr, size_t len);

/* Reads a private key file and checks it against the client key policy.
 * 0 and its public line ("type base64", pub: publen bytes) and fingerprint
 * (fpr: SFTPC_FPR_MAX; either may be NULL), or -ENOENT, -EACCES, -ENOKEY
 * (unusable: type, size, encrypted; why says which). */
__attribute__((warn_unused_result)) int sftpc_key_info(const char *path, char *pub, size_t publen,
						       char *fpr, char *why, size_t whylen);

/* Generates a new private key at path (exclusive create, mode 0640): type
 * "ed25519" or "rsa" (bits >= SFTPC_RSA_MIN_BITS, e.g. 4096), written in
 * OpenSSH format without a passphrase, fsync'd, then its directory fsync'd.
 * -EEXIST when path exists. pub/fpr as sftpc_key_info. */
__attribute__((warn_unused_result)) int sftpc_keygen(const char *path, const char *type,
						     unsigned bits, char *pub, size_t publen,
						     char *fpr);

#endif
