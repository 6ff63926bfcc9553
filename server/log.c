/*
 * log: formats and writes log lines. Holds only the process-wide level (like
 * syslog's own state); never sees a password, callers pass escaped text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"

static enum log_level log_min = LOG_INFO;

static const char *const level_name[] = { "error", "warning", "info", "debug" };

void
log_set_level(enum log_level min)
{
	log_min = min;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[2048], stamp[32];
	struct tm tm;
	time_t now;
	va_list ap;
	int off;

	if (lvl > log_min)
		return;
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
	off = snprintf(line, sizeof line, "%s pop3d[%ld]: %s: ", stamp, (long)getpid(),
	               level_name[lvl]);
	if (off < 0 || (size_t)off >= sizeof line)
		return;
	va_start(ap, fmt);
	vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
	va_end(ap);
	/* One write per line so concurrent writers never interleave inside a line. */
	off = (int)strlen(line);
	if ((size_t)off >= sizeof line - 1)
		off = (int)sizeof line - 2;
	line[off++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)off);
}
