import Logging

/// Runs a command per alert with the alert document (`Alert.json`) on its stdin; a command still
/// running at its timeout is killed. The exit status is logged.
public struct ExecChannel: AlertChannel {
    public let name: String
    /// Program and arguments (the program is looked up in PATH).
    public let command: [String]
    /// How long the command may run before it is killed.
    public let timeout: Duration
    private let logger: Logger

    /// Makes the channel; `name` defaults to "exec PROGRAM".
    public init(command: [String], timeout: Duration = .seconds(10), name: String? = nil,
                logger: Logger = Logger(label: "portwatch.alerts")) {
        self.command = command
        self.timeout = timeout
        self.name = name ?? "exec \(command.first ?? "")"
        self.logger = logger
    }

    /// Runs the command for one alert and says how it ended.
    public func run(_ alert: Alert) async -> ExecResult {
        let body = Array((alert.json.serialized() + "\n").utf8)
        return await ChildProcess.run(command, stdin: body, timeout: timeout)
    }

    public func deliver(_ alert: Alert) async throws {
        let result = await run(alert)
        let metadata: Logger.Metadata = ["channel": "\(name)", "rule": "\(alert.rule)", "result": "\(result)"]
        switch result {
        case .exited(status: 0):
            logger.debug("alert command done", metadata: metadata)
        default:
            logger.warning("alert command failed", metadata: metadata)
        }
    }
}
