"""TLS: STLS (RFC 2595) and implicit TLS (RFC 8314) against the real pop3d, with raw clients,
openssl s_client, curl, poplib, fetchmail, mpop and getmail; STLS injection, versions, SNI,
handshake timeouts and garbage, and a client that stops reading mid-RETR.

Every daemon here has a STLS listener (d.port) and an implicit-TLS listener (d.tls_port), with
auth.plaintext = "tls-only" (tlsutil.TlsDaemon). Each test waits for the end of every session it
opened before it returns, so the next test of the class starts on a quiet daemon.
"""
import fcntl
import hashlib
import os
import poplib
import re
import select
import socket
import ssl
import struct
import subprocess
import tempfile
import termios
import time
import unittest

from harness import (MDA, IO_TIMEOUT, child_env, deliver, expected_retr, free_port,
                     getmail_dirs, getmail_rc, parse_list, pop3_size, pop3d_path)
from tlsutil import (TOOL_TIMEOUT, TlsCaseBase, TlsClient, TlsDaemon, ToolMixin, capa_names,
                     capa_words, client_context, fetchmail_form, files_in, free_port_v6,
                     getmail_form, lf_form, maildir_files, message_id, sasl_mechs, scram_secret,
                     test_certs, vm_rss_kb, wait_stable, write_mpoprc)

SAM_SECRET = []      # {SCRAM-SHA-256} secret of "sam" (password "sam-pw"), made once


def users():
    if not SAM_SECRET:
        SAM_SECRET.append(scram_secret("sam-pw"))
    return {"alice": "{PLAIN}alice-pw", "sam": SAM_SECRET[0], "big": "{PLAIN}big-pw"}


class TlsCase(TlsCaseBase):
    USERS = staticmethod(users)


def client_hello():
    """The first flight of a TLS client (a ClientHello record) as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(None).wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def bio_handshake(sock, ctx, hostname, first_flight_per_octet=False, timeout=IO_TIMEOUT):
    """A client handshake over sock through memory BIOs, so the test decides how the octets
    are written. Returns the SSLObject (its BIOs as .incoming, .outgoing)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=hostname)
    obj.incoming, obj.outgoing = incoming, outgoing
    deadline = time.monotonic() + timeout
    first = True
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = outgoing.read()
        if data and first and first_flight_per_octet:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
        elif data:
            sock.sendall(data)
        first = False
        if done:
            return obj
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("handshake did not finish within %ss" % timeout)
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("server closed during the handshake")
        incoming.write(chunk)


def bio_read_line(sock, obj, timeout=IO_TIMEOUT):
    """One CRLF-terminated line of plaintext from an SSLObject made by bio_handshake."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n" not in buf:
        try:
            buf += obj.read(4096)
            continue
        except ssl.SSLWantReadError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no line within %ss: %r" % (timeout, buf))
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("closed; got %r" % buf)
        obj.incoming.write(chunk)
    return buf.split(b"\r\n", 1)[0]


def assert_version_alert(case, handshake):
    """handshake() must fail with the server's protocol_version alert, which Python reports as
    "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version". A server that closes
    without sending it gives an EOF or a reset instead."""
    with case.assertRaises(ssl.SSLError) as cm:
        handshake()
    case.assertIn("alert protocol version", str(cm.exception))


def fionread(sock):
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


# ====================================================================== real clients

class ClientsTest(ToolMixin, TlsCase):
    CORPUS_FOR = ("alice",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.corpus = cls.d.corpora["alice"]
        cls.cert = os.path.join(cls.d.dir, "cert.pem")

    def by_number(self, uidl_listing):
        """{message number: CorpusMessage} from a UIDL listing."""
        out = {}
        for n, u in parse_list(uidl_listing):
            out[n] = self.corpus.by_uidl[u]
        self.assertEqual(len(out), len(self.corpus.listed))
        return out

    # -- openssl s_client

    def s_client(self, port, *extra):
        """CAPA and QUIT through openssl s_client (verifying the certificate and the name);
        returns CAPA's capability names."""
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-crlf", "-ign_eof", "-brief", "-CAfile", self.cert,
                            "-verify_return_error", "-verify_hostname", "localhost"]
                           + list(extra), input=b"CAPA\nQUIT\n", capture_output=True,
                           timeout=TOOL_TIMEOUT)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 0, "s_client failed\n%s\n%s" % (out, err))
        self.assertIn("Verification: OK", err)
        self.tools_done()
        # what followed the handshake: CAPA's reply, then QUIT's
        lines = out.replace("\r\n", "\n").split("\n")
        i = lines.index("+OK capability list follows") if "+OK capability list follows" in \
            lines else self.fail("no CAPA reply in s_client output:\n%s\n%s" % (out, err))
        j = lines.index(".", i)
        caps = [l.split(" ")[0].upper() for l in lines[i + 1:j]]
        self.assertTrue(lines[j + 1].startswith("+OK"), "QUIT: %r" % lines[j + 1:])
        return caps

    def test_s_client_stls_capa_lists_user_not_stls(self):
        caps = self.s_client(self.d.port, "-starttls", "pop3")
        self.assertIn("USER", caps)
        self.assertNotIn("STLS", caps)

    def test_s_client_implicit_capa_lists_user_not_stls(self):
        caps = self.s_client(self.d.tls_port)
        self.assertIn("USER", caps)
        self.assertNotIn("STLS", caps)

    # -- curl

    def curl(self, *args):
        r = self.run_ok(["curl", "-sS", "--max-time", "60", "-u", "alice:alice-pw"] + list(args),
                        self.make_home())
        return r.stdout

    def curl_retr_all(self, base, *opts):
        """RETR every message with one curl run (curl reuses the connection), compare each."""
        numbers = self.by_number(self.curl(*opts, "-X", "UIDL", base))
        out = tempfile.mkdtemp(prefix="curl-", dir=self.d.dir)
        args = list(opts)
        for n in numbers:
            args += [base + str(n), "-o", os.path.join(out, "%d" % n)]
        self.curl(*args)
        for n, m in numbers.items():
            with self.subTest(msg=m.why):
                with open(os.path.join(out, "%d" % n), "rb") as f:
                    got = f.read()
                # curl removes dot-stuffing and the terminator and keeps the CRLF before it; for
                # the empty message that CRLF ends the status line, so curl yields "\r\n"
                # (curl's quirk, as in test_clients).
                self.assertEqual(got, expected_retr(m.data) or b"\r\n")
        self.tools_done()

    def test_curl_pop3s_cacert_retr_all(self):
        self.curl_retr_all("pop3s://127.0.0.1:%d/" % self.d.tls_port, "--cacert", self.cert)

    def test_curl_starttls_ssl_reqd_retr_all(self):
        self.curl_retr_all("pop3://127.0.0.1:%d/" % self.d.port, "--ssl-reqd", "--cacert",
                           self.cert)

    def test_curl_pop3s_insecure(self):
        base = "pop3s://127.0.0.1:%d/" % self.d.tls_port
        numbers = self.by_number(self.curl("-k", "-X", "UIDL", base))
        n = [k for k, m in numbers.items() if m.why == "attachment-350k"][0]
        self.assertEqual(self.curl("-k", base + str(n)), expected_retr(numbers[n].data))
        self.tools_done()

    # -- poplib

    def poplib_download(self, p):
        self.addCleanup(setattr, poplib, "_MAXLINE", poplib._MAXLINE)
        poplib._MAXLINE = 1 << 20      # the corpus has a 10,000-octet line
        caps = p.capa()
        self.assertIn("USER", caps)
        self.assertNotIn("STLS", caps)
        p.user("alice")
        p.pass_("alice-pw")
        count, total = p.stat()
        self.assertEqual((count, total), (len(self.corpus.listed), self.corpus.total()))
        numbers = {}
        for item in p.uidl()[1]:
            n, u = item.split(b" ")
            numbers[int(n)] = self.corpus.by_uidl[u.decode()]
        for n, m in numbers.items():
            with self.subTest(msg=m.why):
                resp, lines, _octets = p.retr(n)
                self.assertTrue(resp.startswith(b"+OK"), resp)
                # poplib strips one CRLF per line: join with CRLF again
                self.assertEqual(b"".join(l + b"\r\n" for l in lines), expected_retr(m.data))
        self.assertTrue(p.quit().startswith(b"+OK"))

    def test_poplib_pop3_ssl_corpus(self):
        ctx = client_context(self.cert)
        p = poplib.POP3_SSL("localhost", self.d.tls_port, context=ctx, timeout=30)
        try:
            self.poplib_download(p)
        finally:
            p.close()
        self.tools_done()

    def test_poplib_stls_corpus(self):
        p = poplib.POP3("127.0.0.1", self.d.port, timeout=30)
        try:
            self.assertIn("STLS", p.capa())
            self.assertTrue(p.stls(context=client_context(self.cert, check_hostname=False))
                            .startswith(b"+OK"))
            self.poplib_download(p)
        finally:
            p.close()
        self.tools_done()

    # -- raw client: the large message

    def test_raw_retr_350k_attachment(self):
        m = self.corpus.by_why["attachment-350k"]
        for c in (self.tls(), self.stls()):
            c.login("alice", "alice-pw")
            numbers = self.by_number(c.cmd_multi("UIDL")[1])
            n = [k for k, v in numbers.items() if v is m][0]
            st, data = c.cmd_multi("RETR %d" % n)
            self.assertEqual(st, b"+OK %d octets" % m.pop3_size)
            self.assertEqual(data, expected_retr(m.data))
            c.quit()

    def test_pipelined_commands_over_tls(self):
        """About 14 KB of commands in one write inside TLS, about 1.5 MB of replies: every
        command is answered, in order, although the server must stop and resume reading."""
        c = self.tls()
        c.login("alice", "alice-pw")
        numbers = self.by_number(c.cmd_multi("UIDL")[1])
        st, listing = c.cmd_multi("LIST")
        big = [k for k, v in numbers.items() if v.why == "attachment-350k"][0]
        cmds = [b"LIST"] * 1000 + [b"RETR %d" % big] + [b"UIDL"] * 1000 + [b"STAT"]
        c.send(b"".join(x + b"\r\n" for x in cmds))
        for i, cmd in enumerate(cmds):
            if cmd == b"STAT":
                self.assertTrue(c.line().startswith(b"+OK "), i)
                continue
            st = c.line()
            self.assertTrue(st.startswith(b"+OK"), (i, cmd, st))
            data = c.multi()
            if cmd == b"LIST":
                self.assertEqual(data, listing, i)
            elif cmd == b"UIDL":
                self.assertEqual(len(parse_list(data)), len(numbers), i)
            else:
                self.assertEqual(data, expected_retr(numbers[big].data))
        c.quit()

    # -- fetchmail

    def fetchmail(self, port, tls_lines):
        home = self.make_home()
        mda = os.path.join(home, "mda.py")
        with open(mda, "w") as f:
            f.write(MDA)
        os.chmod(mda, 0o755)
        out = os.path.join(home, "out")
        os.makedirs(out)
        rc = os.path.join(home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no syslog\n"
                    "set invisible\n"      # no Received: header of fetchmail's own
                    "poll 127.0.0.1 with protocol POP3 port %d auth password uidl:\n"
                    '  user "alice" there with password "alice-pw" is "root" here\n'
                    "  %s\n"
                    "  no rewrite\n  keep\n"
                    '  mda "%s %s"\n' % (port, tls_lines, mda, out))
        os.chmod(rc, 0o600)
        r = self.run_ok(["fetchmail", "-f", rc, "--nosyslog", "-v", "--pidfile",
                         os.path.join(home, "fetchmail.pid"), "--idfile",
                         os.path.join(home, "fetchids")], home, env={"FETCHMAILUSER": "root"})
        self.tools_done()
        got = files_in(out)
        self.assertEqual(len(got), len(self.corpus.listed), r.stdout.decode(errors="replace"))
        expected = {}
        for m in self.corpus.listed:
            want = fetchmail_form(m)
            if want == b"":
                notice = [g for g in got if g.startswith(b"From: FETCHMAIL-DAEMON")
                          and b"Subject: Headerless mail" in g]
                self.assertEqual(len(notice), 1, "no notice for the empty message")
                got.remove(notice[0])
            elif want is None:
                same = [g for g in got if message_id(g) == message_id(m.data)]
                self.assertEqual(len(same), 1, m)
                got.remove(same[0])
            else:
                expected[m.why] = want
        self.assertSameMessages(got, expected, "fetchmail")
        return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")

    # fetchmail checks the server name against the certificate's DNS names only (not the IP
    # address in subjectAltName), hence sslcommonname "localhost" for 127.0.0.1.
    def test_fetchmail_implicit_ssl_certck(self):
        log = self.fetchmail(self.d.tls_port, 'ssl sslproto "tls1.2+" sslcertck sslcertfile "%s" '
                             'sslcommonname "localhost"' % self.cert)
        self.assertIn("SSL/TLS: using protocol TLSv1.", log)
        self.assertNotIn("STLS", log)

    def test_fetchmail_stls_auto(self):
        log = self.fetchmail(self.d.port, 'sslproto "auto" sslcertck sslcertfile "%s" '
                             'sslcommonname "localhost"' % self.cert)
        self.assertIn("POP3> STLS", log)
        self.assertIn("upgrade to TLS succeeded", log)

    # -- mpop

    def mpop(self, port, starttls, trust):
        home = self.make_home()
        rc, dest = write_mpoprc(home, self.d, "alice", "alice-pw", port, starttls, "user",
                                trust_file=self.cert if trust else None)
        self.run_ok(["mpop", "--file=" + rc, "--quiet"], home)
        self.tools_done()
        # mpop's maildir delivery stores LF line ends and, with received_header off, adds nothing
        expected = {m.why: lf_form(m.data) for m in self.corpus.listed}
        self.assertSameMessages(maildir_files(dest), expected, "mpop")

    def test_mpop_implicit_trust_file(self):
        self.mpop(self.d.tls_port, starttls=False, trust=True)

    def test_mpop_starttls_certcheck_off(self):
        self.mpop(self.d.port, starttls=True, trust=False)

    # -- getmail

    def test_getmail_pop3_ssl(self):
        dest, home, run_kw = getmail_dirs(self)
        ca = os.path.join(home, "ca.pem")      # getmail's user may not enter the daemon's dir
        with open(self.cert, "rb") as src, open(ca, "wb") as dst:
            dst.write(src.read())
        os.chmod(ca, 0o644)
        fingerprint = hashlib.sha256(test_certs().der["default"]).hexdigest()
        rc, gmdir = getmail_rc(home, run_kw,
                               "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\n"
                               "port = %d\nusername = alice\npassword = alice-pw\n"
                               "ca_certs = %s\nssl_cert_hostname = localhost\n"
                               "ssl_fingerprints = ('%s',)\n\n"
                               "[destination]\ntype = Maildir\npath = %s/\n\n"
                               "[options]\ndelete = false\nread_all = true\ndelivered_to = false\n"
                               "received = false\nverbose = 1\nmessage_log_syslog = false\n"
                               % (self.d.tls_port, ca, fingerprint, dest))
        self.run_ok(["getmail", "--rcfile", rc, "--getmaildir", gmdir], home, **run_kw)
        self.tools_done()
        expected = {m.why: getmail_form(m.data) for m in self.corpus.listed}
        self.assertSameMessages(maildir_files(dest), expected, "getmail")




# ====================================================================== STLS and plaintext rules

def plain_b64(user, password):
    import base64
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


class StlsUtf8Test(TlsCase):
    """A users file with a Latin-1 name: who can log in shows whether UTF8 is in force."""
    USERS = None
    DAEMON = {"users_bytes": b"alice:{PLAIN}alice-pw\nj\xf6rg:{PLAIN}joerg-pw\n"}

    def test_stls_forgets_utf8(self):
        """AUTHORIZATION starts afresh after STLS: UTF8 given in clear text no longer holds, so
        the 8-bit (Latin-1) name is taken as bytes again and logs in; UTF8 given after the
        handshake holds, and the same name is refused as bad UTF-8."""
        c = self.plain()
        self.assertOK(c.cmd("UTF8"))
        c.stls()
        self.assertOK(c.cmd(b"USER j\xf6rg"))
        self.assertOK(c.cmd("PASS joerg-pw"))
        c.quit()
        c = self.plain()
        c.stls()
        self.assertOK(c.cmd("UTF8"))
        self.assertOK(c.cmd(b"USER j\xf6rg"))
        self.assertERR(c.cmd("PASS joerg-pw"))
        c.quit()


class StlsTest(TlsCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.msg = b"Subject: one\n\nbody\n"
        deliver(cls.d.maildir("alice"), cls.msg)

    def test_capa_in_clear_offers_stls_not_plaintext(self):
        """tls-only, untrusted: no USER, no SASL PLAIN/LOGIN; SCRAM-SHA-256 stays (a SCRAM user
        exists, and SCRAM never sends the password)."""
        c = self.plain()
        data = self.capa(c)
        names = capa_names(data)
        self.assertIn(b"STLS", names)
        self.assertNotIn(b"USER", names)
        self.assertEqual(sasl_mechs(data), [b"SCRAM-SHA-256"])
        # RFC 6856 §2: "UTF8 USER" says USER takes UTF-8; not while USER itself is refused
        self.assertIn([b"UTF8"], capa_words(data))
        st, listing = c.cmd_multi("AUTH")     # the bare AUTH list agrees
        self.assertOK(st)
        self.assertEqual(listing, b"SCRAM-SHA-256\r\n")
        c.quit()

    def test_plaintext_login_refused_without_tls(self):
        c = self.plain()
        for cmd in ("USER alice", "AUTH PLAIN " + plain_b64("alice", "alice-pw"), "AUTH PLAIN",
                    "AUTH LOGIN"):
            with self.subTest(cmd=cmd.split(" ")[1]):
                st = c.cmd(cmd)
                self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
                self.assertIn(b"STLS", st)
        # PASS after the refused USER: the same hint, not "send USER first"
        st = c.cmd("PASS alice-pw")
        self.assertTrue(st.startswith(b"-ERR [AUTH]"), st)
        self.assertIn(b"STLS", st)
        self.assertERR(c.cmd("STAT"), "must not be logged in")
        # the same session upgrades and logs in
        c.stls()
        c.login("alice", "alice-pw")
        self.assertEqual(c.cmd("STAT"), b"+OK 1 %d" % pop3_size(self.msg))
        c.quit()

    def test_capa_after_stls_and_after_login_has_no_stls(self):
        c = self.stls()
        data = self.capa(c)
        names = capa_names(data)
        self.assertNotIn(b"STLS", names)
        self.assertIn(b"USER", names)
        self.assertIn([b"UTF8", b"USER"], capa_words(data))
        self.assertEqual(sorted(sasl_mechs(data)), [b"LOGIN", b"PLAIN", b"SCRAM-SHA-256"])
        c.login("alice", "alice-pw")
        self.assertNotIn(b"STLS", capa_names(self.capa(c)))
        self.assertERR(c.cmd("STLS"))
        c.quit()

    def test_stls_twice_and_on_implicit_port(self):
        c = self.stls()
        self.assertERR(c.cmd("STLS"))
        c.login("alice", "alice-pw")          # the session goes on inside TLS
        c.quit()
        c = self.tls()
        self.assertNotIn(b"STLS", capa_names(self.capa(c)))
        self.assertERR(c.cmd("STLS"))
        c.login("alice", "alice-pw")
        c.quit()

    def test_stls_injection_capa_not_answered(self):
        """STLS and CAPA in one write: the CAPA was sent in clear text and must be discarded,
        not answered inside TLS (CVE-2011-0411 class)."""
        c = self.plain()
        c.send(b"STLS\r\nCAPA\r\n")
        st = c.line()
        self.assertOK(st)
        self.assertEqual(bytes(c.buf), b"", "clear text after STLS's +OK")
        c.start_tls()
        early = c.quiet_for(0.5)
        self.assertEqual(early, b"", "the server answered the injected CAPA inside TLS")
        # our own commands get the first replies: NOOP is refused before login (a reply no
        # CAPA could be mistaken for), then CAPA answers once
        st = c.cmd("NOOP")
        self.assertTrue(st.startswith(b"-ERR"), "first reply after TLS is not NOOP's: %r" % st)
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st)
        self.assertIn(b"USER", capa_names(data))
        self.assertEqual(c.quiet_for(0.2), b"", "a second CAPA reply arrived")
        c.quit()

    def test_stls_injection_user_forgotten(self):
        """USER sent behind STLS in clear text must not count inside TLS."""
        c = self.plain()
        c.send(b"STLS\r\nUSER alice\r\n")
        self.assertOK(c.line())
        self.assertEqual(bytes(c.buf), b"")
        c.start_tls()
        st = c.cmd("PASS alice-pw")
        self.assertERR(st, "logged in with a USER sent in clear text before the handshake")
        self.assertERR(c.cmd("STAT"))
        c.login("alice", "alice-pw")
        c.quit()

    def test_quit_sends_close_notify(self):
        """Before and after login (QUIT then goes through UPDATE): close_notify, then FIN."""
        for login in (False, True):
            with self.subTest(login=login):
                ctx = client_context(test_certs().cafile)
                c = self.track(TlsClient(self.d.tls_port, greeting=False))
                c.sock.settimeout(IO_TIMEOUT)
                # with suppress_ragged_eofs off, a FIN without close_notify raises SSLEOFError
                c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost",
                                         suppress_ragged_eofs=False)
                self.assertOK(c.line())
                if login:
                    c.login("alice", "alice-pw")
                    self.assertOK(c.cmd("STAT"))
                self.assertOK(c.cmd("QUIT"))
                self.assertEqual(c.wait_closed(), b"")

    # -- handshake failures

    def test_handshake_timeout(self):
        """Three clients that never finish a handshake: silent on the implicit port, silent after
        STLS's +OK, and one that trickles a ClientHello one octet every 0.4 s. Each is closed
        once tls.handshake_timeout has passed since its handshake began (the trickle does not
        extend it), the server sends nothing in clear text, and each is logged as a timeout."""
        timeout = self.d.handshake_timeout
        hello = client_hello()
        silent = self.track(TlsClient(self.d.tls_port, greeting=False))
        t_silent = time.monotonic()
        trickle = self.track(TlsClient(self.d.tls_port, greeting=False))
        t_trickle = time.monotonic()
        stls = self.plain()
        self.assertOK(stls.cmd("STLS"))
        t_stls = time.monotonic()
        start = {silent: t_silent, trickle: t_trickle, stls: t_stls}
        names = {silent: "implicit-silent", trickle: "implicit-trickle", stls: "stls-silent"}
        open_ = set(start)
        took, got = {}, {c: b"" for c in start}
        sent = 0
        deadline = time.monotonic() + timeout + 5
        while open_ and time.monotonic() < deadline:
            ready, _, _ = select.select([c.sock for c in open_], [], [], 0.4)
            for c in [c for c in open_ if c.sock in ready]:
                try:
                    chunk = c.sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                got[c] += chunk
                if not chunk:
                    took[c] = time.monotonic() - start[c]
                    open_.discard(c)
            if trickle in open_ and sent < len(hello):
                try:
                    trickle.send(hello[sent:sent + 1])
                    sent += 1
                except OSError:
                    pass
        self.assertFalse(open_, "not closed within %ss: %s"
                         % (timeout + 5, [names[c] for c in open_]))
        self.assertGreater(sent, 3, "the trickle did not get going")
        for c, name in names.items():
            with self.subTest(client=name):
                # closed by the server's timer: not before it, and not long after
                self.assertGreaterEqual(took[c], timeout - 0.25, took[c])
                self.assertLess(took[c], timeout + 2.0, took[c])
                # nothing in clear text; at most a TLS alert record (content type 21)
                self.assertFalse(got[c] and got[c][0] != 0x15, got[c][:80])
                self.assertIn("timeout", self.failure_line(self.port_of(c)))

    def test_client_hello_one_octet_per_write(self):
        """A handshake whose first flight arrives one octet per TCP segment still completes."""
        c = self.track(TlsClient(self.d.tls_port, greeting=False))
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        obj = bio_handshake(c.sock, client_context(test_certs().cafile), "localhost",
                            first_flight_per_octet=True)
        self.assertTrue(bio_read_line(c.sock, obj).startswith(b"+OK"))
        self.assertEqual(obj.getpeercert(binary_form=True), test_certs().der["default"])

    def test_garbage_instead_of_client_hello(self):
        for name, port, pre in (("implicit-http", self.d.tls_port, None),
                                ("implicit-pop3", self.d.tls_port, None),
                                ("stls", self.d.port, b"STLS\r\n")):
            with self.subTest(case=name):
                c = self.track(TlsClient(port, greeting=False))
                if pre:
                    self.assertOK(c.line())          # greeting
                    c.send(pre)
                    self.assertOK(c.line())
                junk = b"CAPA\r\nUSER alice\r\n" if name == "implicit-pop3" else \
                    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n" + bytes(range(256))
                t0 = time.monotonic()
                c.send(junk)
                try:
                    got = c.wait_closed(self.d.handshake_timeout + 5)
                except ConnectionResetError:
                    got = b""
                took = time.monotonic() - t0
                # at most a TLS alert record (content type 21), never POP3 text
                self.assertFalse(got and got[0] != 0x15, got[:100])
                self.assertNotIn(b"+OK", got)
                self.assertLess(took, self.d.handshake_timeout - 0.5,
                                "closed by the timeout, not for the garbage")
                line = self.failure_line(self.port_of(c))
                self.assertNotIn("timeout", line)

    def test_corrupt_record_gets_alert(self):
        """A record that fails decryption after the handshake: the server sends the fatal alert
        OpenSSL queued (bad_record_mac) before it closes, and nothing else. TLS 1.2, where an
        alert record keeps its content type (21) on the wire."""
        errors = self.d.count_log(": tls error id=")
        c = self.track(TlsClient(self.d.tls_port, greeting=False))
        obj = bio_handshake(c.sock, client_context(None, maximum=ssl.TLSVersion.TLSv1_2),
                            "localhost")
        self.assertTrue(bio_read_line(c.sock, obj).startswith(b"+OK"))
        obj.write(b"CAPA\r\n")
        record = bytearray(obj.outgoing.read())
        self.assertEqual(record[0], 0x17)
        record[-1] ^= 0x01                       # break the authentication tag
        c.sock.sendall(bytes(record))
        got = c.wait_closed()
        self.assertTrue(got, "closed without an alert")
        self.assertEqual(got[0], 0x15, "not an alert record: %r" % got[:40])
        self.assertEqual(len(got), 5 + int.from_bytes(got[3:5], "big"), "more than one record")
        self.d.wait_log(": tls error id=", count=errors + 1)

    # -- protocol versions

    def old_tls_refused(self, maximum):
        ctx = client_context(None, minimum=ssl.TLSVersion.TLSv1, maximum=maximum,
                             ciphers="DEFAULT:@SECLEVEL=0")
        c = self.track(TlsClient(self.d.tls_port, greeting=False))
        assert_version_alert(self, lambda: c.start_tls(ctx))
        line = self.failure_line(self.port_of(c))
        return line

    def test_tls_1_0_and_1_1_refused(self):
        """Refused with the protocol_version alert OpenSSL queued (RFC 8446 §6.2), not a bare
        EOF or reset, so the client can say why."""
        for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.subTest(version=v.name):
                line = self.old_tls_refused(v)
                self.assertRegex(line, "(?i)version|protocol")
        # the same permissive client settings get TLS 1.2 and 1.3
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=v.name):
                ctx = client_context(None, minimum=v, maximum=v, ciphers="DEFAULT:@SECLEVEL=0")
                c = self.tls(ctx)
                self.assertEqual(c.sock.version(), v.name.replace("_", "."))
                c.quit()

    # -- SNI

    def peer_der(self, hostname, stls=False):
        ctx = client_context(None)
        c = self.stls(ctx, hostname) if stls else self.tls(ctx, hostname)
        der = c.sock.getpeercert(binary_form=True)
        c.quit()
        return der

    def test_sni_selects_certificate(self):
        der = test_certs().der
        cases = [("mail.example.net", "net"), ("pop.example.org", "org"),
                 ("POP.Example.ORG", "org"),              # names are compared without case
                 ("unknown.example.com", "default"), ("example.net", "default"),
                 (None, "default")]
        for stls in (False, True):
            for name, label in cases:
                with self.subTest(name=name, stls=stls):
                    self.assertEqual(self.peer_der(name, stls), der[label],
                                     "expected the %s certificate" % label)

    def test_sni_certificate_verifies_by_name(self):
        """A verifying client that trusts only mail.example.net's certificate connects by
        that name."""
        cert, _key = test_certs().files("net")
        c = self.tls(client_context(cert), "mail.example.net")
        c.login("alice", "alice-pw")
        c.quit()


class TrustedTest(TlsCase):
    DAEMON = {"plaintext_trusted": ["127.0.0.0/8"]}

    def test_trusted_address_may_log_in_without_tls(self):
        c = self.plain()
        data = self.capa(c)
        names = capa_names(data)
        self.assertIn(b"USER", names)
        self.assertIn(b"STLS", names)
        self.assertEqual(sorted(sasl_mechs(data)), [b"LOGIN", b"PLAIN", b"SCRAM-SHA-256"])
        c.login("alice", "alice-pw")
        self.assertOK(c.cmd("STAT"))
        # after login: no STLS in CAPA, and STLS refused
        self.assertNotIn(b"STLS", capa_names(self.capa(c)))
        self.assertERR(c.cmd("STLS"))
        self.assertOK(c.cmd("NOOP"))
        c.quit()

    def test_trusted_auth_plain_without_tls(self):
        c = self.plain()
        self.assertOK(c.cmd("AUTH PLAIN " + plain_b64("alice", "alice-pw")))
        c.quit()


class V6Client(TlsClient):
    """A clear-text client of the listener on ::1, greeting read."""

    def __init__(self, port):
        self.sock = socket.create_connection(("::1", port), timeout=IO_TIMEOUT)
        self.timeout = IO_TIMEOUT
        self.buf = bytearray()
        self.greeting = self.line()


class TrustedV6Test(TlsCase):
    """auth.plaintext_trusted = ( "::1" ): a client on ::1 may log in with USER/PASS without
    TLS, one on 127.0.0.1 (not listed) may not."""
    DAEMON = {"plaintext_trusted": ["::1"], "v6_listener": True}

    @classmethod
    def setUpClass(cls):
        try:
            free_port_v6()
        except OSError as e:
            raise unittest.SkipTest("host: no IPv6 loopback on this machine: %s" % e)
        super().setUpClass()

    def test_v6_loopback_may_log_in_without_tls(self):
        c = V6Client(self.d.v6_port)
        key = "ip=::1 port=%d tls=no" % c.sock.getsockname()[1]
        try:
            data = self.capa(c)
            self.assertIn(b"USER", capa_names(data))
            self.assertIn([b"UTF8", b"USER"], capa_words(data))
            self.assertEqual(sorted(sasl_mechs(data)), [b"LOGIN", b"PLAIN", b"SCRAM-SHA-256"])
            c.login("alice", "alice-pw")
            self.assertOK(c.cmd("STAT"))
            c.quit()
        finally:
            c.close()
        self.d.wait_log(key)
        # the IPv4 loopback is not in the list
        c = self.plain()
        self.assertNotIn(b"USER", capa_names(self.capa(c)))
        self.assertTrue(c.cmd("USER alice").startswith(b"-ERR [AUTH]"))
        c.quit()


class CiphersTest(TlsCase):
    """tls.ciphersuites (TLS 1.3) and tls.ciphers (TLS 1.2) restrict what is negotiated: with
    only ChaCha20-Poly1305 configured, a client offering it among AES suites gets it, and a
    client offering only AES-GCM is refused."""
    DAEMON = {"sni": False,
              "tls_extra": 'ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"; '
                           'ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305";'}

    def test_tls13_gets_the_configured_suite(self):
        # Python's client offers TLS_AES_256_GCM_SHA384 first, then ChaCha20, then AES-128
        c = self.tls(client_context(None, minimum=ssl.TLSVersion.TLSv1_3))
        self.assertEqual(c.sock.cipher()[0], "TLS_CHACHA20_POLY1305_SHA256")
        c.login("alice", "alice-pw")
        c.quit()

    def test_tls13_client_without_the_suite_refused(self):
        """openssl s_client offering only AES-GCM suites (Python cannot choose TLS 1.3 suites)."""
        n = self.d.count_log("tls handshake failed")
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.d.tls_port,
                            "-tls1_3", "-ciphersuites",
                            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256", "-brief"],
                           input=b"QUIT\n", capture_output=True, timeout=TOOL_TIMEOUT)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("handshake failure", out)
        self.assertNotIn("+OK", out)
        self.assertIn("no shared cipher", self.d.wait_log("tls handshake failed", count=n + 1))

    def test_tls12_gets_the_configured_cipher(self):
        c = self.tls(client_context(None, maximum=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(c.sock.version(), "TLSv1.2")
        self.assertEqual(c.sock.cipher()[0], "ECDHE-ECDSA-CHACHA20-POLY1305")
        c.quit()

    def test_tls12_client_without_the_cipher_refused(self):
        ctx = client_context(None, maximum=ssl.TLSVersion.TLSv1_2,
                             ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
        c = self.track(TlsClient(self.d.tls_port, greeting=False))
        with self.assertRaises(ssl.SSLError) as cm:
            c.start_tls(ctx)
        self.assertIn("handshake failure", str(cm.exception))
        self.assertIn("no shared cipher", self.failure_line(self.port_of(c)))


class Tls13OnlyTest(TlsCase):
    DAEMON = {"min_version": "TLSv1.3", "sni": False}

    def test_tls_1_2_client_refused(self):
        ctx = client_context(None, maximum=ssl.TLSVersion.TLSv1_2)
        c = self.track(TlsClient(self.d.tls_port, greeting=False))
        assert_version_alert(self, lambda: c.start_tls(ctx))
        self.assertRegex(self.failure_line(self.port_of(c)), "(?i)version|protocol")
        # STLS too
        c = self.plain()
        assert_version_alert(self, lambda: c.stls(ctx))
        self.assertRegex(self.failure_line(self.port_of(c)), "(?i)version|protocol")

    def test_tls_1_3_client_accepted(self):
        c = self.tls(client_context(None, minimum=ssl.TLSVersion.TLSv1_3))
        self.assertEqual(c.sock.version(), "TLSv1.3")
        c.login("alice", "alice-pw")
        c.quit()


# ====================================================================== pop3d -t

class ConfigCheckTlsTest(unittest.TestCase):
    """pop3d -t loads every certificate and key: a key that does not match its certificate is
    an error naming the file and the setting (exit 1); a certificate expiring within 30 days
    is a warning (exit 0)."""

    def setUp(self):
        self.d = TlsDaemon(test_certs())
        self.addCleanup(self.d.cleanup_dir)
        self.d.port = free_port()
        self.d.write_files()

    def check(self, old, new):
        with open(self.d.conf) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(self.d.conf, "w") as f:
            f.write(text.replace(old, new, 1))
        r = subprocess.run([pop3d_path(), "-c", self.d.conf, "-t"], capture_output=True,
                           timeout=TOOL_TIMEOUT, env=child_env(), cwd="/")
        return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")

    def test_key_not_matching_certificate(self):
        rc, out = self.check('key = "cert.key"', 'key = "mail-example-net.key"')
        self.assertEqual(rc, 1, out)
        key = os.path.join(self.d.dir, "mail-example-net.key")
        self.assertRegex(out, re.escape(key) + r": tls\.key: does not match .*cert\.pem", out)

    def test_sni_key_not_matching_certificate(self):
        rc, out = self.check('key = "pop-example-org.key"', 'key = "cert.key"')
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, re.escape(os.path.join(self.d.dir, "cert.key")) +
                         r": tls\.sni\[\d\]\.key: does not match", out)

    def test_certificate_expiring_soon_warns(self):
        cert, key = (os.path.join(self.d.dir, n) for n in ("soon.pem", "soon.key"))
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "10", "-subj", "/CN=localhost"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        rc, out = self.check('certificate = "cert.pem"; key = "cert.key";',
                             'certificate = "soon.pem"; key = "soon.key";')
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, re.escape(cert) + r": tls\.certificate: expires on .*within 30 days",
                         out)
        self.assertIn("configuration is valid", out)


# ====================================================================== a client that stops reading

class SlowReaderTest(TlsCase):
    BIG = 20 * 1024 * 1024

    @classmethod
    def setUpClass(cls):
        # Under AddressSanitizer freed blocks sit in a quarantine (256 MB by default) and
        # stay resident, which would measure ASan, not pop3d: keep it small for this daemon.
        old = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (old + ":" if old else "") + "quarantine_size_mb=1"
        try:
            super().setUpClass()
        finally:
            if old is None:
                os.environ.pop("ASAN_OPTIONS", None)
            else:
                os.environ["ASAN_OPTIONS"] = old
        line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n"
        body = line * (cls.BIG // len(line) + 1)
        cls.big = b"From: a@example.net\nSubject: big\n\n" + body
        deliver(cls.d.maildir("big"), cls.big)
        cls.small = b"Subject: small\n\n" + b"x" * 5000 + b"\n"
        deliver(cls.d.maildir("alice"), cls.small)

    def test_stalled_retr_does_not_grow_memory(self):
        pid = self.d.proc.pid
        c = self.tls()
        # a small receive window so that little sits in our socket
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.login("big", "big-pw")
        self.assertOK(c.cmd("STAT"))
        before, _ = wait_stable(lambda: vm_rss_kb(pid), tolerance=64, stable_for=3, timeout=5)
        c.send(b"RETR 1\r\n")                 # and read nothing
        # the server stops sending once our window and its socket buffer are full: wait until
        # nothing more arrives in our receive queue and its memory stays put
        queued, stable = wait_stable(lambda: fionread(c.sock), tolerance=0, stable_for=5)
        self.assertTrue(stable, "the server kept sending; %d octets queued" % queued)
        after, stable = wait_stable(lambda: vm_rss_kb(pid), tolerance=128, stable_for=5)
        self.assertTrue(stable, "pop3d's VmRSS kept changing: %d KiB, %d KiB before"
                        % (after, before))
        self.assertGreater(queued, 0, "nothing of the RETR arrived")
        self.assertLess(after - before, 8 * 1024,
                        "VmRSS grew %d KiB while a client did not read a %d MB RETR"
                        % (after - before, self.BIG >> 20))
        # meanwhile, another client is served in full
        o = self.tls()
        o.login("alice", "alice-pw")
        st, data = o.cmd_multi("RETR 1")
        self.assertEqual(data, expected_retr(self.small))
        o.quit()
        self.assertLess(vm_rss_kb(pid) - before, 8 * 1024)
        # the stalled session ends when its client goes, and nothing counted as downloaded
        port = self.port_of(c)
        c.close()
        line = self.d.wait_log("ip=127.0.0.1 port=%d tls=" % port)
        self.assertIn("retr=0", line)


if __name__ == "__main__":
    unittest.main()
