/*
 * proxy: owns the grammar of PROXY protocol v1/v2 headers (HAProxy's proxy-protocol.txt).
 * Pure and stateless: never allocates, never reads past p[n), never trusts a NUL terminator.
 */
#include "server/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "server/strutil.h"

/* v1 line ceiling including CRLF (spec 2.1; its longest TCP6 line is 104 octets). */
#define V1_MAX 107

/* v2: 12-octet signature, ver_cmd, fam, 2-octet length (spec 2.2). */
#define V2_FIXED 16

static const unsigned char v2_sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

/* A read cursor over p[0..n); i only moves forward. */
struct cur {
	const unsigned char *p;
	size_t               n;
	size_t               i;
};

/* Match a literal: BAD on the first differing octet, MORE when the input stops inside it. */
static enum proxy_status lit(struct cur *c, const char *word)
{
	size_t len = strlen(word), k;

	for (k = 0; k < len; k++) {
		if (c->i + k >= c->n)
			return PROXY_MORE;
		if (c->p[c->i + k] != (unsigned char)word[k])
			return PROXY_BAD;
	}
	c->i += len;
	return PROXY_OK;
}

/*
 * Prefix checkers for addresses. Each is fed one octet at a time and answers 0 as soon as
 * no continuation could be a valid address for inet_pton; inet_pton on the finished field
 * stays the final word. They exist so a hostile prefix is refused at its first bad octet.
 */
struct v4_pre {
	unsigned octets;   /* complete octets before the current one */
	unsigned digits;   /* digits in the current octet */
	unsigned val;      /* value of the current octet */
};

static int v4_feed(struct v4_pre *s, unsigned char ch)
{
	if (ch >= '0' && ch <= '9') {
		if (s->digits == 1 && s->val == 0)
			return 0;                      /* leading zero */
		s->val = s->val * 10 + (unsigned)(ch - '0');
		s->digits++;
		return s->val <= 255;
	}
	if (ch == '.') {
		if (s->digits == 0 || s->octets == 3)
			return 0;
		s->octets++;
		s->digits = 0;
		s->val = 0;
		return 1;
	}
	return 0;
}

struct v6_pre {
	unsigned groups;   /* complete 16-bit groups (an embedded IPv4 tail counts 2 when done) */
	unsigned xd;       /* hex digits in the current group */
	int      dcolon;   /* "::" seen */
	int      lead;     /* a leading ':' still waiting for its second ':' */
	int      dec_ok;   /* current group could still be an IPv4 octet */
	unsigned dec_val;  /* its decimal value */
	int      in_v4;    /* inside the dotted IPv4 tail */
	struct v4_pre v4;
};

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Explicit groups may total 8, or at most 7 when "::" stands for at least one zero group. */
static unsigned v6_room(const struct v6_pre *s)
{
	return s->dcolon ? 7 : 8;
}

static int v6_feed(struct v6_pre *s, size_t pos, unsigned char ch)
{
	if (s->in_v4)
		return v4_feed(&s->v4, ch);
	if (s->lead) {
		if (ch != ':')
			return 0;
		s->lead = 0;
		s->dcolon = 1;
		return 1;
	}
	if (hexval(ch) >= 0) {
		if (s->xd == 4 || s->groups + 1 > v6_room(s))
			return 0;
		if (ch > '9' || (s->xd == 1 && s->dec_val == 0))
			s->dec_ok = 0;
		else
			s->dec_val = s->dec_val * 10 + (unsigned)(ch - '0');
		s->xd++;
		return 1;
	}
	if (ch == ':') {
		if (pos == 0) {
			s->lead = 1;
			return 1;
		}
		if (s->xd == 0) {                      /* second ':' of "::" */
			/* the first ':' already left room: groups <= 7 here */
			if (s->dcolon)
				return 0;
			s->dcolon = 1;
			return 1;
		}
		s->groups++;
		s->xd = 0;
		s->dec_ok = 1;
		s->dec_val = 0;
		/* one more group must follow (or "::", which needs room for its zero group) */
		return s->groups + 1 <= v6_room(s);
	}
	if (ch == '.') {
		/* the current group becomes the first IPv4 octet; the tail takes 2 groups and ends the address */
		if (s->xd == 0 || !s->dec_ok || s->dec_val > 255 || s->xd > 3)
			return 0;
		if (s->dcolon ? s->groups + 2 > 7 : s->groups != 6)
			return 0;
		s->in_v4 = 1;
		s->v4.octets = 1;
		s->v4.digits = 0;
		s->v4.val = 0;
		return 1;
	}
	return 0;
}

/*
 * One v1 address field up to its ' '. On OK, *out holds the address in network order.
 * Only octets an address of that family may contain are accepted, so the field is
 * short and free of NUL by the time it is copied out for inet_pton.
 */
static enum proxy_status v1_addr(struct cur *c, int af, void *out)
{
	struct v4_pre s4;
	struct v6_pre s6;
	char buf[INET6_ADDRSTRLEN];
	size_t start = c->i, len;

	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	s6.dec_ok = 1;
	for (;;) {
		unsigned char ch;

		if (c->i >= c->n)
			return PROXY_MORE;
		ch = c->p[c->i];
		len = c->i - start;
		if (ch == ' ')
			break;
		if (len + 1 >= sizeof(buf))
			return PROXY_BAD;
		if (!(af == AF_INET ? v4_feed(&s4, ch) : v6_feed(&s6, len, ch)))
			return PROXY_BAD;
		c->i++;
	}
	if (len == 0)
		return PROXY_BAD;
	memcpy(buf, c->p + start, len);
	buf[len] = '\0';
	if (inet_pton(af, buf, out) != 1)
		return PROXY_BAD;
	c->i++;                                        /* the ' ' */
	return PROXY_OK;
}

/*
 * One v1 port field up to term (' ' or '\r', not consumed): decimal 0..65535 and,
 * per spec 2.1, no heading zeroes ("0" is fine, "080" is not).
 */
static enum proxy_status v1_port(struct cur *c, unsigned char term, uint16_t *out)
{
	size_t start = c->i;
	uint32_t v = 0;

	for (;;) {
		unsigned char ch;

		if (c->i >= c->n)
			return PROXY_MORE;
		ch = c->p[c->i];
		if (ch == term)
			break;
		if (ch < '0' || ch > '9')
			return PROXY_BAD;
		if (c->i > start && c->p[start] == '0')
			return PROXY_BAD;
		v = v * 10 + (uint32_t)(ch - '0');
		if (v > 65535)
			return PROXY_BAD;
		c->i++;
	}
	if (parse_u32((const char *)c->p + start, c->i - start, &v) < 0 || v > 65535)
		return PROXY_BAD;
	*out = (uint16_t)v;
	return PROXY_OK;
}

/* Convenience: stop the v1 parse on anything but OK. */
#define STEP(expr) do { enum proxy_status st_ = (expr); if (st_ != PROXY_OK) return st_; } while (0)

/* "UNKNOWN" then anything up to the first CRLF; a lone CR or LF in it is refused. */
static enum proxy_status v1_unknown_tail(struct cur *c)
{
	for (;;) {
		unsigned char ch;

		if (c->i >= c->n)
			return PROXY_MORE;
		ch = c->p[c->i];
		if (ch == '\n')
			return PROXY_BAD;
		if (ch == '\r')
			return lit(c, "\r\n");
		c->i++;
	}
}

static enum proxy_status v1_body(struct cur *c, struct proxy_result *r)
{
	struct in6_addr a6[2];
	struct in_addr a4[2];
	uint16_t port[2];
	int af;

	STEP(lit(c, "PROXY "));
	if (c->i >= c->n)
		return PROXY_MORE;
	if (c->p[c->i] == 'U') {
		STEP(lit(c, "UNKNOWN"));
		STEP(v1_unknown_tail(c));
		memset(r, 0, sizeof(*r));
		r->local = 1;
		return PROXY_OK;
	}
	STEP(lit(c, "TCP"));
	if (c->i >= c->n)
		return PROXY_MORE;
	if (c->p[c->i] == '4')
		af = AF_INET;
	else if (c->p[c->i] == '6')
		af = AF_INET6;
	else
		return PROXY_BAD;
	c->i++;
	STEP(lit(c, " "));
	STEP(v1_addr(c, af, af == AF_INET ? (void *)&a4[0] : (void *)&a6[0]));
	STEP(v1_addr(c, af, af == AF_INET ? (void *)&a4[1] : (void *)&a6[1]));
	STEP(v1_port(c, ' ', &port[0]));
	c->i++;
	STEP(v1_port(c, '\r', &port[1]));
	STEP(lit(c, "\r\n"));

	memset(r, 0, sizeof(*r));
	if (af == AF_INET) {
		struct sockaddr_in sin[2];
		int k;

		memset(sin, 0, sizeof(sin));
		for (k = 0; k < 2; k++) {
			sin[k].sin_family = AF_INET;
			sin[k].sin_addr = a4[k];
			sin[k].sin_port = htons(port[k]);
		}
		memcpy(&r->src, &sin[0], sizeof(sin[0]));
		memcpy(&r->dst, &sin[1], sizeof(sin[1]));
	} else {
		struct sockaddr_in6 sin6[2];
		int k;

		memset(sin6, 0, sizeof(sin6));
		for (k = 0; k < 2; k++) {
			sin6[k].sin6_family = AF_INET6;
			sin6[k].sin6_addr = a6[k];
			sin6[k].sin6_port = htons(port[k]);
		}
		memcpy(&r->src, &sin6[0], sizeof(sin6[0]));
		memcpy(&r->dst, &sin6[1], sizeof(sin6[1]));
	}
	return PROXY_OK;
}

static enum proxy_status parse_v1(const unsigned char *p, size_t n, size_t *used, struct proxy_result *r)
{
	struct proxy_result tmp;
	struct cur c;
	enum proxy_status st;

	/* Never look past octet 107: a line that has not ended by then is not a header. */
	c.p = p;
	c.n = n < V1_MAX ? n : V1_MAX;
	c.i = 0;
	st = v1_body(&c, &tmp);
	if (st == PROXY_MORE && n >= V1_MAX)
		return PROXY_BAD;
	if (st == PROXY_OK) {
		*used = c.i;
		*r = tmp;
	}
	return st;
}

/* Minimum address block for a v2 family nibble (spec 2.2): INET 12, INET6 36, UNIX 216. */
static size_t v2_addr_len(unsigned fam)
{
	switch (fam) {
	case 0x1: return 12;
	case 0x2: return 36;
	case 0x3: return 216;
	default:  return 0;
	}
}

static enum proxy_status parse_v2(const unsigned char *p, size_t n, size_t *used, struct proxy_result *r)
{
	size_t k, len;
	unsigned ver, cmd, fam, proto;
	const unsigned char *a;

	for (k = 0; k < sizeof(v2_sig); k++) {
		if (k >= n)
			return PROXY_MORE;
		if (p[k] != v2_sig[k])
			return PROXY_BAD;
	}
	if (n < 13)
		return PROXY_MORE;
	ver = p[12] >> 4;
	cmd = p[12] & 0x0F;
	if (ver != 2 || cmd > 1)
		return PROXY_BAD;
	if (n < 14)
		return PROXY_MORE;
	fam = p[13] >> 4;
	proto = p[13] & 0x0F;
	/* LOCAL ignores the family byte; PROXY refuses the values the spec leaves unassigned. */
	if (cmd == 1 && (fam > 3 || proto > 2))
		return PROXY_BAD;
	if (n < V2_FIXED)
		return PROXY_MORE;
	len = ((size_t)p[14] << 8) | p[15];
	if (V2_FIXED + len > PROXY_HEADER_MAX)
		return PROXY_BAD;
	if (cmd == 1 && len < v2_addr_len(fam))
		return PROXY_BAD;
	if (n < V2_FIXED + len)
		return PROXY_MORE;

	/* Complete. Whatever follows the addresses (TLVs) is skipped unread. */
	memset(r, 0, sizeof(*r));
	*used = V2_FIXED + len;
	a = p + V2_FIXED;
	if (cmd == 1 && p[13] == 0x11) {
		struct sockaddr_in sin[2];

		memset(sin, 0, sizeof(sin));
		sin[0].sin_family = AF_INET;
		sin[1].sin_family = AF_INET;
		memcpy(&sin[0].sin_addr, a, 4);
		memcpy(&sin[1].sin_addr, a + 4, 4);
		memcpy(&sin[0].sin_port, a + 8, 2);
		memcpy(&sin[1].sin_port, a + 10, 2);
		memcpy(&r->src, &sin[0], sizeof(sin[0]));
		memcpy(&r->dst, &sin[1], sizeof(sin[1]));
	} else if (cmd == 1 && p[13] == 0x21) {
		struct sockaddr_in6 sin6[2];

		memset(sin6, 0, sizeof(sin6));
		sin6[0].sin6_family = AF_INET6;
		sin6[1].sin6_family = AF_INET6;
		memcpy(&sin6[0].sin6_addr, a, 16);
		memcpy(&sin6[1].sin6_addr, a + 16, 16);
		memcpy(&sin6[0].sin6_port, a + 32, 2);
		memcpy(&sin6[1].sin6_port, a + 34, 2);
		memcpy(&r->src, &sin6[0], sizeof(sin6[0]));
		memcpy(&r->dst, &sin6[1], sizeof(sin6[1]));
	} else {
		/* LOCAL, or PROXY for UNSPEC/UNIX/UDP: keep the connection's own addresses. */
		r->local = 1;
	}
	return PROXY_OK;
}

enum proxy_status proxy_parse(const unsigned char *p, size_t n, size_t *used, struct proxy_result *r)
{
	if (n == 0)
		return PROXY_MORE;
	if (p[0] == 'P')
		return parse_v1(p, n, used, r);
	if (p[0] == v2_sig[0])
		return parse_v2(p, n, used, r);
	return PROXY_BAD;
}
