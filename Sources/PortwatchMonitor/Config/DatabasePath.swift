extension DatabaseConfig {
    /// The history file to open: `path` when configured; otherwise systemd's `$STATE_DIRECTORY`
    /// (set by `StateDirectory=`), `/var/lib/portwatch/history.sqlite` as root, and for other users
    /// `$XDG_STATE_HOME/portwatch/history.sqlite` or `$HOME/.local/state/portwatch/history.sqlite`.
    /// The environment is passed in so the daemon, the CLI and tests decide what it is.
    public func resolvedPath(environment: [String: String], isRoot: Bool) -> String {
        let file = "history.sqlite"
        if let path { return path }
        // systemd may list several directories separated by ':'; the unit names ours first.
        if let stateDirectory = environment["STATE_DIRECTORY"]?.split(separator: ":").first,
           stateDirectory.hasPrefix("/") {
            return "\(stateDirectory)/\(file)"
        }
        if isRoot { return "/var/lib/portwatch/\(file)" }
        // The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") {
            return "\(trimmingTrailingSlash(xdg))/portwatch/\(file)"
        }
        if let home = environment["HOME"], home.hasPrefix("/") {
            return "\(trimmingTrailingSlash(home))/.local/state/portwatch/\(file)"
        }
        // No home at all (a bare service account): the system location, which says clearly in the
        // write error what is missing.
        return "/var/lib/portwatch/\(file)"
    }

    private func trimmingTrailingSlash(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }
}
