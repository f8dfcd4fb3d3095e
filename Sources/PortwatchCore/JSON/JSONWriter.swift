/// Writes JSON straight into a byte buffer, in the order the caller produces it: no tree of
/// boxed values, no intermediate strings. With a sink, full chunks leave as rows are written,
/// so a document of 100,000 connections never sits in memory whole.
///
/// The caller keeps the nesting right (`beginObject` … `endObject`); keys come before values
/// inside objects. Pretty output indents by two spaces, as `jq` does.
public struct JSONWriter {
    /// What has been written and not yet handed to the sink.
    public private(set) var bytes: [UInt8] = []
    public let pretty: Bool
    private let sink: (([UInt8]) -> Void)?
    private let flushThreshold: Int
    private var depth = 0
    /// No element written yet in the innermost open container.
    private var first = true
    /// A key was just written: the next value follows it without a separator.
    private var afterKey = false

    /// A writer that keeps everything in `bytes` (without a sink) or hands chunks of about
    /// `flushThreshold` bytes to `sink` as containers close.
    public init(pretty: Bool = false, flushThreshold: Int = 64 * 1024, sink: (([UInt8]) -> Void)? = nil) {
        self.pretty = pretty
        self.sink = sink
        self.flushThreshold = flushThreshold
        bytes.reserveCapacity(sink == nil ? 4096 : flushThreshold + 4096)
    }

    /// The document as text (for writers without a sink).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Hands everything written so far to the sink.
    public mutating func flush() {
        guard let sink, !bytes.isEmpty else { return }
        sink(bytes)
        bytes.removeAll(keepingCapacity: true)
    }

    /// Ends a document (or a JSON Lines record) with a newline.
    public mutating func newline() { bytes.append(0x0A) }

    // MARK: - Structure

    public mutating func beginObject() { open(UInt8(ascii: "{")) }
    public mutating func endObject() { close(UInt8(ascii: "}")) }
    public mutating func beginArray() { open(UInt8(ascii: "[")) }
    public mutating func endArray() { close(UInt8(ascii: "]")) }

    /// An object key; a value must follow.
    public mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
        if pretty { bytes.append(UInt8(ascii: " ")) }
        afterKey = true
    }

    /// An object key known only at run time (escaped).
    public mutating func key(_ name: String) {
        separate()
        appendEscaped(name)
        bytes.append(UInt8(ascii: ":"))
        if pretty { bytes.append(UInt8(ascii: " ")) }
        afterKey = true
    }

    // MARK: - Values

    public mutating func null() {
        separate()
        append("null")
    }

    public mutating func bool(_ value: Bool) {
        separate()
        append(value ? "true" : "false")
    }

    public mutating func int<T: BinaryInteger>(_ value: T) {
        separate()
        appendDecimal(value)
    }

    /// A number; integral values print without a fraction, non-finite ones as null.
    public mutating func double(_ value: Double) {
        separate()
        guard value.isFinite else { append("null"); return }
        if value == value.rounded(), abs(value) < 1e15 {
            appendDecimal(Int64(value))
        } else {
            bytes.append(contentsOf: value.description.utf8)
        }
    }

    public mutating func string(_ value: String) {
        separate()
        appendEscaped(value)
    }

    /// A string, or null.
    public mutating func string(_ value: String?) {
        if let value { string(value) } else { null() }
    }

    /// A string made of ASCII digits and punctuation (addresses): no escaping needed.
    public mutating func asciiString(_ value: String) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: value.utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    // MARK: - Fields (key and value in one call)

    public mutating func field(_ name: StaticString, _ value: String) { key(name); string(value) }
    public mutating func field(_ name: StaticString, _ value: String?) { key(name); string(value) }
    public mutating func field(_ name: StaticString, _ value: Bool) { key(name); bool(value) }
    public mutating func field<T: BinaryInteger>(_ name: StaticString, _ value: T) { key(name); int(value) }
    public mutating func field<T: BinaryInteger>(_ name: StaticString, _ value: T?) {
        key(name)
        if let value { int(value) } else { null() }
    }
    public mutating func field(_ name: StaticString, double value: Double) { key(name); double(value) }
    public mutating func nullField(_ name: StaticString) { key(name); null() }

    /// `"name": {…}` with the members `body` writes.
    public mutating func object(_ name: StaticString, _ body: (inout JSONWriter) -> Void) {
        key(name)
        beginObject()
        body(&self)
        endObject()
    }

    /// `"name": […]` with the elements `body` writes.
    public mutating func array(_ name: StaticString, _ body: (inout JSONWriter) -> Void) {
        key(name)
        beginArray()
        body(&self)
        endArray()
    }

    /// `"name": ["a", "b"]`.
    public mutating func strings(_ name: StaticString, _ values: [String]) {
        key(name)
        beginArray()
        for v in values { string(v) }
        endArray()
    }

    // MARK: - Internals

    private mutating func open(_ bracket: UInt8) {
        separate()
        bytes.append(bracket)
        depth += 1
        first = true
    }

    private mutating func close(_ bracket: UInt8) {
        depth -= 1
        if pretty && !first { indentLine() }
        bytes.append(bracket)
        first = false
        afterKey = false
        if sink != nil && bytes.count >= flushThreshold { flush() }
    }

    /// The comma and (pretty) line break before an element; nothing after a key.
    @inline(__always)
    private mutating func separate() {
        if afterKey {
            afterKey = false
            return
        }
        if depth > 0 {
            if !first { bytes.append(UInt8(ascii: ",")) }
            if pretty { indentLine() }
        }
        first = false
    }

    private mutating func indentLine() {
        bytes.append(0x0A)
        for _ in 0..<depth { bytes.append(0x20); bytes.append(0x20) }
    }

    @inline(__always)
    private mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func appendDecimal<T: BinaryInteger>(_ value: T) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            // Int64.min has no positive Int64: go through the magnitude.
            appendUnsigned(UInt64(value.magnitude))
        } else {
            appendUnsigned(UInt64(truncatingIfNeeded: value))
        }
    }

    private mutating func appendUnsigned(_ value: UInt64) {
        if value < 10 {
            bytes.append(UInt8(ascii: "0") &+ UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { raw in
            while v > 0 {
                raw[23 - count] = UInt8(ascii: "0") &+ UInt8(v % 10)
                v /= 10
                count += 1
            }
            bytes.append(contentsOf: raw[(24 - count)...])
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped; other bytes as they are
    /// (Swift strings are valid UTF-8).
    private mutating func appendEscaped(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var start = 0
            for i in 0..<utf8.count {
                let b = utf8[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                if start < i { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i])) }
                start = i + 1
                switch b {
                case UInt8(ascii: "\""): append("\\\"")
                case UInt8(ascii: "\\"): append("\\\\")
                case 0x0A: append("\\n")
                case 0x0D: append("\\r")
                case 0x09: append("\\t")
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    append("\\u00")
                    bytes.append(hex[Int(b >> 4)])
                    bytes.append(hex[Int(b & 0xf)])
                }
            }
            if start < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
