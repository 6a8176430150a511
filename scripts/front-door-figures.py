#!/usr/bin/env python3
"""Front-door figures against the real binary: slowloris connections held and time to cut, RSS
under N slow connections (from /proc/<pid>/status), and the connection cap under a flood.

usage: scripts/front-door-figures.py [BINARY] [SLOW_CONNS] [MAX_CONNECTIONS]
(defaults: target/debug/interop-gate, 1000, 2000). Takes ~30 s; nothing is left running.
"""
import os, socket, subprocess, sys, tempfile, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/interop-gate"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
CAP = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
PORT, MPORT = 18545, 17300


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{MPORT}/metrics", timeout=5).read().decode()
    return [l for l in text.splitlines() if l.startswith(name)]


def legit_ms():
    t = time.time()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=5).read()
        return round((time.time() - t) * 1000, 1)
    except Exception as e:
        return f"failed: {e}"


def run(cap, n, hold_secs):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[server]
listen = "127.0.0.1:{PORT}"
max_connections = {cap}
[metrics]
listen = "127.0.0.1:{MPORT}"
[admin]
listen = ""
[log]
level = "warn"
""")
    cfg.close()
    p = subprocess.Popen([BIN, "--config", cfg.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.3)
        base = rss_kib(p.pid)
        socks, opened = [], time.time()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            s.setblocking(False)
            try:
                s.send(b"POST / HTTP/1.1\r\n")
            except OSError:
                pass
            socks.append([s, None])
        peak, t0 = base, time.time()
        legit = legit_ms()
        while time.time() - t0 < hold_secs and any(c is None for _, c in socks):
            for entry in socks:
                s, closed = entry
                if closed is not None:
                    continue
                try:
                    got = s.recv(4096)
                    if got.startswith(b"HTTP/1.1 503"):
                        entry[1] = -1.0  # refused at the cap
                        continue
                    if got == b"":
                        entry[1] = time.time() - opened
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    entry[1] = time.time() - opened
                    continue
                try:
                    s.send(b"x")
                except OSError:
                    entry[1] = time.time() - opened
            peak = max(peak, rss_kib(p.pid))
            time.sleep(1)
        cut = sorted(c for _, c in socks if c is not None)
        quick = [c for c in cut if c < 0]
        held = [c for c in cut if c >= 0]
        print(f"cap={cap} slow connections={n}: RSS {base} KiB idle -> peak {peak} KiB "
              f"(+{(peak - base) / max(1, n - len(quick)):.1f} KiB per held connection)")
        print(f"  refused at once (503): {len(quick)}; held then cut: {len(held)}"
              + (f", cut after {held[0]:.1f}..{held[-1]:.1f} s" if held else "")
              + f"; still open after {hold_secs} s: {n - len(cut)}")
        print(f"  legit GET /healthz during the attack: {legit} ms")
        print("  " + "; ".join(metric("interop_gate_connections_")))
        for s, _ in socks:
            s.close()
    finally:
        p.terminate()
        p.wait(timeout=30)
        os.unlink(cfg.name)


if __name__ == "__main__":
    run(CAP, N, 16)  # RSS and time to cut with the default timeouts, all held
    run(512, 2 * N, 16)  # the default cap under a flood twice its size
