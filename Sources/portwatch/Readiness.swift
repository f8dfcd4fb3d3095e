import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `--ready-file PATH` (hidden): tells a script or a test that the baseline of a sampled view
/// (`ports --sample`, `check --sample`, `top`) has been taken, so whatever it does next falls
/// inside the measured window. A file, not a fixed delay: start-up takes 10 ms on an idle host
/// and seconds on a loaded one.
struct ReadinessOptions: ParsableArguments {
    @Option(name: .customLong("ready-file"), help: .hidden)
    var readyFile: String?

    /// Creates the file once the baseline is taken. It appears whole (written aside, then
    /// renamed), so its existence is the signal. A file that cannot be written is an error: the
    /// caller would otherwise wait for a signal that never comes.
    func baselineTaken() throws {
        guard let path = readyFile else { return }
        let temporary = path + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw PortwatchError.system("--ready-file \(path): \(String(cString: strerror(errno)))")
        }
        let line = "baseline taken\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw PortwatchError.system("--ready-file \(path): \(reason)")
        }
    }
}
