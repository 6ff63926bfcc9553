"""RFC 1939 / RFC 2449 behaviour: greeting, CAPA, USER/PASS, APOP, states, argument checking."""
import hashlib
import re
import time
import unittest

from harness import (Closed, Daemon, Pop3TestCase, apop_timestamp, deliver, free_port, make_maildir,
                     parse_list)

GREETING = re.compile(rb"^\+OK .*<[^<>@\s]+@[^<>\s]+>$")
# SHA-512 crypt(3) of "pw" with a fixed salt: any crypt(3) string is a users-file secret
CRYPT_PW = ("$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D."
            "PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/")
CAPS_REQUIRED = (b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING")

# Three small messages for alice, enough for every numbering case.
SMALL = [b"Subject: one\n\nbody one\n", b"Subject: two\n\nbody two\n", b"Subject: three\n\n.dot\n"]


def small_maildir(d, user="alice"):
    md = d.maildir(user)
    for i, data in enumerate(SMALL):
        deliver(md, data, name="100%d.M1P1.small-%d" % (i, i), mtime=1700000000 + i)
    return md


class GreetingCapaTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon()

    def test_greeting_has_unique_apop_timestamp(self):
        stamps = set()
        for _ in range(3):
            c = self.connect(self.d)
            self.assertRegex(c.greeting, GREETING)
            stamps.add(apop_timestamp(c.greeting))
            c.quit()
        self.assertEqual(len(stamps), 3, stamps)

    def capa(self, c):
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st)
        lines = data.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        return lines[:-1]

    def check_caps(self, lines, user_expected):
        words = [l.split(b" ")[0].upper() for l in lines]
        for cap in CAPS_REQUIRED:
            self.assertIn(cap, words)
        self.assertIn(b"IMPLEMENTATION", words)
        self.assertEqual(b"USER" in words, user_expected, lines)
        self.assertEqual(len(words), len(set(words)), "a capability listed twice: %r" % lines)

    def test_capa_in_authorization_and_transaction(self):
        # RFC 2449 §5: capabilities of the AUTHORIZATION state (USER) are announced in both.
        make_maildir(self.d.maildir("alice"))
        c = self.connect(self.d)
        self.check_caps(self.capa(c), True)
        c.login("alice", self.d.password("alice"))
        self.check_caps(self.capa(c), True)
        c.quit()

    def test_keywords_are_case_insensitive(self):
        make_maildir(self.d.maildir("alice"))
        c = self.connect(self.d)
        self.assertOK(c.cmd_multi("cApA")[0])
        self.assertOK(c.cmd("user alice"))
        self.assertOK(c.cmd("PaSs " + self.d.password("alice")))
        for cmd in ("stat", "Stat", "noop", "rset"):
            self.assertOK(c.cmd(cmd), cmd)
        self.assertOK(c.cmd_multi("list")[0])
        self.assertOK(c.cmd_multi("uIdL")[0])
        self.assertOK(c.cmd("quit"))
        c.wait_closed()


def ipv6_loopback():
    try:
        free_port("::1")
        return True
    except OSError:
        return False


class Ipv6Test(Pop3TestCase):
    """listen takes IPv6 addresses: one entry on ::1 beside 127.0.0.1 on the same port."""

    def test_login_over_ipv6(self):
        if not ipv6_loopback():
            self.skipTest("host: this machine has no IPv6 loopback")
        d = Daemon()
        self.addCleanup(d.cleanup_dir)
        base = d.config_text

        def both():
            text = base()
            return text.replace('listen = ( { address = "127.0.0.1"; port = %d; } );' % d.port,
                                'listen = ( { address = "127.0.0.1"; port = %d; },\n'
                                '           { address = "::1"; port = %d; } );' % (d.port, d.port))
        d.config_text = both
        self.addCleanup(d.stop)
        d.start()
        self.assertIn("listening on [::1]:%d" % d.port, d.stderr())
        make_maildir(d.maildir("alice"))
        c = self.connect(d, host="::1")
        self.assertTrue(c.greeting.startswith(b"+OK"))
        c.login("alice", "alice-pw")
        self.assertOK(c.cmd("STAT"))
        c.quit()
        d.wait_session_end(1)
        self.assertIn("ip=::1 ", d.log_lines("session end")[0])
        c = self.connect(d)                  # and IPv4 on the same port
        c.login("alice", "alice-pw")
        c.quit()


class TlsOnlyTest(Pop3TestCase):

    def test_plaintext_tls_only_refuses_user_pass(self):
        d = self.daemon(plaintext="tls-only")
        make_maildir(d.maildir("alice"))
        c = self.connect(d)
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st)
        words = [l.split(b" ")[0].upper() for l in data.split(b"\r\n") if l]
        self.assertNotIn(b"USER", words)
        self.assertERR(c.cmd("USER alice"))
        self.assertERR(c.cmd("PASS " + d.password("alice")))
        self.assertERR(c.cmd("STAT"), "must not be logged in")
        c.quit()


class AuthTest(Pop3TestCase):

    def setUp(self):
        # No per-address backoff: these tests measure failure_delay alone (test_backoff has it).
        self.d = self.daemon(failure_delay=0.5, limits_extra="auth_backoff_base = 0;")
        for u in self.d.users:
            make_maildir(self.d.maildir(u))

    def timed_fail(self, c, user, password):
        st = c.cmd("USER " + user)
        self.assertOK(st, "USER must not reveal whether %s exists: %r" % (user, st))
        t0 = time.monotonic()
        st = c.cmd("PASS " + password)
        took = time.monotonic() - t0
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        self.assertGreaterEqual(took, 0.45, "failure_delay 0.5 s not applied")
        return st

    def test_login_ok(self):
        c = self.connect(self.d)
        c.login("alice", "alice-pw")
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0")
        c.quit()

    def test_login_with_domain(self):
        c = self.connect(self.d)
        c.login("bob@example.org", "bob-pw")
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_wrong_password_and_unknown_user_are_alike(self):
        c = self.connect(self.d)
        replies = {self.timed_fail(c, "alice", "wrong"),
                   self.timed_fail(c, "nosuchuser", "wrong"),
                   self.timed_fail(c, "alice", "alice-pw "),     # the trailing space counts
                   self.timed_fail(c, "ALICE", "alice-pw"),      # login names are exact
                   self.timed_fail(c, "../alice", "alice-pw")}   # a name no user can have
        self.assertEqual(len(replies), 1, "the reply must not tell which: %r" % replies)
        # still in AUTHORIZATION: a correct login works afterwards
        c.login("alice", "alice-pw")
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_pass_without_user(self):
        c = self.connect(self.d)
        self.assertERR(c.cmd("PASS alice-pw"))
        self.assertERR(c.cmd("STAT"))
        c.login("alice", "alice-pw")
        c.quit()

    def test_user_then_user_again(self):
        """A second USER either replaces the first (+OK) or is refused (-ERR); PASS then checks
        the name the server accepted last."""
        c = self.connect(self.d)
        self.assertOK(c.cmd("USER carol"))
        st = c.cmd("USER alice")
        if st.startswith(b"+OK"):
            self.assertOK(c.cmd("PASS alice-pw"))
        else:
            self.assertERR(st)
            self.assertOK(c.cmd("PASS carol-pw"))
        c.quit()

    def test_apop(self):
        c = self.connect(self.d)
        ts = apop_timestamp(c.greeting)
        self.assertIsNotNone(ts, c.greeting)
        digest = hashlib.md5(ts + b"alice-pw").hexdigest()
        self.assertOK(c.cmd("APOP alice " + digest))
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_apop_uppercase_digest(self):
        c = self.connect(self.d)
        digest = hashlib.md5(apop_timestamp(c.greeting) + b"carol-pw").hexdigest().upper()
        self.assertOK(c.cmd("APOP carol " + digest))
        c.quit()

    def test_apop_wrong_digest_or_other_timestamp(self):
        c1 = self.connect(self.d)
        c2 = self.connect(self.d)
        other = hashlib.md5(apop_timestamp(c2.greeting) + b"alice-pw").hexdigest()
        t0 = time.monotonic()
        st = c1.cmd("APOP alice " + other)   # a digest for another connection's timestamp
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertTrue(c1.cmd("APOP alice " + "0" * 32).startswith(b"-ERR"))
        self.assertTrue(c1.cmd("APOP alice nothex").startswith(b"-ERR"))
        self.assertTrue(c1.cmd("APOP alice").startswith(b"-ERR"))
        c1.quit()
        c2.quit()

    def test_apop_invalid_name_is_a_failed_login(self):
        """A name no user can have (a leading '.', a '/') fails like a wrong digest: -ERR [AUTH]
        after failure_delay and a "login failed" line, which fail2ban and the backoff read."""
        c = self.connect(self.d)
        digest = hashlib.md5(apop_timestamp(c.greeting) + b"alice-pw").hexdigest()
        for name in (".alice", "al/ice"):
            with self.subTest(name=name):
                n = self.d.count_log("login failed")
                t0 = time.monotonic()
                st = c.cmd("APOP %s %s" % (name, digest))
                self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
                self.assertGreaterEqual(time.monotonic() - t0, 0.45, "failure_delay not applied")
                line = self.d.wait_log("login failed", count=n + 1)
                self.assertIn("mechanism=APOP", line)
        self.assertOK(c.cmd("APOP alice " + digest))
        c.quit()

    def test_session_end_logged_without_password(self):
        c = self.connect(self.d)
        self.timed_fail(c, "alice", "Sup3rSecretWrong")
        c.login("alice", "alice-pw")
        c.quit()
        line = self.d.wait_session_end(1)
        self.assertIn("user=alice", line)
        self.assertIn("reason=", line)
        log = self.d.stderr()
        self.assertNotIn("Sup3rSecretWrong", log)
        self.assertNotIn("alice-pw", log)


class CryptUserTest(Pop3TestCase):

    def test_apop_refused_for_crypt_user(self):
        # alice has a {PLAIN} secret, so the greeting carries an APOP timestamp
        d = self.daemon(users={"eve": CRYPT_PW, "alice": "{PLAIN}alice-pw"}, failure_delay=0.1)
        make_maildir(d.maildir("eve"))
        c = self.connect(d)
        digest = hashlib.md5(apop_timestamp(c.greeting) + b"pw").hexdigest()
        self.assertTrue(c.cmd("APOP eve " + digest).startswith(b"-ERR"))
        c.login("eve", "pw")     # the crypt secret itself works with USER/PASS
        c.quit()


    def test_apop_with_only_crypt_users(self):
        """With no {PLAIN} user the server may leave the APOP timestamp out; APOP fails."""
        d = self.daemon(users={"eve": CRYPT_PW}, failure_delay=0.1)
        make_maildir(d.maildir("eve"))
        c = self.connect(d)
        self.assertOK(c.greeting)
        ts = apop_timestamp(c.greeting) or b"<none@x>"
        self.assertERR(c.cmd("APOP eve " + hashlib.md5(ts + b"pw").hexdigest()))
        c.login("eve", "pw")
        c.quit()


class StateTest(Pop3TestCase):
    """Every command in the wrong state, every bad argument: -ERR and the session goes on."""

    AUTH_STATE_REJECTS = ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0",
                          "UIDL", "UIDL 1", "PASS x", "XYZZY", "", "USER", "APOP alice"]
    TRANS_STATE_REJECTS = ["USER alice", "PASS alice-pw", "APOP alice 0123456789abcdef0123456789abcdef"]
    # Each -ERR names its reason; a bare "-ERR" or a wrong reason fails.
    AUTH_REASONS = {"PASS x": rb"send USER first", "XYZZY": rb"unknown command",
                    "": rb"unknown command", "USER": rb"USER needs 1 argument",
                    "APOP alice": rb"APOP needs 2 arguments"}
    TRANS_REASON = rb"is only valid before login"
    # n = 3 messages
    BAD_ARGS = ["LIST 0", "LIST 4", "LIST 4294967297", "LIST 4294967296", "LIST 18446744073709551617",
                "LIST -1", "LIST +1", "LIST 1x", "LIST x", "LIST 1 2", "LIST 0x1", "LIST 1.0",
                "RETR", "RETR 0", "RETR 4", "RETR 1 5", "RETR x", "RETR -1", "RETR 4294967297",
                "TOP 1", "TOP", "TOP 0 1", "TOP 4 1", "TOP 1 x", "TOP 1 -1", "TOP x 1", "TOP 1 1 1",
                "DELE", "DELE 0", "DELE 4", "DELE 4294967297", "DELE 1 1", "DELE x",
                "UIDL 0", "UIDL 4", "UIDL 4294967297", "UIDL x",
                "STAT 1", "NOOP x", "RSET x", "CAPA x", "XYZZY", "RETRX 1", ""]

    def setUp(self):
        self.d = self.daemon()
        small_maildir(self.d)
        self.ends = 0

    def fresh(self, login=True):
        c = self.connect(self.d)
        if login:
            c.login("alice", "alice-pw")
        return c

    def done(self, c):
        c.quit()
        self.ends += 1
        self.d.wait_session_end(self.ends)   # the lock is free again before the next login

    def test_wrong_state_in_authorization(self):
        # one connection per command: the bad-command limit is lower before authentication
        for cmd in self.AUTH_STATE_REJECTS:
            with self.subTest(cmd=cmd):
                c = self.fresh(login=False)
                st = c.cmd(cmd)
                self.assertERR(st, cmd)
                if cmd in self.AUTH_REASONS:
                    self.assertRegex(st, self.AUTH_REASONS[cmd])
                else:
                    self.assertRegex(st, rb"^-ERR %s is only valid after login$"
                                     % cmd.split()[0].encode())
                c.login("alice", "alice-pw")     # the session went on, still in AUTHORIZATION
                self.assertEqual(c.cmd("STAT"), b"+OK 3 %d" % sum(len(s) + s.count(b"\n") for s in SMALL))
                self.done(c)

    def test_wrong_state_in_transaction(self):
        for cmd in self.TRANS_STATE_REJECTS:
            with self.subTest(cmd=cmd):
                c = self.fresh()
                st = c.cmd(cmd)
                self.assertERR(st, cmd)
                self.assertRegex(st, rb"^-ERR %s %s" % (cmd.split()[0].encode(), self.TRANS_REASON))
                self.assertOK(c.cmd("NOOP"))
                self.done(c)

    @staticmethod
    def bad_arg_reason(cmd):
        """The reason a BAD_ARGS line must give (3 messages in the maildrop)."""
        words = cmd.split()
        need = {"RETR": 1, "DELE": 1, "TOP": 2}
        most = {"LIST": 1, "RETR": 1, "DELE": 1, "UIDL": 1, "TOP": 2}
        if not words or words[0] not in most and words[0] not in ("STAT", "NOOP", "RSET", "CAPA"):
            return rb"^-ERR unknown command$"
        name, args = words[0], words[1:]
        if name in ("STAT", "NOOP", "RSET", "CAPA"):
            return rb"^-ERR %s takes no argument$" % name.encode()
        if len(args) < need.get(name, 0):
            return rb"^-ERR %s needs %d argument" % (name.encode(), need[name])
        if len(args) > most[name]:
            return rb"^-ERR %s takes at most %d argument" % (name.encode(), most[name])
        if not re.fullmatch(r"[0-9]+", args[0]) or int(args[0]) > 0xFFFFFFFF:
            return rb"^-ERR invalid message number$"
        if name == "TOP" and not re.fullmatch(r"[0-9]+", args[1]):
            return rb"^-ERR invalid line count$"
        return rb"^-ERR no such message, only 3 in maildrop$"

    def test_bad_arguments(self):
        for cmd in self.BAD_ARGS:
            with self.subTest(cmd=cmd):
                c = self.fresh()
                st = c.cmd(cmd)
                self.assertERR(st, "%r -> %r" % (cmd, st))
                self.assertRegex(st, self.bad_arg_reason(cmd))
                self.assertOK(c.cmd("NOOP"))
                self.assertEqual(c.cmd("LIST 1"), b"+OK 1 %d" % (len(SMALL[0]) + SMALL[0].count(b"\n")))
                self.done(c)

    def test_deleted_message_is_gone_for_the_session(self):
        c = self.fresh()
        self.assertOK(c.cmd("DELE 2"))
        for cmd in ("DELE 2", "RETR 2", "LIST 2", "TOP 2 0", "UIDL 2"):
            self.assertERR(c.cmd(cmd), cmd)
        sizes = [len(s) + s.count(b"\n") for s in SMALL]
        self.assertEqual(c.cmd("STAT"), b"+OK 2 %d" % (sizes[0] + sizes[2]))
        st, data = c.cmd_multi("LIST")
        self.assertEqual(parse_list(data), [(1, str(sizes[0])), (3, str(sizes[2]))])
        st, data = c.cmd_multi("UIDL")
        self.assertEqual([n for n, _ in parse_list(data)], [1, 3])
        self.assertOK(c.cmd("RSET"))
        self.assertEqual(c.cmd("STAT"), b"+OK 3 %d" % sum(sizes))
        self.assertOK(c.cmd("LIST 2"))
        self.done(c)

    def test_max_u32(self):
        c = self.fresh()
        # a number that parses but is beyond the count is still -ERR
        self.assertERR(c.cmd("LIST 4294967295"))
        self.assertERR(c.cmd("RETR 4294967295"))
        # the largest line count for TOP means "the whole message"
        st, data = c.cmd_multi("TOP 1 4294967295")
        self.assertOK(st)
        self.assertEqual(data, SMALL[0].replace(b"\n", b"\r\n"))
        self.done(c)

    def test_top_zero_lines_of_each(self):
        c = self.fresh()
        for i in range(1, 4):
            st, data = c.cmd_multi("TOP %d 0" % i)
            self.assertOK(st)
            self.assertEqual(data, SMALL[i - 1].split(b"\n\n")[0].replace(b"\n", b"\r\n") + b"\r\n\r\n")
        self.done(c)

    def test_quit_in_authorization(self):
        c = self.fresh(login=False)
        c.quit()
        line = self.d.wait_session_end(1)
        self.assertIn("reason=", line)


class BadCommandLimitTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon()
        make_maildir(self.d.maildir("alice"))

    def count_until_closed(self, c, cmd, limit):
        """Send cmd one at a time; return how many -ERR came before the server closed."""
        errs = 0
        for _ in range(limit):
            try:
                c.send(cmd + b"\r\n")
                st = c.line()
            except (Closed, ConnectionError):   # closed, reset or broken pipe
                return errs
            self.assertERR(st)
            errs += 1
        self.fail("still open after %d bad commands" % limit)

    def test_too_many_bad_commands_before_auth(self):
        c = self.connect(self.d)
        n = self.count_until_closed(c, b"XYZZY", 30)
        self.assertGreaterEqual(n, 3)
        self.assertLessEqual(n, 25)
        self.d.wait_session_end(1)
        self.connect(self.d).quit()   # the daemon is fine

    def test_too_many_bad_commands_in_transaction(self):
        c = self.connect(self.d)
        c.login("alice", "alice-pw")
        n = self.count_until_closed(c, b"RETR 999", 40)
        self.assertGreaterEqual(n, 3)
        self.assertLessEqual(n, 30)
        self.d.wait_session_end(1)


if __name__ == "__main__":
    unittest.main()
