/*
 * Message keys: the derived Idempotency-Key and the lane keys. See msgkey.h
 * for the contracts.
 *
 * Everything is SHA-256 (libcrypto's EVP interface, the TLS library the
 * bridge links anyway). Its only failure is libcrypto running out of memory
 * for its context; the API has no error return, so a failure leaves empty
 * keys, which the spool (idempotency key) and the lanes (lane key) refuse:
 * the message is NAKed, never stored under a wrong key.
 */
#include "msgkey.h"

#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mllp-bridge/lane.h"
#include "mllp-bridge/spool.h"

#define SHA256_LEN	32
#define UUID_BYTES	16 /* the first 16 bytes of the digest make the UUID */
#define LEN_PREFIX	8  /* a big-endian uint64 in front of each idem field */
#define IDEM_FIELDS_MAX 4  /* integration, MSH-3, MSH-4, MSH-10 */
/* 64 bits of hash in a lane key: a collision only puts two feeds or two
 * patients in one lane, which is stricter ordering, never lost ordering. */
#define LANE_HASH_BYTES 8
#define LANE_HASH_HEX	(2 * LANE_HASH_BYTES)
#define FEED_CAP	(MSGKEY_TEXT_MAX + 1)
#define PID_IDS		3 /* PID-3 patient identifier list */
#define MRG_PRIOR_IDS	1 /* MRG-1 prior patient identifier list */
#define ID_COMPONENT	1 /* CX-1 ID number */
#define AUTH_COMPONENT	4 /* CX-4 assigning authority */

/* The longest key: "p:" feed ":" hash, NUL. */
_Static_assert(2 + MSGKEY_TEXT_MAX + 1 + LANE_HASH_HEX + 1 <= MSGKEY_LANE_MAX,
	       "a patient lane key must fit MSGKEY_LANE_MAX");
_Static_assert(1 + LANE_HASH_HEX <= MSGKEY_TEXT_MAX, "a hashed feed must fit the feed text");
_Static_assert(MSGKEY_LANE_MAX - 1 <= LANE_KEY_MAX, "every lane key must be a valid lanes key");
_Static_assert(MSGKEY_LANE_MAX - 1 <= SPOOL_LANE_MAX, "every lane key must fit the spool");
_Static_assert(MSGKEY_IDEM_LEN <= SPOOL_KEY_MAX, "the idempotency key must fit the spool");

struct piece {
	const void *p;
	size_t len;
};

/* SHA-256 over the pieces in order. 0, or -ENOMEM when libcrypto cannot
 * allocate its context. */
static int sha256(const struct piece *pc, size_t n, uint8_t out[SHA256_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);

	for (size_t i = 0; ok && i < n; i++)
		ok = pc[i].len == 0 || EVP_DigestUpdate(ctx, pc[i].p, pc[i].len);
	ok = ok && EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -ENOMEM;
}

/* Lowercase hex of n bytes: 2n characters and a NUL. */
static void hex(char *out, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		*out++ = digits[b[i] >> 4];
		*out++ = digits[b[i] & 0x0f];
	}
	*out = '\0';
}

static struct piece str_piece(const struct hl7_str *s)
{
	return (struct piece){s->p, s->p ? s->len : 0};
}

/* ---- Idempotency-Key ---- */

static void be64(uint8_t out[LEN_PREFIX], uint64_t v)
{
	for (int i = LEN_PREFIX - 1; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

/* 8-4-4-4-12 lowercase hex, version 8 (RFC 9562: custom, here SHA-256
 * based) with the RFC 4122 variant bits. */
static void uuid_v8(const uint8_t d[UUID_BYTES], char out[MSGKEY_IDEM_LEN + 1])
{
	uint8_t b[UUID_BYTES];
	char h[2 * UUID_BYTES + 1];

	memcpy(b, d, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x80);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	hex(h, b, sizeof(b));
	snprintf(out, MSGKEY_IDEM_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16,
		 h + 20);
}

void msgkey_idem(const char *integration, const struct hl7_msh *msh, const void *body, size_t len,
		 char out[MSGKEY_IDEM_LEN + 1])
{
	/* A marker says which form follows, so that no payload keyed without
	 * a header can ever meet one keyed with it. */
	const uint8_t form = msh ? 'H' : 'N';
	struct hl7_str f[IDEM_FIELDS_MAX] = {{integration ? integration : "", 0}};
	uint8_t lens[IDEM_FIELDS_MAX][LEN_PREFIX], body_hash[SHA256_LEN], d[SHA256_LEN];
	struct piece pc[1 + 2 * IDEM_FIELDS_MAX + 1] = {{&form, 1}};
	size_t nf = 1, n = 1;

	assert(body || len == 0);
	out[0] = '\0';
	f[0].len = strlen(f[0].p);
	if (msh) {
		f[nf++] = msh->sending_app;
		f[nf++] = msh->sending_facility;
		f[nf++] = msh->control_id;
	}
	/* Each field length-prefixed: "ab" + "c" never hashes like "a" + "bc". */
	for (size_t i = 0; i < nf; i++) {
		struct piece v = str_piece(&f[i]);

		be64(lens[i], v.len);
		pc[n++] = (struct piece){lens[i], LEN_PREFIX};
		pc[n++] = v;
	}
	if (sha256(&(struct piece){body, len}, 1, body_hash) < 0)
		return;
	pc[n++] = (struct piece){body_hash, sizeof(body_hash)};
	if (sha256(pc, n, d) == 0)
		uuid_v8(d, out);
}

/* ---- lanes ---- */

/* Text that may stand in a lane key as it is: printable ASCII, at most
 * MSGKEY_TEXT_MAX bytes, and (unless colon_ok) no ':', which separates the
 * parts of "p:<feed>:<hash>". */
static int plain_text(const char *p, size_t n, int colon_ok)
{
	if (n > MSGKEY_TEXT_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e ||
		    (p[i] == ':' && !colon_ok))
			return 0;
	return 1;
}

/* The hex of the first LANE_HASH_BYTES of the pieces' hash. 0 or -ENOMEM. */
static int lane_hash(const struct piece *pc, size_t n, char h[LANE_HASH_HEX + 1])
{
	uint8_t d[SHA256_LEN];

	if (sha256(pc, n, d) < 0)
		return -ENOMEM;
	hex(h, d, LANE_HASH_BYTES);
	return 0;
}

/* out = prefix, "h" and the pieces' lane hash. 0 or -ENOMEM. */
static int hashed_text(char *out, size_t cap, const char *prefix, const struct piece *pc, size_t n)
{
	char h[LANE_HASH_HEX + 1];

	if (lane_hash(pc, n, h) < 0)
		return -ENOMEM;
	snprintf(out, cap, "%sh%s", prefix, h);
	return 0;
}

static void sender_lane(const char *sender, char lane[MSGKEY_LANE_MAX])
{
	size_t n;

	if (!sender)
		sender = "";
	n = strlen(sender);
	/* An IPv6 peer address has colons: nothing follows the sender. */
	if (plain_text(sender, n, 1))
		snprintf(lane, MSGKEY_LANE_MAX, "s:%s", sender);
	else
		(void)hashed_text(lane, MSGKEY_LANE_MAX, "s:", &(struct piece){sender, n}, 1);
}

/* "MSH-3^MSH-4", or "h" and its hash when that is long or not plain text.
 * 0 or -ENOMEM. */
static int feed_text(const struct hl7_msh *msh, char feed[FEED_CAP])
{
	struct piece pc[3] = {
	    str_piece(&msh->sending_app), {"^", 1}, str_piece(&msh->sending_facility)};

	if (pc[0].len + 1 + pc[2].len <= MSGKEY_TEXT_MAX && plain_text(pc[0].p, pc[0].len, 0) &&
	    plain_text(pc[2].p, pc[2].len, 0)) {
		snprintf(feed, FEED_CAP, "%.*s^%.*s", (int)pc[0].len,
			 pc[0].len ? msh->sending_app.p : "", (int)pc[2].len,
			 pc[2].len ? msh->sending_facility.p : "");
		return 0;
	}
	return hashed_text(feed, FEED_CAP, "", pc, 3);
}

/* Part n (from 1) of s split at sep; {NULL, 0} when s has fewer parts. */
static struct hl7_str part(struct hl7_str s, char sep, unsigned n)
{
	const char *p = s.p, *end = s.p ? s.p + s.len : NULL, *e;

	for (unsigned i = 1; p; i++) {
		e = memchr(p, sep, (size_t)(end - p));
		if (!e)
			e = end;
		if (i == n)
			return (struct hl7_str){p, (size_t)(e - p)};
		p = e < end ? e + 1 : NULL;
	}
	return (struct hl7_str){NULL, 0};
}

/* The lane "p:<feed>:<hash of ID^authority>" of the first identifier in
 * seg-field (a CX list: PID-3, MRG-1). 1 when written, 0 when the segment,
 * the field or the ID is missing, -ENOMEM. Only the hash is kept: the
 * identifier itself never reaches a lane key. */
static int patient_lane(const void *body, size_t len, const struct hl7_msh *msh, const char seg[3],
			unsigned field, const char *feed, char lane[MSGKEY_LANE_MAX])
{
	struct hl7_str f, rep, id, auth;
	char h[LANE_HASH_HEX + 1];

	if (hl7_find_field(body, len, msh, seg, field, &f) != 0 || !f.p)
		return 0;
	rep = part(f, msh->enc[1], 1);
	id = part(rep, msh->enc[0], ID_COMPONENT);
	auth = part(rep, msh->enc[0], AUTH_COMPONENT);
	if (!id.len)
		return 0;
	if (lane_hash((struct piece[]){str_piece(&id), {"^", 1}, str_piece(&auth)}, 3, h) < 0)
		return -ENOMEM;
	snprintf(lane, MSGKEY_LANE_MAX, "p:%s:%s", feed, h);
	return 1;
}

/* lane: the patient's (PID-3) or else the feed's; lane2: the prior
 * patient's (MRG-1) when that is another lane. Both "" on failure. */
static void patient_lanes(const struct hl7_msh *msh, const void *body, size_t len, const char *feed,
			  char lane[MSGKEY_LANE_MAX], char lane2[MSGKEY_LANE_MAX])
{
	int has = 0, prior = 0;

	/* Without the component and repetition separators, no identifier can
	 * be read: the feed's lane keeps the order. */
	if (msh->enc_len >= 4 && body) {
		has = patient_lane(body, len, msh, "PID", PID_IDS, feed, lane);
		if (has >= 0)
			prior = patient_lane(body, len, msh, "MRG", MRG_PRIOR_IDS, feed, lane2);
	}
	if (has < 0 || prior < 0) {
		lane[0] = lane2[0] = '\0';
		return;
	}
	if (!has)
		snprintf(lane, MSGKEY_LANE_MAX, "f:%s", feed);
	if (!prior || strcmp(lane, lane2) == 0)
		lane2[0] = '\0';
}

void msgkey_lanes(enum cfg_order order, const char *sender, const struct hl7_msh *msh,
		  const void *body, size_t len, char lane[MSGKEY_LANE_MAX],
		  char lane2[MSGKEY_LANE_MAX])
{
	char feed[FEED_CAP];

	lane[0] = lane2[0] = '\0';
	if (order == CFG_ORDER_INTEGRATION) {
		snprintf(lane, MSGKEY_LANE_MAX, "i");
		return;
	}
	if ((order != CFG_ORDER_FEED && order != CFG_ORDER_PATIENT) || !msh) {
		sender_lane(sender, lane);
		return;
	}
	if (feed_text(msh, feed) < 0)
		return;
	if (order == CFG_ORDER_FEED)
		snprintf(lane, MSGKEY_LANE_MAX, "f:%s", feed);
	else
		patient_lanes(msh, body, len, feed, lane, lane2);
}
