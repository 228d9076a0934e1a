/*
 * The supervisor ↔ bridge link: typed, size-checked messages on a
 * SOCK_SEQPACKET socketpair, so one datagram is exactly one message.
 *
 *   datagram = u8 version (IPC_VERSION) | u8 type | u16 BE payload length | payload
 *
 * The length must equal the bytes that follow, and each type's payload must
 * be exactly the size its counts announce: anything else is -EBADMSG and the
 * receiver drops the link (a peer that sends garbage is not trusted again).
 * Integers are big-endian; names are u8 length + bytes, 1..IPC_NAME_MAX of
 * [A-Za-z0-9_-].
 *
 * Supervisor → bridge:
 *   IPC_GATE     the remote traffic selectors of every installed CHILD_SA:
 *                the only peers the bridge may accept MLLP from. A snapshot
 *                that replaces the previous one (idempotent, resendable).
 *   IPC_TUNNELS  each tunnel's state for /metrics, and the bridge's restarts.
 * Bridge → supervisor:
 *   IPC_STATUS   each integration's spool depth and oldest message's age,
 *                for `appliancectl status`; sent about once a second.
 *   IPC_OUTBOX   each outbound destination's queue: what waits, since when,
 *                whether it waits for the tunnel; sent with IPC_STATUS when
 *                destinations exist.
 *
 * Pure codec: no I/O. Callers send() and recv() the datagrams themselves
 * (recv into a buffer of IPC_MSG_MAX bytes; MSG_TRUNC means -EMSGSIZE).
 */
#ifndef IPC_H
#define IPC_H

#include <stddef.h>
#include <stdint.h>

#define IPC_VERSION	     1
#define IPC_HEADER_SIZE	     4
#define IPC_MSG_MAX	     65535 /* whole datagram: header + payload */
#define IPC_NAME_MAX	     64
#define IPC_GATE_MAX	     256 /* CIDRs in one gate snapshot */
#define IPC_TUNNELS_MAX	     32
#define IPC_INTEGRATIONS_MAX 256
#define IPC_DESTINATIONS_MAX 256

enum ipc_type {
	IPC_GATE = 1,
	IPC_TUNNELS = 2,
	IPC_STATUS = 3,
	IPC_OUTBOX = 4,
};

struct ipc_cidr {
	uint8_t family;	  /* AF_INET or AF_INET6 */
	uint8_t prefix;	  /* 0..32 or 0..128 */
	uint8_t addr[16]; /* network address; IPv4 in the first 4 bytes, the rest zero */
};

/* payload: u32 generation | u16 n | n × (u8 family | u8 prefix | 16 bytes addr) */
struct ipc_gate {
	uint32_t generation; /* increases with every snapshot the supervisor sends */
	uint16_t n;
	struct ipc_cidr cidr[IPC_GATE_MAX];
};

/* payload: u32 bridge_restarts | u16 n | n × (name | u8 up | u16 ike_dh | u16 esp_dh | i64 changed)
 */
struct ipc_tunnel {
	char name[IPC_NAME_MAX + 1];
	uint8_t up;	      /* 1: IKE_SA established and every child installed */
	uint16_t ike_dh;      /* negotiated DH group of the IKE_SA; 0 when down */
	uint16_t esp_dh;      /* PFS group of the newest CHILD_SA; 0 when none was negotiated yet */
	int64_t changed_unix; /* when up last changed, seconds since the epoch */
};

struct ipc_tunnels {
	uint32_t bridge_restarts;
	uint16_t n;
	struct ipc_tunnel t[IPC_TUNNELS_MAX];
};

/* payload: u16 n | n × (name | u64 depth | u64 oldest_age_ms | u64 dead) */
struct ipc_integration {
	char name[IPC_NAME_MAX + 1];
	uint64_t depth;		/* messages in the spool not yet delivered */
	uint64_t oldest_age_ms; /* age of the oldest of them; 0 when none */
	uint64_t dead;		/* dead letters waiting for an operator */
};

struct ipc_status {
	uint16_t n;
	struct ipc_integration in[IPC_INTEGRATIONS_MAX];
};

/* payload: u16 n | n × (name | u64 queued | u64 oldest_age_ms | u8 waiting_gate
 *                       | u8 connected | u64 failed) */
struct ipc_destination {
	char name[IPC_NAME_MAX + 1];
	uint64_t queued;	/* messages waiting, the one in flight included */
	uint64_t oldest_age_ms; /* age of the oldest of them; 0 when none */
	uint8_t waiting_gate;	/* 1: the next one waits for a CHILD_SA covering it */
	uint8_t connected;	/* 1: a connection to the receiver is open */
	uint64_t failed;	/* rejected or dead since the bridge started */
};

struct ipc_outbox {
	uint16_t n;
	struct ipc_destination d[IPC_DESTINATIONS_MAX];
};

union ipc_msg {
	struct ipc_gate gate;
	struct ipc_tunnels tunnels;
	struct ipc_status status;
	struct ipc_outbox outbox;
};

/*
 * Encode one message of type into buf (at least IPC_MSG_MAX bytes is always
 * enough); *len is the datagram's size. Returns 0, -EINVAL for a count
 * beyond its limit, a bad name, a bad family or prefix, or an unknown type,
 * -EMSGSIZE when cap is too small.
 */
__attribute__((warn_unused_result)) int ipc_encode(enum ipc_type type, const union ipc_msg *m,
						   uint8_t *buf, size_t cap, size_t *len);

/*
 * Decode one datagram of len bytes into *type and *m (which may be large:
 * keep it off small stacks). Returns 0, or -EBADMSG for a wrong version,
 * unknown type, length mismatch, count beyond its limit, bad name, family,
 * prefix or host bits set; -EMSGSIZE when len exceeds IPC_MSG_MAX.
 */
__attribute__((warn_unused_result)) int ipc_decode(const uint8_t *buf, size_t len,
						   enum ipc_type *type, union ipc_msg *m);

#endif
