/*
 * sdnotify: the systemd seams, a thin wrapper over libsystemd. Readiness and
 * status via sd_notify (no-ops without NOTIFY_SOCKET, so pop3d runs the same
 * outside systemd), and the listening sockets a .socket unit passes in.
 */
#ifndef POP3D_SDNOTIFY_H
#define POP3D_SDNOTIFY_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Tell the service manager about the daemon's state: READY=1 (startup done:
 * listeners open, privileges dropped; again after a reload has finished),
 * RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload wants; follow it
 * with sdn_ready() when the reload is over, whatever its outcome), STOPPING=1
 * (shutdown has begun), STATUS=text (one line shown by systemctl status; the
 * text is cut at 200 octets). None of them fails or blocks; each does nothing
 * when NOTIFY_SOCKET is unset.
 */
void sdn_ready(void);
void sdn_reloading(void);
void sdn_stopping(void);
void sdn_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Sockets passed by systemd (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, read once:
 * the variables are removed from the environment). Returns their number n:
 * (*fds)[0..n-1] are the descriptors (SD_LISTEN_FDS_START, 3, onwards, all
 * close-on-exec) and, when names is not NULL, (*names)[0..n-1] their
 * FileDescriptorName= values ("unknown" when none was given), NULL-terminated.
 * Returns 0 with *fds and *names NULL when nothing was passed (no LISTEN_FDS,
 * or LISTEN_PID is another process), or a negative errno when the variables
 * are malformed. The arrays are the caller's: free them with sdn_listen_free.
 * The descriptors are the caller's too: hand each to uv_tcp_open, or close it.
 */
int sdn_listen_fds(int **fds, char ***names);

/* Free what sdn_listen_fds returned (not the descriptors); NULLs are fine. */
void sdn_listen_free(int *fds, char **names);

/*
 * Is fd a listening TCP socket bound to exactly want (family, address and
 * port)? IPv4 and IPv6 aware: an IPv6 socket matches only when it is
 * IPV6_V6ONLY, as pop3d's own IPv6 listeners are (a dual-stack [::] socket
 * would take IPv4 clients as ::ffff:a.b.c.d, which the per-IP caps and
 * address blocks do not treat as IPv4). Returns 1 on a match, 0 when it
 * differs, -1 when fd is not a listening TCP socket or cannot be asked.
 */
int sdn_match(int fd, const struct sockaddr *want);

/*
 * Describe fd's bound address for a log line: "127.0.0.1:110", "[::1]:995",
 * "[::]:110 (dual-stack)", or "fd 3 (not a TCP socket)". Always NUL-terminates
 * buf when len > 0; returns buf.
 */
const char *sdn_sockname(int fd, char *buf, size_t len);

/*
 * How listen.c uses these (the intended wiring):
 *
 *   listen_open_all:  n = sdn_listen_fds(&fds, &names); n < 0 is an error
 *                     ("LISTEN_FDS: <strerror(-n)>"), stop.
 *   listen_one:       after building the sockaddr ss of the entry, look for a
 *                     passed fd with sdn_match(fds[k], &ss) == 1 that is not
 *                     taken yet. Found: uv_tcp_init, uv_tcp_open(&l->tcp,
 *                     fds[k]), mark it taken, then uv_listen as usual and log
 *                     "listening on ADDR tls=... (from systemd)". Not found:
 *                     bind as today.
 *   after the loop:   every passed fd not taken is an error: log
 *                     "socket passed by systemd matches no listen entry:
 *                     <sdn_sockname(fd)> name=<names[k]>", close it, fail.
 *                     Then sdn_listen_free(fds, names).
 */

#endif
