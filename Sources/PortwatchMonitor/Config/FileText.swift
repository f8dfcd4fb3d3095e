#if canImport(Glibc)
import Glibc
#endif

/// Reads a small file whole: the config or a token.
func readSmallFile(_ path: String, limit: Int) -> Result<[UInt8], FileTextError> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return .failure(.unreadable(String(cString: strerror(errno)))) }
    defer { close(fd) }
    var info = stat()
    if fstat(fd, &info) != 0 { return .failure(.unreadable(String(cString: strerror(errno)))) }
    if (info.st_mode & S_IFMT) == S_IFDIR { return .failure(.directory) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    // A FIFO or /dev/stdin has no size up front: read until EOF, bounded by the limit.
    for _ in 0..<1_000_000 {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(.unreadable(String(cString: strerror(errno))))
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
        if bytes.count > limit {
            return .failure(.tooLarge(limit: limit))
        }
    }
    return .success(bytes)
}

/// Why a file could not be read.
enum FileTextError: Error {
    /// open or read failed; the errno text.
    case unreadable(String)
    case directory
    case tooLarge(limit: Int)

    /// The reason as the end of a sentence about the file: "<file> is a directory, not a file".
    var predicate: String {
        switch self {
        case .unreadable(let reason): "cannot be read: \(reason)"
        case .directory: "is a directory, not a file"
        case .tooLarge(let limit): "is too large (over \(limit / 1024) KiB)"
        }
    }
}

/// Decodes UTF-8, or says where the first invalid byte is (1-based line and column).
func decodeUTF8(_ bytes: [UInt8]) -> Result<String, InvalidUTF8> {
    if let text = String(validating: bytes, as: UTF8.self) { return .success(text) }
    var decoder = UTF8()
    var iterator = bytes.makeIterator()
    var line = 1
    var column = 1
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar):
            if scalar == "\n" { line += 1; column = 1 } else { column += 1 }
        case .emptyInput:
            return .failure(InvalidUTF8(line: line, column: column))
        case .error:
            return .failure(InvalidUTF8(line: line, column: column))
        }
    }
}

/// Where the first byte that is not UTF-8 sits.
struct InvalidUTF8: Error {
    var line: Int
    var column: Int
}
