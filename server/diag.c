/*
 * diag: owns a growing list of formatted problem strings for config/users checks.
 * Never aborts and never reports ENOMEM to the caller except through d->oom.
 */
#include "server/diag.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Room for one more entry; 0 or -1. */
static int diag_grow(struct diag *d)
{
	size_t ncap;
	char **m;

	if (d->n < d->cap)
		return 0;
	ncap = d->cap ? d->cap * 2 : 8;
	if (ncap > SIZE_MAX / sizeof(*m))
		return -1;
	m = realloc(d->msg, ncap * sizeof(*m));
	if (m == NULL)
		return -1;
	d->msg = m;
	d->cap = ncap;
	return 0;
}

void diag_add(struct diag *d, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0 || diag_grow(d) < 0) {
		d->oom = 1;
		return;
	}
	s = malloc((size_t)len + 1);
	if (s == NULL) {
		d->oom = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(s, (size_t)len + 1, fmt, ap);
	va_end(ap);
	d->msg[d->n++] = s;
}

void diag_free(struct diag *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		free(d->msg[i]);
	free(d->msg);
	d->msg = NULL;
	d->n = 0;
	d->cap = 0;
	d->oom = 0;
}
