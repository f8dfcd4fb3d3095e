/// Decodes the escapes of a `--send` text: `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH`; anything
/// else after a backslash is an error (a typo should not go over the wire as-is).
public func decodeSendText(_ text: String) throws(PortwatchError) -> [UInt8] {
    var out: [UInt8] = []
    var bytes = Array(text.utf8)[...]
    while let b = bytes.popFirst() {
        guard b == UInt8(ascii: "\\") else { out.append(b); continue }
        guard let e = bytes.popFirst() else {
            throw .usage("invalid --send '\(text)': a lone '\\' at the end (write \\\\ for a backslash)")
        }
        switch e {
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "0"): out.append(0x00)
        case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "x"):
            let hex = bytes.prefix(2)
            guard hex.count == 2, let value = UInt8(String(decoding: hex, as: UTF8.self), radix: 16) else {
                throw .usage("invalid --send '\(text)': \\x needs two hex digits")
            }
            bytes = bytes.dropFirst(2)
            out.append(value)
        default:
            throw .usage("invalid --send '\(text)': unknown escape '\\\(Character(Unicode.Scalar(e)))' (use \\r \\n \\t \\0 \\\\ \\xHH)")
        }
    }
    return out
}

/// The first line of a reply, for display: up to the first line break, control bytes and
/// invalid UTF-8 shown as escapes, at most `limit` characters.
public func firstLine(of reply: [UInt8], limit: Int = 200) -> String {
    let line = reply.prefix { $0 != 0x0A && $0 != 0x0D }
    var out = ""
    for scalar in String(decoding: line, as: UTF8.self).unicodeScalars {
        if out.count >= limit { out += "…"; break }
        switch scalar.value {
        case 0x09: out += "\\t"
        case 0..<0x20, 0x7F: out += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
        case 0xFFFD: out += "\\uFFFD"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
