/*
 * libFuzzer target for the HL7 codec: classification, MSH and MSA parsing,
 * charsets and ACK building.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_hl7.c mllp-bridge/hl7.c -o build/fuzz/fuzz_hl7
 *   build/fuzz/fuzz_hl7 -max_total_time=60 build/fuzz/corpus_hl7 ../shared/samples
 *
 * The input is the message; the ACK options come from its last byte and the
 * error text from its first bytes. Checked: parsed slices stay inside the
 * message and hold no separator; every ACK fits HL7_ACK_MAX, has one CR per
 * segment and no LF, parses back (MSH and MSA) with the fields mirrored; any
 * smaller buffer gives -ENOSPC without being overrun.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const reasons[] = {
    "no MSH segment",
    "bad field separator in MSH-1",
    "bad encoding characters in MSH-2",
    "MSH-10 message control ID is empty",
    "MSH-10 message control ID is too long",
    "MSH-9 message type is empty",
    "MSH-12 version ID is empty",
};

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_slice(const struct hl7_str *s, const char *msg, size_t len, char fs)
{
	if (!s->p)
		return;
	check(s->p >= msg && s->p + s->len <= msg + len);
	for (size_t i = 0; i < s->len; i++)
		check(s->p[i] != fs && s->p[i] != '\r' && s->p[i] != '\n');
}

static int parse(const char *msg, size_t len, struct hl7_msh *m)
{
	const char *why = NULL;
	int rc = hl7_parse_msh(msg, len, m, &why), known = 0;
	const struct hl7_str *all[] = {
	    &m->sending_app,  &m->sending_facility, &m->receiving_app, &m->receiving_facility,
	    &m->message_type, &m->control_id,	    &m->processing_id, &m->version,
	    &m->accept_ack,   &m->app_ack,	    &m->charset,
	};

	check(rc == 0 || rc == -EBADMSG);
	check(rc == 0 ? why == NULL : why != NULL);
	for (size_t i = 0; rc && i < sizeof(reasons) / sizeof(reasons[0]); i++)
		known |= strcmp(why, reasons[i]) == 0;
	check(rc == 0 || known);
	check(m->enc_len == 0 || m->enc_len == 4 || m->enc_len == 5);
	check(m->enc_len == 0 || m->field_sep != 0);
	if (rc == 0)
		check(m->enc_len && m->control_id.len && m->message_type.len && m->version.len);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (m->field_sep)
			check_slice(all[i], msg, len, m->field_sep);
		else
			check(all[i]->p == NULL);
	}
	(void)hl7_mime_charset(&m->charset);
	(void)hl7_is_enhanced(m);
	return rc;
}

static int same(const struct hl7_str *a, const struct hl7_str *b)
{
	size_t al = a->p ? a->len : 0, bl = b->p ? b->len : 0;

	return al == bl && (al == 0 || memcmp(a->p, b->p, al) == 0);
}

/* Builds into buffers of every interesting size and checks the result. */
static void ack(const struct hl7_ack_req *req, const struct hl7_msh *sender)
{
	static char buf[HL7_ACK_MAX];
	struct hl7_msh am;
	struct hl7_str code, ctl;
	size_t cr = 0, caps[3];
	int n = hl7_build_ack(req, buf, sizeof(buf));

	check(n > 0 && n <= HL7_ACK_MAX);
	for (int i = 0; i < n; i++) {
		check(buf[i] != '\n');
		cr += buf[i] == '\r';
	}
	check(buf[n - 1] == '\r' && cr == (req->err_text ? 3u : 2u));
	check(parse(buf, (size_t)n, &am) == 0);
	check(hl7_parse_msa(buf, (size_t)n, &code, &ctl) == 0);
	check(code.len == 2 && code.p[0] == (req->enhanced ? 'C' : 'A'));
	check(code.p[1] == "AER"[req->code]);
	if (sender && sender->enc_len) {
		/* Same separators: fields short enough are mirrored untouched. */
		check(am.field_sep == sender->field_sep && am.enc_len == sender->enc_len);
		if (sender->control_id.len <= HL7_FIELD_MAX)
			check(same(&ctl, &sender->control_id));
		if (sender->sending_app.len <= HL7_FIELD_MAX)
			check(same(&am.receiving_app, &sender->sending_app));
		if (sender->receiving_facility.len <= HL7_FIELD_MAX)
			check(same(&am.sending_facility, &sender->receiving_facility));
	}
	caps[0] = 0;
	caps[1] = (size_t)n / 2;
	caps[2] = (size_t)n - 1;
	for (int i = 0; i < 3; i++) {
		char *small = malloc(caps[i] ? caps[i] : 1); /* exact: ASan sees overruns */

		check(small != NULL);
		check(hl7_build_ack(req, small, caps[i]) == -ENOSPC);
		free(small);
	}
}

/* The copy a pending answer keeps: every field within its limit, none
 * past it, MSA-2 still MSH-10 when that was within its limit, and the
 * answer built from it alone. */
static void keep_then_ack(struct hl7_ack_req *req, const struct hl7_msh *m, int parsed)
{
	static char keep[HL7_MSH_KEEP_MAX];
	struct hl7_msh k;
	unsigned limit = 0, over;

	if (!m->field_sep)
		return;
	over = hl7_msh_overlong(m, &limit);
	check(!over || limit > 0);
	hl7_msh_keep(m, &k, keep);
	check(k.field_sep == m->field_sep && k.enc_len == m->enc_len);
	check(k.sending_app.len <= HL7_MSH_HD_MAX && k.control_id.len <= HL7_MSH_CONTROL_ID_MAX &&
	      k.version.len <= HL7_MSH_VERSION_MAX && k.charset.len <= HL7_MSH_CHARSET_MAX);
	if (m->control_id.len <= HL7_MSH_CONTROL_ID_MAX)
		check(k.control_id.len == m->control_id.len &&
		      (!k.control_id.len ||
		       memcmp(k.control_id.p, m->control_id.p, k.control_id.len) == 0));
	if (parsed && !over)
		check(hl7_msh_overlong(&k, &limit) == 0);
	req->msh = &k;
	ack(req, &k);
	req->msh = m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	uint8_t opt = size ? data[size - 1] : 0;
	struct hl7_msh m;
	struct hl7_str code, ctl;
	char text[400];
	size_t tn = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	int rc;

	(void)hl7_payload_kind(data, size);
	if (hl7_parse_msa(data, size, &code, &ctl) == 0)
		check(code.len > 0 && code.p >= msg && code.p + code.len <= msg + size);
	rc = parse(msg, size, &m);

	memcpy(text, data, tn);
	text[tn] = '\0';
	struct hl7_ack_req req = {
	    .msh = m.field_sep ? &m : NULL,
	    .code = (enum hl7_ack_code)(opt % 3),
	    .enhanced = (opt & 4) ? 1 : hl7_is_enhanced(&m),
	    .ack_control_id = "K1",
	    .timestamp = "20261126083001+0000",
	    .err_code = (enum hl7_err_code)(opt & 8 ? 101 : 207),
	    .err_severity = (char)(opt >> 4),
	    .err_text = rc || (opt & 16) ? text : NULL,
	    .err_segment = opt & 32 ? text : NULL,
	    .err_field = opt,
	};
	ack(&req, req.msh);
	keep_then_ack(&req, &m, rc == 0);
	req.msh = NULL;
	ack(&req, NULL);
	return 0;
}
