/*
 * SFTP client on libssh 0.10 (sftpc.h has the contracts and the policy).
 *
 * Two halves: pure helpers on SSH wire blobs (pins, fingerprints, key files,
 * key generation in OpenSSH format), and the connection. Host keys are
 * compared as wire blobs decoded here, never through libssh's known_hosts
 * code, so nothing is read from or written to ~/.ssh.
 *
 * Notes on libssh 0.10.6 that shaped this file:
 *  - it has no ssh_key_size(): RSA sizes come from the modulus in the blob;
 *  - ssh_pki_export_privkey_base64() writes RSA keys as PKCS#8 PEM, so keys
 *    are generated with OpenSSL and encoded in OpenSSH format here;
 *  - sftp_rename() sends a plain SSH_FXP_RENAME for SFTP v3, which OpenSSH
 *    refuses when the target exists, and it has no posix-rename call: the
 *    posix-rename@openssh.com request is written on the SFTP channel here
 *    (between two libssh requests, when nothing else is in flight);
 *  - for a user RSA key it signs with rsa-sha2-512/256 only if the server
 *    announced them in server-sig-algs, else with ssh-rsa, which
 *    SSH_OPTIONS_PUBLICKEY_ACCEPTED_TYPES below forbids: such servers fail
 *    authentication (-EACCES).
 */
#include "sftpc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <netdb.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEYFILE_MAX	  65536 /* a private key file larger than this is not one */
#define BLOB_MAX	  4096	/* a public key blob (RSA 16384 bits fits) */
#define TYPE_MAX	  32	/* longest key type name, NUL included */
#define SHA256_LEN	  32
#define SFTP_REPLY_MAX	  65536 /* a status reply to posix-rename */
#define SSH_FXP_EXTENDED  200
#define SSH_FXP_STATUS	  101
#define OPENSSH_MAGIC	  "openssh-key-v1"
#define PEM_OPENSSH_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define PEM_OPENSSH_END	  "-----END OPENSSH PRIVATE KEY-----"

/* Offered to the server; libssh drops what it does not implement. */
#define KEX_ALGOS                                                                                  \
	"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,"    \
	"ecdh-sha2-nistp521,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"          \
	"diffie-hellman-group14-sha256"
#define CIPHER_ALGOS                                                                               \
	"chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,"  \
	"aes192-ctr,aes128-ctr"
#define MAC_ALGOS "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com"
#define PUBKEY_ALGOS                                                                               \
	"ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,"    \
	"rsa-sha2-256"

struct sftpc {
	ssh_session ssh;
	sftp_session sftp;
	int fd;
	int broken; /* the stream is out of step or shut down by the watchdog */
	/* The watchdog (see wd_main): libssh 0.10's SFTP calls wait for an
	 * answer without any timeout, so a thread shuts the socket down when a
	 * request overruns; the call then fails at once, as on cancellation. */
	pthread_t wd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct timespec deadline; /* CLOCK_MONOTONIC, valid while armed */
	int wd_init, wd_running, wd_stop, armed, fired;
	unsigned timeout_ms;
	size_t key_index;
	char fpr[SFTPC_FPR_MAX];
	char err[SFTPC_ERR_MAX];
};

/* ---- Wire buffers ---------------------------------------------------------- */

/* A reader over an SSH wire blob; every get fails once past the end. */
struct rd {
	const uint8_t *p;
	size_t len;
};

static int rd_u32(struct rd *r, uint32_t *v)
{
	if (r->len < 4)
		return -1;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->len -= 4;
	return 0;
}

static int rd_str(struct rd *r, const uint8_t **s, size_t *n)
{
	uint32_t l;

	if (rd_u32(r, &l) != 0 || l > r->len)
		return -1;
	*s = r->p;
	*n = l;
	r->p += l;
	r->len -= l;
	return 0;
}

static int rd_str_is(struct rd *r, const char *want)
{
	const uint8_t *s;
	size_t n;

	return rd_str(r, &s, &n) == 0 && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* A growing buffer with a sticky error (STYLE 3): callers check once. */
struct wb {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void wb_put(struct wb *w, const void *d, size_t n)
{
	if (w->err)
		return;
	if (w->len + n > w->cap) {
		size_t cap = (w->len + n) * 2 + 64;
		uint8_t *np = realloc(w->p, cap);

		if (!np) {
			w->err = -ENOMEM;
			return;
		}
		w->p = np;
		w->cap = cap;
	}
	memcpy(w->p + w->len, d, n);
	w->len += n;
}

static void wb_u32(struct wb *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

	wb_put(w, b, 4);
}

static void wb_str(struct wb *w, const void *d, size_t n)
{
	wb_u32(w, (uint32_t)n);
	wb_put(w, d, n);
}

static void wb_cstr(struct wb *w, const char *s)
{
	wb_str(w, s, strlen(s));
}

/* An mpint from a big-endian magnitude: no leading zeros, one 0 in front
 * when the top bit is set (RFC 4251 section 5). */
static void wb_mpint(struct wb *w, const uint8_t *m, size_t n)
{
	static const uint8_t zero;

	while (n > 0 && m[0] == 0) {
		m++;
		n--;
	}
	if (n > 0 && (m[0] & 0x80)) {
		wb_u32(w, (uint32_t)n + 1);
		wb_put(w, &zero, 1);
		wb_put(w, m, n);
	} else {
		wb_str(w, m, n);
	}
}

static void wb_free(struct wb *w)
{
	if (w->p)
		OPENSSL_cleanse(w->p, w->cap);
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
}

/* ---- Base64 and fingerprints ----------------------------------------------- */

static int b64_val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Strict base64 (padding optional, nothing else allowed) into out (cap
 * bytes). Returns the length or -1. */
static long b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	size_t len = 0, i, bits = 0;

	while (n > 0 && s[n - 1] == '=')
		n--;
	for (i = 0; i < n; i++) {
		int v = b64_val((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (len >= cap)
				return -1;
			out[len++] = (uint8_t)(acc >> bits);
		}
	}
	/* 6 leftover bits cannot end a base64 text; leftover bits must be 0. */
	if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)len;
}

/* "SHA256:" + unpadded base64 of the digest of blob, as ssh-keygen -l. */
static int fpr_of(const uint8_t *blob, size_t len, char *fpr, size_t fprlen)
{
	uint8_t md[SHA256_LEN];
	unsigned char b64[64];
	unsigned int mdlen = 0;
	int n;

	if (EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	n = EVP_EncodeBlock(b64, md, (int)mdlen);
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	if ((size_t)snprintf(fpr, fprlen, "SHA256:%s", (char *)b64) >= fprlen)
		return -EINVAL;
	return 0;
}

/* ---- Public key blobs and pins ------------------------------------------- */

/* Bits of an mpint's magnitude. */
static unsigned mpint_bits(const uint8_t *m, size_t n)
{
	unsigned bits;

	while (n > 0 && m[0] == 0) {
		m++;
		n--;
	}
	if (n == 0)
		return 0;
	bits = (unsigned)(n - 1) * 8;
	for (uint8_t top = m[0]; top; top >>= 1)
		bits++;
	return bits;
}

/* Checks that blob is a well-formed public key of type; *bits gets the RSA
 * modulus size (0 for the others). Returns 0 or -EINVAL with why. */
static int blob_check(const char *type, const uint8_t *blob, size_t len, unsigned *bits, char *why,
		      size_t whylen)
{
	struct rd r = {blob, len};
	const uint8_t *a, *b;
	size_t an, bn;
	int good = 0;

	*bits = 0;
	if (!rd_str_is(&r, type)) {
		snprintf(why, whylen, "key blob is not of type %s", type);
		return -EINVAL;
	}
	if (strcmp(type, "ssh-ed25519") == 0) {
		good = rd_str(&r, &a, &an) == 0 && an == 32;
	} else if (strcmp(type, "ssh-rsa") == 0) {
		good = rd_str(&r, &a, &an) == 0 && rd_str(&r, &b, &bn) == 0 && an > 0 && bn > 0;
		if (good)
			*bits = mpint_bits(b, bn);
	} else if (strncmp(type, "ecdsa-sha2-", 11) == 0) {
		static const size_t plen[] = {65, 97, 133}; /* 0x04 || X || Y */
		const char *curve = type + 11;
		int i = strcmp(curve, "nistp256") == 0 ? 0 : strcmp(curve, "nistp384") == 0 ? 1 : 2;

		good = rd_str_is(&r, curve) && rd_str(&r, &a, &an) == 0 && an == plen[i] &&
		       a[0] == 0x04;
	}
	if (!good || r.len != 0) {
		snprintf(why, whylen, "malformed %s key blob", type);
		return -EINVAL;
	}
	return 0;
}

static int type_known(const char *t)
{
	static const char *const known[] = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256",
					    "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(t, known[i]) == 0)
			return 1;
	return 0;
}

/* A parsed pin: type and decoded blob. */
struct pin {
	char type[TYPE_MAX];
	uint8_t blob[BLOB_MAX];
	size_t len;
};

/* Parses "type base64 [comment]" into p. 0 or -EINVAL with why. */
static int pin_parse(const char *line, struct pin *p, char *why, size_t whylen)
{
	const char *t, *b;
	size_t tn, bn, n = line ? strnlen(line, SFTPC_PIN_MAX) : 0;
	unsigned bits;
	long len;

	if (n == 0 || n >= SFTPC_PIN_MAX) {
		snprintf(why, whylen, n ? "pin longer than %d bytes" : "empty pin",
			 SFTPC_PIN_MAX - 1);
		return -EINVAL;
	}
	t = line + strspn(line, " \t");
	tn = strcspn(t, " \t\r\n");
	b = t + tn + strspn(t + tn, " \t");
	bn = strcspn(b, " \t\r\n");
	if (tn == 0 || tn >= TYPE_MAX || bn == 0) {
		snprintf(why, whylen, "pin is not \"type base64 [comment]\"");
		return -EINVAL;
	}
	memcpy(p->type, t, tn);
	p->type[tn] = '\0';
	if (!type_known(p->type)) {
		snprintf(why, whylen, "unknown key type \"%.*s\"", (int)tn, t);
		return -EINVAL;
	}
	len = b64_decode(b, bn, p->blob, sizeof(p->blob));
	if (len <= 0) {
		snprintf(why, whylen, "%s pin: bad base64", p->type);
		return -EINVAL;
	}
	p->len = (size_t)len;
	if (blob_check(p->type, p->blob, p->len, &bits, why, whylen) != 0)
		return -EINVAL;
	if (strcmp(p->type, "ssh-rsa") == 0 && bits < SFTPC_HOST_RSA_MIN_BITS) {
		snprintf(why, whylen, "RSA host key of %u bits, at least %d needed", bits,
			 SFTPC_HOST_RSA_MIN_BITS);
		return -EINVAL;
	}
	return 0;
}

int sftpc_pin_check(const char *line, char *why, size_t whylen)
{
	struct pin p;
	char dummy[1];

	if (!why || whylen == 0) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	why[0] = '\0';
	return pin_parse(line, &p, why, whylen);
}

int sftpc_pin_fpr(const char *line, char *fpr, size_t len)
{
	struct pin p;
	char why[SFTPC_ERR_MAX];

	if (pin_parse(line, &p, why, sizeof(why)) != 0)
		return -EINVAL;
	return fpr_of(p.blob, p.len, fpr, len);
}

/* ---- Private key files --------------------------------------------------- */

/* Reads a whole key file (at most KEYFILE_MAX) into a NUL-terminated buffer
 * the caller frees (cleansed). 0, -ENOENT, -EACCES or -ENOKEY with why. */
static int file_read(const char *path, char **out, char *why, size_t whylen)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;

		snprintf(why, whylen, "%s: %s", path, strerror(e));
		return e == ENOENT ? -ENOENT : e == EACCES || e == EPERM ? -EACCES : -ENOKEY;
	}
	buf = malloc(KEYFILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = read(fd, buf + len, KEYFILE_MAX + 1 - len)) > 0 &&
	       len + (size_t)n <= KEYFILE_MAX)
		len += (size_t)n;
	close(fd);
	if (n != 0) {
		snprintf(why, whylen, "%s: %s", path, n < 0 ? "read error" : "too large for a key");
		free(buf);
		return -ENOKEY;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* Whether a key file's text is passphrase-protected: an OpenSSH key whose
 * cipher is not "none", or a PEM key marked ENCRYPTED. Checked before libssh
 * sees it, so that the reason is exact and nothing ever prompts. */
static int text_encrypted(const char *text)
{
	const char *b = strstr(text, PEM_OPENSSH_BEGIN), *e;
	char b64[512];
	uint8_t bin[384];
	size_t n = 0;
	long len;
	struct rd r;

	if (!b)
		return strstr(text, "ENCRYPTED") != NULL;
	b += strlen(PEM_OPENSSH_BEGIN);
	e = strstr(b, PEM_OPENSSH_END);
	/* The magic and the cipher name sit in the first few hundred bytes. */
	for (; b < (e ? e : b) && n < sizeof(b64) - 4; b++)
		if (b64_val((unsigned char)*b) >= 0)
			b64[n++] = *b;
	n -= n % 4;
	len = b64_decode(b64, n, bin, sizeof(bin));
	if (len < (long)sizeof(OPENSSH_MAGIC) || memcmp(bin, OPENSSH_MAGIC, sizeof(OPENSSH_MAGIC)))
		return 0; /* not readable here: libssh will refuse it */
	r.p = bin + sizeof(OPENSSH_MAGIC);
	r.len = (size_t)len - sizeof(OPENSSH_MAGIC);
	return !rd_str_is(&r, "none");
}

/* The public blob of a libssh key, decoded, into p (type from the blob). */
static int key_blob(ssh_key key, struct pin *p)
{
	char *b64 = NULL;
	const char *type = ssh_key_type_to_char(ssh_key_type(key));
	long len;

	if (!type || strlen(type) >= TYPE_MAX || ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK)
		return -ENOKEY;
	len = b64_decode(b64, strlen(b64), p->blob, sizeof(p->blob));
	ssh_string_free_char(b64);
	if (len <= 0)
		return -ENOKEY;
	strcpy(p->type, type);
	p->len = (size_t)len;
	return 0;
}

/* Checks a loaded key against the client key policy. */
static int key_policy(const char *path, ssh_key key, struct pin *p, char *why, size_t whylen)
{
	enum ssh_keytypes_e t = ssh_key_type(key);
	unsigned bits = 0;

	if (t != SSH_KEYTYPE_ED25519 && t != SSH_KEYTYPE_RSA && t != SSH_KEYTYPE_ECDSA_P256 &&
	    t != SSH_KEYTYPE_ECDSA_P384 && t != SSH_KEYTYPE_ECDSA_P521) {
		snprintf(why, whylen, "%s: key type %s is not allowed", path,
			 ssh_key_type_to_char(t) ? ssh_key_type_to_char(t) : "unknown");
		return -ENOKEY;
	}
	if (key_blob(key, p) != 0 || blob_check(p->type, p->blob, p->len, &bits, why, whylen)) {
		snprintf(why, whylen, "%s: cannot read its public key", path);
		return -ENOKEY;
	}
	if (t == SSH_KEYTYPE_RSA && bits < SFTPC_RSA_MIN_BITS) {
		snprintf(why, whylen, "%s: RSA key of %u bits, at least %d needed", path, bits,
			 SFTPC_RSA_MIN_BITS);
		return -ENOKEY;
	}
	return 0;
}

/* Loads a private key file under the policy: 0 and *out (caller frees with
 * ssh_key_free) and its blob in p, or an error with why. */
static int key_load(const char *path, ssh_key *out, struct pin *p, char *why, size_t whylen)
{
	char *text = NULL;
	ssh_key key = NULL;
	int rc = file_read(path, &text, why, whylen);

	if (rc != 0)
		return rc;
	if (text_encrypted(text)) {
		snprintf(why, whylen, "%s: key is encrypted (a passphrase is not supported)", path);
		rc = -ENOKEY;
	} else if (ssh_pki_import_privkey_base64(text, NULL, NULL, NULL, &key) != SSH_OK) {
		snprintf(why, whylen, "%s: not a private key libssh can read", path);
		rc = -ENOKEY;
	} else {
		rc = key_policy(path, key, p, why, whylen);
	}
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (rc != 0)
		ssh_key_free(key);
	else
		*out = key;
	return rc;
}

/* pub ("type base64") and fpr of a blob, each optional. */
static int describe(const struct pin *p, char *pub, size_t publen, char *fpr)
{
	if (pub) {
		size_t need = strlen(p->type) + 1 + 4 * ((p->len + 2) / 3) + 1;
		int n;

		if (publen < need)
			return -ENOSPC;
		n = snprintf(pub, publen, "%s ", p->type);
		EVP_EncodeBlock((unsigned char *)pub + n, p->blob, (int)p->len);
	}
	return fpr ? fpr_of(p->blob, p->len, fpr, SFTPC_FPR_MAX) : 0;
}

int sftpc_key_info(const char *path, char *pub, size_t publen, char *fpr, char *why, size_t whylen)
{
	struct pin *p = malloc(sizeof(*p));
	ssh_key key = NULL;
	char dummy[1];
	int rc;

	if (!why || whylen == 0) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	why[0] = '\0';
	if (!p)
		return -ENOMEM;
	rc = key_load(path, &key, p, why, whylen);
	if (rc == 0)
		rc = describe(p, pub, publen, fpr);
	ssh_key_free(key);
	free(p);
	return rc;
}

/* ---- Key generation (OpenSSH "openssh-key-v1" format, unencrypted) ------- */

/* Appends a BIGNUM parameter of an RSA key as an mpint. */
static void wb_bn(struct wb *w, const EVP_PKEY *k, const char *param)
{
	BIGNUM *bn = NULL;
	uint8_t buf[BLOB_MAX];
	int n;

	if (EVP_PKEY_get_bn_param(k, param, &bn) != 1 || BN_num_bytes(bn) > (int)sizeof(buf)) {
		w->err = w->err ? w->err : -ENOMEM;
		BN_clear_free(bn);
		return;
	}
	n = BN_bn2bin(bn, buf);
	wb_mpint(w, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	BN_clear_free(bn);
}

/* The public blob (pubw) and the private fields (privw, after the type
 * string) of a new key, as OpenSSH's sshkey_private_serialize writes them. */
static int gen_fields(const char *type, unsigned bits, struct wb *pubw, struct wb *privw)
{
	EVP_PKEY *k;
	uint8_t pk[32], sk[64];
	size_t pkn = sizeof(pk), skn = 32;

	if (strcmp(type, "ed25519") == 0) {
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		if (!k || EVP_PKEY_get_raw_public_key(k, pk, &pkn) != 1 ||
		    EVP_PKEY_get_raw_private_key(k, sk, &skn) != 1) {
			EVP_PKEY_free(k);
			return -ENOMEM;
		}
		memcpy(sk + 32, pk, 32); /* OpenSSH stores seed || public */
		wb_cstr(pubw, "ssh-ed25519");
		wb_str(pubw, pk, 32);
		wb_cstr(privw, "ssh-ed25519");
		wb_str(privw, pk, 32);
		wb_str(privw, sk, 64);
		OPENSSL_cleanse(sk, sizeof(sk));
	} else {
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
		if (!k)
			return -ENOMEM;
		wb_cstr(pubw, "ssh-rsa");
		wb_bn(pubw, k, OSSL_PKEY_PARAM_RSA_E);
		wb_bn(pubw, k, OSSL_PKEY_PARAM_RSA_N);
		wb_cstr(privw, "ssh-rsa");
		wb_bn(privw, k, OSSL_PKEY_PARAM_RSA_N);
		wb_bn(privw, k, OSSL_PKEY_PARAM_RSA_E);
		wb_bn(privw, k, OSSL_PKEY_PARAM_RSA_D);
		wb_bn(privw, k, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
		wb_bn(privw, k, OSSL_PKEY_PARAM_RSA_FACTOR1);
		wb_bn(privw, k, OSSL_PKEY_PARAM_RSA_FACTOR2);
	}
	EVP_PKEY_free(k);
	return pubw->err ? pubw->err : privw->err;
}

/* The whole key file text: the binary container, base64 in 70-column lines
 * between the PEM-style markers, as ssh-keygen writes it. */
static int gen_text(const struct wb *pubw, const struct wb *fields, struct wb *text)
{
	struct wb bin = {0}, priv = {0};
	unsigned char *b64 = NULL;
	uint32_t check;
	int rc, n = 0;

	if (RAND_bytes((unsigned char *)&check, sizeof(check)) != 1)
		return -ENOMEM;
	wb_u32(&priv, check);
	wb_u32(&priv, check);
	wb_put(&priv, fields->p, fields->len);
	wb_cstr(&priv, ""); /* comment */
	for (uint8_t pad = 1; priv.len % 8 != 0; pad++)
		wb_put(&priv, &pad, 1);
	wb_put(&bin, OPENSSH_MAGIC, sizeof(OPENSSH_MAGIC)); /* NUL included */
	wb_cstr(&bin, "none");
	wb_cstr(&bin, "none");
	wb_cstr(&bin, "");
	wb_u32(&bin, 1);
	wb_str(&bin, pubw->p, pubw->len);
	wb_str(&bin, priv.p, priv.len);
	if (!bin.err && (b64 = malloc(4 * (bin.len / 3 + 1) + 1)) != NULL)
		n = EVP_EncodeBlock(b64, bin.p, (int)bin.len);
	wb_put(text, PEM_OPENSSH_BEGIN "\n", strlen(PEM_OPENSSH_BEGIN) + 1);
	for (int off = 0; off < n; off += 70) {
		wb_put(text, b64 + off, (size_t)(n - off < 70 ? n - off : 70));
		wb_put(text, "\n", 1);
	}
	wb_put(text, PEM_OPENSSH_END "\n", strlen(PEM_OPENSSH_END) + 1);
	rc = priv.err ? priv.err : bin.err ? bin.err : !b64 ? -ENOMEM : text->err;
	if (b64)
		OPENSSL_cleanse(b64, (size_t)n);
	free(b64);
	wb_free(&priv);
	wb_free(&bin);
	return rc;
}

/* Writes text to a new file (exclusive, 0640 whatever the umask), fsyncs it
 * and its directory. The file is removed again on a failure. */
static int write_new(const char *path, const uint8_t *text, size_t len)
{
	char *dup = strdup(path);
	int fd, dfd, rc = 0;
	size_t off = 0;

	if (!dup)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0) {
		free(dup);
		return -errno;
	}
	if (fchmod(fd, 0640) != 0)
		rc = -errno;
	while (rc == 0 && off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	dfd = rc == 0 ? open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (rc == 0 && (dfd < 0 || fsync(dfd) != 0))
		rc = -errno;
	if (dfd >= 0)
		close(dfd);
	if (rc != 0)
		unlink(path);
	free(dup);
	return rc;
}

int sftpc_keygen(const char *path, const char *type, unsigned bits, char *pub, size_t publen,
		 char *fpr)
{
	struct wb pubw = {0}, fields = {0}, text = {0};
	char why[SFTPC_ERR_MAX];
	int rc;

	if (!path || !type || (strcmp(type, "ed25519") != 0 && strcmp(type, "rsa") != 0) ||
	    (strcmp(type, "rsa") == 0 && (bits < SFTPC_RSA_MIN_BITS || bits > 16384)))
		return -EINVAL;
	if (access(path, F_OK) == 0)
		return -EEXIST; /* before spending seconds on an RSA key */
	rc = gen_fields(type, bits, &pubw, &fields);
	if (rc == 0)
		rc = gen_text(&pubw, &fields, &text);
	if (rc == 0)
		rc = write_new(path, text.p, text.len);
	wb_free(&pubw);
	wb_free(&fields);
	wb_free(&text);
	if (rc != 0)
		return rc;
	/* Read back through libssh: what we wrote is what will be offered. */
	return sftpc_key_info(path, pub, publen, fpr, why, sizeof(why));
}

/* ---- Watchdog -------------------------------------------------------------- */

static void *wd_main(void *arg)
{
	struct sftpc *c = arg;
	struct timespec now;

	pthread_mutex_lock(&c->mu);
	while (!c->wd_stop) {
		if (!c->armed) {
			pthread_cond_wait(&c->cv, &c->mu);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > c->deadline.tv_sec ||
		    (now.tv_sec == c->deadline.tv_sec && now.tv_nsec >= c->deadline.tv_nsec)) {
			c->fired = 1;
			c->armed = 0;
			shutdown(c->fd, SHUT_RDWR);
			continue;
		}
		pthread_cond_timedwait(&c->cv, &c->mu, &c->deadline);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static int wd_setup(struct sftpc *c)
{
	pthread_condattr_t ca;

	if (pthread_condattr_init(&ca) != 0)
		return -ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&c->mu, NULL) != 0 || pthread_cond_init(&c->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		return -ENOMEM;
	}
	pthread_condattr_destroy(&ca);
	c->wd_init = 1;
	return 0;
}

static int wd_start(struct sftpc *c)
{
	if (pthread_create(&c->wd, NULL, wd_main, c) != 0)
		return -EAGAIN;
	c->wd_running = 1;
	return 0;
}

/* (Re)starts the clock: timeout_ms from now. Progress in a long transfer
 * calls it again, so the limit is per request, not per file. */
static void wd_arm(struct sftpc *c)
{
	if (!c->wd_running)
		return;
	pthread_mutex_lock(&c->mu);
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += c->timeout_ms / 1000;
	c->deadline.tv_nsec += (long)(c->timeout_ms % 1000) * 1000000L;
	if (c->deadline.tv_nsec >= 1000000000L) {
		c->deadline.tv_sec++;
		c->deadline.tv_nsec -= 1000000000L;
	}
	c->armed = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Stops the clock; 1 when it fired since the last disarm (the socket is
 * shut down). Consumed, so that only the request it cut short reports
 * -ETIMEDOUT; the later ones fail on c->broken with -ECONNABORTED. */
static int wd_disarm(struct sftpc *c)
{
	int fired;

	if (!c->wd_running)
		return 0;
	pthread_mutex_lock(&c->mu);
	c->armed = 0;
	fired = c->fired;
	c->fired = 0;
	pthread_mutex_unlock(&c->mu);
	return fired;
}

static void wd_end(struct sftpc *c)
{
	if (c->wd_running) {
		pthread_mutex_lock(&c->mu);
		c->wd_stop = 1;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->wd, NULL);
		c->wd_running = 0;
	}
	if (c->wd_init) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		c->wd_init = 0;
	}
}

/* ---- Connection ------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen < SFTPC_ERR_MAX ? errlen : SFTPC_ERR_MAX, fmt, ap);
	va_end(ap);
}

static int params_ok(const struct sftpc_params *p)
{
	if (!p || !p->host || !p->user || !p->keys || !p->host_keys)
		return 0;
	if (p->port < 1 || p->port > 65535 || p->timeout_ms == 0)
		return 0;
	return p->nkeys >= 1 && p->nkeys <= SFTPC_KEYS_MAX && p->nhost_keys >= 1 &&
	       p->nhost_keys <= SFTPC_HOSTKEYS_MAX;
}

/* A TCP connection of our own, so that connect errors are real errnos and
 * the connect timeout is exact; libssh then runs on this fd. */
static int tcp_connect(const char *host, unsigned port, unsigned timeout_ms, int *out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char sport[8];
	int fd, rc = 0, soerr = 0;
	socklen_t sl = sizeof(soerr);
	struct pollfd pfd;

	snprintf(sport, sizeof(sport), "%u", port);
	if (getaddrinfo(host, sport, &hints, &ai) != 0 || !ai)
		return -EINVAL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		rc = -errno;
	else if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
		rc = -errno;
	freeaddrinfo(ai);
	if (rc == 0) {
		pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
		while ((rc = poll(&pfd, 1, (int)timeout_ms)) < 0 && errno == EINTR)
			; /* a signal restarts the whole wait: good enough here */
		if (rc == 0)
			rc = -ETIMEDOUT;
		else if (rc < 0)
			rc = -errno;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
			rc = soerr ? -soerr : -errno;
		else
			rc = 0;
	}
	if (rc != 0) {
		if (fd >= 0)
			close(fd);
		return rc == -ENETUNREACH ? -EHOSTUNREACH : rc;
	}
	*out = fd;
	return 0;
}

/* Host key algorithms from the pins' types; "ssh-rsa" pins allow the SHA-2
 * signatures only. */
static void hostkey_algos(const struct pin *pins, size_t n, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *a = strcmp(pins[i].type, "ssh-rsa") == 0 ? "rsa-sha2-512,rsa-sha2-256"
								     : pins[i].type;

		if (strstr(out, a))
			continue;
		if (out[0])
			strncat(out, ",", len - strlen(out) - 1);
		strncat(out, a, len - strlen(out) - 1);
	}
}

static int session_setup(struct sftpc *c, const struct sftpc_params *p, const char *hostkeys)
{
	/* libssh applies this to host keys (our client keys are checked by
	 * key_policy); it repeats the pins' own limit. */
	int no = 0, yes = 1, minrsa = SFTPC_HOST_RSA_MIN_BITS;
	long sec = p->timeout_ms / 1000, usec = (long)(p->timeout_ms % 1000) * 1000;
	socket_t fd = c->fd;

	c->ssh = ssh_new();
	if (!c->ssh)
		return -ENOMEM;
	/* PROCESS_CONFIG first: ssh_connect would read ~/.ssh/config otherwise. */
	if (ssh_options_set(c->ssh, SSH_OPTIONS_PROCESS_CONFIG, &no) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_FD, &fd) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_HOST, p->host) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_PORT, &p->port) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_USER, p->user) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_TIMEOUT, &sec) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_TIMEOUT_USEC, &usec) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_HOSTKEYS, hostkeys) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_PUBLICKEY_ACCEPTED_TYPES, PUBKEY_ALGOS) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_KEY_EXCHANGE, KEX_ALGOS) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_CIPHERS_C_S, CIPHER_ALGOS) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_CIPHERS_S_C, CIPHER_ALGOS) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_HMAC_C_S, MAC_ALGOS) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_HMAC_S_C, MAC_ALGOS) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_RSA_MIN_SIZE, &minrsa) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_PASSWORD_AUTH, &no) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_KBDINT_AUTH, &no) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_GSSAPI_AUTH, &no) < 0 ||
	    ssh_options_set(c->ssh, SSH_OPTIONS_PUBKEY_AUTH, &yes) < 0)
		return -EINVAL;
	return 0;
}

/* The server's key must be one of the pins (type and blob). */
static int hostkey_check(struct sftpc *c, const struct pin *pins, size_t n, char *err,
			 size_t errlen)
{
	ssh_key key = NULL;
	struct pin *srv = malloc(sizeof(*srv));
	int rc = -EPROTO;

	if (!srv)
		return -ENOMEM;
	if (ssh_get_server_publickey(c->ssh, &key) == SSH_OK && key_blob(key, srv) == 0 &&
	    fpr_of(srv->blob, srv->len, c->fpr, sizeof(c->fpr)) == 0) {
		rc = -EKEYREJECTED;
		for (size_t i = 0; i < n && rc != 0; i++)
			if (strcmp(srv->type, pins[i].type) == 0 && srv->len == pins[i].len &&
			    memcmp(srv->blob, pins[i].blob, srv->len) == 0)
				rc = 0;
		if (rc != 0)
			set_err(err, errlen, "host key %s %s is not pinned", srv->type, c->fpr);
	} else {
		set_err(err, errlen, "cannot read the server's host key");
	}
	ssh_key_free(key);
	free(srv);
	return rc;
}

/* Maps a failed ssh_connect(): the transport's own state first. */
static int handshake_errno(struct sftpc *c, char *err, size_t errlen)
{
	const char *e = ssh_get_error(c->ssh);

	set_err(err, errlen, "SSH handshake: %s", e);
	if (strstr(e, "imeout") || strstr(e, "timed out"))
		return -ETIMEDOUT;
	if (strstr(e, "closed") || strstr(e, "reset") || strstr(e, "Socket error"))
		return -ECONNRESET;
	return -EPROTO;
}

/* Loads every key file under the policy; those that fail are left NULL
 * and their reason is appended to why. 0 when at least one is usable. */
static int keys_load(const struct sftpc_params *p, ssh_key *keys, char *why, size_t whylen)
{
	struct pin *tmp = malloc(sizeof(*tmp));
	char one[SFTPC_ERR_MAX];
	size_t usable = 0;

	if (!tmp)
		return -ENOMEM;
	why[0] = '\0';
	for (size_t i = 0; i < p->nkeys; i++) {
		keys[i] = NULL;
		if (key_load(p->keys[i], &keys[i], tmp, one, sizeof(one)) == 0) {
			usable++;
			continue;
		}
		if (why[0])
			strncat(why, "; ", whylen - strlen(why) - 1);
		strncat(why, one, whylen - strlen(why) - 1);
	}
	free(tmp);
	return usable ? 0 : -ENOKEY;
}

/* Offers the usable keys in order; the first the server accepts wins. */
static int authenticate(struct sftpc *c, const struct sftpc_params *p, ssh_key *keys,
			const char *skipped, char *err, size_t errlen)
{
	char why[SFTPC_ERR_MAX] = "";

	for (size_t i = 0; i < p->nkeys; i++) {
		int r;

		if (!keys[i])
			continue;
		r = ssh_userauth_publickey(c->ssh, NULL, keys[i]);
		if (r == SSH_AUTH_SUCCESS) {
			c->key_index = i;
			return 0;
		}
		if (!ssh_is_connected(c->ssh)) {
			set_err(err, errlen, "connection lost during authentication: %s",
				ssh_get_error(c->ssh));
			return -ECONNRESET;
		}
		snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s: %s",
			 why[0] ? "; " : "", p->keys[i],
			 r == SSH_AUTH_PARTIAL	? "partial (more methods wanted)"
			 : r == SSH_AUTH_DENIED ? "denied"
						: ssh_get_error(c->ssh));
	}
	set_err(err, errlen, "no key accepted by %s@%s: %s%s%s", p->user, p->host, why,
		skipped[0] ? "; skipped: " : "", skipped);
	return -EACCES;
}

static int sftp_start(struct sftpc *c, char *err, size_t errlen)
{
	c->sftp = sftp_new(c->ssh);
	if (!c->sftp) {
		set_err(err, errlen, "SFTP channel: %s", ssh_get_error(c->ssh));
		return ssh_is_connected(c->ssh) ? -EPROTO : -ECONNRESET;
	}
	if (sftp_init(c->sftp) != SSH_OK) {
		set_err(err, errlen, "SFTP start: %s (status %d)", ssh_get_error(c->ssh),
			sftp_get_error(c->sftp));
		return ssh_is_connected(c->ssh) ? -EPROTO : -ECONNRESET;
	}
	return 0;
}

/* Transport, host key, authentication, SFTP: each step only once the one
 * before succeeded, so a wrong host key never sees an authentication. */
static int connect_steps(struct sftpc *c, const struct sftpc_params *p, const struct pin *pins,
			 ssh_key *keys, const char *skipped, char *err, size_t errlen)
{
	char algos[256];
	int rc;

	rc = tcp_connect(p->host, p->port, p->timeout_ms, &c->fd);
	if (rc != 0) {
		set_err(err, errlen, "connect to %s port %u: %s", p->host, p->port, strerror(-rc));
		return rc;
	}
	rc = wd_start(c);
	if (rc != 0) {
		set_err(err, errlen, "cannot start the watchdog thread");
		return rc;
	}
	wd_arm(c); /* ssh_connect keeps its timeout, sftp_init has none */
	hostkey_algos(pins, p->nhost_keys, algos, sizeof(algos));
	rc = session_setup(c, p, algos);
	if (rc != 0) {
		set_err(err, errlen, "SSH options refused: %s",
			c->ssh ? ssh_get_error(c->ssh) : "out of memory");
		return rc;
	}
	if (ssh_connect(c->ssh) != SSH_OK)
		return handshake_errno(c, err, errlen);
	rc = hostkey_check(c, pins, p->nhost_keys, err, errlen);
	if (rc == 0)
		rc = authenticate(c, p, keys, skipped, err, errlen);
	if (rc == 0)
		rc = sftp_start(c, err, errlen);
	return rc;
}

static int pins_parse(const struct sftpc_params *p, struct pin *pins, char *err, size_t errlen)
{
	char why[SFTPC_ERR_MAX];

	for (size_t i = 0; i < p->nhost_keys; i++) {
		if (pin_parse(p->host_keys[i], &pins[i], why, sizeof(why)) != 0) {
			set_err(err, errlen, "host key pin %zu: %s", i + 1, why);
			return -EINVAL;
		}
	}
	return 0;
}

int sftpc_connect(const struct sftpc_params *p, struct sftpc **out, char *err, size_t errlen)
{
	ssh_key keys[SFTPC_KEYS_MAX] = {0};
	char why[SFTPC_ERR_MAX];
	struct pin *pins = NULL;
	struct sftpc *c = NULL;
	int rc = -EINVAL;

	set_err(err, errlen, "%s", "");
	*out = NULL;
	if (!params_ok(p)) {
		set_err(err, errlen, "invalid connection parameters");
		return -EINVAL;
	}
	pins = calloc(p->nhost_keys, sizeof(*pins));
	c = calloc(1, sizeof(*c));
	if (c)
		c->fd = -1;
	if (!pins || !c || wd_setup(c) != 0)
		rc = -ENOMEM;
	else if ((rc = pins_parse(p, pins, err, errlen)) == 0 &&
		 (rc = keys_load(p, keys, why, sizeof(why))) != 0)
		set_err(err, errlen, "no usable key: %s", why);
	if (rc == 0) {
		c->timeout_ms = p->timeout_ms;
		rc = connect_steps(c, p, pins, keys, why, err, errlen);
		if (wd_disarm(c)) {
			set_err(err, errlen, "no answer from %s port %u within %u ms", p->host,
				p->port, p->timeout_ms);
			rc = -ETIMEDOUT;
		}
	}
	for (size_t i = 0; i < SFTPC_KEYS_MAX; i++)
		ssh_key_free(keys[i]);
	free(pins);
	if (rc != 0) {
		sftpc_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void sftpc_close(struct sftpc *c)
{
	if (!c)
		return;
	wd_end(c);
	if (c->sftp)
		sftp_free(c->sftp);
	if (c->ssh) {
		ssh_disconnect(c->ssh);
		ssh_free(c->ssh);
	}
	/* libssh never closes an fd given with SSH_OPTIONS_FD (strace: no
	 * close after ssh_free), so it is ours to close. */
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

const char *sftpc_error(const struct sftpc *c)
{
	return c ? c->err : "no connection";
}

int sftpc_fd(const struct sftpc *c)
{
	return c ? c->fd : -1;
}

size_t sftpc_key_index(const struct sftpc *c)
{
	return c->key_index;
}

const char *sftpc_server_fpr(const struct sftpc *c)
{
	return c->fpr;
}

/* ---- SFTP requests --------------------------------------------------------- */

static const char *fx_name(int st)
{
	static const char *const names[] = {"ok",
					    "eof",
					    "no such file",
					    "permission denied",
					    "failure",
					    "bad message",
					    "no connection",
					    "connection lost",
					    "unsupported",
					    "invalid handle",
					    "no such path",
					    "already exists",
					    "write protected"};

	return st >= 0 && st < (int)(sizeof(names) / sizeof(names[0])) ? names[st] : "status";
}

/* A failed request's errno: the transport first (a dead session leaves the
 * last SFTP status stale), then the server's status. Sets c->err. */
static int req_fail(struct sftpc *c, const char *op, const char *path)
{
	int st = sftp_get_error(c->sftp), rc;
	const char *e;

	if (!ssh_is_connected(c->ssh) || ssh_get_error_code(c->ssh) == SSH_FATAL) {
		snprintf(c->err, sizeof(c->err), "%s %s: connection lost: %s", op, path,
			 ssh_get_error(c->ssh));
		return -ECONNABORTED;
	}
	switch (st) {
	case SSH_FX_NO_SUCH_FILE:
	case SSH_FX_NO_SUCH_PATH:
		rc = -ENOENT;
		break;
	case SSH_FX_PERMISSION_DENIED:
	case SSH_FX_WRITE_PROTECT:
		rc = -EACCES;
		break;
	case SSH_FX_FILE_ALREADY_EXISTS:
		rc = -EEXIST;
		break;
	case SSH_FX_OP_UNSUPPORTED:
		rc = -EOPNOTSUPP;
		break;
	case SSH_FX_NO_CONNECTION:
	case SSH_FX_CONNECTION_LOST:
		rc = -ECONNABORTED;
		break;
	default:
		rc = -EIO;
	}
	e = ssh_get_error(c->ssh);
	snprintf(c->err, sizeof(c->err), "%s %s: %s%s%s%s", op, path, fx_name(st), e[0] ? " (" : "",
		 e, e[0] ? ")" : "");
	return rc;
}

/* Every request starts here: a usable connection and a path that fits.
 * The last status is cleared, so that req_fail never reports an old one. */
static int req_begin(struct sftpc *c, const char *path)
{
	if (!c || !c->sftp || !path)
		return -EINVAL;
	c->err[0] = '\0';
	if (c->broken) {
		snprintf(c->err, sizeof(c->err), "connection unusable after a timeout");
		return -ECONNABORTED;
	}
	if (strnlen(path, SFTPC_PATH_MAX) >= SFTPC_PATH_MAX) {
		snprintf(c->err, sizeof(c->err), "path longer than %d bytes", SFTPC_PATH_MAX - 1);
		return -ENAMETOOLONG;
	}
	c->sftp->errnum = SSH_FX_OK; /* public in sftp.h; libssh only sets it */
	wd_arm(c);
	return 0;
}

/* Every request ends here: a request the watchdog cut short timed out,
 * whatever libssh made of the dead socket; the connection is unusable. */
static int req_end(struct sftpc *c, int rc)
{
	char was[SFTPC_ERR_MAX];

	if (!wd_disarm(c))
		return rc;
	c->broken = 1;
	snprintf(was, sizeof(was), "%s", c->err);
	/* The cause after the timeout, cut to leave room for the prefix. */
	snprintf(c->err, sizeof(c->err), "no answer within %u ms%s%.*s", c->timeout_ms,
		 was[0] ? ": " : "", SFTPC_ERR_MAX - 64, was);
	return -ETIMEDOUT;
}

static void entry_from(struct sftpc_entry *e, const struct sftp_attributes_struct *a)
{
	e->size = a->size;
	e->mtime = a->mtime64 ? (int64_t)a->mtime64 : (int64_t)a->mtime;
	e->regular = a->type == SSH_FILEXFER_TYPE_REGULAR;
}

static int stat_req(struct sftpc *c, const char *path, struct sftpc_entry *out)
{
	sftp_attributes a;
	int rc = req_begin(c, path);

	if (rc != 0)
		return rc;
	a = sftp_lstat(c->sftp, path);
	if (!a)
		return req_fail(c, "lstat", path);
	memset(out, 0, sizeof(*out));
	entry_from(out, a);
	sftp_attributes_free(a);
	return 0;
}

void sftpc_entries_free(struct sftpc_entry *e, size_t n)
{
	if (!e)
		return;
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

/* Appends one entry, growing the array. */
static int list_add(struct sftpc_entry **v, size_t *n, size_t *cap, const sftp_attributes a)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct sftpc_entry *nv = realloc(*v, nc * sizeof(**v));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[*n].name = strdup(a->name);
	if (!(*v)[*n].name)
		return -ENOMEM;
	entry_from(&(*v)[*n], a);
	(*n)++;
	return 0;
}

static int list_req(struct sftpc *c, const char *dir, struct sftpc_entry **out, size_t *n)
{
	struct sftpc_entry *v = NULL;
	size_t cnt = 0, cap = 0;
	sftp_attributes a;
	sftp_dir d;
	int rc = req_begin(c, dir);

	if (rc != 0)
		return rc;
	d = sftp_opendir(c->sftp, dir);
	if (!d)
		return req_fail(c, "opendir", dir);
	while (rc == 0 && (a = sftp_readdir(c->sftp, d)) != NULL) {
		int dots = !a->name || strcmp(a->name, ".") == 0 || strcmp(a->name, "..") == 0;

		if (!dots && cnt >= SFTPC_LIST_MAX)
			rc = -E2BIG;
		else if (!dots)
			rc = list_add(&v, &cnt, &cap, a);
		sftp_attributes_free(a);
	}
	if (rc == 0 && !sftp_dir_eof(d))
		rc = req_fail(c, "readdir", dir);
	else if (rc == -E2BIG)
		snprintf(c->err, sizeof(c->err), "%s: more than %d entries", dir, SFTPC_LIST_MAX);
	sftp_closedir(d);
	if (rc != 0) {
		sftpc_entries_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The window of read requests of one get: a ring of at most
 * SFTPC_READS_IN_FLIGHT requests of SFTPC_CHUNK, issued ahead by offset and
 * answered in order. Every reply is read (win_take), so none is left queued
 * in libssh: a window that cannot be drained marks the connection broken. */
struct rwin {
	struct sftpc *c;
	sftp_file f;
	uint64_t off[SFTPC_READS_IN_FLIGHT];
	uint32_t id[SFTPC_READS_IN_FLIGHT];
	size_t head, n;
	uint64_t next; /* offset of the next request to issue */
	uint64_t max;
};

/* Fills the window. Requests start at most at max: a byte at offset max is
 * one too many, and its request is what shows it. 0 or -1 (libssh error). */
static int win_fill(struct rwin *w)
{
	while (w->n < SFTPC_READS_IN_FLIGHT && w->next <= w->max) {
		size_t slot = (w->head + w->n) % SFTPC_READS_IN_FLIGHT;
		int id;

		/* Offsets are ours: libssh moves its own by guesses. */
		(void)sftp_seek64(w->f, w->next);
		id = sftp_async_read_begin(w->f, SFTPC_CHUNK);
		if (id < 0)
			return -1;
		w->off[slot] = w->next;
		w->id[slot] = (uint32_t)id;
		w->n++;
		w->next += SFTPC_CHUNK;
	}
	return 0;
}

/* Waits for the oldest request's reply into buf (SFTPC_CHUNK bytes): the
 * bytes read, 0 at EOF, or SSH_ERROR. *off gets the request's offset. */
static int win_take(struct rwin *w, uint8_t *buf, uint64_t *off)
{
	size_t slot = w->head;

	assert(w->n > 0);
	w->head = (w->head + 1) % SFTPC_READS_IN_FLIGHT;
	w->n--;
	*off = w->off[slot];
	/* After an EOF libssh answers 0 without reading the reply; the seek
	 * clears that, so that every reply is consumed. */
	(void)sftp_seek64(w->f, *off);
	return sftp_async_read(w->f, buf, SFTPC_CHUNK, w->id[slot]);
}

/* Reads and drops the replies still due. A reply that cannot be read may
 * come later and put libssh out of step: the connection is then broken. */
static void win_drain(struct rwin *w, uint8_t *buf)
{
	uint64_t off;

	while (w->n > 0) {
		if (win_take(w, buf, &off) < 0) {
			w->c->broken = 1;
			w->n = 0;
			return;
		}
		wd_arm(w->c); /* progress */
	}
}

/* Takes n bytes received at offset *len: checks max, writes, hashes. */
static int get_put(struct sftpc *c, const char *path, int fd, uint64_t max, EVP_MD_CTX *md,
		   const uint8_t *buf, size_t n, uint64_t *len)
{
	int rc;

	if (*len + n > max) {
		snprintf(c->err, sizeof(c->err), "get %s: larger than %llu bytes", path,
			 (unsigned long long)max);
		return -EFBIG;
	}
	rc = write_all(fd, buf, n);
	if (rc != 0) {
		snprintf(c->err, sizeof(c->err), "get %s: local write: %s", path, strerror(-rc));
		return rc;
	}
	EVP_DigestUpdate(md, buf, n);
	*len += n;
	wd_arm(c); /* progress: the next reply has its own timeout */
	return 0;
}

/* Copies an open remote file into fd in order, hashing it, up to max bytes,
 * with up to SFTPC_READS_IN_FLIGHT reads outstanding. A short read (the
 * server may send less than asked, as at EOF) leaves a gap before the
 * requests behind it: those are drained and the window restarts right after
 * the bytes received. A file that grows meanwhile is read until its EOF. */
static int get_pipe(struct sftpc *c, sftp_file f, const char *path, int fd, uint64_t max,
		    EVP_MD_CTX *md, uint8_t *buf, uint64_t *len)
{
	struct rwin w = {.c = c, .f = f, .max = max};
	uint64_t off;
	int n, rc = 0;

	while (rc == 0) {
		if (win_fill(&w) != 0) {
			rc = req_fail(c, "read", path);
			break;
		}
		n = win_take(&w, buf, &off);
		assert(off == *len); /* replies are taken in order, without gaps */
		if (n < 0)
			rc = req_fail(c, "read", path);
		else if (n == 0)
			break;
		else
			rc = get_put(c, path, fd, max, md, buf, (size_t)n, len);
		if (rc == 0 && n < SFTPC_CHUNK) {
			win_drain(&w, buf);
			w.next = *len;
		}
	}
	win_drain(&w, buf);
	return rc;
}

/* Copies an open remote file into fd, hashing it, up to max bytes. */
static int get_copy(struct sftpc *c, sftp_file f, const char *path, int fd, uint64_t max,
		    uint8_t sha256[32], uint64_t *len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(SFTPC_CHUNK);
	unsigned mdlen = 0;
	int rc = md && buf && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;

	*len = 0;
	if (rc == 0)
		rc = get_pipe(c, f, path, fd, max, md, buf, len);
	if (rc == 0 && EVP_DigestFinal_ex(md, sha256, &mdlen) != 1)
		rc = -ENOMEM;
	EVP_MD_CTX_free(md);
	free(buf);
	return rc;
}

static int get_req(struct sftpc *c, const char *path, int fd, uint64_t max, uint8_t sha256[32],
		   uint64_t *len)
{
	sftp_file f;
	int rc = req_begin(c, path);

	if (rc != 0)
		return rc;
	f = sftp_open(c->sftp, path, O_RDONLY, 0);
	if (!f)
		return req_fail(c, "open", path);
	rc = get_copy(c, f, path, fd, max, sha256, len);
	sftp_close(f);
	return rc;
}

/* Reads exactly n bytes of the SFTP channel within the request timeout. */
static int chan_read(struct sftpc *c, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		int r = ssh_channel_read_timeout(c->sftp->channel, buf + got, (uint32_t)(n - got),
						 0, (int)c->timeout_ms);

		if (r == SSH_ERROR || (r == 0 && ssh_channel_is_eof(c->sftp->channel)))
			return -ECONNABORTED;
		if (r == 0)
			return -ETIMEDOUT;
		got += (size_t)r;
	}
	return 0;
}

/* Reads one SSH_FXP_STATUS reply to request id: 0 and *st, or an errno. */
static int status_read(struct sftpc *c, uint32_t id, uint32_t *st)
{
	uint8_t hdr[4], *body;
	uint32_t len, rid;
	struct rd r = {hdr, 4};
	int rc = chan_read(c, hdr, 4);

	if (rc != 0)
		return rc;
	if (rd_u32(&r, &len) != 0 || len < 9 || len > SFTP_REPLY_MAX)
		return -EPROTO;
	body = malloc(len);
	if (!body)
		return -ENOMEM;
	rc = chan_read(c, body, len);
	r = (struct rd){body + 1, len - 1};
	if (rc == 0 && (body[0] != SSH_FXP_STATUS || rd_u32(&r, &rid) != 0 || rid != id ||
			rd_u32(&r, st) != 0))
		rc = -EPROTO;
	free(body);
	return rc;
}

/* posix-rename@openssh.com, which libssh 0.10 cannot send: one extended
 * request written on the SFTP channel and its status read back, with the
 * request timeout. Only called between libssh's own requests (none in
 * flight), so the stream stays in step; a timeout leaves it out of step and
 * the connection is marked broken. */
static int posix_rename(struct sftpc *c, const char *from, const char *to)
{
	struct wb w = {0};
	uint32_t id = ++c->sftp->id_counter, len, st = 0;
	int rc = 0;

	wb_u32(&w, 0); /* length, filled in below */
	wb_put(&w, (uint8_t[]){SSH_FXP_EXTENDED}, 1);
	wb_u32(&w, id);
	wb_cstr(&w, "posix-rename@openssh.com");
	wb_cstr(&w, from);
	wb_cstr(&w, to);
	if (w.err) {
		wb_free(&w);
		return -ENOMEM;
	}
	len = (uint32_t)w.len - 4;
	memcpy(w.p, (uint8_t[]){len >> 24, len >> 16, len >> 8, len}, 4);
	if (ssh_channel_write(c->sftp->channel, w.p, (uint32_t)w.len) != (int)w.len)
		rc = -ECONNABORTED;
	wb_free(&w);
	if (rc == 0)
		rc = status_read(c, id, &st);
	if (rc != 0) {
		c->broken = 1; /* the reply, or a part of it, is still unread */
		return rc;
	}
	c->sftp->errnum = (int)st;
	return st == SSH_FX_OK ? 0 : 1;
}

/* Renames from → to, replacing to: atomically with posix-rename where the
 * server has it, else by removing to first (a window without it). */
static int replace_rename(struct sftpc *c, const char *from, const char *to)
{
	sftp_attributes a;
	int rc;

	if (sftp_extension_supported(c->sftp, "posix-rename@openssh.com", "1")) {
		rc = posix_rename(c, from, to);
		if (rc < 0)
			snprintf(c->err, sizeof(c->err), "rename %s: posix-rename: %s", from,
				 strerror(-rc));
		return rc == 1 ? req_fail(c, "rename", from) : rc;
	}
	if (sftp_rename(c->sftp, from, to) == 0)
		return 0;
	a = sftp_lstat(c->sftp, to);
	if (!a || a->type == SSH_FILEXFER_TYPE_DIRECTORY) {
		sftp_attributes_free(a);
		return req_fail(c, "rename", from);
	}
	sftp_attributes_free(a);
	if (sftp_unlink(c->sftp, to) != 0)
		return req_fail(c, "unlink", to);
	return sftp_rename(c->sftp, from, to) == 0 ? 0 : req_fail(c, "rename", from);
}

/* Writes body into the open .part file and makes it durable where the
 * server can. */
static int put_body(struct sftpc *c, sftp_file f, const char *part, const uint8_t *body, size_t len,
		    int *synced)
{
	size_t off = 0;

	while (off < len) {
		size_t n = len - off < SFTPC_CHUNK ? len - off : SFTPC_CHUNK;
		ssize_t w = sftp_write(f, body + off, n);

		if (w <= 0)
			return req_fail(c, "write", part);
		off += (size_t)w;
		wd_arm(c);
	}
	if (sftp_extension_supported(c->sftp, "fsync@openssh.com", "1")) {
		if (sftp_fsync(f) != 0)
			return req_fail(c, "fsync", part);
		*synced = 1;
	}
	return 0;
}

static int put_req(struct sftpc *c, const char *path, const void *body, size_t len, int *synced)
{
	char part[SFTPC_PATH_MAX + 8];
	sftp_file f;
	int rc = req_begin(c, path);

	*synced = 0;
	if (rc != 0)
		return rc;
	snprintf(part, sizeof(part), "%s.part", path);
	f = sftp_open(c->sftp, part, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	if (!f)
		return req_fail(c, "create", part);
	rc = put_body(c, f, part, body, len, synced);
	if (sftp_close(f) != 0 && rc == 0)
		rc = req_fail(c, "close", part);
	if (rc == 0)
		rc = replace_rename(c, part, path);
	if (rc != 0 && !c->broken && ssh_is_connected(c->ssh))
		(void)sftp_unlink(c->sftp, part); /* best effort; c->err keeps the cause */
	if (rc != 0)
		*synced = 0;
	return rc;
}

static int rename_req(struct sftpc *c, const char *from, const char *to)
{
	int rc = req_begin(c, from);

	if (rc == 0)
		rc = req_begin(c, to);
	return rc != 0 ? rc : replace_rename(c, from, to);
}

static int remove_req(struct sftpc *c, const char *path)
{
	int rc = req_begin(c, path);

	if (rc != 0)
		return rc;
	return sftp_unlink(c->sftp, path) == 0 ? 0 : req_fail(c, "remove", path);
}

static int mkdir_req(struct sftpc *c, const char *dir)
{
	sftp_attributes a;
	int st, isdir, rc = req_begin(c, dir);

	if (rc != 0)
		return rc;
	if (sftp_mkdir(c->sftp, dir, 0750) == 0)
		return 0;
	st = sftp_get_error(c->sftp);
	a = ssh_is_connected(c->ssh) ? sftp_lstat(c->sftp, dir) : NULL;
	isdir = a && a->type == SSH_FILEXFER_TYPE_DIRECTORY;
	sftp_attributes_free(a);
	if (isdir)
		return 0;
	c->sftp->errnum = st; /* the mkdir's status, not the lstat's */
	return req_fail(c, "mkdir", dir);
}

/* ---- The requests, each within its timeout ---------------------------------- */

int sftpc_stat(struct sftpc *c, const char *path, struct sftpc_entry *out)
{
	return req_end(c, stat_req(c, path, out));
}

int sftpc_list(struct sftpc *c, const char *dir, struct sftpc_entry **out, size_t *n)
{
	return req_end(c, list_req(c, dir, out, n));
}

int sftpc_get(struct sftpc *c, const char *path, int fd, uint64_t max, uint8_t sha256[32],
	      uint64_t *len)
{
	return req_end(c, get_req(c, path, fd, max, sha256, len));
}

int sftpc_put(struct sftpc *c, const char *path, const void *body, size_t len, int *synced)
{
	int rc = req_end(c, put_req(c, path, body, len, synced));

	if (rc != 0)
		*synced = 0;
	return rc;
}

int sftpc_rename(struct sftpc *c, const char *from, const char *to)
{
	return req_end(c, rename_req(c, from, to));
}

int sftpc_remove(struct sftpc *c, const char *path)
{
	return req_end(c, remove_req(c, path));
}

int sftpc_mkdir(struct sftpc *c, const char *dir)
{
	return req_end(c, mkdir_req(c, dir));
}
