/*
 * loadgen: the POP3 load generator of `make bench`.
 *
 * Drives many concurrent POP3 sessions against one server on 127.0.0.1 (plain
 * or implicit TLS) from epoll loops, one per thread, and checks every reply:
 * +OK everywhere, STAT equal to the LIST count and LIST sum, the UIDL count
 * equal to STAT, every RETR body un-stuffed, CRLF-terminated and exactly the
 * size LIST gave. A wrong answer is an error, and any error makes the exit
 * status 1: a benchmark that accepts wrong answers measures nothing.
 *
 * Scenarios (one session = one connection, one "slot" = one user):
 *   login  USER, PASS, STAT, UIDL, QUIT
 *   retr   USER, PASS, STAT, LIST, RETR 1..n, QUIT
 *   huge   USER, PASS, STAT, UIDL, LIST, QUIT
 *   idle   USER, PASS, STAT, then hold every session open with a NOOP now
 *          and then; prints "ready ..." once all are logged in, QUIT at the end
 *
 * Slot k always logs in as the user printf(user_fmt, first_user + k), so two
 * sessions never share a maildrop at once. Every loop is bounded: new sessions
 * stop after -N sessions or -d seconds, a session is failed after -x seconds,
 * and the whole run is cut at d + x + 5 seconds.
 *
 * Output: one line "result key=value ..." on stdout (see usage()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_THREADS 16
#define MAX_ERRORS_KEPT 8
#define SCAN_INTERVAL 0.05 /* seconds between timer scans */

enum scenario { SC_LOGIN, SC_RETR, SC_HUGE, SC_IDLE };

enum cmd {
	C_GREET,
	C_USER,
	C_PASS,
	C_STAT,
	C_UIDL,
	C_LIST,
	C_RETR,
	C_NOOP,
	C_QUIT,
	C_HOLD, /* idle: logged in, waiting for the next NOOP */
	C_END,
};

static const char *const cmd_names[] = { "greeting", "USER", "PASS", "STAT", "UIDL", "LIST",
	"RETR", "NOOP", "QUIT", "hold", "end" };

static const enum cmd script_login[] = { C_GREET, C_USER, C_PASS, C_STAT, C_UIDL, C_QUIT, C_END };
static const enum cmd script_retr[] = { C_GREET, C_USER, C_PASS, C_STAT, C_LIST, C_RETR, C_QUIT,
	C_END };
static const enum cmd script_huge[] = { C_GREET, C_USER, C_PASS, C_STAT, C_UIDL, C_LIST, C_QUIT,
	C_END };
static const enum cmd script_idle[] = { C_GREET, C_USER, C_PASS, C_STAT, C_HOLD, C_QUIT, C_END };

struct options {
	const char *host;
	int port;
	int tls;
	enum scenario sc;
	const char *user_fmt;
	const char *password;
	int first_user;
	int concurrency;
	long max_sessions;
	double duration;
	int threads;
	long expect_msgs;
	double hold;
	double noop_interval;
	int ramp;
	double session_timeout;
	const char *cafile;
};

enum phase { P_FREE, P_CONNECTING, P_HANDSHAKE, P_ACTIVE, P_CLOSING };

struct lat {
	double *v;
	size_t n, cap;
};

struct conn {
	struct worker *w;
	int slot; /* global slot number: the user index offset */
	int fd;
	SSL *ssl;
	enum phase phase;
	const enum cmd *step;
	int multi;       /* reading the lines of a multi-line reply */
	long idx;        /* UIDL/LIST line number expected next, or the message RETR'd */
	long stat_count;
	long long stat_octets;
	long long list_sum;
	long long body;  /* un-stuffed octets of the current RETR */
	long *sizes;
	size_t sizes_cap;
	long nsizes;
	char out[320];
	size_t out_len, out_off;
	char *in;
	size_t in_len;
	double t_start, t_cmd, deadline, next_noop;
	unsigned ev; /* epoll events registered */
	int noop_inflight;
};

struct worker {
	const struct options *o;
	int id;
	int epfd;
	SSL_CTX *ctx;
	struct conn *conns;
	int nconns;
	long started, done, errors;
	long long retr_octets, retr_msgs, wire_in;
	struct lat lat;      /* whole-session latency (idle: login latency) */
	struct lat noop_lat; /* idle: NOOP round trips */
	double t_first_start, t_last_done;
	char errs[MAX_ERRORS_KEPT][200];
	int nerrs;
	int live;        /* sessions open */
	/* idle */
	int next_fresh;  /* first slot never started */
	int logging_in;  /* sessions between connect and the end of STAT */
	int held;        /* sessions in C_HOLD */
	char tls_desc[80];
	long *budget;    /* shared session budget (decremented under budget_mu) */
	pthread_t th;
	size_t inbuf;
};

static pthread_mutex_t budget_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_all;
static double t_origin;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void
lat_add(struct lat *l, double v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		double *nv = realloc(l->v, cap * sizeof(*nv));

		if (nv == NULL)
			die("out of memory");
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = v;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
percentile(const struct lat *l, double p)
{
	size_t i;

	if (l->n == 0)
		return 0;
	i = (size_t)(p * (double)(l->n - 1) + 0.5);
	return l->v[i < l->n ? i : l->n - 1];
}

/* Takes one session from the shared budget; 0 when the count or the time is used up. */
static int
take_session(struct worker *w)
{
	int ok = 0;

	if (stop_all || now() - t_origin >= w->o->duration)
		return 0;
	pthread_mutex_lock(&budget_mu);
	if (*w->budget > 0) {
		(*w->budget)--;
		ok = 1;
	}
	pthread_mutex_unlock(&budget_mu);
	return ok;
}

static void
set_events(struct conn *c, unsigned ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev == c->ev)
		return;
	if (epoll_ctl(c->w->epfd, c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) != 0)
		die("epoll_ctl: %s", strerror(errno));
	c->ev = ev;
}

static void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd); /* also leaves the epoll set */
		c->fd = -1;
	}
	if (c->phase != P_FREE)
		c->w->live--;
	c->ev = 0;
	c->phase = P_FREE;
}

static void start_session(struct conn *c);

static void
fail(struct conn *c, const char *fmt, ...)
{
	struct worker *w = c->w;
	va_list ap;

	w->errors++;
	if (w->nerrs < MAX_ERRORS_KEPT) {
		char *e = w->errs[w->nerrs++];
		int n = snprintf(e, sizeof(w->errs[0]), "slot %d %s: ", c->slot, cmd_names[*c->step]);

		va_start(ap, fmt);
		if (n > 0 && (size_t)n < sizeof(w->errs[0]))
			vsnprintf(e + n, sizeof(w->errs[0]) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	if (*c->step == C_HOLD)
		w->held--;
	if (w->o->sc == SC_IDLE && *c->step < C_HOLD)
		w->logging_in--;
	conn_close(c); /* the slot stays empty: a run with an error is void anyway */
}

/* Quote a reply line for an error message: printable, cut at 80. */
static const char *
quote(const char *p, size_t n, char *buf, size_t size)
{
	size_t i, j = 0;

	for (i = 0; i < n && j + 5 < size && i < 80; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch >= 0x20 && ch < 0x7f)
			buf[j++] = (char)ch;
		else
			j += (size_t)snprintf(buf + j, size - j, "\\x%02x", ch);
	}
	buf[j] = '\0';
	return buf;
}

static void
queue_cmd(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->out, sizeof(c->out), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(c->out))
		die("command too long");
	c->out_len = (size_t)n;
	c->out_off = 0;
	c->t_cmd = now();
}

/* Writes what is queued. 0: all written or waiting for the socket; -1: the session failed. */
static int
flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		size_t left = c->out_len - c->out_off;
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, c->out + c->out_off, (int)left);

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE) {
					set_events(c, EPOLLIN | EPOLLOUT);
					return 0;
				}
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				fail(c, "SSL_write failed (%d)", e);
				return -1;
			}
			n = r;
		} else {
			n = send(c->fd, c->out + c->out_off, left, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					set_events(c, EPOLLIN | EPOLLOUT);
					return 0;
				}
				fail(c, "send: %s", strerror(errno));
				return -1;
			}
		}
		c->out_off += (size_t)n;
	}
	set_events(c, EPOLLIN);
	return 0;
}

/* Issues the command of the current step. */
static void
send_step(struct conn *c)
{
	const struct options *o = c->w->o;
	char user[128];

	switch (*c->step) {
	case C_USER:
		snprintf(user, sizeof(user), o->user_fmt, o->first_user + c->slot);
		queue_cmd(c, "USER %s\r\n", user);
		break;
	case C_PASS:
		queue_cmd(c, "PASS %s\r\n", o->password);
		break;
	case C_STAT:
		queue_cmd(c, "STAT\r\n");
		break;
	case C_UIDL:
		c->idx = 1;
		queue_cmd(c, "UIDL\r\n");
		break;
	case C_LIST:
		c->idx = 1;
		c->list_sum = 0;
		c->nsizes = 0;
		queue_cmd(c, "LIST\r\n");
		break;
	case C_RETR:
		c->body = 0;
		queue_cmd(c, "RETR %ld\r\n", c->idx);
		break;
	case C_NOOP:
		queue_cmd(c, "NOOP\r\n");
		break;
	case C_QUIT:
		queue_cmd(c, "QUIT\r\n");
		break;
	case C_HOLD:
		return;
	default:
		return;
	}
	c->multi = 0;
	flush_out(c);
}

/* idle: opens more sessions, at most o->ramp logging in at once. */
static void
ramp_more(struct worker *w)
{
	while (w->logging_in < w->o->ramp && w->next_fresh < w->nconns && !stop_all)
		start_session(&w->conns[w->next_fresh++]);
}

static void
next_step(struct conn *c)
{
	struct worker *w = c->w;

	c->step++;
	if (*c->step == C_RETR) {
		if (c->stat_count == 0) {
			c->step++;
		} else {
			c->idx = 1;
		}
	}
	if (*c->step == C_HOLD) {
		double t = now();

		w->logging_in--;
		w->held++;
		lat_add(&w->lat, t - c->t_start);
		/* Spread the NOOPs over the interval. */
		c->next_noop = t + w->o->noop_interval * (0.5 + (double)(rand() % 1000) / 1000.0);
		c->deadline = 1e300;
		ramp_more(w);
		return;
	}
	send_step(c);
}

/* Parses a decimal number at *p; returns -1 when there is none. */
static long long
parse_num(const char **p, const char *end)
{
	long long v = 0;
	int any = 0;

	while (*p < end && **p == ' ')
		(*p)++;
	while (*p < end && **p >= '0' && **p <= '9') {
		v = v * 10 + (**p - '0');
		(*p)++;
		any = 1;
		if (v > (1LL << 50))
			return -1;
	}
	return any ? v : -1;
}

static void
session_done(struct conn *c)
{
	struct worker *w = c->w;
	double t = now();

	conn_close(c);
	w->done++;
	w->t_last_done = t;
	if (w->o->sc != SC_IDLE)
		lat_add(&w->lat, t - c->t_start);
	if (w->o->sc != SC_IDLE && take_session(w))
		start_session(c);
}

/*
 * One line of a reply, with its LF (and CR). Returns 0 to go on, -1 when the
 * session has failed or ended.
 */
static int
on_line(struct conn *c, const char *p, size_t n)
{
	struct worker *w = c->w;
	char q[400];

	if (n < 2 || p[n - 2] != '\r') {
		fail(c, "line without CRLF: \"%s\"", quote(p, n, q, sizeof(q)));
		return -1;
	}
	if (!c->multi) {
		const char *s = p + 3, *end = p + n - 2;

		if (n < 5 || memcmp(p, "+OK", 3) != 0 || (p[3] != ' ' && p[3] != '\r')) {
			fail(c, "not +OK: \"%s\"", quote(p, n, q, sizeof(q)));
			return -1;
		}
		switch (*c->step) {
		case C_HOLD:
			if (!c->noop_inflight) {
				fail(c, "unexpected line \"%s\"", quote(p, n, q, sizeof(q)));
				return -1;
			}
			c->noop_inflight = 0;
			lat_add(&w->noop_lat, now() - c->t_cmd);
			c->next_noop = now() + w->o->noop_interval;
			c->deadline = 1e300;
			return 0;
		case C_STAT: {
			long long cnt = parse_num(&s, end), oct = parse_num(&s, end);

			if (cnt < 0 || oct < 0) {
				fail(c, "bad STAT reply \"%s\"", quote(p, n, q, sizeof(q)));
				return -1;
			}
			if (w->o->expect_msgs >= 0 && cnt != w->o->expect_msgs) {
				fail(c, "STAT says %lld messages, expected %ld", cnt, w->o->expect_msgs);
				return -1;
			}
			c->stat_count = (long)cnt;
			c->stat_octets = oct;
			break;
		}
		case C_UIDL:
		case C_LIST:
		case C_RETR:
			c->multi = 1;
			return 0;
		case C_QUIT:
			c->phase = P_CLOSING;
			return 0;
		default:
			break;
		}
		next_step(c);
		return c->phase == P_FREE ? -1 : 0;
	}

	/* A line of a multi-line reply. */
	if (p[0] == '.') {
		if (n == 3) { /* the terminating ".\r\n" */
			c->multi = 0;
			switch (*c->step) {
			case C_UIDL:
				if (c->idx - 1 != c->stat_count) {
					fail(c, "UIDL listed %ld messages, STAT %ld", c->idx - 1, c->stat_count);
					return -1;
				}
				break;
			case C_LIST:
				if (c->idx - 1 != c->stat_count || c->list_sum != c->stat_octets) {
					fail(c, "LIST: %ld messages, %lld octets; STAT: %ld, %lld", c->idx - 1,
					    c->list_sum, c->stat_count, c->stat_octets);
					return -1;
				}
				break;
			case C_RETR:
				if (c->idx > c->nsizes || c->body != c->sizes[c->idx - 1]) {
					fail(c, "RETR %ld: %lld octets, LIST said %ld", c->idx, c->body,
					    c->idx <= c->nsizes ? c->sizes[c->idx - 1] : -1L);
					return -1;
				}
				w->retr_octets += c->body;
				w->retr_msgs++;
				if (c->idx < c->stat_count) {
					c->idx++;
					send_step(c);
					return c->phase == P_FREE ? -1 : 0;
				}
				break;
			default:
				break;
			}
			next_step(c);
			return c->phase == P_FREE ? -1 : 0;
		}
		p++; /* un-stuff */
		n--;
	}
	switch (*c->step) {
	case C_RETR:
		c->body += (long long)n;
		break;
	case C_UIDL:
	case C_LIST: {
		const char *s = p, *end = p + n - 2;
		long long num = parse_num(&s, end);

		if (num != c->idx || s >= end || *s != ' ') {
			fail(c, "line %ld is \"%s\"", c->idx, quote(p, n, q, sizeof(q)));
			return -1;
		}
		if (*c->step == C_LIST) {
			long long size = parse_num(&s, end);

			if (size < 0 || s != end) {
				fail(c, "bad LIST line \"%s\"", quote(p, n, q, sizeof(q)));
				return -1;
			}
			if ((size_t)c->nsizes == c->sizes_cap) {
				size_t cap = c->sizes_cap ? c->sizes_cap * 2 : 64;
				long *ns = realloc(c->sizes, cap * sizeof(*ns));

				if (ns == NULL)
					die("out of memory");
				c->sizes = ns;
				c->sizes_cap = cap;
			}
			c->sizes[c->nsizes++] = (long)size;
			c->list_sum += size;
		} else {
			while (s < end && *s == ' ')
				s++;
			if (s == end || end - s > 70) {
				fail(c, "bad UIDL line \"%s\"", quote(p, n, q, sizeof(q)));
				return -1;
			}
		}
		c->idx++;
		break;
	}
	default:
		break;
	}
	return 0;
}

/* Splits the input buffer into lines. */
static int
process_input(struct conn *c)
{
	size_t off = 0;
	int r = 0;

	while (off < c->in_len) {
		char *lf = memchr(c->in + off, '\n', c->in_len - off);
		size_t n;

		if (lf == NULL)
			break;
		n = (size_t)(lf - (c->in + off)) + 1;
		r = on_line(c, c->in + off, n);
		if (r < 0 || c->phase == P_FREE)
			return -1;
		off += n;
		if (c->phase == P_CLOSING && off < c->in_len) {
			fail(c, "data after the QUIT reply");
			return -1;
		}
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	if (c->in_len == c->w->inbuf) {
		fail(c, "a reply line longer than %zu octets", c->w->inbuf);
		return -1;
	}
	return 0;
}

static void
on_eof(struct conn *c)
{
	if (c->phase == P_CLOSING && c->in_len == 0) {
		session_done(c);
		return;
	}
	fail(c, "connection closed by the server (%zu octets pending)", c->in_len);
}

static void
do_read(struct conn *c)
{
	struct worker *w = c->w;

	for (;;) {
		size_t room = w->inbuf - c->in_len;
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, c->in + c->in_len, (int)room);

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ)
					return;
				if (e == SSL_ERROR_WANT_WRITE) {
					set_events(c, EPOLLIN | EPOLLOUT);
					return;
				}
				if (e == SSL_ERROR_ZERO_RETURN || c->phase == P_CLOSING) {
					ERR_clear_error();
					on_eof(c);
					return;
				}
				fail(c, "SSL_read failed (%d): %s", e,
				    ERR_reason_error_string(ERR_get_error()));
				ERR_clear_error();
				return;
			}
			n = r;
		} else {
			n = recv(c->fd, c->in + c->in_len, room, 0);
			if (n == 0) {
				on_eof(c);
				return;
			}
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return;
				if (c->phase == P_CLOSING && errno == ECONNRESET) {
					on_eof(c);
					return;
				}
				fail(c, "recv: %s", strerror(errno));
				return;
			}
		}
		w->wire_in += n;
		c->in_len += (size_t)n;
		if (process_input(c) < 0)
			return;
		if (c->ssl == NULL && (size_t)n < room)
			return; /* level-triggered: epoll says when there is more */
	}
}

static void
do_handshake(struct conn *c)
{
	int r = SSL_connect(c->ssl);

	if (r == 1) {
		struct worker *w = c->w;

		if (w->tls_desc[0] == '\0')
			snprintf(w->tls_desc, sizeof(w->tls_desc), "%s/%s", SSL_get_version(c->ssl),
			    SSL_get_cipher_name(c->ssl));
		c->phase = P_ACTIVE;
		set_events(c, EPOLLIN);
		do_read(c); /* the greeting may already be in */
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		set_events(c, EPOLLIN);
		return;
	case SSL_ERROR_WANT_WRITE:
		set_events(c, EPOLLIN | EPOLLOUT);
		return;
	default:
		fail(c, "TLS handshake failed: %s", ERR_reason_error_string(ERR_get_error()));
		ERR_clear_error();
	}
}

static void
start_session(struct conn *c)
{
	struct worker *w = c->w;
	const struct options *o = w->o;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	int one = 1;

	c->t_start = now();
	if (w->started == 0)
		w->t_first_start = c->t_start;
	w->started++;
	c->deadline = c->t_start + o->session_timeout;
	c->step = o->sc == SC_LOGIN ? script_login : o->sc == SC_RETR ? script_retr
	    : o->sc == SC_HUGE ? script_huge : script_idle;
	c->multi = 0;
	c->in_len = 0;
	c->out_len = c->out_off = 0;
	c->stat_count = -1;
	c->nsizes = 0;
	c->noop_inflight = 0;
	c->ev = 0;
	w->live++;
	if (o->sc == SC_IDLE)
		w->logging_in++;
	if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1)
		die("bad host %s", o->host);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->phase = P_CONNECTING;
		fail(c, "socket: %s", strerror(errno));
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->phase = P_CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
		fail(c, "connect: %s", strerror(errno));
		return;
	}
	set_events(c, EPOLLOUT);
}

static void
on_connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		fail(c, "connect: %s", strerror(err ? err : errno));
		return;
	}
	if (c->w->o->tls) {
		c->ssl = SSL_new(c->w->ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			die("SSL_new failed");
		SSL_set_tlsext_host_name(c->ssl, "localhost");
		c->phase = P_HANDSHAKE;
		do_handshake(c);
		return;
	}
	c->phase = P_ACTIVE;
	set_events(c, EPOLLIN);
}

static void
on_event(struct conn *c, unsigned ev)
{
	switch (c->phase) {
	case P_CONNECTING:
		on_connected(c);
		return;
	case P_HANDSHAKE:
		do_handshake(c);
		return;
	case P_ACTIVE:
	case P_CLOSING:
		if ((ev & EPOLLOUT) && c->out_off < c->out_len && flush_out(c) < 0)
			return;
		if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
			do_read(c);
		return;
	case P_FREE:
		return;
	}
}

/* Timeouts, idle NOOPs and QUITs, and the idle ramp. */
static void
scan(struct worker *w, double t, double hold_until)
{
	const struct options *o = w->o;
	int i;

	for (i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];

		if (c->phase == P_FREE)
			continue;
		if (t > c->deadline) {
			fail(c, "no reply within %.0f s", o->session_timeout);
			continue;
		}
		if (*c->step != C_HOLD || c->phase != P_ACTIVE || c->noop_inflight)
			continue;
		if (hold_until > 0 && t >= hold_until) {
			w->held--;
			c->step++; /* QUIT */
			c->deadline = t + o->session_timeout;
			send_step(c);
		} else if (hold_until > 0 && t >= c->next_noop) {
			c->noop_inflight = 1;
			c->deadline = t + o->session_timeout;
			queue_cmd(c, "NOOP\r\n");
			flush_out(c);
		}
	}
	if (o->sc == SC_IDLE)
		ramp_more(w);
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	const struct options *o = w->o;
	struct epoll_event evs[256];
	double next_scan = 0, hold_until = 0, hard_end;
	int i, n;

	hard_end = t_origin + o->duration + o->session_timeout + 5;
	if (o->sc == SC_IDLE)
		hard_end += o->hold;
	if (o->sc != SC_IDLE)
		for (i = 0; i < w->nconns; i++)
			if (take_session(w))
				start_session(&w->conns[i]);
	for (;;) {
		double t = now();
		int fresh = o->sc == SC_IDLE && hold_until == 0 ? w->nconns - w->next_fresh : 0;

		if (t >= next_scan) {
			scan(w, t, hold_until);
			next_scan = t + SCAN_INTERVAL;
		}
		if (w->live == 0 && fresh == 0)
			break;
		if (o->sc == SC_IDLE && hold_until == 0) {
			if (fresh == 0 && w->logging_in == 0) {
				printf("ready sessions=%d errors=%ld ramp_s=%.3f\n", w->held, w->errors,
				    t - t_origin);
				fflush(stdout);
				hold_until = t + o->hold;
			} else if (t - t_origin > o->duration && fresh > 0) {
				/* The ramp took too long: the sessions not started count as errors. */
				w->errors += fresh;
				w->next_fresh = w->nconns;
			}
		}
		if (t > hard_end) {
			stop_all = 1;
			for (i = 0; i < w->nconns; i++)
				if (w->conns[i].phase != P_FREE)
					fail(&w->conns[i], "still running at the end of the run");
			break;
		}
		n = epoll_wait(w->epfd, evs, 256, (int)(SCAN_INTERVAL * 1000));
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	return NULL;
}

static void
usage(void)
{
	fputs("usage: loadgen -s login|retr|huge|idle -p PORT [options]\n"
	      "  -H ADDR     server IPv4 address (127.0.0.1)\n"
	      "  -T          implicit TLS\n"
	      "  -A FILE     verify the server certificate against FILE\n"
	      "  -u FMT      user name format, printf with one int (u%05d)\n"
	      "  -o N        first user number (0); slot k logs in as user N+k\n"
	      "  -w PASS     password of every user (benchpw)\n"
	      "  -c N        concurrent sessions (idle: sessions to hold) (1)\n"
	      "  -N N        at most N sessions in all (1000000)\n"
	      "  -d SEC      start no session after SEC seconds (idle: ramp limit) (10)\n"
	      "  -t N        threads (1)\n"
	      "  -m N        STAT must say N messages (unchecked)\n"
	      "  -x SEC      fail a session that takes longer (60)\n"
	      "  -L SEC      idle: hold the sessions this long once all are in (10)\n"
	      "  -I SEC      idle: NOOP interval per session (5)\n"
	      "  -R N        idle: at most N logins in flight (200)\n"
	      "Prints \"result scenario=... sessions=N errors=N elapsed_s=... sessions_per_s=...\n"
	      "p50_ms=... p99_ms=... retr_mb=... mb_per_s=... ...\" on stdout; exit 1 on any error.\n",
	    stderr);
	exit(2);
}

/* A user name format may hold one %d or %0Nd and nothing else printf would read. */
static int
user_fmt_ok(const char *f)
{
	const char *p = strchr(f, '%');

	if (p == NULL)
		return 1;
	p++;
	while (*p >= '0' && *p <= '9')
		p++;
	return *p == 'd' && strchr(p, '%') == NULL;
}

static double
arg_num(const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("bad number \"%s\" (%g..%g)", s, lo, hi);
	return v;
}

int
main(int argc, char **argv)
{
	struct options o = {
		.host = "127.0.0.1", .user_fmt = "u%05d", .password = "benchpw", .concurrency = 1,
		.max_sessions = 1000000, .duration = 10, .threads = 1, .expect_msgs = -1, .hold = 10,
		.noop_interval = 5, .ramp = 200, .session_timeout = 60, .sc = SC_LOGIN,
	};
	struct worker *ws;
	struct lat all = { 0 }, noops = { 0 };
	struct rlimit rl;
	long budget, started = 0, done = 0, errors = 0;
	long long octets = 0, msgs = 0, wire = 0;
	double first = 1e300, last = 0, elapsed;
	int opt, i, have_scenario = 0;
	const char *tls_desc = "";
	SSL_CTX *ctx = NULL;

	while ((opt = getopt(argc, argv, "H:p:TA:s:u:o:w:c:N:d:t:m:x:L:I:R:")) != -1) {
		switch (opt) {
		case 'H': o.host = optarg; break;
		case 'p': o.port = (int)arg_num(optarg, 1, 65535); break;
		case 'T': o.tls = 1; break;
		case 'A': o.cafile = optarg; break;
		case 's':
			have_scenario = 1;
			if (strcmp(optarg, "login") == 0)
				o.sc = SC_LOGIN;
			else if (strcmp(optarg, "retr") == 0)
				o.sc = SC_RETR;
			else if (strcmp(optarg, "huge") == 0)
				o.sc = SC_HUGE;
			else if (strcmp(optarg, "idle") == 0)
				o.sc = SC_IDLE;
			else
				usage();
			break;
		case 'u': o.user_fmt = optarg; break;
		case 'o': o.first_user = (int)arg_num(optarg, 0, 1e8); break;
		case 'w': o.password = optarg; break;
		case 'c': o.concurrency = (int)arg_num(optarg, 1, 1e6); break;
		case 'N': o.max_sessions = (long)arg_num(optarg, 1, 1e12); break;
		case 'd': o.duration = arg_num(optarg, 0.1, 86400); break;
		case 't': o.threads = (int)arg_num(optarg, 1, MAX_THREADS); break;
		case 'm': o.expect_msgs = (long)arg_num(optarg, 0, 1e9); break;
		case 'x': o.session_timeout = arg_num(optarg, 0.1, 86400); break;
		case 'L': o.hold = arg_num(optarg, 0, 86400); break;
		case 'I': o.noop_interval = arg_num(optarg, 0.01, 86400); break;
		case 'R': o.ramp = (int)arg_num(optarg, 1, 1e6); break;
		default: usage();
		}
	}
	if (!have_scenario || o.port == 0 || optind != argc)
		usage();
	if (!user_fmt_ok(o.user_fmt))
		die("-u takes a name with at most one %%d (or %%0Nd)");
	if (o.sc == SC_IDLE) {
		o.threads = 1; /* the "ready" line needs one view of every session */
		if ((long)o.concurrency > o.max_sessions)
			o.concurrency = (int)o.max_sessions;
	}
	if (o.threads > o.concurrency)
		o.threads = o.concurrency;

	/* One descriptor per session plus a few. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.concurrency + 16)
		die("-c %d needs %d descriptors; the limit is %llu", o.concurrency, o.concurrency + 16,
		    (unsigned long long)rl.rlim_cur);

	if (o.tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (ctx == NULL)
			die("SSL_CTX_new failed");
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		/* A full handshake per session, as a mail client polling every few minutes does. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (o.cafile != NULL) {
			if (SSL_CTX_load_verify_locations(ctx, o.cafile, NULL) != 1)
				die("cannot load %s", o.cafile);
			SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		} else {
			SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		}
	}

	budget = o.sc == SC_IDLE ? o.concurrency : o.max_sessions;
	ws = calloc((size_t)o.threads, sizeof(*ws));
	if (ws == NULL)
		die("out of memory");
	srand((unsigned)getpid());
	t_origin = now();
	for (i = 0; i < o.threads; i++) {
		struct worker *w = &ws[i];
		int j, lo = (int)((long)o.concurrency * i / o.threads);
		int hi = (int)((long)o.concurrency * (i + 1) / o.threads);

		w->o = &o;
		w->id = i;
		w->ctx = ctx;
		w->budget = &budget;
		w->nconns = hi - lo;
		w->inbuf = o.sc == SC_RETR ? 256 * 1024 : 8 * 1024;
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
		if (w->epfd < 0 || w->conns == NULL)
			die("setup failed");
		for (j = 0; j < w->nconns; j++) {
			struct conn *c = &w->conns[j];

			c->w = w;
			c->slot = lo + j;
			c->fd = -1;
			c->step = script_login;
			c->in = malloc(w->inbuf);
			if (c->in == NULL)
				die("out of memory");
		}
	}
	for (i = 0; i < o.threads; i++)
		if (pthread_create(&ws[i].th, NULL, worker_run, &ws[i]) != 0)
			die("pthread_create failed");
	for (i = 0; i < o.threads; i++)
		pthread_join(ws[i].th, NULL);

	for (i = 0; i < o.threads; i++) {
		struct worker *w = &ws[i];
		int j;

		started += w->started;
		done += w->done;
		errors += w->errors;
		octets += w->retr_octets;
		msgs += w->retr_msgs;
		wire += w->wire_in;
		if (w->started > 0 && w->t_first_start < first)
			first = w->t_first_start;
		if (w->t_last_done > last)
			last = w->t_last_done;
		for (j = 0; j < (int)w->lat.n; j++)
			lat_add(&all, w->lat.v[j]);
		for (j = 0; j < (int)w->noop_lat.n; j++)
			lat_add(&noops, w->noop_lat.v[j]);
		if (tls_desc[0] == '\0')
			tls_desc = w->tls_desc;
		for (j = 0; j < w->nerrs; j++)
			fprintf(stderr, "loadgen: error: %s\n", w->errs[j]);
	}
	qsort(all.v, all.n, sizeof(double), cmp_double);
	qsort(noops.v, noops.n, sizeof(double), cmp_double);
	elapsed = last > first ? last - first : 0;
	printf("result scenario=%s tls=%d concurrency=%d threads=%d sessions=%ld started=%ld "
	       "errors=%ld elapsed_s=%.3f sessions_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f "
	       "retr_msgs=%lld retr_mb=%.3f mb_per_s=%.2f wire_mb=%.3f noop_p50_ms=%.3f "
	       "noop_p99_ms=%.3f noops=%zu cipher=%s\n",
	    o.sc == SC_LOGIN ? "login" : o.sc == SC_RETR ? "retr" : o.sc == SC_HUGE ? "huge" : "idle",
	    o.tls, o.concurrency, o.threads, done, started, errors, elapsed,
	    elapsed > 0 ? (double)done / elapsed : 0, percentile(&all, 0.5) * 1e3,
	    percentile(&all, 0.99) * 1e3, all.n ? all.v[all.n - 1] * 1e3 : 0, msgs,
	    (double)octets / 1e6, elapsed > 0 ? (double)octets / 1e6 / elapsed : 0,
	    (double)wire / 1e6, percentile(&noops, 0.5) * 1e3, percentile(&noops, 0.99) * 1e3,
	    noops.n, tls_desc[0] ? tls_desc : "-");
	return errors == 0 && done > 0 ? 0 : 1;
}
