/*
 * What charon says about its SAs (list-sa, ike-updown, child-updown events),
 * read into plain structs. Pure: unit tests build the trees themselves.
 */
#ifndef APPLIANCE_SAS_H
#define APPLIANCE_SAS_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"
#include "vici-client/vici.h"

#define SAS_NAME_MAX	 64
#define SAS_ALG_MAX	 48 /* "AES_GCM_16-256", "PRF_HMAC_SHA2_384" */
#define SAS_TS_MAX	 16 /* traffic selectors kept per direction */
#define SAS_TS_TEXT_MAX	 64 /* "2001:db8::/32[tcp/2575]" */
#define SAS_CHILDREN_MAX 16 /* CHILD_SAs kept per IKE_SA (rekeying doubles them) */

struct sas_child {
	char name[SAS_NAME_MAX + 1];
	uint32_t uniqueid;
	char state[24];	       /* INSTALLED, REKEYED, DELETED, ... */
	char esp[SAS_ALG_MAX]; /* "AES_GCM_16-256" */
	char dh[24];	       /* "ECP_521", or "" when the CHILD_SA did no DH */
	unsigned dh_group;     /* 21, or 0 */
	char local_ts[SAS_TS_MAX][SAS_TS_TEXT_MAX];
	size_t nlocal_ts;
	char remote_ts[SAS_TS_MAX][SAS_TS_TEXT_MAX];
	size_t nremote_ts;
	int64_t installed_s; /* seconds since installed, -1 unknown */
};

struct sas_ike {
	char name[SAS_NAME_MAX + 1];
	uint32_t uniqueid;
	char state[24];	  /* ESTABLISHED, CONNECTING, ... */
	int initiator;	  /* this end initiated it */
	unsigned version; /* IKE version, 0 when charon did not say */
	char encr[SAS_ALG_MAX];
	char integ[SAS_ALG_MAX];
	char prf[SAS_ALG_MAX];
	char dh[24];
	unsigned dh_group;
	int64_t established_s; /* seconds since established, -1 unknown */
	struct sas_child child[SAS_CHILDREN_MAX];
	size_t nchildren;
};

/*
 * Reads the IKE_SA section sec (a child of a list-sa or *-updown message's
 * root; its name is the connection name). Unknown keys are ignored; missing
 * ones stay empty. CHILD_SAs beyond SAS_CHILDREN_MAX are dropped.
 */
void sas_read_ike(const struct vici_node *sec, struct sas_ike *out);

/* strongSwan's DH group name ("MODP_2048", "ECP_521", "CURVE_25519") as
 * its IANA number, or 0 for "" or an unknown name. */
unsigned sas_dh_number(const char *name);

/* A traffic selector as charon prints it ("203.0.113.64/26",
 * "10.0.0.1/32[tcp/2575]") as a CIDR, host bits cleared: the protocol/port
 * part is ignored (the gate works on addresses). Returns 0 or -EINVAL (a
 * range "a..b", no prefix, anything cfg_parse_cidr() refuses). */
__attribute__((warn_unused_result)) int sas_ts_cidr(const char *ts, struct cfg_cidr *out);

#endif
