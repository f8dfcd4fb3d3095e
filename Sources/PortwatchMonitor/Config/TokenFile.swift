/// The longest token file read; a bearer token is tens of bytes.
let maxTokenFileSize = 64 * 1024

/// The token in a token file (trimmed), or what is wrong with the file as the end of a sentence
/// ("is empty", "cannot be read: Permission denied").
func loadToken(_ path: String) -> Result<String, TokenFileError> {
    let bytes: [UInt8]
    switch readSmallFile(path, limit: maxTokenFileSize) {
    case .success(let b): bytes = b
    case .failure(let error): return .failure(TokenFileError(predicate: error.predicate))
    }
    guard case .success(let text) = decodeUTF8(bytes) else {
        return .failure(TokenFileError(predicate: "is not UTF-8 text"))
    }
    let token = text.trimmingWhitespace()
    if token.isEmpty { return .failure(TokenFileError(predicate: "is empty")) }
    if token.contains(where: \.isWhitespace) {
        return .failure(TokenFileError(predicate: "holds more than one word (a bearer token has no spaces)"))
    }
    return .success(token)
}

/// Why a token file cannot serve.
struct TokenFileError: Error {
    var predicate: String
}

/// What is wrong with a token file, or nil when it holds a usable token.
func tokenFileProblem(_ path: String) -> String? {
    if case .failure(let error) = loadToken(path) { return "\(path) \(error.predicate)" }
    return nil
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines.
    func trimmingWhitespace() -> String {
        guard let start = firstIndex(where: { !$0.isWhitespace }),
              let end = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[start...end])
    }
}
