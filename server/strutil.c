/*
 * strutil: strict number parsing, slice comparison/tokenizing, log escaping, wiping, hex.
 * Pure helpers: never allocates, never reads past an explicit length, never trusts a NUL.
 */
#include "server/strutil.h"

#include <stdint.h>
#include <string.h>

/* Decimal digits only, at least one, value <= max. *out is untouched on failure. */
static int parse_dec(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (p == NULL || n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned d = (unsigned char)p[i] - (unsigned)'0';

		if (d > 9)
			return -1;
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int parse_u32(const char *p, size_t n, uint32_t *out)
{
	uint64_t v;

	if (parse_dec(p, n, UINT32_MAX, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int parse_u64(const char *p, size_t n, uint64_t *out)
{
	return parse_dec(p, n, UINT64_MAX, out);
}

/* ASCII-only lower case: independent of the locale. */
static unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

int slice_eq_nocase(struct slice s, const char *word)
{
	size_t i;

	for (i = 0; i < s.n; i++) {
		if (word[i] == '\0')
			return 0;
		if (ascii_lower((unsigned char)s.p[i]) != ascii_lower((unsigned char)word[i]))
			return 0;
	}
	return word[s.n] == '\0';
}

/* On return *rest begins right after the token (possibly at spaces). */
int slice_token(struct slice *rest, struct slice *tok)
{
	size_t i = 0, start;

	while (i < rest->n && rest->p[i] == ' ')
		i++;
	start = i;
	while (i < rest->n && rest->p[i] != ' ')
		i++;
	tok->p = rest->p + start;
	tok->n = i - start;
	rest->p += i;
	rest->n -= i;
	return tok->n > 0;
}

/*
 * The escaped form of one byte into u (at most 4 octets); returns its length.
 * In a token (quoted == 0) space and '=' are hex too: an unquoted key=value
 * value then never contains a space, so a client-chosen name cannot add a key
 * such as " ip=6.6.6.6" to the line. Inside double quotes they are harmless.
 */
static size_t escape_unit(unsigned char c, char u[4], int quoted)
{
	static const char hex[] = "0123456789abcdef";

	if (c == '\\' || c == '"') {
		u[0] = '\\';
		u[1] = (char)c;
		return 2;
	}
	if ((c >= 0x21 && c <= 0x7E && c != '=') || (quoted && (c == ' ' || c == '='))) {
		u[0] = (char)c;
		return 1;
	}
	u[0] = '\\';
	u[1] = 'x';
	u[2] = hex[c >> 4];
	u[3] = hex[c & 0xF];
	return 4;
}

/*
 * Escapes are never split. When the escaped text does not fit, as many whole
 * escapes as leave room for "..." are written, then "..." if it fits.
 */
static size_t escape(char *dst, size_t dstlen, const char *src, size_t n, size_t cap,
                     int quoted)
{
	size_t shown = n < cap ? n : cap;
	int cut = n > cap;
	size_t total = cut ? 3 : 0;
	size_t w = 0, i, reserve;
	char u[4];

	if (dstlen == 0)
		return 0;
	for (i = 0; i < shown; i++)
		total += escape_unit((unsigned char)src[i], u, quoted);
	reserve = total + 1 <= dstlen ? 0 : 3;
	if (reserve)
		cut = 1;
	for (i = 0; i < shown; i++) {
		size_t ul = escape_unit((unsigned char)src[i], u, quoted);

		if (w + ul + reserve + 1 > dstlen)
			break;
		memcpy(dst + w, u, ul);
		w += ul;
	}
	if (cut && w + 3 + 1 <= dstlen) {
		memcpy(dst + w, "...", 3);
		w += 3;
	}
	dst[w] = '\0';
	return w;
}

size_t str_escape(char *dst, size_t dstlen, const char *src, size_t n, size_t cap)
{
	return escape(dst, dstlen, src, n, cap, 0);
}

size_t str_escape_quoted(char *dst, size_t dstlen, const char *src, size_t n, size_t cap)
{
	return escape(dst, dstlen, src, n, cap, 1);
}

void wipe(void *p, size_t n)
{
	explicit_bzero(p, n);
}

void hex_encode(char *dst, const unsigned char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		dst[2 * i] = hex[src[i] >> 4];
		dst[2 * i + 1] = hex[src[i] & 0xF];
	}
	dst[2 * n] = '\0';
}
