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

#define CFG_PORT_MIN			   9960 /* MLLP listeners live in this port range */
#define CFG_PORT_MAX			   11794
#define CFG_MAX_INTEGRATIONS		   256
#define CFG_MAX_SOURCES			   64 /* CIDRs per integration */
#define CFG_NAME_MAX			   64 /* integration names: [A-Za-z0-9_-], 1..64 */
#define CFG_MAX_IN_FLIGHT_LIMIT		   1024 /* HTTP/2 carries hundreds of streams per connection */
#define CFG_MAX_ERRORS			   100 /* stop collecting after this many */
#define CFG_MAX_FILE_SIZE		   (1u << 20) /* appliance.yaml is refused above 1 MiB, before reading */
#define CFG_VALUE_MAX			   4096 /* bytes in one string value (paths, URLs) */
#define CFG_FACILITY_MAX		   227	/* match values: the HL7 HD data type's length */
#define CFG_CONNECTIONS_DEFAULT		   4096 /* connections.max, in total ... */
#define CFG_CONNECTIONS_PER_SOURCE_DEFAULT 256	/* ... and from one source address */
#define CFG_CONNECTIONS_LIMIT		   1000000
#define CFG_DURATION_MAX_MS		   (3650ull * 24 * 3600 * 1000) /* 3650d: keeps timers in range */
#define CFG_DEDUP_MAX_MS		   (24ull * 3600 * 1000) /* dedup window: the keys live in memory */
#define CFG_MAX_TUNNELS			   32
#define CFG_MAX_CHILDREN		   8  /* per tunnel */
#define CFG_MAX_TS			   16 /* local_ts / remote_ts entries per child */
#define CFG_MAX_PROPOSALS		   16 /* ike_proposals / esp_proposals entries */
#define CFG_MAX_ADDRS			   8  /* local_addrs / remote_addrs entries */
#define CFG_MAX_DESTINATIONS		   256
#define CFG_AUTH_FILE_MAX		   (64 * 1024) /* cert, key, ca: what the supervisor reads whole */
#define CFG_TUNNEL_NAME_MAX		   CFG_NAME_MAX /* tunnel and child names: [A-Za-z0-9_-] */
#define CFG_PSK_MIN			   16 /* bytes in a psk_file, without a final line break */
#define CFG_PSK_MAX			   1024

/* SFTP file channels (issue 14): `sftp:` in an integration (pull) or a
 * destination (push). */
#define CFG_SFTP_INTERVAL_DEFAULT_MS (30 * 1000)
#define CFG_SFTP_INTERVAL_MIN_MS     1000
#define CFG_SFTP_INTERVAL_MAX_MS     (24ull * 3600 * 1000)
#define CFG_SFTP_TIMEOUT_DEFAULT_MS  (30 * 1000)
#define CFG_SFTP_TIMEOUT_MIN_MS	     1000
#define CFG_SFTP_TIMEOUT_MAX_MS	     (10 * 60 * 1000)
#define CFG_SFTP_MAX_FILE_DEFAULT    (16u << 20)
#define CFG_SFTP_MAX_FILE_LIMIT	     (64u << 20) /* = SPOOL_BODY_MAX */
#define CFG_SFTP_GLOB_MAX	     255
#define CFG_SFTP_USER_MAX	     64
#define CFG_CONTENT_TYPE_MAX	     255

enum cfg_ack { CFG_ACK_COMMIT, CFG_ACK_UPSTREAM };
/* What one lane (an ordered FIFO with one request in flight) holds:
 * SENDER the peer's address; INTEGRATION everything; FEED MSH-3 + MSH-4;
 * PATIENT feed + the first PID-3 identifier (a merge waits for both patients). */
enum cfg_order { CFG_ORDER_SENDER, CFG_ORDER_INTEGRATION, CFG_ORDER_FEED, CFG_ORDER_PATIENT };
/* HTTP version toward the upstream: 2 over ALPN (falls back to 1.1), or 1.1 only. */
enum cfg_http { CFG_HTTP_2, CFG_HTTP_1_1 };

struct cfg_cidr {
	int family;	  /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network address, host bits zero */
	unsigned prefix;  /* 0..32 or 0..128 */
};

struct cfg_mllp {
	int release;		   /* 1 (HL7 ACKs) or 2 (commit ACK/NAK blocks); default 1 */
	size_t max_frame;	   /* bytes; default MLLP_MAX_FRAME_DEFAULT */
	uint64_t frame_timeout_ms; /* partial frame discarded after this; default 30 s */
	uint64_t idle_timeout_ms;  /* idle connection closed after this; default 2 h */
};

struct cfg_upstream {
	char *url;		 /* https:// only */
	char *ca_file;		 /* required: the CA bundle that verifies the upstream */
	char *bearer_token_file; /* optional; the token is read at start-up */
	char *client_cert;	 /* optional mTLS pair: both or neither */
	char *client_key;
	uint64_t timeout_ms; /* whole request; default 10 s */
	enum cfg_http http;  /* `http: 2 | 1.1`; default 2 */
};

/* What a pull does with a file once delivered. */
enum cfg_sftp_after { CFG_SFTP_MOVE, CFG_SFTP_DELETE };
/* One row per file, or one per HL7 message of a batch file. */
enum cfg_sftp_split { CFG_SPLIT_NONE, CFG_SPLIT_HL7_BATCH };

/* A hospital SFTP folder: pulled by an integration, written by a destination.
 * The pull-only fields (glob to content_type) are zero or NULL for a push.
 * Folders are stored without "//", "." components or a final "/". */
struct cfg_sftp {
	char *server_text;		/* as written: "203.0.113.10:22" or "203.0.113.10" */
	struct sockaddr_storage server; /* numeric IPv4/IPv6 address; port default 22 */
	socklen_t server_len;
	char *user;	  /* 1..CFG_SFTP_USER_MAX visible ASCII, no ':' '@' '/' */
	char *key;	  /* private key file; "<key>.next", when present, is tried first */
	char **host_keys; /* pinned "type base64 [comment]" lines, 1..SFTPC_HOSTKEYS_MAX */
	size_t nhost_keys;
	char *dir;		   /* absolute remote folder: polled (pull) or written (push) */
	char *glob;		   /* pull: names taken (fnmatch(3) pattern, no '/'); default "*" */
	uint64_t interval_ms;	   /* pull: poll period */
	enum cfg_sftp_after after; /* pull: default move */
	char *done_dir;		   /* pull: absolute; default "<dir>/done" (relative values are
				      under dir); NULL with after: delete */
	char *error_dir;	   /* pull: absolute; default "<dir>/error" */
	enum cfg_sftp_split split; /* pull: default none */
	char *content_type;	   /* pull: sent upstream; default "application/hl7-v2" with
				      split hl7-batch, else "application/octet-stream" */
	uint64_t max_file;	   /* bytes, 1..CFG_SFTP_MAX_FILE_LIMIT; default 16 MiB */
	uint64_t timeout_ms;	   /* connect and each SFTP request; default 30 s; 1 s .. 10 min */
	int line;		   /* the `sftp:` key's line */
};

struct cfg_integration {
	char *name;
	struct cfg_sftp *sftp; /* non-NULL: the source is this SFTP folder (a pull channel), not an
				  MLLP listener: listen_text, sources and match are then unset */
	struct sockaddr_storage listen; /* IPv4 or IPv6 address and port */
	socklen_t listen_len;
	char *listen_text;	  /* as written, for logs; NULL for an sftp integration */
	struct cfg_cidr *sources; /* at least one */
	size_t nsources;
	char *match_sending_facility;	/* MSH-4 must equal this, or NULL */
	char *match_receiving_facility; /* MSH-6 must equal this, or NULL */
	enum cfg_ack ack;		/* default commit */
	int accept_ack_always;		/* `accept_ack: always`: answer whatever MSH-15 says
					   (default `msh15`: NE/ER/SU honoured) */
	enum cfg_order order;		/* default feed */
	unsigned max_in_flight;		/* 1..CFG_MAX_IN_FLIGHT_LIMIT, default 128;
					   forced to 1 by order: integration */
	uint64_t dedup_ms;		/* `dedup: 10m`: a resend within this window is
					   answered from the original; 0 (default) off;
					   at most CFG_DEDUP_MAX_MS */
	struct cfg_mllp mllp;
	struct cfg_upstream upstream;
	int line; /* where it was defined, for messages */
};

/* ---- The tunnel side: read by the supervisor; the bridge reads them for the
 * gate and for the rules that keep MLLP inside and HTTPS outside the tunnel. */

/* gate: closed (default): MLLP is accepted only from peers inside an
 * installed CHILD_SA's remote_ts, as the supervisor reports them. open: from
 * any peer an integration's sources allow (a bridge run without tunnels). */
enum cfg_gate { CFG_GATE_CLOSED, CFG_GATE_OPEN };

/* Who loads a tunnel into charon: the supervisor through vici (appliance),
 * or the operator's swanctl (swanctl: the supervisor only observes and audits). */
enum cfg_source { CFG_SOURCE_APPLIANCE, CFG_SOURCE_SWANCTL };

struct cfg_child {
	char *name;		   /* the CHILD_SA config name; unique in the file */
	struct cfg_cidr *local_ts; /* at least one */
	size_t nlocal_ts;
	struct cfg_cidr *remote_ts; /* at least one */
	size_t nremote_ts;
	char **esp_proposals; /* strongSwan syntax, each with DH 14 or 21 (PFS);
				 required for source: appliance, NULL for swanctl */
	size_t nesp_proposals;
	int line;
};

struct cfg_tunnel {
	char *name; /* the vici connection name; unique */
	enum cfg_source source;
	int version;	    /* IKE version: 2 (the only one allowed) */
	char **local_addrs; /* appliance: required; swanctl: NULL */
	size_t nlocal_addrs;
	char **remote_addrs; /* appliance: required; swanctl: NULL */
	size_t nremote_addrs;
	char *local_id; /* IKE identities; NULL: charon's default (the address) */
	char *remote_id;
	char *psk_file; /* auth: either psk_file (the secret is the file's bytes
			   without one final "\n" or "\r\n", CFG_PSK_MIN to
			   CFG_PSK_MAX of them) ... */
	char *cert;	/* ... or cert + key + ca (PEM files) */
	char *key;
	char *ca;
	char **ike_proposals; /* appliance: required, each with DH 14 or 21 only */
	size_t nike_proposals;
	uint64_t dpd_delay_ms;	    /* dead peer detection period; default 30 s */
	struct cfg_child *children; /* at least one */
	size_t nchildren;
	int line;
};

struct cfg_charon {
	char *vici;	       /* default unix:///run/charon.vici */
	int start;	       /* default 1: the supervisor starts charon; 0: attach */
	char *binary;	       /* default /usr/lib/ipsec/charon */
	char *strongswan_conf; /* STRONGSWAN_CONF for a started charon; NULL: charon's default */
};

struct cfg_supervisor {
	char *control_socket;  /* default /run/appliance/control.sock */
	char *control_group;   /* group that may use it (mode 0660); NULL: root only (0600) */
	char *bridge_user;     /* the bridge runs as this user; default "mllp-bridge" */
	char *bridge_path;     /* default: mllp-bridge next to the appliance binary */
	uint64_t heartbeat_ms; /* TCP heartbeat to each destination; default 30 s */
};

/* What an outbound destination does with an HL7 reject (AE or AR). */
enum cfg_on_reject { CFG_REJECT_RETRY, CFG_REJECT_DEAD };

#define CFG_MAX_ATTEMPTS_LIMIT 1000 /* destinations[].max_attempts */
#define CFG_TOKENS_MAX	       1024 /* bearer tokens in https.tokens_file */
#define CFG_HL7_HD_MAX	       180  /* destinations[].hl7 application and facility names */

/* How JSON posted for a destination becomes HL7 v2 (destinations[].hl7). */
struct cfg_hl7_out {
	char version[8];			/* MSH-12: "2.3" .. "2.8"; default "2.5.1" */
	char sending_app[CFG_HL7_HD_MAX + 1];	/* MSH-3; default "MLLP-EDGE" */
	char sending_fac[CFG_HL7_HD_MAX + 1];	/* MSH-4; default none */
	char receiving_app[CFG_HL7_HD_MAX + 1]; /* MSH-5; default none */
	char receiving_fac[CFG_HL7_HD_MAX + 1]; /* MSH-6; default none */
	int latin1;				/* charset: 0 UTF-8 (default), 1 ISO 8859-1 */
};

/* The defaults above, for a translation that names no destination. */
void cfg_hl7_out_defaults(struct cfg_hl7_out *h);

/* An outbound MLLP receiver (one sender, one message in flight, FIFO), or an
 * SFTP folder that files are written to. */
struct cfg_destination {
	char *name;
	struct cfg_sftp *sftp; /* non-NULL: files are written to this folder (a push channel), not
				  sent over MLLP: addr and address_text are then unset */
	struct sockaddr_storage addr; /* IPv4 or IPv6 address and port */
	socklen_t addr_len;
	char *address_text;	  /* as written; NULL for an sftp destination */
	uint64_t ack_timeout_ms;  /* no ACK this long: reconnect, resend; default 30 s */
	uint64_t idle_timeout_ms; /* idle socket closed; default 2 h */
	enum cfg_on_reject on_ae; /* default retry */
	enum cfg_on_reject on_ar; /* default dead */
	unsigned max_attempts;	  /* then dead; default 10; 1..CFG_MAX_ATTEMPTS_LIMIT */
	int release;		  /* MLLP release 1 (HL7 ACK, default) or 2 (commit ACK/NAK) */
	size_t max_frame; /* largest message accepted for it; default MLLP_MAX_FRAME_DEFAULT;
			     an sftp destination's is its sftp.max_file */
	struct cfg_hl7_out hl7;
	int line;
};

/* The outbound API's listener (`https:`): TLS with the appliance's policy. */
struct cfg_https {
	char *listen_text; /* "198.51.100.1:8443"; NULL: no listener */
	struct sockaddr_storage listen;
	socklen_t listen_len;
	char *cert;	   /* server certificate chain, PEM (required) */
	char *key;	   /* its private key, PEM (required) */
	char *client_ca;   /* clients must present a certificate from this CA; NULL: no mTLS */
	char *tokens_file; /* bearer tokens, one per line "TOKEN dest1,dest2|*"; NULL: none */
	size_t max_body;   /* request body limit; default 1 MiB */
	int line;
};

struct cfg_retry {
	uint64_t initial_ms; /* first backoff; default 1 s */
	uint64_t max_ms;     /* backoff ceiling; default 5 min */
};

/* The pause before trying again after `attempts` failures (>= 1):
 * initial_ms doubling per attempt, at most max_ms. Pure; the senders that
 * retry without jitter (MLLP and SFTP) share it. */
uint64_t cfg_retry_backoff_ms(const struct cfg_retry *rc, int attempts);

struct cfg {
	char *path;
	char *spool_path;	    /* required */
	char *observability_listen; /* "127.0.0.1:9100"; NULL disables the HTTP endpoint */
	struct sockaddr_storage observability_addr;
	socklen_t observability_len;
	int log_phi;	       /* log_phi: true puts message content in logs; default false */
	uint64_t retention_ms; /* spool.retention: delivered rows kept this long; default 7 d */
	struct cfg_retry retry;
	unsigned max_connections;	     /* connections.max: MLLP connections open at once */
	unsigned max_connections_per_source; /* connections.per_source: from one address */
	struct cfg_integration *integrations;
	size_t nintegrations;
	enum cfg_gate gate;
	struct cfg_charon charon;
	struct cfg_supervisor supervisor;
	struct cfg_tunnel *tunnels;
	size_t ntunnels;
	struct cfg_destination *destinations;
	size_t ndestinations;
	struct cfg_https https;
};

/* Whose credentials check the files a config names: the bridge checks the
 * files it opens itself (upstream CA, token, client pair) and not the tunnel
 * secrets, which it must not be able to read; the supervisor checks all. */
enum cfg_role { CFG_ROLE_BRIDGE, CFG_ROLE_SUPERVISOR };

/* Error list: each entry "FILE:LINE: message", sorted by line (then by the
 * order found). A file that cannot be read at all gives "FILE: message". When
 * more than CFG_MAX_ERRORS were found, the first CFG_MAX_ERRORS are kept and
 * one more entry says so. */
struct cfg_errors {
	char **msg;
	size_t n;
};

/* Reads, parses and validates path. Returns 0 and *out (caller frees with
 * cfg_free), or -EINVAL with every problem in errs (caller frees with
 * cfg_errors_free), or another negative errno when the file cannot be read
 * (also described in errs), or -ENOMEM. errs is overwritten, never appended
 * to; it may be NULL. On failure *out is NULL. Files named in the config
 * (ca_file, ...) are checked for readability with the caller's credentials. */
__attribute__((warn_unused_result)) int cfg_load(const char *path, struct cfg **out,
						 struct cfg_errors *errs);

/* The same from a string; `name` stands in for the file name in messages. */
__attribute__((warn_unused_result)) int cfg_load_string(const char *name, const char *text,
							struct cfg **out, struct cfg_errors *errs);

/* cfg_load() and cfg_load_string() are CFG_ROLE_BRIDGE; these take the role. */
__attribute__((warn_unused_result)) int cfg_load_as(const char *path, enum cfg_role role,
						    struct cfg **out, struct cfg_errors *errs);
__attribute__((warn_unused_result)) int cfg_load_string_as(const char *name, const char *text,
							   enum cfg_role role, struct cfg **out,
							   struct cfg_errors *errs);

/* The DH group number a strongSwan proposal token names ("modp2048" 14,
 * "ecp521" 21, "curve25519" 31, ...), or 0 when the token is not a DH group. */
int cfg_dh_group(const char *token);

void cfg_free(struct cfg *c);
void cfg_errors_free(struct cfg_errors *e);

/* Does addr (AF_INET/AF_INET6 sockaddr; IPv4-mapped IPv6 counts as IPv4)
 * fall inside the CIDR? */
int cfg_cidr_contains(const struct cfg_cidr *c, const struct sockaddr *addr);

/* Parses "1.2.3.4:99" or "[::1]:99". Returns 0 or -EINVAL. */
__attribute__((warn_unused_result)) int
cfg_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Parses a CIDR "a.b.c.d/n" or "v6addr/n"; a bare address means /32 or /128.
 * IPv4-mapped IPv6 CIDRs (::ffff:a.b.c.d/96+n) become IPv4. Returns 0, or
 * -EDOM when host bits are set (*c then holds the masked network), or -EINVAL. */
__attribute__((warn_unused_result)) int cfg_parse_cidr(const char *s, struct cfg_cidr *c);

/* Parses a duration "<digits><ms|s|m|h|d>" into milliseconds. Returns 0,
 * -EINVAL (syntax, missing unit, sign) or -ERANGE (above CFG_DURATION_MAX_MS).
 * Zero is accepted here; callers reject it where it makes no sense. */
__attribute__((warn_unused_result)) int cfg_parse_duration(const char *s, uint64_t *ms);

/* Parses a size "<digits>[B|KiB|MiB|GiB]" into bytes. Returns 0, -EINVAL or
 * -ERANGE (does not fit in 64 bits). */
__attribute__((warn_unused_result)) int cfg_parse_size(const char *s, uint64_t *bytes);

/* Reads a whole regular file of at most max bytes into *text (NUL-added;
 * caller frees) and *len, as the configuration reads the files it names
 * (the supervisor reads the tunnel secrets with it too). Returns 0, -EINVAL
 * (not a regular file), -EFBIG, -ENOMEM or another negative errno. */
__attribute__((warn_unused_result)) int cfg_read_file(const char *path, size_t max, char **text,
						      size_t *len);

#endif
