/*
 * Test support: the shared sample messages.
 *
 * sample_get() reads a file under $SAMPLES (default ../shared/samples, the
 * tests run from the repository root) and falls back to the copies embedded
 * below, so that the other checks still run and say what they can without
 * the shared tree. The tree is an input all the same: test_hl7 (each
 * embedded copy) and test_mllp (each frames/ file) fail, naming the path,
 * when a file is missing or differs, so a wrong $SAMPLES or a missing tree
 * is a failure, never a silent pass (STYLE.md item 14).
 */
#ifndef TEST_SAMPLES_H
#define TEST_SAMPLES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct blob {
	char *p; /* malloc'd, freed with blob_free() */
	size_t len;
};

#define SAMPLE(name, text)                                                                         \
	{                                                                                          \
		name, text, sizeof(text) - 1                                                       \
	}

static const struct {
	const char *name;
	const char *data;
	size_t len;
} embedded_samples[] = {
    SAMPLE("adt_a01_v251.hl7",
	   "MSH|^~\\&|EPIC|NORTHWIND|REDOX|CLOUD|20261126083000-0500||ADT^A01^ADT_A01|"
	   "NW000123|P|2.5.1\r"
	   "EVN|A01|20261126083000-0500\r"
	   "PID|1||100234^^^NORTHWIND^MR~999-00-1234^^^USSSA^SS||SAMPLE^ALEX^J||19800214|"
	   "F|||12 EXAMPLE ST^^SPRINGFIELD^IL^62701^USA||(217)555-0100\r"
	   "PV1|1|I|4W^401^1^NORTHWIND||||1234^WELBY^MARCUS^^^DR|||MED||||ADM|||||"
	   "V000981|||||||||||||||||||||||||20261126082500-0500\r"),
    SAMPLE("adt_a08_latin1.hl7",
	   "MSH|^~\\&|PAS|HOPITAL_NORD|REDOX|CLOUD|20261126101010||ADT^A08|HN42|P|"
	   "2.5|||||FRA|8859/1\r"
	   "EVN|A08|20261126101010\r"
	   "PID|1||55120^^^HN^MR||L\351v\352que^Ren\351e||19720901|F\r"),
    SAMPLE("bad_encoding_chars.hl7", "MSH|^~|EHR|X|Y|Z|20261126||ADT^A01|BADENC|P|2.5.1\r"
				     "PID|1\r"),
    SAMPLE("bad_no_control_id.hl7", "MSH|^~\\&|EHR|X|Y|Z|20261126||ADT^A01||P|2.5.1\r"
				    "PID|1\r"),
    SAMPLE("bad_no_msh.hl7", "PID|1||100234||SAMPLE^ALEX\r"),
    SAMPLE(
	"ccd_minimal.xml",
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><realmCode code=\"US\"/><typeId "
	"root=\"2.16.840.1.113883.1.3\" extension=\"POCD_HD000040\"/><templateId "
	"root=\"2.16.840.1.113883.10.20.22.1.2\" extension=\"2015-08-01\"/><id "
	"root=\"2.16.840.1.113883.19.5\" extension=\"CCD-1\"/><code code=\"34133-9\" "
	"codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"Summarization of Episode "
	"Note\"/><title>Continuity of Care Document</title><effectiveTime value=\"20261126083000-"
	"0500\"/><recordTarget><patientRole><id extension=\"100234\" root=\"2.16.840.1.113883.19."
	"5\"/><patient><name><given>Alex</given><family>Sample</family></name><administrativeGend"
	"erCode code=\"F\" codeSystem=\"2.16.840.1.113883.5.1\"/><birthTime value=\"19800214\"/>"
	"</patient></patientRole></recordTarget><component><structuredBody/></component>"
	"</ClinicalDocument>\n"),
    SAMPLE("lf_segments.hl7", "MSH|^~\\&|EHR|X|Y|Z|20261126||ADT^A04|LFSEP1|P|2.5.1\n"
			      "EVN|A04|20261126\n"
			      "PID|1||7^^^X^MR||LF^SEGMENTS\n"),
    SAMPLE("orm_o01_v23.hl7",
	   "MSH|^~\\&|CPOE|NORTHWIND|RIS|NORTHWIND|20261126111111||ORM^O01|ORD0001|"
	   "P|2.3\r"
	   "PID|||100234||SAMPLE^ALEX\r"
	   "ORC|NW|ORD0001\r"
	   "OBR|1|ORD0001||71045^XR CHEST 1 VIEW^CPT\r"),
    SAMPLE("oru_r01_enhanced_ack.hl7",
	   "MSH|^~\\&|LIS|NORTHWIND_LAB|REDOX|CLOUD|20261126091500||ORU^R01^ORU_R01|"
	   "LAB55501|P|2.5.1|||AL|NE\r"
	   "PID|1||100234^^^NORTHWIND^MR||SAMPLE^ALEX\r"
	   "OBR|1|ORD777|FIL888|24323-8^Comprehensive metabolic panel^LN|||20261126080000\r"
	   "OBX|1|NM|2345-7^Glucose^LN||98|mg/dL|70-99|N|||F\r"
	   "OBX|2|NM|2951-2^Sodium^LN||141|mmol/L|136-145|N|||F\r"
	   "NTE|1||Specimen slightly hemolyzed \\T\\ recollect if K high\r"),
    SAMPLE("vxu_v04_repeats_escapes.hl7",
	   "MSH|^~\\&|EHR|CLINIC|IIS|STATE|20261126120000||VXU^V04^VXU_V04|VX9|P|2.5.1\r"
	   "PID|1||A1^^^CLINIC^MR~B2^^^STATE^SR||O\\S\\NEIL^PAT||20240101|M\r"
	   "RXA|0|1|20261126|20261126|08^HepB^CVX|0.5|mL\r"),
    SAMPLE("x12_270.x12",
	   "ISA*00*          *00*          *ZZ*NORTHWIND      *ZZ*PAYERX         *"
	   "261126*0830*^*00501*000000905*0*P*:~GS*HS*NORTHWIND*PAYERX*20261126*0830*"
	   "905*X*005010X279A1~ST*270*0001*005010X279A1~BHT*0022*13*10001234*20261126*"
	   "0830~HL*1**20*1~NM1*PR*2*PAYER X*****PI*12345~HL*2*1*21*1~NM1*1P*2*NORTHWIND "
	   "CLINIC*****XX*1234567893~HL*3*2*22*0~NM1*IL*1*SAMPLE*ALEX****MI*W123456789~"
	   "DMG*D8*19800214~EQ*30~SE*10*0001~GE*1*905~IEA*1*000000905~"),
};

static inline void blob_free(struct blob *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
}

static inline const char *samples_dir(void)
{
	const char *dir = getenv("SAMPLES");

	return dir && *dir ? dir : "../shared/samples";
}

#define SAMPLE_PATH_MAX 4096

/* The path of rel under samples_dir(), for reading and for messages. */
static inline const char *sample_path(const char *rel, char path[SAMPLE_PATH_MAX])
{
	snprintf(path, SAMPLE_PATH_MAX, "%s/%s", samples_dir(), rel);
	return path;
}

/* Reads rel (e.g. "frames/one.mllp") under samples_dir(); 0, or -1 if absent. */
static inline int sample_read_file(const char *rel, struct blob *out)
{
	char path[SAMPLE_PATH_MAX];
	FILE *f;
	long n;

	out->p = NULL;
	out->len = 0;
	sample_path(rel, path);
	f = fopen(path, "rb");
	if (!f)
		return -1;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	out->p = malloc((size_t)n + 1);
	if (!out->p || fread(out->p, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		blob_free(out);
		return -1;
	}
	fclose(f);
	out->p[n] = '\0';
	out->len = (size_t)n;
	return 0;
}

/* The embedded copy of a sample, or NULL. */
static inline const char *sample_embedded(const char *name, size_t *len)
{
	for (size_t i = 0; i < sizeof(embedded_samples) / sizeof(embedded_samples[0]); i++) {
		if (strcmp(embedded_samples[i].name, name) == 0) {
			*len = embedded_samples[i].len;
			return embedded_samples[i].data;
		}
	}
	return NULL;
}

/* The sample from disk if there, else the embedded copy; aborts if neither. */
static inline struct blob sample_get(const char *name)
{
	struct blob b;
	const char *p;
	size_t n;

	if (sample_read_file(name, &b) == 0)
		return b;
	p = sample_embedded(name, &n);
	if (!p) {
		fprintf(stderr, "sample %s: not found in %s nor embedded\n", name, samples_dir());
		abort();
	}
	b.p = malloc(n + 1);
	if (!b.p)
		abort();
	memcpy(b.p, p, n);
	b.p[n] = '\0';
	b.len = n;
	return b;
}

/* A test's message: a sample's name, or raw bytes (table rows use SMP/RAW). */
struct msg {
	const char *sample;
	const char *raw;
	size_t len;
};

#define SMP(n)                                                                                     \
	{                                                                                          \
		n, NULL, 0                                                                         \
	}
#define RAW(s)                                                                                     \
	{                                                                                          \
		NULL, s, sizeof(s) - 1                                                             \
	}

/* A copy of the message, NUL-terminated; free with blob_free(). */
static inline struct blob msg_get(const struct msg *m)
{
	struct blob b;

	if (m->sample)
		return sample_get(m->sample);
	b.p = malloc(m->len + 1);
	if (!b.p)
		abort();
	memcpy(b.p, m->raw, m->len);
	b.p[m->len] = '\0';
	b.len = m->len;
	return b;
}

#endif
