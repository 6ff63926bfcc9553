"""systemd notifications (Type=notify): READY once listening, RELOADING then READY on SIGHUP,
STOPPING on SIGTERM.

The test plays systemd's notify socket: an AF_UNIX datagram socket whose path is given to pop3d in
NOTIFY_SOCKET, as systemd does; every sd_notify() call arrives as one datagram.
"""
import os
import signal
import socket
import tempfile
import unittest

from harness import Daemon, Pop3TestCase

WAIT = 10   # seconds for any one notification (bounded; the daemon sends them at once)


class NotifyTest(Pop3TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pop3d-notify-")
        self.path = os.path.join(self.tmp, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(WAIT)
        self.addCleanup(self.sock.close)
        old = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = self.path     # inherited by the daemon child only now

        def restore():
            if old is None:
                os.environ.pop("NOTIFY_SOCKET", None)
            else:
                os.environ["NOTIFY_SOCKET"] = old
        self.addCleanup(restore)

    def next_states(self, want):
        """Read datagrams until one carries `want=1`; return every state seen on the way."""
        seen = []
        for _ in range(20):
            data = self.sock.recv(4096).decode()
            fields = [f for f in data.split("\n") if f]
            seen.extend(fields)
            if want + "=1" in fields:
                return seen
        self.fail("no %s=1 among %r" % (want, seen))

    def test_ready_reloading_stopping(self):
        d = self.daemon()
        self.assertIn("READY=1", self.next_states("READY"))
        d.proc.send_signal(signal.SIGHUP)
        seen = self.next_states("RELOADING")
        seen += self.next_states("READY")          # READY again once the reload is done
        self.assertLess(seen.index("RELOADING=1"), seen.index("READY=1"))
        d.stop()                                   # SIGTERM, and a clean exit is checked
        self.next_states("STOPPING")               # the datagram waits in our socket

    def test_rejected_reload_still_says_ready(self):
        d = self.daemon()
        self.next_states("READY")
        with open(d.conf, "a") as f:
            f.write("no_such_setting = 1;\n")
        d.proc.send_signal(signal.SIGHUP)
        self.next_states("RELOADING")
        self.next_states("READY")                  # systemd must not stay in "reloading"
        d.wait_log("reload rejected")

    def test_no_notify_socket_no_trouble(self):
        os.environ.pop("NOTIFY_SOCKET", None)
        d = self.daemon()
        c = self.connect(d)
        c.quit()


if __name__ == "__main__":
    unittest.main()
