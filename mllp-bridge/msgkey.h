/*
 * What makes a message itself, and which lane it belongs to: pure functions
 * over the message bytes and its parsed header, for unit tests and fuzzers.
 *
 * Idempotency-Key: derived, not random, so that a byte-identical resend (a
 * sender that timed out and sent again) carries the same key and the
 * upstream can tell. Derived from the integration, MSH-3, MSH-4, MSH-10 and
 * a SHA-256 of the whole payload; a payload without an MSH (X12, XML) keys
 * on the integration and its hash alone.
 *
 * Lane keys: a lane is an ordered FIFO with one request in flight. Keys are
 * text that never holds patient data (a patient identifier is hashed), so
 * they may appear in `spool list` output; they are never logged.
 */
#ifndef MSGKEY_H
#define MSGKEY_H

#include <stddef.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/hl7.h"

#define MSGKEY_IDEM_LEN 36  /* UUID-shaped: 8-4-4-4-12 lowercase hex (version 8) */
#define MSGKEY_LANE_MAX 160 /* a lane key, NUL included; <= SPOOL_LANE_MAX */
#define MSGKEY_TEXT_MAX 100 /* a feed or sender longer than this is hashed */

/* Writes the Idempotency-Key (MSGKEY_IDEM_LEN characters and a NUL) of a
 * message. msh is NULL for a payload that has no HL7 header. The key is a
 * version 8 UUID made of SHA-256 over the form (with or without MSH), then
 * integration, MSH-3, MSH-4 and MSH-10 each preceded by its length, then
 * SHA-256 of the body: the same bytes to the same integration give the same
 * key, any other byte another. integration NULL counts as "". Writes ""
 * only when libcrypto cannot allocate: spool_append() refuses that key. */
void msgkey_idem(const char *integration, const struct hl7_msh *msh, const void *body, size_t len,
		 char out[MSGKEY_IDEM_LEN + 1]);

/* Where a message queues, by `order`:
 *   CFG_ORDER_INTEGRATION  "i"                        one lane
 *   CFG_ORDER_SENDER       "s:<sender>"               the peer's address
 *   CFG_ORDER_FEED         "f:<MSH-3>^<MSH-4>"        sending application and facility
 *   CFG_ORDER_PATIENT      "p:<feed>:<hash of PID-3>" feed + first PID-3 identifier
 * A feed ("<MSH-3>^<MSH-4>") or sender longer than MSGKEY_TEXT_MAX, with a
 * byte outside printable ASCII, or (feed only, it is followed by one) a ':'
 * is replaced by "h" and 16 hex digits of its SHA-256. The patient is the
 * first repetition of PID-3, components 1 (ID) and 4 (assigning authority):
 * its hash is the first 8 bytes of SHA-256 of "ID^authority", in hex. Under
 * PATIENT, a message without a PID-3 ID goes in its feed's lane ("f:..."),
 * and a message with an MRG-1 ID also gets that prior patient's lane in
 * lane2, so that it waits for everything queued before it for both. lane2
 * is "" otherwise, also when both are the same lane. Without an MSH (msh
 * NULL), FEED and PATIENT fall back to the sender's lane; sender NULL counts
 * as "". Both buffers are MSGKEY_LANE_MAX bytes and always NUL-terminated;
 * both are "" only when libcrypto cannot allocate (lanes_push() refuses an
 * empty key). */
void msgkey_lanes(enum cfg_order order, const char *sender, const struct hl7_msh *msh,
		  const void *body, size_t len, char lane[MSGKEY_LANE_MAX],
		  char lane2[MSGKEY_LANE_MAX]);

#endif
