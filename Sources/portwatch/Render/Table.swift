/// An aligned text table that fits the terminal by shortening its flexible column.
struct Table {
    enum Align { case left, right }
    struct Column {
        var title: String
        var align: Align = .left
        /// The column that gives up width (and is cut with "…") when the line is too long.
        var flexible = false
    }

    var columns: [Column]
    var rows: [[Cell]] = []

    /// A cell: its text and how to paint it (colour codes are not counted in the width).
    struct Cell {
        var text: String
        var paint: ((String) -> String)? = nil
    }

    init(_ columns: [Column]) { self.columns = columns }

    mutating func add(_ cells: [Cell]) { rows.append(cells) }
    mutating func add(_ texts: [String]) { rows.append(texts.map { Cell(text: $0) }) }

    func render(_ terminal: Terminal) -> String {
        var widths = columns.map { displayWidth($0.title) }
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], displayWidth(cell.text))
            }
        }
        let gap = 2
        let total = widths.reduce(0, +) + gap * (columns.count - 1)
        if total > terminal.width, let flex = columns.firstIndex(where: \.flexible) {
            let others = total - widths[flex]
            widths[flex] = max(displayWidth(columns[flex].title), terminal.width - others, 8)
        }
        var out = ""
        func line(_ cells: [Cell], header: Bool) {
            var parts: [String] = []
            for (i, column) in columns.enumerated() {
                let cell = i < cells.count ? cells[i] : Cell(text: "")
                var text = printable(cell.text)
                if displayWidth(text) > widths[i] { text = truncate(text, to: widths[i]) }
                let pad = String(repeating: " ", count: max(0, widths[i] - displayWidth(text)))
                let isLast = i == columns.count - 1
                var shown = header ? terminal.bold(text) : (cell.paint?(text) ?? text)
                if column.align == .right { shown = pad + shown } else if !isLast { shown += pad }
                parts.append(shown)
            }
            out += parts.joined(separator: String(repeating: " ", count: gap))
            out += "\n"
        }
        line(columns.map { Cell(text: $0.title) }, header: true)
        for row in rows { line(row, header: false) }
        return out
    }
}

/// Control characters (newlines in a command line, escapes) would break the table or the
/// terminal: each becomes a space.
func printable(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else { return s }
    var out = String.UnicodeScalarView()
    for scalar in s.unicodeScalars {
        out.append(scalar.value < 0x20 || scalar.value == 0x7f ? " " : scalar)
    }
    return String(out)
}

/// Width in terminal cells (one per scalar: portwatch prints ASCII and a few symbols).
func displayWidth(_ s: String) -> Int { s.unicodeScalars.count }

func truncate(_ s: String, to width: Int) -> String {
    guard width > 1 else { return String(s.unicodeScalars.prefix(max(0, width)).map(Character.init)) }
    var out = String.UnicodeScalarView()
    out.append(contentsOf: s.unicodeScalars.prefix(width - 1))
    return String(out) + "…"
}
