/*
 * sdnotify: talks to the service manager through libsystemd and inspects the
 * sockets it passed. Holds no state; never blocks the loop (sd_notify is one
 * datagram) and never fails the daemon because systemd is absent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "server/sdnotify.h"

#define SDN_STATUS_MAX 200

static int
have_socket(void)
{
	const char *s = getenv("NOTIFY_SOCKET");

	return s != NULL && s[0] != '\0';
}

void
sdn_ready(void)
{
	(void)sd_notify(0, "READY=1");
}

void
sdn_reloading(void)
{
	struct timespec ts;
	char msg[64];

	if (!have_socket())
		return;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		(void)sd_notify(0, "RELOADING=1");
		return;
	}
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	(void)sd_notify(0, msg);
}

void
sdn_stopping(void)
{
	(void)sd_notify(0, "STOPPING=1");
}

void
sdn_status(const char *fmt, ...)
{
	char msg[sizeof "STATUS=" + SDN_STATUS_MAX], *p;
	va_list ap;

	if (!have_socket())
		return;
	memcpy(msg, "STATUS=", 7);
	va_start(ap, fmt);
	vsnprintf(msg + 7, sizeof msg - 7, fmt, ap);   /* cut, not an error */
	va_end(ap);
	/* One line: a newline would start another assignment. */
	for (p = msg + 7; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	(void)sd_notify(0, msg);
}

int
sdn_listen_fds(int **fds, char ***names)
{
	char **nv = NULL;
	int n, i;

	*fds = NULL;
	if (names != NULL)
		*names = NULL;
	n = sd_listen_fds_with_names(1, &nv);
	if (n <= 0) {
		sdn_listen_free(NULL, nv);
		return n;
	}
	*fds = calloc((size_t)n, sizeof **fds);
	if (*fds == NULL) {
		sdn_listen_free(NULL, nv);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		(*fds)[i] = SD_LISTEN_FDS_START + i;
	if (names != NULL)
		*names = nv;
	else
		sdn_listen_free(NULL, nv);
	return n;
}

void
sdn_listen_free(int *fds, char **names)
{
	char **p;

	free(fds);
	if (names == NULL)
		return;
	for (p = names; *p != NULL; p++)
		free(*p);
	free(names);
}

/* An IPv6 socket that also takes IPv4 clients (IPV6_V6ONLY off). */
static int
dual_stack(int fd)
{
	int on = 0;
	socklen_t len = sizeof on;

	if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, &len) != 0)
		return 0;
	return !on;
}

int
sdn_match(int fd, const struct sockaddr *want)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	/* Listening TCP of either family; the address is compared below. */
	if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
		return -1;
	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family != want->sa_family)
		return ss.ss_family == AF_INET || ss.ss_family == AF_INET6 ? 0 : -1;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		const struct sockaddr_in *b = (const struct sockaddr_in *)want;
		return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)want;
		if (a->sin6_port != b->sin6_port ||
		    memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) != 0)
			return 0;
		/* A scope (fe80::1%eth0) must match too; 0 on both sides otherwise. */
		if (a->sin6_scope_id != b->sin6_scope_id)
			return 0;
		return !dual_stack(fd);
	}
	return -1;
}

const char *
sdn_sockname(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
	    sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, -1) <= 0) {
		snprintf(buf, len, "fd %d (not a TCP socket)", fd);
	} else if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
		snprintf(buf, len, "%s:%u%s", host, ntohs(a->sin_port),
		         sd_is_socket(fd, AF_INET, SOCK_STREAM, 1) > 0 ? "" : " (not listening)");
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
		snprintf(buf, len, "[%s]:%u%s%s", host, ntohs(a->sin6_port),
		         dual_stack(fd) ? " (dual-stack)" : "",
		         sd_is_socket(fd, AF_INET6, SOCK_STREAM, 1) > 0 ? "" : " (not listening)");
	} else {
		snprintf(buf, len, "fd %d (not a TCP socket)", fd);
	}
	return buf;
}
