/*
 * auth: the users file and password checks. Hashing runs on the libuv thread
 * pool behind an asynchronous seam; secrets are wiped after use and never logged.
 */
#ifndef POP3D_AUTH_H
#define POP3D_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "server/diag.h"

enum pw_scheme {
	PW_CRYPT,   /* crypt(3) string: $y$ $6$ $5$ $2b$ $2y$ ..., prefix stripped */
	PW_PLAIN    /* {PLAIN}secret: also enables APOP for this user */
};

struct user {
	char          *name;     /* login name as written: "bob" or "bob@example.org" */
	char          *secret;   /* crypt string or plain secret (scheme prefix removed) */
	enum pw_scheme scheme;
	char          *home;     /* field 6, "" when absent */
	int            line;     /* line in the users file */
};

/*
 * Users file limits. A line is counted without its LF and one CR before it:
 * Dovecot's passwd-file lines are short, and 4096 octets leaves room for
 * long hashes and extra fields. The whole file is capped so a wrong path
 * (a log, /dev/zero) cannot make us read without end.
 */
#define USERS_LINE_MAX 4096
#define USERS_FILE_MAX (64 * 1024 * 1024)

struct users {
	struct user *v;          /* sorted by name (byte order) for lookup */
	size_t       n;
	char        *path;
	unsigned     refs;       /* users_ref/users_unref; starts at 1 */
};

/*
 * Load a Dovecot-style passwd-file "user:password:uid:gid:gecos:home:shell:extra"
 * (only the first two fields required; '#' comments and blank lines allowed).
 * Unparseable lines, unknown schemes and duplicates are added to d as
 * "FILE:LINE: text" and skipped. Returns 0 with *out set (possibly with
 * problems in d), or -1 when the file cannot be read at all.
 * On -1, *out is NULL and d holds "FILE: reason" (cannot open, not a regular
 * file, larger than USERS_FILE_MAX, read error, out of memory). Lines are read
 * with a fixed buffer, so memory stays proportional to what is loaded. The
 * loaded users never change; share them with users_ref.
 */
int users_load(const char *path, struct users **out, struct diag *d);

/* Reference counting: a pending auth request or a session may hold one. */
struct users *users_ref(struct users *u);
void users_unref(struct users *u);

/* Exact lookup of a login name (n octets). NULL when unknown. */
const struct user *users_find(const struct users *u, const char *name, size_t n);

/* 1 when any user has a {PLAIN} secret (APOP can work for someone). */
int users_any_plain(const struct users *u);

/*
 * 1 when a login name may be used to build a path: 1..255 octets, no '/', no
 * "..", no NUL, no control characters (< 0x20, 0x7F), not starting with '.'.
 */
int login_name_valid(const char *p, size_t n);

enum auth_result {
	AUTH_OK,      /* name and password match */
	AUTH_FAIL,    /* unknown user or wrong password (indistinguishable) */
	AUTH_ERROR    /* internal failure (hash library error): temporary */
};

typedef void (*auth_cb)(void *arg, enum auth_result r);

struct auth_req;

/*
 * Start checking name/password on the thread pool. The request copies what it
 * needs (and wipes its copy of the password); the caller may wipe its own
 * buffers at once. An unknown user is checked against a dummy hash so both
 * failures cost the same time. cb runs on the loop thread exactly once unless
 * auth_cancel is called first. Returns NULL on ENOMEM.
 */
struct auth_req *auth_check(uv_loop_t *loop, struct users *u, const char *name, size_t nlen,
                            const char *pass, size_t plen, auth_cb cb, void *arg);

/*
 * Forget the callback of a pending request (its owner is going away). The
 * request stays with the thread pool and is freed (password wiped, users
 * reference dropped) when the pool is done with it; cb never runs. Valid until
 * cb has returned, so calling it from inside cb is harmless; after that r is
 * gone. Loop thread only, like auth_check and users_ref/users_unref.
 */
void auth_cancel(struct auth_req *r);

/*
 * APOP (RFC 1939 §7): 1 when digest (32 hex chars, any case) equals
 * MD5(timestamp || secret) for a {PLAIN} user; 0 otherwise (including users
 * without a {PLAIN} secret). Cheap, so it runs on the caller's thread.
 */
int auth_apop(const struct users *u, const char *name, size_t nlen,
              const char *timestamp, const char *digest, size_t dlen);

/*
 * Hash a password with yescrypt for the users file. Returns a malloc'd crypt
 * string, or NULL with a reason in err.
 */
char *auth_hash_password(const char *pass, size_t plen, char *err, size_t errlen);

#endif
