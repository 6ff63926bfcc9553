/*
 * session: one client connection: its socket, timers, input reader, output
 * queue with backpressure, reference count and the single destroy path.
 * Knows nothing of POP3 commands; pop3.c drives it.
 */
#ifndef POP3D_SESSION_H
#define POP3D_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "policy/rules.h"
#include "server/ipcount.h"
#include "server/linein.h"
#include "server/multiline.h"

struct daemon;
struct listener;
struct maildrop;
struct auth_req;
struct tls_conn;
struct sasl;

enum tls_state {
	TLSS_NONE,           /* clear text */
	TLSS_HANDSHAKE,      /* handshake running: no POP3 input is processed */
	TLSS_ACTIVE          /* every byte goes through the engine */
};

enum pop3_state {
	ST_AUTH   = 1u << 0,   /* AUTHORIZATION */
	ST_TRANS  = 1u << 1,   /* TRANSACTION */
	ST_UPDATE = 1u << 2    /* UPDATE: entered only by QUIT from TRANSACTION */
};

/* A resumable long reply (habit 9): one in flight per session. */
enum job_kind {
	JOB_NONE,
	JOB_LIST,        /* multi-line LIST */
	JOB_UIDL,        /* multi-line UIDL */
	JOB_MSG          /* RETR or TOP: file chunks through the encoder */
};

struct job {
	enum job_kind kind;
	size_t        next;       /* LIST/UIDL: next message index */
	size_t        msg;        /* JOB_MSG: message index */
	int           is_retr;    /* JOB_MSG: RETR (counts as download) rather than TOP */
	uv_file       fd;         /* JOB_MSG: -1 when not open */
	int64_t       offset;
	uint64_t      sent;       /* JOB_MSG: message octets read so far */
	uint64_t      wire;       /* JOB_MSG: octets encoded so far, stuffing included */
	struct ml_enc enc;
	char         *chunk;      /* JOB_MSG: FILE_CHUNK read buffer */
	uv_fs_t       fs;         /* JOB_MSG: the one read in flight */
	int           reading;
};

struct session {
	struct daemon   *d;
	struct session  *prev, *next;
	uint64_t         id;

	struct listener *listener;       /* where the connection arrived */
	struct conf_set *cs;             /* the configuration generation this session runs on */
	const struct listen_cfg *lcfg;   /* its listen entry in cs */
	uv_tcp_t         tcp;
	uv_timer_t       idle;           /* autologout (RFC 1939 §3) */
	uv_timer_t       delay;          /* failed-auth delay */
	unsigned         refs;           /* handles open + requests in flight */
	int              closing;        /* no more input is processed */
	int              close_after_flush;
	const char      *close_reason;

	struct sockaddr_storage peer_sa;
	struct ipkey     peer_key;
	int              counted_ip;     /* holds a per-IP slot */
	int              counted;        /* counts in shared.nsessions (max_connections) */
	int              served;         /* passed the caps: gets a session end line */
	int              trusted;        /* peer in limits.trusted: no per-IP cap, no backoff */
	int              proxy_wait;     /* waiting for the PROXY header (proxy_protocol listener) */
	char             peer[64];       /* "addr" for logs */
	uint16_t         peer_port;

	/* input */
	struct linein    in;
	int              reading;        /* uv_read_start is in effect */

	/* TLS: ciphertext is read into cin and fed to the engine */
	struct tls_conn *tls;
	enum tls_state   tls_state;
	int              tls_start;      /* STLS answered: start TLS once the +OK is written */
	int              tls_notified;   /* close_notify queued */
	char            *cin;
	int              plaintext_trusted; /* peer in auth.plaintext_trusted */

	/* output: out is being filled; wbuf is in flight in wreq */
	char            *out;
	size_t           out_len, out_cap;
	char            *wbuf;
	size_t           wlen, wcap;
	uv_write_t       wreq;
	int              writing;

	/* POP3 */
	unsigned         state;          /* one of enum pop3_state */
	int              busy;           /* a command runs asynchronously */
	int              processing;     /* session_process is on the stack */
	unsigned         bad_cmds;
	char             timestamp[160]; /* APOP <...> from the greeting; "" when not offered */
	char            *user;           /* name from USER, or the logged-in user */
	size_t           user_len;
	int              user_refused;    /* USER named no possible user: PASS fails, whatever it is */
	struct users    *users;          /* reference used for this login */
	struct auth_req *auth;           /* pending password check */
	uint64_t         auth_started;   /* uv_now at PASS/APOP, for the failure delay */
	char            *md_path;        /* expanded maildrop path */
	struct maildrop *md;             /* locked snapshot in TRANSACTION/UPDATE */
	int              quit_seen;      /* QUIT received in TRANSACTION */
	size_t           doubt_logged;   /* messages UPDATE kept in doubt (lines capped) */
	int              utf8;           /* UTF8 command given (RFC 6856) */
	struct rule      rule;           /* retention policy of the logged-in user */
	struct sasl     *sasl;           /* AUTH exchange in progress: lines go to it */
	const char      *mech;           /* mechanism of the login attempt, for logs */
	struct job       job;

	/*
	 * Per-session counts for the end-of-session log line. removed: files UPDATE
	 * removed, for DELE or by the retention policy; removed_policy: of those,
	 * the ones the policy chose (retention = "delete" after a download).
	 */
	uint64_t         retr_count, retr_bytes, dele_count, removed, removed_policy;
	uint64_t         started_ms;
};

/* Accept a connection from server (a listening uv_tcp_t whose data is the daemon). */
void session_accept(struct daemon *d, uv_stream_t *server);

/*
 * Queue reply bytes. Never fails visibly: on ENOMEM the session is closed.
 * Use session_replyf for one formatted line (CRLF is added).
 */
void session_write(struct session *s, const char *p, size_t n);
void session_replyf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Octets queued or in flight: the backpressure measure. */
size_t session_backlog(const struct session *s);

/* Room for up to need octets at the end of the output queue; NULL on ENOMEM. */
char *session_out_reserve(struct session *s, size_t need);
void session_out_commit(struct session *s, size_t n);

/* An asynchronous command finished: process further pipelined input. */
void session_resume(struct session *s);

/* Close once everything queued is written (after QUIT's reply). */
void session_close_after_flush(struct session *s, const char *reason);

/* Close now: stop reading, drop queued output, cancel work, never UPDATE. */
void session_close(struct session *s, const char *reason);

/* Hold / release a reference for a request in flight (uv_work, uv_fs). */
void session_ref(struct session *s);
void session_unref(struct session *s);

/* STLS was answered: switch to TLS once that +OK is on the wire (RFC 2595). */
void session_start_tls_after_flush(struct session *s);

/* Close every session (shutdown); ones in UPDATE finish first. */
void session_close_all(struct daemon *d, const char *reason);

#endif
