/*
 * auth: the users file and password checks. Hashing runs on the libuv thread
 * pool behind an asynchronous seam; secrets are wiped after use and never logged.
 */
#ifndef POP3D_AUTH_H
#define POP3D_AUTH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "server/diag.h"
#include "server/ipcount.h"
#include "server/limits.h"

enum pw_scheme {
	PW_CRYPT,   /* crypt(3) string: $y$ $6$ $5$ $2b$ $2y$ ..., prefix stripped */
	PW_PLAIN,   /* {PLAIN}secret: also enables APOP for this user */
	PW_SCRAM    /* {SCRAM-SHA-256}iter,salt,StoredKey,ServerKey (Dovecot's format) */
};

/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677). A {SCRAM-SHA-256} secret is Dovecot's
 * "<iterations>,<base64 salt>,<base64 StoredKey>,<base64 ServerKey>"
 * (src/auth/password-scheme-scram.c): standard padded base64, keys of 32
 * octets. Dovecot refuses fewer than 4096 iterations (RFC 7677 §4 asks for at
 * least 4096); we also refuse more than SCRAM_ITER_MAX, because every login
 * costs that many HMACs on a pool thread (Dovecot allows INT_MAX; OWASP's
 * 2023 advice for PBKDF2-HMAC-SHA256 is 600000). A salt above SCRAM_SALT_MAX
 * octets is refused (Dovecot makes 16).
 */
#define SCRAM_KEY_LEN      32
#define SCRAM_SALT_LEN     16
#define SCRAM_SALT_MAX     128
#define SCRAM_ITER_MIN     4096
#define SCRAM_ITER_MAX     10000000
#define SCRAM_ITER_DEFAULT 4096

struct scram_cred {
	uint32_t      iter;
	size_t        salt_len;
	unsigned char salt[SCRAM_SALT_MAX];
	unsigned char stored_key[SCRAM_KEY_LEN];  /* H(HMAC(SaltedPassword, "Client Key")) */
	unsigned char server_key[SCRAM_KEY_LEN];  /* HMAC(SaltedPassword, "Server Key") */
};

struct user {
	char          *name;     /* login name as written: "bob" or "bob@example.org" */
	char          *secret;   /* crypt string or plain secret (scheme prefix removed) */
	enum pw_scheme scheme;
	char          *home;     /* field 6, "" when absent */
	int            line;     /* line in the users file */
	struct scram_cred *scram; /* PW_SCRAM: parsed from the secret; PW_PLAIN: derived at
	                             load (see users_scram); PW_CRYPT: NULL. Owned by users. */
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
	atomic_uint  refs;       /* users_ref/users_unref, from any worker; starts at 1 */
	size_t       nscram;     /* users with a {SCRAM-SHA-256} secret */
	uint32_t     scram_iter; /* their most common iteration count, else SCRAM_ITER_DEFAULT:
	                            given to {PLAIN} and unknown users (see users_scram) */
	unsigned char scram_key[SCRAM_KEY_LEN]; /* random per load: keys the fake salts */
	enum pw_scheme dummy_scheme;  /* what checking an unknown name costs: the most
	                                 common kind of user in the file */
	const char    *dummy_setting; /* PW_CRYPT: a real user's setting (same cost) */
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
 * Loading also draws scram_key from RAND_bytes (-1, "FILE: no random bytes",
 * when that fails) and, when some user has a {SCRAM-SHA-256} secret (SCRAM is
 * offered only then), derives SCRAM keys for each {PLAIN} user (2 * scram_iter
 * SHA-256 blocks each, a few ms).
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
 * 1 when some user has a {SCRAM-SHA-256} secret: SCRAM-SHA-256 is offered only
 * then (and {PLAIN} users can use it too).
 */
int users_any_scram(const struct users *u);

/*
 * SCRAM-SHA-256 credentials of a login name, copied into *out. Returns 1 for
 * a user who can log in with SCRAM: a {SCRAM-SHA-256} user, or a {PLAIN} user,
 * whose keys users_load derived with salt HMAC-SHA256(scram_key, name) cut to
 * SCRAM_SALT_LEN and scram_iter iterations. Returns 0 for anyone else (unknown
 * name, crypt user) with that same kind of salt and count, so a server-first
 * message looks alike for every name and stays the same for a name while
 * these users are loaded, and keys that no password matches (all zero: no
 * SHA-256 preimage is known). Cheap; any thread.
 */
int users_scram(const struct users *u, const char *name, size_t n, struct scram_cred *out);

/*
 * SaltedPassword = PBKDF2-HMAC-SHA256(pass, salt, iter) (RFC 5802 Hi()), then
 * StoredKey and ServerKey. The password is used as the octets given (no
 * SASLprep, as Dovecot). Plain C without OpenSSL, so it is safe on pool
 * threads; costs 2 * iter SHA-256 blocks. Wipes its intermediate values.
 */
void auth_scram_keys(const char *pass, size_t plen, const unsigned char *salt, size_t salt_len,
                     uint32_t iter, unsigned char stored_key[SCRAM_KEY_LEN],
                     unsigned char server_key[SCRAM_KEY_LEN]);

/* HMAC-SHA256 (RFC 2104) and SHA-256 in the same plain C: any thread. */
void auth_hmac_sha256(const void *key, size_t klen, const void *msg, size_t n,
                      unsigned char out[SCRAM_KEY_LEN]);
void auth_sha256(const void *msg, size_t n, unsigned char out[SCRAM_KEY_LEN]);

/*
 * Base64 (RFC 4648 §4, standard alphabet, padded), shared by the users file
 * and SASL. b64_encode writes 4 * ceil(n / 3) octets and a NUL into dst.
 * b64_decode is strict: the length must be a multiple of 4, only the alphabet,
 * '=' only as one or two final octets, and the unused bits of the last symbol
 * zero (so each value has exactly one encoding); no whitespace. Empty input
 * decodes to empty. Both return 0 with *outlen set, or -1 when the input is
 * not canonical base64 or the result (and NUL, for encode) does not fit in
 * dstcap; dst may then hold garbage.
 */
int b64_encode(char *dst, size_t dstcap, const unsigned char *src, size_t n, size_t *outlen);
int b64_decode(unsigned char *dst, size_t dstcap, const char *src, size_t n, size_t *outlen);

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
 * The password checks of one event loop: at most `limit` hash on the thread
 * pool at once (each yescrypt check takes 16 MiB), the rest wait in line. A
 * free turn goes to a waiter whose client (its backoff key: an IPv4 address
 * or an IPv6 /64) has no check running, and among those to the one whose
 * address had the fewest recent failed logins when it asked, the oldest first;
 * only when every waiter's address has a check running, to the fewest
 * failures, oldest first, of all. So one address flooding logins delays
 * another address's login by about one hash rather than by its backlog, and
 * addresses that keep failing wait behind those that do not. Loop thread only.
 */
struct auth_queue {
	uv_loop_t       *loop;
	unsigned         limit;              /* 1..AUTH_HASH_CONCURRENCY */
	unsigned         hashing;            /* checks on the pool now */
	struct ipkey     running[AUTH_HASH_CONCURRENCY];  /* their clients */
	struct auth_req *wait_head, *wait_tail;
	size_t           waiting;
};

void auth_queue_init(struct auth_queue *q, uv_loop_t *loop, unsigned limit);

/*
 * Start checking name/password on the thread pool, in q's line, for the
 * client who (NULL: no client, it then never gets a turn ahead of others),
 * whose address has `failures` recent failed logins (its place in line).
 * The request copies what it needs (and wipes its copy of the password); the
 * caller may wipe its own buffers at once. An unknown user is checked against
 * a dummy hash so both failures cost the same time. cb runs on the loop thread
 * exactly once unless auth_cancel is called first. Returns NULL on ENOMEM.
 */
struct auth_req *auth_check(struct auth_queue *q, const struct ipkey *who, long failures,
                            struct users *u, const char *name, size_t nlen,
                            const char *pass, size_t plen, auth_cb cb, void *arg);

/*
 * Decide at once, on the caller's thread, when no hashing is involved: the
 * user has a {PLAIN} secret, or the name is unknown and the users file is
 * mostly {PLAIN} (so an unknown name costs the same as a real one). Returns 1
 * with *out set, or 0 when auth_check must run on the thread pool.
 */
int auth_check_inline(const struct users *u, const char *name, size_t nlen,
                      const char *pass, size_t plen, enum auth_result *out);

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

/*
 * As auth_hash_password, in a chosen scheme (ASCII case ignored): NULL or
 * "yescrypt" gives the same crypt string; "SCRAM-SHA-256" gives a whole
 * password field as Dovecot's "doveadm pw -s SCRAM-SHA-256" writes it:
 * "{SCRAM-SHA-256}4096,<salt>,<StoredKey>,<ServerKey>" with a 16-octet salt
 * from RAND_bytes. Returns a malloc'd string, or NULL with a reason in err
 * (unknown scheme, empty password, NUL in it, no randomness, ENOMEM).
 * Loop or main thread (uses OpenSSL's RAND_bytes).
 */
char *auth_hash_password_scheme(const char *pass, size_t plen, const char *scheme,
                                char *err, size_t errlen);

#endif
