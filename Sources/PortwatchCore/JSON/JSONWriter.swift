/// Writes JSON straight into a byte buffer, in the order the caller produces it: no tree of
/// boxed values, no intermediate strings. With a sink, full chunks leave as rows are written,
/// so a document of 100,000 connections never sits in memory whole.
///
/// The caller keeps the nesting right (`beginObject` … `endObject`); keys come before values
/// inside objects. Pretty output indents by two spaces, as `jq` does. A writer is used in place
/// (`inout`): copies would share one buffer.
public struct JSONWriter {
    /// What has been written and not yet handed to the sink.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: buffer.base, count: buffer.count)) }
    public let pretty: Bool
    private let buffer: ByteBuffer
    private let sink: ((UnsafeRawBufferPointer) -> Void)?
    private let flushThreshold: Int
    private var depth = 0
    /// No element written yet in the innermost open container.
    private var first = true
    /// A key was just written: the next value follows it without a separator.
    private var afterKey = false

    /// A writer that keeps everything in `bytes` (without a sink) or hands chunks of about
    /// `flushThreshold` bytes to `sink` as containers close.
    public init(pretty: Bool = false, flushThreshold: Int = 64 * 1024, sink: ((UnsafeRawBufferPointer) -> Void)? = nil) {
        self.pretty = pretty
        self.sink = sink
        self.flushThreshold = flushThreshold
        buffer = ByteBuffer(capacity: sink == nil ? 4096 : flushThreshold + 4096)
    }

    /// The document as text (for writers without a sink).
    public var text: String {
        String(decoding: UnsafeBufferPointer(start: buffer.base, count: buffer.count), as: UTF8.self)
    }

    /// Hands everything written so far to the sink.
    public mutating func flush() {
        guard let sink, buffer.count > 0 else { return }
        sink(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
        buffer.count = 0
    }

    /// Ends a document (or a JSON Lines record) with a newline.
    public mutating func newline() { buffer.append(0x0A) }

    // MARK: - Structure

    /// Opens an object: keys and values follow, then `endObject`.
    public mutating func beginObject() { open(UInt8(ascii: "{")) }
    /// Closes the innermost object (and streams to the sink once enough is buffered).
    public mutating func endObject() { close(UInt8(ascii: "}")) }
    /// Opens an array: values follow, then `endArray`.
    public mutating func beginArray() { open(UInt8(ascii: "[")) }
    /// Closes the innermost array (and streams to the sink once enough is buffered).
    public mutating func endArray() { close(UInt8(ascii: "]")) }

    /// An object key; a value must follow.
    public mutating func key(_ name: StaticString) {
        separate()
        buffer.append(UInt8(ascii: "\""))
        buffer.append(name)
        buffer.append(UInt8(ascii: "\""))
        buffer.append(UInt8(ascii: ":"))
        if pretty { buffer.append(UInt8(ascii: " ")) }
        afterKey = true
    }

    /// An object key known only at run time (escaped).
    public mutating func key(_ name: String) {
        separate()
        appendEscaped(name)
        buffer.append(UInt8(ascii: ":"))
        if pretty { buffer.append(UInt8(ascii: " ")) }
        afterKey = true
    }

    // MARK: - Values

    /// `null`.
    public mutating func null() {
        separate()
        append("null")
    }

    /// `true` or `false`.
    public mutating func bool(_ value: Bool) {
        separate()
        append(value ? "true" : "false")
    }

    /// An integer, in decimal.
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
            var text = value.description
            text.withUTF8 { buffer.append($0) }
        }
    }

    /// A string, escaped.
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
        buffer.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { buffer.append($0) }
        buffer.append(UInt8(ascii: "\""))
    }

    /// An IP address as a string; IPv4 digits go straight into the buffer (connections list two
    /// per row), IPv6 through inet_ntop.
    public mutating func address(_ ip: IPAddress) {
        guard case .v4(let a) = ip else { asciiString(ip.description); return }
        separate()
        buffer.append(UInt8(ascii: "\""))
        appendUnsigned(UInt64(a >> 24))
        buffer.append(UInt8(ascii: "."))
        appendUnsigned(UInt64((a >> 16) & 0xff))
        buffer.append(UInt8(ascii: "."))
        appendUnsigned(UInt64((a >> 8) & 0xff))
        buffer.append(UInt8(ascii: "."))
        appendUnsigned(UInt64(a & 0xff))
        buffer.append(UInt8(ascii: "\""))
    }

    // MARK: - Fields (key and value in one call)

    /// `"name": value` (strings, optional strings, booleans, integers, optional integers).
    public mutating func field(_ name: StaticString, _ value: String) { key(name); string(value) }
    public mutating func field(_ name: StaticString, _ value: String?) { key(name); string(value) }
    public mutating func field(_ name: StaticString, _ value: Bool) { key(name); bool(value) }
    public mutating func field<T: BinaryInteger>(_ name: StaticString, _ value: T) { key(name); int(value) }
    public mutating func field<T: BinaryInteger>(_ name: StaticString, _ value: T?) {
        key(name)
        if let value { int(value) } else { null() }
    }
    /// `"name": number`.
    public mutating func field(_ name: StaticString, double value: Double) { key(name); double(value) }
    /// `"name": null`.
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

    /// Ends the innermost object with members encoded earlier by a compact writer (`raw` ends
    /// with the closing brace): for shapes written tens of thousands of times alike. Callers use
    /// it for compact output only; in a pretty document the members would stay on one line, still
    /// valid JSON, so nothing here can trap.
    mutating func endObject(appendingEncodedMembers raw: [UInt8]) {
        if !first { buffer.append(UInt8(ascii: ",")) }
        raw.withUnsafeBufferPointer { buffer.append($0) }
        depth -= 1
        first = false
        afterKey = false
        if sink != nil && buffer.count >= flushThreshold { flush() }
    }

    private mutating func open(_ bracket: UInt8) {
        separate()
        buffer.append(bracket)
        depth += 1
        first = true
    }

    private mutating func close(_ bracket: UInt8) {
        depth -= 1
        if pretty && !first { indentLine() }
        buffer.append(bracket)
        first = false
        afterKey = false
        if sink != nil && buffer.count >= flushThreshold { flush() }
    }

    /// The comma and (pretty) line break before an element; nothing after a key.
    @inline(__always)
    private mutating func separate() {
        if afterKey {
            afterKey = false
            return
        }
        if depth > 0 {
            if !first { buffer.append(UInt8(ascii: ",")) }
            if pretty { indentLine() }
        }
        first = false
    }

    private mutating func indentLine() {
        buffer.append(0x0A)
        for _ in 0..<depth { buffer.append(0x20); buffer.append(0x20) }
    }

    @inline(__always)
    private mutating func append(_ s: StaticString) {
        buffer.append(s)
    }

    private mutating func appendDecimal<T: BinaryInteger>(_ value: T) {
        if value < 0 {
            buffer.append(UInt8(ascii: "-"))
            // Int64.min has no positive Int64: go through the magnitude.
            appendUnsigned(UInt64(value.magnitude))
        } else {
            appendUnsigned(UInt64(truncatingIfNeeded: value))
        }
    }

    private mutating func appendUnsigned(_ value: UInt64) {
        if value < 10 {
            buffer.append(UInt8(ascii: "0") &+ UInt8(value))
            return
        }
        var count = 0
        var v = value
        while v > 0 { count += 1; v /= 10 }
        buffer.reserve(count)
        v = value
        let end = buffer.base + buffer.count + count
        var i = 1
        while v > 0 {
            (end - i).pointee = UInt8(ascii: "0") &+ UInt8(v % 10)
            v /= 10
            i += 1
        }
        buffer.count += count
    }

    /// A JSON string: quotes, backslashes and control characters escaped; other bytes as they are
    /// (Swift strings are valid UTF-8).
    private mutating func appendEscaped(_ s: String) {
        buffer.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var start = 0
            for i in 0..<utf8.count {
                let b = utf8[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                if start < i { buffer.append(UnsafeBufferPointer(rebasing: utf8[start..<i])) }
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
                    buffer.append(hex[Int(b >> 4)])
                    buffer.append(hex[Int(b & 0xf)])
                }
            }
            if start < utf8.count { buffer.append(UnsafeBufferPointer(rebasing: utf8[start...])) }
        }
        buffer.append(UInt8(ascii: "\""))
    }
}

/// The writer's growable byte store: plain memory, so appends are a bounds check and a copy
/// (Array's generic append costs several times that per call, and JSON is many small appends).
final class ByteBuffer {
    var base: UnsafeMutablePointer<UInt8>
    var count = 0
    private(set) var capacity: Int

    init(capacity: Int) {
        self.capacity = max(64, capacity)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    @inline(__always)
    func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private func grow(_ needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let fresh = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        fresh.update(from: base, count: count)
        base.deallocate()
        base = fresh
        capacity = newCapacity
    }

    @inline(__always)
    func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    /// Keys and literals: static ASCII text, copied without a closure.
    @inline(__always)
    func append(_ text: StaticString) {
        guard text.hasPointerRepresentation else {
            text.withUTF8Buffer { append($0) }
            return
        }
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inline(__always)
    func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }
}
