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
#include <termios.h>
#include <unistd.h>

#include "maildrop/maildrop.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/daemon.h"
#include "server/limits.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/session.h"
#include "server/strutil.h"

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
	    "       pop3d --hash-password      read a password on stdin, print a yescrypt hash\n"
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

/* Load config + users; every problem goes to d. Returns 0 when both loaded. */
static int
load_all(const char *path, struct config **cfg, struct users **users, struct diag *d)
{
	char err[256];

	*cfg = NULL;
	*users = NULL;
	if (config_load(path, cfg, d) != 0)
		return -1;
	if (maildrop_template_check((*cfg)->maildrop_path, err, sizeof err) != 0)
		diag_add(d, "%s: maildrop.path: %s", path, err);
	if (users_load((*cfg)->users_file, users, d) != 0)
		return -1;
	return 0;
}

static int
check_config(const char *path)
{
	struct config *cfg;
	struct users *users;
	struct diag d = { 0 };
	size_t i, plain = 0;
	int ok = load_all(path, &cfg, &users, &d) == 0 && d.n == 0 && !d.oom;

	if (!ok) {
		diag_print(&d, stdout);
		fprintf(stdout, "%s: configuration has %zu problem%s\n", path, d.n,
		        d.n == 1 ? "" : "s");
	} else {
		for (i = 0; i < users->n; i++)
			plain += users->v[i].scheme == PW_PLAIN;
		printf("%s: configuration is valid\n", path);
		for (i = 0; i < cfg->nlisten; i++)
			printf("  listen    %s%s%s:%u\n", strchr(cfg->listen[i].address, ':') ? "[" : "",
			       cfg->listen[i].address,
			       strchr(cfg->listen[i].address, ':') ? "]" : "", cfg->listen[i].port);
		printf("  users     %zu in %s (%zu with {PLAIN}: APOP %s)\n", users->n,
		       cfg->users_file, plain, plain ? "offered" : "not offered");
		printf("  plaintext %s\n", cfg->plaintext == PLAINTEXT_ALWAYS ? "always" : "tls-only");
		printf("  maildrop  %s\n", cfg->maildrop_path);
		printf("  limits    idle_timeout=%us max_connections=%u max_connections_per_ip=%u\n",
		       cfg->idle_timeout, cfg->max_connections, cfg->max_connections_per_ip);
		if (cfg->idle_timeout < IDLE_TIMEOUT_DEFAULT)
			printf("warning: limits.idle_timeout is below the 10 minutes RFC 1939 asks for\n");
		if (cfg->plaintext == PLAINTEXT_TLS_ONLY)
			printf("warning: auth.plaintext is \"tls-only\" and this build has no TLS "
			       "listener: USER/PASS will be refused; APOP only\n");
	}
	diag_free(&d);
	if (users != NULL)
		users_unref(users);
	config_free(cfg);
	return ok ? 0 : 1;
}

static int
hash_password(void)
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
	hash = auth_hash_password(pass, n, err, sizeof err);
	wipe(pass, sizeof pass);
	if (hash == NULL) {
		fprintf(stderr, "pop3d: cannot hash: %s\n", err);
		return 1;
	}
	printf("%s\n", hash);
	free(hash);
	return 0;
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
	session_close_all(d, "shutdown");
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
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
	struct diag dg = { 0 };
	size_t i;
	int rc = 1;

	memset(&d, 0, sizeof d);
	if (load_all(path, &d.cfg, &d.users, &dg) != 0 || d.cfg == NULL) {
		for (i = 0; i < dg.n; i++)
			log_msg(LOG_ERR, "%s", dg.msg[i]);
		log_msg(LOG_ERR, "cannot start: configuration has problems (check with pop3d -t)");
		goto out;
	}
	/* A bad users-file line must not lock everybody out: log it, serve the rest. */
	for (i = 0; i < dg.n; i++)
		log_msg(LOG_ERR, "%s", dg.msg[i]);
	if (maildrop_template_check(d.cfg->maildrop_path, NULL, 0) != 0)
		goto out;

	/* Password hashes and maildir scans share the pool; give it room. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	signal(SIGPIPE, SIG_IGN);
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
	if (d.users != NULL)
		users_unref(d.users);
	config_free(d.cfg);
	diag_free(&dg);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config",        required_argument, NULL, 'c' },
		{ "test",          no_argument,       NULL, 't' },
		{ "hash-password", no_argument,       NULL, 'H' },
		{ "version",       no_argument,       NULL, 'V' },
		{ "help",          no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = DEFAULT_CONFIG;
	int c, test = 0;

	while ((c = getopt_long(argc, argv, "c:th", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'H':
			return hash_password();
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
	if (test)
		return check_config(path);
	return run(path);
}
