/*
 * linein: the one bounded line reader every byte from a client passes through.
 * The caller reads straight into its buffer, which grows only on linein_grow.
 */
#ifndef POP3D_LINEIN_H
#define POP3D_LINEIN_H

#include <stddef.h>
#include "server/strutil.h"

enum linein_status {
	LINEIN_LINE,    /* *line holds one line without its LF and one trailing CR */
	LINEIN_MORE,    /* no complete line buffered: read more */
	LINEIN_TOOLONG, /* a line longer than max was skipped whole (up to its LF) */
	LINEIN_NUL,     /* a complete line contained a NUL byte; it was consumed */
	LINEIN_FLOOD    /* more than LINE_FLOOD_MAX octets without LF: close the session */
};

struct linein {
	char   *buf;        /* owned, cap bytes */
	size_t  cap;
	size_t  start;      /* first unconsumed byte */
	size_t  len;        /* end of valid bytes */
	size_t  skipping;   /* >0 while discarding an overlong line: octets discarded so far */
};

/* Allocate the buffer (cap octets). Returns 0 or -1 on ENOMEM. */
int linein_init(struct linein *l, size_t cap);

/*
 * Enlarge the buffer to cap octets (never shrinks), keeping what is buffered;
 * the old buffer is wiped before it is freed. Slices returned earlier become
 * invalid. 0, or -1 on ENOMEM (unchanged).
 */
int linein_grow(struct linein *l, size_t cap);

/* Wipe and free the buffer; safe to call twice. */
void linein_free(struct linein *l);

/*
 * Free space for the next read: *p and *n describe where up to *n octets may be
 * written (compacting consumed bytes first). *n is 0 when the buffer is full of
 * an incomplete line that fits max: the caller must first call linein_next.
 */
void linein_space(struct linein *l, char **p, size_t *n);

/* Record that n octets were written at the place linein_space returned. */
void linein_commit(struct linein *l, size_t n);

/*
 * Take the next line of at most max octets (not counting CRLF/LF; max + 2 must
 * not exceed cap). A bare LF ends a line; one CR before the LF is stripped.
 * The slice stays valid until the next call that changes the reader.
 */
enum linein_status linein_next(struct linein *l, size_t max, struct slice *line);

/* Number of unconsumed octets buffered. */
size_t linein_pending(const struct linein *l);

/* Drop everything buffered (STLS: nothing sent before the handshake may run after it). */
void linein_reset(struct linein *l);

#endif
