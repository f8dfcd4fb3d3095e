/// Which security detectors run and their thresholds (the daemon's `detectors:` section; `top
/// --capture` uses the defaults).
public struct DetectorSettings: Sendable, Hashable {
    public var portScan = true
    public var synFlood = true
    public var connectionStorm = true

    /// A source that touches this many distinct local ports within `scanWindow` seconds is scanning.
    public var scanPorts = 20
    public var scanWindow: Double = 10

    /// Half-open connections on one listener that alone make a flood.
    public var floodSynRecv = 128
    /// With capture: SYNs per second to one port that never became connections.
    public var floodSynRate: Double = 1000
    /// Segments per second one port's listeners drop (SYN or accept queue overflow).
    public var floodDropRate: Double = 10
    /// A flood ends after this many seconds without any sign of it.
    public var floodQuiet: Double = 10

    /// Connection attempts from one source to one port within `stormWindow` seconds.
    public var stormConnections = 100
    public var stormWindow: Double = 60

    public init() {}

    /// Whether any detector needs packets.
    public var needsPackets: Bool { portScan || connectionStorm }
}
