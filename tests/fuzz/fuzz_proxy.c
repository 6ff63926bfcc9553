/*
 * fuzz_proxy: libFuzzer harness for server/proxy.c, the PROXY protocol v1/v2
 * header parser (the first bytes a load balancer sends). The input is what
 * arrived on the connection.
 *
 * Properties:
 *  - every prefix agrees with the whole: before the header is complete,
 *    PROXY_MORE; from *used on, PROXY_OK with the same *used and addresses;
 *    a PROXY_BAD input is BAD from one octet on and MORE before it;
 *  - *used <= PROXY_HEADER_MAX (107 for v1, which ends with CRLF);
 *  - local: both addresses AF_UNSPEC and zero; otherwise both AF_INET or both
 *    AF_INET6;
 *  - the addresses written again as a canonical v1 line and as a v2 header
 *    parse back to the same result.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/proxy.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char SIG2[12] = "\r\n\r\n\0\r\nQUIT\n";

static int same(const struct proxy_result *a, const struct proxy_result *b)
{
	return a->local == b->local && memcmp(&a->src, &b->src, sizeof a->src) == 0 &&
	    memcmp(&a->dst, &b->dst, sizeof a->dst) == 0;
}

static void check_result(const struct proxy_result *r)
{
	static const struct sockaddr_storage zero;

	if (r->local) {
		FZ_CHECK(memcmp(&r->src, &zero, sizeof zero) == 0 && memcmp(&r->dst, &zero, sizeof zero) == 0,
		    "local result with addresses");
		return;
	}
	FZ_CHECK(r->src.ss_family == r->dst.ss_family &&
	    (r->src.ss_family == AF_INET || r->src.ss_family == AF_INET6),
	    "families %d and %d", r->src.ss_family, r->dst.ss_family);
}

/* The result again as "PROXY TCP4|TCP6 src dst sport dport\r\n". */
static size_t render_v1(const struct proxy_result *r, char *out, size_t cap)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	int v4 = r->src.ss_family == AF_INET, k;
	unsigned sp, dp;

	if (v4) {
		const struct sockaddr_in *a = (const void *)&r->src, *b = (const void *)&r->dst;

		inet_ntop(AF_INET, &a->sin_addr, s, sizeof s);
		inet_ntop(AF_INET, &b->sin_addr, d, sizeof d);
		sp = ntohs(a->sin_port);
		dp = ntohs(b->sin_port);
	} else {
		const struct sockaddr_in6 *a = (const void *)&r->src, *b = (const void *)&r->dst;

		inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof s);
		inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof d);
		sp = ntohs(a->sin6_port);
		dp = ntohs(b->sin6_port);
	}
	k = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", s, d, sp, dp);
	return k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

/* The result again as a v2 PROXY header over STREAM, with no TLV. */
static size_t render_v2(const struct proxy_result *r, unsigned char *out)
{
	size_t w = 16, alen;

	memcpy(out, SIG2, 12);
	out[12] = 0x21;
	if (r->src.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&r->src, *b = (const void *)&r->dst;

		out[13] = 0x11;
		memcpy(out + w, &a->sin_addr, 4);
		memcpy(out + w + 4, &b->sin_addr, 4);
		memcpy(out + w + 8, &a->sin_port, 2);
		memcpy(out + w + 10, &b->sin_port, 2);
		alen = 12;
	} else {
		const struct sockaddr_in6 *a = (const void *)&r->src, *b = (const void *)&r->dst;

		out[13] = 0x21;
		memcpy(out + w, &a->sin6_addr, 16);
		memcpy(out + w + 16, &b->sin6_addr, 16);
		memcpy(out + w + 32, &a->sin6_port, 2);
		memcpy(out + w + 34, &b->sin6_port, 2);
		alen = 36;
	}
	out[14] = 0;
	out[15] = (unsigned char)alen;
	return w + alen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_result r, r2;
	enum proxy_status st, st2;
	unsigned char v2[64];
	char v1[160];
	size_t used = 0, used2, k, n, bad_at = (size_t)-1;

	memset(&r, 0xa5, sizeof r);
	st = proxy_parse(data, size, &used, &r);
	FZ_CHECK(st == PROXY_MORE || st == PROXY_OK || st == PROXY_BAD, "status %d", (int)st);
	if (st == PROXY_OK) {
		FZ_CHECK(used >= 1 && used <= size && used <= PROXY_HEADER_MAX, "used %zu of %zu", used, size);
		if (size >= 6 && memcmp(data, "PROXY ", 6) == 0)
			FZ_CHECK(used <= 107 && data[used - 2] == '\r' && data[used - 1] == '\n',
			    "v1 header of %zu octets", used);
		check_result(&r);
	}
	/* Prefixes: MORE, then the whole's result from the point it is decided. */
	for (k = 0; k <= size && k <= PROXY_HEADER_MAX + 8; k++) {
		memset(&r2, 0x5a, sizeof r2);
		used2 = 0;
		st2 = proxy_parse(data, k, &used2, &r2);
		if (st == PROXY_OK && k >= used) {
			FZ_CHECK(st2 == PROXY_OK && used2 == used && same(&r, &r2),
			    "prefix of %zu: status %d used %zu, whole: OK used %zu", k, (int)st2, used2, used);
		} else if (st2 == PROXY_BAD) {
			if (bad_at == (size_t)-1)
				bad_at = k;
			FZ_CHECK(st == PROXY_BAD, "prefix of %zu is BAD, the whole is %d", k, (int)st);
		} else {
			FZ_CHECK(st2 == PROXY_MORE, "prefix of %zu: status %d before the header ends", k,
			    (int)st2);
			FZ_CHECK(bad_at == (size_t)-1, "prefix of %zu is MORE after BAD at %zu", k, bad_at);
		}
	}
	if (st != PROXY_OK || r.local)
		return 0;
	/* Written again canonically, in both versions: the same result. */
	n = render_v1(&r, v1, sizeof v1);
	FZ_CHECK(n > 0, "render v1");
	st2 = proxy_parse((const unsigned char *)v1, n, &used2, &r2);
	FZ_CHECK(st2 == PROXY_OK && used2 == n && same(&r, &r2), "canonical v1 %.*s: %d", (int)n, v1,
	    (int)st2);
	n = render_v2(&r, v2);
	st2 = proxy_parse(v2, n, &used2, &r2);
	FZ_CHECK(st2 == PROXY_OK && used2 == n && same(&r, &r2), "v2 rendering: %d", (int)st2);
	return 0;
}
