// Durations, sizes and rates as operators type and read them. No Foundation: the parsers do their
// own decimal arithmetic in integers, so `1.5s` is exactly 1_500_000_000 ns and nothing overflows.

/// The longest duration or size text accepted; real values are a handful of characters.
private let maxUnitTextLength = 64

/// Nanoseconds per duration unit (the whole run of letters after a number is matched exactly).
private let durationUnits: [(suffix: String, nanoseconds: Int64)] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),  // U+00B5 MICRO SIGN
    ("μs", 1_000),  // U+03BC GREEK SMALL LETTER MU, which keyboards produce as often
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
]

/// Anything longer than 100 years is a typo, and the limit keeps every sum inside Int64.
private let maxDurationNanoseconds: Int64 = 36_525 * 86_400 * 1_000_000_000

/// Parses a duration: `500ms`, `5s`, `2m`, `1h`, `7d`, `1.5s`, `250us`, compounds like `1m30s`,
/// and a bare number as seconds (`30` = 30 s). Units: ns, us (µs), ms, s, m, h, d, w.
public func parseDuration(_ text: String) throws(PortwatchError) -> Duration {
    if text.utf8.count > maxUnitTextLength {
        throw usageError("invalid duration '\(text.prefix(20))...': too long (\(text.utf8.count) bytes)")
    }
    let trimmed = trimSpaces(text[...])
    if trimmed.isEmpty {
        throw usageError("empty duration '\(text)': expected e.g. 500ms, 5s, 2m, 1h, 7d or 1m30s")
    }
    if trimmed.hasPrefix("-") {
        throw usageError("invalid duration '\(trimmed)': must not be negative")
    }
    let bytes = Array(trimmed.utf8)
    var index = 0
    var total: Int64 = 0
    while index < bytes.count {
        let number = try scanDecimal(bytes, &index, what: "duration", text: trimmed)
        let unitStart = index
        while index < bytes.count, !isASCIIDigit(bytes[index]), bytes[index] != UInt8(ascii: ".") {
            index += 1
        }
        let unit = String(decoding: bytes[unitStart..<index], as: UTF8.self)
        let scale: Int64
        if unit.isEmpty {
            // A bare number means seconds, but only on its own: `1m30` is more likely a mistake.
            guard unitStart == bytes.count, total == 0, number.start == 0 else {
                throw usageError("invalid duration '\(trimmed)': missing unit after '\(number.text)' (ns, us, ms, s, m, h, d, w)")
            }
            scale = 1_000_000_000
        } else if let known = durationUnits.first(where: { $0.suffix == unit }) {
            scale = known.nanoseconds
        } else {
            throw usageError("invalid duration '\(trimmed)': unknown unit '\(unit)' (use ns, us, ms, s, m, h, d or w)")
        }
        guard let part = number.scaled(by: scale, limit: maxDurationNanoseconds),
              case (let sum, false) = total.addingReportingOverflow(part), sum <= maxDurationNanoseconds
        else {
            throw usageError("invalid duration '\(trimmed)': longer than 100 years")
        }
        total = sum
    }
    return .nanoseconds(total)
}

/// Formats a duration briefly: `250ms`, `1.5s`, `2m`, `1m30s`, `1h5m`, `7d` (at most two units
/// from a minute up, truncated, so values read at a glance and parse back with `parseDuration`).
public func formatDuration(_ d: Duration) -> String {
    let (seconds, attoseconds) = d.components
    if seconds < 0 || attoseconds < 0 {
        // Only a caller's arithmetic makes these (a clock step); show the sign rather than hide it.
        return "-" + formatDuration(.zero - d)
    }
    if seconds == 0 {
        let nanoseconds = attoseconds / 1_000_000_000
        if nanoseconds == 0 { return "0s" }
        if nanoseconds < 1_000 { return "\(nanoseconds)ns" }
        let microTenths = (nanoseconds + 50) / 100
        if microTenths < 10_000 { return oneDecimal(UInt64(microTenths)) + "us" }
        let milliTenths = (nanoseconds + 50_000) / 100_000
        if milliTenths < 10_000 { return oneDecimal(UInt64(milliTenths)) + "ms" }
        return "1s"
    }
    if seconds < 60 {
        let tenths = seconds * 10 + (attoseconds + 50_000_000_000_000_000) / 100_000_000_000_000_000
        if tenths < 600 { return oneDecimal(UInt64(tenths)) + "s" }
        return "1m"
    }
    let units: [(suffix: String, seconds: Int64)] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)]
    guard let first = units.firstIndex(where: { seconds >= $0.seconds }) else { return "\(seconds)s" }
    let major = seconds / units[first].seconds
    var result = "\(major)\(units[first].suffix)"
    if first + 1 < units.count {
        let minor = (seconds % units[first].seconds) / units[first + 1].seconds
        if minor > 0 { result += "\(minor)\(units[first + 1].suffix)" }
    }
    return result
}

/// Multipliers of size units, upper-cased; SI (1000) and binary (1024), with or without the B.
private let sizeUnits: [String: UInt64] = {
    var table: [String: UInt64] = ["": 1, "B": 1]
    let prefixes = ["K", "M", "G", "T", "P", "E"]
    var si: UInt64 = 1
    var binary: UInt64 = 1
    for prefix in prefixes {
        si *= 1000
        binary *= 1024
        table[prefix] = si
        table[prefix + "B"] = si
        table[prefix + "I"] = binary
        table[prefix + "IB"] = binary
    }
    return table
}()

/// Parses a size in bytes: `10KB` = 10 000, `5MB`, `1GB`, `1.5GB`, `64KiB` = 65 536, `512B`, and a
/// bare number as bytes. Units are case-insensitive; K/M/G/T/P/E are powers of 1000, Ki/Mi/... of 1024.
public func parseSize(_ text: String) throws(PortwatchError) -> UInt64 {
    if text.utf8.count > maxUnitTextLength {
        throw usageError("invalid size '\(text.prefix(20))...': too long (\(text.utf8.count) bytes)")
    }
    let trimmed = trimSpaces(text[...])
    if trimmed.isEmpty {
        throw usageError("empty size '\(text)': expected e.g. 512B, 10KB, 5MB, 1GB or 64KiB")
    }
    if trimmed.hasPrefix("-") {
        throw usageError("invalid size '\(trimmed)': must not be negative")
    }
    let bytes = Array(trimmed.utf8)
    var index = 0
    let number = try scanDecimal(bytes, &index, what: "size", text: trimmed)
    // `10 MB` is how sizes are often written in config files.
    let unit = trimSpaces(Substring(String(decoding: bytes[index...], as: UTF8.self)))
    guard let multiplier = sizeUnits[unit.uppercased()] else {
        throw usageError("invalid size '\(trimmed)': unknown unit '\(unit)' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    }
    guard let value = number.scaled(by: multiplier, limit: UInt64.max) else {
        throw usageError("invalid size '\(trimmed)': too large")
    }
    return value
}

/// Formats bytes for people: `0 B`, `999 B`, `1.2 KB`, `13.4 MB`, `512 MB` (powers of 1000, one
/// decimal below 100).
public func formatBytes(_ n: UInt64) -> String {
    if n < 1000 { return "\(n) B" }
    return scaledString(Double(n), units: ["B", "KB", "MB", "GB", "TB", "PB", "EB"], separator: " ")
}

/// Formats a rate in bits per second: `0 bit/s`, `840 bit/s`, `1.2 Mbit/s`, `10 Gbit/s`.
public func formatRate(bitsPerSecond: Double) -> String {
    let units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s", "Ebit/s"]
    // Rates come from arithmetic on samples; a reset counter or a zero interval must not trap here.
    guard bitsPerSecond.isFinite else { return "n/a" }
    if bitsPerSecond < 0 { return "-" + formatRate(bitsPerSecond: -bitsPerSecond) }
    if bitsPerSecond < 999.5 { return "\(Int(bitsPerSecond.rounded())) bit/s" }
    return scaledString(bitsPerSecond, units: units, separator: " ")
}

// MARK: - Helpers

/// A decimal number as read: integer part and fraction digits, exact.
private struct ScannedDecimal {
    var integer: UInt64
    var fraction: UInt64
    var fractionDigits: Int
    /// Where it started in the text, and how it was written (for error messages).
    var start: Int
    var text: String

    /// The value times `scale`, truncated to an integer; nil when it exceeds `limit`.
    func scaled<T: FixedWidthInteger>(by scale: T, limit: T) -> T? {
        guard let whole = T(exactly: integer),
              case (let product, false) = whole.multipliedReportingOverflow(by: scale), product <= limit
        else { return nil }
        // scale × fraction can need more than 64 bits; multiply to 128 bits and divide back. The
        // quotient is below `scale` because fraction < 10^fractionDigits, so it always fits.
        var denominator: UInt64 = 1
        for _ in 0..<fractionDigits { denominator *= 10 }
        let wide = UInt64(scale).multipliedFullWidth(by: fraction)
        let part = denominator.dividingFullWidth(wide).quotient
        guard let fractional = T(exactly: part),
              case (let sum, false) = product.addingReportingOverflow(fractional), sum <= limit
        else { return nil }
        return sum
    }
}

/// Reads `12`, `1.5` or `.5` at `index`, advancing it; fraction digits beyond 18 are ignored.
private func scanDecimal(_ bytes: [UInt8], _ index: inout Int, what: String,
                         text: Substring) throws(PortwatchError) -> ScannedDecimal {
    let start = index
    var integer: UInt64 = 0
    var fraction: UInt64 = 0
    var fractionDigits = 0
    var digits = 0
    while index < bytes.count, isASCIIDigit(bytes[index]) {
        let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
        let (next, o2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
        if o1 || o2 { throw usageError("invalid \(what) '\(text)': number too large") }
        integer = next
        index += 1
        digits += 1
    }
    if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
        index += 1
        while index < bytes.count, isASCIIDigit(bytes[index]) {
            if fractionDigits < 18 {
                fraction = fraction * 10 + UInt64(bytes[index] - UInt8(ascii: "0"))
                fractionDigits += 1
            }
            index += 1
            digits += 1
        }
    }
    if digits == 0 {
        throw usageError("invalid \(what) '\(text)': expected a number")
    }
    let written = String(decoding: bytes[start..<index], as: UTF8.self)
    return ScannedDecimal(integer: integer, fraction: fraction, fractionDigits: fractionDigits,
                          start: start, text: written)
}

/// `12.5` from 125 tenths, `12` from 120.
private func oneDecimal(_ tenths: UInt64) -> String {
    tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
}

/// Picks the unit (steps of 1000) that keeps the value under 1000 after rounding, with one
/// decimal below 100: `1.2 KB`, `13.4 MB`, `512 MB`.
private func scaledString(_ value: Double, units: [String], separator: String) -> String {
    var scaled = value
    var unit = 0
    // Rounding decides: 999.96 KB would print as "1000 KB", so it becomes "1.0 MB".
    while unit + 1 < units.count, scaled.rounded() >= 1000 {
        scaled /= 1000
        unit += 1
    }
    let tenths = (scaled * 10).rounded()
    // Beyond the largest unit the number can exceed any integer type; print it as a Double.
    guard tenths < 1e15 else { return "\(scaled.rounded())\(separator)\(units[unit])" }
    if tenths < 1000 {
        let t = UInt64(tenths)
        return "\(t / 10).\(t % 10)\(separator)\(units[unit])"
    }
    return "\(UInt64(scaled.rounded()))\(separator)\(units[unit])"
}
