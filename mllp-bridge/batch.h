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
 * Where HL7 leaves room, the choices are:
 * - "Batches are used" when the first segment is FHS or BHS (as
 *   batch_is_batch() says). Then every MSH must be between BHS and BTS: an
 *   FHS followed by bare messages is refused, as is a BHS after bare
 *   messages.
 * - An empty batch (BHS, BTS) is legal HL7 (periodic submissions with
 *   nothing to send) and passes when BTS-1 is empty or 0; a file with no
 *   message at all is refused.
 * - A count is 1 to 10 digits (HL7's length of BTS-1/FTS-1), leading zeros
 *   allowed; a sign, a space, a component or more digits are "not a
 *   number". BTS-2 and later fields are not looked at.
 * - A segment id is 3 capital letters or digits followed by the field
 *   separator or the end of the line ("PIDX|", "pid|" are refused). A line
 *   that is not a segment is refused, not joined to the one before: text
 *   wrapped with LF inside a CR-ended segment is refused by line number.
 * - FHS, BHS and MSH are at least 8 bytes (id, field separator, encoding
 *   characters); field 1 is a printable non-alphanumeric byte, field 2 is 4
 *   or 5 distinct such bytes (hl7.c's MSH rule).
 * - NUL and the MLLP framing bytes 0x0B and 0x1C are refused anywhere (they
 *   would cut the message when it is forwarded over MLLP), and 0x1A
 *   anywhere but at the end.
 * - Segments keep their bytes as they are (trailing spaces included); only
 *   their line ends change.
 * Line endings: segments end in CR, LF or CRLF (files from Windows and Unix
 * hosts both occur), mixed within a file; empty lines, lines of spaces and
 * tabs, and trailing end-of-file bytes 0x1A (with line ends around them)
 * are ignored. Each message is handed out with its segments ended by CR,
 * as MLLP carries it, the last one too. The field separator is the 4th
 * byte of each header segment: FHS/BHS/MSH carry their own, BTS uses its
 * BHS's, FTS its FHS's, and a message's other segments their MSH's.
 * Line numbers in reasons count from 1 after a UTF-8 BOM, blank lines
 * included, one per CR, LF or CRLF (as an editor shows them).
 *
 * Pure: no I/O. The file is checked once without copying, then walked
 * again to copy each message into one buffer the size of the largest
 * message, reused for every callback: that is the only allocation. The
 * reason texts name segment kinds (FHS, BHS, MSH, BTS, FTS only: any other
 * id could be content), line numbers, counts and the refused byte's value,
 * never content.
 */
#ifndef BATCH_H
#define BATCH_H

#include <stddef.h>
#include <stdint.h>

#define BATCH_MESSAGES_MAX 100000 /* messages in one file */
#define BATCH_WHY_MAX	   200	  /* a reason text */

/* One message of the file: a normalized copy (segments end in CR) that is
 * borrowed for the call. index counts from 0 in file order. A non-zero
 * return stops the split and is returned by batch_split(); the messages
 * before it were handed out, the caller undoes them if it must. */
typedef int (*batch_msg_cb)(void *arg, size_t index, const uint8_t *msg, size_t len);

/* Splits buf (len bytes) and calls cb once per message, in order, after the
 * whole file passed the checks. Returns 0 and *count (may be NULL) the
 * number of messages; -EBADMSG with a reason in why ("line 12: BTS-1 says 3
 * messages, the batch holds 2") and no callback at all; -E2BIG (more than
 * BATCH_MESSAGES_MAX, no callback); -ENOMEM (no callback); or cb's non-zero
 * value. *count is 0 unless 0 is returned. why (whylen bytes, may be NULL;
 * BATCH_WHY_MAX holds every reason) is set to "" first, cut to fit, and
 * stays "" on success and when cb stopped the split. */
__attribute__((warn_unused_result)) int batch_split(const uint8_t *buf, size_t len, batch_msg_cb cb,
						    void *arg, size_t *count, char *why,
						    size_t whylen);

/* Is this file a batch at all (does it start with FHS or BHS followed by
 * a field separator, after an optional UTF-8 BOM and blank lines, as
 * batch_split() reads it)? 1 or 0. For logs and metrics: a channel with
 * split: hl7-batch also takes files of bare messages. */
int batch_is_batch(const uint8_t *buf, size_t len);

#endif
