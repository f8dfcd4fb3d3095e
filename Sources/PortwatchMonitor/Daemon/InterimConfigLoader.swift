import PortwatchCore
import Yams

/// Reads the daemon's own keys of a config file (`interval`, `listen`, `token_file`, `capture`,
/// `database.path`, `ports`) until the full `ConfigLoader` (every key, positions in errors) is
/// plugged in; other keys are left for it. Errors are usage errors naming the file.
public enum InterimConfigLoader {
    public static func load(file path: String) throws(PortwatchError) -> MonitorConfig {
        guard let text = readFileString(path, limit: 4 << 20) else { throw .usage("\(path): cannot be read") }
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            let first = "\(error)".split(separator: "\n").first.map(String.init) ?? "not YAML"
            throw .usage("\(path): \(first)")
        }
        var config = MonitorConfig()
        guard let document else { return config }
        guard let top = document as? [String: Any] else { throw .usage("\(path): expected a mapping of keys") }
        func fail(_ message: String) -> PortwatchError { .usage("\(path): \(message)") }
        if let v = top["interval"] {
            guard let s = v as? String else { throw fail("interval: expected a duration like 5s") }
            do throws(PortwatchError) { config.interval = try parseDuration(s) } catch { throw fail("interval: \(error.message)") }
        }
        if let v = top["listen"] {
            guard let s = v as? String, let listen = ListenAddress(hostPort: s) else {
                throw fail("listen: expected HOST:PORT")
            }
            config.listen = listen
        }
        if let v = top["token_file"] {
            guard let s = v as? String else { throw fail("token_file: expected a path") }
            config.tokenFile = s
        }
        if let v = top["capture"] {
            guard let b = v as? Bool else { throw fail("capture: expected true or false") }
            config.capture = b
        }
        if let v = top["database"] {
            guard let db = v as? [String: Any] else { throw fail("database: expected a mapping") }
            if let p = db["path"] {
                guard let s = p as? String else { throw fail("database.path: expected a path") }
                config.database.path = s
            }
        }
        if let v = top["ports"] {
            guard let list = v as? [Any] else { throw fail("ports: expected a list") }
            for item in list {
                guard let entry = item as? [String: Any], let port = entry["port"] as? Int, let number = UInt16(exactly: port),
                      number > 0 else { throw fail("ports: each entry needs port: 1-65535") }
                var expectation = PortExpectation(port: number)
                if let p = entry["protocol"] {
                    guard let s = p as? String, let proto = TransportProtocol(rawValue: s) else {
                        throw fail("ports: protocol must be tcp or udp")
                    }
                    expectation.proto = proto
                }
                expectation.name = entry["name"] as? String
                if let e = entry["expect"] {
                    guard let s = e as? String, let expect = ExpectedState(rawValue: s) else {
                        throw fail("ports: expect must be listening or closed")
                    }
                    expectation.expect = expect
                }
                config.ports.append(expectation)
            }
        }
        return config
    }
}
