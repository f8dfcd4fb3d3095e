// Typed access to decoded JSON documents.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - JSON access

extension Dictionary where Key == String, Value == Any {
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func string(_ key: String) -> String? { self[key] as? String }
    func bool(_ key: String) -> Bool? { self[key] as? Bool }
    func object(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
    func objects(_ key: String) -> [[String: Any]] { (self[key] as? [Any])?.compactMap { $0 as? [String: Any] } ?? [] }
    func strings(_ key: String) -> [String]? { (self[key] as? [Any])?.compactMap { $0 as? String } }
    /// Pids of a `processes` list.
    func pids(_ key: String = "processes") -> [Int32] { objects(key).compactMap { $0.int("pid").map(Int32.init) } }
}
