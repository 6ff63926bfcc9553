/*
 * diag: a list of human-readable problems ("FILE:LINE: what is wrong") gathered
 * while checking configuration and the users file. Owns its strings.
 */
#ifndef POP3D_DIAG_H
#define POP3D_DIAG_H

#include <stddef.h>

struct diag {
	char   **msg;
	size_t   n;
	size_t   cap;
	int      oom;   /* an entry could not be stored */
};

/* Append one formatted problem. Never fails visibly: on ENOMEM sets d->oom. */
void diag_add(struct diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Free every entry; the struct may be reused. */
void diag_free(struct diag *d);

#endif
