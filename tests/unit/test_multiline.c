/*
 * Unit tests for server/multiline.c: pinned edge cases, TOP budgets, and for every tricky message
 * every two-chunk split and 1-octet chunking must equal the one-shot output, which must equal a
 * line-based reference encoder and undo (unstuff, drop terminator) to the CRLF form whose length
 * is the POP3 size. Set POP3D_CORPUS=DIR (a maildir from make_corpus.py) to add the shared corpus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/multiline.h"
#include "server/strutil.h"

#define NO_TOP (-1L)

/* A growable byte buffer owned by the test. */
struct buf {
	char  *p;
	size_t n;
	size_t cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t ncap = b->cap ? b->cap : 64;

		while (ncap < b->n + n)
			ncap *= 2;
		b->p = realloc(b->p, ncap);
		assert_non_null(b->p);
		b->cap = ncap;
	}
	if (n > 0)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

static int buf_equal(const struct buf *a, const struct buf *b)
{
	return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

/* ---- references, written independently of the encoder ---- */

/* The POP3 size rule of /work/shared/corpus: each LF not preceded by CR counts one more. */
static size_t ref_size(const char *in, size_t n)
{
	size_t i, size = n;

	for (i = 0; i < n; i++)
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			size++;
	return size;
}

/* The message in CRLF form, unstuffed and without any terminator. */
static void ref_crlf(const char *in, size_t n, struct buf *out)
{
	size_t i;

	out->n = 0;
	for (i = 0; i < n; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			buf_put(out, "\r", 1);
		buf_put(out, in + i, 1);
	}
}

/* Line-based encoder: the expected response for RETR (top < 0) or TOP top. */
static void ref_encode(const char *in, size_t n, long top, struct buf *out)
{
	size_t pos = 0;
	int in_body = 0;

	out->n = 0;
	while (pos < n) {
		const char *lf = memchr(in + pos, '\n', n - pos);
		size_t len = lf ? (size_t)(lf - (in + pos)) : n - pos;
		const char *line = in + pos;

		if (top >= 0 && in_body && top-- == 0)
			break;
		if (len > 0 && line[0] == '.')
			buf_put(out, ".", 1);
		buf_put(out, line, len);
		if (lf == NULL) {
			buf_put(out, "\r\n", 2);     /* no final LF: CRLF before the terminator */
			break;
		}
		if (len > 0 && line[len - 1] == '\r')
			buf_put(out, "\n", 1);
		else
			buf_put(out, "\r\n", 2);
		if (!in_body && (len == 0 || (len == 1 && line[0] == '\r')))
			in_body = 1;
		pos += len + 1;
	}
	buf_put(out, ".\r\n", 3);
}

/* ---- drivers ---- */

/*
 * Encode with a first chunk of `first` octets, then chunks of `step` octets, each into its own
 * exactly 2*len sized buffer (ASan checks the bound), stopping when the encoder asks.
 */
static void encode(const char *in, size_t n, long top, size_t first, size_t step, struct buf *out)
{
	struct ml_enc e;
	size_t off = 0, len, used, w;
	int first_done = 0;
	char *tmp;

	out->n = 0;
	ml_init(&e, top);
	while ((off < n || !first_done) && !ml_ended(&e)) {
		len = first_done ? step : first;
		first_done = 1;
		if (len > n - off)
			len = n - off;
		tmp = malloc(len ? 2 * len : 1);
		assert_non_null(tmp);
		w = ml_encode(&e, in + off, len, tmp, &used);
		assert_true(w <= 2 * len);
		assert_true(used <= len);
		if (used < len)
			assert_true(ml_ended(&e));
		buf_put(out, tmp, w);
		free(tmp);
		off += used;
		if (used < len)
			break;
	}
	if (top < 0) {
		/* What pop3d checks against LIST after RETR: octets out less the
		 * stuffed dots is the CRLF form of the whole input. */
		struct buf crlf = { 0 };

		ref_crlf(in, n, &crlf);
		assert_int_equal(out->n - e.stuffed, crlf.n);
		buf_free(&crlf);
	}
	tmp = malloc(ML_FINISH_MAX);
	assert_non_null(tmp);
	w = ml_finish(&e, tmp);
	assert_true(w <= ML_FINISH_MAX);
	buf_put(out, tmp, w);
	free(tmp);
}

static void fail_bytes(const char *what, const char *in, size_t n, size_t k, const struct buf *got,
		       const struct buf *want)
{
	char a[200], b[200], c[200];

	str_escape(a, sizeof(a), in, n, 60);
	str_escape(b, sizeof(b), got->p, got->n, 60);
	str_escape(c, sizeof(c), want->p, want->n, 60);
	fail_msg("%s (split %zu) for input \"%s\":\n got  \"%s\"\n want \"%s\"", what, k, a, b, c);
}

/*
 * The response must undo to the input: terminator, then the CRLF added for a message without a
 * final LF, then one leading '.' per line. Every LF is in a CRLF, every line start that is '.'
 * is "..", and the undone form is the CRLF form whose length is the POP3 size.
 */
static void check_undo(const char *in, size_t n, const struct buf *out)
{
	struct buf undone = { 0 }, crlf = { 0 };
	size_t end = out->n, i;
	int line_start = 1;

	assert_true(end >= 3);
	assert_memory_equal(out->p + end - 3, ".\r\n", 3);
	end -= 3;
	if (n > 0 && in[n - 1] != '\n') {
		assert_true(end >= 2);
		assert_memory_equal(out->p + end - 2, "\r\n", 2);
		end -= 2;
	}
	for (i = 0; i < end; i++) {
		char c = out->p[i];

		if (c == '\n')
			assert_true(i > 0 && out->p[i - 1] == '\r');
		if (line_start && c == '.') {
			assert_true(i + 1 < end && out->p[i + 1] == '.');
			i++;
		}
		buf_put(&undone, out->p + i, 1);
		line_start = (out->p[i] == '\n');
	}
	ref_crlf(in, n, &crlf);
	if (!buf_equal(&undone, &crlf))
		fail_bytes("undo differs from CRLF form", in, n, 0, &undone, &crlf);
	assert_int_equal(undone.n, ref_size(in, n));
	buf_free(&undone);
	buf_free(&crlf);
}

/*
 * Two-chunk splits to try: every one up to ALL_SPLITS_MAX octets; for bigger inputs the splits
 * near both ends and 64 spread across (1-octet chunking still crosses every boundary).
 */
#define ALL_SPLITS_MAX 4096

static size_t next_split(size_t k, size_t n)
{
	size_t edge = n < 65536 ? 512 : 64;

	if (n <= ALL_SPLITS_MAX || k < edge || k + edge >= n)
		return k + 1;
	k += n / 64;
	return k + edge >= n ? n - edge : k;
}

/* Everything the brief asks of one input, for RETR and (optionally) several TOP budgets. */
static void check_message(const char *in, size_t n, int with_top)
{
	static const long tops[] = { NO_TOP, 0, 1, 2, 3, 1000000 };
	struct buf one = { 0 }, other = { 0 }, ref = { 0 };
	size_t t, k;

	for (t = 0; t < (with_top ? sizeof(tops) / sizeof(tops[0]) : 1); t++) {
		long top = tops[t];

		encode(in, n, top, n, n, &one);
		ref_encode(in, n, top, &ref);
		if (!buf_equal(&one, &ref))
			fail_bytes("one-shot differs from reference", in, n, n, &one, &ref);
		if (top < 0)
			check_undo(in, n, &one);
		for (k = 0; k <= n; k = next_split(k, n)) {
			encode(in, n, top, k, n, &other);
			if (!buf_equal(&other, &one))
				fail_bytes("two-chunk output differs", in, n, k, &other, &one);
		}
		encode(in, n, top, 1, 1, &other);
		if (!buf_equal(&other, &one))
			fail_bytes("1-octet chunking differs", in, n, 1, &other, &one);
		encode(in, n, top, 0, 3, &other);   /* an empty first chunk, then odd sizes */
		if (!buf_equal(&other, &one))
			fail_bytes("3-octet chunking differs", in, n, 0, &other, &one);
	}
	buf_free(&one);
	buf_free(&other);
	buf_free(&ref);
}

/* ---- inputs ---- */

struct msg {
	const char *p;
	size_t      n;
};

#define M(lit) { (lit), sizeof(lit) - 1 }

#define HDR "Return-Path: <sender@example.net>\nFrom: Sender <sender@example.net>\n" \
	    "To: user@example.org\nSubject: test\n"

static const struct msg tricky[] = {
	M(""), M("abc"), M("abc\r"), M("abc\n"), M("abc\r\n"), M("\r"), M("\n"), M("\r\n"),
	M("\r\r\n"), M("\r\r"), M("\n\r"), M("\n\n\n"), M("\r\r\r"), M("\r\n\r\n"),
	M("."), M(".."), M(".\n"), M("..\n"), M(".\r\n"), M(".\r"), M("\n."), M("\n.\n"),
	M("a\r.b\n"), M("a\r\n.b\r\n"), M("\r.\r\n"),
	M("x\r\n.\r\ny\n"), M("\r\n.\r\n"), M("before\r\n.\r\nafter\n"), M(".\r\n.\r\n"),
	M("\0"), M("a\0b\n"), M("\0\n\0"), M("\n\0.\n.\0\n"),
	M("\xff\xfe\n\x80"), M("Gr\xfc\xdf" "e, fa\xe7" "ade\n"),
	M(HDR "\nHello.\nThis is a plain message.\n"),
	M("Subject: CRLF\r\n\r\nline one\r\nline two\r\n"),
	M(HDR "\nlf line\ncrlf line\r\nlf again\n"),
	M(HDR "\n.\n..\n.hidden\n. space\nend\n.\n"),
	M(HDR "\nbefore\r\n.\r\nafter\n"),
	M(HDR "\nlast line has no newline"),
	M("Return-Path: <sender@example.net>\nSubject: headers only"),
	M(HDR "\n"),
	M(HDR "\none\rtwo\rthree\n"),
	M(HDR "\nodd\r\r\nending\n"),
	M(HDR "\nbefore\0after\n"),
	M(HDR "\r\n\r\nCRLF header end, LF body\n.\n"),
	M(HDR "\r\r\nnot a header end\n\nbody\n"),
	M("\nbody right away\n.\n"),
	M("\r\nbody right away\r\n"),
	M("H: x\n\n\n\n.\n\n"),
};

/* Deterministic xorshift for generated inputs. */
static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void make_long_line(struct buf *b)
{
	size_t i;

	b->n = 0;
	buf_put(b, HDR "\n", sizeof(HDR "\n") - 1);
	for (i = 0; i < 10000; i++)
		buf_put(b, "x", 1);
	buf_put(b, "\nshort\n", 7);
}

static void make_many_dots(struct buf *b)
{
	size_t i;

	b->n = 0;
	buf_put(b, HDR "\n", sizeof(HDR "\n") - 1);
	for (i = 0; i < 2000; i++) {
		buf_put(b, ".....", i % 5);
		buf_put(b, "\n", 1);
	}
}

/* A ~350 KB base64-looking attachment with 76-column lines. */
static void make_attachment(struct buf *b)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static const char head[] = HDR "MIME-Version: 1.0\n\nThis is MIME.\n\n--b\n\n";
	uint32_t s = 12345;
	size_t i;

	b->n = 0;
	buf_put(b, head, sizeof(head) - 1);
	for (i = 0; i < 350000; i++) {
		buf_put(b, &b64[rnd(&s) % 64], 1);
		if (i % 76 == 75)
			buf_put(b, "\n", 1);
	}
	buf_put(b, "\n--b--\n", 7);
}

/* ---- tests ---- */

static void expect_retr(const char *in, size_t n, const char *want, size_t wantlen)
{
	struct buf out = { 0 }, w = { 0 };

	encode(in, n, NO_TOP, n, n, &out);
	buf_put(&w, want, wantlen);
	if (!buf_equal(&out, &w))
		fail_bytes("pinned RETR output", in, n, n, &out, &w);
	buf_free(&out);
	buf_free(&w);
}

#define EXPECT_RETR(in, want) expect_retr((in), sizeof(in) - 1, (want), sizeof(want) - 1)

static void test_pinned_edge_cases(void **state)
{
	(void)state;
	EXPECT_RETR("", ".\r\n");
	EXPECT_RETR("abc", "abc\r\n.\r\n");
	EXPECT_RETR("abc\r", "abc\r\r\n.\r\n");   /* the CR passes; no LF ended it, so CRLF */
	EXPECT_RETR("abc\n", "abc\r\n.\r\n");
	EXPECT_RETR("abc\r\n", "abc\r\n.\r\n");
	EXPECT_RETR("\r\r\n", "\r\r\n.\r\n");
	EXPECT_RETR("\n", "\r\n.\r\n");
	EXPECT_RETR("a\0b\n", "a\0b\r\n.\r\n");
	EXPECT_RETR(".\n", "..\r\n.\r\n");
	EXPECT_RETR(".", "..\r\n.\r\n");
	EXPECT_RETR("x\r\n.\r\ny\n", "x\r\n..\r\ny\r\n.\r\n");
	EXPECT_RETR("a\n.b\n..\n", "a\r\n..b\r\n...\r\n.\r\n");
	EXPECT_RETR("a\r.b\n", "a\r.b\r\n.\r\n");  /* a bare CR does not start a line */
	EXPECT_RETR("one\rtwo\n", "one\rtwo\r\n.\r\n");
}

static void test_size_rule(void **state)
{
	(void)state;
	assert_int_equal(ref_size("", 0), 0);
	assert_int_equal(ref_size("abc", 3), 3);
	assert_int_equal(ref_size("abc\r", 4), 4);
	assert_int_equal(ref_size("abc\n", 4), 5);
	assert_int_equal(ref_size("\r\r\n", 3), 3);
	assert_int_equal(ref_size("a\nb\n", 4), 6);
	assert_int_equal(ref_size("a\r\n", 3), 3);
	assert_int_equal(ref_size("\n\n", 2), 4);
	assert_int_equal(ref_size(".\n", 2), 3);       /* stuffing is not counted */
}

static void test_encode_contract(void **state)
{
	struct ml_enc e;
	char out[16];
	size_t used = 99, w;

	(void)state;
	ml_init(&e, NO_TOP);
	assert_false(ml_ended(&e));
	w = ml_encode(&e, "", 0, out, &used);
	assert_int_equal(w, 0);
	assert_int_equal(used, 0);
	w = ml_encode(&e, "\n\n\n", 3, out, &used);   /* worst case: exactly 2n */
	assert_int_equal(w, 6);
	assert_int_equal(used, 3);
	w = ml_encode(&e, "...", 3, out, &used);
	assert_int_equal(w, 4);
	assert_memory_equal(out, "....", 4);
	w = ml_finish(&e, out);
	assert_int_equal(w, ML_FINISH_MAX);
	assert_memory_equal(out, "\r\n.\r\n", 5);
	assert_false(ml_ended(&e));
}

static void expect_top(const char *in, size_t n, long top, const char *want, size_t wantlen)
{
	struct buf out = { 0 }, w = { 0 };

	encode(in, n, top, n, n, &out);
	buf_put(&w, want, wantlen);
	if (!buf_equal(&out, &w))
		fail_bytes("pinned TOP output", in, n, (size_t)top, &out, &w);
	buf_free(&out);
	buf_free(&w);
}

#define EXPECT_TOP(in, top, want) expect_top((in), sizeof(in) - 1, (top), (want), sizeof(want) - 1)

static void test_top_budgets(void **state)
{
	static const char m[] = "H: 1\nH: 2\n\nb1\n.b2\nb3\n";

	(void)state;
	EXPECT_TOP(m, 0, "H: 1\r\nH: 2\r\n\r\n.\r\n");
	EXPECT_TOP(m, 1, "H: 1\r\nH: 2\r\n\r\nb1\r\n.\r\n");
	EXPECT_TOP(m, 2, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\n.\r\n");
	EXPECT_TOP(m, 3, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n");
	EXPECT_TOP(m, 4, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n");
	EXPECT_TOP(m, 1000000, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n");
	/* no empty line: everything is header, TOP sends it all */
	EXPECT_TOP("H: 1\nb\n", 0, "H: 1\r\nb\r\n.\r\n");
	EXPECT_TOP("H: 1", 0, "H: 1\r\n.\r\n");
	/* "\r\r\n" is a line holding a CR, not an empty line */
	EXPECT_TOP("H\n\r\r\nb\n", 0, "H\r\n\r\r\nb\r\n.\r\n");
	/* CRLF header end, and the empty line as the very last thing */
	EXPECT_TOP("H\r\n\r\nb1\r\nb2\r\n", 1, "H\r\n\r\nb1\r\n.\r\n");
	EXPECT_TOP("H\n\n", 0, "H\r\n\r\n.\r\n");
	EXPECT_TOP("H\r\n\r\n", 5, "H\r\n\r\n.\r\n");
	/* the header may be empty */
	EXPECT_TOP("\nbody\n", 0, "\r\n.\r\n");
	/* empty body lines count; a last line without LF gets CRLF */
	EXPECT_TOP("H\n\n\n\nx\n", 2, "H\r\n\r\n\r\n\r\n.\r\n");
	EXPECT_TOP("H\n\nb1\nb2", 2, "H\r\n\r\nb1\r\nb2\r\n.\r\n");
	EXPECT_TOP("H\n\nb1\nb2", 1, "H\r\n\r\nb1\r\n.\r\n");
	/* TOP 0 of an empty message */
	EXPECT_TOP("", 0, ".\r\n");
}

static void test_top_stops_consuming(void **state)
{
	static const char m[] = "H\n\nb1\nb2\n";
	struct ml_enc e;
	char out[64];
	size_t used, w;

	(void)state;
	ml_init(&e, 1);
	w = ml_encode(&e, m, sizeof(m) - 1, out, &used);
	assert_int_equal(used, 6);          /* through "b1\n" */
	assert_true(ml_ended(&e));
	assert_int_equal(w, 9);
	assert_memory_equal(out, "H\r\n\r\nb1\r\n", 9);
	w = ml_encode(&e, m + used, sizeof(m) - 1 - used, out, &used);
	assert_int_equal(w, 0);
	assert_int_equal(used, 0);
	w = ml_finish(&e, out);
	assert_int_equal(w, 3);
	assert_memory_equal(out, ".\r\n", 3);

	ml_init(&e, 0);
	w = ml_encode(&e, m, sizeof(m) - 1, out, &used);
	assert_int_equal(used, 3);
	assert_true(ml_ended(&e));
}

static void test_every_split_tricky(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++)
		check_message(tricky[i].p, tricky[i].n, 1);
}

static void test_every_split_random(void **state)
{
	static const char alphabet[] = "\r\n.\0a";
	char in[48];
	uint32_t s = 2463534242u;
	size_t round, i, n;

	(void)state;
	for (round = 0; round < 400; round++) {
		n = rnd(&s) % sizeof(in);
		for (i = 0; i < n; i++)
			in[i] = alphabet[rnd(&s) % 5];
		check_message(in, n, 1);
	}
}

static void test_every_split_generated(void **state)
{
	struct buf b = { 0 };

	(void)state;
	make_long_line(&b);
	check_message(b.p, b.n, 1);
	make_many_dots(&b);
	check_message(b.p, b.n, 1);
	make_attachment(&b);
	check_message(b.p, b.n, 0);
	buf_free(&b);
}

/* ---- optional: the shared corpus, sizes checked against its MANIFEST.tsv ---- */

static int read_file(const char *path, struct buf *b)
{
	char chunk[65536];
	size_t got;
	FILE *f = fopen(path, "rb");

	if (f == NULL)
		return -1;
	b->n = 0;
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_put(b, chunk, got);
	fclose(f);
	return 0;
}

/* One manifest row "path\tdisk\tpop3\twhy": checks a message file; returns 1 if it was one. */
static int check_manifest_row(const char *maildir, char *row)
{
	struct slice rest = { row, strlen(row) }, f[3];
	char path[4096];
	struct buf msg = { 0 };
	uint64_t size;
	size_t i;

	for (i = 0; i < 3; i++) {
		const char *tab = memchr(rest.p, '\t', rest.n);

		assert_non_null(tab);
		f[i].p = rest.p;
		f[i].n = (size_t)(tab - rest.p);
		rest.p = tab + 1;
		rest.n -= f[i].n + 1;
	}
	if (parse_u64(f[2].p, f[2].n, &size) < 0)
		return 0;                          /* "-": a file the server must ignore */
	assert_true(snprintf(path, sizeof(path), "%s/%.*s", maildir, (int)f[0].n, f[0].p) <
		    (int)sizeof(path));
	assert_int_equal(read_file(path, &msg), 0);
	assert_int_equal(ref_size(msg.p, msg.n), size);
	check_message(msg.p, msg.n, msg.n < 65536);
	buf_free(&msg);
	return 1;
}

static void test_corpus(void **state)
{
	const char *dir = getenv("POP3D_CORPUS");
	char manifest[4096], row[8192];
	size_t rows = 0;
	FILE *f;

	(void)state;
	if (dir == NULL || dir[0] == '\0')
		skip();
	assert_true(snprintf(manifest, sizeof(manifest), "%s/../MANIFEST.tsv", dir) <
		    (int)sizeof(manifest));
	f = fopen(manifest, "r");
	assert_non_null(f);
	assert_non_null(fgets(row, sizeof(row), f));   /* header */
	while (fgets(row, sizeof(row), f) != NULL)
		rows += (size_t)check_manifest_row(dir, row);
	fclose(f);
	assert_true(rows >= 18);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pinned_edge_cases),
		cmocka_unit_test(test_size_rule),
		cmocka_unit_test(test_encode_contract),
		cmocka_unit_test(test_top_budgets),
		cmocka_unit_test(test_top_stops_consuming),
		cmocka_unit_test(test_every_split_tricky),
		cmocka_unit_test(test_every_split_random),
		cmocka_unit_test(test_every_split_generated),
		cmocka_unit_test(test_corpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
