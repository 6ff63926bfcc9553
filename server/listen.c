/*
 * listen: binds the configured addresses and accepts connections. Owns the
 * listening handles only; every accepted socket belongs to a session at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"
#include "server/confset.h"
#include "server/daemon.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/session.h"
#include "server/sdnotify.h"

#define LISTEN_BACKLOG 511

static void
on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;

	if (status < 0) {
		log_msg(LOG_WARN, "accept on %s: %s", l->name, uv_strerror(status));
		return;
	}
	session_accept(l->d, server);
}

/* Sockets passed by systemd, only during listen_open_all. */
struct passed {
	int   *fds;
	char **names;
	int    n;
	int   *taken;
};

static int
listen_one(struct daemon *d, struct listener *l, const struct listen_cfg *c, struct passed *p)
{
	int k, from_fd = -1;
	struct sockaddr_storage ss;
	unsigned flags = 0;
	int r;

	l->d = d;
	if (strchr(c->address, ':') != NULL) {
		snprintf(l->name, sizeof l->name, "[%s]:%u", c->address, c->port);
		r = uv_ip6_addr(c->address, c->port, (struct sockaddr_in6 *)&ss);
		flags = UV_TCP_IPV6ONLY;
	} else {
		snprintf(l->name, sizeof l->name, "%s:%u", c->address, c->port);
		r = uv_ip4_addr(c->address, c->port, (struct sockaddr_in *)&ss);
	}
	if (r == 0)
		r = uv_tcp_init(d->loop, &l->tcp);
	if (r != 0) {
		log_msg(LOG_ERR, "listen %s: %s", l->name, uv_strerror(r));
		return -1;
	}
	l->tcp.data = l;
	l->open = 1;
	for (k = 0; k < p->n && from_fd < 0; k++)
		if (!p->taken[k] && sdn_match(p->fds[k], (const struct sockaddr *)&ss) == 1)
			from_fd = k;
	if (from_fd >= 0) {
		r = uv_tcp_open(&l->tcp, p->fds[from_fd]);
		if (r == 0)
			p->taken[from_fd] = 1;
	} else {
		r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, flags);
	}
	if (r == 0)
		r = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
	if (r != 0) {
		log_msg(LOG_ERR, "listen %s: %s", l->name, uv_strerror(r));
		return -1;
	}
	log_msg(LOG_INFO, "listening on %s tls=%s%s", l->name,
	        c->tls == TLS_IMPLICIT ? "implicit" : c->tls == TLS_STARTTLS ? "starttls" : "none",
	        from_fd >= 0 ? " from=systemd" : "");
	return 0;
}

int
listen_open_all(struct daemon *d)
{
	size_t i;

	const struct config *cfg = d->cur->cfg;

	d->listeners = calloc(cfg->nlisten, sizeof *d->listeners);
	if (d->listeners == NULL) {
		log_msg(LOG_ERR, "listen: out of memory");
		return -1;
	}
	d->nlisteners = cfg->nlisten;
	struct passed p = { 0 };
	int k, rc = 0;
	char name[96];
	p.n = sdn_listen_fds(&p.fds, &p.names);
	if (p.n < 0) {
		log_msg(LOG_ERR, "sockets passed by systemd: %s", strerror(-p.n));
		return -1;
	}
	if (p.n > 0 && (p.taken = calloc((size_t)p.n, sizeof *p.taken)) == NULL) {
		sdn_listen_free(p.fds, p.names);
		return -1;
	}
	for (i = 0; i < d->nlisteners && rc == 0; i++) {
		d->listeners[i].index = i;
		if (listen_one(d, &d->listeners[i], &cfg->listen[i], &p) != 0)
			rc = -1;
	}
	for (k = 0; k < p.n; k++)
		if (!p.taken[k]) {
			if (rc == 0)
				log_msg(LOG_ERR, "socket passed by systemd matches no listen entry: %s "
				        "name=%s", sdn_sockname(p.fds[k], name, sizeof name), p.names[k]);
			close(p.fds[k]);
			rc = -1;
		}
	free(p.taken);
	sdn_listen_free(p.fds, p.names);
	return rc;
}

int
listen_clone_all(const struct daemon *from, struct daemon *to)
{
	size_t i;

	to->listeners = calloc(from->nlisteners ? from->nlisteners : 1, sizeof *to->listeners);
	if (to->listeners == NULL) {
		log_msg(LOG_ERR, "listen: out of memory");
		return -1;
	}
	to->nlisteners = from->nlisteners;
	for (i = 0; i < from->nlisteners; i++) {
		const struct listener *f = &from->listeners[i];
		struct listener *l = &to->listeners[i];
		uv_os_fd_t fd;
		int r, nfd = -1;

		l->d = to;
		l->index = f->index;
		memcpy(l->name, f->name, sizeof l->name);
		r = uv_fileno((const uv_handle_t *)&f->tcp, &fd);
		if (r == 0) {
			nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
			r = nfd < 0 ? uv_translate_sys_error(errno) : 0;
		}
		if (r == 0)
			r = uv_tcp_init(to->loop, &l->tcp);
		if (r != 0) {
			if (nfd >= 0)
				close(nfd);
			log_msg(LOG_ERR, "listen %s (worker %u): %s", l->name, to->index, uv_strerror(r));
			return -1;
		}
		l->tcp.data = l;
		l->open = 1;
		r = uv_tcp_open(&l->tcp, nfd);
		if (r != 0)
			close(nfd);   /* not adopted by the handle */
		else
			r = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
		if (r != 0) {
			log_msg(LOG_ERR, "listen %s (worker %u): %s", l->name, to->index, uv_strerror(r));
			return -1;
		}
	}
	return 0;
}

void
listen_close_all(struct daemon *d)
{
	size_t i;

	for (i = 0; i < d->nlisteners; i++) {
		if (d->listeners[i].open && !uv_is_closing((uv_handle_t *)&d->listeners[i].tcp))
			uv_close((uv_handle_t *)&d->listeners[i].tcp, NULL);
	}
}
