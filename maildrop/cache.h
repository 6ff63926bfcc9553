/*
 * cache: the size cache ROOT/pop3d.cache, private to maildrop/. It maps a
 * message's base name to its mtime, disk size and CRLF size so that a second
 * login reads and stats no message file.
 *
 * Format: the line MD_CACHE_VERSION, then one line per message:
 *   BASE \t MTIME \t DISK_SIZE \t CRLF_SIZE \n
 * with decimal numbers. The file belongs to the user's maildir and is
 * untrusted: a line that does not parse strictly is ignored, and so is a file
 * larger than MD_CACHE_FILE_MAX.
 */
#ifndef POP3D_MAILDROP_CACHE_H
#define POP3D_MAILDROP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define MD_CACHE_FILE     "pop3d.cache"
#define MD_CACHE_VERSION  "pop3d-size-cache 1"
/* A real cache holds one short line per message; anything bigger is not ours. */
#define MD_CACHE_FILE_MAX (64u * 1024 * 1024)

struct md_cache_rec {
	const char *name;       /* base name; not NUL-terminated */
	size_t      namelen;
	int64_t     mtime;      /* >= 0 */
	uint64_t    disk_size;
	uint64_t    size;       /* CRLF size; disk_size <= size <= 2 * disk_size */
};

struct md_cache {
	char                *buf;     /* owned: the file's bytes; rec[].name points into it */
	struct md_cache_rec *rec;     /* owned: sorted by name, names unique */
	unsigned char       *used;    /* owned: rec[i] was returned by md_cache_find */
	size_t               n;
	size_t               n_used;
	size_t               bad;     /* lines ignored: malformed, duplicate, over the limit */
};

/*
 * Read ROOT/pop3d.cache into c (which it initialises), keeping at most
 * max_recs records. Never fatal: returns 0 when the file was read or is
 * absent, -1 when it was ignored (reason in err); c is usable either way.
 */
int md_cache_load(struct md_cache *c, const char *root, size_t max_recs, char *err, size_t errlen);

/* The record for a base name, or NULL. Marks it used. */
const struct md_cache_rec *md_cache_find(struct md_cache *c, const char *name, size_t namelen);

/* 1 when a rewrite would drop something: bad lines, or records never found. */
int md_cache_stale(const struct md_cache *c);

/* 1 when a base name can be stored: 1..NAME_MAX octets, no tab, LF or NUL. */
int md_cache_name_ok(const char *name, size_t namelen);

/*
 * Replace ROOT/pop3d.cache with exactly recs (records whose name fails
 * md_cache_name_ok or whose mtime is negative are left out), crash-safely:
 * write ROOT/tmp/pop3d.cache.PID.RANDOM, fsync, rename over, fsync ROOT.
 * Returns 0, or -1 with a reason in err (the old cache is then unchanged).
 */
int md_cache_write(const char *root, const struct md_cache_rec *recs, size_t n, char *err, size_t errlen);

/* Free what md_cache_load allocated; safe to call twice. */
void md_cache_free(struct md_cache *c);

#endif
