"""Socket activation: pop3d started the way systemd starts it from pop3d.socket.

The test plays systemd: it binds and listens on 127.0.0.1 (a port the kernel picks, so there is
no race), and starts pop3d with that socket as fd 3 and LISTEN_FDS=1, LISTEN_PID=<pop3d's own
pid>, LISTEN_FDNAMES=pop3 (sd_listen_fds(3)). LISTEN_PID must be the pid of pop3d itself, so a
small Python wrapper moves the socket to fd 3, sets LISTEN_PID to its own pid and exec()s pop3d
(no preexec_fn: the harness has threads; no `sh` redirection: dash only knows fds 0-9).

Documented behaviour (server/sdnotify.h): a configured listen entry whose address and port equal
a passed socket's (getsockname, sdn_match) uses that socket instead of binding, and still logs
`listening on ADDR:PORT`; entries without a passed socket are bound as usual; a passed socket that
matches no entry stops the start. While pop3d holds fd 3 the port is taken, so a pop3d that
ignored the socket and bound by itself would fail with "address already in use".
"""
import os
import socket
import subprocess
import sys
import threading
import unittest

from harness import (READY_TIMEOUT, Client, Daemon, DaemonError, Pop3TestCase, child_env, deliver,
                     pop3d_path)

READY = ": ready"   # the startup line; a bare "ready" would also match "already in use"

# Runs as: python3 -c WRAP FD PROGRAM ARGS...  (fd FD becomes 3, then exec PROGRAM)
WRAP = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"        # the copy at 3 is inheritable
    "    os.close(fd)\n"
    "else:\n"
    "    os.set_inheritable(3, True)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"   # exec keeps the pid
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

MSG = b"From: a@example.org\nSubject: activated\n\nhello from a passed socket\n"


def listening_inodes(port):
    """Inodes of the TCP sockets in LISTEN state on 127.0.0.1:port (from /proc/net/tcp)."""
    want = "0100007F:%04X" % port
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            cols = row.split()
            if cols[1] == want and cols[3] == "0A":     # 0A = TCP_LISTEN
                out.append(int(cols[9]))
    return out


def fd_inodes(pid):
    """Socket inodes among /proc/PID/fd."""
    out = set()
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


class ActivatedDaemon(Daemon):
    """A Daemon handed one listening socket as systemd would. extra_listen: further listen
    entries (config text) bound by pop3d itself; config_port: the port the config names for the
    passed socket (default: the socket's own port)."""

    def __init__(self, extra_listen="", config_port=None, **kw):
        # Tests run as root; what is tested here is the socket, not the privilege drop.
        kw.setdefault("extra_config", "process = { allow_root = true; };\n")
        super().__init__(**kw)
        self.extra_listen = extra_listen
        self.config_port = config_port
        self.sock_inode = None

    def config_text(self):
        text = super().config_text()
        first, rest = text.split("\n", 1)
        assert first.startswith("listen = "), first
        port = self.port if self.config_port is None else self.config_port
        entries = ['{ address = "127.0.0.1"; port = %d; }' % port]
        if self.extra_listen:
            entries.append(self.extra_listen)
        return "listen = ( %s );\n" % ", ".join(entries) + rest

    def start(self, expect_ready=True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            self.port = sock.getsockname()[1]
            self.sock_inode = os.fstat(sock.fileno()).st_ino
            self.write_files()
            self.lines = []
            self._eof = False
            env = child_env(LISTEN_FDS="1", LISTEN_FDNAMES="pop3")
            for k in ("LISTEN_PID", "NOTIFY_SOCKET"):
                env.pop(k, None)
            fd = sock.fileno()
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WRAP, str(fd), pop3d_path(), "-c", self.conf],
                pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, cwd="/", env=env)
        finally:
            sock.close()      # pop3d has its own copy at fd 3
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not expect_ready:
            return self
        if self.wait_log(READY, timeout=READY_TIMEOUT, fail=False) is None:
            self._kill()
            self.stopped = True
            raise DaemonError("pop3d did not print 'ready' within %ss (exit %s); stderr:\n%s"
                              % (READY_TIMEOUT, self.proc.returncode, self.stderr()))
        return self


class SocketActivationTest(Pop3TestCase):

    def activated(self, **kw):
        d = ActivatedDaemon(**kw)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        return d

    def test_passed_socket_serves(self):
        d = self.activated()
        deliver(d.maildir("alice"), MSG)
        d.start()
        d.wait_log("listening on 127.0.0.1:%d" % d.port)
        # pop3d holds the socket the test made, and it is the only listener on that port.
        self.assertIn(d.sock_inode, fd_inodes(d.proc.pid))
        self.assertEqual(listening_inodes(d.port), [d.sock_inode])
        c = self.connect(d)
        self.assertOK(c.greeting)
        c.login("alice", d.password("alice"))
        self.assertEqual(c.cmd("STAT"), b"+OK 1 %d" % len(MSG.replace(b"\n", b"\r\n")))
        st, data = c.cmd_multi("RETR 1")
        self.assertOK(st)
        self.assertIn(b"hello from a passed socket", data)
        c.quit()
        d.wait_session_end(1)
        d.stop()

    def test_other_entries_still_bound(self):
        # The passed socket covers the first entry; pop3d binds the second one itself.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
        s.close()
        d = self.activated(extra_listen='{ address = "127.0.0.1"; port = %d; }' % other)
        d.maildir("bob@example.org")
        d.start()
        d.wait_log("listening on 127.0.0.1:%d" % d.port)
        d.wait_log("listening on 127.0.0.1:%d" % other)
        self.assertEqual(listening_inodes(d.port), [d.sock_inode])
        for port in (d.port, other):
            c = self.connect_port(port)
            self.assertOK(c.greeting)
            c.login("bob@example.org", d.password("bob@example.org"))
            c.quit()
        d.wait_session_end(2)
        d.stop()

    def test_unmatched_passed_socket_refused(self):
        # The config names another port: the passed socket matches no entry, which is an error.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
        s.close()
        d = self.activated(config_port=other)
        d.start(expect_ready=False)
        try:
            rc = d.proc.wait(READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            d.stopped = True
            d._kill()
            self.fail("pop3d kept running with a passed socket that matches no listen entry; "
                      "stderr:\n" + d.stderr())
        d._reader.join(READY_TIMEOUT)
        d.stopped = True
        d.proc.stderr.close()
        err = d.stderr()
        self.assertNotEqual(rc, 0, err)
        self.assertGreater(rc, 0, "died from a signal: " + err)
        self.assertNotIn(READY, err)
        self.assertIn("no listen entry", err)
        self.assertIn("127.0.0.1:%d" % d.port, err)

    def connect_port(self, port):
        c = Client(port)
        self.addCleanup(c.close)
        return c


if __name__ == "__main__":
    unittest.main()
