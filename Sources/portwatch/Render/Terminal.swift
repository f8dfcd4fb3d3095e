#if canImport(Glibc)
import Glibc
#endif

/// What the output stream can do: colour only on a terminal and without NO_COLOR.
struct Terminal {
    let isTTY: Bool
    let color: Bool
    let width: Int

    static let stdout: Terminal = {
        let tty = isatty(STDOUT_FILENO) == 1
        let noColor = getenv("NO_COLOR").map { String(cString: $0).isEmpty == false } ?? false
        var ws = winsize()
        var width = 0
        if tty, ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0 { width = Int(ws.ws_col) }
        if width <= 0, let cols = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), cols > 0 { width = cols }
        // Not a terminal: never cut lines (scripts and pipes get everything).
        if !tty { width = Int.max }
        if width <= 0 { width = 80 }
        return Terminal(isTTY: tty, color: tty && !noColor && (getenv("TERM").map { String(cString: $0) } ?? "") != "dumb", width: width)
    }()

    func paint(_ text: String, _ code: String) -> String {
        color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }
    func bold(_ t: String) -> String { paint(t, "1") }
    func dim(_ t: String) -> String { paint(t, "2") }
    func green(_ t: String) -> String { paint(t, "32") }
    func yellow(_ t: String) -> String { paint(t, "33") }
    func red(_ t: String) -> String { paint(t, "31") }
}

/// Writes a line to stderr in the `portwatch: ` form the contract requires.
func printError(_ message: String) {
    let line = "portwatch: " + message.split(separator: "\n").joined(separator: " ") + "\n"
    writeAll(STDERR_FILENO, line)
}

/// Writes to stdout without buffering surprises when the process exits.
func emit(_ text: String) {
    writeAll(STDOUT_FILENO, text.hasSuffix("\n") ? text : text + "\n")
}

/// Writes every byte to a descriptor (stdout/stderr), retrying short writes and EINTR.
/// Direct writes keep output ordered with our exit() and need no shared FILE state.
func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += n
    }
}

/// Writes bytes to a descriptor, retrying short writes and EINTR (JSON output).
func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer) {
    guard let base = raw.baseAddress else { return }
    var offset = 0
    while offset < raw.count {
        let n = write(fd, base + offset, raw.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += n
    }
}
