"""Two pop3d nodes behind HAProxy (issue 5, "Several nodes behind a load balancer").

HAProxy (Debian's package) runs in the foreground as a child (`haproxy -f CONF -db`) with a
configuration derived from etc/haproxy.cfg: the same defaults, timeouts, health checks (PROXY
header, TLS for 995, expect +OK, QUIT) and send-proxy-v2, with its addresses replaced by 127.0.0.1
high ports, its global section by a test one (no chroot, no user switch, log to stderr) and
`balance leastconn` by `balance roundrobin`, so consecutive connections alternate between the
nodes. Both pop3d processes read ONE users file and serve ONE maildir store (the same maildrop
template), as two hosts sharing NFS would. Which node serves a connection is read from the APOP
timestamp in the greeting, which starts with the node's pid.

Checked: logins through the balancer land on both nodes (STLS port and implicit TLS port); the
second login to a mailbox open on the other node gets -ERR [IN-USE]; both nodes log the client's
own address and source port (not HAProxy's connection); DELE+QUIT on one node is seen on the
other; `pop3d --expire` run from both nodes' configurations at once, over several rounds and with
a maildrop held by a session, removes each downloaded message exactly once, never fails, and
leaves pop3d.state readable; the example's health checks reach both nodes cleanly.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# tests/run.py puts this folder on sys.path; `python3 -m unittest tests/integration/...` does not.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_USERS, IO_TIMEOUT, REPO, Client, Daemon, child_env,  # noqa: E402
                     deliver, free_port, make_maildir, parse_list, pop3d_path)
from policyutil import (EXPIRE_TIMEOUT, ExpireRun, by_base, message, place, read_state,  # noqa: E402
                        run_expire)
from tlsutil import client_context, test_certs  # noqa: E402

HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
EXAMPLE = os.path.join(REPO, "etc", "haproxy.cfg")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CHECK_TIMEOUT = 15.0          # the example checks every 5 s; the first one comes within that

# the test users: the harness's four plus some more for the expiry rounds
EXPIRE_USERS = ["u%02d@example.net" % i for i in range(8)]
USERS = dict(DEFAULT_USERS)
USERS.update({u: "{PLAIN}pw-" + u for u in EXPIRE_USERS + ["erin@example.com"]})
# the example's servers -> which listener of which node they stand for
EXAMPLE_SERVERS = {("node1", "110"): (0, "plain"), ("node2", "110"): (1, "plain"),
                   ("node1", "995"): (0, "tls"), ("node2", "995"): (1, "tls")}


def password(user):
    return USERS[user].replace("{PLAIN}", "", 1)


def maildir(store, user):
    """The maildir of user under the shared store (template STORE/mail/%d/%n/Maildir)."""
    local, _, domain = user.partition("@")
    return make_maildir(os.path.normpath(os.path.join(store, "mail", domain, local, "Maildir")))


def node_pid(greeting):
    """The pid at the start of the APOP timestamp: <PID.xxx.yyy@host>."""
    m = re.search(rb"<(\d+)\.", greeting)
    if not m:
        raise AssertionError("greeting without a pid in its timestamp: %r" % greeting)
    return int(m.group(1))


def wait_lines(d, pred, timeout=IO_TIMEOUT, what="line"):
    """Wait until one of d's stderr lines satisfies pred; return it (waits on the harness's
    condition variable, which its reader thread notifies for every line)."""
    deadline = time.monotonic() + timeout
    with d._cond:
        while True:
            for line in d.lines:
                if pred(line):
                    return line
            left = deadline - time.monotonic()
            if d._eof or left <= 0:
                break
            d._cond.wait(left)
    raise AssertionError("no %s within %ss on node pid %s; stderr:\n%s"
                         % (what, timeout, d.proc.pid, d.stderr()))


# ---------------------------------------------------------------- pop3d nodes

class NodeDaemon(Daemon):
    """A pop3d whose two listeners (self.port: STLS, self.tls_port: implicit TLS) require a
    PROXY header from 127.0.0.1, with the users file and maildir store given (shared)."""

    def __init__(self, store, users_file, extra_config=""):
        super().__init__(users=USERS, extra_config=extra_config,
                         maildrop_path=os.path.join(store, "mail", "%d", "%n", "Maildir"))
        self.shared_users = users_file
        self.tls_port = None

    def write_files(self):
        for _ in range(20):
            self.tls_port = free_port()
            if self.tls_port != self.port:
                break
        test_certs().copy_into(self.dir)
        super().write_files()

    def config_text(self):
        proxy = 'proxy_protocol = true; proxy_trusted = ( "127.0.0.1" );'
        cert, key = (os.path.basename(p) for p in test_certs().files("default"))
        return (
            'listen = ( { address = "127.0.0.1"; port = %d; tls = "starttls"; %s },\n'
            '           { address = "127.0.0.1"; port = %d; tls = "implicit"; %s } );\n'
            % (self.port, proxy, self.tls_port, proxy) +
            'auth = { users_file = "%s"; plaintext = "always"; failure_delay = %s; };\n'
            % (self.shared_users, repr(float(self.failure_delay))) +
            'maildrop = { path = "%s"; };\n' % self.maildrop_template +
            'limits = { idle_timeout = %d; max_connections = %d; max_connections_per_ip = %d; };\n'
            % (self.idle_timeout, self.max_connections, self.max_connections_per_ip) +
            'tls = { certificate = "%s"; key = "%s"; };\n' % (cert, key)
        ) + self.process_config() + self.extra_config


# ---------------------------------------------------------------- HAProxy

TEST_GLOBAL = """global
    log stderr format raw local0 info
    maxconn 2000

"""


def derive_config(example, frontends, servers):
    """etc/haproxy.cfg for the test: its global section replaced, each frontend's bind lines
    replaced by one on 127.0.0.1:frontends[name], each server's address by servers[(name,
    example port)], leastconn by roundrobin. Raises when the example no longer has the shape
    this relies on."""
    i = example.find("\ndefaults")
    if not example.startswith(("global", "#")) or i < 0:
        raise AssertionError("etc/haproxy.cfg: no global section followed by defaults")
    out = [TEST_GLOBAL]
    section = None
    seen_fe, seen_srv, balance = set(), set(), 0
    for line in example[i + 1:].splitlines():
        words = line.split("#", 1)[0].split()
        if line[:1] not in (" ", "\t", "") and words:
            section = tuple(words[:2])
        if words[:1] == ["bind"]:
            name = section[1]
            if section[0] != "frontend" or name not in frontends:
                raise AssertionError("etc/haproxy.cfg: unexpected bind in %s" % (section,))
            if name not in seen_fe:
                out.append("    bind 127.0.0.1:%d" % frontends[name])
                seen_fe.add(name)
            continue
        if words[:1] == ["server"]:
            m = re.fullmatch(r"[0-9.]+:(\d+)", words[2])
            key = (words[1], m.group(1) if m else None)
            if key not in servers:
                raise AssertionError("etc/haproxy.cfg: unexpected server line %r" % line)
            line = line.replace(words[2], "127.0.0.1:%d" % servers[key], 1)
            seen_srv.add(key)
        if words == ["balance", "leastconn"]:
            line = line.replace("leastconn", "roundrobin")
            balance += 1
        out.append(line)
    if seen_fe != set(frontends) or seen_srv != set(servers) or balance != 2:
        raise AssertionError("etc/haproxy.cfg: frontends %s, servers %s, %d leastconn backends"
                             % (sorted(seen_fe), sorted(seen_srv), balance))
    return "\n".join(out) + "\n"


class HAProxy:
    """haproxy -f CONF -db as a child process; its output goes to a file in folder."""

    def __init__(self, folder, nodes):
        self.folder = folder
        self.nodes = nodes
        self.conf = os.path.join(folder, "haproxy.cfg")
        self.logfile = os.path.join(folder, "haproxy.log")
        self.proc = None
        self.port = self.tls_port = None

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def write_config(self):
        with open(EXAMPLE) as f:
            example = f.read()
        servers = {}
        for key, (i, kind) in EXAMPLE_SERVERS.items():
            servers[key] = self.nodes[i].port if kind == "plain" else self.nodes[i].tls_port
        text = derive_config(example, {"pop3": self.port, "pop3s": self.tls_port}, servers)
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self):
        taken = {n.port for n in self.nodes} | {n.tls_port for n in self.nodes}
        for _attempt in range(3):   # a free port may be taken before HAProxy binds it
            ports = set()
            while len(ports) < 2:
                p = free_port()
                if p not in taken:
                    ports.add(p)
            self.port, self.tls_port = sorted(ports)
            self.write_config()
            with open(self.logfile, "wb") as out:
                self.proc = subprocess.Popen([HAPROXY, "-f", self.conf, "-db"],
                                             stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, cwd=self.folder)
            if self.wait_ready():
                return self
            self.stop()
            if "bind" not in self.log().lower():
                break
        raise AssertionError("haproxy did not start (exit %s); config:\n%s\noutput:\n%s"
                             % (self.proc.returncode, open(self.conf).read(), self.log()))

    def wait_ready(self):
        """Poll (deadline READY_TIMEOUT) until the clear-text frontend accepts; that first
        connection goes through to a node and must be greeted and QUIT cleanly, which proves
        the whole path. False when haproxy exited or never accepted."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = Client(self.port)
            except ConnectionRefusedError:
                time.sleep(0.02)
                continue
            try:
                if not c.greeting.startswith(b"+OK"):
                    raise AssertionError("greeting through haproxy: %r" % c.greeting)
                c.quit()
            finally:
                c.close()
            return True
        return False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


# ---------------------------------------------------------------- clients through the balancer

class BalancedClient(Client):
    """harness.Client to the balancer, optionally from another loopback source address; knows
    its own source port (what the nodes must log) and, once greeted, the node's pid."""

    def __init__(self, port, source=None, timeout=IO_TIMEOUT, tls=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.source = self.sock.getsockname()
        self.timeout = timeout
        self.buf = bytearray()
        if tls:
            self.sock = client_context(test_certs().cafile).wrap_socket(
                self.sock, server_hostname="localhost")
        self.greeting = self.line()
        self.pid = node_pid(self.greeting)


@unittest.skipUnless(HAPROXY, "haproxy not installed (apt-get install haproxy)")
class NodesTest(unittest.TestCase):
    """One HAProxy and two pop3d nodes for the class; each test uses its own users."""

    @classmethod
    def setUpClass(cls):
        cls.store = tempfile.mkdtemp(prefix="pop3d-nodes-")
        cls.addClassCleanup(shutil.rmtree, cls.store, True)
        cls.users_file = os.path.join(cls.store, "users")
        with open(cls.users_file, "w") as f:
            f.write("".join("%s:%s\n" % kv for kv in USERS.items()))
        os.chmod(cls.users_file, 0o600)
        policy = "policy = { retention = \"keep\"; keep_days = 0; };\n"
        cls.nodes = []
        for _ in range(2):
            d = NodeDaemon(cls.store, cls.users_file, extra_config=policy)
            cls.addClassCleanup(d.cleanup_dir)
            cls.addClassCleanup(d.stop)          # raises on a bad exit or a sanitizer report
            d.start()
            cls.nodes.append(d)
        cls.by_pid = {d.proc.pid: d for d in cls.nodes}
        cls.haproxy = HAProxy(cls.store, cls.nodes)
        cls.addClassCleanup(cls.haproxy.stop)
        cls.haproxy.start()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def describe(self):
        return "\n".join("node pid %d stderr:\n%s" % (d.proc.pid, d.stderr())
                         for d in self.nodes) + "\nhaproxy:\n" + self.haproxy.log()

    def connect(self, tls=False, source=None):
        c = BalancedClient(self.haproxy.tls_port if tls else self.haproxy.port,
                           source=source, tls=tls)
        self.clients.append(c)
        self.assertIn(c.pid, self.by_pid, "greeting from an unknown process: %r" % c.greeting)
        return c

    def node(self, c):
        return self.by_pid[c.pid]

    def pair(self, tls=False, source=None):
        """Two connections in a row: roundrobin puts them on different nodes."""
        a = self.connect(tls, source)
        b = self.connect(tls, source)
        self.assertNotEqual(a.pid, b.pid, "two connections in a row went to the same node:\n"
                            + self.describe())
        return a, b

    def end_line(self, c, user):
        """The serving node's session end line for c: user, the client's own address and
        port (a port alone could be one HAProxy's own connections happened to get too)."""
        ip, port = c.source
        key = " user=%s ip=%s port=%d " % (user, ip, port)
        return wait_lines(self.node(c), lambda l: "session end" in l and key in l,
                          what="session end with%s" % key)

    def quit(self, c, user):
        c.quit()
        return self.end_line(c, user)

    def login(self, c, user):
        return c.login(user, password(user))

    # ------------------------------------------------------------ tests

    def test_example_config_is_valid(self):
        r = subprocess.run([HAPROXY, "-c", "-f", EXAMPLE], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_logins_on_both_nodes_log_the_client_address(self):
        users = ("alice", "carol")
        for tls, source in ((False, None), (True, None), (False, "127.0.0.2"), (True, "127.0.0.3")):
            with self.subTest(tls=tls, source=source):
                pair = self.pair(tls, source)
                for c, user in zip(pair, users):
                    self.login(c, user)
                    self.assertOK(c.cmd("STAT"))
                for c, user in zip(pair, users):
                    line = self.quit(c, user)
                    self.assertIn(" user=%s " % user, line)
                    self.assertIn(" tls=%s " % ("yes" if tls else "no"), line)
                    self.assertIn('reason="quit"', line)
                    # the node's login line names the client's address too
                    node = self.node(c)
                    self.assertTrue(any(" ip=%s user=%s " % (c.source[0], user) in l
                                        for l in node.log_lines("login id=")), node.stderr())

    def test_second_login_on_the_other_node_is_in_use(self):
        for tls, user in ((False, "bob@example.org"), (True, "dave")):
            with self.subTest(tls=tls):
                first, second = self.pair(tls)
                self.login(first, user)
                self.assertOK(second.cmd("USER " + user))
                st = second.cmd("PASS " + password(user))
                self.assertTrue(st.startswith(b"-ERR [IN-USE]"), st)
                busy = wait_lines(self.node(second),
                                  lambda l: "maildrop in use" in l and " user=%s" % user in l,
                                  what="maildrop in use line")
                self.assertIn(" ip=127.0.0.1 ", busy)
                self.quit(first, user)
                # the lock went with the session: the other node may have it now
                self.assertOK(second.cmd("USER " + user))
                self.assertOK(second.cmd("PASS " + password(user)))
                self.quit(second, user)

    def test_dele_on_one_node_is_seen_on_the_other(self):
        user = "erin@example.com"
        md = maildir(self.store, user)
        names = [deliver(md, b"Subject: m%d\n\nbody %d\n" % (i, i)) for i in range(3)]
        a = self.connect()
        self.login(a, user)
        st, data = a.cmd_multi("UIDL")
        self.assertOK(st)
        uidl = dict(parse_list(data))
        self.assertEqual(sorted(uidl.values()), sorted(names))
        gone = uidl[1]
        self.assertOK(a.cmd("DELE 1"))
        self.quit(a, user)
        b = self.connect()
        self.assertNotEqual(a.pid, b.pid, "the second session went to the same node")
        self.login(b, user)
        self.assertEqual(b.cmd("STAT").split()[:2], [b"+OK", b"2"])
        st, data = b.cmd_multi("UIDL")
        self.assertEqual(sorted(v for _, v in parse_list(data)),
                         sorted(n for n in names if n != gone))
        self.quit(b, user)
        self.assertNotIn(gone, by_base(md))

    def test_health_checks_reach_both_nodes(self):
        """The example's checks: PROXY header (+ TLS on 995), +OK, QUIT, on both listeners of
        both nodes, and no header or handshake trouble anywhere."""
        for d in self.nodes:
            for tls in ("no", "yes"):
                wait_lines(d, lambda l: ("session end" in l and " user=- ip=127.0.0.1 " in l
                                         and " tls=%s " % tls in l and "quit" in l),
                           timeout=CHECK_TIMEOUT, what="health check session (tls=%s)" % tls)
        for d in self.nodes:
            for bad in ("proxy header", "untrusted", "tls handshake failed"):
                self.assertEqual(d.log_lines(bad), [], self.describe())
        self.assertNotIn(" is DOWN", self.haproxy.log())

    def test_expire_from_both_nodes_at_once(self):
        """keep_days = 0: a downloaded message goes at the next sweep. Each round delivers
        two messages per user, downloads one through the balancer, holds one user's maildrop
        with a session, then runs `pop3d --expire` from both nodes' configs at once."""
        mds = {u: maildir(self.store, u) for u in EXPIRE_USERS}
        kept = {u: set() for u in EXPIRE_USERS}      # never downloaded: must stay
        due = {u: set() for u in EXPIRE_USERS}       # downloaded, not yet swept
        removed_total = {}
        for rnd in range(3):
            held_user = EXPIRE_USERS[rnd]
            for u in EXPIRE_USERS:
                get = deliver(mds[u], b"Subject: get %d\n\nround %d\n" % (rnd, rnd))
                keep = deliver(mds[u], b"Subject: keep %d\n\nround %d\n" % (rnd, rnd))
                kept[u].add(keep)
                c = self.connect()
                self.login(c, u)
                st, data = c.cmd_multi("UIDL")
                num = {v: n for n, v in parse_list(data)}
                st, body = c.cmd_multi("RETR %d" % num[get])
                self.assertOK(st)
                self.assertIn(b"round %d" % rnd, body)
                self.quit(c, u)
                due[u].add(get)
            holder = self.connect()                     # on either node
            self.login(holder, held_user)
            runs = self.expire_both()
            removed = {}
            for r in runs:
                self.assertEqual(r.rc, 0, r.describe())
                self.assertEqual(r.of("failed") + r.of("note") + r.of("error"), [], r.describe())
                skipped = [e["user"] for e in r.of("skipped")]
                self.assertIn(held_user, skipped, r.describe())
                for uidl, cause in r.removed().items():
                    self.assertNotIn(uidl, removed, "removed by both sweeps:\n%s\n%s"
                                     % (runs[0].describe(), runs[1].describe()))
                    self.assertNotIn(uidl, removed_total, "removed again in round %d" % rnd)
                    # keep_days = 0 is reported as a removal for the download itself
                    self.assertIn(cause, ("download", "keep_days"), r.describe())
                    removed[uidl] = cause
            want = set().union(*(due[u] for u in EXPIRE_USERS if u != held_user))
            self.assertEqual(set(removed), want, "round %d:\n%s\n%s"
                             % (rnd, runs[0].describe(), runs[1].describe()))
            removed_total.update(removed)
            for u in EXPIRE_USERS:
                present = set(by_base(mds[u]))
                self.assertLessEqual(kept[u], present, u)
                self.assertEqual([n for n in os.listdir(mds[u]) if n.startswith("pop3d.state.")],
                                 [], u)
                _, records = read_state(mds[u])
                # downloads recorded by either node, dropped with the message by either sweep
                if u == held_user:
                    self.assertLessEqual(due[u], present, "swept under a live session")
                    self.assertLessEqual(due[u], set(records), u)
                else:
                    self.assertFalse(due[u] & present, u)
                    self.assertFalse(due[u] & set(records), u)
                    due[u] = set()
            self.quit(holder, held_user)
        # the last held maildrop goes at the next sweep; then the download state still reads
        last = EXPIRE_USERS[2]
        for d in self.nodes:
            r = run_expire(d.conf, "--dry-run")
            self.assertEqual(r.rc, 0, r.describe())
            self.assertEqual(r.of("failed") + r.of("note"), [], r.describe())
            self.assertEqual(set(r.removed()), due[last], r.describe())
        r = run_expire(self.nodes[0].conf)
        self.assertEqual(set(r.removed()), due[last], r.describe())
        for u in EXPIRE_USERS:
            self.assertEqual(set(by_base(mds[u])), kept[u], u)
            state = read_state(mds[u])
            self.assertIsNotNone(state, u)
        for d in self.nodes:
            r = run_expire(d.conf, "--dry-run", "--json")
            self.assertEqual(r.rc, 0, r.describe())
            self.assertEqual(r.removed(), {}, r.describe())
            self.assertEqual(r.summary()["failed"], 0, r.describe())

    def expire_both(self):
        """`pop3d -c CONF --expire` for both nodes, started together; both ExpireRuns."""
        procs = []
        for d in self.nodes:
            argv = [pop3d_path(), "-c", d.conf, "--expire"]
            procs.append((argv, subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                 text=True, cwd="/", env=child_env())))
        runs = []
        for argv, p in procs:
            try:
                out, err = p.communicate(timeout=EXPIRE_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            runs.append(ExpireRun(argv, subprocess.CompletedProcess(argv, p.returncode, out, err),
                                  False))
        return runs

    def assertOK(self, reply, msg=None):
        self.assertTrue(reply.startswith(b"+OK"), msg or reply)


class DaemonSweepsTest(unittest.TestCase):
    """Two daemons on one maildir store, each running its own periodic sweep (every second)
    while sessions on both download: every due message goes exactly once, by one node or the
    other; what is kept stays, and so do the download records made during the sweeps."""

    USERS = EXPIRE_USERS[:3]
    OLD, YOUNG = 400, 5                  # per user: unread for two days, and new

    def test_both_daemons_sweep_one_store(self):
        store = tempfile.mkdtemp(prefix="pop3d-sweeps-")
        self.addCleanup(shutil.rmtree, store, True)
        now = int(time.time())
        old, young = {}, {}
        for u in self.USERS:
            md = maildir(store, u)
            old[u] = {place(md, "%d.old-%04d.%s" % (now, i, u), message("old %d" % i),
                            now - 2 * 86400 - i) for i in range(self.OLD)}
            young[u] = sorted(place(md, "%d.young-%d.%s" % (now, i, u), message("young %d" % i),
                                    now - 100 + i) for i in range(self.YOUNG))
        policy = ('policy = { retention = "keep"; keep_days = 30; unread_days = 1; '
                  'expire_interval = 1; };\n')
        nodes = []
        for _ in range(2):
            d = Daemon(users=USERS, extra_config=policy,
                       maildrop_path=os.path.join(store, "mail", "%d", "%n", "Maildir"))
            self.addCleanup(d.cleanup_dir)
            self.addCleanup(d.stop)
            d.start()
            nodes.append(d)
        # While the nodes sweep: each user downloads its first young message on one node.
        for i, u in enumerate(self.USERS):
            d = nodes[i % 2]
            deadline = time.monotonic() + 30
            while True:
                c = Client(d.port)
                self.assertOK(c.cmd("USER " + u))
                st = c.cmd("PASS " + password(u))
                if st.startswith(b"+OK"):
                    break
                c.close()
                self.assertTrue(st.startswith(b"-ERR [IN-USE]"), st)
                self.assertLess(time.monotonic(), deadline, "no login for %s in 30 s" % u)
                time.sleep(0.05)       # a sweep's batch holds the lock for milliseconds
            st, data = c.cmd_multi("UIDL")
            num = {v: n for n, v in parse_list(data)}
            self.assertOK(c.cmd_multi("RETR %d" % num[young[u][0]])[0])
            c.quit()
        # Two more sweeps on each node after the last download, then look.
        for d in nodes:
            n = d.count_log("expire sweep ")
            d.wait_log("expire sweep ", count=n + 2, timeout=60)
        removed = []
        for d in nodes:
            self.assertEqual(d.log_lines("expire failed"), [], d.stderr()[-3000:])
            removed += [re.search(r" uidl=(\S+) ", l).group(1) for l in d.log_lines("expire removed")]
        self.assertEqual(len(removed), len(set(removed)), "a message removed twice")
        self.assertEqual(set(removed), set().union(*old.values()))
        for u in self.USERS:
            md = maildir(store, u)
            present = set(by_base(md))
            self.assertEqual(present, set(young[u]), u)
            records = read_state(md)[1]
            self.assertEqual(records[young[u][0]][1], 30, records)
            self.assertEqual([n for n in os.listdir(md) if n.startswith("pop3d.state.")], [])

    def assertOK(self, reply, msg=None):
        self.assertTrue(reply.startswith(b"+OK"), msg or reply)


if __name__ == "__main__":
    unittest.main()
