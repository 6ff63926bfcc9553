/*
 * Unit tests for server/linein.c: limits at the exact boundary, CR/LF/NUL rules, pipelining,
 * every chunk split, overlong then good line, flood without buffering, reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/limits.h"
#include "server/linein.h"

/* Events as text: "L:<line>\n", "NUL\n", "TOOLONG\n", "FLOOD\n". */
struct evlog {
	char   b[8192];
	size_t n;
};

static void log_put(struct evlog *g, const char *p, size_t n)
{
	assert_true(g->n + n <= sizeof(g->b));
	memcpy(g->b + g->n, p, n);
	g->n += n;
}

static void log_event(struct evlog *g, enum linein_status st, struct slice line)
{
	switch (st) {
	case LINEIN_LINE:
		assert_null(memchr(line.p, '\0', line.n));
		log_put(g, "L:", 2);
		log_put(g, line.p, line.n);
		log_put(g, "\n", 1);
		break;
	case LINEIN_NUL:
		assert_non_null(memchr(line.p, '\0', line.n));
		log_put(g, "NUL\n", 4);
		break;
	case LINEIN_TOOLONG:
		log_put(g, "TOOLONG\n", 8);
		break;
	case LINEIN_FLOOD:
		log_put(g, "FLOOD\n", 6);
		break;
	case LINEIN_MORE:
		break;
	}
}

/* Take lines until MORE or FLOOD; returns the last status. */
static enum linein_status drain(struct linein *l, size_t max, struct evlog *g)
{
	enum linein_status st;
	struct slice line;

	do {
		st = linein_next(l, max, &line);
		if (st == LINEIN_LINE || st == LINEIN_NUL) {
			assert_true(line.p >= l->buf && line.p + line.n <= l->buf + l->cap);
			assert_true(line.n <= max);
		}
		log_event(g, st, line);
	} while (st != LINEIN_MORE && st != LINEIN_FLOOD);
	return st;
}

/* Feed data in commits of at most chunk octets, draining after each; stops at FLOOD. */
static enum linein_status feed(struct linein *l, size_t max, const char *data, size_t n,
			       size_t chunk, struct evlog *g)
{
	enum linein_status st = LINEIN_MORE;
	size_t off = 0, room, k;
	char *p;

	while (off < n && st != LINEIN_FLOOD) {
		linein_space(l, &p, &room);
		assert_true(room > 0);   /* after draining to MORE there is always room */
		assert_true(p >= l->buf && p + room <= l->buf + l->cap);
		k = n - off;
		if (k > room)
			k = room;
		if (k > chunk)
			k = chunk;
		memcpy(p, data + off, k);
		linein_commit(l, k);
		off += k;
		st = drain(l, max, g);
	}
	return st;
}

static void expect_log(const struct evlog *g, const char *want, size_t wantlen)
{
	if (g->n != wantlen || memcmp(g->b, want, wantlen) != 0)
		fail_msg("event log mismatch:\n--- got ---\n%.*s--- want ---\n%.*s",
			 (int)g->n, g->b, (int)wantlen, want);
}

#define EXPECT_LOG(g, lit) expect_log((g), (lit), sizeof(lit) - 1)

/* One whole-stream run on a fresh reader. */
static void run_once(size_t cap, size_t max, const char *data, size_t n, size_t chunk,
		     struct evlog *g)
{
	struct linein l;

	assert_int_equal(linein_init(&l, cap), 0);
	g->n = 0;
	feed(&l, max, data, n, chunk, g);
	linein_free(&l);
}

static int setup_reader(void **state)
{
	struct linein *l = malloc(sizeof(*l));

	if (l == NULL || linein_init(l, INPUT_BUF_SIZE) != 0) {
		free(l);
		return -1;
	}
	*state = l;
	return 0;
}

static int teardown_reader(void **state)
{
	struct linein *l = *state;

	linein_free(l);
	linein_free(l);   /* safe twice */
	free(l);
	return 0;
}

static void test_init_free(void **state)
{
	struct linein l;

	(void)state;
	assert_int_equal(linein_init(&l, 1), -1);
	linein_free(&l);
	assert_int_equal(linein_init(&l, 2), 0);
	assert_int_equal(linein_pending(&l), 0);
	linein_free(&l);
	linein_free(&l);
}

/* max = 10, cap = max + 2: the line fits exactly / one octet over. */
static void test_exact_limit_small_cap(void **state)
{
	struct evlog g;

	(void)state;
	run_once(12, 10, "0123456789\r\n", 12, 64, &g);
	EXPECT_LOG(&g, "L:0123456789\n");
	run_once(12, 10, "0123456789\n", 11, 64, &g);
	EXPECT_LOG(&g, "L:0123456789\n");
	run_once(12, 10, "01234567890\n", 12, 64, &g);
	EXPECT_LOG(&g, "TOOLONG\n");
	run_once(12, 10, "01234567890\r\nok\r\n", 17, 64, &g);
	EXPECT_LOG(&g, "TOOLONG\nL:ok\n");
	/* the CR counts as content when a second one follows */
	run_once(12, 10, "012345678\r\r\n", 12, 64, &g);
	EXPECT_LOG(&g, "L:012345678\r\n");
	run_once(12, 10, "0123456789\r\r\nok\n", 16, 64, &g);
	EXPECT_LOG(&g, "TOOLONG\nL:ok\n");
}

/* The real limits: CMD_LINE_MAX octets fit in INPUT_BUF_SIZE, one more does not. */
static void test_exact_limit_command(void **state)
{
	struct linein *l = *state;
	char line[CMD_LINE_MAX + 3];
	struct slice s;
	size_t room;
	char *p;

	/* CMD_LINE_MAX octets + CRLF, then CMD_LINE_MAX + 1 octets + CRLF */
	linein_space(l, &p, &room);
	assert_true(room >= 2 * sizeof(line));
	memset(line, 'a', sizeof(line));
	memcpy(line + CMD_LINE_MAX, "\r\n", 2);
	memcpy(p, line, CMD_LINE_MAX + 2);
	line[CMD_LINE_MAX] = 'a';
	memcpy(line + CMD_LINE_MAX + 1, "\r\n", 2);
	memcpy(p + CMD_LINE_MAX + 2, line, CMD_LINE_MAX + 3);
	linein_commit(l, 2 * CMD_LINE_MAX + 5);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_int_equal(s.n, CMD_LINE_MAX);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_TOOLONG);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_MORE);
	assert_int_equal(linein_pending(l), 0);
}

static void test_line_endings(void **state)
{
	struct linein *l = *state;
	struct evlog g = { .n = 0 };
	static const char in[] = "USER a\nPASS b\r\n\n\r\nx\ry\r\nz\r\r\n\r\r\n";

	assert_int_equal(feed(l, CMD_LINE_MAX, in, sizeof(in) - 1, 4096, &g), LINEIN_MORE);
	EXPECT_LOG(&g, "L:USER a\nL:PASS b\nL:\nL:\nL:x\ry\nL:z\r\nL:\r\n");
}

static void test_nul(void **state)
{
	struct linein *l = *state;
	struct evlog g = { .n = 0 };
	static const char in[] = "US\0ER a\r\nNOOP\r\n\0\n\0\r\nSTAT\n";
	struct slice s;
	char *p;
	size_t room;

	assert_int_equal(feed(l, CMD_LINE_MAX, in, sizeof(in) - 1, 4096, &g), LINEIN_MORE);
	EXPECT_LOG(&g, "NUL\nL:NOOP\nNUL\nNUL\nL:STAT\n");

	/* the NUL line is shown whole (for an escaped log) and then gone */
	linein_space(l, &p, &room);
	memcpy(p, "a\0b\r\nQUIT\r\n", 11);
	linein_commit(l, 11);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_NUL);
	assert_int_equal(s.n, 3);
	assert_memory_equal(s.p, "a\0b", 3);
	assert_int_equal(linein_pending(l), 6);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_int_equal(s.n, 4);
	assert_memory_equal(s.p, "QUIT", 4);
}

static void test_pipelined(void **state)
{
	struct linein *l = *state;
	static const char in[] = "CAPA\r\nUSER u\r\nPASS p\r\nSTAT\r\nLI";
	struct slice s;
	char *p;
	size_t room;

	linein_space(l, &p, &room);
	memcpy(p, in, sizeof(in) - 1);
	linein_commit(l, sizeof(in) - 1);
	assert_int_equal(linein_pending(l), sizeof(in) - 1);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_memory_equal(s.p, "CAPA", 4);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_memory_equal(s.p, "USER u", 6);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_memory_equal(s.p, "PASS p", 6);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_int_equal(s.n, 4);
	assert_memory_equal(s.p, "STAT", 4);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_MORE);
	assert_int_equal(linein_pending(l), 2);
	/* compaction keeps the partial line */
	linein_space(l, &p, &room);
	assert_ptr_equal(p, l->buf + 2);
	assert_int_equal(room, INPUT_BUF_SIZE - 2);
	memcpy(p, "ST\n", 3);
	linein_commit(l, 3);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_int_equal(s.n, 4);
	assert_memory_equal(s.p, "LIST", 4);
}

/* A stream with every kind of event, fed split at every offset and in odd chunk sizes. */
static void test_every_split(void **state)
{
	static char in[600];
	static const char want[] =
		"L:USER bob\nL:PASS x\ry\nNUL\nL:\nTOOLONG\nL:.\nTOOLONG\nL:STAT\nL:\r\n";
	struct evlog one, two;
	size_t n = 0, k, chunk;
	struct linein l;

	(void)state;
#define PUT(s) (memcpy(in + n, (s), sizeof(s) - 1), n += sizeof(s) - 1)
	PUT("USER bob\r\nPASS x\ry\n\0\r\n\r\n");
	memset(in + n, 'A', 40);     /* overlong, well past cap */
	n += 40;
	PUT("\r\n.\n");
	memset(in + n, 'B', 17);     /* max + 1: too long by one */
	n += 17;
	PUT("\nSTAT\r\n\r\r\npart");
#undef PUT
	run_once(18, 16, in, n, n, &one);
	expect_log(&one, want, sizeof(want) - 1);
	for (k = 0; k <= n; k++) {
		assert_int_equal(linein_init(&l, 18), 0);
		two.n = 0;
		feed(&l, 16, in, k, n, &two);
		feed(&l, 16, in + k, n - k, n, &two);
		expect_log(&two, want, sizeof(want) - 1);
		assert_int_equal(linein_pending(&l), 4);
		linein_free(&l);
	}
	for (chunk = 1; chunk <= 19; chunk++) {
		run_once(18, 16, in, n, chunk, &two);
		expect_log(&two, want, sizeof(want) - 1);
	}
}

/* Overlong line much larger than the buffer, then a good one: TOOLONG once, then the line. */
static void test_overlong_then_good(void **state)
{
	struct linein *l = *state;
	size_t big = 3 * INPUT_BUF_SIZE + 17, chunk;
	char *in = malloc(big + 16);
	struct evlog g;

	assert_non_null(in);
	memset(in, 'X', big);
	memcpy(in + big, "\r\nNOOP\r\n", 8);
	for (chunk = 1; chunk <= INPUT_BUF_SIZE; chunk = chunk * 3 + 1) {
		g.n = 0;
		linein_reset(l);
		assert_int_equal(feed(l, CMD_LINE_MAX, in, big + 8, chunk, &g), LINEIN_MORE);
		EXPECT_LOG(&g, "TOOLONG\nL:NOOP\n");
	}
	free(in);
}

/* A client that never sends LF: FLOOD past LINE_FLOOD_MAX, never more than cap buffered. */
static void test_flood(void **state)
{
	struct linein *l = *state;
	enum linein_status st = LINEIN_MORE;
	size_t total = 0, room;
	struct slice s;
	char *p;

	while (st == LINEIN_MORE) {
		linein_space(l, &p, &room);
		assert_true(room > 0 && room <= l->cap);
		assert_true(p >= l->buf && p + room <= l->buf + l->cap);
		memset(p, 'A', room);
		linein_commit(l, room);
		total += room;
		assert_true(linein_pending(l) <= l->cap);
		st = linein_next(l, CMD_LINE_MAX, &s);
		assert_true(total <= LINE_FLOOD_MAX + l->cap);
	}
	assert_int_equal(st, LINEIN_FLOOD);
	assert_true(total > LINE_FLOOD_MAX);
	/* sticky: a good line afterwards is not accepted */
	linein_space(l, &p, &room);
	memcpy(p, "\nNOOP\r\n", 7);
	linein_commit(l, 7);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_FLOOD);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_FLOOD);
	/* reset starts clean */
	linein_reset(l);
	linein_space(l, &p, &room);
	memcpy(p, "NOOP\r\n", 6);
	linein_commit(l, 6);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_int_equal(s.n, 4);
}

/* LINE_FLOOD_MAX octets then LF is only too long; one more octet is a flood, at any chunking. */
static void test_flood_boundary(void **state)
{
	struct linein *l = *state;
	size_t chunks[] = { 1, 7, 255, INPUT_BUF_SIZE };
	char *in = malloc(LINE_FLOOD_MAX + 16);
	struct evlog g;
	size_t i;

	assert_non_null(in);
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		memset(in, 'A', LINE_FLOOD_MAX);
		memcpy(in + LINE_FLOOD_MAX, "\nNOOP\n", 6);
		linein_reset(l);
		g.n = 0;
		assert_int_equal(feed(l, CMD_LINE_MAX, in, LINE_FLOOD_MAX + 6, chunks[i], &g),
				 LINEIN_MORE);
		EXPECT_LOG(&g, "TOOLONG\nL:NOOP\n");

		memcpy(in + LINE_FLOOD_MAX, "A\nNOOP\n", 7);
		linein_reset(l);
		g.n = 0;
		assert_int_equal(feed(l, CMD_LINE_MAX, in, LINE_FLOOD_MAX + 7, chunks[i], &g),
				 LINEIN_FLOOD);
		EXPECT_LOG(&g, "FLOOD\n");
	}
	free(in);
}

/* A buffer bigger than LINE_FLOOD_MAX sees the whole flooding line at once: same verdict. */
static void test_flood_large_cap(void **state)
{
	size_t cap = LINE_FLOOD_MAX + 64;
	char *in = malloc(cap);
	struct evlog g;

	(void)state;
	assert_non_null(in);
	memset(in, 'A', LINE_FLOOD_MAX);
	memcpy(in + LINE_FLOOD_MAX, "\nNOOP\n", 6);
	run_once(cap, CMD_LINE_MAX, in, LINE_FLOOD_MAX + 6, cap, &g);
	EXPECT_LOG(&g, "TOOLONG\nL:NOOP\n");
	memcpy(in + LINE_FLOOD_MAX, "A\nNOOP\n", 7);
	run_once(cap, CMD_LINE_MAX, in, LINE_FLOOD_MAX + 7, cap, &g);
	EXPECT_LOG(&g, "FLOOD\n");
	free(in);
}

static void test_reset(void **state)
{
	struct linein *l = *state;
	struct evlog g = { .n = 0 };
	char over[CMD_LINE_MAX + 10];
	struct slice s;
	char *p;
	size_t room;

	/* buffered plaintext before STLS never runs after it */
	linein_space(l, &p, &room);
	memcpy(p, "STLS\r\nUSER evil\r\nPA", 19);
	linein_commit(l, 19);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_LINE);
	assert_memory_equal(s.p, "STLS", 4);
	linein_reset(l);
	assert_int_equal(linein_pending(l), 0);
	assert_int_equal(linein_next(l, CMD_LINE_MAX, &s), LINEIN_MORE);
	assert_int_equal(feed(l, CMD_LINE_MAX, "CAPA\r\n", 6, 64, &g), LINEIN_MORE);
	EXPECT_LOG(&g, "L:CAPA\n");

	/* reset in the middle of skipping an overlong line */
	memset(over, 'Z', sizeof(over));
	g.n = 0;
	assert_int_equal(feed(l, CMD_LINE_MAX, over, sizeof(over), 4096, &g), LINEIN_MORE);
	assert_true(l->skipping > 0);
	linein_reset(l);
	assert_int_equal(feed(l, CMD_LINE_MAX, "NOOP\r\n", 6, 64, &g), LINEIN_MORE);
	EXPECT_LOG(&g, "L:NOOP\n");
}

/* A full buffer of unread complete lines offers no room until linein_next consumes one. */
static void test_space_full(void **state)
{
	struct linein l;
	struct slice s;
	char *p;
	size_t room;

	(void)state;
	assert_int_equal(linein_init(&l, 6), 0);
	linein_space(&l, &p, &room);
	assert_int_equal(room, 6);
	memcpy(p, "a\nb\nc\n", 6);
	linein_commit(&l, 6);
	linein_space(&l, &p, &room);
	assert_int_equal(room, 0);
	assert_int_equal(linein_next(&l, 4, &s), LINEIN_LINE);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.p[0], 'a');
	linein_space(&l, &p, &room);
	assert_int_equal(room, 2);
	assert_int_equal(linein_pending(&l), 4);
	/* a commit larger than the room is clamped, never past the buffer */
	linein_commit(&l, 100);
	assert_int_equal(linein_pending(&l), 6);
	linein_free(&l);
}

/* max may change per call (SASL lines get their own limit); it is capped at cap - 2. */
static void test_max_per_call(void **state)
{
	struct linein l;
	struct slice s;
	char *p;
	size_t room;

	(void)state;
	assert_int_equal(linein_init(&l, 12), 0);
	linein_space(&l, &p, &room);
	memcpy(p, "abcdef\nabc\n", 11);
	linein_commit(&l, 11);
	assert_int_equal(linein_next(&l, 5, &s), LINEIN_TOOLONG);
	assert_int_equal(linein_next(&l, 3, &s), LINEIN_LINE);
	assert_int_equal(s.n, 3);
	linein_space(&l, &p, &room);
	memset(p, 'q', room);
	linein_commit(&l, room);
	/* max far above cap - 2 must still detect the overlong line and free the buffer */
	assert_int_equal(linein_next(&l, 1000, &s), LINEIN_MORE);
	linein_space(&l, &p, &room);
	assert_int_equal(room, 12);
	linein_free(&l);
}

/* Growing keeps what is buffered; a line too long for the old size then fits. */
static void test_grow(void **state)
{
	struct linein l;
	struct slice s;
	char *p;
	size_t room;

	(void)state;
	assert_int_equal(linein_init(&l, 8), 0);
	linein_space(&l, &p, &room);
	memcpy(p, "ab\nxyzwv", 8);
	linein_commit(&l, 8);
	assert_int_equal(linein_next(&l, 6, &s), LINEIN_LINE);      /* "ab" */
	assert_int_equal(linein_grow(&l, 4), 0);                      /* never shrinks */
	assert_int_equal(l.cap, 8);
	assert_int_equal(linein_grow(&l, 64), 0);
	assert_int_equal(l.cap, 64);
	assert_int_equal(linein_pending(&l), 5);                      /* "xyzwv" kept */
	linein_space(&l, &p, &room);
	assert_int_equal(room, 64 - 5);
	memcpy(p, "0123456789\n", 11);
	linein_commit(&l, 11);
	assert_int_equal(linein_next(&l, 62, &s), LINEIN_LINE);
	assert_int_equal(s.n, 15);                                    /* longer than the old cap */
	assert_memory_equal(s.p, "xyzwv0123456789", 15);
	linein_free(&l);
}

/*
 * The input buffer holds passwords (PASS, AUTH lines): a buffer linein gives back must be
 * wiped first. The Makefile links this test with -Wl,--wrap=free, so every free() of
 * linein.o comes here and the watched block can be checked just before it is released.
 * realloc would free the old block inside libc, never reaching here: that counts as unwiped.
 */
void __real_free(void *p);
void __wrap_free(void *p);

static const void *watch_p;
static size_t watch_n;
static int watch_freed, watch_clean;

void __wrap_free(void *p)
{
	size_t i;

	if (p != NULL && p == watch_p) {
		watch_freed = 1;
		watch_clean = 1;
		for (i = 0; i < watch_n; i++)
			if (((const unsigned char *)p)[i] != 0)
				watch_clean = 0;
		watch_p = NULL;
	}
	__real_free(p);
}

static void watch(const void *p, size_t n)
{
	watch_p = p;
	watch_n = n;
	watch_freed = watch_clean = 0;
}

/* A buffer that held a password, consumed or still pending, is wiped before it is freed. */
static void test_grow_and_free_wipe(void **state)
{
	static const char in[] = "PASS s3cret\nAUTH";
	struct linein l;
	struct slice s;
	char *p;
	size_t room;

	(void)state;
	assert_int_equal(linein_init(&l, 32), 0);
	linein_space(&l, &p, &room);
	memcpy(p, in, sizeof in - 1);
	linein_commit(&l, sizeof in - 1);
	assert_int_equal(linein_next(&l, 30, &s), LINEIN_LINE);
	assert_memory_equal(s.p, "PASS s3cret", 11);
	watch(l.buf, l.cap);
	assert_int_equal(linein_grow(&l, 4096), 0);
	assert_true(watch_freed);
	assert_true(watch_clean);
	assert_int_equal(linein_pending(&l), 4);                      /* "AUTH" kept */
	linein_space(&l, &p, &room);
	memcpy(p, " PLAIN\n", 7);
	linein_commit(&l, 7);
	assert_int_equal(linein_next(&l, 4094, &s), LINEIN_LINE);
	assert_int_equal(s.n, 10);
	assert_memory_equal(s.p, "AUTH PLAIN", 10);
	watch(l.buf, l.cap);
	linein_free(&l);
	assert_true(watch_freed);
	assert_true(watch_clean);
	assert_null(l.buf);
	linein_free(&l);                                              /* twice is fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_free),
		cmocka_unit_test(test_exact_limit_small_cap),
		cmocka_unit_test_setup_teardown(test_exact_limit_command, setup_reader, teardown_reader),
		cmocka_unit_test_setup_teardown(test_line_endings, setup_reader, teardown_reader),
		cmocka_unit_test_setup_teardown(test_nul, setup_reader, teardown_reader),
		cmocka_unit_test_setup_teardown(test_pipelined, setup_reader, teardown_reader),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test_setup_teardown(test_overlong_then_good, setup_reader, teardown_reader),
		cmocka_unit_test_setup_teardown(test_flood, setup_reader, teardown_reader),
		cmocka_unit_test_setup_teardown(test_flood_boundary, setup_reader, teardown_reader),
		cmocka_unit_test(test_flood_large_cap),
		cmocka_unit_test_setup_teardown(test_reset, setup_reader, teardown_reader),
		cmocka_unit_test(test_space_full),
		cmocka_unit_test(test_max_per_call),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_grow_and_free_wipe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
