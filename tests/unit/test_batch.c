/*
 * The HL7 batch file splitter (issue 14): a table of files, each with the
 * expected result, message count and either the normalized messages or a
 * piece of the reason; reasons never show content (PHI-looking input, and
 * every reason's words against the splitter's vocabulary); random line
 * endings, blank lines, BOM and 0x1A around one valid file split it the
 * same way; the callback's stop, the message limit, batch_is_batch().
 */
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/batch.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define OUT_MAX	  (2u << 20) /* every message of a case, '\n' after each */

/* Segments of the cases. */
#define M1  "MSH|^~\\&|LAB|NW|EHR|NW|20261130||ORU^R01|1|P|2.5.1"
#define M2  "MSH|^~\\&|LAB|NW|EHR|NW|20261130||ORU^R01|2|P|2.5.1"
#define M3  "MSH|^~\\&|LAB|NW|EHR|NW|20261130||ORU^R01|3|P|2.5.1"
#define P1  "PID|1||4711^^^NW^MR"
#define O1  "OBX|1|NM|GLU||5.4|mmol/l"
#define FHS "FHS|^~\\&|LAB|NW"
#define BHS "BHS|^~\\&|LAB|NW"

/* Collects the messages as the callback sees them, '\n' after each. */
struct got {
	char *out;
	size_t len, calls;
	int stop_at; /* return -ECANCELED at this call (from 1), 0: never */
};

static int collect(void *arg, size_t index, const uint8_t *msg, size_t len)
{
	struct got *g = arg;

	ck_assert_uint_eq(index, g->calls);
	g->calls++;
	if (g->stop_at && g->calls == (size_t)g->stop_at)
		return -ECANCELED;
	ck_assert_uint_lt(g->len + len + 1, OUT_MAX);
	memcpy(g->out + g->len, msg, len);
	g->len += len;
	g->out[g->len++] = '\n';
	g->out[g->len] = '\0';
	return 0;
}

static int split(const char *in, size_t len, struct got *g, size_t *count, char *why)
{
	static char out[OUT_MAX];

	memset(g, 0, sizeof(*g));
	g->out = out;
	out[0] = '\0';
	return batch_split((const uint8_t *)in, len, collect, g, count, why, BATCH_WHY_MAX);
}

/* ---- the table ---- */

struct split_case {
	const char *name;
	const char *in;
	size_t len;
	int rc;
	size_t count;
	const char *want; /* rc 0: the messages, '\n' after each; else in why */
};

#define IN(s)	 .in = s, .len = sizeof(s) - 1
#define OK(n, w) .rc = 0, .count = n, .want = w
#define NO(w)	 .rc = -EBADMSG, .want = w

static const struct split_case cases[] = {
    /* Line endings: every kind and their mix give the same CR segments. */
    {"bare CR", IN(M1 "\r" P1 "\r"), OK(1, M1 "\r" P1 "\r\n")},
    {"bare LF", IN(M1 "\n" P1 "\n"), OK(1, M1 "\r" P1 "\r\n")},
    {"bare CRLF", IN(M1 "\r\n" P1 "\r\n"), OK(1, M1 "\r" P1 "\r\n")},
    {"mixed endings", IN(M1 "\r\n" P1 "\n" O1 "\r" M2 "\n"),
     OK(2, M1 "\r" P1 "\r" O1 "\r\n" M2 "\r\n")},
    {"no final ending", IN(M1 "\r" P1), OK(1, M1 "\r" P1 "\r\n")},
    {"bare messages", IN(M1 "\r" P1 "\r" M2 "\r" P1 "\r" M3 "\r"),
     OK(3, M1 "\r" P1 "\r\n" M2 "\r" P1 "\r\n" M3 "\r\n")},
    {"blank lines", IN("\r\n\r\n" M1 "\r\n\r\n" P1 "\r\n\n\r" M2 "\r\n\r\n"),
     OK(2, M1 "\r" P1 "\r\n" M2 "\r\n")},
    {"whitespace-only lines", IN(M1 "\n  \t\n" P1 "\n \n"), OK(1, M1 "\r" P1 "\r\n")},
    {"trailing 0x1A", IN(M1 "\r\n" P1 "\r\n\x1a"), OK(1, M1 "\r" P1 "\r\n")},
    {"0x1A right after a segment", IN(M1 "\r" P1 "\x1a"), OK(1, M1 "\r" P1 "\r\n")},
    {"0x1A then line ends", IN(M1 "\r\n\x1a\x1a\r\n"), OK(1, M1 "\r\n")},
    {"UTF-8 BOM", IN("\xef\xbb\xbf" M1 "\r" P1 "\r"), OK(1, M1 "\r" P1 "\r\n")},
    {"trailing spaces are content", IN(M1 "\r" P1 "  \r"), OK(1, M1 "\r" P1 "  \r\n")},
    {"id alone", IN(M1 "\rNTE\r"), OK(1, M1 "\rNTE\r\n")},
    {"Z segment", IN(M1 "\rZPD|x\r"), OK(1, M1 "\rZPD|x\r\n")},
    {"other field separator", IN("MSH*^~\\&*LAB\rPID*1\r"), OK(1, "MSH*^~\\&*LAB\rPID*1\r\n")},
    {"truncation character", IN("MSH|^~\\&#|LAB\r"), OK(1, "MSH|^~\\&#|LAB\r\n")},
    /* Batches. */
    {"one batch", IN(BHS "\r" M1 "\r" P1 "\r" M2 "\rBTS|2\r"), OK(2, M1 "\r" P1 "\r\n" M2 "\r\n")},
    {"file of one batch", IN(FHS "\r" BHS "\r" M1 "\rBTS|1\rFTS|1\r"), OK(1, M1 "\r\n")},
    {"file of batches", IN(FHS "\n" BHS "\n" M1 "\nBTS|1\n" BHS "\n" M2 "\n" M3 "\nBTS|2\nFTS|2\n"),
     OK(3, M1 "\r\n" M2 "\r\n" M3 "\r\n")},
    {"counts empty", IN(FHS "\r" BHS "\r" M1 "\rBTS|\rFTS||x\r"), OK(1, M1 "\r\n")},
    {"trailers without fields", IN(FHS "\r" BHS "\r" M1 "\rBTS\rFTS\r"), OK(1, M1 "\r\n")},
    {"BTS-2 and BTS-3", IN(BHS "\r" M1 "\rBTS|1|end of day|5.4\r"), OK(1, M1 "\r\n")},
    {"leading zeros", IN(BHS "\r" M1 "\r" M2 "\rBTS|002\r"), OK(2, M1 "\r\n" M2 "\r\n")},
    {"empty batch, BTS-1 0", IN(FHS "\r" BHS "\rBTS|0\r" BHS "\r" M1 "\rBTS|1\rFTS|2\r"),
     OK(1, M1 "\r\n")},
    {"empty batch, BTS-1 empty", IN(BHS "\rBTS\r" BHS "\r" M1 "\rBTS\r"), OK(1, M1 "\r\n")},
    {"batch with its own separator", IN("BHS#^~\\&#X\r" M1 "\rBTS#1\r"), OK(1, M1 "\r\n")},
    {"BOM before FHS", IN("\xef\xbb\xbf" FHS "\r\n" BHS "\r\n" M1 "\r\nBTS|1\r\nFTS|1\r\n\x1a"),
     OK(1, M1 "\r\n")},
    /* No message at all. */
    {"empty file", IN(""), NO("the file holds no messages")},
    {"blank file", IN("\xef\xbb\xbf\r\n \r\n\x1a"), NO("the file holds no messages")},
    {"only empty batches", IN(FHS "\r" BHS "\rBTS|0\rFTS|1\r"), NO("the file holds no messages")},
    /* Counts. */
    {"BTS-1 too high", IN(BHS "\r" M1 "\r" M2 "\rBTS|3\r"),
     NO("line 4: BTS-1 says 3 messages, the batch holds 2")},
    {"BTS-1 too low", IN(BHS "\r" M1 "\r" M2 "\rBTS|1\r"),
     NO("line 4: BTS-1 says 1 message, the batch holds 2")},
    {"empty batch, BTS-1 not 0", IN(BHS "\rBTS|2\r" BHS "\r" M1 "\rBTS|1\r"),
     NO("line 2: BTS-1 says 2 messages, the batch holds 0")},
    {"FTS-1 wrong", IN(FHS "\r" BHS "\r" M1 "\rBTS|1\rFTS|2\r"),
     NO("line 5: FTS-1 says 2 batches, the file holds 1")},
    {"BTS-1 not a number", IN(BHS "\r" M1 "\rBTS|two\r"), NO("line 3: BTS-1 is not a number")},
    {"BTS-1 signed", IN(BHS "\r" M1 "\rBTS|+1\r"), NO("line 3: BTS-1 is not a number")},
    {"BTS-1 with a space", IN(BHS "\r" M1 "\rBTS| 1\r"), NO("line 3: BTS-1 is not a number")},
    {"BTS-1 a component", IN(BHS "\r" M1 "\rBTS|1^2\r"), NO("line 3: BTS-1 is not a number")},
    {"BTS-1 overlong", IN(BHS "\r" M1 "\rBTS|00000000001\r"), NO("line 3: BTS-1 is not a number")},
    {"BTS-1 10 digits", IN(BHS "\r" M1 "\rBTS|9999999999\r"),
     NO("line 3: BTS-1 says 9999999999 messages, the batch holds 1")},
    {"FTS-1 not a number", IN(FHS "\r" BHS "\r" M1 "\rBTS|1\rFTS|-1\r"),
     NO("line 5: FTS-1 is not a number")},
    /* Structure. */
    {"BTS without BHS", IN(M1 "\rBTS|1\r"), NO("line 2: BTS without BHS")},
    {"BTS twice", IN(BHS "\r" M1 "\rBTS|1\rBTS|0\r"), NO("line 4: BTS without BHS")},
    {"BHS inside a batch", IN(BHS "\r" M1 "\r" BHS "\r" M2 "\rBTS\rBTS\r"),
     NO("line 3: BHS inside the batch of line 1 (BTS missing)")},
    {"MSH outside a batch, after FHS", IN(FHS "\r" M1 "\rFTS|0\r"),
     NO("line 2: MSH outside a batch")},
    {"MSH after BTS", IN(BHS "\r" M1 "\rBTS|1\r" M2 "\r"), NO("line 4: MSH outside a batch")},
    {"BHS after bare messages", IN(M1 "\r" BHS "\r" M2 "\rBTS|1\r"),
     NO("line 2: BHS after messages outside a batch")},
    {"FTS not last", IN(FHS "\r" BHS "\r" M1 "\rBTS|1\rFTS|1\r" P1 "\r"),
     NO("line 6: segment after FTS (FTS must be last)")},
    {"FTS twice", IN(FHS "\r" BHS "\r" M1 "\rBTS|1\rFTS|1\rFTS|1\r"),
     NO("line 6: segment after FTS")},
    {"FHS not first", IN(BHS "\r" FHS "\r" M1 "\rBTS|1\r"),
     NO("line 2: FHS is not the first segment")},
    {"FHS not first in a bare file", IN(M1 "\r" FHS "\r"), NO("line 2: FHS is not the first")},
    {"FTS without FHS", IN(BHS "\r" M1 "\rBTS|1\rFTS|1\r"), NO("line 4: FTS without FHS")},
    {"FTS inside a batch", IN(FHS "\r" BHS "\r" M1 "\rFTS|1\r"),
     NO("line 4: FTS inside the batch of line 2 (BTS missing)")},
    {"FHS without FTS", IN(FHS "\r" BHS "\r" M1 "\rBTS|1\r"), NO("line 1: FHS has no FTS")},
    {"BHS without BTS", IN(FHS "\r\r" BHS "\r" M1 "\r"), NO("line 3: BHS has no BTS")},
    {"BHS then PID", IN(BHS "\r" P1 "\r" M1 "\rBTS\r"),
     NO("line 2: segment before the first MSH of the batch")},
    {"segment between batches", IN(BHS "\r" M1 "\rBTS\r" P1 "\r" BHS "\r" M2 "\rBTS\r"),
     NO("line 4: segment outside a message")},
    {"PID first", IN(P1 "\r" M1 "\r"), NO("line 1: the first segment is not FHS, BHS or MSH")},
    {"BTS first", IN("BTS|0\r"), NO("line 1: the first segment is not FHS, BHS or MSH")},
    /* Segment ids and headers. */
    {"id of 4 letters", IN(M1 "\rPIDX|1\r"),
     NO("line 2: segment id is not followed by MSH's field separator")},
    {"other separator after id", IN(M1 "\rPID*1\r"),
     NO("line 2: segment id is not followed by MSH's field separator")},
    {"lower-case id", IN(M1 "\rpid|1\r"), NO("line 2: not a segment")},
    {"short line", IN(M1 "\rAB\r"), NO("line 2: not a segment")},
    {"wrapped text", IN(M1 "\r\nOBX|1|TX|||first line\nsecond line\r\n"),
     NO("line 3: not a segment")},
    {"BTS with another separator", IN(BHS "\r" M1 "\rBTS*1\r"),
     NO("line 3: BTS is not followed by BHS's field separator")},
    {"MSH of 7 bytes", IN("MSH|^~\\\r"), NO("line 1: MSH is shorter than 8 bytes")},
    {"MSH alone", IN("MSH\r"), NO("line 1: MSH is shorter than 8 bytes")},
    {"BHS of 6 bytes", IN("BHS|^~\r" M1 "\rBTS\r"), NO("line 1: BHS is shorter than 8 bytes")},
    {"FHS of 4 bytes", IN("FHS|\r"), NO("line 1: FHS is shorter than 8 bytes")},
    {"MSH-1 a letter", IN("MSHX^~\\&X\r"), NO("line 1: MSH-1 is not a field separator")},
    {"MSH-1 a space", IN("MSH ^~\\& \r"), NO("line 1: MSH-1 is not a field separator")},
    {"MSH-2 repeated", IN("MSH|^^\\&|A\r"), NO("line 1: MSH-2 is not 4 or 5 distinct")},
    {"MSH-2 too long", IN("MSH|^~\\&#!|A\r"), NO("line 1: MSH-2 is not 4 or 5 distinct")},
    {"MSH-2 short", IN("MSH|^~\\|A|B\r"), NO("line 1: MSH-2 is not 4 or 5 distinct")},
    {"BHS-2 letters", IN("BHS|abcd|\r" M1 "\rBTS\r"), NO("line 1: BHS-2 is not 4 or 5 distinct")},
    /* Bytes that would break MLLP. */
    {"NUL", IN(M1 "\rPID|1\0|x\r"), NO("line 2: NUL byte in the file")},
    {"MLLP start byte", IN("\x0b" M1 "\r"), NO("line 1: MLLP framing byte 0x0B in the file")},
    {"MLLP end byte", IN(M1 "\r" P1 "\r\x1c\r"), NO("line 3: MLLP framing byte 0x1C in the file")},
    {"0x1A inside", IN(M1 "\r\x1a" P1 "\r"), NO("line 2: end-of-file byte 0x1A before the end")},
    /* Line numbers count every line ending once, CRLF included. */
    {"line numbers CRLF", IN(M1 "\r\n\r\n" P1 "\r\nBTS\r\n"), NO("line 4: BTS without BHS")},
    {"line numbers LF CR", IN(M1 "\n\r" P1 "\r\rBTS\r"), NO("line 5: BTS without BHS")},
    {"line numbers after BOM", IN("\xef\xbb\xbf\n" M1 "\nBTS\n"), NO("line 3: BTS without BHS")},
};

START_TEST(test_split)
{
	const struct split_case *c = &cases[_i];
	char why[BATCH_WHY_MAX];
	struct got g;
	size_t count = 12345;
	int rc = split(c->in, c->len, &g, &count, why);

	ck_assert_msg(rc == c->rc, "%s: rc %d, want %d (%s)", c->name, rc, c->rc, why);
	if (rc == 0) {
		ck_assert_msg(count == c->count && g.calls == c->count,
			      "%s: %zu messages (%zu calls)", c->name, count, g.calls);
		ck_assert_msg(strcmp(g.out, c->want) == 0, "%s: split differs", c->name);
		ck_assert_msg(why[0] == '\0', "%s: why \"%s\"", c->name, why);
	} else {
		/* Refused completely: not one message was handed out. */
		ck_assert_msg(g.calls == 0 && count == 0, "%s: %zu calls", c->name, g.calls);
		ck_assert_msg(strstr(why, c->want) != NULL, "%s: why \"%s\", want \"%s\"", c->name,
			      why, c->want);
	}
}
END_TEST

/* ---- reasons hold no content ---- */

/* Every word a reason may use. A word of the file in a reason (a name, an
 * id, a segment id other than the five kinds) is not among them. */
static const char *const vocabulary[] = {
    "line",	 "the",	    "file",    "holds", "no",	   "messages", "message",  "says",
    "batch",	 "batches", "is",      "not",	"a",	   "number",   "without",  "inside",
    "of",	 "missing", "outside", "after", "must",	   "be",       "last",	   "first",
    "segment",	 "has",	    "before",  "an",	"id",	   "followed", "by",	   "field",
    "separator", "shorter", "than",    "bytes", "or",	   "distinct", "encoding", "characters",
    "byte",	 "in",	    "framing", "end",	"capital", "letters",  "digits",   "more",
    "messages",	 "MLLP",    "NUL",     "FHS",	"FTS",	   "BHS",      "BTS",	   "MSH",
    "FHS's",	 "BHS's",   "MSH's",   "x0B",	"x1C",	   "x1A",      "memory",   "for",
    "starts",	 "with",
};

static int known_word(const char *w, size_t n)
{
	for (size_t i = 0; i < NELEMS(vocabulary); i++)
		if (strlen(vocabulary[i]) == n && memcmp(vocabulary[i], w, n) == 0)
			return 1;
	return 0;
}

/* Words are runs of letters, digits and '\''; numbers (lines, counts) and
 * "0x.." values pass, any other word must be in the vocabulary. */
static void check_words(const char *name, const char *why)
{
	const char *p = why;

	while (*p) {
		size_t n = 0;

		while (p[n] && (isalnum((unsigned char)p[n]) || p[n] == '\''))
			n++;
		if (n == 0) {
			ck_assert_msg(strchr(" :,()-", *p) != NULL, "%s: character %#x in \"%s\"",
				      name, (unsigned char)*p, why);
			p++;
			continue;
		}
		int number = 1;
		for (size_t i = 0; i < n; i++)
			number &= isdigit((unsigned char)p[i]) != 0;
		if (!number && !(n > 1 && p[0] == '0' && known_word(p + 1, n - 1)))
			ck_assert_msg(known_word(p, n), "%s: word \"%.*s\" in \"%s\"", name, (int)n,
				      p, why);
		p += n;
	}
}

START_TEST(test_reason_words)
{
	char why[BATCH_WHY_MAX];
	struct got g;

	if (cases[_i].rc == 0)
		return;
	ck_assert_int_ne(split(cases[_i].in, cases[_i].len, &g, NULL, why), 0);
	check_words(cases[_i].name, why);
}
END_TEST

/* Refusals at the very spot where patient data sits. */
#define PHI_PID                                                                                    \
	"PID|1||MRN778899^^^NW^MR||DOE^JOHN^Q||19700101|M|||1 ELM "                                \
	"ST^^SPRINGFIELD||555-0100|||||ACCT42|123-45-6789"
static const struct split_case phi_cases[] = {
    {"PID before MSH", IN(BHS "\r" PHI_PID "\r" M1 "\rBTS\r")},
    {"PID first", IN(PHI_PID "\r" M1 "\r")},
    {"wrapped name", IN(M1 "\r" PHI_PID "\nDOE^JOHN\r")},
    {"name as an id", IN(BHS "\rDOE|JOHN|123-45-6789\r" M1 "\rBTS\r")},
    {"lower-case name", IN(M1 "\rdoe|john\r")},
    {"name as a count", IN(BHS "\r" M1 "\rBTS|DOE^JOHN 123-45-6789\r")},
    {"name as a file count", IN(FHS "\r" BHS "\r" M1 "\rBTS\rFTS|DOE^JOHN\r")},
    {"name after FTS", IN(FHS "\r" BHS "\r" M1 "\rBTS\rFTS\r" PHI_PID "\r")},
    {"NUL in the name", IN(M1 "\rPID|1||MRN778899||DOE\0JOHN\r")},
    {"framing in the name", IN(M1 "\rPID|1||MRN778899||DOE\x1cJOHN\r")},
    {"name in MSH-1", IN("MSHDOE^JOHN|123-45-6789\r")},
    {"name in MSH-2", IN("MSH|DOE^JOHN|123-45-6789\r")},
    {"name in a short header", IN("MSH|DOE\r")},
    {"name with id after separator", IN(M1 "\rPID*DOE^JOHN*123-45-6789\r")},
};

START_TEST(test_reason_holds_no_phi)
{
	static const char *const phi[] = {"DOE",	 "JOHN",   "doe",	  "john",
					  "MRN",	 "778899", "123-45-6789", "ELM",
					  "SPRINGFIELD", "555",	   "ACCT"};
	const struct split_case *c = &phi_cases[_i];
	char why[BATCH_WHY_MAX];
	struct got g;
	int rc = split(c->in, c->len, &g, NULL, why);

	ck_assert_msg(rc == -EBADMSG && why[0], "%s: rc %d", c->name, rc);
	for (size_t i = 0; i < NELEMS(phi); i++)
		ck_assert_msg(!strstr(why, phi[i]), "%s: \"%s\" shows %s", c->name, why, phi[i]);
	check_words(c->name, why);
}
END_TEST

/* ---- random line endings ---- */

/* One valid file, as segments: two batches with messages and an empty one
 * between them. The expected split is the one of its CR-only form. */
static const char *const file_segments[] = {
    FHS, BHS,	  M1,  P1, O1,	  O1,	     M2,      P1,      "BTS|2",
    BHS, "BTS|0", BHS, M3, "NTE", "ZPD|x  ", "BTS|1", "FTS|3",
};

static uint32_t next_rand(uint32_t *x)
{
	/* xorshift32: reproducible per seed, no libc state. */
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static size_t put(char *buf, size_t n, const char *s)
{
	size_t l = strlen(s);

	memcpy(buf + n, s, l);
	return n + l;
}

static size_t random_form(char *buf, uint32_t seed)
{
	static const char *const ends[] = {"\r", "\n", "\r\n"};
	static const char *const blanks[] = {"\r", "\n", "\r\n", " \n", "\t\r\n", "  \r"};
	uint32_t x = seed * 2654435761u + 1;
	size_t n = 0;

	if (next_rand(&x) % 2)
		n = put(buf, n, "\xef\xbb\xbf");
	for (size_t i = 0; i < NELEMS(file_segments); i++) {
		while (next_rand(&x) % 4 == 0)
			n = put(buf, n, blanks[next_rand(&x) % NELEMS(blanks)]);
		n = put(buf, n, file_segments[i]);
		/* The last segment may end without a line ending. */
		if (i + 1 < NELEMS(file_segments) || next_rand(&x) % 3)
			n = put(buf, n, ends[next_rand(&x) % NELEMS(ends)]);
	}
	if (next_rand(&x) % 3 == 0)
		n = put(buf, n, "\x1a");
	return n;
}

START_TEST(test_random_line_endings)
{
	static char want[OUT_MAX], buf[4096];
	char why[BATCH_WHY_MAX];
	struct got g;
	size_t n = 0, count = 0;

	for (size_t i = 0; i < NELEMS(file_segments); i++) {
		n = put(buf, n, file_segments[i]);
		n = put(buf, n, "\r");
	}
	ck_assert_int_eq(split(buf, n, &g, &count, why), 0);
	ck_assert_uint_eq(count, 3);
	memcpy(want, g.out, g.len + 1);

	for (uint32_t seed = (uint32_t)_i * 100; seed < (uint32_t)_i * 100 + 100; seed++) {
		n = random_form(buf, seed);
		ck_assert_msg(split(buf, n, &g, &count, why) == 0, "seed %u: %s", seed, why);
		ck_assert_msg(count == 3 && strcmp(g.out, want) == 0, "seed %u: split differs",
			      seed);
	}
}
END_TEST

/* ---- the callback, the limit, the reason buffer ---- */

/* A callback's refusal stops the split and comes back as it is. */
START_TEST(test_callback_stops)
{
	static const char in[] = BHS "\r" M1 "\r" M2 "\r" M3 "\rBTS|3\r";
	static char out[OUT_MAX];
	struct got g = {.out = out, .stop_at = 2};
	char why[BATCH_WHY_MAX];
	size_t count = 7;
	int rc =
	    batch_split((const uint8_t *)in, sizeof(in) - 1, collect, &g, &count, why, sizeof(why));

	ck_assert_int_eq(rc, -ECANCELED);
	ck_assert_uint_eq(g.calls, 2);
	ck_assert_uint_eq(count, 0);
	ck_assert_str_eq(g.out, M1 "\r\n");
}
END_TEST

/* BATCH_MESSAGES_MAX messages pass, one more is -E2BIG before any
 * callback (_i: 0 at the limit, 1 above it). */
START_TEST(test_message_limit)
{
	static const char msg[] = "MSH|^~\\&\r";
	size_t n = BATCH_MESSAGES_MAX + (size_t)_i, len = n * (sizeof(msg) - 1), count = 0;
	char *in = malloc(len), why[BATCH_WHY_MAX];
	struct got g;
	int rc;

	ck_assert_ptr_nonnull(in);
	for (size_t i = 0; i < n; i++)
		memcpy(in + i * (sizeof(msg) - 1), msg, sizeof(msg) - 1);
	rc = split(in, len, &g, &count, why);
	free(in);
	if (_i == 0) {
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(count, BATCH_MESSAGES_MAX);
		ck_assert_uint_eq(g.calls, BATCH_MESSAGES_MAX);
	} else {
		ck_assert_int_eq(rc, -E2BIG);
		ck_assert_uint_eq(g.calls, 0);
		ck_assert_str_eq(why, "more than 100000 messages in the file");
	}
}
END_TEST

/* why may be NULL or tiny: the result stays, the text is cut, never overrun. */
START_TEST(test_why_buffer)
{
	static const char in[] = BHS "\r" M1 "\r" M2 "\rBTS|3\r";
	static char out[OUT_MAX];
	struct got g = {.out = out};
	char why[12] = "xxxxxxxxxxx";
	size_t sizes[] = {0, 1, 5, sizeof(why) - 1};

	ck_assert_int_eq(
	    batch_split((const uint8_t *)in, sizeof(in) - 1, collect, &g, NULL, NULL, 0), -EBADMSG);
	for (size_t i = 0; i < NELEMS(sizes); i++) {
		memset(why, 'x', sizeof(why) - 1);
		ck_assert_int_eq(batch_split((const uint8_t *)in, sizeof(in) - 1, collect, &g, NULL,
					     why, sizes[i]),
				 -EBADMSG);
		ck_assert_msg(sizes[i] == 0 ? why[0] == 'x' : strlen(why) == sizes[i] - 1,
			      "size %zu: \"%s\"", sizes[i], why);
		ck_assert_int_eq(why[sizeof(why) - 1], '\0');
	}
	ck_assert_uint_eq(g.calls, 0);
	ck_assert_int_eq(batch_split(NULL, 0, collect, &g, NULL, NULL, 0), -EBADMSG);
}
END_TEST

/* ---- batch_is_batch ---- */

static const struct {
	const char *in;
	int want;
} is_batch_cases[] = {
    {FHS "\r", 1},    {BHS "\r", 1}, {"\xef\xbb\xbf" FHS, 1}, {"\r\n \t" BHS, 1},
    {"BHS#^~\\&", 1}, {M1 "\r", 0},  {"\xef\xbb\xbf" M1, 0},  {"FHSX^~\\&", 0},
    {"BHS", 0},	      {"", 0},	     {"fhs|^~\\&", 0},	      {"FTS|1", 0},
};

START_TEST(test_is_batch)
{
	const char *in = is_batch_cases[_i].in;

	ck_assert_msg(batch_is_batch((const uint8_t *)in, strlen(in)) == is_batch_cases[_i].want,
		      "case %d", _i);
}
END_TEST

static Suite *batch_suite(void)
{
	Suite *s = suite_create("batch");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_split, 0, NELEMS(cases));
	tcase_add_loop_test(tc, test_reason_words, 0, NELEMS(cases));
	tcase_add_loop_test(tc, test_reason_holds_no_phi, 0, NELEMS(phi_cases));
	tcase_add_loop_test(tc, test_random_line_endings, 0, 10);
	tcase_add_test(tc, test_callback_stops);
	tcase_add_loop_test(tc, test_message_limit, 0, 2);
	tcase_add_test(tc, test_why_buffer);
	tcase_add_loop_test(tc, test_is_batch, 0, NELEMS(is_batch_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(batch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
