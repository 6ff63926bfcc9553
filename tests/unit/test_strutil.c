/*
 * Unit tests for server/strutil.c: number parsing boundaries, tokens, escaping, wipe, hex.
 * Tests only through server/strutil.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "server/strutil.h"

static struct slice S(const char *s)
{
	struct slice sl = { s, strlen(s) };
	return sl;
}

static int u32(const char *s, uint32_t *out)
{
	return parse_u32(s, strlen(s), out);
}

static int u64(const char *s, uint64_t *out)
{
	return parse_u64(s, strlen(s), out);
}

static void test_parse_u32_ok(void **state)
{
	uint32_t v = 1;

	(void)state;
	assert_int_equal(u32("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(u32("1", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(u32("007", &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(u32("4294967295", &v), 0);
	assert_true(v == UINT32_MAX);
	assert_int_equal(u32("00000000004294967295", &v), 0);
	assert_true(v == UINT32_MAX);
	assert_int_equal(u32("429496729", &v), 0);
	assert_int_equal(v, 429496729);
	/* only p[0..n) counts */
	assert_int_equal(parse_u32("123x", 3, &v), 0);
	assert_int_equal(v, 123);
}

static void test_parse_u32_rejects(void **state)
{
	static const char *const bad[] = {
		"", "+1", "-1", " 1", "1 ", "0x1", "1a", "a", "1.0", "1\t", "\t1",
		"4294967296", "4294967297", "4294967300", "42949672950", "99999999999999999999",
		"18446744073709551616",
	};
	uint32_t v = 77;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(u32(bad[i], &v), -1);
		assert_int_equal(v, 77);   /* untouched on failure */
	}
	assert_int_equal(parse_u32("1\0", 2, &v), -1);   /* embedded NUL is not a terminator */
	assert_int_equal(parse_u32("\0" "1", 2, &v), -1);
	assert_int_equal(parse_u32(NULL, 0, &v), -1);
	assert_int_equal(v, 77);
}

static void test_parse_u64_boundaries(void **state)
{
	uint64_t v = 5;

	(void)state;
	assert_int_equal(u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(u64("4294967296", &v), 0);
	assert_true(v == 4294967296ULL);
	v = 5;
	assert_int_equal(u64("18446744073709551616", &v), -1);
	assert_int_equal(u64("18446744073709551620", &v), -1);
	assert_int_equal(u64("184467440737095516150", &v), -1);
	assert_int_equal(u64("", &v), -1);
	assert_int_equal(u64("+1", &v), -1);
	assert_int_equal(u64("-1", &v), -1);
	assert_int_equal(u64(" 1", &v), -1);
	assert_int_equal(u64("1 ", &v), -1);
	assert_int_equal(u64("0x1", &v), -1);
	assert_true(v == 5);
}

/* What a LIST handler does with "LIST 4294967297": the token must not parse. */
static void test_list_argument_overflow(void **state)
{
	struct slice rest = S("LIST 4294967297"), cmd, arg, none;
	uint32_t v = 9;

	(void)state;
	assert_true(slice_token(&rest, &cmd));
	assert_true(slice_eq_nocase(cmd, "list"));
	assert_true(slice_token(&rest, &arg));
	assert_int_equal(arg.n, 10);
	assert_int_equal(parse_u32(arg.p, arg.n, &v), -1);
	assert_int_equal(v, 9);
	assert_false(slice_token(&rest, &none));

	rest = S("LIST 4294967295");
	assert_true(slice_token(&rest, &cmd));
	assert_true(slice_token(&rest, &arg));
	assert_int_equal(parse_u32(arg.p, arg.n, &v), 0);
	assert_true(v == UINT32_MAX);
}

static void test_slice_eq_nocase(void **state)
{
	struct slice nul = { "LI\0T", 4 };
	struct slice empty = { "", 0 };

	(void)state;
	assert_true(slice_eq_nocase(S("LIST"), "list"));
	assert_true(slice_eq_nocase(S("lIsT"), "LIST"));
	assert_false(slice_eq_nocase(S("LIS"), "LIST"));
	assert_false(slice_eq_nocase(S("LISTX"), "LIST"));
	assert_false(slice_eq_nocase(nul, "LI"));
	assert_false(slice_eq_nocase(nul, "LIST"));
	assert_true(slice_eq_nocase(empty, ""));
	assert_false(slice_eq_nocase(empty, "A"));
	/* ASCII letters only: these pairs differ by 0x20 but are not letters */
	assert_false(slice_eq_nocase(S("["), "{"));
	assert_false(slice_eq_nocase(S("@"), "`"));
	assert_false(slice_eq_nocase(S("\xc9"), "\xe9"));
}

static void expect_tokens(const char *line, const char *const *want, size_t nwant)
{
	struct slice rest = S(line), tok;
	size_t i;

	for (i = 0; i < nwant; i++) {
		assert_true(slice_token(&rest, &tok));
		assert_int_equal(tok.n, strlen(want[i]));
		assert_memory_equal(tok.p, want[i], tok.n);
	}
	assert_false(slice_token(&rest, &tok));
	assert_int_equal(tok.n, 0);
	assert_false(slice_token(&rest, &tok));
}

static void test_slice_token(void **state)
{
	static const char *const w1[] = { "USER", "bob" };
	static const char *const w2[] = { "a", "bb", "c" };
	static const char *const w3[] = { "a\tb", "c\r" };
	struct slice rest = S("TOP 1 2"), tok;

	(void)state;
	expect_tokens("USER bob", w1, 2);
	expect_tokens("  a  bb c ", w2, 3);
	expect_tokens("a\tb c\r", w3, 2);   /* only space separates */
	expect_tokens("", NULL, 0);
	expect_tokens("    ", NULL, 0);
	/* rest points right after the token */
	assert_true(slice_token(&rest, &tok));
	assert_int_equal(rest.n, 4);
	assert_memory_equal(rest.p, " 1 2", 4);
}

static void expect_escape(const char *src, size_t n, size_t cap, const char *want)
{
	char dst[256];
	size_t w;

	memset(dst, 'Z', sizeof(dst));
	w = str_escape(dst, sizeof(dst), src, n, cap);
	assert_string_equal(dst, want);
	assert_int_equal(w, strlen(want));
}

static void test_str_escape(void **state)
{
	(void)state;
	expect_escape("abc", 3, 64, "abc");
	expect_escape("a b", 3, 64, "a\\x20b");              /* one token: no space */
	expect_escape("k=v", 3, 64, "k\\x3dv");              /* and no '=' */
	expect_escape("\r\n", 2, 64, "\\x0d\\x0a");
	expect_escape("\"\\", 2, 64, "\\\"\\\\");
	expect_escape("!~", 2, 64, "!~");                    /* 0x21 and 0x7E kept */
	expect_escape("\x1f\x7f\x80\xff", 4, 64, "\\x1f\\x7f\\x80\\xff");
	expect_escape("a\0b", 3, 64, "a\\x00b");
	expect_escape("abcdef", 6, 3, "abc...");
	expect_escape("abc", 3, 3, "abc");                   /* exactly cap: no "..." */
	expect_escape("abcd", 4, 3, "abc...");               /* one over */
	expect_escape("", 0, 64, "");
	expect_escape("abc", 3, 0, "...");
}

static void expect_escape_quoted(const char *src, size_t n, size_t cap, const char *want)
{
	char dst[256];
	size_t w;

	memset(dst, 'Z', sizeof(dst));
	w = str_escape_quoted(dst, sizeof(dst), src, n, cap);
	assert_string_equal(dst, want);
	assert_int_equal(w, strlen(want));
}

static void test_str_escape_quoted(void **state)
{
	(void)state;
	expect_escape_quoted("a b=c", 5, 64, "a b=c");       /* kept inside quotes */
	expect_escape_quoted("\"\\", 2, 64, "\\\"\\\\");
	expect_escape_quoted("\r\n", 2, 64, "\\x0d\\x0a");
	expect_escape_quoted("a b c", 5, 3, "a b...");
}

/*
 * A client-chosen user name in an unquoted user= value: whatever it holds,
 * the escaped text has no space and no '=', so a line built as
 * "ip=A user=%s mechanism=M" keeps exactly one ip= and one mechanism= key.
 */
static void test_str_escape_cannot_add_keys(void **state)
{
	static const char *const names[] = {
		"x mechanism=APOP backoff_ms=0 ip=6.6.6.6",
		"x\tip=6.6.6.6",
		"\" ip=6.6.6.6 \"",
		"x\\ ip=6.6.6.6",
	};
	char esc[300], line[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		str_escape(esc, sizeof(esc), names[i], strlen(names[i]), 64);
		assert_null(strchr(esc, ' '));
		assert_null(strchr(esc, '='));
		snprintf(line, sizeof(line), "login failed id=1 ip=127.0.0.1 user=%s mechanism=PLAIN", esc);
		assert_null(strstr(strstr(line, " ip=") + 1, " ip="));
		assert_null(strstr(strstr(line, " mechanism=") + 1, " mechanism="));
	}
}

/* 1 when k is the escaped length of some prefix of src: an escape boundary. */
static int escape_boundary(const char *src, size_t n, size_t k)
{
	char tmp[128];
	size_t i;

	for (i = 0; i <= n; i++)
		if (str_escape(tmp, sizeof(tmp), src, i, 64) == k)
			return 1;
	return 0;
}

/* Every destination size: NUL-terminated, never over, whole escapes only. */
static void test_str_escape_small_dst(void **state)
{
	const char src[] = "ab\x01\"cd\xfe" "efgh";
	const size_t n = sizeof(src) - 1;
	char full[128], dst[128];
	size_t fl, len, w;

	(void)state;
	fl = str_escape(full, sizeof(full), src, n, 64);
	assert_string_equal(full, "ab\\x01\\\"cd\\xfeefgh");
	for (len = 0; len < sizeof(full); len++) {
		memset(dst, 'Z', sizeof(dst));
		w = str_escape(dst, len, src, n, 64);
		if (len == 0) {
			assert_int_equal(w, 0);
			assert_int_equal(dst[0], 'Z');
			continue;
		}
		assert_true(w < len);
		assert_int_equal(strlen(dst), w);
		assert_int_equal(dst[len], 'Z');
		if (len > fl) {
			assert_string_equal(dst, full);
		} else if (len < 4) {
			assert_int_equal(w, 0);         /* not even "..." fits */
		} else {
			assert_true(w >= 3);
			assert_memory_equal(dst + w - 3, "...", 3);
			assert_memory_equal(dst, full, w - 3);
			assert_true(escape_boundary(src, n, w - 3));
		}
	}
	/* boundary pair: exactly fits / one octet short */
	assert_int_equal(str_escape(dst, fl + 1, src, n, 64), fl);
	assert_string_equal(dst, full);
	w = str_escape(dst, fl, src, n, 64);
	assert_true(w < fl);
	assert_memory_equal(dst + w - 3, "...", 3);
}

static void test_wipe(void **state)
{
	unsigned char buf[32];
	size_t i;

	(void)state;
	memset(buf, 0xA5, sizeof(buf));
	wipe(buf + 1, 30);
	assert_int_equal(buf[0], 0xA5);
	for (i = 1; i < 31; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(buf[31], 0xA5);
	wipe(buf, 0);
}

static void test_hex_encode(void **state)
{
	const unsigned char src[] = { 0x00, 0xff, 0x1a, 0xA0, 0x09 };
	char dst[2 * sizeof(src) + 1];

	(void)state;
	hex_encode(dst, src, sizeof(src));
	assert_string_equal(dst, "00ff1aa009");
	hex_encode(dst, src, 0);
	assert_string_equal(dst, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_u32_ok),
		cmocka_unit_test(test_parse_u32_rejects),
		cmocka_unit_test(test_parse_u64_boundaries),
		cmocka_unit_test(test_list_argument_overflow),
		cmocka_unit_test(test_slice_eq_nocase),
		cmocka_unit_test(test_slice_token),
		cmocka_unit_test(test_str_escape),
		cmocka_unit_test(test_str_escape_quoted),
		cmocka_unit_test(test_str_escape_cannot_add_keys),
		cmocka_unit_test(test_str_escape_small_dst),
		cmocka_unit_test(test_wipe),
		cmocka_unit_test(test_hex_encode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
