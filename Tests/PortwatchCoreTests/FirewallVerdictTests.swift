// The nftables evaluator on rulesets that nft itself produced: each test loads a ruleset into
// a network namespace of its own (never the host's), reads it back with `nft -j list ruleset`
// and asks the evaluator for verdicts. So the JSON shapes are the real ones of the installed
// nft, not shapes written by hand.

import Foundation
import Synchronization
import Testing
@testable import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

private let nftPath = findExecutable("nft")
private let ipPath = findExecutable("ip")
private let namespaceCounter = Mutex(0)

/// Root with `ip` and `nft`, and a namespace can really be made.
private let canUseNamespaces: Bool = {
    guard geteuid() == 0, let ip = ipPath, nftPath != nil else { return false }
    let name = "pwa-\(getpid())-probe"
    defer { _ = runCommand(ip, ["netns", "delete", name], timeout: 5) }
    return runCommand(ip, ["netns", "add", name], timeout: 5).status == 0
}()

/// Loads `ruleset` (nft syntax; nil loads nothing) into a fresh namespace and returns
/// `nft -j list ruleset` from there. The namespace is deleted before returning.
private func nftJSON(_ ruleset: String?) throws -> [UInt8] {
    guard let ip = ipPath, let nft = nftPath else { throw PortwatchError.system("ip or nft missing") }
    let n = namespaceCounter.withLock { $0 += 1; return $0 }
    let name = "pwa-\(getpid())-\(n)"
    guard runCommand(ip, ["netns", "add", name], timeout: 5).status == 0 else { throw PortwatchError.system("ip netns add \(name) failed") }
    defer { _ = runCommand(ip, ["netns", "delete", name], timeout: 5) }
    if let ruleset {
        let file = "/tmp/\(name).nft"
        try ruleset.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let load = runCommand(ip, ["netns", "exec", name, nft, "-f", file], timeout: 10)
        guard load.status == 0 else { throw PortwatchError.system("nft -f failed: \(load.stderr)\n\(ruleset)") }
    }
    let list = runCommand(ip, ["netns", "exec", name, nft, "-j", "list", "ruleset"], timeout: 10)
    guard list.status == 0 else { throw PortwatchError.system("nft -j list ruleset failed: \(list.stderr)") }
    return list.stdout
}

/// Runs iptables commands (the nft backend) in a fresh namespace and returns the ruleset as
/// `nft -j` shows it, with and without the `iptables-nft-save` lines paired to its rules.
private func iptablesRuleset(_ commands: [[String]]) throws -> (plain: NftRuleset, paired: NftRuleset) {
    guard let ip = ipPath, let nft = nftPath, let iptables = findExecutable("iptables-nft"),
          let save = findExecutable("iptables-nft-save") else { throw PortwatchError.system("iptables-nft missing") }
    let n = namespaceCounter.withLock { $0 += 1; return $0 }
    let name = "pwa-\(getpid())-\(n)"
    guard runCommand(ip, ["netns", "add", name], timeout: 5).status == 0 else { throw PortwatchError.system("ip netns add failed") }
    defer { _ = runCommand(ip, ["netns", "delete", name], timeout: 5) }
    for c in commands {
        let r = runCommand(ip, ["netns", "exec", name, iptables] + c, timeout: 10)
        guard r.status == 0 else { throw PortwatchError.system("iptables \(c) failed: \(r.stderr)") }
    }
    let list = runCommand(ip, ["netns", "exec", name, nft, "-j", "list", "ruleset"], timeout: 10)
    let saved = runCommand(ip, ["netns", "exec", name, save], timeout: 10)
    let plain = try NftRuleset(json: list.stdout)
    var paired = plain
    paired.attachIptablesSave(String(decoding: saved.stdout, as: UTF8.self), family: "ip")
    return (plain, paired)
}

private func evaluator(_ ruleset: String?) throws -> FirewallEvaluator {
    FirewallEvaluator(try NftRuleset(json: try nftJSON(ruleset)))
}

private func inputChain(policy: String, _ rules: String, family: String = "inet") -> String {
    """
    table \(family) pwtest {
        chain input {
            type filter hook input priority 0; policy \(policy);
    \(rules)
        }
    }
    """
}

@Suite("nftables verdicts on real `nft -j` output",
       .enabled(if: canUseNamespaces, "needs root, ip and nft to load rulesets in a private network namespace"))
struct FirewallVerdictTests {
    @Test func acceptRuleUnderDropPolicy() throws {
        let fw = try evaluator(inputChain(policy: "drop", "tcp dport 22 accept"))
        let ssh = fw.verdict(proto: .tcp, port: 22, family: .ipv4)
        #expect(ssh.verdict == .accept)
        #expect(ssh.rule.contains("tcp dport 22 accept"), "\(ssh.rule)")
        let web = fw.verdict(proto: .tcp, port: 80, family: .ipv6)
        #expect(web.verdict == .drop)
        #expect(web.rule.contains("policy drop"), "\(web.rule)")
        // `tcp dport` says nothing about UDP: the UDP port falls to the policy.
        #expect(fw.verdict(proto: .udp, port: 22, family: .ipv4).verdict == .drop)
    }

    @Test func rejectInAnyForm() throws {
        let fw = try evaluator(inputChain(policy: "accept", """
            tcp dport 23 reject with tcp reset
            udp dport 161 reject
            reject with tcp reset
            meta nfproto ipv4 tcp dport 25 reject with icmp type host-unreachable
            tcp dport 26 reject with icmpx type admin-prohibited
            """))
        #expect(fw.verdict(proto: .tcp, port: 23, family: .ipv4).verdict == .reject)
        #expect(fw.verdict(proto: .udp, port: 161, family: .ipv6).verdict == .reject)
        #expect(fw.verdict(proto: .tcp, port: 25, family: .ipv4).verdict == .reject)
        // The icmp reject holds a hidden `meta nfproto ipv4`: IPv6 goes on to the tcp-reset rule.
        let v6 = fw.verdict(proto: .tcp, port: 25, family: .ipv6)
        #expect(v6.verdict == .reject && v6.rule.contains("reject with tcp reset"), "\(v6)")
        #expect(fw.verdict(proto: .tcp, port: 26, family: .ipv6).verdict == .reject)
        // `reject with tcp reset` holds a hidden `meta l4proto tcp`: every other TCP port is
        // rejected, UDP is not.
        #expect(fw.verdict(proto: .tcp, port: 8080, family: .ipv4).verdict == .reject)
        let open = fw.verdict(proto: .udp, port: 8080, family: .ipv4)
        #expect(open.verdict == .accept && open.rule.contains("policy accept"), "\(open)")
    }

    @Test func portSetsAnonymousNamedAndRanges() throws {
        let fw = try evaluator("""
            table inet pwtest {
                set web { type inet_service; elements = { 8080, 9000 } }
                set high { type inet_service; flags interval; elements = { 30000-30010 } }
                chain input {
                    type filter hook input priority 0; policy drop;
                    tcp dport { 80, 443 } accept
                    tcp dport 1000-2000 accept
                    tcp dport @web accept
                    udp dport @high accept
                    th dport 5353 accept
                }
            }
            """)
        for port: UInt16 in [80, 443, 1000, 1500, 2000, 8080, 9000] {
            #expect(fw.verdict(proto: .tcp, port: port, family: .ipv4).verdict == .accept, "tcp/\(port)")
        }
        for port: UInt16 in [81, 999, 2001, 8081] {
            #expect(fw.verdict(proto: .tcp, port: port, family: .ipv4).verdict == .drop, "tcp/\(port)")
        }
        #expect(fw.verdict(proto: .udp, port: 30005, family: .ipv6).verdict == .accept)
        #expect(fw.verdict(proto: .udp, port: 30011, family: .ipv6).verdict == .drop)
        #expect(fw.verdict(proto: .tcp, port: 30005, family: .ipv6).verdict == .drop)
        // th dport: TCP and UDP alike.
        #expect(fw.verdict(proto: .udp, port: 5353, family: .ipv4).verdict == .accept)
        #expect(fw.verdict(proto: .tcp, port: 5353, family: .ipv4).verdict == .accept)
    }

    @Test func jumpToUserChainWithReturnAndGoto() throws {
        let fw = try evaluator("""
            table inet pwtest {
                chain services {
                    tcp dport 6000 accept
                    tcp dport 6001 return
                    tcp dport 6002 drop
                }
                chain dead_end {
                    tcp dport 7001 accept
                }
                chain input {
                    type filter hook input priority 0; policy drop;
                    jump services
                    tcp dport 6001 accept
                    tcp dport 7000-7001 goto dead_end
                    tcp dport 7000 accept
                }
            }
            """)
        #expect(fw.verdict(proto: .tcp, port: 6000, family: .ipv4).verdict == .accept)
        // `return` goes back to the rule after the jump, which accepts 6001.
        let returned = fw.verdict(proto: .tcp, port: 6001, family: .ipv4)
        #expect(returned.verdict == .accept && returned.rule.contains("tcp dport 6001 accept (inet pwtest input)"), "\(returned)")
        let dropped = fw.verdict(proto: .tcp, port: 6002, family: .ipv4)
        #expect(dropped.verdict == .drop && dropped.rule.contains("pwtest services"), "\(dropped)")
        #expect(fw.verdict(proto: .tcp, port: 6003, family: .ipv4).verdict == .drop)
        #expect(fw.verdict(proto: .tcp, port: 7001, family: .ipv4).verdict == .accept)
        // A goto never comes back: the end of dead_end is the base chain's policy, so the
        // `tcp dport 7000 accept` after it is never reached.
        let gone = fw.verdict(proto: .tcp, port: 7000, family: .ipv4)
        #expect(gone.verdict == .drop && gone.rule.contains("policy drop"), "\(gone)")
    }

    @Test func connectionTrackingStates() throws {
        let fw = try evaluator(inputChain(policy: "drop", """
            ct state established,related accept
            ct state invalid drop
            ct state new tcp dport 22 accept
            ct state { established, related } udp dport 53 accept
            """))
        // A new connection is neither established nor related: the accept-all does not apply.
        let web = fw.verdict(proto: .tcp, port: 80, family: .ipv4)
        #expect(web.verdict == .drop && web.rule.contains("policy drop"), "\(web)")
        #expect(fw.verdict(proto: .tcp, port: 22, family: .ipv4).verdict == .accept)
        #expect(fw.verdict(proto: .udp, port: 53, family: .ipv4).verdict == .drop)
    }

    @Test func loopbackAcceptIsNotForOutsideTraffic() throws {
        let fw = try evaluator(inputChain(policy: "drop", """
            iifname "lo" accept
            iif "lo" accept
            iifname != "lo" tcp dport 443 accept
            """))
        #expect(fw.verdict(proto: .tcp, port: 80, family: .ipv4).verdict == .drop)
        #expect(fw.verdict(proto: .tcp, port: 443, family: .ipv4).verdict == .accept)
        // Over lo (a loopback-only listener) the lo rule applies.
        let lo = fw.verdict(proto: .tcp, port: 80, family: .ipv4, overLoopback: true)
        #expect(lo.verdict == .accept && lo.rule.contains("iifname lo accept"), "\(lo)")
        // A rule for one named interface depends on where the packet comes in.
        let eth = try evaluator(inputChain(policy: "drop", #"iifname "eth0" tcp dport 8443 accept"#))
        let v = eth.verdict(proto: .tcp, port: 8443, family: .ipv4)
        #expect(v.verdict == .unknown && v.rule.contains("iifname eth0") && v.rule.contains("incoming interface"), "\(v)")
        #expect(eth.verdict(proto: .tcp, port: 8444, family: .ipv4).verdict == .drop)
    }

    @Test func sourceAddressMakesItUnknownUnlessBothPathsAgree() throws {
        let fw = try evaluator(inputChain(policy: "drop", """
            ip saddr 10.0.0.0/8 tcp dport 3306 accept
            ip6 saddr fd00::/8 tcp dport 5432 drop
            ip saddr 192.168.0.0/16 tcp dport 6000 drop
            """))
        let mysql = fw.verdict(proto: .tcp, port: 3306, family: .ipv4)
        #expect(mysql.verdict == .unknown, "\(mysql)")
        #expect(mysql.rule.contains("ip saddr 10.0.0.0/8 tcp dport 3306 accept") && mysql.rule.contains("source address"), "\(mysql)")
        // `ip saddr` cannot match an IPv6 packet: the policy decides.
        #expect(fw.verdict(proto: .tcp, port: 3306, family: .ipv6).verdict == .drop)
        // Dropped from some sources, dropped by the policy from the others: dropped.
        #expect(fw.verdict(proto: .tcp, port: 5432, family: .ipv6).verdict == .drop)
        #expect(fw.verdict(proto: .tcp, port: 6000, family: .ipv4).verdict == .drop)
    }

    @Test func basesChainsByPriorityAndFamily() throws {
        let fw = try evaluator("""
            table ip early {
                chain input {
                    type filter hook input priority -10; policy accept;
                    tcp dport 25 drop
                }
            }
            table inet late {
                chain input {
                    type filter hook input priority 10; policy accept;
                    tcp dport 26 reject
                }
            }
            """)
        #expect(fw.verdict(proto: .tcp, port: 25, family: .ipv4).verdict == .drop)
        // The `ip` table sees no IPv6.
        #expect(fw.verdict(proto: .tcp, port: 25, family: .ipv6).verdict == .accept)
        // Accepted by the first chain, rejected by the second: an accept ends one chain only.
        #expect(fw.verdict(proto: .tcp, port: 26, family: .ipv4).verdict == .reject)
        #expect(fw.verdict(proto: .tcp, port: 80, family: .ipv4).verdict == .accept)
    }

    @Test func verdictMapsAndCountersLogsComments() throws {
        let fw = try evaluator("table inet pwtest {\n chain refuse {\n reject\n }\n}\n" + inputChain(policy: "drop", """
            tcp dport vmap { 22 : accept, 23 : drop, 24 : jump refuse }
            meta l4proto udp udp dport 514 counter log prefix "syslog " accept comment "remote syslog"
            ip protocol tcp tcp dport 8000 accept
            """))
        #expect(fw.verdict(proto: .tcp, port: 22, family: .ipv4).verdict == .accept)
        #expect(fw.verdict(proto: .tcp, port: 23, family: .ipv4).verdict == .drop)
        #expect(fw.verdict(proto: .tcp, port: 24, family: .ipv4).verdict == .reject)
        let syslog = fw.verdict(proto: .udp, port: 514, family: .ipv6)
        #expect(syslog.verdict == .accept, "\(syslog)")
        #expect(fw.verdict(proto: .tcp, port: 8000, family: .ipv4).verdict == .accept)
        #expect(fw.verdict(proto: .tcp, port: 8000, family: .ipv6).verdict == .drop)
    }

    @Test func undecidableStatementNamesTheRule() throws {
        let fw = try evaluator(inputChain(policy: "drop", "tcp dport 22 limit rate 10/minute accept"))
        let v = fw.verdict(proto: .tcp, port: 22, family: .ipv4)
        #expect(v.verdict == .unknown && v.rule.contains("tcp dport 22"), "\(v)")
        #expect(fw.verdict(proto: .tcp, port: 23, family: .ipv4).verdict == .drop)
    }

    @Test func emptyRulesetMeansNoFirewall() throws {
        let fw = try evaluator(nil)
        let v = fw.verdict(proto: .tcp, port: 22, family: .ipv4)
        #expect(v.verdict == FirewallVerdictKind.none && v.rule == "no firewall loaded", "\(v)")
        // A table without an input chain filters nothing on input either.
        let nat = try evaluator("""
            table ip pwnat {
                chain pre {
                    type nat hook prerouting priority -100; policy accept;
                }
            }
            """)
        #expect(nat.verdict(proto: .tcp, port: 22, family: .ipv4).verdict == FirewallVerdictKind.none)
    }

    @Test(.enabled(if: findExecutable("iptables-nft") != nil && findExecutable("iptables-nft-save") != nil,
                   "needs iptables-nft (Debian's iptables)"))
    func iptablesNftRules() throws {
        let (plain, paired) = try iptablesRuleset([
            ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
            ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            ["-A", "INPUT", "-p", "tcp", "-m", "state", "--state", "NEW", "--dport", "8", "-j", "ACCEPT"],
            ["-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "80,443,1000:2000", "-j", "ACCEPT"],
            ["-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "REJECT"],
            ["-A", "INPUT", "-p", "tcp", "--dport", "25", "-m", "comment", "--comment", "no mail", "-j", "DROP"],
            ["-A", "INPUT", "-j", "LOG"],
            ["-P", "INPUT", "DROP"],
        ])
        #expect(plain.hasIptablesExtensions)
        // Without the parameters, the conntrack match could be anything: undecidable.
        let blind = FirewallEvaluator(plain).verdict(proto: .tcp, port: 22, family: .ipv4)
        #expect(blind.verdict == .unknown && blind.rule.contains("conntrack"), "\(blind)")
        let fw = FirewallEvaluator(paired)
        let ssh = fw.verdict(proto: .tcp, port: 22, family: .ipv4)
        #expect(ssh.verdict == .drop && ssh.rule.contains("policy drop"), "\(ssh)")
        #expect(fw.verdict(proto: .tcp, port: 8, family: .ipv4).verdict == .accept)
        for port: UInt16 in [80, 443, 1000, 1500, 2000] {
            #expect(fw.verdict(proto: .tcp, port: port, family: .ipv4).verdict == .accept, "tcp/\(port)")
        }
        #expect(fw.verdict(proto: .tcp, port: 2001, family: .ipv4).verdict == .drop)
        #expect(fw.verdict(proto: .udp, port: 53, family: .ipv4).verdict == .reject)
        let mail = fw.verdict(proto: .tcp, port: 25, family: .ipv4)
        #expect(mail.verdict == .drop && mail.rule.contains("--dport 25"), "\(mail)")
        // iptables (not ip6tables) filters IPv4 only.
        #expect(fw.verdict(proto: .tcp, port: 22, family: .ipv6).verdict == FirewallVerdictKind.none)
    }

    @Test func garbageIsAnErrorNotACrash() {
        #expect(throws: PortwatchError.self) { try NftRuleset(json: Array("not json".utf8)) }
        #expect(throws: PortwatchError.self) { try NftRuleset(json: Array("{\"other\": 1}".utf8)) }
    }
}
