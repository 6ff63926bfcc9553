/*
 * linein: owns the input buffer and splits client bytes into bounded lines.
 * Grows the buffer only when asked (linein_grow), never hands out a line with NUL or over
 * max, never reads past len, and never frees a buffer without wiping it (it held passwords).
 *
 * Rules (chunking never changes the outcome):
 *  - A line is the octets before an LF; one CR right before the LF is stripped.
 *  - Line content over max: LINEIN_TOOLONG once, when its LF arrives; the bytes are discarded
 *    as they come (skip mode), so the buffer never holds more than cap.
 *  - More than LINE_FLOOD_MAX octets before an LF: LINEIN_FLOOD. It is sticky: every later
 *    call returns LINEIN_FLOOD (and discards input) until linein_reset.
 *  - A complete line within max containing NUL: LINEIN_NUL, and *line shows it for logging.
 */
#include "server/linein.h"
#include "server/limits.h"

#include <stdlib.h>
#include <string.h>

int linein_init(struct linein *l, size_t cap)
{
	memset(l, 0, sizeof(*l));
	if (cap < 2)
		return -1;
	l->buf = malloc(cap);
	if (l->buf == NULL)
		return -1;
	l->cap = cap;
	return 0;
}

/* Not realloc: it may move the bytes and free the old block unwiped, password and all. */
int linein_grow(struct linein *l, size_t cap)
{
	char *p;

	if (cap <= l->cap)
		return 0;
	p = malloc(cap);
	if (p == NULL)
		return -1;
	memcpy(p, l->buf, l->len);
	wipe(l->buf, l->cap);
	free(l->buf);
	l->buf = p;
	l->cap = cap;
	return 0;
}

void linein_free(struct linein *l)
{
	if (l->buf != NULL)
		wipe(l->buf, l->cap);
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

void linein_space(struct linein *l, char **p, size_t *n)
{
	if (l->start == l->len) {
		l->start = l->len = 0;
	} else if (l->start > 0) {
		memmove(l->buf, l->buf + l->start, l->len - l->start);
		l->len -= l->start;
		l->start = 0;
	}
	*p = l->buf + l->len;
	*n = l->cap - l->len;
}

void linein_commit(struct linein *l, size_t n)
{
	if (n > l->cap - l->len)
		n = l->cap - l->len;   /* caller bug: never trust it past the buffer */
	l->len += n;
}

size_t linein_pending(const struct linein *l)
{
	return l->len - l->start;
}

void linein_reset(struct linein *l)
{
	l->start = 0;
	l->len = 0;
	l->skipping = 0;
}

/* Discard every buffered octet, adding it to the skipped count. */
static void discard_all(struct linein *l)
{
	l->skipping += l->len - l->start;
	l->start = l->len = 0;
}

/* Skip mode: drop octets up to and including the LF of the overlong line. */
static enum linein_status skip_line(struct linein *l)
{
	char *lf;

	if (l->skipping > LINE_FLOOD_MAX) {
		discard_all(l);
		return LINEIN_FLOOD;
	}
	lf = memchr(l->buf + l->start, '\n', l->len - l->start);
	if (lf == NULL) {
		discard_all(l);
		return l->skipping > LINE_FLOOD_MAX ? LINEIN_FLOOD : LINEIN_MORE;
	}
	l->skipping += (size_t)(lf - (l->buf + l->start));
	l->start = (size_t)(lf - l->buf) + 1;
	if (l->skipping > LINE_FLOOD_MAX)
		return LINEIN_FLOOD;    /* stays in skip mode: sticky */
	l->skipping = 0;
	return LINEIN_TOOLONG;
}

/* No LF buffered: wait for more, or switch to skip mode once the line cannot fit max. */
static enum linein_status incomplete_line(struct linein *l, size_t max)
{
	/* max content octets plus a CR may still be waiting for their LF */
	if (linein_pending(l) <= max + 1)
		return LINEIN_MORE;
	discard_all(l);
	return l->skipping > LINE_FLOOD_MAX ? LINEIN_FLOOD : LINEIN_MORE;
}

enum linein_status linein_next(struct linein *l, size_t max, struct slice *line)
{
	char *p = l->buf + l->start;
	char *lf;
	size_t raw, n;

	line->p = NULL;
	line->n = 0;
	if (l->cap < 2)
		return LINEIN_MORE;
	if (max > l->cap - 2)
		max = l->cap - 2;       /* contract says max + 2 <= cap; stay bounded anyway */
	if (l->skipping > 0)
		return skip_line(l);
	lf = memchr(p, '\n', l->len - l->start);
	if (lf == NULL)
		return incomplete_line(l, max);
	raw = (size_t)(lf - p);
	l->start += raw + 1;
	if (raw > LINE_FLOOD_MAX) {
		l->skipping = raw;      /* only when cap > LINE_FLOOD_MAX; sticky as in skip_line */
		return LINEIN_FLOOD;
	}
	n = (raw > 0 && p[raw - 1] == '\r') ? raw - 1 : raw;
	if (n > max)
		return LINEIN_TOOLONG;
	line->p = p;
	line->n = n;
	return memchr(p, '\0', n) != NULL ? LINEIN_NUL : LINEIN_LINE;
}
