// The scenario builder of the differential test: a python3 program, run inside a network
// namespace of the test's own, that builds random sockets from a seed and prints the truth it
// built as one JSON line once every socket is in the state it reports (checked against
// /proc/net, not waited for with a sleep). It exits when its stdin closes.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One socket arrangement the scenario built, as it reports it.
struct ScenarioItem: Sendable {
    /// `listen`, `bound` (TCP bound-only) or `udp`.
    var kind: String
    var proto: String
    var port: Int
    var address: String
    /// `v4`, `v6only` or `dual`.
    var family: String
    var backlog: Int
    /// Server-side connections (accepted or waiting in the accept queue).
    var established: Int
    /// Connections completed but never accepted.
    var queued: Int
    /// Server-side TIME_WAIT sockets (the server closed first).
    var timeWait: Int
    /// Processes holding the socket (a fork after listen makes two).
    var pids: Set<Int>
    /// The socket sits above fd 1023 only, in a process with more than 1024 open fds (a
    /// listener moved there on purpose, or any socket opened after that process grew).
    var highFD: Bool { fd > 1023 }
    /// The listener's fd number (in every process that holds it).
    var fd: Int

    init?(_ object: [String: Any]) {
        guard let kind = object["kind"] as? String, let proto = object["proto"] as? String,
              let port = (object["port"] as? NSNumber)?.intValue, let address = object["address"] as? String,
              let family = object["family"] as? String else { return nil }
        self.kind = kind
        self.proto = proto
        self.port = port
        self.address = address
        self.family = family
        backlog = (object["backlog"] as? NSNumber)?.intValue ?? 0
        established = (object["established"] as? NSNumber)?.intValue ?? 0
        queued = (object["queued"] as? NSNumber)?.intValue ?? 0
        timeWait = (object["time_wait"] as? NSNumber)?.intValue ?? 0
        pids = Set(((object["pids"] as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.intValue })
        fd = (object["fd"] as? NSNumber)?.intValue ?? 0
    }
}

/// What a scenario built: its items, the client-side ports it used (which are no rows of
/// their own), and ports whose holder exited before the truth was printed.
struct ScenarioTruth: Sendable {
    var seed: UInt64
    var items: [ScenarioItem]
    var clientPorts: Set<Int>
    var clientTimeWaitPorts: Set<Int>
    var gonePorts: Set<Int>
    var holderPid: Int
    /// Short-lived processes fork and exit while portwatch walks /proc.
    var churn: Bool
    var raw: String

    init?(line: String) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let seed = (object["seed"] as? NSNumber)?.uint64Value,
              let items = object["items"] as? [[String: Any]] else { return nil }
        self.seed = seed
        self.items = items.compactMap(ScenarioItem.init)
        func ints(_ key: String) -> Set<Int> { Set(((object[key] as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.intValue }) }
        clientPorts = ints("client_ports")
        clientTimeWaitPorts = ints("client_time_wait_ports")
        gonePorts = ints("gone_ports")
        holderPid = (object["holder_pid"] as? NSNumber)?.intValue ?? 0
        churn = object["churn"] as? Bool ?? false
        raw = line
        guard self.items.count == items.count else { return nil }
    }
}

enum DifferentialScenario {
    /// argv: SEED. Ports 20000-29999 (below the ephemeral range, in a namespace nothing else uses).
    static let script = #"""
import json, os, random, resource, select, socket, sys

seed = int(sys.argv[1])
rng = random.Random(seed)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 2048:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))

used = set()
def fresh_port():
    for _ in range(10000):
        p = rng.randint(20000, 29999)
        if p not in used:
            used.add(p)
            return p
    raise SystemExit("no port")

def family():
    return rng.choice(["v4", "v6only", "dual"])

def address(fam, wildcard):
    if fam == "v4":
        return "0.0.0.0" if wildcard else "127.0.0.1"
    if fam == "dual":
        return "::"
    return "::" if wildcard else "::1"

def new_socket(fam, kind):
    s = socket.socket(socket.AF_INET if fam == "v4" else socket.AF_INET6, kind)
    if fam != "v4":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if fam == "dual" else 1)
    return s

def client_target(fam):
    if fam == "v4":
        return "127.0.0.1"
    if fam == "v6only":
        return "::1"
    return rng.choice(["127.0.0.1", "::1"])

# The plan is drawn before any fork, so the same seed builds the same scenario.
workers = []
for w in range(rng.randint(1, 3)):
    items = []
    for _ in range(rng.randint(1, 4)):
        fam = family()
        r = rng.random()
        if r < 0.55:
            backlog = rng.randint(1, 16)
            conns = rng.randint(0, min(backlog, 5))
            items.append({"kind": "listen", "fam": fam, "wild": rng.random() < 0.5, "port": fresh_port(),
                          "backlog": backlog, "conns": conns, "accept": rng.randint(0, conns),
                          "server_tw": rng.randint(0, 2), "client_tw": rng.randint(0, 1),
                          "share": rng.random() < 0.25, "high": rng.random() < 0.2,
                          "target": client_target(fam)})
        elif r < 0.8:
            items.append({"kind": "udp", "fam": fam, "wild": rng.random() < 0.5, "port": fresh_port()})
        else:
            items.append({"kind": "bound", "fam": fam, "wild": rng.random() < 0.5, "port": fresh_port()})
    workers.append(items)
gone = [{"fam": family(), "port": fresh_port()} for _ in range(rng.randint(0, 2))]
churn = rng.random() < 0.5

STATES = {"01": "established", "06": "time_wait"}
def proc_counts():
    counts = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            next(f)
            for line in f:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                state = STATES.get(fields[3])
                if state:
                    counts[(port, state)] = counts.get((port, state), 0) + 1
    return counts

def wait_for(expected):
    # The kernel finishes loopback handshakes and closes in softirq context, a moment after
    # connect()/close() return: poll /proc/net until it shows what this worker built.
    for _ in range(4000):
        counts = proc_counts()
        if all(counts.get(k, 0) == v for k, v in expected.items()):
            return
        select.select([], [], [], 0.005)
    raise SystemExit("sockets never reached their states: %r vs %r" % (expected, proc_counts()))

def run_worker(items, report_w, release_r):
    keep, truth, client_ports, client_tw, expected, sharers = [], [], [], [], {}, []
    me = os.getpid()
    high_fd = 1900  # above every fd this worker opens otherwise (RLIMIT_NOFILE is 2048)
    spare = []
    for it in items:
        fam, port = it["fam"], it["port"]
        addr = address(fam, it["wild"])
        if it["kind"] == "udp":
            s = new_socket(fam, socket.SOCK_DGRAM); s.bind((addr, port)); keep.append(s)
            truth.append({"kind": "udp", "proto": "udp", "port": port, "address": addr, "family": fam, "pids": [me], "fd": s.fileno()})
            continue
        if it["kind"] == "bound":
            s = new_socket(fam, socket.SOCK_STREAM); s.bind((addr, port)); keep.append(s)
            truth.append({"kind": "bound", "proto": "tcp", "port": port, "address": addr, "family": fam, "pids": [me], "fd": s.fileno()})
            continue
        l = new_socket(fam, socket.SOCK_STREAM); l.bind((addr, port)); l.listen(it["backlog"])
        target = it["target"]
        tw = 0
        for _ in range(it["server_tw"]):
            c = socket.create_connection((target, port)); a, _ = l.accept()
            a.close()                      # the server closes first: its side goes TIME_WAIT
            c.recv(1); c.close()
            tw += 1
        for _ in range(it["client_tw"]):
            c = socket.create_connection((target, port)); a, _ = l.accept()
            client_tw.append(c.getsockname()[1])
            c.close()                      # the client closes first: TIME_WAIT on its own port
            a.recv(1); a.close()
        clients = [socket.create_connection((target, port)) for _ in range(it["conns"])]
        accepted = [l.accept()[0] for _ in range(it["accept"])]
        client_ports += [c.getsockname()[1] for c in clients]
        keep += clients + accepted
        # Local port P: the server's ends only (each client end has an ephemeral port of its own).
        expected[(port, "established")] = it["conns"]
        expected[(port, "time_wait")] = tw
        for p in client_tw:
            expected[(p, "time_wait")] = 1
        if it["high"]:
            # More than 1024 open fds, as a busy server has: the owner search must look past
            # fd 1023 to find this listener.
            while len(os.listdir("/proc/self/fd")) < 1040:
                spare.append(os.open("/dev/null", os.O_RDONLY))
            os.dup2(l.fileno(), high_fd)
            l.close()
            l = socket.socket(fileno=high_fd)
            high_fd += 1
        keep.append(l)
        entry = {"kind": "listen", "proto": "tcp", "port": port, "address": addr, "family": fam,
                 "backlog": it["backlog"], "established": it["conns"], "queued": it["conns"] - it["accept"],
                 "time_wait": tw, "pids": [me], "high_fd": it["high"], "fd": l.fileno()}
        if it["share"]:
            # Fork after listen: the child holds this one listener (it closes the rest).
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                for s in keep:
                    if s is not l:
                        s.close()
                os.close(report_w)
                os.write(w, b"x"); os.close(w)
                os.read(release_r, 1)
                os._exit(0)
            os.close(w); os.read(r, 1); os.close(r)
            sharers.append(pid)
            entry["pids"].append(pid)
        truth.append(entry)
    wait_for(expected)
    os.write(report_w, (json.dumps({"items": truth, "client_ports": client_ports,
                                    "client_time_wait_ports": client_tw}) + "\n").encode())
    os.close(report_w)
    os.read(release_r, 1)
    for pid in sharers:
        os.waitpid(pid, 0)
    os._exit(0)

release_r, release_w = os.pipe()
reports, pids = [], []
for items in workers:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r); os.close(release_w)
        for fd in reports:
            os.close(fd)
        try:
            run_worker(items, w, release_r)
        except BaseException as e:
            sys.stderr.write("worker: %r\n" % (e,)); sys.stderr.flush()
            os._exit(3)
    os.close(w)
    reports.append(r); pids.append(pid)

# Processes that held ports and exited before the truth is told: their ports are free again.
for g in gone:
    pid = os.fork()
    if pid == 0:
        s = new_socket(g["fam"], socket.SOCK_STREAM); s.bind((address(g["fam"], True), g["port"])); s.listen(4)
        u = new_socket(g["fam"], socket.SOCK_DGRAM); u.bind((address(g["fam"], True), g["port"]))
        os._exit(0)
    os.waitpid(pid, 0)

truth = {"seed": seed, "holder_pid": os.getpid(), "churn": churn, "items": [], "client_ports": [],
         "client_time_wait_ports": [], "gone_ports": [g["port"] for g in gone]}
for r in reports:
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    if not data:
        sys.stderr.write("a worker failed\n"); sys.exit(3)
    part = json.loads(data)
    for k in ("items", "client_ports", "client_time_wait_ports"):
        truth[k] += part[k]

# Processes come and go while portwatch walks /proc (bounded: 20000 forks or stdin closing).
churner = None
if churn:
    churner = os.fork()
    if churner == 0:
        os.close(release_w)
        for _ in range(20000):
            if select.select([release_r], [], [], 0)[0]:
                break
            p = os.fork()
            if p == 0:
                os._exit(0)
            os.waitpid(p, 0)
        os._exit(0)

print(json.dumps(truth), flush=True)
try:
    while os.read(0, 4096):
        pass
finally:
    os.close(release_w)
    for pid in pids + ([churner] if churner else []):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
"""#
}
