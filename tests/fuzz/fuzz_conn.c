/*
 * libFuzzer target: the codecs of one MLLP connection's path, end to end,
 * on arbitrary byte streams: the deframer fed in chunks whose sizes the
 * input chooses, the header parsed wherever MSH starts, the kept header
 * (hl7_msh_keep) and the answer built from it, as mllp_in.c does.
 *
 * Asserts: every complete frame gets exactly one answer; that answer is an
 * HL7 message whose MSA-2 is the frame's MSH-10 whenever MSH-10 was parsed
 * within its limit (HL7_MSH_CONTROL_ID_MAX); memory stays bounded by
 * max_frame (ASan); the deframer's own events come in a legal order.
 *
 *   make fuzz-build && build/fuzz/fuzz_conn -max_total_time=30
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/hl7.h"
#include "mllp-bridge/mllp.h"

#define FUZZ_MAX_FRAME 4096 /* small, so that oversize is reached */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

/* The answer mllp_in.c gives a frame, and the checks on it. */
static void answer(const uint8_t *frame, size_t len)
{
	static char keep[HL7_MSH_KEEP_MAX];
	char buf[HL7_ACK_MAX];
	struct hl7_msh msh, kept;
	struct hl7_str code, ctl;
	unsigned limit = 0, over = 0;
	int parsed, n, mirrorable;

	memset(&msh, 0, sizeof(msh));
	parsed = len && hl7_payload_kind(frame, len) == PAYLOAD_HL7 &&
		 hl7_parse_msh(frame, len, &msh, NULL) == 0;
	mirrorable = parsed || msh.field_sep;
	if (parsed)
		over = hl7_msh_overlong(&msh, &limit);
	if (mirrorable)
		hl7_msh_keep(&msh, &kept, keep);
	n = hl7_build_ack(&(struct hl7_ack_req){.msh = mirrorable ? &kept : NULL,
						.code = parsed && !over ? HL7_ACCEPT : HL7_REJECT,
						.enhanced = mirrorable && hl7_is_enhanced(&kept),
						.ack_control_id = "K1",
						.timestamp = "20261130120000+0000",
						.err_code = HL7_ERR_REQUIRED_FIELD,
						.err_severity = 'E',
						.err_text = parsed && !over ? NULL : "refused",
						.err_segment = over ? "MSH" : NULL,
						.err_field = over},
			  buf, sizeof(buf));
	check(n > 0);
	check(hl7_parse_msa(buf, (size_t)n, &code, &ctl) == 0);
	if (parsed && msh.control_id.len <= HL7_MSH_CONTROL_ID_MAX)
		check(ctl.len == msh.control_id.len &&
		      memcmp(ctl.p, msh.control_id.p, ctl.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mllp_deframer *d = mllp_deframer_new(FUZZ_MAX_FRAME);
	size_t at = 0, frames = 0, answers = 0;
	struct mllp_frame f;
	enum mllp_event ev;
	int oversized = 0;

	check(d != NULL);
	while (at < size) {
		/* The first byte of each step is the chunk's size: reads split
		 * anywhere, as TCP splits them. */
		size_t chunk = 1 + data[at] % 97;

		at++;
		if (chunk > size - at)
			chunk = size - at;
		if (mllp_deframer_feed(d, data + at, chunk) < 0)
			break;
		at += chunk;
		while (!oversized && (ev = mllp_deframer_next(d, &f)) != MLLP_NEED_MORE) {
			if (ev == MLLP_FRAME) {
				frames++;
				check(f.len <= FUZZ_MAX_FRAME);
				answer(f.data, f.len);
				answers++;
			} else if (ev == MLLP_OVERSIZE) {
				oversized = 1; /* the connection is answered once and closed */
			}
		}
		if (oversized)
			break;
	}
	check(frames == answers);
	check(mllp_deframer_capacity(d) <= 2 * FUZZ_MAX_FRAME + 2 * 97);
	mllp_deframer_free(d);
	return 0;
}
