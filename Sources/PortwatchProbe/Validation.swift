import PortwatchCore

/// Checks what a probe is asked to do before any probing, for the CLI's flags and the daemon's
/// `probes:` entries alike: combinations that cannot work, a `--expect` that is not a regular
/// expression, a CA file that does not hold a certificate.
public func validateProbe(_ target: ProbeTarget, options: ProbeOptions) throws(PortwatchError) {
    if target.port == 0 { throw .usage("invalid port in target '\(target.text)': port 0 cannot be probed") }
    if !(1...100_000).contains(options.count) { throw .usage("invalid count \(options.count): must be between 1 and 100000") }
    if !(options.timeout > 0) { throw .usage("invalid timeout: must be more than 0") }
    if options.interval < 0 { throw .usage("invalid interval: must not be negative") }
    if target.proto == .udp {
        if options.tls { throw .usage("--tls needs TCP: it does not combine with --udp") }
        if options.expect != nil { throw .usage("--expect reads a TCP reply: it does not combine with --udp") }
    }
    if let pattern = options.expect {
        do {
            _ = try Regex(pattern)
        } catch {
            throw .usage("invalid --expect '\(pattern)': not a regular expression (\(error))")
        }
    }
    if let caFile = options.caFile { try validateCAFile(caFile) }
}
