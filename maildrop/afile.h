/*
 * afile: a maildir file replaced crash-safely (private to maildrop/): written
 * to ROOT/tmp/NAME.PID.RANDOM, fsynced, then renamed over ROOT/NAME, and ROOT
 * fsynced. A reader sees the old file or the new one, never a mix.
 */
#ifndef POP3D_AFILE_H
#define POP3D_AFILE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct afile {
	int       fd;
	int       e;              /* the first error (an errno value), sticky */
	size_t    len;            /* octets buffered */
	uint64_t  total;          /* octets put so far */
	char     *b;
	const char *root;
	char      tmp[PATH_MAX];  /* the temporary file */
	char      final[PATH_MAX];/* ROOT/NAME */
};

/* Create the temporary file (O_EXCL, 0600). 0, or -1 with errno set. */
int afile_open(struct afile *a, const char *root, const char *name);

/* Append octets; a write error sticks in a->e and later puts do nothing. */
void afile_put(struct afile *a, const char *p, size_t n);

/* Flush, fsync and close the temporary file. 0, or -1 with errno (it is removed). */
int afile_finish(struct afile *a);

/*
 * After afile_finish: rename over ROOT/NAME and fsync ROOT. 0; -1 with errno
 * when the rename failed (the temporary file is removed); -2 with errno when
 * only the directory fsync failed (the new file is in place).
 */
int afile_install(struct afile *a);

/* Give up after afile_finish: remove the temporary file. */
void afile_discard(struct afile *a);

#endif
