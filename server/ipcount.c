/*
 * ipcount: per-address connection counters in a chained hash table.
 * Nodes exist only while their count is above zero.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/config.h"
#include "server/ipcount.h"

struct ipcount_node {
	struct ipcount_node *next;
	struct ipkey         key;
	uint32_t             count;        /* live connections */
	uint32_t             fails;        /* authentication failures not yet forgotten */
	uint64_t             last_fail_ms;
};

static size_t
ipkey_hash(const struct ipkey *k, size_t nbucket)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
	size_t i;

	for (i = 0; i < k->len; i++) {
		h ^= k->addr[i];
		h *= 1099511628211ULL;
	}
	return (size_t)(h & (nbucket - 1));
}

static int
ipkey_eq(const struct ipkey *a, const struct ipkey *b)
{
	return a->len == b->len && memcmp(a->addr, b->addr, a->len) == 0;
}

int
ipcount_init(struct ipcount *t, size_t nbucket)
{
	size_t n = 16;

	while (n < nbucket)
		n <<= 1;
	t->bucket = calloc(n, sizeof *t->bucket);
	if (t->bucket == NULL)
		return -1;
	t->nbucket = n;
	t->n = 0;
	return 0;
}

void
ipcount_free(struct ipcount *t)
{
	size_t i;

	if (t->bucket == NULL)
		return;
	for (i = 0; i < t->nbucket; i++) {
		struct ipcount_node *p = t->bucket[i], *next;
		for (; p != NULL; p = next) {
			next = p->next;
			free(p);
		}
	}
	free(t->bucket);
	t->bucket = NULL;
	t->n = 0;
}

static struct ipcount_node *
node_new(struct ipcount *t, const struct ipkey *k, size_t h)
{
	struct ipcount_node *p = calloc(1, sizeof *p);

	if (p == NULL)
		return NULL;
	p->key = *k;
	p->next = t->bucket[h];
	t->bucket[h] = p;
	t->n++;
	return p;
}

long
ipcount_acquire(struct ipcount *t, const struct ipkey *k, uint32_t max)
{
	size_t h = ipkey_hash(k, t->nbucket);
	struct ipcount_node *p;

	for (p = t->bucket[h]; p != NULL; p = p->next) {
		if (ipkey_eq(&p->key, k)) {
			if (p->count >= max)
				return 0;
			return (long)++p->count;
		}
	}
	if (max == 0)
		return 0;
	p = node_new(t, k, h);
	if (p == NULL)
		return -1;
	p->count = 1;
	return 1;
}

void
ipcount_release(struct ipcount *t, const struct ipkey *k)
{
	struct ipcount_node **pp = &t->bucket[ipkey_hash(k, t->nbucket)];

	for (; *pp != NULL; pp = &(*pp)->next) {
		struct ipcount_node *p = *pp;
		if (!ipkey_eq(&p->key, k))
			continue;
		if (--p->count == 0 && p->fails == 0) {
			*pp = p->next;
			free(p);
			t->n--;
		}
		return;
	}
}

static int
prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ net[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

int
cidr_list_contains(const struct cidr *v, size_t n, const struct sockaddr_storage *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *a4 = NULL, *a6 = NULL;
	size_t i;

	if (sa->ss_family == AF_INET) {
		a4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->ss_family == AF_INET6) {
		a6 = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (memcmp(a6, mapped, sizeof mapped) == 0)
			a4 = a6 + 12;
	}
	for (i = 0; i < n; i++) {
		if (v[i].family == AF_INET && a4 != NULL && prefix_match(a4, v[i].addr, v[i].prefix))
			return 1;
		if (v[i].family == AF_INET6 && a6 != NULL && prefix_match(a6, v[i].addr, v[i].prefix))
			return 1;
	}
	return 0;
}

/* Forget failure records older than forget_ms; free nodes left with nothing. */
static void
forget_old(struct ipcount *t, uint64_t now_ms, uint64_t forget_ms)
{
	size_t i;

	for (i = 0; i < t->nbucket; i++) {
		struct ipcount_node **pp = &t->bucket[i];
		while (*pp != NULL) {
			struct ipcount_node *p = *pp;
			if (p->fails > 0 && now_ms - p->last_fail_ms >= forget_ms)
				p->fails = 0;
			if (p->count == 0 && p->fails == 0) {
				*pp = p->next;
				free(p);
				t->n--;
			} else {
				pp = &p->next;
			}
		}
	}
	t->last_forget_ms = now_ms;
}

long
ipcount_fail(struct ipcount *t, const struct ipkey *k, uint64_t now_ms, uint64_t forget_ms)
{
	size_t h;
	struct ipcount_node *p;

	if (now_ms - t->last_forget_ms >= forget_ms)
		forget_old(t, now_ms, forget_ms);
	h = ipkey_hash(k, t->nbucket);
	for (p = t->bucket[h]; p != NULL; p = p->next)
		if (ipkey_eq(&p->key, k))
			break;
	if (p == NULL) {
		if (t->n >= IPCOUNT_FAIL_MAX)
			return 0;
		p = node_new(t, k, h);
		if (p == NULL)
			return -1;
	}
	if (p->fails > 0 && now_ms - p->last_fail_ms >= forget_ms)
		p->fails = 0;
	if (p->fails < UINT32_MAX)
		p->fails++;
	p->last_fail_ms = now_ms;
	return (long)p->fails;
}

long
ipcount_failures(const struct ipcount *t, const struct ipkey *k, uint64_t now_ms,
                 uint64_t forget_ms)
{
	const struct ipcount_node *p;

	for (p = t->bucket[ipkey_hash(k, t->nbucket)]; p != NULL; p = p->next)
		if (ipkey_eq(&p->key, k))
			return p->fails > 0 && now_ms - p->last_fail_ms < forget_ms ? (long)p->fails : 0;
	return 0;
}

void
ipkey_for_backoff(const struct ipkey *peer, struct ipkey *out)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(out, 0, sizeof *out);
	if (peer->len == 16 && memcmp(peer->addr, mapped, sizeof mapped) == 0) {
		out->len = 4;
		memcpy(out->addr, peer->addr + 12, 4);
	} else if (peer->len == 16) {
		out->len = 8;   /* one IPv6 /64: what a single subscriber usually gets */
		memcpy(out->addr, peer->addr, 8);
	} else {
		*out = *peer;
	}
}

uint64_t
backoff_delay_ms(uint32_t base_ms, uint32_t max_ms, long failures)
{
	uint64_t d = base_ms;
	long i;

	if (base_ms == 0 || failures <= 0)
		return 0;
	for (i = 1; i < failures && d < max_ms; i++)
		d *= 2;
	return d < max_ms ? d : max_ms;
}
