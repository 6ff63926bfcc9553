/*
 * fuzz_linein: libFuzzer harness for server/linein.c, the bounded reader every
 * client byte goes through. The input is a script: buffer size and line limit,
 * then chunks, repeated runs (to reach the 64 KiB flood limit), short-read
 * limits and resets (STLS). Each chunk is committed as the session does
 * (linein_space, copy, linein_commit, then linein_next until LINEIN_MORE), and
 * every result is compared with a model of the rules in linein.c, computed on
 * the whole byte stream: so chunking can never change what comes out.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/limits.h"
#include "server/linein.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Octets all runs of one input may add: enough to cross LINE_FLOOD_MAX twice. */
#define RUN_BUDGET ((size_t)3 * LINE_FLOOD_MAX)

/* Longest max tested: SASL lines (sasl.h) are the longest the session asks for. */
#define MAX_CAP (4096 + 64)

/* An event the model expects: a status and, for LINE and NUL, the line. */
struct event {
	enum linein_status st;
	size_t             n;
	size_t             off;     /* LINE and NUL: the line is arena[off..off+n) */
};

/* The model: what the rules say about the stream so far. */
struct model {
	size_t        max;
	size_t        raw;            /* octets of the current line so far (no LF) */
	char          cur[MAX_CAP];   /* its first octets, enough to compare a line within max */
	int           flood;          /* FLOOD was expected: sticky until a reset */
	struct event *ev;             /* expected events not yet matched: ev[head..nev) */
	size_t        head, nev, cap;
	char         *arena;          /* their lines; emptied with the queue */
	size_t        alen, acap;
};

static void model_push(struct model *m, enum linein_status st, const char *p, size_t n)
{
	struct event *e;

	if (m->nev == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->ev = realloc(m->ev, m->cap * sizeof *m->ev);
		FZ_CHECK(m->ev != NULL, "out of memory");
	}
	e = &m->ev[m->nev++];
	e->st = st;
	e->n = n;
	e->off = m->alen;
	if (p != NULL && n > 0) {
		if (m->acap - m->alen < n) {
			m->acap = (m->acap + n) * 2;
			m->arena = realloc(m->arena, m->acap);
			FZ_CHECK(m->arena != NULL, "out of memory");
		}
		memcpy(m->arena + m->alen, p, n);
		m->alen += n;
	}
}

static size_t model_pending(const struct model *m)
{
	return m->nev - m->head;
}

static void model_pop(struct model *m)
{
	if (++m->head == m->nev)
		m->head = m->nev = m->alen = 0;
}

/* One stream octet through the rules of linein.c. */
static void model_byte(struct model *m, char c)
{
	size_t n;

	if (m->flood)
		return;
	if (c != '\n') {
		if (m->raw < sizeof m->cur)
			m->cur[m->raw] = c;
		m->raw++;
		if (m->raw == (size_t)LINE_FLOOD_MAX + 1) {
			m->flood = 1;
			model_push(m, LINEIN_FLOOD, NULL, 0);
		}
		return;
	}
	n = m->raw;
	if (n > 0 && n <= sizeof m->cur && m->cur[n - 1] == '\r')
		n--;
	else if (n > sizeof m->cur)
		n = m->max + 1;    /* far over max whatever its last octet */
	if (n > m->max)
		model_push(m, LINEIN_TOOLONG, NULL, 0);
	else if (memchr(m->cur, '\0', n) != NULL)
		model_push(m, LINEIN_NUL, m->cur, n);
	else
		model_push(m, LINEIN_LINE, m->cur, n);
	m->raw = 0;
}

/* k copies of c through the model, without a loop over octets that change nothing. */
static void model_run(struct model *m, char c, size_t k)
{
	size_t fill;

	if (c == '\n' || m->flood) {
		while (k-- > 0 && !m->flood)
			model_byte(m, c);
		return;
	}
	fill = m->raw < sizeof m->cur ? sizeof m->cur - m->raw : 0;
	if (fill > k)
		fill = k;
	if (fill > 0)
		memset(m->cur + m->raw, c, fill);
	if (m->raw <= (size_t)LINE_FLOOD_MAX && k > (size_t)LINE_FLOOD_MAX - m->raw) {
		m->raw = (size_t)LINE_FLOOD_MAX + 1;
		m->flood = 1;
		model_push(m, LINEIN_FLOOD, NULL, 0);
		return;
	}
	m->raw += k;
}

struct run {
	struct linein l;
	struct model  m;
	size_t        feed_max;   /* short reads: at most this many octets per commit */
	int           flooded;    /* the reader said FLOOD */
};

/* linein_next until it needs more, matching each result with the model. */
static void drain(struct run *r)
{
	struct slice line;
	enum linein_status st;
	const struct event *e;

	for (;;) {
		st = linein_next(&r->l, r->m.max, &line);
		if (r->flooded) {
			FZ_CHECK(st == LINEIN_FLOOD, "FLOOD must be sticky, got %d", (int)st);
			return;
		}
		if (st == LINEIN_MORE) {
			FZ_CHECK(model_pending(&r->m) == 0, "reader wants more, model expects event %d",
			    (int)r->m.ev[r->m.head].st);
			return;
		}
		FZ_CHECK(model_pending(&r->m) > 0, "unexpected event %d", (int)st);
		e = &r->m.ev[r->m.head];
		FZ_CHECK(st == e->st, "event %d, model says %d", (int)st, (int)e->st);
		if (st == LINEIN_LINE || st == LINEIN_NUL) {
			FZ_CHECK(line.n <= r->m.max, "line of %zu over max %zu", line.n, r->m.max);
			FZ_CHECK(line.p >= r->l.buf && line.p + line.n <= r->l.buf + r->l.cap,
			    "slice outside the buffer");
			FZ_CHECK(line.n == e->n, "line length %zu, model %zu", line.n, e->n);
			FZ_CHECK(line.n == 0 || memcmp(line.p, r->m.arena + e->off, line.n) == 0,
			    "line bytes differ");
			FZ_CHECK((st == LINEIN_NUL) == (memchr(line.p, '\0', line.n) != NULL),
			    "NUL status wrong");
		} else {
			FZ_CHECK(line.p == NULL && line.n == 0, "no slice expected with status %d",
			    (int)st);
		}
		model_pop(&r->m);
		if (st == LINEIN_FLOOD) {
			r->flooded = 1;
			st = linein_next(&r->l, r->m.max, &line);
			FZ_CHECK(st == LINEIN_FLOOD, "FLOOD must be sticky, got %d", (int)st);
			return;
		}
	}
}

/*
 * Commit n octets (as several reads when space or feed_max is smaller), draining
 * after each. same: all n octets equal p[0] (the model takes them at once).
 */
static void feed(struct run *r, const uint8_t *p, size_t n, int same)
{
	char *dst;
	size_t space, k, i;

	while (n > 0) {
		linein_space(&r->l, &dst, &space);
		FZ_CHECK(space > 0, "no space after a full drain (pending %zu, cap %zu)",
		    linein_pending(&r->l), r->l.cap);
		FZ_CHECK(dst >= r->l.buf && dst + space <= r->l.buf + r->l.cap, "space outside buffer");
		k = n < space ? n : space;
		if (k > r->feed_max)
			k = r->feed_max;
		memcpy(dst, p, k);
		linein_commit(&r->l, k);
		if (same)
			model_run(&r->m, (char)p[0], k);
		else
			for (i = 0; i < k; i++)
				model_byte(&r->m, (char)p[i]);
		drain(r);
		p += k;
		n -= k;
	}
}

static void reset(struct run *r)
{
	linein_reset(&r->l);
	FZ_CHECK(linein_pending(&r->l) == 0, "reset left octets");
	while (model_pending(&r->m) > 0)
		model_pop(&r->m);
	r->m.raw = 0;
	r->m.flood = 0;
	r->flooded = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t rep[8192];
	struct run r;
	size_t cap, pos, n, count, piece, saved, run_total = 0;
	uint8_t op;

	if (size < 2)
		return 0;
	memset(&r, 0, sizeof r);
	/* Buffer and limit: the session's own (command and SASL lines), or small ones. */
	if (data[0] & 0x80) {
		cap = INPUT_BUF_SIZE;
		r.m.max = (data[1] & 1) ? 4096 : CMD_LINE_MAX;
	} else {
		cap = 2 + (size_t)(data[0] & 0x7f) * 3;
		r.m.max = data[1] % (cap - 1);     /* max + 2 <= cap */
	}
	r.feed_max = (size_t)-1;
	FZ_CHECK(linein_init(&r.l, cap) == 0, "linein_init(%zu)", cap);

	for (pos = 2; pos < size;) {
		op = data[pos++];
		switch (op >> 6) {
		case 0:
		case 1:     /* a chunk of 1..128 literal octets */
			n = (size_t)(op & 0x7f) + 1;
			if (n > size - pos)
				n = size - pos;
			feed(&r, data + pos, n, 0);
			pos += n;
			break;
		case 2:     /* a run: octet, 16-bit count times 1..4, in reads of 64..8192 */
			if (size - pos < 3) {
				pos = size;
				break;
			}
			count = ((size_t)data[pos + 1] | (size_t)data[pos + 2] << 8) *
			    ((size_t)(op & 3) + 1);
			if (count > RUN_BUDGET - run_total)
				count = RUN_BUDGET - run_total;    /* keep every input fast */
			if (data[pos] == '\n' && count > 4096)
				count = 4096;     /* one event each: runs of empty lines teach little */
			run_total += count;
			memset(rep, data[pos], sizeof rep);
			pos += 3;
			piece = (size_t)64 << ((op >> 2) & 7);
			saved = r.feed_max;
			r.feed_max = (size_t)-1;
			while (count > 0) {
				n = count < piece ? count : piece;
				feed(&r, rep, n, 1);
				count -= n;
			}
			r.feed_max = saved;
			break;
		default:    /* 0xc0: STLS reset; else short reads of at most 1..63 octets */
			if ((op & 0x3f) == 0)
				reset(&r);
			else
				r.feed_max = op & 0x3f;
			break;
		}
	}
	FZ_CHECK(model_pending(&r.m) == 0, "model still expects %zu events", model_pending(&r.m));
	free(r.m.ev);
	free(r.m.arena);
	linein_free(&r.l);
	linein_free(&r.l);    /* documented safe twice */
	return 0;
}
