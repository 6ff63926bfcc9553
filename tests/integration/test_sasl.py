"""AUTH (RFC 5034): PLAIN (RFC 4616), LOGIN and SCRAM-SHA-256 (RFC 7677, RFC 5802, with a client
written here from the RFC), cancel, bad input, failure delay, the bad-command limit, UTF8
(RFC 6856) names, and mpop authenticating with SCRAM-SHA-256 and PLAIN over TLS.

One daemon (tlsutil.TlsDaemon) for the module's class: a STLS listener, an implicit-TLS listener
(most tests talk over it, since PLAIN and LOGIN need TLS) and a clear-text "none" listener, with
auth.plaintext = "tls-only" and auth.failure_delay = 0.2 s.
"""
import base64
import hashlib
import hmac
import os
import re
import time
import unittest

from harness import Closed, deliver
from tlsutil import (TlsCaseBase, ToolMixin, capa_names, crypt_secret, lf_form, maildir_files,
                     mpop_supports, mpop_version, sasl_mechs, scram_secret, test_certs,
                     write_mpoprc)

DELAY = 0.2
JORG = "j\u00f6rg@example.org"        # a UTF-8 login name
JORG_PW = "p\u00e4ss-\u00fc"
# Users whose name or password is Latin-1 (invalid UTF-8): legal as bytes before UTF8, refused
# after it. They exist, so a refusal after UTF8 is the UTF-8 rule and not an unknown user.
LATIN_NAME = b"j\xf6rg"
LATIN_NAME_PW = "joerg-pw"
LATIN_PW_USER = "lena"
LATIN_PW = b"p\xe4ss"


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain(user, password, authzid=""):
    return b64(authzid.encode() + b"\0" + user.encode() + b"\0" + password.encode())


class Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802 §3, §5, §7; RFC 7677)."""

    def __init__(self, user, password, cnonce=None):
        self.user = user
        self.password = password.encode()
        self.cnonce = cnonce or base64.b64encode(os.urandom(18)).decode()
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.gs2 = "n,,"
        self.bare = "n=%s,r=%s" % (name, self.cnonce)

    def first(self):
        return b64(self.gs2 + self.bare)

    def final(self, server_first):
        """client-final for the decoded server-first message; keeps what verify() needs."""
        self.server_first = server_first
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.cnonce) or len(nonce) == len(self.cnonce):
            raise AssertionError("server nonce %r does not extend ours %r" % (nonce, self.cnonce))
        self.iterations = iters
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=%s,r=%s" % (b64(self.gs2), nonce)
        self.auth_message = ",".join((self.bare, server_first, without_proof)).encode()
        signature = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, self.auth_message, hashlib.sha256).digest()
        return b64(without_proof + ",p=" + base64.b64encode(proof).decode())

    def verify(self, server_final):
        return server_final == "v=" + base64.b64encode(self.server_signature).decode()


def users():
    return {"alice": "{PLAIN}alice-pw", "sam": scram_secret("sam-pw"),
            "cathy": crypt_secret("cathy-pw"), "dave": "{PLAIN}dave-pw"}


def users_bytes(u):
    lines = ["%s:%s" % kv for kv in u.items()] + ["%s:{PLAIN}%s" % (JORG, JORG_PW)]
    return (("\n".join(lines) + "\n").encode("utf-8") +
            LATIN_NAME + b":{PLAIN}" + LATIN_NAME_PW.encode() + b"\n" +
            LATIN_PW_USER.encode() + b":{PLAIN}" + LATIN_PW + b"\n")


def apop_line(name, greeting, password):
    """APOP name digest for this greeting's timestamp; name and password as bytes."""
    stamp = re.search(rb"<[^<>]*>", greeting).group(0)
    return b"APOP " + name + b" " + hashlib.md5(stamp + password).hexdigest().encode()


class SaslTest(ToolMixin, TlsCaseBase):

    @classmethod
    def setUpClass(cls):
        u = users()
        cls.DAEMON = {"plain_listener": True, "failure_delay": DELAY, "users": u,
                      "users_bytes": users_bytes(u)}
        super().setUpClass()
        cls.msg = b"Subject: hello\n\nfor you\n"
        for name in ("alice", "sam", "cathy", JORG, os.fsdecode(LATIN_NAME), LATIN_PW_USER):
            deliver(cls.d.maildir(name), cls.msg)

    # -- helpers

    def challenge(self, c, st):
        """The decoded text of a "+ base64" continuation line."""
        self.assertTrue(st.startswith(b"+ ") or st == b"+", "not a continuation: %r" % st)
        return base64.b64decode(st[2:], validate=True).decode()

    def logged_in(self, c, st=None):
        if st is not None:
            self.assertOK(st)
        self.assertTrue(c.cmd("STAT").startswith(b"+OK 1 "), "not logged in")
        c.quit()

    def assertAuthFails(self, c, line, delay=True):
        """Send the line that ends a failed exchange: -ERR [AUTH], not before failure_delay."""
        t0 = time.monotonic()
        st = c.cmd(line)
        took = time.monotonic() - t0
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        if delay:
            self.assertGreaterEqual(took, DELAY - 0.02, "no failure_delay before %r" % st)
        return st

    def still_authorization(self, c):
        """The session goes on in AUTHORIZATION: STAT refused, then USER/PASS logs in."""
        self.assertERR(c.cmd("STAT"))
        c.login("alice", "alice-pw")
        self.logged_in(c)

    def scram(self, c, user, password, ir=True):
        """Run SCRAM up to the server's reply to client-final; returns (client, that reply)."""
        s = Scram(user, password)
        if ir:
            st = c.cmd("AUTH SCRAM-SHA-256 " + s.first())
        else:
            self.assertEqual(c.cmd("AUTH SCRAM-SHA-256"), b"+ ")
            st = c.cmd(s.first())
        server_first = self.challenge(c, st)
        return s, s.final(server_first)

    # -- PLAIN

    def test_plain_initial_response(self):
        c = self.tls()
        self.logged_in(c, c.cmd("AUTH PLAIN " + plain("alice", "alice-pw")))

    def test_plain_mechanism_name_case_insensitive_and_authzid_self(self):
        c = self.tls()
        self.logged_in(c, c.cmd("AUTH plain " + plain("alice", "alice-pw", authzid="alice")))

    def test_plain_without_initial_response(self):
        c = self.tls()
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")      # an empty challenge: "+" and a space
        self.logged_in(c, c.cmd(plain("alice", "alice-pw")))

    def test_plain_crypt_user(self):
        c = self.tls()
        self.logged_in(c, c.cmd("AUTH PLAIN " + plain("cathy", "cathy-pw")))

    def test_plain_empty_initial_response_fails(self):
        """RFC 5034 §4: "=" is an initial response of zero octets, not a missing one. For PLAIN
        (and LOGIN's user name) that is an empty credential: -ERR [AUTH] after the delay, with
        no "+ " continuation. Pipelined with a good PLAIN response and STAT: a server that took
        "=" for no initial response would answer "+ " and log in with the next line."""
        c = self.tls()
        self.assertAuthFails(c, "AUTH PLAIN =")
        self.still_authorization(c)
        c = self.tls()
        c.send(("AUTH PLAIN =\r\n%s\r\nSTAT\r\n" % plain("alice", "alice-pw")).encode())
        st = c.line()
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        self.assertERR(c.line(), "the line after AUTH PLAIN = was taken as its response")
        self.assertERR(c.line(), "logged in")
        self.assertAuthFails(c, "AUTH LOGIN =")        # not "+ VXNlcm5hbWU6" (Username:)
        self.still_authorization(c)

    def test_plain_other_authzid_fails(self):
        c = self.tls()
        self.assertAuthFails(c, "AUTH PLAIN " + plain("alice", "alice-pw", authzid="dave"))
        self.still_authorization(c)

    # -- LOGIN

    def test_login_two_steps(self):
        c = self.tls()
        self.assertEqual(self.challenge(c, c.cmd("AUTH LOGIN")), "Username:")
        self.assertEqual(self.challenge(c, c.cmd(b64("alice"))), "Password:")
        self.logged_in(c, c.cmd(b64("alice-pw")))

    def test_login_user_as_initial_response(self):
        c = self.tls()
        self.assertEqual(self.challenge(c, c.cmd("AUTH LOGIN " + b64("cathy"))), "Password:")
        self.logged_in(c, c.cmd(b64("cathy-pw")))

    # -- SCRAM-SHA-256

    def scram_ok(self, c, user, password, ir=True):
        s, final = self.scram(c, user, password, ir)
        st = c.cmd(final)
        server_final = self.challenge(c, st)
        self.assertTrue(s.verify(server_final), "wrong server signature %r" % server_final)
        self.assertGreaterEqual(s.iterations, 4096)   # RFC 7677 §4: at least 4096
        self.logged_in(c, c.cmd(""))                  # RFC 5034 §4: an empty response ends it

    def test_scram_scram_user(self):
        self.scram_ok(self.tls(), "sam", "sam-pw")

    def test_scram_scram_user_without_initial_response(self):
        self.scram_ok(self.tls(), "sam", "sam-pw", ir=False)

    def test_scram_plain_user(self):
        self.scram_ok(self.tls(), "alice", "alice-pw")

    def test_scram_utf8_user(self):
        self.scram_ok(self.tls(), JORG, JORG_PW)

    def test_scram_allowed_in_clear_text_plain_refused(self):
        """SCRAM never sends the password: allowed on the "none" listener, where CAPA offers
        only it and PLAIN/LOGIN get -ERR [AUTH]."""
        c = self.plain(self.d.plain_port)
        st, data = c.cmd_multi("CAPA")
        self.assertEqual(sasl_mechs(data), [b"SCRAM-SHA-256"])
        self.assertNotIn(b"USER", capa_names(data))
        self.assertNotIn(b"STLS", capa_names(data))
        self.assertTrue(c.cmd("AUTH PLAIN " + plain("alice", "alice-pw")).startswith(b"-ERR [AUTH]"))
        self.assertTrue(c.cmd("AUTH LOGIN").startswith(b"-ERR [AUTH]"))
        self.scram_ok(c, "sam", "sam-pw")

    def test_scram_wrong_password(self):
        c = self.tls()
        _s, final = self.scram(c, "sam", "not-sam-pw")
        self.assertAuthFails(c, final)
        self.still_authorization(c)

    def test_scram_unknown_user_and_crypt_user_fail_alike(self):
        """An unknown name and a user with only a crypt hash (no SCRAM keys can be derived) get
        a normal-looking server-first and fail at the proof."""
        c = self.tls()
        for user, pw in (("nosuchuser", "x"), ("cathy", "cathy-pw")):
            with self.subTest(user=user):
                _s, final = self.scram(c, user, pw)
                self.assertAuthFails(c, final)
        self.still_authorization(c)

    def test_scram_tampered_final_fails(self):
        """client-final with another channel-binding header or nonce: refused."""
        c = self.tls()
        s, final = self.scram(c, "sam", "sam-pw")
        raw = base64.b64decode(final).decode().replace("r=" + s.cnonce, "r=X" + s.cnonce[1:], 1)
        self.assertAuthFails(c, b64(raw))
        self.still_authorization(c)

    # -- failures, cancel, bad input

    def test_wrong_password_plain_and_login(self):
        c = self.tls()
        self.assertAuthFails(c, "AUTH PLAIN " + plain("alice", "wrong"))
        self.assertAuthFails(c, "AUTH PLAIN " + plain("nosuchuser", "wrong"))
        self.assertEqual(self.challenge(c, c.cmd("AUTH LOGIN")), "Username:")
        self.assertEqual(self.challenge(c, c.cmd(b64("alice"))), "Password:")
        self.assertAuthFails(c, b64("wrong"))
        self.still_authorization(c)

    def test_cancel(self):
        c = self.tls()
        steps = {
            "PLAIN": ["AUTH PLAIN"],
            "LOGIN": ["AUTH LOGIN", b64("alice")],
            "SCRAM-SHA-256": ["AUTH SCRAM-SHA-256 " + Scram("sam", "sam-pw").first()],
        }
        for mech, lines in steps.items():
            with self.subTest(mech=mech):
                for line in lines:
                    self.assertTrue(c.cmd(line).startswith(b"+"), line)
                t0 = time.monotonic()
                st = c.cmd("*")
                self.assertTrue(st.startswith(b"-ERR"), st)
                self.assertLess(time.monotonic() - t0, DELAY + 2.0)   # not stuck; CI is noisy
        self.still_authorization(c)

    def test_bad_base64(self):
        c = self.tls()
        self.assertERR(c.cmd("AUTH PLAIN !!not-base64!!"))
        self.assertERR(c.cmd("AUTH PLAIN " + plain("alice", "alice-pw")[:-2]))   # cut short
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertERR(c.cmd("%%%%"))
        self.assertEqual(self.challenge(c, c.cmd("AUTH LOGIN")), "Username:")
        self.assertERR(c.cmd("YWxp Y2U="))                                    # a space inside
        self.still_authorization(c)

    def test_unknown_mechanism(self):
        c = self.tls()
        for mech in ("CRAM-MD5", "X-NOPE", "SCRAM-SHA-1", "PLAIN-X"):
            with self.subTest(mech=mech):
                st = c.cmd("AUTH " + mech)
                self.assertERR(st)
                self.assertFalse(st.startswith(b"+"))
        self.still_authorization(c)

    def test_bare_auth_lists_mechanisms_like_capa(self):
        c = self.tls()
        st, listing = c.cmd_multi("AUTH")
        self.assertOK(st)
        mechs = [l.upper() for l in listing.split(b"\r\n") if l]
        self.assertEqual(sorted(mechs), [b"LOGIN", b"PLAIN", b"SCRAM-SHA-256"])
        st, data = c.cmd_multi("CAPA")
        self.assertEqual(sorted(sasl_mechs(data)), sorted(mechs))
        self.still_authorization(c)

    def test_failed_authentications_count_as_bad_commands(self):
        """BAD_CMDS_AUTH is 10: nine failures leave the session open (CAPA still answers), the
        tenth closes it. Every kind of failure counts: USER/PASS, PLAIN, LOGIN, SCRAM, cancel."""
        c = self.tls()
        failures = [
            lambda: self.assertAuthFails(c, "AUTH PLAIN " + plain("alice", "bad")),
            lambda: (self.assertOK(c.cmd("USER alice")), self.assertAuthFails(c, "PASS bad")),
            lambda: (c.cmd("AUTH LOGIN"), c.cmd(b64("alice")), self.assertAuthFails(c, b64("x"))),
            lambda: self.assertAuthFails(c, self.scram(c, "sam", "bad")[1]),
            lambda: self.assertTrue(c.cmd("AUTH PLAIN") == b"+ " and
                                    c.cmd("*").startswith(b"-ERR")),
            lambda: self.assertAuthFails(c, "AUTH PLAIN ="),
        ]
        for i in range(9):
            failures[i % len(failures)]()
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st, "closed before the tenth failure")
        st = c.cmd("AUTH PLAIN " + plain("alice", "bad"))
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        try:
            rest = c.wait_closed()
        except Closed:
            rest = b""
        self.assertIn(b"-ERR", rest, "no -ERR before closing (too many bad commands)")

    def test_pipelined_auth(self):
        """AUTH with its continuation and a command behind it in one write: answered in order,
        the command after the login has completed."""
        c = self.tls()
        c.send(("AUTH PLAIN\r\n%s\r\nSTAT\r\n" % plain("alice", "alice-pw")).encode())
        self.assertEqual(c.line(), b"+ ")
        self.assertOK(c.line())
        self.assertTrue(c.line().startswith(b"+OK 1 "))
        c.quit()
        c = self.tls()
        c.send(("AUTH PLAIN %s\r\nCAPA\r\nAUTH PLAIN %s\r\nSTAT\r\n"
                % (plain("alice", "bad"), plain("alice", "alice-pw"))).encode())
        self.assertTrue(c.line().startswith(b"-ERR [AUTH]"))
        self.assertOK(c.line())
        c.multi()
        self.assertOK(c.line())
        self.assertTrue(c.line().startswith(b"+OK 1 "))
        c.quit()

    def test_overlong_sasl_line(self):
        """SASL_LINE_MAX is 4096: a longer response is refused with one -ERR, and nothing of it
        (here a "USER alice" at its end) is read as a command."""
        c = self.tls()
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        c.send(b"QUFB" * 1025 + b"USER alice\r\nCAPA\r\n")
        st = c.line()
        self.assertTrue(st.startswith(b"-ERR"), st)
        self.assertTrue(c.line().startswith(b"+OK capability"), "the tail of the line was run")
        c.multi()
        self.assertERR(c.cmd("PASS alice-pw"), "USER from inside the overlong line was taken")
        self.still_authorization(c)

    def test_user_pass_for_scram_user(self):
        """A {SCRAM-SHA-256} secret also checks a password sent with USER/PASS (over TLS)."""
        c = self.tls()
        c.login("sam", "sam-pw")
        self.logged_in(c)
        c = self.tls()
        self.assertOK(c.cmd("USER sam"))
        self.assertAuthFails(c, "PASS sam-pw-not")
        self.still_authorization(c)

    def test_auth_after_login_refused(self):
        c = self.tls()
        self.assertOK(c.cmd("AUTH PLAIN " + plain("alice", "alice-pw")))
        self.assertERR(c.cmd("AUTH PLAIN " + plain("sam", "sam-pw")))
        self.assertERR(c.cmd("AUTH"))
        self.logged_in(c)

    # -- UTF8

    def test_utf8_user_name_user_pass(self):
        c = self.tls()
        self.assertIn(b"UTF8", capa_names(c.cmd_multi("CAPA")[1]))
        self.assertOK(c.cmd("UTF8"))
        self.assertOK(c.cmd(b"USER " + JORG.encode()))
        self.logged_in(c, c.cmd(b"PASS " + JORG_PW.encode()))

    def test_utf8_plain(self):
        c = self.tls()
        self.assertOK(c.cmd("UTF8"))
        self.logged_in(c, c.cmd("AUTH PLAIN " + plain(JORG, JORG_PW)))

    def test_latin1_credentials_without_utf8_log_in(self):
        """The control for test_utf8_invalid_refused: before UTF8 the Latin-1 name and password
        are bytes like any other, and each way in works."""
        c = self.tls()
        self.logged_in(c, c.cmd(apop_line(LATIN_NAME, c.greeting, LATIN_NAME_PW.encode())))
        c = self.tls()
        self.assertOK(c.cmd("USER " + LATIN_PW_USER))
        self.logged_in(c, c.cmd(b"PASS " + LATIN_PW))
        c = self.tls()
        self.logged_in(c, c.cmd("AUTH PLAIN " + b64(b"\0" + LATIN_PW_USER.encode() + b"\0" +
                                                    LATIN_PW)))
        c = self.tls()
        self.assertEqual(self.challenge(c, c.cmd("AUTH LOGIN " + b64(LATIN_PW_USER))), "Password:")
        self.logged_in(c, c.cmd(b64(LATIN_PW)))

    def test_utf8_invalid_refused(self):
        """After UTF8 (RFC 6856 §2) every name and password must be UTF-8: USER, PASS, the APOP
        name, the PLAIN authcid/authzid and password, the LOGIN user and password. Each refused
        login is a failed login: -ERR [AUTH] after failure_delay, and a "login failed" line."""
        c = self.tls()
        self.assertOK(c.cmd("UTF8"))
        for bad in (b"j\xf6rg@example.org",          # Latin-1
                    b"j\xc3\x28rg",                   # broken sequence
                    b"\xc0\xafetc",                   # overlong
                    b"\xed\xa0\x80x"):                # surrogate
            with self.subTest(name=bad):
                # answered like an unknown name; its PASS fails like a wrong password
                self.assertOK(c.cmd(b"USER " + bad))
                self.assertAuthFails(c, "PASS anything")
        c = self.tls()       # a fresh count of bad commands (BAD_CMDS_AUTH is 10)
        self.assertOK(c.cmd("UTF8"))
        failed0 = self.d.count_log("login failed")
        attempts = [
            ("USER", lambda: (self.assertOK(c.cmd("USER " + LATIN_PW_USER)),
                              self.assertAuthFails(c, b"PASS " + LATIN_PW))),
            ("APOP", lambda: self.assertAuthFails(
                c, apop_line(LATIN_NAME, c.greeting, LATIN_NAME_PW.encode()))),
            ("PLAIN", lambda: self.assertAuthFails(
                c, "AUTH PLAIN " + b64(b"\0" + LATIN_PW_USER.encode() + b"\0" + LATIN_PW))),
            ("PLAIN", lambda: self.assertAuthFails(
                c, "AUTH PLAIN " + b64(LATIN_NAME + b"\0" + LATIN_NAME + b"\0x"))),
            ("LOGIN", lambda: (
                self.assertEqual(self.challenge(c, c.cmd("AUTH LOGIN " + b64(LATIN_PW_USER))),
                                 "Password:"),
                self.assertAuthFails(c, b64(LATIN_PW)))),
            ("LOGIN", lambda: self.assertAuthFails(c, "AUTH LOGIN " + b64(LATIN_NAME))),
        ]
        for mech, attempt in attempts:
            with self.subTest(mechanism=mech):
                attempt()
        lines = self.d.log_lines("login failed")[failed0:]
        self.assertEqual([l.split("mechanism=")[1].split(" ")[0] for l in lines],
                         [mech for mech, _ in attempts], lines)
        self.assertOK(c.cmd(b"USER " + JORG.encode()))
        self.logged_in(c, c.cmd(b"PASS " + JORG_PW.encode()))

    def test_8bit_name_without_utf8_compared_as_bytes(self):
        c = self.tls()
        self.assertOK(c.cmd(b"USER " + JORG.encode()))
        self.logged_in(c, c.cmd(b"PASS " + JORG_PW.encode()))

    # -- the log

    def test_log_names_mechanism_never_secrets(self):
        """README: one "login" or "login failed" line per attempt with the mechanism; never a
        password or a SASL payload."""
        ok_before = len([l for l in self.d.log_lines(": login id=")])
        c = self.tls()
        secret_b64 = plain("dave", "Wr0ngSecret")
        self.assertAuthFails(c, "AUTH PLAIN " + secret_b64)
        self.assertOK(c.cmd("AUTH PLAIN " + plain("dave", "dave-pw")))
        c.quit()
        failed = self.d.log_lines("login failed")[-1]
        self.assertIn("user=dave", failed)
        self.assertIn("mechanism=PLAIN", failed)
        self.d.wait_log(": login id=", count=ok_before + 1)
        ok = self.d.log_lines(": login id=")[ok_before]
        self.assertIn("user=dave", ok)
        log = self.d.stderr()
        for secret in ("Wr0ngSecret", "dave-pw", secret_b64, plain("dave", "dave-pw")):
            self.assertNotIn(secret, log)
        self.assertIn("mechanism=PLAIN", ok, "the successful login line names no mechanism")

    # -- mpop

    def mpop(self, user, password, port, starttls, auth):
        home = self.make_home()
        rc, dest = write_mpoprc(home, self.d, user, password, port, starttls, auth,
                                trust_file=test_certs().files("default", self.d.dir)[0])
        self.run_ok(["mpop", "--file=" + rc, "--quiet"], home)
        self.tools_done()
        # mpop stores LF line ends and, with received_header off, adds nothing
        self.assertSameMessages(maildir_files(dest), {"hello": lf_form(self.msg)}, "mpop")

    def test_mpop_scram_sha_256_over_tls(self):
        if not mpop_supports("scram-sha-256"):
            self.skipTest("this mpop build does not list scram-sha-256 among its methods:\n"
                          + mpop_version())
        self.mpop("sam", "sam-pw", self.d.tls_port, starttls=False, auth="scram-sha-256")
        self.mpop("alice", "alice-pw", self.d.port, starttls=True, auth="scram-sha-256")

    def test_mpop_plain_over_tls(self):
        self.mpop("alice", "alice-pw", self.d.port, starttls=True, auth="plain")
        self.mpop("cathy", "cathy-pw", self.d.tls_port, starttls=False, auth="plain")


if __name__ == "__main__":
    unittest.main()
