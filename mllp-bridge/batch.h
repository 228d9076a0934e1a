/*
 * HL7 v2 batch files (HL7 2.5.1 chapter 2, "Batch protocol"):
 *
 *   [FHS {BHS {MSH ...segments} BTS} ... FTS]
 *
 * FHS/FTS (file header/trailer) and BHS/BTS (batch header/trailer) are
 * optional; a file may hold several batches, or bare messages without any
 * header. batch_split() checks the whole file before it reports any message:
 * a file is split completely or refused completely, so a caller can store
 * every message of it in one transaction.
 *
 * Checks: the first segment is FHS, BHS or MSH; FHS only first, FTS only
 * last (and only after FHS, and FHS needs FTS); BHS/BTS pair up and do not
 * nest; every message starts with MSH and lies inside a batch when batches
 * are used; BTS-1 (batch message count), when not empty, equals the messages
 * of that batch; FTS-1 (file batch count), when not empty, equals the
 * batches; counts are plain decimal; at least one message; at most
 * BATCH_MESSAGES_MAX messages.
 * Line endings: segments end in CR, LF or CRLF (files from Windows and Unix
 * hosts both occur); empty lines and a trailing end-of-file byte 0x1A are
 * ignored. Each message is handed out with its segments ended by CR, as
 * MLLP carries it. The field separator is the 4th byte of each header
 * segment (FHS/BHS/MSH carry their own; BTS/FTS use the last header's).
 *
 * Pure: no I/O, no allocation beyond one work array; the reason texts name
 * segment kinds, line numbers and counts, never content.
 */
#ifndef BATCH_H
#define BATCH_H

#include <stddef.h>
#include <stdint.h>

#define BATCH_MESSAGES_MAX 100000 /* messages in one file */
#define BATCH_WHY_MAX	   200	  /* a reason text */

/* One message of the file: a normalized copy (segments end in CR) that is
 * borrowed for the call. index counts from 0 in file order. A non-zero
 * return stops the split and is returned by batch_split(). */
typedef int (*batch_msg_cb)(void *arg, size_t index, const uint8_t *msg, size_t len);

/* Splits buf (len bytes) and calls cb once per message, in order, after the
 * whole file passed the checks. Returns 0 and *count (may be NULL) the
 * number of messages; -EBADMSG with a reason in why ("line 12: BTS-1 says 3
 * messages, the batch holds 2") and no callback at all; -E2BIG (more than
 * BATCH_MESSAGES_MAX); -ENOMEM; or cb's non-zero value. */
__attribute__((warn_unused_result)) int batch_split(const uint8_t *buf, size_t len,
						    batch_msg_cb cb, void *arg, size_t *count,
						    char *why, size_t whylen);

/* Is this file a batch at all (does it start with FHS or BHS, after an
 * optional UTF-8 BOM)? For logs and metrics: a channel with split:
 * hl7-batch also takes files of bare messages. */
int batch_is_batch(const uint8_t *buf, size_t len);

#endif
