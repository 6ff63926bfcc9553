/* Unit tests for server/ipcount.c: connection caps, failure backoff, address blocks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "server/config.h"
#include "server/ipcount.h"

static struct ipkey
key4(const char *a)
{
	struct ipkey k = { 4, { 0 } };

	assert_int_equal(inet_pton(AF_INET, a, k.addr), 1);
	return k;
}

static struct ipkey
key6(const char *a)
{
	struct ipkey k = { 16, { 0 } };

	assert_int_equal(inet_pton(AF_INET6, a, k.addr), 1);
	return k;
}

static void
test_cap_exactly_and_one_over(void **state)
{
	struct ipcount t;
	struct ipkey a = key4("192.0.2.1"), b = key4("192.0.2.2");

	(void)state;
	assert_int_equal(ipcount_init(&t, 4), 0);
	assert_int_equal(ipcount_acquire(&t, &a, 2), 1);
	assert_int_equal(ipcount_acquire(&t, &a, 2), 2);
	assert_int_equal(ipcount_acquire(&t, &a, 2), 0);   /* one over: refused, not counted */
	assert_int_equal(ipcount_acquire(&t, &b, 2), 1);   /* another address is separate */
	ipcount_release(&t, &a);
	assert_int_equal(ipcount_acquire(&t, &a, 2), 2);
	ipcount_release(&t, &a);
	ipcount_release(&t, &a);
	ipcount_release(&t, &b);
	assert_int_equal(t.n, 0);                          /* nodes go with their last user */
	ipcount_free(&t);
}

static void
test_backoff_doubles_to_the_cap(void **state)
{
	(void)state;
	assert_int_equal(backoff_delay_ms(1000, 60000, 0), 0);
	assert_int_equal(backoff_delay_ms(1000, 60000, 1), 1000);
	assert_int_equal(backoff_delay_ms(1000, 60000, 2), 2000);
	assert_int_equal(backoff_delay_ms(1000, 60000, 6), 32000);
	assert_int_equal(backoff_delay_ms(1000, 60000, 7), 60000);
	assert_int_equal(backoff_delay_ms(1000, 60000, 1000000), 60000);   /* no overflow */
	assert_int_equal(backoff_delay_ms(0, 60000, 5), 0);                /* off */
}

static void
test_failures_counted_and_forgotten(void **state)
{
	struct ipcount t;
	struct ipkey a = key4("198.51.100.7"), b;

	(void)state;
	assert_int_equal(ipcount_init(&t, 16), 0);
	assert_int_equal(ipcount_fail(&t, &a, 1000, 900000), 1);
	assert_int_equal(ipcount_fail(&t, &a, 2000, 900000), 2);
	assert_int_equal(ipcount_fail(&t, &a, 2000 + 899999, 900000), 3);  /* still remembered */
	/* reading the count changes nothing; unknown addresses have none */
	assert_int_equal(ipcount_failures(&t, &a, 2000 + 899999, 900000), 3);
	assert_int_equal(ipcount_failures(&t, &a, 2000 + 899999 + 900000, 900000), 0);
	b = key4("198.51.100.9");
	assert_int_equal(ipcount_failures(&t, &b, 5000, 900000), 0);
	/* quiet for exactly the forget period: starts again from one */
	assert_int_equal(ipcount_fail(&t, &a, 2000 + 899999 + 900000, 900000), 1);
	/* a node holding only failures is freed once they are forgotten */
	b = key4("198.51.100.8");
	assert_int_equal(ipcount_fail(&t, &b, 10000000, 900000), 1);
	assert_int_equal(ipcount_fail(&t, &b, 20000000, 900000), 1);
	assert_int_equal(t.n, 1);
	/* a connection count survives its address's failures being forgotten */
	assert_int_equal(ipcount_acquire(&t, &b, 5), 1);
	assert_int_equal(ipcount_fail(&t, &b, 40000000, 900000), 1);
	ipcount_release(&t, &b);
	assert_int_equal(t.n, 1);
	ipcount_free(&t);
}

static void
test_backoff_key_is_ipv4_or_ipv6_64(void **state)
{
	struct ipkey a = key6("2001:db8:1:2:aaaa::1"), b = key6("2001:db8:1:2:bbbb::9");
	struct ipkey c = key6("2001:db8:1:3::1"), m = key6("::ffff:192.0.2.9"), v4 = key4("192.0.2.9");
	struct ipkey ka, kb, kc, km, kv;

	(void)state;
	ipkey_for_backoff(&a, &ka);
	ipkey_for_backoff(&b, &kb);
	ipkey_for_backoff(&c, &kc);
	ipkey_for_backoff(&m, &km);
	ipkey_for_backoff(&v4, &kv);
	assert_int_equal(ka.len, 8);
	assert_memory_equal(&ka, &kb, sizeof ka);           /* same /64: counted together */
	assert_memory_not_equal(&ka, &kc, sizeof ka);       /* next /64: apart */
	assert_memory_equal(&km, &kv, sizeof km);           /* mapped IPv4 is IPv4 */
}

static void
test_cidr_blocks(void **state)
{
	struct cidr v[2];
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	(void)state;
	memset(v, 0, sizeof v);
	v[0].family = AF_INET;
	inet_pton(AF_INET, "10.1.0.0", v[0].addr);
	v[0].prefix = 17;
	v[1].family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::", v[1].addr);
	v[1].prefix = 32;
	memset(&ss, 0, sizeof ss);
	s4->sin_family = AF_INET;
	inet_pton(AF_INET, "10.1.127.255", &s4->sin_addr);    /* last address inside /17 */
	assert_true(cidr_list_contains(v, 2, &ss));
	inet_pton(AF_INET, "10.1.128.0", &s4->sin_addr);      /* first one outside */
	assert_false(cidr_list_contains(v, 2, &ss));
	memset(&ss, 0, sizeof ss);
	s6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:ffff::1", &s6->sin6_addr);
	assert_true(cidr_list_contains(v, 2, &ss));
	inet_pton(AF_INET6, "2001:db9::1", &s6->sin6_addr);
	assert_false(cidr_list_contains(v, 2, &ss));
	inet_pton(AF_INET6, "::ffff:10.1.0.1", &s6->sin6_addr);   /* mapped: matched as IPv4 */
	assert_true(cidr_list_contains(v, 2, &ss));
	assert_false(cidr_list_contains(v, 0, &ss));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_exactly_and_one_over),
		cmocka_unit_test(test_backoff_doubles_to_the_cap),
		cmocka_unit_test(test_failures_counted_and_forgotten),
		cmocka_unit_test(test_backoff_key_is_ipv4_or_ipv6_64),
		cmocka_unit_test(test_cidr_blocks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
