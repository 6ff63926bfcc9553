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
import pwd
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unittest

from harness import (IO_TIMEOUT, Client, Closed, Pop3TestCase, deliver, expected_retr, make_maildir,
                     parse_list, run_tool)
from tlsutil import (SNI_NAMES, TOOL_TIMEOUT, TlsClient, ToolMixin, capa_names, class_daemon,
                     client_context, fetchmail_form, files_in, getmail_form, lf_form,
                     maildir_files, message_id, sasl_mechs, test_certs, vm_rss_kb, wait_stable,
                     write_mpoprc)

SCRAM_SAM = None      # {SCRAM-SHA-256} secret of "sam" (password "sam-pw"), made once


def scram_secret(password):
    r = subprocess.run([os.environ.get("POP3D") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build",
        "pop3d"), "--hash-password", "--scheme", "SCRAM-SHA-256"],
        input=(password + "\n").encode(), capture_output=True, timeout=30)
    out = r.stdout.decode().strip()
    if r.returncode != 0 or not out.startswith("{SCRAM-SHA-256}"):
        raise RuntimeError("pop3d --hash-password --scheme SCRAM-SHA-256: %r %r"
                           % (out, r.stderr.decode(errors="replace")))
    return out


def users():
    global SCRAM_SAM
    if SCRAM_SAM is None:
        SCRAM_SAM = scram_secret("sam-pw")
    return {"alice": "{PLAIN}alice-pw", "sam": SCRAM_SAM, "big": "{PLAIN}big-pw"}


class TlsCase(Pop3TestCase):
    """A TestCase with one TlsDaemon for its class (DAEMON options) and clients that are closed
    and whose session ends are awaited at the end of each test."""
    DAEMON = {}
    CORPUS_FOR = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = class_daemon(cls, corpus_for=cls.CORPUS_FOR, users=users(), **cls.DAEMON)

    def setUp(self):
        self.tracked = []          # (client, server-side "port=N " log key, count before)
        self.tls0 = self.d.count_log(": tls id=")
        self.end0 = self.d.count_log("session end")

    def tearDown(self):
        for c, _key, _n in self.tracked:
            c.close()
        for _c, key, n in self.tracked:
            self.d.wait_log(key, count=n + 1)

    # -- clients

    def track(self, c):
        """Close c after the test and wait for the daemon's "session end" line for it (its log
        line names the client's port)."""
        key = "ip=127.0.0.1 port=%d tls=" % c.sock.getsockname()[1]
        self.tracked.append((c, key, self.d.count_log(key)))
        return c

    def plain(self, port=None):
        """A clear-text client on the STLS port (or port), greeting read."""
        c = self.track(TlsClient(port or self.d.port, greeting=False))
        c.greeting = c.line()
        self.assertOK(c.greeting)
        return c

    def tls(self, ctx=None, hostname="localhost", port=None):
        """An implicit-TLS client, greeting read."""
        c = self.track(TlsClient(port or self.d.tls_port, greeting=False))
        c.start_tls(ctx, hostname)
        c.greeting = c.line()
        self.assertOK(c.greeting)
        return c

    def stls(self, ctx=None, hostname="localhost"):
        """A client on the STLS port, upgraded."""
        c = self.plain()
        c.stls(ctx, hostname)
        return c

    def tools_done(self):
        """Wait for the end of every TLS session opened since setUp (tools make only those)."""
        n = self.d.count_log(": tls id=") - self.tls0
        self.assertGreater(n, 0, "no TLS session was made")
        self.d.wait_session_end(self.end0 + n)
        return n

    def capa(self, c):
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st)
        return data

    def failure_line(self, port):
        """The daemon's "tls handshake failed" line for the client that used port."""
        line = self.d.wait_log("ip=127.0.0.1 port=%d: " % port)
        self.assertIn("tls handshake failed", line)
        return line


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

    def s_client(self, *args):
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % args[0],
                            "-crlf", "-ign_eof", "-brief", "-CAfile", self.cert,
                            "-verify_return_error", "-verify_hostname", "localhost"]
                           + list(args[1:]), input=b"CAPA\nQUIT\n", capture_output=True,
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
        return caps, lines

    def test_s_client_stls_capa_lists_user_not_stls(self):
        caps, _ = self.s_client(self.d.port, "-starttls", "pop3")
        self.assertIn("USER", caps)
        self.assertNotIn("STLS", caps)

    def test_s_client_implicit_capa_lists_user_not_stls(self):
        caps, lines = self.s_client(self.d.tls_port)
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

    def getmail_dest(self):
        """getmail refuses to write a Maildir as root; as root it delivers as "nobody" (its
        destination "user" option) into a folder outside the 0700 temp dir."""
        top = tempfile.mkdtemp(prefix="pop3d-getmail-")
        self.addCleanup(shutil.rmtree, top, True)
        os.chmod(top, 0o755)
        dest = os.path.join(top, "dest")
        user = None
        if os.geteuid() == 0:
            user = "nobody"
            pw = pwd.getpwnam(user)
        for sub in ("", "new", "cur", "tmp"):
            path = os.path.join(dest, sub)
            os.makedirs(path, exist_ok=True)
            if user:
                os.chown(path, pw.pw_uid, pw.pw_gid)
        return dest, user

    def test_getmail_pop3_ssl(self):
        home = self.make_home()
        dest, user = self.getmail_dest()
        gmdir = os.path.join(home, "getmail")
        os.makedirs(gmdir)
        rc = os.path.join(gmdir, "getmailrc")
        fingerprint = hashlib.sha256(test_certs().der["default"]).hexdigest()
        with open(rc, "w") as f:
            f.write("[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = %d\n"
                    "username = alice\npassword = alice-pw\n"
                    "ca_certs = %s\nssl_cert_hostname = localhost\nssl_fingerprints = ('%s',)\n\n"
                    "[destination]\ntype = Maildir\npath = %s/\n%s\n"
                    "[options]\ndelete = false\nread_all = true\ndelivered_to = false\n"
                    "received = false\nverbose = 1\nmessage_log_syslog = false\n"
                    % (self.d.tls_port, self.cert, fingerprint, dest,
                       "user = %s\n" % user if user else ""))
        self.run_ok(["getmail", "--rcfile", rc, "--getmaildir", gmdir], home)
        self.tools_done()
        expected = {m.why: getmail_form(m.data) for m in self.corpus.listed}
        self.assertSameMessages(maildir_files(dest), expected, "getmail")


MDA = r'''#!/usr/bin/env python3
# Test MDA: stores stdin, unchanged, as OUT/NNNNN (the next free number, in delivery order).
import os, sys
out = sys.argv[1]
data = sys.stdin.buffer.read()
for i in range(1, 100000):
    try:
        fd = os.open(os.path.join(out, "%05d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        continue
    os.write(fd, data)
    os.close(fd)
    break
else:
    sys.exit(75)
'''
