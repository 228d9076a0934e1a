/*
 * Outbound translation: Redox-style JSON data models → HL7 v2 (issue 12).
 *
 * A pure codec over buffers: no I/O, no event loop, and nothing of the
 * content is logged. One pair of tables per data model (PatientAdmin,
 * Results, Order, Scheduling: the events with their segment programs, and
 * the rows) drives the whole message; docs/translation.md lists the tables
 * field by field, and the rules below.
 *
 * Rules every value follows:
 * - escaped in one pass with the message's own delimiters (|^~\&): \E\ for
 *   the escape character, \F\ \S\ \R\ \T\ for the others;
 * - CR and LF become \X0D\ and \X0A\ (and other C0 controls but TAB \Xhh\),
 *   so a value never holds a raw segment end; 0x0B and 0x1C (MLLP framing)
 *   are refused;
 * - JSON null or a missing key gives an empty field, never "";
 * - dates keep their precision and offsets ("Z" → +0000), impossible dates
 *   are refused;
 * - a value longer than its field's limit (counted in output bytes, after
 *   escaping) is cut before the first escape sequence or character that
 *   would not fit whole;
 * - identifiers, results and notes are refused rather than cut;
 * - with latin1, a character above U+00FF is refused;
 * - a segment group repeats over at most XL_GROUP_MAX elements, and a
 *   message longer than XL_OUT_MAX bytes is refused.
 * A refusal is -EINVAL with the JSON path of the bad value and the reason:
 * the caller answers 422 with both.
 */
#ifndef TRANSLATE_H
#define TRANSLATE_H

#include <stddef.h>

#define XL_JSON_MAX	  (1024 * 1024) /* bytes of JSON, checked before parsing */
#define XL_JSON_DEPTH_MAX 32		/* nesting of objects and arrays (jansson allows 2048) */
#define XL_REP_MAX	  32		/* repetitions of one field (e.g. PID-3 identifiers) */
#define XL_GROUP_MAX	  100		/* elements of one segment group (orders, results, notes) */
#define XL_OUT_MAX	  (2 * 1024 * 1024) /* bytes of HL7: escaping can triple a value */

struct xl_opts {			/* per destination; all borrowed for the call */
	const char *version;		/* MSH-12, e.g. "2.5.1" */
	const char *sending_app;	/* MSH-3; NULL or "" for none */
	const char *sending_facility;	/* MSH-4 */
	const char *receiving_app;	/* MSH-5 */
	const char *receiving_facility; /* MSH-6 */
	int latin1;			/* 0: UTF-8 ("UNICODE UTF-8"); 1: ISO 8859/1 ("8859/1") */
	const char *control_id;		/* MSH-10, unique per message (the caller's job) */
	const char *now; /* MSH-7 and EVN-2 when Meta.EventDateTime is absent, HL7 DTM */
};

struct xl_error {
	char path[256];	  /* JSON path of the bad value, e.g. "$.Patient.Demographics.DOB" */
	char reason[256]; /* English, holds no patient data */
};

/* Translates one JSON document into one HL7 v2 message, segments ending
 * with CR. Returns 0 with *out malloc'd (caller frees; *len_out bytes, plus a
 * NUL not counted), or -EMSGSIZE when len > XL_JSON_MAX (nothing parsed),
 * -EINVAL with *err filled (bad JSON, unsupported model or event, a value
 * that cannot be translated; also bad opts: path "(opts)"), -ENOMEM. On error
 * *out is NULL. err may not be NULL. */
__attribute__((warn_unused_result)) int translate_json(const void *json, size_t len,
						       const struct xl_opts *o, char **out,
						       size_t *len_out, struct xl_error *err);

#endif
