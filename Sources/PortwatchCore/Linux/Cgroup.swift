// Which systemd unit and container a process belongs to, from /proc/PID/cgroup.
extension ProcessScanner {
    /// The systemd unit and container id a process belongs to, from /proc/PID/cgroup (v1 or v2).
    public static func parseCgroup(_ text: String) -> (unit: String?, container: String?) {
        var unified: Substring?
        var systemd: Substring?
        var others: [Substring] = []
        for line in text.split(separator: "\n") {
            // hierarchy-ID:controller-list:path; the path itself may contain ':'.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2]
            if fields[0] == "0" && fields[1].isEmpty {
                unified = path
            } else if fields[1].split(separator: ",").contains("name=systemd") {
                systemd = path
            } else {
                others.append(path)
            }
        }
        // systemd's own hierarchy names the unit: name=systemd on v1 (legacy or hybrid, where "0::"
        // may be a bare "/"), "0::" on v2. A root path ("/") says nothing (cgroup namespace, or an
        // unused hierarchy), so the next candidate is tried.
        let candidates = [systemd, unified].compactMap { $0 } + others
        let primary = candidates.first { $0 != "/" && !$0.isEmpty }
        guard let primary else { return (nil, nil) }

        let components = primary.split(separator: "/")
        var container: String?
        var containerIndex = -1
        for (index, component) in components.enumerated().reversed() {
            if let id = containerID(in: component) {
                container = id
                containerIndex = index
                break
            }
        }
        if container == nil {
            // v1 without a systemd hierarchy: a container id may show only in a controller's path.
            for path in candidates where path != primary {
                if let id = path.split(separator: "/").reversed().lazy.compactMap(containerID(in:)).first {
                    container = id
                    break
                }
            }
        }
        // The innermost service or scope owns the process. Inside a container only units of the
        // container's own systemd count: the host units around it (the container's scope, or
        // user@1000.service for rootless podman) are not where the process was started.
        let unit = components[(containerIndex + 1)...].last { component in
            component.hasSuffix(".service") || component.hasSuffix(".scope")
        }.map(String.init)
        return (unit, container)
    }

    /// Container runtimes' cgroup names: `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`,
    /// `libpod-ID.scope`, or a bare 64-hex ID (`/docker/ID`, kubepods with the cgroupfs driver).
    /// Conmon's scopes (`libpod-conmon-ID.scope`) are not the container and do not match.
    static func containerID(in component: Substring) -> String? {
        var name = component
        if name.hasSuffix(".scope") { name = name.dropLast(".scope".count) }
        var id = name
        if let dash = name.lastIndex(of: "-") {
            let prefix = name[..<dash]
            guard ["docker", "cri-containerd", "crio", "libpod"].contains(prefix) else { return nil }
            id = name[name.index(after: dash)...]
        }
        guard id.utf8.count == 64, id.utf8.allSatisfy(isHexDigit) else { return nil }
        return String(id)
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
    }
}

// Which container runtime a process's cgroup path names.
extension ProcessScanner {
    /// The container a process runs in and its runtime, from /proc/PID/cgroup: docker,
    /// containerd, cri-o, podman (64-hex ids), kubepods (a bare id under kubepods, cgroupfs
    /// driver), systemd-nspawn (`machine-NAME.scope`) and lxc (`lxc.payload.NAME`, `/lxc/NAME`).
    public static func containerIdentity(cgroup text: String) -> ContainerIdentity? {
        var paths: [Substring] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            if fields.count == 3 && fields[2] != "/" && !paths.contains(fields[2]) { paths.append(fields[2]) }
        }
        for path in paths {
            let components = path.split(separator: "/")
            // Innermost first: a container nested in a pod or a machine is the one that counts.
            for index in components.indices.reversed() {
                let previous = index > components.startIndex ? components[index - 1] : nil
                if let found = identity(components[index], previous: previous, path: path) { return found }
            }
        }
        return nil
    }

    private static func identity(_ component: Substring, previous: Substring?, path: Substring) -> ContainerIdentity? {
        var name = component
        if name.hasSuffix(".scope") { name = name.dropLast(".scope".count) }
        let prefixes: [(String, String)] = [("docker-", "docker"), ("cri-containerd-", "containerd"),
                                            ("crio-", "cri-o"), ("libpod-", "podman")]
        for (prefix, runtime) in prefixes where name.hasPrefix(prefix) {
            let id = name.dropFirst(prefix.count)
            return isContainerHex(id) ? ContainerIdentity(id: String(id), runtime: runtime) : nil
        }
        if isContainerHex(name) {
            let runtime = previous == "docker" ? "docker"
                : path.contains("kubepods") ? "kubepods"
                : path.contains("libpod") ? "podman" : "docker"
            return ContainerIdentity(id: String(name), runtime: runtime)
        }
        if component.hasSuffix(".scope") && name.hasPrefix("machine-") && path.contains("machine.slice") {
            // systemd escapes '-' in unit names as \x2d.
            let machine = String(name.dropFirst("machine-".count)).replacing("\\x2d", with: "-")
            return ContainerIdentity(id: machine, runtime: machine.hasPrefix("qemu-") ? "libvirt" : "systemd-nspawn")
        }
        if name.hasPrefix("lxc.payload.") {
            return ContainerIdentity(id: String(name.dropFirst("lxc.payload.".count)), runtime: "lxc")
        }
        if previous == "lxc" && !name.isEmpty && !name.hasPrefix("lxc.") {
            return ContainerIdentity(id: String(name), runtime: "lxc")
        }
        return nil
    }

    private static func isContainerHex(_ id: Substring) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy(isHexDigit)
    }
}
