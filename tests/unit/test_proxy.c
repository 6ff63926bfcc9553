/*
 * Unit tests for server/proxy.c: PROXY protocol v1/v2 headers, good and hostile, fed whole,
 * octet by octet and followed by client bytes. Tests only through server/proxy.h.
 * Every parse gets a heap copy of exactly n octets, so ASan catches any read past p[n).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "server/proxy.h"

#define USED_SENTINEL ((size_t)0xdeadbeef)

static const unsigned char SIG[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

static const char CLIENT[] = "CAPA\r\nUSER bob\r\n";

/*
 * Parse a private copy of h[0..k). On anything but OK, checks that neither *used
 * nor *r was touched (the header promises nothing is set on MORE).
 */
static enum proxy_status parse_n(const unsigned char *h, size_t k, size_t *used, struct proxy_result *r)
{
	struct proxy_result before;
	unsigned char *copy = malloc(k ? k : 1);
	enum proxy_status st;

	assert_non_null(copy);
	if (k)
		memcpy(copy, h, k);
	memset(r, 0xA5, sizeof(*r));
	before = *r;
	*used = USED_SENTINEL;
	st = proxy_parse(copy, k, used, r);
	free(copy);
	if (st != PROXY_OK) {
		assert_true(*used == USED_SENTINEL);
		assert_memory_equal(r, &before, sizeof(before));
	}
	return st;
}

/*
 * h[0..len) is a complete header: every proper prefix is MORE, the whole is OK with
 * used == len, and with client bytes (or a second header) after it used stays len.
 */
static void expect_good(const unsigned char *h, size_t len, struct proxy_result *out)
{
	unsigned char buf[2 * PROXY_HEADER_MAX + sizeof(CLIENT)];
	struct proxy_result r, r2;
	size_t k, used;

	assert_true(len <= PROXY_HEADER_MAX);
	for (k = 0; k < len; k++) {
		if (parse_n(h, k, &used, &r) != PROXY_MORE)
			fail_msg("prefix of %zu/%zu octets is not PROXY_MORE", k, len);
	}
	assert_int_equal(parse_n(h, len, &used, &r), PROXY_OK);
	assert_int_equal(used, len);

	memcpy(buf, h, len);
	memcpy(buf + len, CLIENT, sizeof(CLIENT) - 1);
	for (k = 1; k < sizeof(CLIENT); k++) {
		assert_int_equal(parse_n(buf, len + k, &used, &r2), PROXY_OK);
		assert_int_equal(used, len);
		assert_memory_equal(&r, &r2, sizeof(r));
	}
	/* a header pipelined right behind the first one is client data too */
	memcpy(buf + len, h, len);
	assert_int_equal(parse_n(buf, 2 * len, &used, &r2), PROXY_OK);
	assert_int_equal(used, len);
	if (out)
		*out = r;
}

/* Every prefix shorter than at is MORE; from at octets on, every prefix up to len is BAD. */
static void expect_bad_at(const unsigned char *h, size_t len, size_t at)
{
	struct proxy_result r;
	size_t k, used;

	assert_true(at >= 1 && at <= len);
	for (k = 0; k < at; k++) {
		if (parse_n(h, k, &used, &r) != PROXY_MORE)
			fail_msg("prefix of %zu octets is not PROXY_MORE (BAD expected at %zu)", k, at);
	}
	for (k = at; k <= len; k++) {
		if (parse_n(h, k, &used, &r) != PROXY_BAD)
			fail_msg("prefix of %zu octets is not PROXY_BAD (BAD expected at %zu)", k, at);
	}
}

static void good_str(const char *s, struct proxy_result *out)
{
	expect_good((const unsigned char *)s, strlen(s), out);
}

static void check_v4(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
	struct sockaddr_in sin;
	struct in_addr want;

	assert_int_equal(ss->ss_family, AF_INET);
	memcpy(&sin, ss, sizeof(sin));
	assert_int_equal(inet_pton(AF_INET, addr, &want), 1);
	assert_memory_equal(&sin.sin_addr, &want, sizeof(want));
	assert_int_equal(ntohs(sin.sin_port), port);
}

static void check_v6(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
	struct sockaddr_in6 sin6;
	struct in6_addr want;

	assert_int_equal(ss->ss_family, AF_INET6);
	memcpy(&sin6, ss, sizeof(sin6));
	assert_int_equal(inet_pton(AF_INET6, addr, &want), 1);
	assert_memory_equal(&sin6.sin6_addr, &want, sizeof(want));
	assert_int_equal(ntohs(sin6.sin6_port), port);
}

/* ---- v1 ---- */

static void test_v1_tcp4(void **state)
{
	struct proxy_result r;

	(void)state;
	good_str("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &r);
	assert_int_equal(r.local, 0);
	check_v4(&r.src, "192.168.0.1", 56324);
	check_v4(&r.dst, "192.168.0.11", 443);

	/* the longest TCP4 line (spec: 56 octets) and the port boundaries */
	good_str("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &r);
	assert_int_equal(strlen("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), 56);
	check_v4(&r.src, "255.255.255.255", 65535);
	check_v4(&r.dst, "255.255.255.255", 65535);
	good_str("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", &r);
	check_v4(&r.src, "0.0.0.0", 0);
	check_v4(&r.dst, "10.0.0.1", 0);
	good_str("PROXY TCP4 1.2.3.4 5.6.7.8 10 100\r\n", &r);
	check_v4(&r.src, "1.2.3.4", 10);
	check_v4(&r.dst, "5.6.7.8", 100);
}

static void test_v1_tcp6(void **state)
{
	static const char *const forms[] = {
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1::8", "fe80::1:2", "ABCD:ef01::", "0:0:0:0:0:0:0:0", "0001:0db8:0000::0001",
		"1:2:3:4:5:6:1.2.3.4", "::ffff:1.2.3.4", "1:2:3:4:5::1.2.3.4", "::1.2.3.4",
		"1::0.0.0.0", "::255.255.255.255", "1:2::3:4",
	};
	struct proxy_result r;
	char line[160];
	size_t i;

	(void)state;
	good_str("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n", &r);
	assert_int_equal(r.local, 0);
	check_v6(&r.src, "2001:db8::1", 0);
	check_v6(&r.dst, "::ffff:10.0.0.1", 65535);

	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		int w = snprintf(line, sizeof(line), "PROXY TCP6 %s %s 110 995\r\n", forms[i], forms[i]);

		assert_true(w > 0 && (size_t)w < sizeof(line));
		good_str(line, &r);
		check_v6(&r.src, forms[i], 110);
		check_v6(&r.dst, forms[i], 995);
	}
}

static void test_v1_unknown(void **state)
{
	struct proxy_result r;

	(void)state;
	good_str("PROXY UNKNOWN\r\n", &r);
	assert_int_equal(r.local, 1);
	good_str("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", &r);
	assert_int_equal(r.local, 1);
	/* anything up to the CRLF is ignored, NUL included */
	expect_good((const unsigned char *)"PROXY UNKNOWN x\0y\r\n", 19, &r);
	assert_int_equal(r.local, 1);
	good_str("PROXY UNKNOWNjunk\r\n", &r);
	assert_int_equal(r.local, 1);
}

/* The 107-octet ceiling (spec 2.1) holds whatever the line says; pairs: fits / one over. */
static void test_v1_length_limit(void **state)
{
	/* 11 + 45 + 1 + 39 + 1 + 8 + 2 = 107 */
	static const char fits[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
	                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 80\r\n";
	static const char over[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
	                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 443\r\n";
	/* the spec's longest TCP6 line: 104 octets */
	static const char all_f[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	                            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	unsigned char u[200];
	struct proxy_result r;

	(void)state;
	assert_int_equal(strlen(fits), 107);
	assert_int_equal(strlen(over), 108);
	assert_int_equal(strlen(all_f), 104);
	good_str(fits, &r);
	check_v6(&r.src, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535);
	check_v6(&r.dst, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80);
	expect_bad_at((const unsigned char *)over, strlen(over), 107);
	good_str(all_f, NULL);

	/* UNKNOWN: 13 + 92 + 2 = 107 fits, 93 octets of junk do not */
	memcpy(u, "PROXY UNKNOWN", 13);
	memset(u + 13, 'x', 92);
	memcpy(u + 105, "\r\n", 2);
	expect_good(u, 107, &r);
	assert_int_equal(r.local, 1);
	memset(u + 13, 'x', 93);
	memcpy(u + 106, "\r\n", 2);
	expect_bad_at(u, 108, 107);
	/* and a line that never ends */
	memset(u + 13, 'x', sizeof(u) - 13);
	expect_bad_at(u, sizeof(u), 107);
}

/*
 * Each case is ok + bad: ok is a valid prefix, bad's first octet is the one that makes it
 * invalid, so the parser must say MORE up to ok and BAD from that octet on.
 */
struct bad_case {
	const char *ok;
	const char *bad;
};

static const struct bad_case v1_bad[] = {
	{ "", "GET / HTTP/1.0\r\n" },
	{ "", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "", " PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY", "\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY", "\r\n" },
	/* family */
	{ "PROXY ", " TCP4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY ", "tcp4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP", "5 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP", " 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4", "\r\n" },
	{ "PROXY TCP4 ", " 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY ", "XCP4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY U", "DP4 1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY UNK", "OWN\r\n" },
	{ "PROXY UNKNOW", "\r\n" },
	/* addresses in the wrong family */
	{ "PROXY TCP4 ", "::1 ::1 1 2\r\n" },
	{ "PROXY TCP4 ", "::ffff:1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8", "::1 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 ", "fe80::1 1 2\r\n" },
	{ "PROXY TCP6 1", ".2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP6 ::1 5", ".6.7.8 1 2\r\n" },
	/* IPv4 syntax */
	{ "PROXY TCP4 1.2.3.25", "6 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.99", "9 1 2\r\n" },
	{ "PROXY TCP4 0", "1.2.3.4 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.0", "0 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4", ".5 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.", ".2.3 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 ", ".1.2.3 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3", " 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.", " 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4", "\t5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.", "x 5.6.7.8 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8", "\r\n" },
	/* IPv6 syntax */
	{ "PROXY TCP6 :", "1::1 ::1 1 2\r\n" },
	{ "PROXY TCP6 ::", ": ::1 1 2\r\n" },
	{ "PROXY TCP6 1::2:", ":3 ::1 1 2\r\n" },
	{ "PROXY TCP6 1234", "5::1 ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:6:7:8", ":9 ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:6:7:8", "::1 ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:6:7::", "8 ::1 1 2\r\n" },
	{ "PROXY TCP6 1::2:3:4:5:6:7", ":8 ::1 1 2\r\n" },
	{ "PROXY TCP6 ", "g::1 ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:6:7", " ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2", " ::1 1 2\r\n" },
	{ "PROXY TCP6 1:", " ::1 1 2\r\n" },
	{ "PROXY TCP6 :", " ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:6:1.2.3", " ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:1", ".2.3.4 ::1 1 2\r\n" },
	{ "PROXY TCP6 ::ffff:01", ".2.3.4 ::1 1 2\r\n" },
	{ "PROXY TCP6 ::ffff:a", ".2.3.4 ::1 1 2\r\n" },
	{ "PROXY TCP6 ::ffff:1.2.3.4", ":1 ::1 1 2\r\n" },
	{ "PROXY TCP6 ::ffff:1.2.3.4", ".5 ::1 1 2\r\n" },
	{ "PROXY TCP6 1:2:3:4:5:6:7:1", ".2.3.4 ::1 1 2\r\n" },
	/* ports: 0..65535, decimal, no heading zeroes (spec 2.1), single spaces */
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 6553", "6 80\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 80 6553", "6\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 9999", "9 80\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 0", "80 80\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 80 0", "0\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 ", "+80 80\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 ", "-1 80\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 ", " 1 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 ", " 2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1", "\t2\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1", "\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 ", "\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2", " 3\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 0", "x1 2\r\n" },
	/* line ending: CRLF only */
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2", " \r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "\r\n" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "USER\r\n" },
	{ "PROXY UNKNOWN", "\n" },
	{ "PROXY UNKNOWN 1.2.3.4", "\n" },
	{ "PROXY UNKNOWN\r", "\r\n" },
	{ "PROXY UNKNOWN\r", " \r\n" },
};

static void test_v1_malformed(void **state)
{
	char buf[256];
	size_t i, a, b;

	(void)state;
	for (i = 0; i < sizeof(v1_bad) / sizeof(v1_bad[0]); i++) {
		a = strlen(v1_bad[i].ok);
		b = strlen(v1_bad[i].bad);
		assert_true(a + b < sizeof(buf));
		memcpy(buf, v1_bad[i].ok, a);
		memcpy(buf + a, v1_bad[i].bad, b);
		expect_bad_at((const unsigned char *)buf, a + b, a + 1);
	}
	/* NUL inside an address, a port, after PROXY */
	expect_bad_at((const unsigned char *)"PROXY TCP4 1.2\0.3.4 5.6.7.8 1 2\r\n", 33, 15);
	expect_bad_at((const unsigned char *)"PROXY TCP4 1.2.3.4 5.6.7.8 1\0 2\r\n", 33, 29);
	expect_bad_at((const unsigned char *)"PROXY\0TCP4", 10, 6);
	expect_bad_at((const unsigned char *)"\0PROXY", 6, 1);
	/* a header that just stops is never anything but MORE */
	{
		static const char cut[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2";
		struct proxy_result r;
		size_t k, used;

		for (k = 0; k <= strlen(cut); k++)
			assert_int_equal(parse_n((const unsigned char *)cut, k, &used, &r), PROXY_MORE);
	}
}

/* ---- v2 ---- */

/* Fixed part with an explicit length field, then blen body octets. Returns the octets written. */
static size_t v2_build(unsigned char *buf, unsigned char ver_cmd, unsigned char fam, unsigned len,
                       const unsigned char *body, size_t blen)
{
	memcpy(buf, SIG, 12);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (unsigned char)(len >> 8);
	buf[15] = (unsigned char)(len & 0xFF);
	if (blen)
		memcpy(buf + 16, body, blen);
	return 16 + blen;
}

static size_t v2_hdr(unsigned char *buf, unsigned char ver_cmd, unsigned char fam,
                     const unsigned char *body, size_t blen)
{
	return v2_build(buf, ver_cmd, fam, (unsigned)blen, body, blen);
}

/* 192.0.2.1:56324 -> 198.51.100.7:995 */
static const unsigned char ADDR4[12] = {
	192, 0, 2, 1, 198, 51, 100, 7, 0xDC, 0x04, 0x03, 0xE3
};

/* [2001:db8::1]:1 -> [2001:db8::2]:110 */
static const unsigned char ADDR6[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
	0x00, 0x01, 0x00, 0x6E
};

/* ALPN "pop3", NOOP with 3 octets, and an SSL TLV with a nested version sub-TLV. */
static const unsigned char TLVS[] = {
	0x01, 0x00, 0x04, 'p', 'o', 'p', '3',
	0x04, 0x00, 0x03, 0, 0, 0,
	0x20, 0x00, 0x0B, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x03, 'T', 'L', 'S',
};

static void test_v2_inet(void **state)
{
	unsigned char body[64], h[128];
	struct proxy_result r;
	size_t len;

	(void)state;
	len = v2_hdr(h, 0x21, 0x11, ADDR4, sizeof(ADDR4));
	assert_int_equal(len, 28);
	expect_good(h, len, &r);
	assert_int_equal(r.local, 0);
	check_v4(&r.src, "192.0.2.1", 56324);
	check_v4(&r.dst, "198.51.100.7", 995);

	memcpy(body, ADDR4, sizeof(ADDR4));
	memcpy(body + sizeof(ADDR4), TLVS, sizeof(TLVS));
	len = v2_hdr(h, 0x21, 0x11, body, sizeof(ADDR4) + sizeof(TLVS));
	expect_good(h, len, &r);
	assert_int_equal(r.local, 0);
	check_v4(&r.src, "192.0.2.1", 56324);
	check_v4(&r.dst, "198.51.100.7", 995);
}

static void test_v2_inet6(void **state)
{
	unsigned char body[128], h[160];
	struct proxy_result r;
	size_t len;

	(void)state;
	len = v2_hdr(h, 0x21, 0x21, ADDR6, sizeof(ADDR6));
	assert_int_equal(len, 52);
	expect_good(h, len, &r);
	assert_int_equal(r.local, 0);
	check_v6(&r.src, "2001:db8::1", 1);
	check_v6(&r.dst, "2001:db8::2", 110);

	memcpy(body, ADDR6, sizeof(ADDR6));
	memcpy(body + sizeof(ADDR6), TLVS, sizeof(TLVS));
	len = v2_hdr(h, 0x21, 0x21, body, sizeof(ADDR6) + sizeof(TLVS));
	expect_good(h, len, &r);
	check_v6(&r.src, "2001:db8::1", 1);
	check_v6(&r.dst, "2001:db8::2", 110);
}

static void test_v2_local(void **state)
{
	unsigned char h[128];
	struct proxy_result r;
	size_t len;

	(void)state;
	/* the health-check form: LOCAL, UNSPEC, no address block */
	len = v2_hdr(h, 0x20, 0x00, NULL, 0);
	assert_int_equal(len, 16);
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	/* LOCAL ignores the family byte and whatever addresses follow */
	len = v2_hdr(h, 0x20, 0x11, ADDR4, sizeof(ADDR4));
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x20, 0xFF, ADDR4, 3);
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x20, 0x21, TLVS, sizeof(TLVS));
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
}

/* PROXY for a family/protocol we do not carry: accepted, keep the connection's own addresses. */
static void test_v2_unknown_family(void **state)
{
	unsigned char body[300], h[400];
	struct proxy_result r;
	size_t len;

	(void)state;
	memset(body, 0x5A, sizeof(body));
	len = v2_hdr(h, 0x21, 0x00, NULL, 0);                 /* UNSPEC */
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x21, 0x00, TLVS, sizeof(TLVS));
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x21, 0x12, ADDR4, sizeof(ADDR4));    /* UDP over IPv4 */
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x21, 0x22, ADDR6, sizeof(ADDR6));    /* UDP over IPv6 */
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x21, 0x10, ADDR4, sizeof(ADDR4));    /* INET, UNSPEC protocol */
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x21, 0x31, body, 216);               /* UNIX stream: 2 * 108 */
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
	len = v2_hdr(h, 0x21, 0x32, body, 216);               /* UNIX dgram */
	expect_good(h, len, &r);
	assert_int_equal(r.local, 1);
}

static void test_v2_malformed(void **state)
{
	unsigned char h[PROXY_HEADER_MAX + 64], body[PROXY_HEADER_MAX];
	struct proxy_result r;
	size_t len, k, used;

	(void)state;
	memset(body, 0, sizeof(body));
	/* every signature octet, flipped, is refused at once */
	for (k = 0; k < 12; k++) {
		len = v2_hdr(h, 0x21, 0x11, ADDR4, sizeof(ADDR4));
		h[k] ^= 0x80;
		expect_bad_at(h, len, k + 1);
	}
	/* the v1/v2 look-alike "\r\n\r\n" then garbage */
	expect_bad_at((const unsigned char *)"\r\n\r\nQUIT\r\n", 10, 5);

	/* version: only 2 */
	len = v2_hdr(h, 0x11, 0x11, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 13);
	len = v2_hdr(h, 0x31, 0x11, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 13);
	len = v2_hdr(h, 0x01, 0x11, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 13);
	/* command: LOCAL or PROXY only */
	len = v2_hdr(h, 0x22, 0x11, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 13);
	len = v2_hdr(h, 0x2F, 0x11, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 13);
	/* unassigned family or protocol nibble with PROXY: "must be rejected" (spec 2.2) */
	len = v2_hdr(h, 0x21, 0x41, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 14);
	len = v2_hdr(h, 0x21, 0xF1, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 14);
	len = v2_hdr(h, 0x21, 0x13, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 14);

	/* truncated address block: the length field is smaller than the family needs */
	len = v2_hdr(h, 0x21, 0x11, ADDR4, 11);
	expect_bad_at(h, len, 16);
	len = v2_hdr(h, 0x21, 0x11, NULL, 0);
	expect_bad_at(h, len, 16);
	len = v2_hdr(h, 0x21, 0x21, ADDR6, 35);
	expect_bad_at(h, len, 16);
	len = v2_hdr(h, 0x21, 0x21, ADDR4, sizeof(ADDR4));   /* an IPv4 block under INET6 */
	expect_bad_at(h, len, 16);
	len = v2_hdr(h, 0x21, 0x31, body, 215);
	expect_bad_at(h, len, 16);
	/* ... fits exactly / one octet short, for both families */
	len = v2_hdr(h, 0x21, 0x11, ADDR4, 12);
	expect_good(h, len, NULL);
	len = v2_hdr(h, 0x21, 0x21, ADDR6, 36);
	expect_good(h, len, NULL);

	/* length: 16 + len must fit PROXY_HEADER_MAX */
	memcpy(body, ADDR4, sizeof(ADDR4));
	len = v2_hdr(h, 0x21, 0x11, body, PROXY_HEADER_MAX - 16);
	assert_int_equal(len, PROXY_HEADER_MAX);
	expect_good(h, len, &r);
	check_v4(&r.src, "192.0.2.1", 56324);
	len = v2_hdr(h, 0x21, 0x11, body, PROXY_HEADER_MAX - 15);
	expect_bad_at(h, len, 16);
	len = v2_build(h, 0x21, 0x11, 0xFFFF, ADDR4, sizeof(ADDR4));
	expect_bad_at(h, len, 16);
	len = v2_build(h, 0x20, 0x00, 0xFFFF, NULL, 0);      /* LOCAL is bounded too */
	expect_bad_at(h, len, 16);

	/* a header that just stops (length says 20, 19 arrive) is only ever MORE */
	len = v2_build(h, 0x21, 0x11, 20, body, 19);
	for (k = 0; k <= len; k++)
		assert_int_equal(parse_n(h, k, &used, &r), PROXY_MORE);
}

/* ---- randomised agreement with inet_pton ---- */

static uint32_t rng_state = 0x9E3779B9u;

static uint32_t rnd(void)
{
	uint32_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	rng_state = x;
	return x;
}

/*
 * Put s as the source address of a TCP4/TCP6 line and check that the parser agrees
 * with inet_pton: OK with the same address (and every prefix MORE) when it is valid,
 * otherwise BAD, and BAD stays BAD for every longer prefix.
 */
static void agree(int af, const char *s)
{
	unsigned char want[16];
	char line[160];
	struct proxy_result r;
	size_t len, k, used;
	int valid, w, seen_bad = 0;

	w = snprintf(line, sizeof(line), "PROXY %s %s %s 1 2\r\n",
	             af == AF_INET ? "TCP4" : "TCP6", s, af == AF_INET ? "1.2.3.4" : "::1");
	assert_true(w > 0 && (size_t)w < sizeof(line));
	len = (size_t)w;
	valid = s[0] != '\0' && inet_pton(af, s, want) == 1;
	if (valid) {
		expect_good((const unsigned char *)line, len, &r);
		if (af == AF_INET)
			check_v4(&r.src, s, 1);
		else
			check_v6(&r.src, s, 1);
		return;
	}
	for (k = 0; k <= len; k++) {
		enum proxy_status st = parse_n((const unsigned char *)line, k, &used, &r);

		if (st == PROXY_OK)
			fail_msg("accepted invalid address \"%s\" at %zu octets", s, k);
		if (seen_bad && st != PROXY_BAD)
			fail_msg("\"%s\": BAD then MORE at %zu octets", s, k);
		seen_bad |= st == PROXY_BAD;
	}
	if (!seen_bad)
		fail_msg("invalid address \"%s\" not refused", s);
}

static void mutate(char *s, size_t cap, const char *alphabet)
{
	size_t n = strlen(s), na = strlen(alphabet), pos;
	unsigned op = rnd() % 3;

	pos = n ? rnd() % (n + 1) : 0;
	if (op == 0 && n + 1 < cap) {                  /* insert */
		memmove(s + pos + 1, s + pos, n - pos + 1);
		s[pos] = alphabet[rnd() % na];
	} else if (op == 1 && pos < n) {               /* delete */
		memmove(s + pos, s + pos + 1, n - pos);
	} else if (pos < n) {                          /* replace */
		s[pos] = alphabet[rnd() % na];
	}
}

static void test_v1_addresses_agree_with_inet_pton(void **state)
{
	static const char hex6[] = "0123456789abcdefABCDEF:.g";
	static const char dec4[] = "0123456789.";
	char s[64];
	unsigned char a[16];
	int i, j, m;

	(void)state;
	for (i = 0; i < 3000; i++) {
		/* a random IPv6 address with random zero runs, in inet_ntop's forms */
		for (j = 0; j < 16; j++)
			a[j] = (unsigned char)((rnd() % 3) ? 0 : rnd());
		if (rnd() % 4 == 0) {                  /* ::ffff:a.b.c.d */
			memset(a, 0, 10);
			a[10] = a[11] = 0xFF;
		}
		assert_non_null(inet_ntop(AF_INET6, a, s, sizeof(s)));
		agree(AF_INET6, s);
		for (m = 0; m < 4; m++) {
			mutate(s, 46, hex6);
			agree(AF_INET6, s);
		}

		assert_non_null(inet_ntop(AF_INET, a + 12, s, sizeof(s)));
		agree(AF_INET, s);
		for (m = 0; m < 3; m++) {
			mutate(s, 16, dec4);
			agree(AF_INET, s);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_length_limit),
		cmocka_unit_test(test_v1_malformed),
		cmocka_unit_test(test_v1_addresses_agree_with_inet_pton),
		cmocka_unit_test(test_v2_inet),
		cmocka_unit_test(test_v2_inet6),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_unknown_family),
		cmocka_unit_test(test_v2_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
