"""Shared helpers for test_tls.py and test_sasl.py: test certificates, a pop3d with TLS listeners
(composed on harness.Daemon, which stays untouched), raw POP3 clients over TLS, /proc sampling, and
what the real clients (fetchmail, getmail, mpop) are expected to store for a message.

Certificates: one self-signed P-256 pair per name, made once per process (tests/run.py runs each
module in its own process, so once per module) by `openssl req -x509`, then copied into each
daemon's temp dir so the config can name them relatively. Nothing here sleeps for a guessed time.
"""
import atexit
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import warnings

from harness import (Client, Daemon, Pop3TestCase, child_env, describe_mismatch, expected_retr,
                     free_port, message_id, pop3d_path, run_tool)

# label -> (file stem, subject CN, subjectAltName)
CERT_SPECS = {
    "default": ("cert", "localhost", "DNS:localhost,IP:127.0.0.1"),
    "net": ("mail-example-net", "mail.example.net", "DNS:mail.example.net"),
    "org": ("pop-example-org", "pop.example.org", "DNS:pop.example.org"),
}
SNI_NAMES = {"net": "mail.example.net", "org": "pop.example.org"}
TOOL_TIMEOUT = 90


class Certs:
    """The test certificates in one folder: .pem (certificate), .key, and der[label]."""

    def __init__(self, folder):
        self.folder = folder
        self.der = {}
        for label, (stem, cn, san) in CERT_SPECS.items():
            cert, key = self.files(label)
            r = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "365",
                 "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError("openssl req for %s failed: %s" % (cn, r.stderr.decode()))
            with open(cert) as f:
                self.der[label] = ssl.PEM_cert_to_DER_cert(f.read())

    def files(self, label, folder=None):
        stem = CERT_SPECS[label][0]
        folder = folder or self.folder
        return os.path.join(folder, stem + ".pem"), os.path.join(folder, stem + ".key")

    def copy_into(self, folder):
        for label in CERT_SPECS:
            for src, dst in zip(self.files(label), self.files(label, folder)):
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o600)

    @property
    def cafile(self):
        return self.files("default")[0]


_certs = None


def test_certs():
    """The certificates of this process (made on first use, removed at exit)."""
    global _certs
    if _certs is None:
        folder = tempfile.mkdtemp(prefix="pop3d-certs-")
        if not os.environ.get("KEEP_TMP"):
            atexit.register(shutil.rmtree, folder, True)
        _certs = Certs(folder)
    return _certs


# ---------------------------------------------------------------- daemon with TLS listeners

def free_port_v6():
    """A free port on ::1; raises OSError when this host has no IPv6 loopback."""
    return free_port("::1")


def _other_port(taken):
    for _ in range(20):
        p = free_port()
        if p not in taken:
            return p
    raise RuntimeError("no free port distinct from %r" % (taken,))


class TlsDaemon(Daemon):
    """pop3d with a STLS listener (self.port, so harness.Client and every Daemon helper work on
    it), an implicit-TLS listener (self.tls_port) and, with plain_listener, a "none" listener
    (self.plain_port). plaintext defaults to "tls-only"."""

    def __init__(self, certs, min_version="TLSv1.2", handshake_timeout=3, plaintext="tls-only",
                 plaintext_trusted=None, plain_listener=False, sni=True, users_bytes=None,
                 auth_backoff_base=0, tls_extra="", v6_listener=False, **kw):
        """users_bytes: the users file's exact content (e.g. UTF-8 names), replacing users.
        tls_extra: settings added to the tls group (e.g. ciphers). v6_listener: one more STLS
        listener on ::1 (self.v6_port)."""
        super().__init__(plaintext=plaintext, **kw)
        self.tls_extra = tls_extra
        self.v6_listener = v6_listener
        self.v6_port = None
        self.auth_backoff_base = auth_backoff_base
        self.users_bytes = users_bytes
        self.certs = certs
        self.min_version = min_version
        self.handshake_timeout = handshake_timeout
        self.plaintext_trusted = plaintext_trusted
        self.plain_listener = plain_listener
        self.sni = sni
        self.tls_port = self.plain_port = None

    def write_files(self):
        # start() picks self.port before every attempt; the other ports go with it
        self.tls_port = _other_port({self.port})
        if self.plain_listener:
            self.plain_port = _other_port({self.port, self.tls_port})
        if self.v6_listener:
            self.v6_port = free_port_v6()
        self.certs.copy_into(self.dir)
        super().write_files()
        if self.users_bytes is not None:
            with open(self.users_file, "wb") as f:
                f.write(self.users_bytes)

    def config_text(self):
        listen = ['{ address = "127.0.0.1"; port = %d; tls = "starttls"; }' % self.port,
                  '{ address = "127.0.0.1"; port = %d; tls = "implicit"; }' % self.tls_port]
        if self.plain_listener:
            listen.append('{ address = "127.0.0.1"; port = %d; tls = "none"; }' % self.plain_port)
        if self.v6_listener:
            listen.append('{ address = "::1"; port = %d; tls = "starttls"; }' % self.v6_port)
        trusted = ""
        if self.plaintext_trusted is not None:
            trusted = " plaintext_trusted = ( %s );" % ", ".join(
                '"%s"' % a for a in self.plaintext_trusted)
        sni = ""
        if self.sni:
            entries = []
            for label, name in SNI_NAMES.items():
                cert, key = (os.path.basename(p) for p in self.certs.files(label))
                entries.append('{ name = "%s"; certificate = "%s"; key = "%s"; }'
                               % (name, cert, key))
            sni = "\n        sni = ( %s );" % ",\n                ".join(entries)
        cert, key = (os.path.basename(p) for p in self.certs.files("default"))
        return (
            "listen = ( %s );\n" % ",\n           ".join(listen) +
            'auth = { users_file = "users"; plaintext = "%s"; failure_delay = %s;%s };\n'
            % (self.plaintext, repr(float(self.failure_delay)), trusted) +
            'maildrop = { path = "%s"; };\n' % self.maildrop_template +
            # auth_backoff_base = 0: no per-address backoff, so every failed login is answered
            # after exactly auth.failure_delay, however many failures the tests make
            "limits = { idle_timeout = %d; max_connections = %d; max_connections_per_ip = %d; "
            "auth_backoff_base = %s; };\n"
            % (self.idle_timeout, self.max_connections, self.max_connections_per_ip,
               repr(float(self.auth_backoff_base))) +
            'tls = { certificate = "%s"; key = "%s"; min_version = "%s"; '
            "handshake_timeout = %d;%s%s };\n"
            % (cert, key, self.min_version, self.handshake_timeout, sni,
               " " + self.tls_extra if self.tls_extra else "")
        ) + self.process_config() + self.extra_config

    def process_config(self):
        """harness.Daemon's process group (allow_root when running as root), when it has one."""
        base = getattr(super(), "process_config", None)
        return base() if base is not None else ""


def class_daemon(cls, corpus_for=(), **kw):
    """Start a TlsDaemon for a whole TestCase class (call from setUpClass). Its stop() check
    (exit status, sanitizer reports) runs as a class cleanup, so a failure there is reported."""
    d = TlsDaemon(test_certs(), **kw)
    cls.addClassCleanup(d.cleanup_dir)
    d.corpora = {u: d.corpus(u) for u in corpus_for}
    cls.addClassCleanup(d.stop)
    d.start()
    return d


# ---------------------------------------------------------------- TLS clients

def client_context(cafile=None, check_hostname=True, minimum=None, maximum=None, ciphers=None):
    """A client SSLContext. cafile None: no verification at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = check_hostname
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    with warnings.catch_warnings():      # TLS 1.0/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


class TlsClient(Client):
    """harness.Client that can switch to TLS: TlsClient(port, greeting=False) then start_tls()
    for implicit TLS (read the greeting after it), or TlsClient(port) then stls()."""

    def start_tls(self, ctx=None, server_hostname="localhost"):
        ctx = ctx or client_context(test_certs().cafile)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def stls(self, ctx=None, server_hostname="localhost"):
        """STLS, +OK, nothing else in clear text, then the handshake."""
        st = self.cmd("STLS")
        if not st.startswith(b"+OK"):
            raise AssertionError("STLS: %r" % st)
        if self.buf:
            raise AssertionError("clear-text bytes after STLS's +OK: %r" % bytes(self.buf[:200]))
        self.start_tls(ctx, server_hostname)
        return st

    def quiet_for(self, seconds):
        """Read for `seconds`; return whatever arrived (b"" when the server stayed silent)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._fill(deadline)
            except (socket.timeout, TimeoutError):
                break
        data = bytes(self.buf)
        return data


def capa_words(data):
    """CAPA data (un-stuffed) -> list of capability lines split into words, upper-cased names."""
    out = []
    for line in data.split(b"\r\n"):
        if line:
            words = line.split(b" ")
            out.append([words[0].upper()] + words[1:])
    return out


def capa_names(data):
    return [w[0] for w in capa_words(data)]


def sasl_mechs(data):
    for w in capa_words(data):
        if w[0] == b"SASL":
            return [m.upper() for m in w[1:]]
    return []


# ---------------------------------------------------------------- test case base

def scram_secret(password):
    """The users-file secret `pop3d --hash-password --scheme SCRAM-SHA-256` makes."""
    r = subprocess.run([pop3d_path(), "--hash-password", "--scheme", "SCRAM-SHA-256"],
                       input=(password + "\n").encode(), capture_output=True, timeout=30,
                       env=child_env())
    out = r.stdout.decode().strip()
    if r.returncode != 0 or not out.startswith("{SCRAM-SHA-256}"):
        raise RuntimeError("pop3d --hash-password --scheme SCRAM-SHA-256: %r %r"
                           % (out, r.stderr.decode(errors="replace")))
    return out


def crypt_secret(password):
    """A yescrypt hash from `pop3d --hash-password`."""
    r = subprocess.run([pop3d_path(), "--hash-password"], input=(password + "\n").encode(),
                       capture_output=True, timeout=30, env=child_env())
    out = r.stdout.decode().strip()
    if r.returncode != 0 or not out.startswith("$"):
        raise RuntimeError("pop3d --hash-password: %r %r" % (out, r.stderr.decode(errors="replace")))
    return out


class TlsCaseBase(Pop3TestCase):
    """A TestCase with one TlsDaemon for its class (DAEMON options) and clients that are closed
    and whose session ends are awaited at the end of each test."""
    DAEMON = {}          # TlsDaemon options
    CORPUS_FOR = ()      # users whose maildir gets the corpus
    USERS = None         # a function returning the users dict

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        kw = dict(cls.DAEMON)
        if cls.USERS is not None:
            kw["users"] = cls.USERS()
        cls.d = class_daemon(cls, corpus_for=cls.CORPUS_FOR, **kw)

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
        # The tool has finished, but our reader thread may not have read the log line yet.
        self.assertIsNotNone(self.d.wait_log(": tls id=", count=self.tls0 + 1, fail=False),
                             "no TLS session was made")
        n = self.d.count_log(": tls id=") - self.tls0
        self.d.wait_session_end(self.end0 + n)
        return n

    def capa(self, c):
        st, data = c.cmd_multi("CAPA")
        self.assertOK(st)
        return data

    def port_of(self, c):
        """The local port of tracked client c (also after it was closed)."""
        for tc, key, _n in self.tracked:
            if tc is c:
                return int(key.split("port=")[1].split(" ")[0])
        raise AssertionError("not tracked")

    def failure_line(self, port):
        """The daemon's "tls handshake failed" line for the client that used port."""
        line = self.d.wait_log("ip=127.0.0.1 port=%d: " % port)
        self.assertIn("tls handshake failed", line)
        return line


# ---------------------------------------------------------------- /proc

def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/%d/status" % pid)


def wait_stable(sample, tolerance, interval=0.1, stable_for=5, timeout=15.0):
    """Call sample() every `interval` s until `stable_for` samples in a row stay within
    `tolerance` of each other or `timeout` passes. Returns (last value, stable?)."""
    deadline = time.monotonic() + timeout
    window = [sample()]
    while time.monotonic() < deadline:
        time.sleep(interval)   # a sampling period, not a guess at when something happens
        window.append(sample())
        window = window[-stable_for:]
        if len(window) == stable_for and max(window) - min(window) <= tolerance:
            return window[-1], True
    return window[-1], False


# ---------------------------------------------------------------- real clients

def files_in(folder):
    out = []
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.append(f.read())
    return out


def maildir_files(dest):
    return files_in(os.path.join(dest, "new")) + files_in(os.path.join(dest, "cur"))


def lf_form(data):
    """What mpop's maildir delivery stores for a message the server sent correctly: the RETR
    data with every CRLF turned into LF (received_header off: nothing added)."""
    return expected_retr(data).replace(b"\r\n", b"\n")


def fetchmail_form(m):
    """What fetchmail 6.4 hands its MDA for corpus message m, or None when it cannot be compared:
    it deletes every CR (CRLF -> LF, bare CRs vanish too), ends a header-only message with an
    empty line and, with "set invisible", adds no header of its own. The zero-byte message
    becomes fetchmail's own "Headerless mail" notice (returned as b""), and a line over its 8 KiB
    buffer gets stray bytes at the split (None: fetchmail's bug, checked by the other clients)."""
    if m.why == "long-line-10k":
        return None
    out = expected_retr(m.data).replace(b"\r", b"")
    if out and b"\n\n" not in out:
        out += b"\n"
    return out


def getmail_form(data):
    """What getmail 6 stores for a message the server sent correctly: poplib strips one CRLF per
    line and getmail joins with LF, then Python's email package rewrites any remaining CR as a
    line end (LF), ends a message without a header/body separator with an empty line, and puts
    "Return-Path: <unknown>" on top when the message has none (only the empty corpus message)."""
    out = expected_retr(data).replace(b"\r\n", b"\n")
    out = out.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not out.startswith(b"Return-Path:"):
        out = b"Return-Path: <unknown>\n" + out
    if b"\n\n" not in out:
        out += b"\n"
    return out




class ToolMixin:
    """For Pop3TestCase subclasses running real clients: self.home (a fresh HOME), run_ok(),
    assertSameMessages(). Needs self.d."""

    def make_home(self):
        home = tempfile.mkdtemp(prefix="home-", dir=self.d.dir)
        return home

    def run_ok(self, argv, home, ok=(0,), **kw):
        r = run_tool(argv, home, timeout=TOOL_TIMEOUT, **kw)
        if r.returncode not in ok:
            self.fail("%s exited %d\nstdout:\n%s\nstderr:\n%s\npop3d:\n%s"
                      % (argv[0], r.returncode, r.stdout.decode(errors="replace")[-3000:],
                         r.stderr.decode(errors="replace")[-3000:], self.d.stderr()[-3000:]))
        return r

    def assertSameMessages(self, got, expected, what):
        """got: list of fetched bytes; expected: {label: normalised bytes}. Order-free."""
        remaining = list(got)
        missing = []
        for label, want in expected.items():
            if want in remaining:
                remaining.remove(want)
            else:
                missing.append(label)
        if missing or remaining:
            detail = ["%s: want %d octets; %s" % (label, len(expected[label]),
                                                  describe_mismatch(expected[label], remaining))
                      for label in missing]
            self.fail("%s: %d of %d message(s) differ\n%s\nunmatched fetched: %d"
                      % (what, len(missing), len(expected), "\n".join(detail), len(remaining)))


def mpop_version():
    r = subprocess.run(["mpop", "--version"], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    return r.stdout.decode(errors="replace")


def mpop_supports(mech):
    """Does this mpop build list `mech` (e.g. "scram-sha-256") among its auth methods?"""
    out = mpop_version()
    m = re.search(r"(?im)^Supported authentication methods:\s*\n?(.*)$", out)
    if not m:
        return False
    return mech.lower() in m.group(1).lower().split()


def write_mpoprc(home, d, user, password, port, starttls, auth, trust_file=None, dest=None):
    """An mpoprc for one account over TLS; returns (rc path, dest maildir)."""
    dest = dest or os.path.join(home, "dest")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(dest, sub), exist_ok=True)
    rc = os.path.join(home, "mpoprc")
    tls = "tls on\ntls_starttls %s\n" % ("on" if starttls else "off")
    tls += ("tls_trust_file %s\n" % trust_file) if trust_file else "tls_certcheck off\n"
    with open(rc, "w") as f:
        f.write("defaults\n%s\n"
                "account default\nhost 127.0.0.1\nport %d\nuser %s\npassword %s\n"
                "auth %s\ndelivery maildir %s\nkeep on\nreceived_header off\n"
                "uidls_file %s\n" % (tls, port, user, password, auth, dest,
                                     os.path.join(home, "uidls")))
    os.chmod(rc, 0o600)
    return rc, dest

