/*
 * The bridge's configuration: the `appliance.yaml` sections it reads.
 *
 * Three stages: parse (libyaml) → validate into an immutable struct → apply
 * (the caller). Every error found is reported, each as "FILE:LINE: message",
 * not only the first.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_PORT_MIN 9960  /* MLLP listeners live in this port range */
#define CFG_PORT_MAX 11794
#define CFG_MAX_INTEGRATIONS 256
#define CFG_MAX_SOURCES 64        /* CIDRs per integration */
#define CFG_NAME_MAX 64           /* integration names: [A-Za-z0-9_-], 1..64 */
#define CFG_MAX_IN_FLIGHT_LIMIT 256
#define CFG_MAX_ERRORS 100        /* stop collecting after this many */

enum cfg_ack { CFG_ACK_COMMIT, CFG_ACK_UPSTREAM };
enum cfg_order { CFG_ORDER_SENDER, CFG_ORDER_INTEGRATION };

struct cfg_cidr {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network address, host bits zero */
	unsigned prefix;   /* 0..32 or 0..128 */
};

struct cfg_mllp {
	int release;              /* 1 (HL7 ACKs) or 2 (commit ACK/NAK blocks); default 1 */
	size_t max_frame;         /* bytes; default MLLP_MAX_FRAME_DEFAULT */
	uint64_t frame_timeout_ms;/* partial frame discarded after this; default 30 s */
	uint64_t idle_timeout_ms; /* idle connection closed after this; default 2 h */
};

struct cfg_upstream {
	char *url;                /* https:// only */
	char *ca_file;            /* required: the CA bundle that verifies the upstream */
	char *bearer_token_file;  /* optional; the token is read at start-up */
	char *client_cert;        /* optional mTLS pair: both or neither */
	char *client_key;
	uint64_t timeout_ms;      /* whole request; default 10 s */
};

struct cfg_integration {
	char *name;
	struct sockaddr_storage listen; /* IPv4 or IPv6 address and port */
	socklen_t listen_len;
	char *listen_text;              /* as written, for logs */
	struct cfg_cidr *sources;       /* at least one */
	size_t nsources;
	char *match_sending_facility;   /* MSH-4 must equal this, or NULL */
	char *match_receiving_facility; /* MSH-6 must equal this, or NULL */
	enum cfg_ack ack;               /* default commit */
	enum cfg_order order;           /* default sender */
	unsigned max_in_flight;         /* default 16; forced to 1 by order: integration */
	struct cfg_mllp mllp;
	struct cfg_upstream upstream;
	int line;                       /* where it was defined, for messages */
};

struct cfg_retry {
	uint64_t initial_ms; /* first backoff; default 1 s */
	uint64_t max_ms;     /* backoff ceiling; default 5 min */
};

struct cfg {
	char *path;
	char *spool_path;          /* required */
	char *observability_listen;/* "127.0.0.1:9100"; NULL disables the HTTP endpoint */
	struct sockaddr_storage observability_addr;
	socklen_t observability_len;
	int log_phi;               /* log_phi: true puts message content in logs; default false */
	uint64_t retention_ms;     /* spool.retention: delivered rows kept this long; default 7 d */
	struct cfg_retry retry;
	struct cfg_integration *integrations;
	size_t nintegrations;
};

/* Error list: each entry "FILE:LINE: message". */
struct cfg_errors {
	char **msg;
	size_t n;
};

/* Reads, parses and validates path. Returns 0 and *out (caller frees with
 * cfg_free), or -EINVAL with every problem in errs (caller frees with
 * cfg_errors_free), or another negative errno when the file cannot be read
 * (also described in errs). */
__attribute__((warn_unused_result)) int cfg_load(const char *path, struct cfg **out,
						 struct cfg_errors *errs);

/* The same from a string; `name` stands in for the file name in messages. */
__attribute__((warn_unused_result)) int cfg_load_string(const char *name, const char *text,
							struct cfg **out, struct cfg_errors *errs);

void cfg_free(struct cfg *c);
void cfg_errors_free(struct cfg_errors *e);

/* Does addr (AF_INET/AF_INET6 sockaddr; IPv4-mapped IPv6 counts as IPv4)
 * fall inside the CIDR? */
int cfg_cidr_contains(const struct cfg_cidr *c, const struct sockaddr *addr);

/* Parses "1.2.3.4:99" or "[::1]:99". Returns 0 or -EINVAL. */
__attribute__((warn_unused_result)) int cfg_parse_hostport(const char *s,
							   struct sockaddr_storage *ss,
							   socklen_t *len);

#endif
