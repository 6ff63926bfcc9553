/*
 * ipcount: live connections per client address (max_connections_per_ip), and
 * address-block matching. A small chained hash table; knows nothing of sockets.
 */
#ifndef POP3D_IPCOUNT_H
#define POP3D_IPCOUNT_H

#include <stddef.h>
#include <stdint.h>

struct ipcount_node;

struct ipcount {
	struct ipcount_node **bucket;
	size_t                nbucket;   /* power of two */
	size_t                n;         /* distinct addresses */
	uint64_t              last_forget_ms;  /* last sweep of old failure records */
};

/* Failure records kept at most; beyond it new addresses are not tracked. */
#define IPCOUNT_FAIL_MAX 1000000

/* Key: the raw address (4 or 16 octets). */
struct ipkey {
	uint8_t  len;
	uint8_t  addr[16];
};

/* 0 or -1 on ENOMEM. */
int ipcount_init(struct ipcount *t, size_t nbucket);
void ipcount_free(struct ipcount *t);

/*
 * Count one more connection from k unless that would exceed max.
 * Returns the new count, 0 when at max (not counted), -1 on ENOMEM.
 */
long ipcount_acquire(struct ipcount *t, const struct ipkey *k, uint32_t max);

/* One connection from k ended (must have been acquired). */
void ipcount_release(struct ipcount *t, const struct ipkey *k);

/*
 * Authentication failure backoff. Failures are counted per key (see
 * ipkey_for_backoff) and forgotten forget_ms after the last one.
 * ipcount_fail records one more and returns the count including it (0 when
 * the table is full, -1 on ENOMEM); old records are swept on the way.
 */
long ipcount_fail(struct ipcount *t, const struct ipkey *k, uint64_t now_ms, uint64_t forget_ms);

/* The failures ipcount_fail has counted for k and not yet forgotten (no change). */
long ipcount_failures(const struct ipcount *t, const struct ipkey *k, uint64_t now_ms,
                      uint64_t forget_ms);

/* The backoff key of a peer: an IPv4 address, or an IPv6 address's /64. */
void ipkey_for_backoff(const struct ipkey *peer, struct ipkey *out);

/*
 * Extra delay in ms after the failures-th failure: base doubled per further
 * failure, at most max (0 when base is 0 or failures is 0).
 */
uint64_t backoff_delay_ms(uint32_t base_ms, uint32_t max_ms, long failures);

struct cidr;
struct sockaddr_storage;

/*
 * 1 when the address in sa lies in one of the n blocks (auth.plaintext_trusted).
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as IPv4.
 */
int cidr_list_contains(const struct cidr *v, size_t n, const struct sockaddr_storage *sa);

#endif
