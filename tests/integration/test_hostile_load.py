"""Hostile clients on loopback, all at once, bounded (issue 6; tests/hostile/README.md).

One pop3d (tlsutil.TlsDaemon: a STLS listener with plaintext allowed, an implicit-TLS listener,
tls.handshake_timeout = 3 s, idle_timeout left at its default) is attacked by a child process
(this file run with --attacker) that holds every hostile connection in one selectors loop:

  silent    thousands of connections that read the greeting and then send nothing
  slow      connections that send "CAPA\\r\\n" one byte a second (a bounded number of bytes)
  flood     connections that each send a 10 MB line without LF: the server must close them
            after LINE_FLOOD_MAX octets, without buffering the line
  tls-*     implicit-TLS connections that send nothing, half a ClientHello, or drip a
            ClientHello one byte every 0.5 s: closed at handshake_timeout, counted from the
            connect, however the bytes trickle (three waves during the attack)
  pipeline  clients that log in and pipeline 10,000 commands (LIST/NOOP/UIDL/STAT) in one
            write with a tiny receive buffer, read the answers slowly, and at the end drain
            them all: every answer must come, in order
  retr      clients that RETR a 20 MB message and never read

The attacker runs in its own process so the measured latency is the server's, not our GIL's.
Meanwhile this process logs in as a normal user every PROBE_EVERY s (clear text and implicit TLS
in turn; USER/PASS against a yescrypt hash, STAT, RETR of a small message, QUIT) and asserts
that 80% of the probes take < 1 s, the median < 0.5 s and none > 5 s (see PROBE_GOAL), and
samples VmRSS/VmHWM of the daemon every 50 ms. The peak is asserted against a bound built from
limits.h (see rss_bound) and printed with the per-idle-connection cost, as "hostile-load: ..."
lines.

Under a sanitizer build (POP3D path containing /san/) the scenario sizes stay the same (the
whole module takes about 17 s either way); only the memory budgets are looser, because ASan's
allocator adds redzones to every block and its quarantine keeps freed memory resident.

Run alone:  cd tests/integration && python3 -m unittest -v test_hostile_load
            (POP3D=build/san/pop3d for the sanitizer build)
"""
import heapq
import json
import os
import queue
import re
import resource
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from harness import (Client, Pop3TestCase, deliver, expected_retr,  # noqa: E402
                     pop3_size, pop3d_path)
from tlsutil import (TlsClient, TlsDaemon, client_context, crypt_secret,  # noqa: E402
                     test_certs)

SAN = "/san/" in pop3d_path()

# ---------------------------------------------------------------- scenario sizes
SILENT = 3000
SLOW = 200
SLOW_BYTES = 12                      # "CAPA\r\n" twice, one byte a second: 12 s
FLOOD = 20
FLOOD_BYTES = 10 * 1024 * 1024
PIPELINE = 5
PIPELINE_CMDS = 10000
PIPELINE_SLOW_READ = 1024            # octets read per PIPELINE_READ_EVERY while slow
PIPELINE_READ_EVERY = 0.1
RETR_CLIENTS = 5
BIG_SIZE = 20 * 1024 * 1024
TLS_PER_KIND = 10                    # per wave: silent, half ClientHello, drip
TLS_WAVES = (0.0, 5.0, 10.0)         # seconds into the attack
HANDSHAKE_TIMEOUT = 3
ATTACK_SECONDS = 14.0
PROBE_EVERY = 1.0
# Probe latency (connect + login + STAT + RETR + QUIT): the issue asks that a normal client
# still logs in and downloads within a second. A quiet machine gives a median of ~0.05 s (ASan
# ~0.08 s) and a max of ~0.1 s (ASan ~0.5 s), but CI shares 2 cores with the attacker and other
# jobs, and once saw two of 14 probes at 1.4-1.5 s. So: at least PROBE_SHARE of the probes
# within PROBE_GOAL, the median within PROBE_MEDIAN_LIMIT, and none over PROBE_LIMIT. A server
# that lets the attack starve the loop or the hash line fails all three.
PROBE_GOAL = 1.0
PROBE_SHARE = 0.8
PROBE_MEDIAN_LIMIT = 1.0 if SAN else 0.5
PROBE_LIMIT = 5.0
RAMP_INFLIGHT = 200                  # connections not yet greeted while ramping

# Deadlines of the phases (all loops are bounded by these and by counts).
RAMP_DEADLINE = 40.0 if SAN else 20.0
GO_DEADLINE = 60.0
DRAIN_DEADLINE = 30.0
CHILD_DEADLINE = 150.0
TLS_CLOSE_SLACK = 3.0 if SAN else 1.5  # a staller may be closed up to this long after 3 s


def limits_h():
    """The #defines of server/limits.h whose values are plain integer expressions."""
    path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "server", "limits.h")
    out = {}
    with open(path) as f:
        for m in re.finditer(r"(?m)^#define\s+([A-Z0-9_]+)\s+([0-9 ()*+-]+)$", f.read()):
            out[m.group(1)] = int(eval(m.group(2), {"__builtins__": {}}))   # digits and + - * ( )
    return out


LIMITS = limits_h()
# Memory budget (KiB). See rss_bound(). Measured on the last run: tests/hostile/README.md.
IDLE_CONN_CEILING_KB = 24 if SAN else 12    # what one idle connection may cost at most
# Per RETR/pipeline session: each of the two output buffers (out, and wbuf in flight) may once
# have held OUTPUT_HIGH_WATER plus one encoded chunk (2 * FILE_CHUNK); plus the chunk read buffer.
OUTPUT_CAP_KB = (2 * (LIMITS["OUTPUT_HIGH_WATER"] + 2 * LIMITS["FILE_CHUNK"])
                 + LIMITS["FILE_CHUNK"]) // 1024
# A handshake in progress: OpenSSL's SSL object and record buffers, and TLS_READ_BUF.
TLS_CONN_KB = (200 if SAN else 48) + LIMITS["TLS_READ_BUF"] // 1024
HASH_KB = 16 * 1024                         # one yescrypt verification: 128 * r * N octets
SLACK_KB = 96 * 1024 if SAN else 6 * 1024   # malloc arenas, fragmentation; ASan: its quarantine

PORT_BIND_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
TCP_ESTABLISHED = 1


def source_address(i):
    """Spread attackers over 127.0.0.2 .. 127.0.0.254 (127.0.0.1 is the probe's)."""
    return "127.0.0.%d" % (2 + i % 253)


def tcp_state(sock):
    """Linux tcp_info.tcpi_state of sock (1: ESTABLISHED, 8: CLOSE_WAIT, 7: CLOSE)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return -1


def client_hello():
    """The bytes of a real TLS ClientHello (from a memory BIO, nothing is sent)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    if len(data) < 100 or data[0] != 0x16:
        raise RuntimeError("no ClientHello: %r" % data[:20])
    return data


# ================================================================ the attacker (child process)

class Loop:
    """A selectors loop with timers. Every run is bounded by a deadline."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.timers = []
        self.seq = 0

    def call_later(self, delay, fn):
        self.seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.seq, fn))

    def run_until(self, done, deadline):
        """Serve events until done() or the deadline; returns done()."""
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return done()
            while self.timers and self.timers[0][0] <= now:
                _t, _s, fn = heapq.heappop(self.timers)
                fn()
            wait = deadline - now
            if self.timers:
                wait = min(wait, max(0.0, self.timers[0][0] - now))
            for key, mask in self.sel.select(min(wait, 0.05)):
                key.data(mask)
        return True


class Conn:
    """One non-blocking client connection. Subclasses react to greeting/data/close."""
    kind = "?"

    def __init__(self, loop, port, src, rcvbuf=None):
        self.loop = loop
        self.t_connect = time.monotonic()
        self.t_closed = None
        self.how = None                 # "eof", "reset", "epipe" or "local"
        self.buf = bytearray()
        self.out = bytearray()
        self.connected = False
        self.want_read = True
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self.sock.setsockopt(socket.IPPROTO_IP, PORT_BIND_NO_PORT, 1)
        except OSError:
            pass
        self.sock.bind((src, 0))
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, 115):          # EINPROGRESS
            raise OSError(err, "connect to %d from %s" % (port, src))
        self.events = selectors.EVENT_READ | selectors.EVENT_WRITE
        loop.sel.register(self.sock, self.events, self.on_event)

    @property
    def closed(self):
        return self.t_closed is not None

    def update(self):
        if self.closed:
            return
        ev = 0
        if self.want_read:
            ev |= selectors.EVENT_READ
        if not self.connected or self.out or self.wants_write():
            ev |= selectors.EVENT_WRITE
        if ev != self.events:
            if self.events and ev:
                self.loop.sel.modify(self.sock, ev, self.on_event)
            elif ev:
                self.loop.sel.register(self.sock, ev, self.on_event)
            else:
                self.loop.sel.unregister(self.sock)
            self.events = ev

    def wants_write(self):
        return False

    def fill_out(self):
        """Called when writable and self.out is empty (flooders generate data here)."""

    def on_event(self, mask):
        if self.closed:
            return
        if mask & selectors.EVENT_WRITE:
            if not self.connected:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.close_by_peer("connect error %d" % err)
                    return
                self.connected = True
                self.on_connected()
            self.write_some()
        if not self.closed and mask & selectors.EVENT_READ:
            self.read_some(65536)
        self.update()

    def write_some(self):
        while not self.closed:
            if not self.out:
                self.fill_out()
                if not self.out:
                    return
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self.close_by_peer("epipe")
                return
            except ConnectionResetError:
                self.close_by_peer("reset")
                return
            self.sent(n)
            del self.out[:n]

    def sent(self, n):
        pass

    def read_some(self, limit):
        """recv up to limit octets; returns the number read (0 when nothing was available)."""
        try:
            data = self.sock.recv(limit)
        except BlockingIOError:
            return 0
        except ConnectionResetError:
            self.close_by_peer("reset")
            return 0
        if not data:
            self.close_by_peer("eof")
            return 0
        self.buf += data
        self.on_data()
        return len(data)

    def send(self, data):
        self.out += data
        if self.connected:
            self.write_some()
        self.update()

    def close_by_peer(self, how):
        if self.closed:
            return
        self.how = how
        self.t_closed = time.monotonic()
        self._drop()
        self.on_closed()

    def close_local(self):
        if self.closed:
            return
        self.how = "local"
        self.t_closed = time.monotonic()
        self._drop()

    def _drop(self):
        if self.events:
            self.loop.sel.unregister(self.sock)
            self.events = 0
        self.sock.close()

    def alive(self):
        """Still ESTABLISHED from our side: the server has neither closed nor reset it."""
        return not self.closed and tcp_state(self.sock) == TCP_ESTABLISHED

    def on_connected(self):
        pass

    def on_data(self):
        pass

    def on_closed(self):
        pass

    def take_line(self):
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        line = bytes(self.buf[:i + 1])
        del self.buf[:i + 1]
        return line


class Silent(Conn):
    """Reads the greeting, then sends nothing (and keeps watching for a close)."""
    kind = "silent"

    def __init__(self, *a, **kw):
        self.greeted = False
        super().__init__(*a, **kw)

    def on_data(self):
        if not self.greeted and b"\n" in self.buf:
            self.greeted = self.buf.startswith(b"+OK")
            self.buf.clear()


class Slow(Silent):
    """After the greeting, one byte of "CAPA\\r\\n" a second, SLOW_BYTES in all; counts the
    CAPA answers (each ends with ".\\r\\n")."""
    kind = "slow"

    def __init__(self, *a, **kw):
        self.bytes_sent = 0
        self.capa_answers = 0
        super().__init__(*a, **kw)

    def on_data(self):
        if not self.greeted:
            super().on_data()   # consumes the greeting line (and anything after it)
            if self.greeted:
                self.loop.call_later(1.0, self.tick)
            return
        while True:
            line = self.take_line()
            if line is None:
                break
            if line == b".\r\n":
                self.capa_answers += 1

    def tick(self):
        if self.closed or self.bytes_sent >= SLOW_BYTES:
            return
        pattern = b"CAPA\r\n"
        self.send(pattern[self.bytes_sent % len(pattern):][:1])
        self.bytes_sent += 1
        self.loop.call_later(1.0, self.tick)


class Flood(Conn):
    """Sends FLOOD_BYTES of 'A' without LF as fast as the server takes them."""
    kind = "flood"
    CHUNK = b"A" * 65536

    def __init__(self, *a, **kw):
        self.pushed = 0
        super().__init__(*a, **kw)

    def wants_write(self):
        return self.pushed < FLOOD_BYTES

    def fill_out(self):
        left = FLOOD_BYTES - self.pushed - len(self.out)
        if left > 0:
            self.out += self.CHUNK[:left]

    def sent(self, n):
        self.pushed += n

    def on_data(self):
        self.buf.clear()       # the greeting


class TlsStall(Conn):
    """Implicit TLS: sends nothing ("tls-silent"), half a ClientHello at once ("tls-half"), or
    drips it one byte every 0.5 s ("tls-drip"). Must be closed at handshake_timeout."""

    def __init__(self, loop, port, src, mode, hello):
        self.kind = "tls-" + mode
        self.mode = mode
        self.hello = hello[:len(hello) // 2]
        self.dripped = 0
        self.got = 0
        super().__init__(loop, port, src)

    def on_connected(self):
        if self.mode == "half":
            self.send(self.hello)
        elif self.mode == "drip":
            self.drip()

    def drip(self):
        if self.closed or self.dripped >= len(self.hello):
            return
        self.send(self.hello[self.dripped:self.dripped + 1])
        self.dripped += 1
        self.loop.call_later(0.5, self.drip)

    def on_data(self):
        self.got += len(self.buf)   # a server answering half a ClientHello would be odd
        self.buf.clear()


class Pipeliner(Conn):
    """Logs in and pipelines PIPELINE_CMDS commands in one write (tiny receive buffer); reads
    slowly until drain(), then at full speed; checks every answer in order."""
    kind = "pipeline"
    CYCLE = (("LIST", True), ("NOOP", False), ("UIDL", True), ("STAT", False))

    def __init__(self, loop, port, src, user, password):
        self.user, self.password = user, password
        self.expect = ([("GREETING", False), ("USER", False), ("PASS", False)] +
                       [self.CYCLE[i % 4] for i in range(PIPELINE_CMDS)] + [("QUIT", False)])
        self.pos = 0               # index into expect of the answer being read
        self.in_multi = False
        self.multi = bytearray()
        self.errors = []
        self.first = {}            # command -> first answer (status + data): later ones must match
        self.status = b""
        self.slow = True
        self.bytes_in = 0
        super().__init__(loop, port, src, rcvbuf=4096)
        self.want_read = False     # slow phase: read only from the timer
        self.update()
        self.loop.call_later(PIPELINE_READ_EVERY, self.slow_read)

    def on_connected(self):
        cmds = [b"USER " + self.user.encode(), b"PASS " + self.password.encode()]
        cmds += [self.CYCLE[i % 4][0].encode() for i in range(PIPELINE_CMDS)] + [b"QUIT"]
        self.send(b"\r\n".join(cmds) + b"\r\n")   # one write: whatever the kernel takes now,
        # the rest as soon as it takes more

    def slow_read(self):
        if self.closed or not self.slow:
            return
        self.read_some(PIPELINE_SLOW_READ)
        self.loop.call_later(PIPELINE_READ_EVERY, self.slow_read)

    def drain(self):
        self.slow = False
        self.want_read = True
        self.update()

    @property
    def answers(self):
        return max(0, self.pos - 3)   # answers to the pipelined commands (QUIT included)

    @property
    def complete(self):
        return self.pos == len(self.expect)

    def on_data(self):
        while self.pos < len(self.expect):
            line = self.take_line()
            if line is None:
                return
            self.bytes_in += len(line)
            name, multi = self.expect[self.pos]
            if self.in_multi:
                self.multi += line
                if line == b".\r\n":
                    self.finish(name, self.status + b"|" + bytes(self.multi))
                continue
            if not line.startswith(b"+OK"):
                if len(self.errors) < 5:
                    self.errors.append("answer %d to %s: %r" % (self.pos, name, line[:100]))
                self.pos += 1
                continue
            if multi:
                self.in_multi = True
                self.status = line
                self.multi = bytearray()
                continue
            self.finish(name, line if name not in ("GREETING",) else b"")

    def finish(self, name, answer):
        self.in_multi = False
        if name not in ("GREETING", "USER", "PASS", "QUIT"):
            want = self.first.setdefault(name, answer)
            if answer != want and len(self.errors) < 5:
                self.errors.append("answer %d to %s differs: %r != %r"
                                   % (self.pos, name, answer[:80], want[:80]))
        self.pos += 1


class RetrNoRead(Conn):
    """Logs in, RETR 1 (the 20 MB message), and never reads."""
    kind = "retr"

    def __init__(self, loop, port, src, user, password, rcvbuf):
        self.cmds = ("USER %s\r\nPASS %s\r\nRETR 1\r\n" % (user, password)).encode()
        super().__init__(loop, port, src, rcvbuf=rcvbuf)
        self.want_read = False
        self.update()

    def on_connected(self):
        self.send(self.cmds)

    def head(self):
        """The first lines the server sent (read once, at the end): greeting, USER, PASS, RETR."""
        try:
            return self.sock.recv(4096, socket.MSG_PEEK)
        except (BlockingIOError, OSError):
            return b""


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def attacker_main():
    """Child: read the plan (one JSON line) on stdin, ramp the silent connections, wait for
    "go", attack for ATTACK_SECONDS, drain, report one JSON "result" line."""
    t_start = time.monotonic()
    hard_deadline = t_start + CHILD_DEADLINE
    plan = json.loads(sys.stdin.readline())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = SILENT + SLOW + FLOOD + PIPELINE + RETR_CLIENTS + 3 * TLS_PER_KIND * len(TLS_WAVES) + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    port, tls_port = plan["port"], plan["tls_port"]
    hello = client_hello()
    loop = Loop()
    nconn = [0]

    def src():
        nconn[0] += 1
        return source_address(nconn[0])

    # -- ramp: SILENT connections, at most RAMP_INFLIGHT not yet greeted
    silent = []
    t0 = time.monotonic()
    deadline = min(hard_deadline, t0 + RAMP_DEADLINE)
    while len(silent) < SILENT and time.monotonic() < deadline:
        pending = sum(1 for c in silent[-2 * RAMP_INFLIGHT:] if not c.greeted and not c.closed)
        for _ in range(max(0, min(RAMP_INFLIGHT - pending, SILENT - len(silent)))):
            silent.append(Silent(loop, port, src()))
        loop.run_until(lambda: False, min(deadline, time.monotonic() + 0.01))
    loop.run_until(lambda: all(c.greeted or c.closed for c in silent), deadline)
    emit({"ev": "ramped", "silent": len(silent), "greeted": sum(c.greeted for c in silent),
          "closed": sum(c.closed for c in silent), "secs": round(time.monotonic() - t0, 2)})

    # -- wait for "go" on stdin (the parent measures the idle cost meanwhile)
    go = []
    stdin_fd = sys.stdin.fileno()

    def on_stdin(_mask):
        go.append(os.read(stdin_fd, 100))
        loop.sel.unregister(stdin_fd)

    loop.sel.register(stdin_fd, selectors.EVENT_READ, on_stdin)
    loop.run_until(lambda: bool(go), min(hard_deadline, time.monotonic() + GO_DEADLINE))
    if not go:
        emit({"ev": "error", "what": "no go from the parent"})
        return 1

    # -- the attack
    ta = time.monotonic()
    users = plan["users"]
    slow = [Slow(loop, port, src()) for _ in range(SLOW)]
    flood = [Flood(loop, port, src()) for _ in range(FLOOD)]
    pipes = [Pipeliner(loop, port, src(), u, pw) for u, pw in users["pipe"]]
    retrs = [RetrNoRead(loop, port, src(), u, pw, 4096 if i % 2 == 0 else None)
             for i, (u, pw) in enumerate(users["big"])]
    stallers = []

    def tls_wave():
        for mode in ("silent", "half", "drip"):
            for _ in range(TLS_PER_KIND):
                stallers.append(TlsStall(loop, tls_port, src(), mode, hello))

    for at in TLS_WAVES:
        loop.call_later(at, tls_wave)
    emit({"ev": "attacking"})
    loop.run_until(lambda: False, min(hard_deadline, ta + ATTACK_SECONDS))
    # the last wave's stallers are given their deadline too
    last = ta + TLS_WAVES[-1] + HANDSHAKE_TIMEOUT + TLS_CLOSE_SLACK + 0.5
    loop.run_until(lambda: all(c.closed for c in stallers), min(hard_deadline, last))
    flood_done = all(c.closed for c in flood)
    if not flood_done:   # give the flooders a bounded extra moment, reported as a failure
        loop.run_until(lambda: all(c.closed for c in flood),
                       min(hard_deadline, time.monotonic() + 5))
    emit({"ev": "attack_over", "secs": round(time.monotonic() - ta, 2)})

    # -- liveness of the ones that must still be served, checked before we close anything
    silent_alive = sum(c.alive() for c in silent)
    slow_alive = sum(c.alive() for c in slow)
    retr_alive = sum(c.alive() for c in retrs)
    retr_heads = [c.head().split(b"\r\n")[:4] for c in retrs]
    retr_heads = [[l.decode("latin-1")[:80] for l in h] for h in retr_heads]
    for c in retrs:      # RST: the server must not wait for a reader that never comes
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close_local()

    # -- drain the pipeliners: every answer must come
    td = time.monotonic()
    for p in pipes:
        p.drain()
    loop.run_until(lambda: all(p.complete or p.closed for p in pipes),
                   min(hard_deadline, td + DRAIN_DEADLINE))
    drain_secs = time.monotonic() - td

    def closes(conns):
        return [{"kind": c.kind, "after": round(c.t_closed - c.t_connect, 3) if c.closed else None,
                 "how": c.how} for c in conns]

    result = {
        "ev": "result",
        "silent": {"n": len(silent), "greeted": sum(c.greeted for c in silent),
                   "alive": silent_alive,
                   "closed_early": sum(1 for c in silent if c.closed)},
        "slow": {"n": len(slow), "greeted": sum(c.greeted for c in slow), "alive": slow_alive,
                 "bytes_sent": sum(c.bytes_sent for c in slow),
                 "capa_answers": [c.capa_answers for c in slow],
                 "expected_capa": SLOW_BYTES // 6},
        "flood": {"n": len(flood), "closed": sum(c.closed for c in flood),
                  "pushed": [c.pushed for c in flood], "closes": closes(flood)},
        "tls": {"n": len(stallers), "closes": closes(stallers),
                "answered": sum(1 for c in stallers if c.got)},
        "pipeline": [{"answers": p.answers, "complete": p.complete, "errors": p.errors,
                      "closed": p.closed, "how": p.how, "bytes": p.bytes_in} for p in pipes],
        "pipeline_drain_secs": round(drain_secs, 2),
        "retr": {"n": len(retrs), "alive": retr_alive, "heads": retr_heads},
    }
    for c in silent + slow + flood + pipes + stallers:
        c.close_local()
    emit(result)
    return 0


# ================================================================ the test (parent process)

class RssSampler(threading.Thread):
    """VmRSS and VmHWM (KiB) of pid every 50 ms until stop()."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []          # (monotonic, rss_kb, hwm_kb)
        self._halt = threading.Event()

    def read(self):
        rss = hwm = None
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return rss, hwm

    def run(self):
        while not self._halt.wait(0.05):
            try:
                rss, hwm = self.read()
            except (OSError, ValueError):
                return
            self.samples.append((time.monotonic(), rss, hwm))

    def stop(self):
        self._halt.set()
        self.join(5)

    def peak_rss(self, since=0.0):
        return max((r for t, r, _h in self.samples if t >= since), default=0)


def rss_bound(idle_total_kb, idle_kb, n_more, heavy, tls):
    """The most pop3d may hold (KiB) under the attack:
       idle_total_kb          the daemon holding the SILENT idle connections, measured before
                              the attack (base + SILENT * idle_kb; idle_kb itself is checked
                              against IDLE_CONN_CEILING_KB, so this part is bounded a priori)
     + n_more * idle_kb * 1.5 every other connection (slow, flood, pipeline, RETR, TLS) at the
                              measured idle cost plus half (a session in TRANSACTION also holds
                              its maildrop snapshot; the input buffer is INPUT_BUF_SIZE)
     + heavy * OUTPUT_CAP_KB  each RETR/pipeline session: limits.h (read at run time) lets the
                              output queue reach OUTPUT_HIGH_WATER plus one encoded chunk
                              (2 * FILE_CHUNK) before it stops producing; the queue and the
                              buffer in flight may each have held that much (touched pages
                              stay resident), plus the FILE_CHUNK read buffer
     + tls * TLS_CONN_KB      each handshake in progress: an OpenSSL SSL object and its buffers
                              plus the TLS_READ_BUF ciphertext buffer
     + HASH_KB                the probe's login: libxcrypt's yescrypt at its default cost
                              (N=4096, r=32) works in 128*r*N = 16 MiB while it runs
     + SLACK_KB               malloc arenas and fragmentation (ASan: redzones and quarantine).
    What is not in it: any buffering of a flooder's 10 MB line or of a 20 MB message, either of
    which would overshoot the normal build's slack on its own."""
    return int(idle_total_kb + n_more * idle_kb * 1.5 + heavy * OUTPUT_CAP_KB
               + tls * TLS_CONN_KB + HASH_KB + SLACK_KB)


class HostileLoadTest(Pop3TestCase):
    maxDiff = None

    def setUp(self):
        # The attacker child raises its soft limit to what it needs, and pop3d raises its own to
        # max_connections * 2 + 64 (both within the hard limit they inherit from us).
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < SILENT + 1000:
            self.skipTest("RLIMIT_NOFILE hard limit %d is too low for %d connections"
                          % (hard, SILENT))

    def start_daemon(self):
        probe_pw = "probe-pw-4711"
        users = {"probe": crypt_secret(probe_pw)}
        plan_users = {"pipe": [], "big": []}
        for i in range(PIPELINE):
            users["pipe%d" % i] = "{PLAIN}pipe%d-pw" % i
            plan_users["pipe"].append(("pipe%d" % i, "pipe%d-pw" % i))
        for i in range(RETR_CLIENTS):
            users["big%d" % i] = "{PLAIN}big%d-pw" % i
            plan_users["big"].append(("big%d" % i, "big%d-pw" % i))
        n_total = (SILENT + SLOW + FLOOD + PIPELINE + RETR_CLIENTS
                   + 3 * TLS_PER_KIND * len(TLS_WAVES))
        d = TlsDaemon(test_certs(), users=users, plaintext="always", failure_delay=0.2,
                      handshake_timeout=HANDSHAKE_TIMEOUT,
                      max_connections=n_total + 500, max_connections_per_ip=200)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        # maildrops: the probe's small message, three small ones per pipeliner, one 20 MB message
        # hard-linked into every big user's maildrop
        self.small = b"From: a@example.org\nSubject: probe\n\nhello from the probe\n.dot line\n"
        deliver(d.maildir("probe"), self.small)
        for i in range(PIPELINE):
            for k in range(3):
                deliver(d.maildir("pipe%d" % i), b"Subject: m%d\n\nbody %d\n" % (k, k))
        line = b"X" * 76 + b"\n"
        big = b"Subject: big\n\n" + line * ((BIG_SIZE - 14) // len(line))
        big += b"Y" * (BIG_SIZE - len(big) - 1) + b"\n"
        name = deliver(d.maildir("big0"), big)
        for i in range(1, RETR_CLIENTS):
            os.link(os.path.join(d.maildir("big0"), "new", name),
                    os.path.join(d.maildir("big%d" % i), "new", name))
        self.big_pop3_size = len(big) + big.count(b"\n")   # every LF becomes CRLF
        d.start()
        return d, probe_pw, plan_users, n_total

    def probe(self, d, password, tls):
        """connect (+ TLS handshake), USER/PASS, STAT, RETR 1, QUIT: seconds, or raise."""
        t0 = time.monotonic()
        if tls:
            c = TlsClient(d.tls_port, greeting=False, timeout=10)
            try:
                c.start_tls(client_context(test_certs().cafile))
                c.greeting = c.line()
            except BaseException:
                c.close()
                raise
        else:
            c = Client(d.port, timeout=10)
        try:
            self.assertOK(c.greeting)
            c.login("probe", password)
            self.assertEqual(c.cmd("STAT"), b"+OK 1 %d" % pop3_size(self.small))
            st, data = c.cmd_multi("RETR 1")
            self.assertOK(st)
            self.assertEqual(data, expected_retr(self.small))
            c.quit()
        finally:
            c.close()
        return time.monotonic() - t0

    def assertOK(self, st, msg=None):
        self.assertTrue(st.startswith(b"+OK"), msg or st)

    def test_hostile_load(self):
        t_test = time.monotonic()
        d, probe_pw, plan_users, n_total = self.start_daemon()
        pid = d.proc.pid
        sampler = RssSampler(pid)
        sampler.start()
        self.addCleanup(sampler.stop)

        # warm up (thread pool, TLS, the users file) and take the base
        self.probe(d, probe_pw, tls=False)
        self.probe(d, probe_pw, tls=True)
        base_kb = self.stable_rss(sampler)

        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--attacker"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, cwd=HERE)
        self.addCleanup(self.reap, child)
        events = queue.Queue()
        threading.Thread(target=self.read_child, args=(child, events), daemon=True).start()
        child.stdin.write((json.dumps({"port": d.port, "tls_port": d.tls_port,
                                       "users": plan_users}) + "\n").encode())
        child.stdin.flush()

        ramped = self.next_event(events, "ramped", RAMP_DEADLINE + 15, child)
        self.assertEqual(ramped["greeted"], SILENT, "silent connections greeted: %r" % ramped)
        idle_total_kb = self.stable_rss(sampler)
        idle_kb = (idle_total_kb - base_kb) / SILENT
        child.stdin.write(b"go\n")
        child.stdin.flush()
        self.next_event(events, "attacking", 20, child)
        t_attack = time.monotonic()

        # probes during the attack: plain and TLS in turn, until the child says it is over
        latencies = []
        failures = []
        over = None
        k = 0
        deadline = t_attack + ATTACK_SECONDS + 30
        while over is None and time.monotonic() < deadline and k < 200:
            try:
                tls = k % 2 == 1
                latencies.append(("tls" if tls else "plain", self.probe(d, probe_pw, tls)))
            except Exception as e:   # a probe failing is the finding: keep going, report all
                failures.append("probe %d (%s): %r" % (k, "tls" if k % 2 else "plain", e))
            k += 1
            try:
                over = events.get(timeout=PROBE_EVERY)
            except queue.Empty:
                pass
        attack_peak_kb = sampler.peak_rss(t_attack)
        result = over if over is not None and over.get("ev") == "result" else \
            self.next_event(events, "result", DRAIN_DEADLINE + 20, child)
        child.wait(20)
        after = self.probe(d, probe_pw, tls=False)   # still serving once it is all over
        self.assertTrue(d.alive(), "pop3d died")
        sampler.stop()
        _rss, hwm_kb = sampler.read()
        peak_kb = max(sampler.peak_rss(), hwm_kb)

        heavy = PIPELINE + RETR_CLIENTS
        n_tls_at_once = 3 * TLS_PER_KIND
        bound_kb = rss_bound(idle_total_kb, max(idle_kb, 1.0), n_total - SILENT, heavy,
                             n_tls_at_once)
        lat = sorted(l for _k, l in latencies)
        tls_after = [c["after"] for c in result["tls"]["closes"]]
        flood_after = [c["after"] for c in result["flood"]["closes"] if c["after"] is not None]
        report = [
            "hostile-load: build=%s silent=%d slow=%d flood=%d tls-stall=%d pipeline=%d retr=%d"
            % ("asan" if SAN else "normal", SILENT, SLOW, FLOOD, len(tls_after), PIPELINE,
               RETR_CLIENTS),
            "hostile-load: base RSS %d KiB; with %d idle connections %d KiB: %.1f KiB per idle "
            "connection (ramp %.1f s)" % (base_kb, SILENT, idle_total_kb, idle_kb, ramped["secs"]),
            "hostile-load: peak RSS during the attack %d KiB, VmHWM %d KiB (%.1f MiB); bound %d KiB"
            % (attack_peak_kb, hwm_kb, peak_kb / 1024.0, bound_kb),
            "hostile-load: %d probes under attack, latency min %.3f median %.3f max %.3f s; "
            "after the attack %.3f s" % (len(lat), lat[0] if lat else -1,
                                         lat[len(lat) // 2] if lat else -1,
                                         lat[-1] if lat else -1, after),
            "hostile-load: probe latencies (s, in order): %s"
            % " ".join("%s:%.3f" % (k[0], l) for k, l in latencies),
            "hostile-load: flooders closed after %s s, having pushed %s KiB (max %d KiB)"
            % (self.span(flood_after), self.span([p // 1024 for p in result["flood"]["pushed"]]),
               max(result["flood"]["pushed"] or [0]) // 1024),
            "hostile-load: TLS stallers closed %s s after connect (handshake_timeout %d s)"
            % (self.span([a for a in tls_after if a is not None]), HANDSHAKE_TIMEOUT),
            "hostile-load: pipeliners drained in %.2f s: %s answers each"
            % (result["pipeline_drain_secs"], [p["answers"] for p in result["pipeline"]]),
            "hostile-load: whole test %.1f s" % (time.monotonic() - t_test),
        ]
        sys.stdout.write("\n" + "\n".join(report) + "\n")
        sys.stdout.flush()

        # -- the checks
        self.assertEqual(failures, [], "probes failed under attack")
        self.assertGreaterEqual(len(lat), 5, "too few probes ran during the attack")
        self.assertEqual(d.log_lines("connection refused"), [], "limits set too low for the test")
        self.assertEqual(d.log_lines("open files limit"), [])
        slow_probes = [(k, round(l, 3)) for k, l in latencies if l >= PROBE_LIMIT]
        self.assertEqual(slow_probes, [], "probes slower than %.1f s" % PROBE_LIMIT)
        within = sum(1 for _k, l in latencies if l < PROBE_GOAL)
        self.assertGreaterEqual(within, PROBE_SHARE * len(latencies),
                                "only %d of %d probes within %.1f s: %r"
                                % (within, len(latencies), PROBE_GOAL, latencies))
        self.assertLess(lat[len(lat) // 2], PROBE_MEDIAN_LIMIT,
                        "median probe latency: %r" % latencies)

        s = result["silent"]
        self.assertEqual((s["alive"], s["closed_early"]), (SILENT, 0), s)
        s = result["slow"]
        self.assertEqual((s["greeted"], s["alive"]), (SLOW, SLOW), {k: v for k, v in s.items()
                                                                     if k != "capa_answers"})
        self.assertEqual(s["bytes_sent"], SLOW * SLOW_BYTES)
        self.assertEqual(set(s["capa_answers"]), {s["expected_capa"]},
                         "CAPA answers to slow clients")

        f = result["flood"]
        self.assertEqual(f["closed"], FLOOD, "flooders left open: %r" % f["closes"])
        unfinished = [p for p in f["pushed"] if p >= FLOOD_BYTES]
        self.assertEqual(unfinished, [], "the server read a whole 10 MB line before closing")
        self.assertGreaterEqual(d.count_log('reason="line flood"'), FLOOD)

        t = result["tls"]
        self.assertEqual(t["answered"], 0, "the server answered half a ClientHello")
        late = [c for c in t["closes"] if c["after"] is None or
                not HANDSHAKE_TIMEOUT - 0.3 <= c["after"] <= HANDSHAKE_TIMEOUT + TLS_CLOSE_SLACK]
        self.assertEqual(late, [], "TLS stallers not closed at handshake_timeout")
        self.assertGreaterEqual(d.count_log('reason="tls handshake timeout"'), len(t["closes"]))

        for i, p in enumerate(result["pipeline"]):
            self.assertEqual((p["complete"], p["errors"]), (True, []), "pipeliner %d: %r" % (i, p))
            self.assertEqual(p["answers"], PIPELINE_CMDS + 1, p)

        r = result["retr"]
        self.assertEqual(r["alive"], RETR_CLIENTS, "RETR clients closed by the server: %r" % r)
        for h in r["heads"]:
            self.assertEqual(len(h), 4, h)
            self.assertTrue(all(x.startswith("+OK") for x in h), h)
            self.assertEqual(h[3], "+OK %d octets" % self.big_pop3_size, h)

        self.assertLessEqual(idle_kb, IDLE_CONN_CEILING_KB,
                             "one idle connection costs %.1f KiB" % idle_kb)
        self.assertLessEqual(peak_kb, bound_kb, "peak RSS %d KiB above the bound %d KiB"
                             % (peak_kb, bound_kb))
        self.assertLess(time.monotonic() - t_test, 120 if SAN else 60)

        d.stop()      # SIGTERM with the closes still being logged: must exit 0, no sanitizer report
        reasons = {}
        for line in d.log_lines("session end"):
            m = re.search(r'reason="([^"]*)"', line)
            reasons[m.group(1) if m else "?"] = reasons.get(m.group(1) if m else "?", 0) + 1
        sys.stdout.write("hostile-load: session ends by reason: %s\n"
                         % ", ".join("%s %d" % kv for kv in sorted(reasons.items())))

    # -- helpers

    @staticmethod
    def span(values):
        if not values:
            return "-"
        return "%s..%s" % (min(values), max(values))

    @staticmethod
    def stable_rss(sampler):
        """VmRSS once it stays within 256 KiB over 5 samples 0.1 s apart (at most 10 s)."""
        window = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            window.append(sampler.read()[0])
            window = window[-5:]
            if len(window) == 5 and max(window) - min(window) <= 256:
                break
            time.sleep(0.1)   # sampling period
        return window[-1]

    @staticmethod
    def read_child(child, events):
        for raw in iter(child.stdout.readline, b""):
            try:
                events.put(json.loads(raw))
            except ValueError:
                events.put({"ev": "noise", "line": raw.decode(errors="replace")})
        events.put({"ev": "eof"})

    def next_event(self, events, name, timeout, child):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ev = events.get(timeout=left)
            except queue.Empty:
                break
            if ev.get("ev") == name:
                return ev
            seen.append(ev)
            if ev.get("ev") in ("eof", "error"):
                break
        err = b""
        if child.poll() is not None:
            err = child.stderr.read()
        self.fail("attacker: no %r event within %ss; got %r; stderr %s"
                  % (name, timeout, seen, err.decode(errors="replace")[-3000:]))

    @staticmethod
    def reap(child):
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for f in (child.stdin, child.stdout, child.stderr):
            try:
                f.close()
            except OSError:
                pass


if __name__ == "__main__":
    if sys.argv[1:] == ["--attacker"]:
        sys.exit(attacker_main())
    unittest.main()
