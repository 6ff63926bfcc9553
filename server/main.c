/*
 * main: the startup order and nothing else: arguments, configuration, users,
 * listeners, then the event loop until SIGTERM/SIGINT, then an orderly exit.
 * Never handles a client byte.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/maildrop.h"
#include "policy/expire.h"
#include "policy/rules.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/session.h"
#include "server/strutil.h"
#include "server/tlsio.h"

#ifndef POP3D_VERSION
#define POP3D_VERSION "0.1.0"
#endif
#define DEFAULT_CONFIG "/etc/pop3d/pop3d.conf"
#define PASSWORD_MAX   1024

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: pop3d [-c FILE]            run the daemon in the foreground\n"
	    "       pop3d [-c FILE] -t         check the configuration and exit\n"
	    "       pop3d --hash-password [--scheme yescrypt|SCRAM-SHA-256]\n"
	    "                                  read a password on stdin, print a users-file hash\n"
	    "       pop3d [-c FILE] --expire [--dry-run] [--user NAME] [--at WHEN] [--json]\n"
	    "                                  run one expiry sweep now and exit\n"
	    "       pop3d --version | --help\n"
	    "The default configuration file is " DEFAULT_CONFIG ".\n");
}

static void
diag_print(const struct diag *d, FILE *f)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		fprintf(f, "%s\n", d->msg[i]);
	if (d->oom)
		fprintf(f, "(further problems not shown: out of memory)\n");
}

/* Everything the configuration names, loaded and checked. */
struct loaded {
	struct config  *cfg;
	struct users   *users;
	struct tls_ctx *tls;
	struct rules   *rules;
};

static void
loaded_free(struct loaded *l)
{
	rules_free(l->rules);
	tls_ctx_free(l->tls);
	if (l->users != NULL)
		users_unref(l->users);
	config_free(l->cfg);
	memset(l, 0, sizeof *l);
}

/*
 * Load the config, the users file, the maildrop template and the TLS
 * certificates; every problem goes to d, every warning to w. Returns 0 when
 * the config and users file could be read (d may still hold problems).
 */
static int
load_all(const char *path, struct loaded *l, struct diag *d, struct diag *w)
{
	struct diag rd = { 0 };
	char err[256];
	size_t i;

	memset(l, 0, sizeof *l);
	if (config_load(path, &l->cfg, d) != 0)
		return -1;
	if (maildrop_template_check(l->cfg->maildrop_path, err, sizeof err) != 0)
		diag_add(d, "%s: maildrop.path: %s", path, err);
	if (l->cfg->tls.present)
		l->tls = tls_ctx_new(&l->cfg->tls, d, w);
	if (users_load(l->cfg->users_file, &l->users, d) != 0)
		return -1;
	l->rules = rules_build(l->cfg, l->users, &rd);
	/* rules_build reports warnings ("FILE:LINE: warning: ...") with its errors. */
	for (i = 0; i < rd.n; i++) {
		if (strstr(rd.msg[i], ": warning: ") != NULL)
			diag_add(w, "%s", rd.msg[i]);
		else
			diag_add(d, "%s", rd.msg[i]);
	}
	if (l->rules == NULL && rd.n == 0)
		diag_add(d, "%s: policy: out of memory", path);
	diag_free(&rd);
	return 0;
}

static int
check_config(const char *path)
{
	struct loaded l;
	struct diag d = { 0 }, w = { 0 };
	size_t i, plain = 0;
	int ok = load_all(path, &l, &d, &w) == 0 && d.n == 0 && !d.oom;

	if (!ok) {
		diag_print(&d, stdout);
		diag_print(&w, stdout);
		fprintf(stdout, "%s: configuration has %zu problem%s\n", path, d.n,
		        d.n == 1 ? "" : "s");
	} else {
		const struct config *cfg = l.cfg;
		for (i = 0; i < l.users->n; i++)
			plain += l.users->v[i].scheme == PW_PLAIN;
		printf("%s: configuration is valid\n", path);
		for (i = 0; i < cfg->nlisten; i++) {
			const struct listen_cfg *lc = &cfg->listen[i];
			int v6 = strchr(lc->address, ':') != NULL;
			printf("  listen    %s%s%s:%u tls=%s\n", v6 ? "[" : "", lc->address, v6 ? "]" : "",
			       lc->port, lc->tls == TLS_IMPLICIT ? "implicit" :
			       lc->tls == TLS_STARTTLS ? "starttls" : "none");
		}
		printf("  users     %zu in %s (%zu with {PLAIN}: APOP %s)\n", l.users->n,
		       cfg->users_file, plain, plain ? "offered" : "not offered");
		printf("  plaintext %s%s\n", cfg->plaintext == PLAINTEXT_ALWAYS ? "always" : "tls-only",
		       cfg->nplaintext_trusted > 0 ? " (trusted networks exempt)" : "");
		printf("  maildrop  %s\n", cfg->maildrop_path);
		printf("  limits    idle_timeout=%us max_connections=%u max_connections_per_ip=%u\n",
		       cfg->idle_timeout, cfg->max_connections, cfg->max_connections_per_ip);
		if (l.tls != NULL)
			tls_ctx_describe(l.tls, stdout);
		rules_print(l.rules, l.users, stdout);
		diag_print(&w, stdout);
		if (cfg->idle_timeout < IDLE_TIMEOUT_DEFAULT)
			printf("warning: limits.idle_timeout is below the 10 minutes RFC 1939 asks for\n");
	}
	diag_free(&d);
	diag_free(&w);
	loaded_free(&l);
	return ok ? 0 : 1;
}

static int
hash_password(const char *scheme)
{
	char pass[PASSWORD_MAX + 2], err[256], *hash;
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO);
	size_t n;

	if (tty) {
		fprintf(stderr, "Password: ");
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	n = fread(pass, 1, sizeof pass - 1, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	/* One line: stop at the first newline; a trailing CR goes too. */
	pass[n] = '\0';
	n = strcspn(pass, "\n");
	if (n > 0 && pass[n - 1] == '\r')
		n--;
	if (n == 0 || n > PASSWORD_MAX || memchr(pass, '\0', n) != NULL) {
		wipe(pass, sizeof pass);
		fprintf(stderr, "pop3d: the password must be 1..%d octets on one line\n", PASSWORD_MAX);
		return 1;
	}
	hash = auth_hash_password_scheme(pass, n, scheme, err, sizeof err);
	wipe(pass, sizeof pass);
	if (hash == NULL) {
		fprintf(stderr, "pop3d: cannot hash: %s\n", err);
		return 1;
	}
	printf("%s\n", hash);
	free(hash);
	return 0;
}

/* pop3d --expire: one sweep now (or as of --at), printed to stdout. */
static int
expire_once(const char *path, const struct expire_opts *o)
{
	struct loaded l;
	struct diag d = { 0 }, w = { 0 };
	struct expire_totals t = { 0 };
	int rc = 1;

	if (load_all(path, &l, &d, &w) != 0 || l.rules == NULL) {
		diag_print(&d, stderr);
		fprintf(stderr, "pop3d: configuration has problems (check with pop3d -t)\n");
		goto out;
	}
	diag_print(&d, stderr);   /* bad users-file lines: the rest is swept */
	rc = expire_sweep(l.cfg, l.users, l.rules, o, &t) == 0 && t.failed == 0 ? 0 : 1;
out:
	diag_free(&d);
	diag_free(&w);
	loaded_free(&l);
	return rc;
}

struct expire_job {
	uv_work_t            req;
	struct daemon       *d;
	struct expire_totals t;
	int                  rc;
};

static void
expire_work(uv_work_t *req)
{
	struct expire_job *j = req->data;
	struct expire_opts o;

	memset(&o, 0, sizeof o);
	o.now = (int64_t)time(NULL);
	j->rc = expire_sweep(j->d->cfg, j->d->users, j->d->rules, &o, &j->t);
}

static void
expire_done(uv_work_t *req, int status)
{
	struct expire_job *j = req->data;

	(void)status;
	j->d->expire_running = 0;
	j->d->stats.deleted += j->t.removed;
	log_msg(j->rc == 0 ? LOG_INFO : LOG_ERR, "expire sweep users=%zu removed=%zu "
	        "skipped_in_use=%zu failed=%zu kept_in_doubt=%zu", j->t.users, j->t.removed,
	        j->t.skipped_locked, j->t.failed, j->t.kept_doubt);
	free(j);
}

/* Every policy.expire_interval: one sweep on the thread pool, never two at once. */
static void
on_expire_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;
	struct expire_job *j;

	if (d->expire_running || d->stopping)
		return;
	j = calloc(1, sizeof *j);
	if (j == NULL)
		return;
	j->d = d;
	j->req.data = j;
	if (uv_queue_work(d->loop, &j->req, expire_work, expire_done) != 0) {
		free(j);
		return;
	}
	d->expire_running = 1;
}

static void
on_stop(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;

	if (d->stopping)
		return;
	d->stopping = 1;
	log_msg(LOG_INFO, "shutting down on %s sessions=%zu", signum == SIGTERM ? "SIGTERM" :
	        "SIGINT", d->nsessions);
	listen_close_all(d);
	uv_close((uv_handle_t *)&d->expire_timer, NULL);
	session_close_all(d, "shutdown");
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
}

/*
 * Each session holds a socket, and a RETR a file, so the usual soft limit of
 * 1024 descriptors would cap us near 500 sessions: raise it to the hard limit.
 */
static void
raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_connections * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
		log_msg(LOG_WARN, "open files limit is %llu; max_connections=%u needs about %llu",
		        (unsigned long long)rl.rlim_cur, cfg->max_connections,
		        (unsigned long long)want);
}

/* The APOP timestamp takes the host name; keep it printable and bracket-free. */
static void
hostname_init(struct daemon *d)
{
	char *p;

	if (gethostname(d->hostname, sizeof d->hostname - 1) != 0 || d->hostname[0] == '\0')
		snprintf(d->hostname, sizeof d->hostname, "localhost");
	d->hostname[sizeof d->hostname - 1] = '\0';
	for (p = d->hostname; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>')
			*p = '-';
}

static int
run(const char *path)
{
	struct daemon d;
	struct loaded l;
	struct diag dg = { 0 }, wg = { 0 };
	size_t i;
	int rc = 1, loaded = load_all(path, &l, &dg, &wg) == 0;

	memset(&d, 0, sizeof d);
	for (i = 0; i < wg.n; i++)
		log_msg(LOG_WARN, "%s", wg.msg[i]);
	/* A bad users-file line must not lock everybody out: log it, serve the rest.
	 * Anything else wrong in the configuration stops the start. */
	for (i = 0; i < dg.n; i++)
		log_msg(LOG_ERR, "%s", dg.msg[i]);
	if (!loaded || (l.cfg->tls.present && l.tls == NULL) || l.rules == NULL ||
	    maildrop_template_check(l.cfg->maildrop_path, NULL, 0) != 0) {
		log_msg(LOG_ERR, "cannot start: configuration has problems (check with pop3d -t)");
		goto out;
	}
	d.cfg = l.cfg;
	d.users = l.users;
	d.tls = l.tls;
	d.rules = l.rules;
	rules_summary(d.rules, d.users, &d.capa);

	/* Password hashes and maildir scans share the pool; give it room. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(d.cfg);
	d.loop = uv_default_loop();
	d.loop->data = &d;
	hostname_init(&d);
	if (ipcount_init(&d.per_ip, d.cfg->max_connections / 4) != 0) {
		log_msg(LOG_ERR, "out of memory");
		goto out;
	}
	uv_signal_init(d.loop, &d.sig_term);
	uv_signal_init(d.loop, &d.sig_int);
	d.sig_term.data = d.sig_int.data = &d;
	uv_signal_start(&d.sig_term, on_stop, SIGTERM);
	uv_signal_start(&d.sig_int, on_stop, SIGINT);
	uv_timer_init(d.loop, &d.expire_timer);
	d.expire_timer.data = &d;
	uv_timer_start(&d.expire_timer, on_expire_timer,
	               (uint64_t)d.cfg->policy.expire_interval * 1000,
	               (uint64_t)d.cfg->policy.expire_interval * 1000);

	if (listen_open_all(&d) != 0) {
		on_stop(&d.sig_term, SIGTERM);
		uv_run(d.loop, UV_RUN_DEFAULT);
		goto out;
	}
	log_msg(LOG_INFO, "ready version=%s users=%zu listeners=%zu", POP3D_VERSION, d.users->n,
	        d.nlisteners);
	uv_run(d.loop, UV_RUN_DEFAULT);
	log_msg(LOG_INFO, "stopped connections=%llu logins=%llu login_failures=%llu "
	        "retr=%llu retr_bytes=%llu deleted=%llu",
	        (unsigned long long)d.stats.connections, (unsigned long long)d.stats.logins,
	        (unsigned long long)d.stats.login_failures, (unsigned long long)d.stats.retr_msgs,
	        (unsigned long long)d.stats.retr_bytes, (unsigned long long)d.stats.deleted);
	rc = 0;
out:
	if (d.loop != NULL) {
		int r = uv_loop_close(d.loop);
		if (r != 0) {
			log_msg(LOG_ERR, "event loop did not close cleanly: %s", uv_strerror(r));
			rc = 1;
		}
	}
	free(d.listeners);
	ipcount_free(&d.per_ip);
	loaded_free(&l);
	diag_free(&dg);
	diag_free(&wg);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config",        required_argument, NULL, 'c' },
		{ "test",          no_argument,       NULL, 't' },
		{ "hash-password", no_argument,       NULL, 'H' },
		{ "scheme",        required_argument, NULL, 'S' },
		{ "expire",        no_argument,       NULL, 'E' },
		{ "dry-run",       no_argument,       NULL, 'n' },
		{ "user",          required_argument, NULL, 'u' },
		{ "at",            required_argument, NULL, 'a' },
		{ "json",          no_argument,       NULL, 'j' },
		{ "version",       no_argument,       NULL, 'V' },
		{ "help",          no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = DEFAULT_CONFIG, *scheme = "yescrypt";
	const char *at = NULL;
	int c, test = 0, hash = 0, expire = 0;
	struct expire_opts eo;

	memset(&eo, 0, sizeof eo);
	eo.out = stdout;

	while ((c = getopt_long(argc, argv, "c:th", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'H':
			hash = 1;
			break;
		case 'S':
			scheme = optarg;
			break;
		case 'E':
			expire = 1;
			break;
		case 'n':
			eo.dry_run = 1;
			break;
		case 'u':
			eo.user = optarg;
			break;
		case 'a':
			at = optarg;
			break;
		case 'j':
			eo.json = 1;
			break;
		case 'V':
			printf("pop3d %s\n", POP3D_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (hash)
		return hash_password(scheme);
	if (expire) {
		eo.now = (int64_t)time(NULL);
		if (at != NULL && expire_parse_at(at, eo.now, &eo.now) != 0) {
			fprintf(stderr, "pop3d: --at: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, "
			        "+Nd or +Nh, not \"%s\"\n", at);
			return 2;
		}
		return expire_once(path, &eo);
	}
	if (eo.dry_run || eo.user != NULL || at != NULL || eo.json) {
		fprintf(stderr, "pop3d: --dry-run, --user, --at and --json go with --expire\n");
		return 2;
	}
	if (test)
		return check_config(path);
	return run(path);
}
