/*
 * main: the startup order and nothing else: arguments, configuration, users,
 * listeners, the worker loops, then the main event loop with its signals
 * (SIGHUP reload, SIGUSR1 counters, SIGTERM/SIGINT orderly stop), which it
 * passes on to the workers. Never handles a client byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/maildrop.h"
#include "policy/expire.h"
#include "policy/rules.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/confset.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/session.h"
#include "server/privdrop.h"
#include "server/sdnotify.h"
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
	    "       pop3d [-c FILE] --expire [--dry-run] [--user NAME] [--at WHEN [--force]] [--json]\n"
	    "                                  run one expiry sweep now and exit (a future --at\n"
	    "                                  needs --dry-run, or --force to really remove)\n"
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

/* Load a generation and print/log what is wrong; NULL when it cannot be used. */
static struct conf_set *
load_report(const char *path, int to_log, int strict_users)
{
	struct diag e = { 0 }, u = { 0 }, w = { 0 };
	struct conf_set *cs = conf_set_load(path, &e, &u, &w);
	size_t i;

	if (cs != NULL && strict_users && (u.n > 0 || u.oom)) {
		conf_set_unref(cs);   /* pop3d -t: a bad users-file line is a problem too */
		cs = NULL;
	}
	if (to_log) {
		for (i = 0; i < w.n; i++)
			log_msg(LOG_WARN, "%s", w.msg[i]);
		/* A bad users-file line must not lock everybody out: logged, the rest served. */
		for (i = 0; i < u.n; i++)
			log_msg(LOG_ERR, "%s", u.msg[i]);
		for (i = 0; i < e.n; i++)
			log_msg(LOG_ERR, "%s", e.msg[i]);
	} else {
		diag_print(&e, stdout);
		diag_print(&u, stdout);
		if (cs == NULL)
			printf("%s: configuration has %zu problem%s\n", path, e.n + u.n,
			       e.n + u.n == 1 ? "" : "s");
		else
			diag_print(&w, stdout);
	}
	diag_free(&e);
	diag_free(&u);
	diag_free(&w);
	return cs;
}

/* One file a reload after the privilege drop reads: warn when it cannot. */
static void
try_read(const char *path, const char *user)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0) {
		close(fd);
		return;
	}
	printf("warning: %s cannot be read by process.user \"%s\" (%s): pop3d starts (it reads "
	       "it as root), but a reload (SIGHUP) will be rejected\n", path, user, strerror(errno));
}

/*
 * pop3d -t as root with process.user: SIGHUP reloads after the privilege drop,
 * so the config, the users file and the TLS files must be readable by that
 * user. A child drops privileges exactly as the daemon does and tries each.
 */
static void
check_readable_after_drop(const struct config *cfg)
{
	char err[256];
	pid_t pid;
	size_t i;

	if (geteuid() != 0 || cfg->process.user == NULL)
		return;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		if (privdrop(&cfg->process, err, sizeof err) != 0) {
			printf("warning: %s\n", err);
		} else {
			try_read(cfg->path, cfg->process.user);
			try_read(cfg->users_file, cfg->process.user);
			if (cfg->tls.present) {
				try_read(cfg->tls.certificate, cfg->process.user);
				try_read(cfg->tls.key, cfg->process.user);
				for (i = 0; i < cfg->tls.nsni; i++) {
					try_read(cfg->tls.sni[i].certificate, cfg->process.user);
					try_read(cfg->tls.sni[i].key, cfg->process.user);
				}
			}
		}
		fflush(stdout);
		_exit(0);
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static int
check_config(const char *path)
{
	struct conf_set *cs = load_report(path, 0, 1);
	const struct config *cfg;
	size_t i, plain = 0;

	if (cs == NULL)
		return 1;
	cfg = cs->cfg;
	for (i = 0; i < cs->users->n; i++)
		plain += cs->users->v[i].scheme == PW_PLAIN;
	printf("%s: configuration is valid\n", path);
	for (i = 0; i < cfg->nlisten; i++) {
		const struct listen_cfg *lc = &cfg->listen[i];
		int v6 = strchr(lc->address, ':') != NULL;
		printf("  listen    %s%s%s:%u tls=%s%s\n", v6 ? "[" : "", lc->address, v6 ? "]" : "",
		       lc->port, lc->tls == TLS_IMPLICIT ? "implicit" :
		       lc->tls == TLS_STARTTLS ? "starttls" : "none",
		       lc->proxy_protocol ? " proxy_protocol" : "");
	}
	printf("  users     %zu in %s (%zu with {PLAIN}: APOP %s)\n", cs->users->n,
	       cfg->users_file, plain, plain ? "offered" : "not offered");
	printf("  plaintext %s%s\n", cfg->plaintext == PLAINTEXT_ALWAYS ? "always" : "tls-only",
	       cfg->nplaintext_trusted > 0 ? " (trusted networks exempt)" : "");
	printf("  maildrop  %s\n", cfg->maildrop_path);
	printf("  limits    idle_timeout=%us max_connections=%u max_connections_per_ip=%u\n",
	       cfg->idle_timeout, cfg->max_connections, cfg->max_connections_per_ip);
	printf("  process   workers=%u%s\n",
	       cfg->process.workers ? cfg->process.workers : workers_default(),
	       cfg->process.workers ? "" : " (one per CPU core)");
	if (cs->tls != NULL)
		tls_ctx_describe(cs->tls, stdout);
	rules_print(cs->rules, cs->users, stdout);
	if (cfg->idle_timeout < IDLE_TIMEOUT_DEFAULT)
		printf("warning: limits.idle_timeout is below the 10 minutes RFC 1939 asks for\n");
	check_readable_after_drop(cfg);
	/* Not an error: run by a user, pop3d serves as that user. Started as root it won't. */
	if (cfg->process.user == NULL && !cfg->process.allow_root)
		printf("warning: process.user is not set: started as root (as by systemd), pop3d "
		       "refuses to serve; run as another user, it serves as that user\n");
	conf_set_unref(cs);
	return 0;
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
	struct expire_totals t = { 0 };
	struct conf_set *cs = load_report(path, 0, 0);
	char perr[256];
	int rc;

	if (cs == NULL)
		return 1;
	/*
	 * A sweep creates pop3d.lock and rewrites pop3d.state (mode 0600) in the
	 * users' maildirs: run as root, it would leave files the daemon's user
	 * cannot open, and lock those users out. So it becomes process.user the
	 * way the daemon does, and refuses root when the daemon would.
	 */
	if (privdrop(&cs->cfg->process, perr, sizeof perr) != 0) {
		fprintf(stderr, "pop3d: --expire runs as the daemon's user: %s\n", perr);
		conf_set_unref(cs);
		return 1;
	}
	rc = expire_sweep(cs->cfg, cs->users, cs->rules, o, &t) == 0 && t.failed == 0 ? 0 : 1;
	conf_set_unref(cs);
	return rc;
}

struct expire_job {
	uv_work_t            req;
	struct daemon       *d;
	struct conf_set     *cs;      /* the generation the sweep runs on */
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
	o.live_clock = 1;
	j->rc = expire_sweep(j->cs->cfg, j->cs->users, j->cs->rules, &o, &j->t);
}

static void
expire_done(uv_work_t *req, int status)
{
	struct expire_job *j = req->data;

	(void)status;
	j->d->expire_running = 0;
	j->d->stats.deleted += j->t.removed;
	j->d->stats.expired += j->t.removed;
	log_msg(j->rc == 0 ? LOG_INFO : LOG_ERR, "expire sweep users=%zu removed=%zu "
	        "skipped_in_use=%zu failed=%zu kept_in_doubt=%zu", j->t.users, j->t.removed,
	        j->t.skipped_locked, j->t.failed, j->t.kept_doubt);
	conf_set_unref(j->cs);
	free(j);
}

static void expire_timer_arm(struct daemon *d);

/* Every policy.expire_interval: one sweep on the thread pool, never two at once. */
static void
on_expire_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;
	struct expire_job *j;

	if (d->stopping)
		return;
	/* The schedule moves on even when this sweep cannot start: one sweep per interval. */
	d->expire_last = uv_now(d->loop);
	expire_timer_arm(d);
	if (d->expire_running)
		return;
	j = calloc(1, sizeof *j);
	if (j == NULL)
		return;
	j->d = d;
	j->cs = conf_set_ref(d->cur);
	j->req.data = j;
	if (uv_queue_work(d->loop, &j->req, expire_work, expire_done) != 0) {
		conf_set_unref(j->cs);
		free(j);
		return;
	}
	d->expire_running = 1;
}

/*
 * Arm the sweep timer for the current policy.expire_interval, keeping the
 * schedule: the next sweep is due one interval after the last one started
 * (at once when that is past), and the first one EXPIRE_FIRST_DELAY after
 * the start, or one interval when that is shorter. So a SIGHUP never
 * postpones a sweep (daily certificate reloads would otherwise starve a
 * weekly sweep), a changed interval counts from the last sweep, and
 * restarts more frequent than the interval still sweep.
 */
static void
expire_timer_arm(struct daemon *d)
{
	uint64_t iv = (uint64_t)d->cur->cfg->policy.expire_interval * 1000, now, due;
	uint64_t first = (uint64_t)EXPIRE_FIRST_DELAY * 1000;

	now = uv_now(d->loop);
	if (d->expire_last == 0)
		due = d->expire_started + (iv < first ? iv : first);
	else
		due = d->expire_last + iv;
	d->expire_interval = d->cur->cfg->policy.expire_interval;
	uv_timer_start(&d->expire_timer, on_expire_timer, due > now ? due - now : 0, 0);
}

/* The listen list is bound once, before privileges are dropped: it cannot change live. */
static int
same_listeners(const struct config *a, const struct config *b)
{
	size_t i;

	if (a->nlisten != b->nlisten)
		return 0;
	for (i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i].address, b->listen[i].address) != 0 ||
		    a->listen[i].port != b->listen[i].port)
			return 0;
	return 1;
}

/*
 * SIGHUP: load a new generation; new sessions use it, running ones keep theirs.
 * Reading the config, the users file and the certificates (and deriving SCRAM
 * keys) is file I/O and CPU, so it runs on the thread pool; only the swap runs
 * on the loop. SIGHUPs that arrive meanwhile collapse into one more load.
 */
struct reload_job {
	uv_work_t        req;
	struct daemon   *d;
	struct conf_set *cs;   /* NULL: the new configuration has problems (logged) */
};

static void reload_start(struct daemon *d);

static void
reload_work(uv_work_t *req)
{
	struct reload_job *j = req->data;

	j->cs = load_report(j->d->config_path, 1, 0);
}

/* On the loop: put a loaded generation in force, or say why not. */
static void
reload_apply(struct daemon *d, struct conf_set *cs)
{
	if (cs == NULL) {
		log_msg(LOG_ERR, "reload rejected: the configuration has problems; "
		        "the running one stays in force");
		return;
	}
	if (!same_listeners(d->cur->cfg, cs->cfg)) {
		log_msg(LOG_ERR, "reload rejected: the listen list changed, which needs a restart; "
		        "the running configuration stays in force");
		conf_set_unref(cs);
		return;
	}
	if (cs->cfg->process.workers != d->cur->cfg->process.workers)
		log_msg(LOG_WARN, "process.workers changed: it takes effect at the next restart");
	conf_set_unref(d->cur);
	d->cur = cs;
	log_open(&cs->cfg->log);
	d->stats.reloads++;
	workers_post(d, DMSG_RELOAD, cs, 0);
	if (cs->cfg->policy.expire_interval != d->expire_interval)
		expire_timer_arm(d);   /* same interval: the running timer already keeps the phase */
	log_notice("reloaded users=%zu sessions=%zu (running sessions keep their settings)",
	        cs->users->n, atomic_load(&d->sh->nsessions));
}

static void
reload_done(uv_work_t *req, int status)
{
	struct reload_job *j = req->data;
	struct daemon *d = j->d;

	(void)status;
	d->reload_running = 0;
	if (d->stopping) {          /* too late: the daemon is on its way out */
		conf_set_unref(j->cs);
		free(j);
		return;
	}
	reload_apply(d, j->cs);
	free(j);
	if (d->reload_again) {
		d->reload_again = 0;
		reload_start(d);
		return;
	}
	sdn_ready();
}

static void
reload_start(struct daemon *d)
{
	struct reload_job *j = calloc(1, sizeof *j);

	sdn_reloading();
	log_notice("reloading %s", d->config_path);
	if (j != NULL) {
		j->d = d;
		j->req.data = j;
		if (uv_queue_work(d->loop, &j->req, reload_work, reload_done) == 0) {
			d->reload_running = 1;
			return;
		}
		free(j);
	}
	log_msg(LOG_ERR, "reload rejected: out of memory; the running configuration stays in force");
	sdn_ready();
}

static void
on_reload(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;

	(void)signum;
	if (d->stopping)
		return;
	if (d->reload_running) {
		d->reload_again = 1;
		return;
	}
	reload_start(d);
}

/* SIGUSR1: one line with every counter. */
static void
on_counters(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;
	struct counters sum, *c = &sum;

	(void)signum;
	workers_counters(d, &sum);
	log_notice("counters connections=%llu refused=%llu sessions_open=%zu logins=%llu "
	        "login_failures=%llu retr=%llu retr_bytes=%llu deleted=%llu deleted_dele=%llu "
	        "deleted_download=%llu deleted_expire=%llu reloads=%llu",
	        (unsigned long long)c->connections, (unsigned long long)c->refused,
	        atomic_load(&d->sh->nsessions),
	        (unsigned long long)c->logins, (unsigned long long)c->login_failures,
	        (unsigned long long)c->retr_msgs, (unsigned long long)c->retr_bytes,
	        (unsigned long long)c->deleted, (unsigned long long)c->deleted_dele,
	        (unsigned long long)c->deleted_download, (unsigned long long)c->expired,
	        (unsigned long long)c->reloads);
}

/*
 * Stop accepting, let sessions finish for process.shutdown_grace seconds, then
 * close the rest without UPDATE (one already in UPDATE finishes); every worker
 * does the same. The main loop ends when its last handle is closed, and
 * worker_done is one until every worker has ended. signame: the signal that
 * asked, or NULL after a failed start, whose cause is logged already (so the
 * log never names a signal nobody sent).
 */
static void
begin_stop(struct daemon *d, const char *signame)
{
	uint32_t grace = d->cur->cfg->process.shutdown_grace;

	sdn_stopping();
	uv_close((uv_handle_t *)&d->expire_timer, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	uv_close((uv_handle_t *)&d->sig_usr1, NULL);
	workers_post(d, DMSG_STOP, NULL, grace);
	listen_close_all(d);
	workers_wait_stopped(d, 1000);   /* then nobody accepts: the port refuses */
	if (signame != NULL)
		log_notice("shutting down on %s sessions=%zu grace=%us", signame,
		           atomic_load(&d->sh->nsessions), grace);
	daemon_stop(d, grace);
	uv_unref((uv_handle_t *)&d->sig_term);
	uv_unref((uv_handle_t *)&d->sig_int);
}

/* SIGTERM/SIGINT: the first stops (begin_stop), a second closes every session at once. */
static void
on_stop(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;

	if (d->stopping) {   /* a second signal: do not wait any longer */
		session_close_all(d, "shutdown");
		workers_post(d, DMSG_CLOSE_ALL, NULL, 0);
		return;
	}
	begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/*
 * A logged-in session holds its socket and its maildrop lock, and a RETR a
 * file, so the usual soft limit of 1024 descriptors would cap us near 500
 * sessions: raise it, and as root (still, before the privilege drop) the hard
 * limit too.
 */
static void
raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_connections * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max < want && geteuid() == 0) {
		struct rlimit more = { want, want };
		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return;
	}
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
	struct shared sh;
	char perr[256];
	unsigned nworkers;
	int rc = 1;

	memset(&d, 0, sizeof d);
	memset(&sh, 0, sizeof sh);
	d.sh = &sh;
	d.config_path = path;
	d.cur = load_report(path, 1, 0);
	if (d.cur == NULL) {
		log_msg(LOG_ERR, "cannot start: configuration has problems (check with pop3d -t)");
		return 1;
	}
	log_open(&d.cur->cfg->log);

	/* Password hashes and maildir scans share the pool; give it room. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(d.cur->cfg);
	d.loop = uv_default_loop();
	d.loop->data = &d;
	hostname_init(&d);
	if (uv_mutex_init(&sh.stop_lock) != 0 || uv_cond_init(&sh.stop_cond) != 0 ||
	    uv_mutex_init(&sh.ip_lock) != 0 ||
	    ipcount_init(&sh.per_ip, d.cur->cfg->max_connections / 4) != 0) {
		log_msg(LOG_ERR, "out of memory");
		goto out;
	}
	auth_queue_init(&d.hashq, d.loop, AUTH_HASH_CONCURRENCY);
	uv_signal_init(d.loop, &d.sig_term);
	uv_signal_init(d.loop, &d.sig_int);
	uv_signal_init(d.loop, &d.sig_hup);
	uv_signal_init(d.loop, &d.sig_usr1);
	uv_timer_init(d.loop, &d.grace_timer);
	uv_timer_init(d.loop, &d.expire_timer);
	d.sig_term.data = d.sig_int.data = d.sig_hup.data = d.sig_usr1.data = &d;
	d.grace_timer.data = d.expire_timer.data = &d;
	uv_signal_start(&d.sig_term, on_stop, SIGTERM);
	uv_signal_start(&d.sig_int, on_stop, SIGINT);

	if (listen_open_all(&d) != 0) {
		begin_stop(&d, NULL);
		goto drain;
	}
	/* Ports bound, keys and users loaded: nothing more needs root (habit 13). */
	if (privdrop(&d.cur->cfg->process, perr, sizeof perr) != 0) {
		log_msg(LOG_ERR, "cannot start: %s", perr);
		begin_stop(&d, NULL);
		goto drain;
	}
	nworkers = d.cur->cfg->process.workers ? d.cur->cfg->process.workers : workers_default();
	if (workers_start(&d, nworkers) != 0) {
		begin_stop(&d, NULL);
		goto drain;
	}
	uv_signal_start(&d.sig_hup, on_reload, SIGHUP);
	uv_signal_start(&d.sig_usr1, on_counters, SIGUSR1);
	d.expire_started = uv_now(d.loop);
	expire_timer_arm(&d);
	log_notice("ready version=%s users=%zu listeners=%zu workers=%zu", POP3D_VERSION,
	        d.cur->users->n, d.nlisteners, d.nworkers + 1);
	sdn_ready();
	rc = 0;
drain:
	uv_run(d.loop, UV_RUN_DEFAULT);
	/* Every session is gone: close what is left and run the loop dry. */
	uv_close((uv_handle_t *)&d.grace_timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&d.sig_term))
		uv_close((uv_handle_t *)&d.sig_term, NULL);
	if (!uv_is_closing((uv_handle_t *)&d.sig_int))
		uv_close((uv_handle_t *)&d.sig_int, NULL);
	if (!uv_is_closing((uv_handle_t *)&d.sig_hup))
		uv_close((uv_handle_t *)&d.sig_hup, NULL);
	if (!uv_is_closing((uv_handle_t *)&d.sig_usr1))
		uv_close((uv_handle_t *)&d.sig_usr1, NULL);
	if (!uv_is_closing((uv_handle_t *)&d.expire_timer))
		uv_close((uv_handle_t *)&d.expire_timer, NULL);
	uv_run(d.loop, UV_RUN_DEFAULT);
	workers_join(&d);   /* worker_done closed: every worker has ended */
	if (rc == 0)
		on_counters(&d.sig_usr1, SIGUSR1);
	log_notice("stopped");
out:
	if (d.loop != NULL) {
		int r = uv_loop_close(d.loop);
		if (r != 0) {
			log_msg(LOG_ERR, "event loop did not close cleanly: %s", uv_strerror(r));
			rc = 1;
		}
	}
	free(d.listeners);
	if (sh.per_ip.bucket != NULL) {
		ipcount_free(&sh.per_ip);
		uv_mutex_destroy(&sh.ip_lock);
		uv_cond_destroy(&sh.stop_cond);
		uv_mutex_destroy(&sh.stop_lock);
	}
	conf_set_unref(d.cur);
	log_close();
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
		{ "force",         no_argument,       NULL, 'f' },
		{ "version",       no_argument,       NULL, 'V' },
		{ "help",          no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = DEFAULT_CONFIG, *scheme = "yescrypt";
	const char *at = NULL;
	int c, test = 0, hash = 0, expire = 0, force = 0;
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
		case 'f':
			force = 1;
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
		eo.live_clock = at == NULL;
		if (at != NULL && expire_parse_at(at, eo.now, &eo.now) != 0) {
			fprintf(stderr, "pop3d: --at: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, "
			        "+Nd or +Nh, not \"%s\"\n", at);
			return 2;
		}
		/* A real sweep "as of" a later time removes mail before the time clients were promised. */
		if (eo.now > (int64_t)time(NULL) && !eo.dry_run && !force) {
			fprintf(stderr, "pop3d: --at \"%s\" is in the future: a real sweep would remove mail "
			        "before its time, breaking what clients were promised; add --dry-run to see "
			        "what it would remove, or --force to remove it anyway\n", at);
			return 2;
		}
		return expire_once(path, &eo);
	}
	if (eo.dry_run || eo.user != NULL || at != NULL || eo.json || force) {
		fprintf(stderr, "pop3d: --dry-run, --user, --at, --force and --json go with --expire\n");
		return 2;
	}
	if (test)
		return check_config(path);
	return run(path);
}
