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

/* One slot of the name index: rec[idx - 1] when idx > 0 (0: empty). */
struct md_cache_slot {
	uint32_t tag;           /* the high half of the name's hash: most misses never touch rec */
	uint32_t idx;
};

struct md_cache {
	char                 *buf;    /* owned: the file's bytes; rec[].name points into it */
	struct md_cache_rec  *rec;    /* owned: every line that parsed, in file order */
	struct md_cache_slot *slot;   /* owned: open addressing over rec by name; mask + 1 slots */
	unsigned char        *mark;   /* owned: per rec, MD_CACHE_USED / MD_CACHE_DUP */
	size_t                nrec;
	size_t                mask;
	size_t                n;      /* records md_cache_find can return (names seen once) */
	size_t                n_used;
	size_t                bad;    /* lines ignored: malformed, duplicate, over the limit */
	int                   ordered;/* rec[] is strictly increasing by (mtime, name): the
	                                 order maildir.c lists messages in, which is the
	                                 order md_cache_write was given */
	uint64_t              key[2]; /* random per load: the name hash cannot be aimed at */
};

#define MD_CACHE_USED 0x01u     /* returned by md_cache_find */
#define MD_CACHE_DUP  0x02u     /* its name is on two lines: neither is believed */

/*
 * Read ROOT/pop3d.cache into c (which it initialises, hash key included),
 * keeping at most max_recs records. Never fatal: returns 0 when the file was
 * read or is absent, -1 when it was ignored (reason in err); c is usable
 * either way (md_cache_hash works even then).
 */
int md_cache_load(struct md_cache *c, const char *root, size_t max_recs, char *err, size_t errlen);

/* A keyed hash of a name (SipHash-1-3 with c->key), for md_cache_find and the caller's own tables. */
uint64_t md_cache_hash(const struct md_cache *c, const char *name, size_t namelen);

/*
 * The record for a base name whose md_cache_hash is hash, or NULL (also for
 * a name on two lines). Marks it used. Its index rec - c->rec is its place in
 * the file.
 */
const struct md_cache_rec *md_cache_find(struct md_cache *c, const char *name, size_t namelen,
    uint64_t hash);

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
