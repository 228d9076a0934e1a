/*
 * HL7 v2 header (MSH) parsing, payload classification, ACK building, and
 * finding one field of another segment (PID-3, MRG-1, ...).
 *
 * A pure codec over buffers. Parsed fields are slices that borrow the
 * message buffer: they stay valid as long as that buffer does.
 *
 * Segments end with CR. LF and CRLF are accepted too (common in the field);
 * the message bytes themselves are never rewritten.
 */
#ifndef HL7_H
#define HL7_H

#include <stddef.h>
#include <stdint.h>

#define HL7_ACK_MAX	 8192 /* an ACK we build never exceeds this */
#define HL7_FIELD_MAX	 512  /* a mirrored MSH field longer than this is cut */
#define HL7_ERR_TEXT_MAX 200  /* our own error texts stay below this */
/* Why 8192: an ACK holds up to nine mirrored or caller fields cut at
 * HL7_FIELD_MAX (MSH-3..7, MSH-9 trigger, MSH-10..12, MSH-18, MSA-2) plus the
 * error text twice, escaped and cut at 3 * HL7_ERR_TEXT_MAX: at most about
 * 7000 bytes, so a buffer of HL7_ACK_MAX never gives -ENOSPC. */

struct hl7_str {
	const char *p; /* NULL when the field is absent */
	size_t len;
};

enum payload_kind {
	PAYLOAD_HL7, /* starts with MSH (after optional BOM/whitespace), or FHS/BHS */
	PAYLOAD_X12, /* starts with ISA */
	PAYLOAD_XML, /* starts with '<' (CCD / C-CDA), after optional BOM/whitespace */
	PAYLOAD_UNKNOWN,
};

struct hl7_msh {
	char field_sep; /* MSH-1, usually '|' */
	char enc[5];	/* MSH-2: component, repetition, escape, subcomponent[, truncation] */
	size_t enc_len; /* 4, or 5 (HL7 2.7 truncation character) */
	struct hl7_str sending_app;	   /* MSH-3 */
	struct hl7_str sending_facility;   /* MSH-4 */
	struct hl7_str receiving_app;	   /* MSH-5 */
	struct hl7_str receiving_facility; /* MSH-6 */
	struct hl7_str message_type;	   /* MSH-9, e.g. "ADT^A01^ADT_A01" */
	struct hl7_str control_id;	   /* MSH-10 */
	struct hl7_str processing_id;	   /* MSH-11 */
	struct hl7_str version;		   /* MSH-12 */
	struct hl7_str accept_ack;	   /* MSH-15 */
	struct hl7_str app_ack;		   /* MSH-16 */
	struct hl7_str charset;		   /* MSH-18, first repetition */
};

/* Limits of the header fields an answer mirrors, from HL7 v2.5.1's field
 * lengths with some room. A message with a longer one is answered AR/CR
 * with an ERR naming the field: an answer never carries a cut field. */
#define HL7_MSH_HD_MAX	       227 /* MSH-3..6 (HD) */
#define HL7_MSH_TYPE_MAX       64  /* MSH-9 (MSG: 15 in 2.5, more components later) */
#define HL7_MSH_CONTROL_ID_MAX 199 /* MSH-10 (20 before 2.7, 199 since) */
#define HL7_MSH_PROCESSING_MAX 16  /* MSH-11 (PT: 3) */
#define HL7_MSH_VERSION_MAX    64  /* MSH-12 (VID: 60) */
#define HL7_MSH_ACK_TYPE_MAX   2   /* MSH-15, MSH-16 (ID: AL, NE, ER, SU) */
#define HL7_MSH_CHARSET_MAX    64  /* MSH-18, first repetition */
#define HL7_MSH_KEEP_MAX                                                                           \
	(4 * HL7_MSH_HD_MAX + HL7_MSH_TYPE_MAX + HL7_MSH_CONTROL_ID_MAX + HL7_MSH_PROCESSING_MAX + \
	 HL7_MSH_VERSION_MAX + 2 * HL7_MSH_ACK_TYPE_MAX + HL7_MSH_CHARSET_MAX)

/* Classifies a payload by its first bytes. */
enum payload_kind hl7_payload_kind(const void *buf, size_t len);

/* Parses the MSH segment at the start of msg (after an optional UTF-8 BOM,
 * whitespace, and FHS/BHS batch header segments). Returns 0, or -EBADMSG with
 * *why set to a static English reason ("no MSH segment", "bad encoding
 * characters in MSH-2", "MSH-10 message control ID is empty", ...).
 * On -EBADMSG, out holds whatever could be parsed (field_sep/enc zeroed if
 * MSH-1/MSH-2 were unusable), so an ACK can still mirror it.
 * Checked in this order, first failure reported: MSH present; MSH-1 a
 * punctuation character; MSH-2 4 or 5 distinct punctuation characters other
 * than MSH-1 (a 5th, the 2.7 truncation character, is accepted whatever
 * MSH-12 says); MSH-10 non-empty and at most HL7_FIELD_MAX; MSH-9; MSH-12.
 * Segments end at CR or LF. why may be NULL. */
__attribute__((warn_unused_result)) int hl7_parse_msh(const void *msg, size_t len,
						      struct hl7_msh *out, const char **why);

/* The number of the first mirrored MSH field (3, 4, 5, 6, 9, 10, 11, 12,
 * 15, 16, 18) longer than its limit above, or 0; *limit gets that limit. */
unsigned hl7_msh_overlong(const struct hl7_msh *msh, unsigned *limit);

/* Copies the fields an answer mirrors (and MSH-1/MSH-2) from src into buf,
 * and points dst's fields there, so that dst outlives the message. A field
 * over its limit is left out (absent). */
void hl7_msh_keep(const struct hl7_msh *src, struct hl7_msh *dst, char buf[HL7_MSH_KEEP_MAX]);

/* Enhanced acknowledgement mode: MSH-15 or MSH-16 present and non-empty. */
int hl7_is_enhanced(const struct hl7_msh *msh);

/* The MIME charset for MSH-18 (HL7 table 0211): "" → "UTF-8", "ASCII" →
 * "US-ASCII", "8859/1" → "ISO-8859-1", ..., "UNICODE UTF-8" → "UTF-8".
 * Returns NULL for a value the table does not know. */
const char *hl7_mime_charset(const struct hl7_str *msh18);

enum hl7_ack_code {
	HL7_ACCEPT, /* AA, or CA in enhanced mode */
	HL7_ERROR,  /* AE / CE */
	HL7_REJECT, /* AR / CR */
};

/* HL7 table 0357 error codes used in ERR-3. */
enum hl7_err_code {
	HL7_ERR_OK = 0,
	HL7_ERR_SEGMENT_SEQUENCE = 100,
	HL7_ERR_REQUIRED_FIELD = 101,
	HL7_ERR_DATA_TYPE = 102,
	HL7_ERR_TABLE_VALUE = 103,
	HL7_ERR_UNSUPPORTED_MESSAGE = 200,
	HL7_ERR_APPLICATION_INTERNAL = 207,
};

struct hl7_ack_req {
	const struct hl7_msh *msh; /* the message's header; NULL if none could be parsed */
	enum hl7_ack_code code;
	int enhanced;		    /* C* codes instead of A* (caller uses hl7_is_enhanced) */
	const char *ack_control_id; /* MSH-10 of the ACK itself (unique per ACK) */
	const char *timestamp;	    /* MSH-7 of the ACK, "YYYYMMDDHHMMSS+ZZZZ" */
	/* Optional ERR segment: present when err_text != NULL. */
	enum hl7_err_code err_code;
	char err_severity;    /* 'E' error, 'W' warning, 'I' information */
	const char *err_text; /* English reason, escaped by the builder */
	/* Optional error location (ERR-2 from 2.5 on, ERR-1 components 1-3 before):
	 * segment ID, e.g. "MSH", and field position, e.g. 10; NULL/0 for none. */
	const char *err_segment;
	unsigned err_field;
};

/* Builds an ACK: MSH mirrors the sender's (sending and receiving swapped,
 * same field separator, encoding characters, version, processing ID and
 * MSH-18), MSH-9 "ACK^<trigger>^ACK", MSA-1 the code, MSA-2 the message's
 * MSH-10 (empty if it had none), and an ERR segment when err_text is set
 * (ERR-3/ERR-4/ERR-8 from 2.5 on, ERR-1 before, plus MSA-3 before 2.5).
 * With msh NULL: separators "|^~\&", version 2.5.1, empty mirrored fields.
 * When the sender's MSH-1/MSH-2 were unusable (zeroed by hl7_parse_msh), the
 * default separators are used and mirrored fields are escaped as text.
 * Mirrored fields are copied as sent, cut at HL7_FIELD_MAX (never inside an
 * escape sequence); our own strings (timestamp, ack_control_id, err_text,
 * err_segment) are escaped, CR/LF stripped. Segments end with CR. Writes at
 * most cap bytes, plus a NUL when there is room (not counted). Returns the
 * length, -ENOSPC when cap is too small, or -EINVAL for a bad request. */
__attribute__((warn_unused_result)) int hl7_build_ack(const struct hl7_ack_req *req, char *buf,
						      size_t cap);

/* Finds MSA-1 and MSA-2 in an HL7 ACK (e.g. one relayed from upstream).
 * Returns 0, or -EBADMSG when the text is not an HL7 message with an MSA. */
__attribute__((warn_unused_result)) int
hl7_parse_msa(const void *msg, size_t len, struct hl7_str *code, struct hl7_str *control_id);

/* Finds field `field` of the first segment whose ID is seg[0..2] (a
 * segment starts the message, after an optional BOM and whitespace, or
 * follows a CR, LF or CRLF), split with msh->field_sep. Numbering is HL7's:
 * field 1 follows the segment ID's separator; for "MSH", field 1 is the
 * field separator itself and field 2 the encoding characters. The field is
 * returned raw (repetitions, components and escapes untouched) and borrows
 * msg. Returns 0 with out->p NULL when the segment is shorter than that,
 * -ENOENT when no segment has that ID, -EINVAL for a NULL msg, msh or seg,
 * an msh without a field separator, or field 0. msg is not required to be
 * the message msh was parsed from, only to use its separator. */
__attribute__((warn_unused_result)) int hl7_find_field(const void *msg, size_t len,
						       const struct hl7_msh *msh, const char seg[3],
						       unsigned field, struct hl7_str *out);

#endif
