/*
 * session: owns one connection's socket, timers, buffers and reference count,
 * and the one path that frees them. Never interprets a command and never
 * touches a maildrop itself (pop3.c does, through the thread pool).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"
#include "server/confset.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/log.h"
#include "server/listen.h"
#include "server/pop3.h"
#include "server/proxy.h"
#include "server/sasl.h"
#include "server/session.h"
#include "server/tlsio.h"

_Static_assert(INPUT_BUF_SIZE >= SASL_LINE_MAX + 2, "an AUTH line must fit the input buffer");
_Static_assert(INPUT_BUF_INITIAL >= CMD_LINE_MAX + 2, "a command line must fit the input buffer");
_Static_assert(INPUT_BUF_INITIAL >= PROXY_HEADER_MAX, "a PROXY header must fit the input buffer");

/* After QUIT's reply: how long we keep draining a client's leftover input. */
#define LINGER_MS 2000

static void session_process(struct session *s);
static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_idle(uv_timer_t *t);
static void tls_input(struct session *s);
static void tls_begin(struct session *s);
static void proxy_input(struct session *s);

/*
 * Give back the session's place in the connection caps: once closed (its
 * socket is closed at once) it no longer counts, even while its handles and
 * thread-pool work finish, so a client that quits and reconnects at once is
 * not refused by a slot still held on another worker's loop.
 */
static void
session_uncount(struct session *s)
{
	if (s->counted_ip) {
		daemon_ip_release(s->d, &s->peer_key);
		s->counted_ip = 0;
	}
	if (s->counted) {
		atomic_fetch_sub(&s->d->sh->nsessions, 1);
		s->counted = 0;
	}
}

static void
session_destroy(struct session *s)
{
	struct daemon *d = s->d;

	pop3_cleanup(s);
	tls_conn_free(s->tls);
	conf_set_unref(s->cs);
	free(s->cin);
	linein_free(&s->in);
	free(s->out);
	free(s->wbuf);
	session_uncount(s);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (d->sessions == s)
		d->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	d->nsessions--;
	free(s);
	daemon_session_gone(d);
}

void
session_ref(struct session *s)
{
	s->refs++;
}

void
session_unref(struct session *s)
{
	if (--s->refs == 0)
		session_destroy(s);
}

static void
on_handle_closed(uv_handle_t *h)
{
	session_unref(h->data);
}

size_t
session_backlog(const struct session *s)
{
	return s->out_len + (s->writing ? s->wlen : 0);
}

static void
idle_restart(struct session *s)
{
	/* The handshake has one deadline from its start, however the bytes trickle. */
	if (s->tls_state == TLSS_HANDSHAKE)
		return;
	if (!uv_is_closing((uv_handle_t *)&s->idle))
		uv_timer_start(&s->idle, on_idle, (uint64_t)s->cs->cfg->idle_timeout * 1000, 0);
}

/* Read only while we can act on what arrives: not busy, not backed up. */
static void
update_reading(struct session *s)
{
	int want = !s->closing && !s->busy && !s->close_after_flush &&
	           session_backlog(s) < OUTPUT_HIGH_WATER;

	if (want && !s->reading) {
		if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0)
			s->reading = 1;
	} else if (!want && s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = 0;
	}
}

static void on_write(uv_write_t *req, int status);

static void
write_start(struct session *s)
{
	uv_buf_t b = uv_buf_init(s->wbuf, (unsigned)s->wlen);

	s->wreq.data = s;
	if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_write) != 0) {
		session_close(s, "write failed");
		return;
	}
	s->writing = 1;
	session_ref(s);
}

/*
 * TLS: encrypt the whole plaintext queue (only while no write is in flight,
 * so ciphertext never piles up beyond one queue's worth) and send it.
 */
static void
tls_flush(struct session *s)
{
	size_t n;

	if (s->out_len > 0 && s->tls_state == TLSS_ACTIVE) {
		if (tls_conn_write(s->tls, s->out, s->out_len) != 0) {
			log_msg(LOG_WARN, "tls write failed id=%llx ip=%s: %s", (unsigned long long)s->id,
			        s->peer, tls_conn_error(s->tls));
			session_close(s, "tls error");
			return;
		}
		s->out_len = 0;
	}
	n = tls_conn_pending(s->tls);
	if (n == 0)
		return;
	if (s->wcap < n) {
		char *p = realloc(s->wbuf, n);
		if (p == NULL) {
			session_close(s, "out of memory");
			return;
		}
		s->wbuf = p;
		s->wcap = n;
	}
	s->wlen = tls_conn_take(s->tls, s->wbuf, n);
	write_start(s);
}

static void
session_flush(struct session *s)
{
	size_t cap;
	char *tmp;

	if (s->writing || uv_is_closing((uv_handle_t *)&s->tcp))
		return;
	if (s->tls != NULL) {
		tls_flush(s);
		return;
	}
	if (s->out_len == 0)
		return;
	/* Swap: the filled queue goes out, the drained write buffer is reused. */
	tmp = s->wbuf;
	cap = s->wcap;
	s->wbuf = s->out;
	s->wcap = s->out_cap;
	s->wlen = s->out_len;
	s->out = tmp;
	s->out_cap = cap;
	s->out_len = 0;
	write_start(s);
}

char *
session_out_reserve(struct session *s, size_t need)
{
	if (s->out_cap - s->out_len < need) {
		size_t cap = s->out_cap ? s->out_cap : 1024;
		char *p;
		while (cap - s->out_len < need)
			cap *= 2;
		p = realloc(s->out, cap);
		if (p == NULL) {
			session_close(s, "out of memory");
			return NULL;
		}
		s->out = p;
		s->out_cap = cap;
	}
	return s->out + s->out_len;
}

void
session_out_commit(struct session *s, size_t n)
{
	s->out_len += n;
	session_flush(s);
}

void
session_write(struct session *s, const char *p, size_t n)
{
	char *dst;

	if (s->closing)
		return;
	dst = session_out_reserve(s, n);
	if (dst == NULL)
		return;
	memcpy(dst, p, n);
	session_out_commit(s, n);
}

void
session_replyf(struct session *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 3)
		n = (int)sizeof line - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	session_write(s, line, (size_t)n);
}

static void
on_linger_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct session *s = h->data;

	(void)buf;
	if (nread < 0)
		session_close(s, s->close_reason);
	else if (nread > 0 && s->tls == NULL)
		linein_reset(&s->in);   /* discard: the session is over */
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
	struct session *s = req->data;

	free(req);
	(void)status;
	if (!s->closing)
		uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_linger_read);
	session_unref(s);
}

/*
 * Everything is written after QUIT (or a refusal): send FIN, then drain what
 * the client still sends until it closes, so that closing with unread input
 * cannot make the kernel reset the connection and destroy our last reply.
 */
static void
session_linger(struct session *s)
{
	uv_shutdown_t *req;

	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = 0;
	}
	uv_timer_start(&s->idle, on_idle, LINGER_MS, 0);
	req = malloc(sizeof *req);
	if (req == NULL) {
		session_close(s, s->close_reason);
		return;
	}
	req->data = s;
	if (uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown) != 0) {
		free(req);
		session_close(s, s->close_reason);
		return;
	}
	session_ref(s);
}

/* The last reply is written: a TLS close_notify goes out first, then FIN. */
static void
session_drained(struct session *s)
{
	if (s->tls_state == TLSS_ACTIVE && !s->tls_notified) {
		s->tls_notified = 1;
		tls_conn_close_notify(s->tls);
		session_flush(s);
		if (s->writing)
			return;   /* on_write comes back here */
	}
	session_linger(s);
}

/* STLS's +OK is on the wire: from now on every byte is TLS (RFC 2595 §4). */
static void
tls_begin(struct session *s)
{
	s->tls_start = 0;
	/* Anything the client pipelined behind STLS was sent in clear text and
	 * must never run inside TLS (CVE-2011-0411 class). */
	linein_reset(&s->in);
	s->cin = malloc(TLS_READ_BUF);
	s->tls = s->cin != NULL ? tls_conn_new(s->cs->tls) : NULL;
	if (s->tls == NULL) {
		session_close(s, "out of memory");
		return;
	}
	s->tls_state = TLSS_HANDSHAKE;
	s->busy = 0;
	uv_timer_start(&s->idle, on_idle, (uint64_t)s->cs->cfg->tls.handshake_timeout * 1000, 0);
	update_reading(s);
}

void
session_start_tls_after_flush(struct session *s)
{
	s->tls_start = 1;
	s->busy = 1;
	if (session_backlog(s) == 0 && !s->writing)
		tls_begin(s);
}

static void
on_write(uv_write_t *req, int status)
{
	struct session *s = req->data;

	s->writing = 0;
	if (status < 0) {
		if (!s->closing)
			session_close(s, status == UV_ECANCELED ? "closed" : "write error");
		session_unref(s);
		return;
	}
	if (s->closing) {
		session_unref(s);
		return;
	}
	idle_restart(s);
	session_flush(s);
	if (!s->writing && s->job.kind == JOB_NONE) {
		/* Nothing in flight and no long reply running: an idle session keeps
		 * no output buffers (most sessions are idle most of the time; a reply
		 * allocates again). During a RETR the same buffers are reused. */
		free(s->wbuf);
		s->wbuf = NULL;
		s->wcap = 0;
		if (s->out_len == 0) {
			free(s->out);
			s->out = NULL;
			s->out_cap = 0;
		}
	}
	if (s->close_after_flush) {
		if (session_backlog(s) == 0 && !s->writing)
			session_drained(s);
	} else if (s->tls_start) {
		if (session_backlog(s) == 0 && !s->writing)
			tls_begin(s);
	} else if (session_backlog(s) < OUTPUT_LOW_WATER) {
		if (s->job.kind != JOB_NONE)
			pop3_job_step(s);
		session_process(s);
	}
	session_unref(s);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct session *s = h->data;
	char *p;
	size_t n;

	(void)suggested;
	if (s->tls != NULL) {
		buf->base = s->cin;
		buf->len = TLS_READ_BUF;
		return;
	}
	linein_space(&s->in, &p, &n);
	buf->base = p;
	buf->len = n;
}

/*
 * OpenSSL failed and queued a fatal alert (protocol_version, bad_record_mac,
 * ...): send it through the normal write path, then close, so the client
 * learns why instead of seeing a bare EOF. No close_notify after a fatal alert.
 */
static void
tls_fail_close(struct session *s, const char *reason)
{
	s->tls_notified = 1;
	s->out_len = 0;   /* no reply can be encrypted after a fatal alert */
	session_flush(s);
	session_close_after_flush(s, reason);
}

/* Ciphertext arrived: advance the handshake, then let the session read plaintext. */
static void
tls_input(struct session *s)
{
	enum tls_status st;

	if (s->tls_state == TLSS_HANDSHAKE) {
		st = tls_conn_handshake(s->tls);
		if (st == TLS_FAIL) {
			log_msg(LOG_WARN, "tls handshake failed id=%llx ip=%s port=%u: %s",
			        (unsigned long long)s->id, s->peer, s->peer_port, tls_conn_error(s->tls));
			tls_fail_close(s, "tls handshake failed");
			return;
		}
		session_flush(s);
		if (st == TLS_WANT)
			return;
		s->tls_state = TLSS_ACTIVE;
		log_msg(LOG_INFO, "tls id=%llx ip=%s version=%s cipher=%s sni=%s",
		        (unsigned long long)s->id, s->peer, tls_conn_version(s->tls),
		        tls_conn_cipher(s->tls), tls_conn_sni(s->tls));
		idle_restart(s);
		pop3_tls_ready(s);
	}
	session_process(s);
}

static void
on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct session *s = h->data;

	(void)buf;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (s->tls_state == TLSS_HANDSHAKE)
			log_msg(LOG_WARN, "tls handshake failed id=%llx ip=%s port=%u: "
			        "connection closed by client", (unsigned long long)s->id, s->peer,
			        s->peer_port);
		session_close(s, nread == UV_EOF ? "disconnected" : "read error");
		return;
	}
	if (!s->proxy_wait)
		idle_restart(s);
	if (s->tls != NULL) {
		if (tls_conn_feed(s->tls, s->cin, (size_t)nread) != 0) {
			session_close(s, "out of memory");
			return;
		}
		tls_input(s);
		return;
	}
	linein_commit(&s->in, (size_t)nread);
	if (s->proxy_wait) {
		proxy_input(s);
		return;
	}
	session_process(s);
}

/* Move decrypted bytes into the line reader: 1 when some came, 0 when none, -1 closed. */
static int
tls_pull(struct session *s)
{
	enum tls_status st = TLS_WANT;
	char *p;
	size_t n, got;

	linein_space(&s->in, &p, &n);
	if (n == 0)
		return 0;
	got = tls_conn_read(s->tls, p, n, &st);
	if (got > 0) {
		linein_commit(&s->in, got);
		return 1;
	}
	if (st == TLS_WANT) {
		session_flush(s);   /* a key update or alert may be waiting to go out */
		return 0;
	}
	if (st == TLS_FAIL) {
		log_msg(LOG_WARN, "tls error id=%llx ip=%s: %s", (unsigned long long)s->id, s->peer,
		        tls_conn_error(s->tls));
		tls_fail_close(s, "tls error");
		return -1;
	}
	session_close(s, "disconnected");
	return -1;
}

static void
session_process(struct session *s)
{
	struct slice line;

	if (s->tls_state == TLSS_HANDSHAKE) {
		update_reading(s);
		return;
	}
	s->processing = 1;
	while (!s->closing && !s->busy && !s->close_after_flush &&
	       session_backlog(s) < OUTPUT_HIGH_WATER) {
		enum linein_status st = linein_next(&s->in, pop3_line_max(s), &line);
		if (st == LINEIN_MORE) {
			if (s->tls_state == TLSS_ACTIVE && tls_pull(s) > 0)
				continue;
			break;
		}
		if (st == LINEIN_FLOOD) {
			s->processing = 0;
			session_close(s, "line flood");
			return;
		}
		if (st == LINEIN_LINE)
			pop3_line(s, line);
		else
			pop3_bad_input(s, st);
	}
	s->processing = 0;
	if (s->closing)
		return;
	if (s->tls != NULL)
		session_flush(s);   /* reading may have produced TLS records to send */
	update_reading(s);
}

void
session_resume(struct session *s)
{
	if (s->closing)
		return;
	idle_restart(s);
	if (!s->processing)     /* a command completed at once: the caller's loop goes on */
		session_process(s);
}

void
session_close_after_flush(struct session *s, const char *reason)
{
	if (s->closing || s->close_after_flush)
		return;
	s->close_after_flush = 1;
	s->close_reason = reason;
	update_reading(s);
	if (session_backlog(s) == 0 && !s->writing)
		session_drained(s);
}

static void
log_session_end(struct session *s, const char *reason)
{
	char user[300];
	uint64_t ms = uv_now(s->d->loop) - s->started_ms;

	if (s->state == ST_AUTH || s->user == NULL)
		snprintf(user, sizeof user, "-");
	else
		str_escape(user, sizeof user, s->user, s->user_len, 64);
	log_msg(LOG_INFO, "session end id=%llx user=%s ip=%s port=%u tls=%s duration_ms=%llu "
	        "retr=%llu retr_bytes=%llu dele=%llu removed=%llu removed_policy=%llu worker=%u "
	        "reason=\"%s\"",
	        (unsigned long long)s->id, user, s->peer, s->peer_port,
	        s->tls_state == TLSS_ACTIVE ? "yes" : "no", (unsigned long long)ms, (unsigned long long)s->retr_count,
	        (unsigned long long)s->retr_bytes, (unsigned long long)s->dele_count,
	        (unsigned long long)s->removed, (unsigned long long)s->removed_policy, s->d->index,
	        reason);
}

void
session_close(struct session *s, const char *reason)
{
	if (s->closing)
		return;
	s->closing = 1;
	if (s->close_reason != NULL && s->close_after_flush)
		reason = s->close_reason;
	session_uncount(s);
	if (s->served)
		log_session_end(s, reason);
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = 0;
	}
	uv_close((uv_handle_t *)&s->idle, on_handle_closed);
	uv_close((uv_handle_t *)&s->delay, on_handle_closed);
	uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
}

static void
on_idle(uv_timer_t *t)
{
	struct session *s = t->data;

	if (s->close_after_flush) {          /* the linger period ended */
		session_close(s, s->close_reason);
		return;
	}
	if (s->proxy_wait) {
		log_msg(LOG_WARN, "proxy header timeout id=%llx from=%s", (unsigned long long)s->id,
		        s->peer);
		session_close(s, "proxy header timeout");
		return;
	}
	if (s->tls_state == TLSS_HANDSHAKE) {
		log_msg(LOG_WARN, "tls handshake failed id=%llx ip=%s port=%u: timeout",
		        (unsigned long long)s->id, s->peer, s->peer_port);
		session_close(s, "tls handshake timeout");
		return;
	}
	if (s->state == ST_UPDATE) {         /* never interrupt UPDATE */
		idle_restart(s);
		return;
	}
	session_close(s, "idle timeout");
}

/* Fill peer, peer_port and peer_key from peer_sa. */
static int
peer_describe(struct session *s)
{
	if (s->peer_sa.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&s->peer_sa;
		uv_ip4_name(a, s->peer, sizeof s->peer);
		s->peer_port = ntohs(a->sin_port);
		s->peer_key.len = 4;
		memcpy(s->peer_key.addr, &a->sin_addr, 4);
	} else if (s->peer_sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->peer_sa;
		uv_ip6_name(a, s->peer, sizeof s->peer);
		s->peer_port = ntohs(a->sin6_port);
		s->peer_key.len = 16;
		memcpy(s->peer_key.addr, &a->sin6_addr, 16);
	} else {
		return -1;
	}
	return 0;
}

static int
peer_setup(struct session *s)
{
	int len = (int)sizeof s->peer_sa;

	memset(&s->peer_sa, 0, sizeof s->peer_sa);
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&s->peer_sa, &len) != 0)
		return -1;
	return peer_describe(s);
}

/* Tell an over-limit client why and hang up; it never reaches POP3. */
static void
session_refuse(struct session *s, const char *why)
{
	s->d->stats.refused++;
	log_msg(LOG_WARN, "connection refused ip=%s reason=\"%s\"", s->peer, why);
	session_replyf(s, "-ERR [SYS/TEMP] %s, try again later", why);
	session_close_after_flush(s, why);
}

/*
 * The client's address is known (from the socket or a PROXY header): apply
 * the connection caps, then greet, or start implicit TLS with whatever
 * ciphertext already followed the PROXY header.
 */
static void
session_admit(struct session *s)
{
	struct daemon *d = s->d;
	char early[PROXY_HEADER_MAX];
	size_t nearly = 0;
	long n;

	if (atomic_load(&d->sh->nsessions) > s->cs->cfg->max_connections) {
		session_refuse(s, "too many connections");
		return;
	}
	s->trusted = cidr_list_contains(s->cs->cfg->backoff.trusted, s->cs->cfg->backoff.ntrusted,
	                                &s->peer_sa);
	if (!s->trusted) {
		n = daemon_ip_acquire(d, &s->peer_key, s->cs->cfg->max_connections_per_ip);
		if (n <= 0) {
			session_refuse(s, n == 0 ? "too many connections from your address" :
			               "out of memory");
			return;
		}
		s->counted_ip = 1;
	}
	s->served = 1;
	s->plaintext_trusted = cidr_list_contains(s->cs->cfg->plaintext_trusted,
	                                          s->cs->cfg->nplaintext_trusted, &s->peer_sa);
	if (s->lcfg->tls == TLS_IMPLICIT) {
		/* Bytes behind a PROXY header are the start of the TLS handshake. */
		nearly = linein_pending(&s->in);
		if (nearly > sizeof early)
			nearly = sizeof early;
		memcpy(early, s->in.buf + s->in.start, nearly);
		tls_begin(s);   /* RFC 8314: the greeting waits for the handshake */
		if (nearly > 0 && s->tls != NULL) {
			if (tls_conn_feed(s->tls, early, nearly) != 0) {
				session_close(s, "out of memory");
				return;
			}
			tls_input(s);
		}
		return;
	}
	pop3_start(s);
	session_process(s);
}

/* Use the client address a PROXY header carried instead of the balancer's. */
static void
peer_from_proxy(struct session *s, const struct proxy_result *r)
{
	char balancer[64];

	snprintf(balancer, sizeof balancer, "%s", s->peer);
	s->peer_sa = r->src;
	if (peer_describe(s) != 0)
		return;
	log_msg(LOG_DEBUG, "proxy id=%llx via=%s ip=%s port=%u", (unsigned long long)s->id,
	        balancer, s->peer, s->peer_port);
}

/* Bytes arrived while waiting for the PROXY header (they sit in the line reader). */
static void
proxy_input(struct session *s)
{
	struct proxy_result r;
	size_t used = 0;
	enum proxy_status st = proxy_parse((const unsigned char *)s->in.buf + s->in.start,
	                                   linein_pending(&s->in), &used, &r);

	if (st == PROXY_MORE && linein_pending(&s->in) < PROXY_HEADER_MAX)
		return;
	if (st != PROXY_OK) {
		log_msg(LOG_WARN, "proxy header invalid id=%llx from=%s", (unsigned long long)s->id,
		        s->peer);
		session_close(s, "bad proxy header");
		return;
	}
	s->in.start += used;
	s->proxy_wait = 0;
	if (!r.local)
		peer_from_proxy(s, &r);
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = 0;
	}
	idle_restart(s);
	session_admit(s);
}

/*
 * A listener with proxy_protocol: only a trusted balancer may connect, and it
 * must send the header within PROXY_TIMEOUT_MS, before the greeting.
 */
static void
proxy_start(struct session *s)
{
	if (!cidr_list_contains(s->lcfg->proxy_trusted, s->lcfg->nproxy_trusted, &s->peer_sa)) {
		log_msg(LOG_WARN, "proxy listener refused untrusted peer id=%llx ip=%s port=%u",
		        (unsigned long long)s->id, s->peer, s->peer_port);
		session_close(s, "untrusted proxy peer");
		return;
	}
	s->proxy_wait = 1;
	uv_timer_start(&s->idle, on_idle, PROXY_TIMEOUT_MS, 0);
	if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0)
		s->reading = 1;
	else
		session_close(s, "read failed");
}

void
session_accept(struct daemon *d, uv_stream_t *server)
{
	struct session *s = calloc(1, sizeof *s);

	if (s == NULL) {
		log_msg(LOG_ERR, "accept: out of memory");
		return;
	}
	s->d = d;
	s->listener = server->data;
	s->cs = conf_set_ref(d->cur);
	s->lcfg = &s->cs->cfg->listen[s->listener->index];
	s->id = atomic_fetch_add(&d->sh->next_id, 1) + 1;
	s->job.fd = -1;
	s->started_ms = uv_now(d->loop);
	s->next = d->sessions;
	if (d->sessions != NULL)
		d->sessions->prev = s;
	d->sessions = s;
	d->nsessions++;
	atomic_fetch_add(&d->sh->nsessions, 1);
	s->counted = 1;

	uv_tcp_init(d->loop, &s->tcp);
	uv_timer_init(d->loop, &s->idle);
	uv_timer_init(d->loop, &s->delay);
	s->tcp.data = s->idle.data = s->delay.data = s;
	s->refs = 3;   /* the three handles above, released in their close callbacks */

	if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0 || peer_setup(s) != 0 ||
	    linein_init(&s->in, INPUT_BUF_INITIAL) != 0) {
		session_close(s, "accept failed");
		return;
	}
	uv_tcp_nodelay(&s->tcp, 1);
	d->stats.connections++;
	if (s->lcfg->proxy_protocol) {
		proxy_start(s);
		return;
	}
	idle_restart(s);
	session_admit(s);
}

void
session_close_all(struct daemon *d, const char *reason)
{
	struct session *s, *next;

	for (s = d->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state != ST_UPDATE)
			session_close(s, reason);
	}
}
