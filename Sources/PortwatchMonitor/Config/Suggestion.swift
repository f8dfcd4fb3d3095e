/// The candidate a mistyped name most likely meant, or nil when none is close: `intervall` →
/// `interval`, `token-file` → `token_file`, `Listen` → `listen`.
func closestMatch(to name: String, among candidates: [String]) -> String? {
    let normalized = String(name.lowercased().map { $0 == "-" ? "_" : $0 })
    if let exact = candidates.first(where: { $0 == normalized }) { return exact }
    var best: (candidate: String, distance: Int)?
    for candidate in candidates {
        let distance = editDistance(normalized, candidate)
        if distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
    }
    guard let best else { return nil }
    // Close means a typo or two, and never most of the word: `ab` is not a misspelt `capture`.
    let allowed = max(1, min(3, best.candidate.count / 3))
    return best.distance <= allowed ? best.candidate : nil
}

/// Levenshtein distance over characters, with adjacent swaps counting one (`recieved` → `received`).
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a)
    let y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var previous2 = [Int](repeating: 0, count: y.count + 1)
    var previous = Array(0...y.count)
    var current = [Int](repeating: 0, count: y.count + 1)
    for i in 1...x.count {
        current[0] = i
        for j in 1...y.count {
            let cost = x[i - 1] == y[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] {
                current[j] = min(current[j], previous2[j - 2] + 1)
            }
        }
        (previous2, previous, current) = (previous, current, previous2)
    }
    return previous[y.count]
}
