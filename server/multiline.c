/*
 * multiline: owns the byte-exact RFC 1939 encoding of a message (CRLF, dot-stuffing, TOP, end).
 * Never does I/O, never allocates, never looks at more than the chunk it is given.
 *
 * Each output octet depends only on the state and the current input octet, so any chunking
 * gives the same bytes. A line starts after an LF only (never after a bare CR). The header
 * ends at the first line that is empty or a lone CR ("\n" or "\r\n" at a line start).
 * A message that does not end with LF (including one ending in a bare CR, "abc\r") gets
 * CRLF before ".\r\n"; that CRLF is not part of the message size.
 */
#include <string.h>

#include "server/multiline.h"

void ml_init(struct ml_enc *e, long top_lines)
{
	e->top_lines = top_lines < 0 ? -1 : top_lines;
	e->line_start = 1;
	e->prev_cr = 0;
	e->in_body = 0;
	e->line_empty = 1;
	e->ended = 0;
	e->any = 0;
	e->stuffed = 0;
}

int ml_ended(const struct ml_enc *e)
{
	return e->ended;
}

/* A line has just ended at its LF: track the header end and TOP's budget. */
static void end_of_line(struct ml_enc *e)
{
	if (!e->in_body) {
		if (e->line_empty) {
			e->in_body = 1;
			if (e->top_lines == 0)
				e->ended = 1;
		}
	} else if (e->top_lines > 0) {
		if (--e->top_lines == 0)
			e->ended = 1;
	}
	e->line_start = 1;
	e->line_empty = 1;
}

/* Encode one octet into out (at most 2 octets); returns octets written. */
static size_t encode_octet(struct ml_enc *e, char c, char *out)
{
	size_t w = 0;

	if (c == '\n') {
		if (!e->prev_cr)
			out[w++] = '\r';
		out[w++] = '\n';
		e->prev_cr = 0;
		end_of_line(e);
		return w;
	}
	if (e->line_start && c == '.') {
		out[w++] = '.';
		e->stuffed++;
	}
	out[w++] = c;
	/* "" or "\r" so far is still an empty line; anything else is not */
	if (c != '\r' || e->prev_cr)
		e->line_empty = 0;
	e->prev_cr = (c == '\r');
	e->line_start = 0;
	return w;
}

/*
 * RETR (no TOP budget): the header/body boundary does not matter, so whole
 * runs between LFs are copied with memchr/memcpy instead of octet by octet.
 * Output is identical to encode_octet's; only line_start and prev_cr matter.
 */
static size_t encode_runs(struct ml_enc *e, const char *in, size_t n, char *out)
{
	size_t i = 0, w = 0;

	while (i < n) {
		const char *lf = memchr(in + i, '\n', n - i);
		size_t end = lf != NULL ? (size_t)(lf - in) : n;

		if (end > i) {
			if (e->line_start && in[i] == '.') {
				out[w++] = '.';
				e->stuffed++;
			}
			memcpy(out + w, in + i, end - i);
			w += end - i;
			e->prev_cr = in[end - 1] == '\r';
			e->line_start = 0;
			e->line_empty = 0;
			i = end;
		}
		if (lf != NULL) {
			if (!e->prev_cr)
				out[w++] = '\r';
			out[w++] = '\n';
			e->prev_cr = 0;
			e->line_start = 1;
			e->line_empty = 1;
			i++;
		}
	}
	return w;
}

size_t ml_encode(struct ml_enc *e, const char *in, size_t n, char *out, size_t *consumed)
{
	size_t i, w = 0;

	if (e->top_lines < 0) {
		w = encode_runs(e, in, n, out);
		i = n;
	} else {
		for (i = 0; i < n && !e->ended; i++)
			w += encode_octet(e, in[i], out + w);
	}
	if (i > 0)
		e->any = 1;
	*consumed = i;
	return w;
}

size_t ml_finish(struct ml_enc *e, char *out)
{
	size_t w = 0;

	if (e->any && !e->line_start) {
		out[w++] = '\r';
		out[w++] = '\n';
	}
	out[w++] = '.';
	out[w++] = '\r';
	out[w++] = '\n';
	return w;
}
