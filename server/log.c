/*
 * log: formats and writes log lines, to stderr or syslog. Holds only the
 * process-wide level and target (like syslog's own state), in atomics, and
 * no buffer outside a call; never sees a password, callers pass escaped text.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/*
 * syslog's priorities for our levels, indexed by enum log_level, taken before
 * server/log.h reuses the names LOG_ERR, LOG_INFO and LOG_DEBUG for its enum.
 */
static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

#include "server/config.h"
#include "server/log.h"

#define LOG_LINE_MAX 2048

/* Written at startup (and on a reload), read by every thread that logs. */
static atomic_int log_min = LOG_INFO;
static atomic_int log_syslog;           /* 1: syslog is open and in use */
static atomic_long log_pid;             /* getpid() once: pop3d never forks */

static const char *const level_name[] = { "error", "warning", "info", "debug" };

_Static_assert(sizeof(syslog_prio) / sizeof(syslog_prio[0]) == LOG_DEBUG + 1,
    "one syslog priority per level");

void
log_set_level(enum log_level min)
{
	atomic_store(&log_min, (int)min);
}

void
log_open(const struct log_cfg *c)
{
	atomic_store(&log_min, c->level);
	if (c->target == LOGT_SYSLOG) {
		/* Open before switching, so no line goes to a syslog not yet set up. */
		openlog("pop3d", LOG_PID | LOG_NDELAY, c->facility);
		atomic_store(&log_syslog, 1);
	} else {
		log_close();
	}
}

void
log_close(void)
{
	/* Switch first: a thread that still saw 1 calls syslog(), which is safe. */
	if (atomic_exchange(&log_syslog, 0))
		closelog();
}

/* One line at syslog priority prio; word names it on stderr. */
static void
vlog(int prio, const char *word, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX], stamp[32];
	struct tm tm;
	time_t now;
	int off;

	if (atomic_load(&log_syslog)) {
		/* syslog adds the time, host and pop3d[PID]; the priority says the level. */
		vsnprintf(line, sizeof line, fmt, ap);
		syslog(prio, "%s", line);
		return;
	}
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (atomic_load(&log_pid) == 0)
		atomic_store(&log_pid, (long)getpid());
	off = snprintf(line, sizeof line, "%s pop3d[%ld]: %s: ", stamp, atomic_load(&log_pid), word);
	if (off < 0 || (size_t)off >= sizeof line)
		return;
	vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
	/* One write per line so concurrent writers never interleave inside a line. */
	off = (int)strlen(line);
	if ((size_t)off >= sizeof line - 1)
		off = (int)sizeof line - 2;
	line[off++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)off);
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if ((int)lvl < 0 || (int)lvl > atomic_load(&log_min))
		return;
	va_start(ap, fmt);
	vlog(syslog_prio[lvl], level_name[lvl], fmt, ap);
	va_end(ap);
}

void
log_notice(const char *fmt, ...)
{
	va_list ap;

	/* No level check: the admin asked (a signal, a start), so the answer is always written. */
	va_start(ap, fmt);
	vlog(LOG_NOTICE, "notice", fmt, ap);
	va_end(ap);
}
