/*
 * JSON data models → HL7 v2. See translate.h for the contract and
 * docs/translation.md for the tables and the rules.
 *
 * Everything a message holds comes from two tables per data model: the
 * events (Meta.EventType → MSH-9 and the segments to write) and the rows
 * (segment, field, component, JSON path, converter, limit). The code below
 * knows no field by name: a new model is a new pair of tables.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "translate.h"

#define XL_TMP_MAX  64	  /* a converted date, number or range before escaping */
#define XL_PROG_MAX 20	  /* tokens of an event's segment program */
#define XL_NEST_MAX 4	  /* groups inside groups */
#define XL_TEXT_MAX 65536 /* NTE-3, OBX-5: the longest value a row may take */

/* Values that come from the caller or from the event, not from the JSON. */
enum xl_ctx {
	CTX_NONE,
	CTX_SEND_APP,
	CTX_SEND_FAC,
	CTX_RECV_APP,
	CTX_RECV_FAC,
	CTX_NOW,
	CTX_TYPE,
	CTX_TRIGGER,
	CTX_STRUCT,
	CTX_CONTROL,
	CTX_VERSION,
	CTX_CHARSET,
	CTX_SETID, /* "1" outside groups, else the innermost group element's index + 1 */
	CTX_CODE,  /* the event's code: ORC-1 order control, SCH-25 filler status */
	CTX_NA,	   /* "N": PV1-2 "not applicable" when the JSON has no class */
	CTX_PROD,  /* "P": MSH-11 when Meta.Test is absent */
	CTX_MIN,   /* "min": SCH-10, the unit of Visit.Duration */
	CTX_N
};

enum xl_conv {
	CV_TEXT,  /* string (or integer) → escaped text */
	CV_DATE,  /* YYYY[-MM[-DD]] → YYYY[MM[DD]] */
	CV_DTM,	  /* ISO 8601 date-time → HL7 DTM, precision and offset kept */
	CV_MAP,	  /* string or boolean → code through a map */
	CV_CTX,	  /* no JSON: the context value dflt */
	CV_IFSET, /* the context value dflt, only when the path holds a value */
	CV_RANGE, /* {Low, High, Text} → Text, "Low-High", ">Low" or "<High" */
};

struct xl_map {
	const char *from, *to;
};

struct xl_row {
	const char *seg;
	unsigned char field, comp;
	const char *each; /* array whose elements are the field's repetitions, or NULL */
	const char *path; /* from the group element (the root outside groups), or from the
			     each element; "" is the element itself */
	enum xl_conv conv;
	const struct xl_map *map;
	enum xl_ctx dflt; /* the value when the JSON gives none */
	unsigned max;	  /* bytes after escaping, at most XL_TEXT_MAX; | WHOLE: a longer
			     value is refused, not cut (identifiers, results, notes) */
};

#define WHOLE (1u << 31)

/* An event's segment program: segment names, and groups that close with
 * "]". "X[" repeats its segments over the array X (an object: once; absent
 * or null: never), and its rows' paths start at the element; "X?" writes
 * its segments once if X holds a value, paths unchanged. X is a path from
 * the enclosing group's element. */
struct xl_event {
	const char *event;     /* Meta.EventType */
	const char *sel_path;  /* optional selector: a JSON path ... */
	const char *sel_value; /* ... and the value it must hold (NULL: must be absent) */
	const char *type, *trigger, *structure;
	const char *prog[XL_PROG_MAX];
	const char *required; /* a JSON path that must hold a value (an array: an element) */
	const char *code;     /* CTX_CODE */
};

struct xl_model {
	const char *name; /* Meta.DataModel */
	const struct xl_event *events;
	size_t nevents;
	const struct xl_row *rows; /* per segment, sorted by field and component */
	size_t nrows;
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- rows shared between models ---- */

/* The tables keep one row a line. */
/* clang-format off */

static const struct xl_map sex_map[] = {
    {"Male", "M"}, {"Female", "F"}, {"Other", "O"}, {"Unknown", "U"}, {NULL, NULL}};
/* HL7 table 0004. */
static const struct xl_map class_map[] = {
    {"Inpatient", "I"}, {"Outpatient", "O"}, {"Emergency", "E"}, {"Preadmit", "P"},
    {"Recurring", "R"}, {"Obstetrics", "B"}, {NULL, NULL}};
static const struct xl_map test_map[] = {{"true", "T"}, {"false", "P"}, {NULL, NULL}};

#define IDS "Patient.Identifiers"
#define DEM "Patient.Demographics."
#define VIS "Visit."

#define MSH_ROWS                                                                                   \
	{"MSH", 3, 1, NULL, NULL, CV_CTX, NULL, CTX_SEND_APP, 227},                                \
	    {"MSH", 4, 1, NULL, NULL, CV_CTX, NULL, CTX_SEND_FAC, 227},                            \
	    {"MSH", 5, 1, NULL, NULL, CV_CTX, NULL, CTX_RECV_APP, 227},                            \
	    {"MSH", 6, 1, NULL, NULL, CV_CTX, NULL, CTX_RECV_FAC, 227},                            \
	    {"MSH", 7, 1, NULL, "Meta.EventDateTime", CV_DTM, NULL, CTX_NOW, 40},                  \
	    {"MSH", 9, 1, NULL, NULL, CV_CTX, NULL, CTX_TYPE, 3},                                  \
	    {"MSH", 9, 2, NULL, NULL, CV_CTX, NULL, CTX_TRIGGER, 3},                               \
	    {"MSH", 9, 3, NULL, NULL, CV_CTX, NULL, CTX_STRUCT, 7},                                \
	    {"MSH", 10, 1, NULL, NULL, CV_CTX, NULL, CTX_CONTROL, 199},                            \
	    {"MSH", 11, 1, NULL, "Meta.Test", CV_MAP, test_map, CTX_PROD, 1},                      \
	    {"MSH", 12, 1, NULL, NULL, CV_CTX, NULL, CTX_VERSION, 60},                             \
	    {"MSH", 18, 1, NULL, NULL, CV_CTX, NULL, CTX_CHARSET, 16}

#define PID_ROWS                                                                                   \
	{"PID", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},                                     \
	    {"PID", 3, 1, IDS, "ID", CV_TEXT, NULL, CTX_NONE, 50},                                 \
	    {"PID", 3, 4, IDS, "IDType", CV_TEXT, NULL, CTX_NONE, 50},                             \
	    {"PID", 5, 1, NULL, DEM "LastName", CV_TEXT, NULL, CTX_NONE, 80},                      \
	    {"PID", 5, 2, NULL, DEM "FirstName", CV_TEXT, NULL, CTX_NONE, 50},                     \
	    {"PID", 5, 3, NULL, DEM "MiddleName", CV_TEXT, NULL, CTX_NONE, 50},                    \
	    {"PID", 7, 1, NULL, DEM "DOB", CV_DATE, NULL, CTX_NONE, 8},                            \
	    {"PID", 8, 1, NULL, DEM "Sex", CV_MAP, sex_map, CTX_NONE, 1},                          \
	    {"PID", 11, 1, NULL, DEM "Address.StreetAddress", CV_TEXT, NULL, CTX_NONE, 120},       \
	    {"PID", 11, 3, NULL, DEM "Address.City", CV_TEXT, NULL, CTX_NONE, 50},                 \
	    {"PID", 11, 4, NULL, DEM "Address.State", CV_TEXT, NULL, CTX_NONE, 50},                \
	    {"PID", 11, 5, NULL, DEM "Address.ZIP", CV_TEXT, NULL, CTX_NONE, 12},                  \
	    {"PID", 11, 6, NULL, DEM "Address.Country", CV_TEXT, NULL, CTX_NONE, 3},               \
	    {"PID", 11, 9, NULL, DEM "Address.County", CV_TEXT, NULL, CTX_NONE, 20},               \
	    {"PID", 13, 1, NULL, DEM "PhoneNumber.Home", CV_TEXT, NULL, CTX_NONE, 40},             \
	    {"PID", 14, 1, NULL, DEM "PhoneNumber.Office", CV_TEXT, NULL, CTX_NONE, 40},           \
	    {"PID", 19, 1, NULL, DEM "SSN", CV_TEXT, NULL, CTX_NONE, 16}

/* XCN: ID ^ family name ^ given name. */
#define XCN_ROWS(seg, f, base, id)                                                                 \
	{seg, f, 1, NULL, base id, CV_TEXT, NULL, CTX_NONE, 20},                                   \
	    {seg, f, 2, NULL, base "LastName", CV_TEXT, NULL, CTX_NONE, 50},                       \
	    {seg, f, 3, NULL, base "FirstName", CV_TEXT, NULL, CTX_NONE, 50}

/* PL: point of care ^ room ^ bed ^ facility. */
#define PL_ROWS(seg, f)                                                                            \
	{seg, f, 1, NULL, VIS "Location.Department", CV_TEXT, NULL, CTX_NONE, 20},                 \
	    {seg, f, 2, NULL, VIS "Location.Room", CV_TEXT, NULL, CTX_NONE, 20},                   \
	    {seg, f, 3, NULL, VIS "Location.Bed", CV_TEXT, NULL, CTX_NONE, 20},                    \
	    {seg, f, 4, NULL, VIS "Location.Facility", CV_TEXT, NULL, CTX_NONE, 20}

#define PV1_ROWS                                                                                   \
	{"PV1", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},                                     \
	    {"PV1", 2, 1, NULL, VIS "PatientClass", CV_MAP, class_map, CTX_NA, 1},                 \
	    PL_ROWS("PV1", 3), XCN_ROWS("PV1", 7, VIS "AttendingProvider.", "ID"),                 \
	    {"PV1", 19, 1, NULL, VIS "VisitNumber", CV_TEXT, NULL, CTX_NONE, 20},                  \
	    {"PV1", 44, 1, NULL, VIS "VisitDateTime", CV_DTM, NULL, CTX_NONE, 40},                 \
	    {"PV1", 45, 1, NULL, VIS "DischargeDateTime", CV_DTM, NULL, CTX_NONE, 40}

/* CE: identifier ^ text ^ coding system. */
#define CE_ROWS(seg, f, code, text, sys)                                                           \
	{seg, f, 1, NULL, code, CV_TEXT, NULL, CTX_NONE, 50},                                      \
	    {seg, f, 2, NULL, text, CV_TEXT, NULL, CTX_NONE, 199},                                 \
	    {seg, f, 3, NULL, sys, CV_TEXT, NULL, CTX_NONE, 20}

/* A note: the group element is the string itself. */
#define NTE_ROWS                                                                                   \
	{"NTE", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},                                     \
	    {"NTE", 3, 1, NULL, "", CV_TEXT, NULL, CTX_NONE, XL_TEXT_MAX | WHOLE}

/* ORC and the first OBR fields, from an order element (Results and Order).
 * Order numbers are refused rather than cut: a cut one names another order. */
#define ORC_ROWS                                                                                   \
	{"ORC", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_CODE, 2},                                      \
	    {"ORC", 2, 1, NULL, "ID", CV_TEXT, NULL, CTX_NONE, 22 | WHOLE},                             \
	    {"ORC", 3, 1, NULL, "ApplicationOrderID", CV_TEXT, NULL, CTX_NONE, 22 | WHOLE},             \
	    {"ORC", 9, 1, NULL, "TransactionDateTime", CV_DTM, NULL, CTX_NONE, 40},                \
	    XCN_ROWS("ORC", 12, "Provider.", "NPI")
#define OBR_ROWS                                                                                   \
	{"OBR", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},                                     \
	    {"OBR", 2, 1, NULL, "ID", CV_TEXT, NULL, CTX_NONE, 22 | WHOLE},                             \
	    {"OBR", 3, 1, NULL, "ApplicationOrderID", CV_TEXT, NULL, CTX_NONE, 22 | WHOLE},             \
	    CE_ROWS("OBR", 4, "Procedure.Code", "Procedure.Description", "Procedure.Codeset"),     \
	    {"OBR", 7, 1, NULL, "CollectionDateTime", CV_DTM, NULL, CTX_NONE, 40},                 \
	    XCN_ROWS("OBR", 16, "Provider.", "NPI")

/* ---- PatientAdmin ---- */

static const struct xl_row pa_rows[] = {
    MSH_ROWS,
    {"EVN", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_TRIGGER, 3},
    {"EVN", 2, 1, NULL, "Meta.EventDateTime", CV_DTM, NULL, CTX_NOW, 40},
    PID_ROWS,
    PV1_ROWS,
    {"MRG", 1, 1, "PriorPatient.Identifiers", "ID", CV_TEXT, NULL, CTX_NONE, 50},
    {"MRG", 1, 4, "PriorPatient.Identifiers", "IDType", CV_TEXT, NULL, CTX_NONE, 50},
};

#define ADT_VISIT "MSH", "EVN", "PID", "PV1"
/* First match wins: selector rows come before the event's default row. */
static const struct xl_event pa_events[] = {
    {"Arrival", VIS "PatientClass", "Inpatient", "ADT", "A01", "ADT_A01", {ADT_VISIT}, NULL, NULL},
    {"Arrival", NULL, NULL, "ADT", "A04", "ADT_A01", {ADT_VISIT}, NULL, NULL},
    {"Registration", NULL, NULL, "ADT", "A04", "ADT_A01", {ADT_VISIT}, NULL, NULL},
    {"PreAdmit", NULL, NULL, "ADT", "A05", "ADT_A05", {ADT_VISIT}, NULL, NULL},
    {"Transfer", NULL, NULL, "ADT", "A02", "ADT_A02", {ADT_VISIT}, NULL, NULL},
    {"Discharge", NULL, NULL, "ADT", "A03", "ADT_A03", {ADT_VISIT}, NULL, NULL},
    {"Cancel", "Meta.CancelledEvent", NULL, "ADT", "A11", "ADT_A09", {ADT_VISIT}, NULL, NULL},
    {"Cancel", "Meta.CancelledEvent", "Arrival", "ADT", "A11", "ADT_A09", {ADT_VISIT}, NULL, NULL},
    {"Cancel", "Meta.CancelledEvent", "Registration", "ADT", "A11", "ADT_A09", {ADT_VISIT}, NULL, NULL},
    {"Cancel", "Meta.CancelledEvent", "Transfer", "ADT", "A12", "ADT_A12", {ADT_VISIT}, NULL, NULL},
    {"Cancel", "Meta.CancelledEvent", "Discharge", "ADT", "A13", "ADT_A01", {ADT_VISIT}, NULL, NULL},
    {"Cancel", "Meta.CancelledEvent", "PreAdmit", "ADT", "A38", "ADT_A38", {ADT_VISIT}, NULL, NULL},
    {"NewPatient", NULL, NULL, "ADT", "A28", "ADT_A05", {ADT_VISIT}, NULL, NULL},
    {"PatientUpdate", NULL, NULL, "ADT", "A31", "ADT_A05", {ADT_VISIT}, NULL, NULL},
    {"VisitUpdate", NULL, NULL, "ADT", "A08", "ADT_A01", {ADT_VISIT}, NULL, NULL},
    /* A merge that names no prior patient would be an empty MRG-1: refused. */
    {"PatientMerge",
     NULL,
     NULL,
     "ADT",
     "A40",
     "ADT_A39",
     {"MSH", "EVN", "PID", "MRG"},
     "PriorPatient.Identifiers",
     NULL},
};

/* ---- Results ---- */

/* HL7 table 0125 (2.5.1: TS, not DTM, for a date-time). */
static const struct xl_map value_type_map[] = {
    {"Numeric", "NM"}, {"String", "ST"}, {"Date", "DT"}, {"Time", "TM"}, {"DateTime", "TS"},
    {"Coded Entry", "CE"}, {"Encapsulated Data", "ED"}, {"Formatted Text", "FT"},
    {"Structured Numeric", "SN"}, {"Reference Pointer", "RP"}, {"Money", "MO"}, {"Price", "CP"},
    {"Address", "XAD"}, {"Name", "XPN"}, {"Phone Number", "XTN"}, {"ID And Name", "XCN"},
    {NULL, NULL}};
/* HL7 table 0078 as of 2.5.1 (no codes for Inconclusive, Not Susceptible). */
static const struct xl_map abnormal_map[] = {
    {"Normal", "N"}, {"Abnormal", "A"}, {"Very Abnormal", "AA"}, {"Critically Abnormal", "AA"},
    {"Low", "L"}, {"High", "H"}, {"Very Low", "LL"}, {"Very High", "HH"},
    {"Critically Low", "LL"}, {"Critically High", "HH"}, {"Intermediate", "I"},
    {"Resistant", "R"}, {"Susceptible", "S"}, {"Moderately Susceptible", "MS"},
    {"Very Susceptible", "VS"}, {NULL, NULL}};
/* HL7 table 0085. */
static const struct xl_map obx_status_map[] = {
    {"Final", "F"}, {"Preliminary", "P"}, {"Corrected", "C"}, {"Canceled", "X"},
    {"Deleted", "D"}, {"Incomplete", "I"}, {"Unavailable", "X"}, {NULL, NULL}};
/* HL7 table 0123. */
static const struct xl_map obr_status_map[] = {
    {"Final", "F"}, {"Preliminary", "P"}, {"Corrected", "C"}, {"Canceled", "X"},
    {"In Process", "I"}, {NULL, NULL}};

static const struct xl_row oru_rows[] = {
    MSH_ROWS,
    PID_ROWS,
    PV1_ROWS,
    ORC_ROWS,
    OBR_ROWS,
    {"OBR", 22, 1, NULL, "CompletionDateTime", CV_DTM, NULL, CTX_NONE, 40},
    {"OBR", 25, 1, NULL, "ResultsStatus", CV_MAP, obr_status_map, CTX_NONE, 1},
    NTE_ROWS,
    {"OBX", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},
    {"OBX", 2, 1, NULL, "ValueType", CV_MAP, value_type_map, CTX_NONE, 3},
    CE_ROWS("OBX", 3, "Code", "Description", "Codeset"),
    {"OBX", 5, 1, NULL, "Value", CV_TEXT, NULL, CTX_NONE, XL_TEXT_MAX | WHOLE},
    {"OBX", 6, 1, NULL, "Units", CV_TEXT, NULL, CTX_NONE, 60},
    {"OBX", 7, 1, NULL, "ReferenceRange", CV_RANGE, NULL, CTX_NONE, 60},
    {"OBX", 8, 1, NULL, "AbnormalFlag", CV_MAP, abnormal_map, CTX_NONE, 5},
    {"OBX", 11, 1, NULL, "Status", CV_MAP, obx_status_map, CTX_NONE, 1},
    {"OBX", 14, 1, NULL, "CompletionDateTime", CV_DTM, NULL, CTX_NONE, 40},
    {"OBX", 15, 1, NULL, "Producer.ID", CV_TEXT, NULL, CTX_NONE, 50},
    {"OBX", 15, 2, NULL, "Producer.Name", CV_TEXT, NULL, CTX_NONE, 199},
};

/* ORU_R01: PV1 only with a Visit (its VISIT group is optional), then
 * ORDER_OBSERVATION (ORC OBR NTE* OBSERVATION{OBX NTE*}*) per order. */
#define ORU_PROG                                                                                   \
	"MSH", "PID", "Visit?", "PV1", "]", "Orders[", "ORC", "OBR", "Notes[", "NTE", "]",         \
	    "Results[", "OBX", "Notes[", "NTE", "]", "]", "]"

static const struct xl_event oru_events[] = {
    {"New", NULL, NULL, "ORU", "R01", "ORU_R01", {ORU_PROG}, "Orders", "RE"},
};

/* ---- Order ---- */

/* OBR-27.6 (TQ priority, HL7 table 0027). */
static const struct xl_map priority_map[] = {
    {"Stat", "S"}, {"ASAP", "A"}, {"Routine", "R"}, {"Preoperative", "P"},
    {"Timing Critical", "T"}, {"Callback", "C"}, {NULL, NULL}};
/* HL7 table 0052. */
static const struct xl_map dg_type_map[] = {
    {"Admitting", "A"}, {"Working", "W"}, {"Final", "F"}, {NULL, NULL}};

static const struct xl_row orm_rows[] = {
    MSH_ROWS,
    PID_ROWS,
    PV1_ROWS,
    ORC_ROWS,
    OBR_ROWS,
    {"OBR", 27, 6, NULL, "Priority", CV_MAP, priority_map, CTX_NONE, 1},
    NTE_ROWS,
    {"DG1", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},
    CE_ROWS("DG1", 3, "Code", "Name", "Codeset"),
    {"DG1", 6, 1, NULL, "Type", CV_MAP, dg_type_map, CTX_NONE, 2},
};

/* ORM_O01: ORC, then ORDER_DETAIL (OBR NTE* DG1*) for the one Order. */
#define ORM_PROG                                                                                   \
	"MSH", "PID", "Visit?", "PV1", "]", "Order[", "ORC", "OBR", "Notes[", "NTE", "]",          \
	    "Diagnoses[", "DG1", "]", "]"

static const struct xl_event orm_events[] = {
    {"New", NULL, NULL, "ORM", "O01", "ORM_O01", {ORM_PROG}, "Order", "NW"},
    {"Update", NULL, NULL, "ORM", "O01", "ORM_O01", {ORM_PROG}, "Order", "XO"},
    {"Cancel", NULL, NULL, "ORM", "O01", "ORM_O01", {ORM_PROG}, "Order", "CA"},
};

/* ---- Scheduling ---- */

static const struct xl_row siu_rows[] = {
    MSH_ROWS,
    {"SCH", 2, 1, NULL, VIS "VisitNumber", CV_TEXT, NULL, CTX_NONE, 22 | WHOLE},
    {"SCH", 6, 2, NULL, "Meta.EventType", CV_TEXT, NULL, CTX_NONE, 199},
    {"SCH", 7, 2, NULL, VIS "Reason", CV_TEXT, NULL, CTX_NONE, 199},
    {"SCH", 9, 1, NULL, VIS "Duration", CV_TEXT, NULL, CTX_NONE, 20},
    {"SCH", 10, 1, NULL, VIS "Duration", CV_IFSET, NULL, CTX_MIN, 3},
    {"SCH", 11, 4, NULL, VIS "VisitDateTime", CV_DTM, NULL, CTX_NONE, 40},
    {"SCH", 25, 1, NULL, NULL, CV_CTX, NULL, CTX_CODE, 10},
    NTE_ROWS,
    PID_ROWS,
    PV1_ROWS,
    {"RGS", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},
    {"AIL", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},
    PL_ROWS("AIL", 3),
    {"AIL", 6, 1, NULL, VIS "VisitDateTime", CV_DTM, NULL, CTX_NONE, 40},
    {"AIP", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_SETID, 4},
    XCN_ROWS("AIP", 3, VIS "AttendingProvider.", "ID"),
    {"AIP", 6, 1, NULL, VIS "VisitDateTime", CV_DTM, NULL, CTX_NONE, 40},
};

/* SIU_S12: SCH NTE*, the optional PATIENT group (PID PV1), and the
 * required RESOURCES group: RGS, then AIL and AIP when there is a
 * location and an attending provider. */
#define SIU_PROG                                                                                   \
	"MSH", "SCH", "Visit.Instructions[", "NTE", "]", "Patient?", "PID", "PV1", "]", "RGS",     \
	    "Visit.Location?", "AIL", "]", "Visit.AttendingProvider?", "AIP", "]"

static const struct xl_event siu_events[] = {
    {"New", NULL, NULL, "SIU", "S12", "SIU_S12", {SIU_PROG}, "Visit", "Booked"},
    {"Reschedule", NULL, NULL, "SIU", "S13", "SIU_S12", {SIU_PROG}, "Visit", "Booked"},
    {"Modification", NULL, NULL, "SIU", "S14", "SIU_S12", {SIU_PROG}, "Visit", "Booked"},
    {"Cancel", NULL, NULL, "SIU", "S15", "SIU_S12", {SIU_PROG}, "Visit", "Cancelled"},
    {"NoShow", NULL, NULL, "SIU", "S26", "SIU_S12", {SIU_PROG}, "Visit", "Noshow"},
};

#define MODEL(name, ev, rows) {name, ev, NELEMS(ev), rows, NELEMS(rows)}
static const struct xl_model models[] = {
    MODEL("PatientAdmin", pa_events, pa_rows),
    MODEL("Results", oru_events, oru_rows),
    MODEL("Order", orm_events, orm_rows),
    MODEL("Scheduling", siu_events, siu_rows),
};
/* clang-format on */

/* ---- one translation ---- */

struct xl {
	json_t *root;
	int latin1;
	const char *ctx[CTX_N];
	struct xl_error *err;
	char *p; /* the message being built */
	size_t len, cap;
	int rc;			      /* sticky: the first failure */
	unsigned cur_f, cur_r, cur_c; /* last position written in the segment */
	char prefix[sizeof(((struct xl_error *)0)->path)]; /* "$." or "$.Orders[1].Results[3]." */
};

__attribute__((format(printf, 3, 4))) static int fail(struct xl *x, const char *path,
						      const char *fmt, ...)
{
	va_list ap;

	size_t plen = strlen(x->prefix);

	if (x->rc)
		return x->rc;
	/* Without a key, the path names the element or the root: no dot. */
	if ((!path || !*path) && plen > 1 && x->prefix[plen - 1] == '.')
		plen--;
	snprintf(x->err->path, sizeof(x->err->path), "%.*s%s", (int)plen, x->prefix,
		 path ? path : "");
	va_start(ap, fmt);
	vsnprintf(x->err->reason, sizeof(x->err->reason), fmt, ap);
	va_end(ap);
	x->rc = -EINVAL;
	return x->rc;
}

/* Room for n more bytes. The message may pass XL_OUT_MAX by one segment
 * before write_segment() refuses it. */
static int reserve(struct xl *x, size_t n)
{
	if (x->rc)
		return x->rc;
	if (n > x->cap - x->len) {
		size_t cap = x->cap ? x->cap : 4096;
		char *p;

		while (n > cap - x->len)
			cap *= 2;
		p = realloc(x->p, cap + 1); /* + 1: the NUL after the message */
		if (!p)
			return x->rc = -ENOMEM;
		x->p = p;
		x->cap = cap;
	}
	return 0;
}

static void put(struct xl *x, const void *s, size_t n)
{
	if (reserve(x, n) < 0)
		return;
	memcpy(x->p + x->len, s, n);
	x->len += n;
}

static void put_n(struct xl *x, char c, unsigned n)
{
	while (n--)
		put(x, &c, 1);
}

/* Walks a dotted path of object keys from base. A missing key or a null
 * anywhere gives *out NULL: an empty field. Something other than an object
 * on the way is the sender's mistake, so it is refused. */
static int lookup(struct xl *x, json_t *base, const char *path, json_t **out)
{
	const char *s = path;

	*out = base;
	while (*out && !json_is_null(*out) && *s) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);

		if (!json_is_object(*out) && s == path)
			return fail(x, NULL, "expected an object");
		if (!json_is_object(*out))
			return fail(x, path, "expected an object at \"%.*s\"", (int)(s - path - 1),
				    path);
		*out = json_object_getn(*out, s, n);
		s += n + (dot != NULL);
	}
	if (*out && json_is_null(*out))
		*out = NULL;
	return 0;
}

/* ---- escaping, charset, truncation ---- */

/* Decodes one UTF-8 sequence (the caller's strings are not checked by
 * jansson). Returns its length, 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp)
{
	size_t k, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
	if (k == 0 || s[0] > 0xf4 || k > n)
		return 0;
	*cp = s[0] & (0x3f >> (k - 1));
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < (k == 2   ? 0x80u
		   : k == 3 ? 0x800u
			    : 0x10000u) ||
	    *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return k;
}

/* The output unit for one character: an escape sequence, one Latin-1 byte,
 * or the UTF-8 bytes as given. Returns its length, or a refusal. */
static int unit_for(struct xl *x, const char *path, const unsigned char *s, size_t k, unsigned cp,
		    char unit[8])
{
	char code = 0;

	/* Printable ASCII is nearly every byte: one switch, no library call. */
	switch (cp) {
	case '|':
		code = 'F';
		break;
	case '^':
		code = 'S';
		break;
	case '~':
		code = 'R';
		break;
	case '\\':
		code = 'E';
		break;
	case '&':
		code = 'T';
		break;
	default:
		if (cp >= 0x20 && cp < 0x7f) {
			unit[0] = (char)cp;
			return 1;
		}
	}
	if (code) {
		unit[0] = '\\';
		unit[1] = code;
		unit[2] = '\\';
		return 3;
	}
	if (cp == 0x0b || cp == 0x1c)
		return fail(x, path, "control character U+%04X (MLLP framing) is not allowed", cp);
	if ((cp < 0x20 && cp != '\t') || cp == 0x7f)
		return snprintf(unit, 8, "\\X%02X\\", cp);
	if (x->latin1 && cp > 0xff)
		return fail(x, path, "character U+%04X cannot be represented in ISO 8859/1", cp);
	if (x->latin1) {
		unit[0] = (char)cp;
		return 1;
	}
	memcpy(unit, s, k);
	return (int)k;
}

/* Appends s escaped to the message, cut at r->max bytes between whole
 * units (or refused past it, for a row that must stay whole). Every
 * character is checked, also those past the cut: a refusal does not depend
 * on the field's length. Returns the length written, or a refusal. */
static int escape(struct xl *x, const struct xl_row *r, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	const char *path = r->path;
	size_t i = 0, len = 0, max = r->max & ~WHOLE;
	char *val;
	int full = 0;

	assert(max <= XL_TEXT_MAX);
	/* A unit is at most 5 bytes (\Xhh\) and never longer than 5 per input byte. */
	if (reserve(x, n * 5 < max ? n * 5 : max) < 0)
		return x->rc;
	val = x->p + x->len;
	while (i < n) {
		char unit[8];
		unsigned cp;
		size_t k = utf8_decode(u + i, n - i, &cp);
		int ul;

		if (k == 0)
			return fail(x, path, "invalid UTF-8");
		ul = unit_for(x, path, u + i, k, cp, unit);
		if (ul < 0)
			return ul;
		if (!full && len + (size_t)ul <= max) {
			memcpy(val + len, unit, (size_t)ul);
			len += (size_t)ul;
		} else if (r->max & WHOLE) {
			return fail(x, path, "longer than %zu bytes", max);
		} else {
			full = 1;
		}
		i += k;
	}
	x->len += len;
	return (int)len;
}

/* ---- dates ---- */

static int digits(const char **s, const char *end, int n, int *v)
{
	*v = 0;
	if (end - *s < n)
		return 0;
	for (int i = 0; i < n; i++, (*s)++) {
		if (**s < '0' || **s > '9')
			return 0;
		*v = *v * 10 + (**s - '0');
	}
	return 1;
}

static int days_in(int y, int m)
{
	static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return dm[m - 1] + (m == 2 && leap);
}

/* YYYY[-MM[-DD]] into out; *s is left after it. Returns 0 or a reason. */
static const char *parse_date(const char **s, const char *end, char *out, size_t *olen)
{
	int y, m, d;

	if (!digits(s, end, 4, &y))
		return "expected a date YYYY[-MM[-DD]]";
	*olen = (size_t)sprintf(out, "%04d", y);
	if (*s == end || **s != '-')
		return NULL;
	(*s)++;
	if (!digits(s, end, 2, &m) || m < 1 || m > 12)
		return "impossible month";
	*olen += (size_t)sprintf(out + *olen, "%02d", m);
	if (*s == end || **s != '-')
		return NULL;
	(*s)++;
	if (!digits(s, end, 2, &d) || d < 1 || d > days_in(y, m))
		return "impossible day of month";
	*olen += (size_t)sprintf(out + *olen, "%02d", d);
	return NULL;
}

/* Thh:mm[:ss[.f{1,4}]] into out. */
static const char *parse_time(const char **s, const char *end, char *out, size_t *olen)
{
	int h, mi, sec;

	if (!digits(s, end, 2, &h) || h > 23)
		return "impossible hour";
	if (*s == end || **s != ':' || (++*s, !digits(s, end, 2, &mi)) || mi > 59)
		return "impossible minute";
	*olen += (size_t)sprintf(out + *olen, "%02d%02d", h, mi);
	if (*s == end || **s != ':')
		return NULL;
	(*s)++;
	if (!digits(s, end, 2, &sec) || sec > 59)
		return "impossible second";
	*olen += (size_t)sprintf(out + *olen, "%02d", sec);
	if (*s == end || **s != '.')
		return NULL;
	out[(*olen)++] = *(*s)++;
	for (int n = 0; *s < end && **s >= '0' && **s <= '9'; n++) {
		if (n == 4)
			return "more than 4 fraction digits (HL7 DTM holds 4)";
		out[(*olen)++] = *(*s)++;
	}
	if (out[*olen - 1] == '.')
		return "expected fraction digits after '.'";
	return NULL;
}

/* Z or ±hh:mm into ±hhmm. */
static const char *parse_offset(const char **s, const char *end, char *out, size_t *olen)
{
	int h, m;
	char sign;

	if (*s == end)
		return NULL;
	if (**s == 'Z' && *s + 1 == end) {
		(*s)++;
		*olen += (size_t)sprintf(out + *olen, "+0000");
		return NULL;
	}
	sign = **s;
	if (sign != '+' && sign != '-')
		return "expected Z or an offset +hh:mm";
	(*s)++;
	if (!digits(s, end, 2, &h) || h > 14 || *s == end || *(*s)++ != ':' ||
	    !digits(s, end, 2, &m) || m > 59)
		return "impossible time zone offset";
	*olen += (size_t)sprintf(out + *olen, "%c%02d%02d", sign, h, m);
	return NULL;
}

/* ISO 8601 → HL7 DT or DTM; out holds at least 32 bytes. */
static const char *convert_date(const char *s, size_t n, int with_time, char *out, size_t *olen)
{
	const char *end = s + n, *why;

	*olen = 0;
	why = parse_date(&s, end, out, olen);
	if (!why && with_time && s < end && *s == 'T' && *olen == 8) {
		s++;
		why = parse_time(&s, end, out, olen);
		if (!why)
			why = parse_offset(&s, end, out, olen);
	}
	if (!why && s != end)
		why =
		    with_time ? "expected an ISO 8601 date-time" : "expected a date YYYY[-MM[-DD]]";
	return why;
}

/* ---- values ---- */

static int map_code(struct xl *x, const struct xl_row *r, json_t *v, const char **code)
{
	const char *s = json_is_true(v)	   ? "true"
			: json_is_false(v) ? "false"
					   : json_string_value(v);

	if (!s)
		return fail(x, r->path, "expected a string");
	for (const struct xl_map *m = r->map; m->from; m++) {
		if (strcasecmp(m->from, s) == 0) {
			*code = m->to;
			return 0;
		}
	}
	return fail(x, r->path, "not a known code for this field");
}

/* One end of a range: a number, or a short string. Returns its length. */
static int range_end(struct xl *x, const struct xl_row *r, json_t *range, const char *key,
		     char *out, size_t size)
{
	json_t *v = json_object_get(range, key);
	int n;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v))
		n = snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		n = snprintf(out, size, "%.15g", json_real_value(v));
	else if (json_is_string(v) && json_string_length(v) < size)
		n = snprintf(out, size, "%s", json_string_value(v));
	else
		return fail(x, r->path, "expected a number at \"%s\" (or a string below %zu bytes)",
			    key, size);
	return n;
}

/* ReferenceRange {Low, High, Text} as OBX-7 writes it: Text when given,
 * else "Low-High", ">Low" or "<High". */
static int convert_range(struct xl *x, const struct xl_row *r, json_t *v, char tmp[XL_TMP_MAX],
			 const char **s, size_t *n)
{
	char lo[28], hi[28];
	json_t *text = json_is_object(v) ? json_object_get(v, "Text") : NULL;
	int nl, nh;

	if (!json_is_object(v))
		return fail(x, r->path, "expected an object");
	if (text && !json_is_null(text)) {
		if (!json_is_string(text))
			return fail(x, r->path, "expected a string at \"Text\"");
		*s = json_string_value(text);
		*n = json_string_length(text);
		return 0;
	}
	nl = range_end(x, r, v, "Low", lo, sizeof(lo));
	nh = nl < 0 ? nl : range_end(x, r, v, "High", hi, sizeof(hi));
	if (nh < 0)
		return x->rc;
	*n = (size_t)snprintf(tmp, XL_TMP_MAX, "%s%s%s%s", nl && !nh ? ">" : "",
			      !nl && nh ? "<" : "", nl ? lo : "", nl && nh ? "-" : "");
	*n += (size_t)snprintf(tmp + *n, XL_TMP_MAX - *n, "%s", nh ? hi : "");
	*s = tmp;
	return 0;
}

/* The unescaped text of one row's value (NULL for none) into s and n. */
static int source_text(struct xl *x, const struct xl_row *r, json_t *base, char tmp[XL_TMP_MAX],
		       const char **s, size_t *n)
{
	json_t *v = NULL;
	const char *why;

	if (r->path && lookup(x, base, r->path, &v) < 0)
		return x->rc;
	if (!v || r->conv == CV_IFSET) {
		*s = !v && r->conv == CV_IFSET ? NULL : x->ctx[r->dflt];
		*n = *s ? strlen(*s) : 0;
		return 0;
	}
	if (r->conv == CV_MAP) {
		if (map_code(x, r, v, s) < 0)
			return x->rc;
		*n = strlen(*s);
		return 0;
	}
	if (r->conv == CV_RANGE)
		return convert_range(x, r, v, tmp, s, n);
	if (json_is_integer(v) && r->conv == CV_TEXT) {
		*n = (size_t)snprintf(tmp, XL_TMP_MAX, "%" JSON_INTEGER_FORMAT,
				      json_integer_value(v));
		*s = tmp;
		return 0;
	}
	if (!json_is_string(v))
		return fail(x, r->path, "expected a string");
	*s = json_string_value(v);
	*n = json_string_length(v);
	if (r->conv == CV_TEXT)
		return 0;
	why = convert_date(*s, *n, r->conv == CV_DTM, tmp, n);
	*s = tmp;
	return why ? fail(x, r->path, "%s", why) : 0;
}

/* The separators that lead to (field, rep, comp) from the last value
 * written: empty trailing components, repetitions and fields are never
 * written, so the caller takes them back when the value is empty. */
static void separators(struct xl *x, unsigned f, unsigned rep, unsigned c)
{
	if (f > x->cur_f) {
		put_n(x, '|', f - x->cur_f);
		put_n(x, '~', rep);
		put_n(x, '^', c - 1);
	} else if (rep > x->cur_r) {
		put_n(x, '~', rep - x->cur_r);
		put_n(x, '^', c - 1);
	} else {
		assert(c > x->cur_c);
		put_n(x, '^', c - x->cur_c);
	}
}

/* The components of one repetition: rows[0..n) share segment and field. */
static void write_rep(struct xl *x, const struct xl_row *rows, size_t n, json_t *base, unsigned rep)
{
	for (size_t i = 0; i < n && !x->rc; i++) {
		char tmp[XL_TMP_MAX];
		const char *s = NULL;
		size_t len = 0, mark = x->len, start;

		if (source_text(x, &rows[i], base, tmp, &s, &len) < 0 || !s || !len)
			continue;
		separators(x, rows[i].field, rep, rows[i].comp);
		start = x->len;
		if (escape(x, &rows[i], s, len) <= 0) {
			x->len = mark;
			continue;
		}
		assert(x->len > start);
		x->cur_f = rows[i].field;
		x->cur_r = rep;
		x->cur_c = rows[i].comp;
	}
}

/* A field whose repetitions are the elements of an array. */
static void write_each(struct xl *x, const struct xl_row *rows, size_t n, json_t *base)
{
	size_t plen = strlen(x->prefix);
	json_t *arr, *el;
	size_t i;

	if (lookup(x, base, rows[0].each, &arr) < 0 || !arr)
		return;
	if (!json_is_array(arr)) {
		fail(x, rows[0].each, "expected an array");
		return;
	}
	if (json_array_size(arr) > XL_REP_MAX) {
		fail(x, rows[0].each, "more than %d elements", XL_REP_MAX);
		return;
	}
	json_array_foreach(arr, i, el)
	{
		snprintf(x->prefix + plen, sizeof(x->prefix) - plen, "%s[%zu].", rows[0].each, i);
		if (!json_is_object(el) && !json_is_null(el))
			fail(x, NULL, "expected an object");
		else
			write_rep(x, rows, n, el, (unsigned)i);
		x->prefix[plen] = '\0';
		if (x->rc)
			return;
	}
}

static void write_segment(struct xl *x, const struct xl_model *m, const char *seg, json_t *base)
{
	size_t i = 0, j;

	put(x, seg, 3);
	x->cur_f = 0;
	x->cur_r = 0;
	x->cur_c = 1;
	if (strcmp(seg, "MSH") == 0) {
		put(x, "|^~\\&", 5); /* MSH-1 and MSH-2 */
		x->cur_f = 2;
	}
	while (i < m->nrows && !x->rc) {
		for (j = i; j < m->nrows && m->rows[j].field == m->rows[i].field &&
			    strcmp(m->rows[j].seg, m->rows[i].seg) == 0;
		     j++)
			;
		if (strcmp(m->rows[i].seg, seg) == 0) {
			if (m->rows[i].each)
				write_each(x, m->rows + i, j - i, base);
			else
				write_rep(x, m->rows + i, j - i, base, 0);
		}
		i = j;
	}
	put(x, "\r", 1);
	if (!x->rc && x->len > XL_OUT_MAX) {
		snprintf(x->prefix, sizeof(x->prefix), "$");
		fail(x, NULL, "the HL7 message would be longer than %d bytes", XL_OUT_MAX);
	}
}

/* ---- segment programs ---- */

static int opens_group(const char *tok)
{
	size_t n = strlen(tok);

	return n > 1 && (tok[n - 1] == '[' || tok[n - 1] == '?');
}

/* The index of the "]" that closes the group opened at prog[open]. */
static size_t group_end(const char *const *prog, size_t open, size_t end)
{
	unsigned depth = 0;

	for (size_t i = open; i < end; i++) {
		if (opens_group(prog[i]))
			depth++;
		else if (strcmp(prog[i], "]") == 0 && --depth == 0)
			return i;
	}
	assert(!"a group that does not close");
	return end;
}

static void run_prog(struct xl *x, const struct xl_model *m, const char *const *prog, size_t from,
		     size_t to, json_t *base, unsigned depth);

/* One element of a group: its prefix for refusal paths, its set ID. */
static void run_element(struct xl *x, const struct xl_model *m, const char *const *prog,
			size_t from, size_t to, json_t *el, const char *key, size_t i,
			unsigned depth)
{
	size_t plen = strlen(x->prefix);
	const char *setid = x->ctx[CTX_SETID];
	char buf[24];

	if (i == (size_t)-1)
		snprintf(x->prefix + plen, sizeof(x->prefix) - plen, "%s.", key);
	else
		snprintf(x->prefix + plen, sizeof(x->prefix) - plen, "%s[%zu].", key, i);
	snprintf(buf, sizeof(buf), "%zu", i == (size_t)-1 ? 1 : i + 1);
	x->ctx[CTX_SETID] = buf;
	run_prog(x, m, prog, from, to, el, depth + 1);
	x->ctx[CTX_SETID] = setid;
	x->prefix[plen] = '\0';
}

/* The group opened at prog[open] and closed at prog[close]: "X?" once if
 * X holds a value; "X[" per element of the array X, or once for any other
 * value. */
static void run_group(struct xl *x, const struct xl_model *m, const char *const *prog, size_t open,
		      size_t close, json_t *base, unsigned depth)
{
	char key[64];
	size_t n = strlen(prog[open]) - 1, i;
	json_t *v, *el;

	assert(n < sizeof(key) && depth < XL_NEST_MAX);
	memcpy(key, prog[open], n);
	key[n] = '\0';
	if (lookup(x, base, key, &v) < 0 || !v)
		return;
	if (prog[open][n] == '?') {
		run_prog(x, m, prog, open + 1, close, base, depth + 1);
	} else if (!json_is_array(v)) {
		run_element(x, m, prog, open + 1, close, v, key, (size_t)-1, depth);
	} else if (json_array_size(v) > XL_GROUP_MAX) {
		fail(x, key, "more than %d elements", XL_GROUP_MAX);
	} else {
		json_array_foreach(v, i, el)
		{
			if (x->rc)
				break;
			run_element(x, m, prog, open + 1, close, el, key, i, depth);
		}
	}
}

/* Writes prog[from..to) over base, the current group element. */
static void run_prog(struct xl *x, const struct xl_model *m, const char *const *prog, size_t from,
		     size_t to, json_t *base, unsigned depth)
{
	for (size_t i = from; i < to && !x->rc; i++) {
		if (opens_group(prog[i])) {
			size_t close = group_end(prog, i, to);

			run_group(x, m, prog, i, close, base, depth);
			i = close;
		} else {
			write_segment(x, m, prog[i], base);
		}
	}
}

/* ---- model and event ---- */

static int string_at(struct xl *x, const char *path, const char **s)
{
	json_t *v;

	if (lookup(x, x->root, path, &v) < 0)
		return x->rc;
	if (v && !json_is_string(v))
		return fail(x, path, "expected a string");
	*s = v ? json_string_value(v) : NULL;
	return 0;
}

static int event_matches(struct xl *x, const struct xl_event *e, const char *event, int *match)
{
	const char *sel;

	*match = 0;
	if (strcmp(e->event, event) != 0)
		return 0;
	if (!e->sel_path) {
		*match = 1;
		return 0;
	}
	if (string_at(x, e->sel_path, &sel) < 0)
		return x->rc;
	*match = e->sel_value ? sel && strcasecmp(sel, e->sel_value) == 0 : !sel;
	return 0;
}

static int pick_event(struct xl *x, const struct xl_model **mp, const struct xl_event **ep)
{
	const char *model, *event;
	size_t i;
	int match, seen = 0;

	if (string_at(x, "Meta.DataModel", &model) < 0 ||
	    string_at(x, "Meta.EventType", &event) < 0)
		return x->rc;
	for (i = 0; i < NELEMS(models) && (!model || strcmp(models[i].name, model)); i++)
		;
	if (i == NELEMS(models))
		return fail(x, "Meta.DataModel",
			    "%s data model (supported: PatientAdmin, Results, Order, Scheduling)",
			    model ? "unsupported" : "missing");
	*mp = &models[i];
	if (!event)
		return fail(x, "Meta.EventType", "missing event type");
	for (i = 0; i < (*mp)->nevents; i++) {
		const struct xl_event *e = &(*mp)->events[i];

		seen |= strcmp(e->event, event) == 0;
		if (event_matches(x, e, event, &match) < 0)
			return x->rc;
		if (match) {
			*ep = e;
			return 0;
		}
	}
	if (seen)
		return fail(x, "Meta.CancelledEvent", "not an event that Cancel can cancel");
	return fail(x, "Meta.EventType", "unsupported event type for %s", (*mp)->name);
}

/* ---- parsing ---- */

/* Deepest nesting of objects and arrays, counted on the bytes before
 * jansson sees them: its own limit (2048) is far above any data model,
 * and its message would not say ours. */
static unsigned json_depth(const char *s, size_t n)
{
	unsigned d = 0, max = 0;
	int in_str = 0;

	for (size_t i = 0; i < n; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = 0;
		} else if (s[i] == '"') {
			in_str = 1;
		} else if (s[i] == '{' || s[i] == '[') {
			max = ++d > max ? d : max;
		} else if ((s[i] == '}' || s[i] == ']') && d) {
			d--;
		}
	}
	return max;
}

/* jansson's message ends with " near '<the input there>'": a piece of a
 * name or an identifier, which must not reach a log. Cut off in place
 * (" near end of file" holds no input and stays). */
static void cut_near(char *text)
{
	char *near = strstr(text, " near '");

	if (near)
		*near = '\0';
}

static int parse(struct xl *x, const char *json, size_t len)
{
	json_error_t je;

	if (json_depth(json, len) > XL_JSON_DEPTH_MAX)
		return fail(x, NULL, "JSON nested deeper than %d levels", XL_JSON_DEPTH_MAX);
	/* Duplicate keys refused by the flag; invalid UTF-8 and \u0000 are
	 * refused by jansson unless JSON_ALLOW_NUL is given. */
	x->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!x->root) {
		if (json_error_code(&je) == json_error_out_of_memory)
			return x->rc = -ENOMEM;
		cut_near(je.text);
		return fail(x, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column,
			    je.text);
	}
	if (!json_is_object(x->root))
		return fail(x, NULL, "expected a JSON object");
	return 0;
}

static int set_context(struct xl *x, const struct xl_opts *o)
{
	if (!o->version || !*o->version || !o->control_id || !*o->control_id || !o->now ||
	    !*o->now) {
		snprintf(x->prefix, sizeof(x->prefix), "(opts)");
		return fail(x, NULL, "version, control_id and now are required");
	}
	x->latin1 = o->latin1;
	x->ctx[CTX_SEND_APP] = o->sending_app;
	x->ctx[CTX_SEND_FAC] = o->sending_facility;
	x->ctx[CTX_RECV_APP] = o->receiving_app;
	x->ctx[CTX_RECV_FAC] = o->receiving_facility;
	x->ctx[CTX_NOW] = o->now;
	x->ctx[CTX_CONTROL] = o->control_id;
	x->ctx[CTX_VERSION] = o->version;
	x->ctx[CTX_CHARSET] = o->latin1 ? "8859/1" : "UNICODE UTF-8";
	x->ctx[CTX_SETID] = "1";
	x->ctx[CTX_NA] = "N";
	x->ctx[CTX_PROD] = "P";
	x->ctx[CTX_MIN] = "min";
	return 0;
}

/* The event's required value is there: a non-null value, or an array with
 * at least one element. */
static int check_required(struct xl *x, const struct xl_event *e)
{
	json_t *v;

	if (!e->required || lookup(x, x->root, e->required, &v) < 0)
		return x->rc;
	if (!v || (json_is_array(v) && json_array_size(v) == 0))
		return fail(x, e->required, "required for %s %s", e->type, e->trigger);
	return 0;
}

int translate_json(const void *json, size_t len, const struct xl_opts *o, char **out,
		   size_t *len_out, struct xl_error *err)
{
	struct xl x = {.err = err, .prefix = "$."};
	const struct xl_model *m = NULL;
	const struct xl_event *e = NULL;
	size_t n;

	*out = NULL;
	*len_out = 0;
	memset(err, 0, sizeof(*err));
	if (len > XL_JSON_MAX) {
		snprintf(err->reason, sizeof(err->reason), "JSON larger than %d bytes",
			 XL_JSON_MAX);
		return -EMSGSIZE;
	}
	if (set_context(&x, o) == 0 && parse(&x, json, len) == 0 && pick_event(&x, &m, &e) == 0 &&
	    check_required(&x, e) == 0) {
		x.ctx[CTX_TYPE] = e->type;
		x.ctx[CTX_TRIGGER] = e->trigger;
		x.ctx[CTX_STRUCT] = e->structure;
		x.ctx[CTX_CODE] = e->code;
		for (n = 0; n < XL_PROG_MAX && e->prog[n]; n++)
			;
		run_prog(&x, m, e->prog, 0, n, x.root, 0);
	}
	json_decref(x.root);
	if (x.rc) {
		free(x.p);
		return x.rc;
	}
	x.p[x.len] = '\0';
	*out = x.p;
	*len_out = x.len;
	return 0;
}
