/* test_privdrop: privdrop_check_ids (pure) and sdn_match/sdn_sockname on real sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/privdrop.h"
#include "server/sdnotify.h"

static const gid_t g_nobody[] = { 65534 };

static struct privdrop_ids
ids(uid_t u, gid_t g, const gid_t *groups, size_t n)
{
	struct privdrop_ids h = { u, u, u, u, g, g, g, g, groups, n };
	return h;
}

static void
test_exact_match(void **state)
{
	struct privdrop_target t = { 65534, 65534, g_nobody, 1 };
	struct privdrop_ids h = ids(65534, 65534, g_nobody, 1);
	char err[128];

	(void)state;
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), 0);
	h.ngroups = 0;     /* primary gid may be missing from the kernel list */
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), 0);
}

static void
test_each_uid_slot(void **state)
{
	struct privdrop_target t = { 65534, 65534, g_nobody, 1 };
	struct privdrop_ids h;
	uid_t *slots[4];
	char err[128];
	int i;

	(void)state;
	for (i = 0; i < 4; i++) {
		h = ids(65534, 65534, g_nobody, 1);
		slots[0] = &h.ruid; slots[1] = &h.euid; slots[2] = &h.suid; slots[3] = &h.fsuid;
		*slots[i] = 0;
		assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), -1);
		assert_non_null(strstr(err, "uid not dropped"));
	}
	for (i = 0; i < 4; i++) {
		gid_t *g[4];
		h = ids(65534, 65534, g_nobody, 1);
		g[0] = &h.rgid; g[1] = &h.egid; g[2] = &h.sgid; g[3] = &h.fsgid;
		*g[i] = 0;
		assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), -1);
		assert_non_null(strstr(err, "gid not dropped"));
	}
}

static void
test_groups(void **state)
{
	static const gid_t with_root[] = { 65534, 0 };
	static const gid_t mail[] = { 65534, 8 };
	struct privdrop_target t = { 65534, 65534, g_nobody, 1 };
	struct privdrop_ids h = ids(65534, 65534, with_root, 2);
	char err[128];

	(void)state;
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), -1);   /* root kept */
	h.groups = mail;
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), -1);   /* extra group */
	t.groups = mail; t.ngroups = 2;
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), 0);
	h.groups = g_nobody; h.ngroups = 1;
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), -1);   /* 8 missing */
	t.groups = with_root;                                                 /* really in group 0 */
	h.groups = with_root; h.ngroups = 2;
	assert_int_equal(privdrop_check_ids(&t, &h, err, sizeof err), 0);
}

static int
listener(int family, const char *addr, int v6only, struct sockaddr_storage *out)
{
	int fd = socket(family, SOCK_STREAM, 0);
	socklen_t len = sizeof *out;

	memset(out, 0, sizeof *out);
	out->ss_family = (sa_family_t)family;
	if (family == AF_INET)
		inet_pton(AF_INET, addr, &((struct sockaddr_in *)out)->sin_addr);
	else {
		inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)out)->sin6_addr);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
	}
	assert_int_equal(bind(fd, (struct sockaddr *)out, family == AF_INET ?
	                 sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)out, &len), 0);
	return fd;
}

static void
test_match(void **state)
{
	struct sockaddr_storage a, b;
	char buf[96];
	int f4, f6, fd6dual, other;

	(void)state;
	f4 = listener(AF_INET, "127.0.0.1", 0, &a);
	assert_int_equal(sdn_match(f4, (struct sockaddr *)&a), 1);
	b = a;
	((struct sockaddr_in *)&b)->sin_port = htons(ntohs(((struct sockaddr_in *)&a)->sin_port) + 1);
	assert_int_equal(sdn_match(f4, (struct sockaddr *)&b), 0);            /* port differs */
	inet_pton(AF_INET, "0.0.0.0", &((struct sockaddr_in *)&b)->sin_addr);
	((struct sockaddr_in *)&b)->sin_port = ((struct sockaddr_in *)&a)->sin_port;
	assert_int_equal(sdn_match(f4, (struct sockaddr *)&b), 0);            /* address differs */
	snprintf(buf, sizeof buf, "127.0.0.1:%u", ntohs(((struct sockaddr_in *)&a)->sin_port));
	assert_string_equal(sdn_sockname(f4, buf + 40, 50), buf);

	f6 = listener(AF_INET6, "::1", 1, &b);
	assert_int_equal(sdn_match(f6, (struct sockaddr *)&b), 1);
	assert_int_equal(sdn_match(f6, (struct sockaddr *)&a), 0);            /* family differs */
	assert_int_equal(sdn_match(f4, (struct sockaddr *)&b), 0);

	fd6dual = listener(AF_INET6, "::", 0, &b);
	assert_int_equal(sdn_match(fd6dual, (struct sockaddr *)&b), 0);       /* dual-stack */
	assert_non_null(strstr(sdn_sockname(fd6dual, buf, sizeof buf), "(dual-stack)"));

	other = socket(AF_INET, SOCK_STREAM, 0);                             /* not listening */
	assert_int_equal(sdn_match(other, (struct sockaddr *)&a), -1);
	assert_int_equal(sdn_match(-1, (struct sockaddr *)&a), -1);
	close(f4); close(f6); close(fd6dual); close(other);
}

static void
test_no_listen_fds(void **state)
{
	int *fds = (int *)1;
	char **names = (char **)1;

	(void)state;
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	assert_int_equal(sdn_listen_fds(&fds, &names), 0);
	assert_null(fds);
	assert_null(names);
	sdn_listen_free(fds, names);
	unsetenv("NOTIFY_SOCKET");
	sdn_ready(); sdn_reloading(); sdn_stopping(); sdn_status("x=%d", 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_match),
		cmocka_unit_test(test_each_uid_slot),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_no_listen_fds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
