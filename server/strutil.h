/*
 * strutil: explicit-length strings and strict number parsing shared by every module.
 * Never allocates; never trusts a NUL terminator on input slices.
 */
#ifndef POP3D_STRUTIL_H
#define POP3D_STRUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A borrowed view of bytes; p need not be NUL-terminated and may contain NUL. */
struct slice {
	const char *p;
	size_t      n;
};

/*
 * Parse a decimal unsigned 32-bit number occupying exactly p[0..n).
 * Rejects an empty string, a sign, spaces, any non-digit and overflow.
 * Leading zeros are accepted ("007" is 7). Returns 0 and sets *out, or -1.
 */
int parse_u32(const char *p, size_t n, uint32_t *out);

/* As parse_u32 for 64-bit values. */
int parse_u64(const char *p, size_t n, uint64_t *out);

/* 1 when the slice equals the NUL-terminated ASCII word, ignoring ASCII case. */
int slice_eq_nocase(struct slice s, const char *word);

/*
 * Split the next space-separated token off *rest (single or repeated spaces
 * separate; no other whitespace). Returns 1 and sets *tok, or 0 when *rest
 * holds no more tokens.
 */
int slice_token(struct slice *rest, struct slice *tok);

/*
 * Write a printable, escaped copy of src into dst (always NUL-terminated when
 * dstlen > 0) for an unquoted log value (key=VALUE): bytes outside 0x21..0x7E,
 * space and '=' become \xHH, '\\' and '"' are backslash-escaped, and at most
 * cap input bytes are shown, followed by "..." when src was longer. The result
 * is one token without '=': it cannot end the value or start another key.
 * dst needs 4 * cap + 4 octets for the whole text. Returns the length written.
 */
size_t str_escape(char *dst, size_t dstlen, const char *src, size_t n, size_t cap);

/*
 * As str_escape, for text the caller puts inside double quotes (key="TEXT"):
 * space and '=' are kept, since only an unescaped '"' could end the value.
 */
size_t str_escape_quoted(char *dst, size_t dstlen, const char *src, size_t n, size_t cap);

/* Overwrite n bytes so the compiler cannot elide it (for secrets). */
void wipe(void *p, size_t n);

/* Lower-case hex of n bytes into dst (2n+1 bytes incl. NUL). */
void hex_encode(char *dst, const unsigned char *src, size_t n);

#endif
