import Foundation

// A baseline is the set of listeners an operator has accepted as normal, saved as JSON by
// `audit --save-baseline` and compared by `audit --baseline`. Listeners are keyed by protocol
// and port; owners are compared by executable path, never by pid (pids change on restart).

/// One listener as a baseline records it.
public struct BaselineListener: Sendable, Hashable, Codable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var addresses: [String]
    /// Executable paths of the processes holding it, sorted; empty when they could not be seen.
    public var executables: [String]

    enum CodingKeys: String, CodingKey {
        case proto = "protocol", port, addresses, executables
    }

    public init(proto: TransportProtocol, port: UInt16, addresses: [String], executables: [String]) {
        self.proto = proto
        self.port = port
        self.addresses = addresses
        self.executables = executables
    }
}

/// The saved listeners of a host.
public struct Baseline: Sendable, Hashable, Codable {
    /// Format version, so a later portwatch can read older files.
    public var version: Int
    public var listeners: [BaselineListener]

    public init(listeners: [BaselineListener]) {
        version = 1
        self.listeners = listeners.sorted { ($0.proto, $0.port) < ($1.proto, $1.port) }
    }

    /// The file's bytes (pretty JSON, stable order).
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return [UInt8]((try? encoder.encode(self)) ?? Data()) + [0x0A]
    }

    /// Reads a baseline file; the error names the file and what is wrong with it.
    public static func load(_ path: String) throws(PortwatchError) -> Baseline {
        guard let bytes = readFileBytes(path) else {
            throw PortwatchError.usage("cannot read baseline \(path): \(String(cString: strerror(errno)))")
        }
        let baseline: Baseline
        do {
            baseline = try JSONDecoder().decode(Baseline.self, from: Data(bytes))
        } catch {
            throw PortwatchError.usage("baseline \(path) is not a portwatch baseline (expected JSON from audit --save-baseline)")
        }
        guard baseline.version == 1 else {
            throw PortwatchError.usage("baseline \(path) has format version \(baseline.version); this portwatch reads version 1")
        }
        return baseline
    }
}

/// A listener whose owner changed between the baseline and now.
public struct OwnerChange: Sendable, Hashable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var before: [String]
    public var after: [String]
}

/// What changed since a baseline.
public struct Drift: Sendable, Hashable {
    /// The baseline file compared against.
    public var source: String
    public var new: [BaselineListener]
    public var gone: [BaselineListener]
    public var ownerChanged: [OwnerChange]

    public var isEmpty: Bool { new.isEmpty && gone.isEmpty && ownerChanged.isEmpty }

    /// Compares the listeners now with a baseline. An owner counts as changed only when both
    /// sides know their executables: an unreadable /proc entry is no evidence of a change.
    public init(baseline: Baseline, current: [BaselineListener], source: String) {
        self.source = source
        var before: [String: BaselineListener] = [:]
        for l in baseline.listeners { before["\(l.proto.rawValue)/\(l.port)"] = l }
        var seen = Set<String>()
        var new: [BaselineListener] = []
        var changed: [OwnerChange] = []
        for l in current {
            let key = "\(l.proto.rawValue)/\(l.port)"
            seen.insert(key)
            guard let old = before[key] else { new.append(l); continue }
            if !old.executables.isEmpty && !l.executables.isEmpty && Set(old.executables) != Set(l.executables) {
                changed.append(OwnerChange(proto: l.proto, port: l.port, before: old.executables, after: l.executables))
            }
        }
        self.new = new
        self.gone = baseline.listeners.filter { !seen.contains("\($0.proto.rawValue)/\($0.port)") }
        self.ownerChanged = changed
    }
}

extension Baseline {
    /// Writes the baseline to `path` (through a temporary file and a rename, so a reader never
    /// sees half a file).
    public func save(to path: String) throws(PortwatchError) {
        do {
            try Data(encoded()).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw PortwatchError.usage("cannot write baseline \(path): \((error as NSError).localizedDescription)")
        }
    }
}
