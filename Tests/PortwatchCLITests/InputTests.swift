// Command-line input: mistyped commands, option values that start with '-', values from fixed
// sets, --tcp/--udp against service names and suffixes, signal names.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Exit 2 and one `portwatch: ` line on stderr that says `mentions`.
private func expectRejected(_ arguments: [String], mentions: String, notMentioning: String? = nil,
                            sourceLocation: SourceLocation = #_sourceLocation) {
    let r = runPortwatch(arguments)
    #expect(r.status == 2, "\(r)", sourceLocation: sourceLocation)
    #expect(r.stderrLines.count == 1 && r.stderr.hasPrefix("portwatch: "), "\(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(mentions), "\(arguments): \(r)", sourceLocation: sourceLocation)
    if let notMentioning { #expect(!r.stderr.contains(notMentioning), "\(r)", sourceLocation: sourceLocation) }
    #expect(r.stdout.isEmpty, "\(r)", sourceLocation: sourceLocation)
}

@Suite("input: commands, option values, protocol flags", .blocking)
struct CLIInputTests {
    @Test func unknownCommandsAreNamed() {
        expectRejected(["checkk", "80"], mentions: "unknown command 'checkk' (did you mean 'check'?)")
        expectRejected(["conections", "80"], mentions: "did you mean 'connections'?")
        // `daemon` is a command now (the monitor): a near miss of it is named, a far one lists them.
        expectRejected(["deamon"], mentions: "unknown command 'deamon' (did you mean 'daemon'?)")
        expectRejected(["frobnicate"], mentions: "unknown command 'frobnicate' (commands: ")
        // A port list as the first word still means `ports`.
        let ports = runPortwatch(["65000", "--json"])
        #expect(ports.status != 2, "\(ports)")
    }

    @Test func negativeOptionValuesReachTheirOption() {
        expectRejected(["free", "--count", "-1"], mentions: "--count", notMentioning: "invalid port")
        expectRejected(["top", "--iterations", "-1"], mentions: "--iterations", notMentioning: "invalid port")
        expectRejected(["check", "80", "--timeout", "-1s"], mentions: "must not be negative", notMentioning: "Missing value")
        expectRejected(["check", "-1"], mentions: "invalid port '-1'")
    }

    @Test func timeoutsAreValidatedLocallyToo() {
        expectRejected(["check", "80", "--timeout", "5x"], mentions: "unknown unit 'x'")
        expectRejected(["check", "80", "--timeout", "abc"], mentions: "'abc'")
        expectRejected(["check", "80", "--timeout", "0s"], mentions: "more than 0")
        expectRejected(["wait", "80", "--until", "free", "--timeout", "soon"], mentions: "'soon'")
    }

    @Test func fixedSetsListTheirValues() {
        expectRejected(["check", "80", "--expect", "sideways"], mentions: "free, listening, busy")
        expectRejected(["wait", "80", "--until", "sideways"], mentions: "'listening', 'free', 'open' or 'closed'")
        expectRejected(["top", "--sort", "size"], mentions: "'rx', 'tx', 'conns' or 'errors'")
        expectRejected(["connections", "80", "--state", "listen"], mentions: "established")
        expectRejected(["kill", "80", "--signal", "FOO", "--yes"], mentions: "RTMAX")
        // Case does not matter.
        let upper = runPortwatch(["check", "65000", "--expect", "FREE"])
        #expect(upper.status != 2, "\(upper)")
    }

    /// `check ssh --udp` checks udp/22 (ssh is listed for TCP only), not tcp/22.
    @Test func udpFlagAppliesToServiceNames() throws {
        let r = runPortwatch(["check", "ssh", "--udp", "--json"])
        #expect(r.status == 0 || r.status == 1, "\(r)")
        #expect(r.json()?.string("protocol") == "udp")
        #expect(r.json()?.int("port") == 22)
    }

    /// `ports 53/udp --tcp` names no TCP port: an error, never the UDP row.
    @Test func suffixAgainstFlagShowsNoOtherProtocol() throws {
        let udp = try Net.udpSocket()
        defer { udp.close() }
        let port = udp.port
        expectRejected(["ports", "\(port)/udp", "--tcp"], mentions: "--tcp")
        let both = runPortwatch(["ports", "\(port)/udp,\(port)", "--tcp", "--json"])
        let rows = both.stdout.isEmpty ? [] : (both.json()?.objects("ports") ?? [])
        #expect(!rows.contains { $0.string("protocol") == "udp" }, "\(both)")
    }

    /// Every signal `kill -l` lists is accepted (and listed in --help).
    @Test func everySignalNameKillKnows() throws {
        let list = runTool("/bin/bash", ["-c", "kill -l"])
        let names = list.stdout.split(whereSeparator: { $0 == "\t" || $0 == "\n" })
            .compactMap { $0.split(separator: ")").last?.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("SIG") }
        #expect(names.count >= 60, "\(list)")
        let help = runPortwatch(["kill", "--help"]).stdout.replacingOccurrences(of: "\n", with: " ")
            .split(separator: " ").joined(separator: " ")
        let port = try Net.closedPort()
        for name in names {
            #expect(help.contains(String(name.dropFirst(3))), "\(name) not in kill --help")
        }
        // Parsed, then nothing listens: a definite no (1), not bad input (2).
        for name in ["SIGRTMIN+3", "rtmax-2", "WINCH", "SIGPWR", "35"] {
            let r = runPortwatch(["kill", "\(port)", "--signal", name, "--yes"])
            #expect(r.status == 1, "\(name): \(r)")
        }
    }

    /// `wait --json` gives the ports as a list of objects.
    @Test func waitJSONListsPorts() throws {
        let port = try Net.closedPort()
        let r = runPortwatch(["wait", "\(port)", "--until", "free", "--timeout", "2s", "--json"])
        #expect(r.status == 0, "\(r)")
        let ports = r.json()?.objects("ports") ?? []
        #expect(ports.count == 1 && ports[0].int("port") == Int(port) && ports[0].bool("reached") == true, "\(r)")
        #expect(ports.first?.string("protocol") == "tcp")
    }

    /// Without a terminal, `top` prints JSON Lines, as the README says.
    @Test func topWithoutTerminalPrintsJSONLines() throws {
        let r = runPortwatch(["top", "--iterations", "2", "--interval", "100ms"])
        #expect(r.status == 0, "\(r)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(r)")
        for line in lines {
            let doc = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(doc?["ports"] is [Any], "\(line.prefix(200))")
        }
    }
}

@Suite("forced /proc/net fallback", .blocking)
struct ProcfsFallbackTests {
    /// Forced procfs says it was forced (not "unavailable") and shows unknown bytes as `-`.
    @Test func forcedProcfsSaysSoAndHidesUnknownBytes() throws {
        let listener = try Net.tcpListenerOnFreePort()
        defer { listener.close() }
        // /proc/net/tcp is read whole: with other programs' sockets by the hundred thousand on a
        // shared machine, a debug build takes a while.
        let r = runPortwatch(["ports", "\(listener.port)"], timeout: 90, environment: ["PORTWATCH_SOCKET_SOURCE": "procfs"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stderr.contains("sock_diag not used"), "\(r)")
        #expect(!r.stderr.contains("unavailable"), "\(r)")
        let row = r.stdout.split(separator: "\n").first { $0.contains(" \(listener.port) ") }
        #expect(row != nil, "\(r)")
        #expect(row.map { !$0.contains("0 B") } == true, "unknown bytes shown as zero: \(r)")
        let json = runPortwatch(["ports", "\(listener.port)", "--json"], timeout: 90,
                                environment: ["PORTWATCH_SOCKET_SOURCE": "procfs"])
        #expect(json.json()?.string("source") == "procfs")
    }
}
