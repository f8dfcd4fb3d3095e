// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "portwatch",
    products: [
        .executable(name: "portwatch", targets: ["portwatch"]),
        .executable(name: "portwatch-bench", targets: ["portwatch-bench"]),
        .library(name: "PortwatchCore", targets: ["PortwatchCore"]),
        .library(name: "PortwatchProbe", targets: ["PortwatchProbe"]),
        .library(name: "PortwatchMonitor", targets: ["PortwatchMonitor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // probe: TLS handshakes, certificates, latency percentiles.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Kernel headers and netlink macros as real C functions, with layout asserts.
        .target(name: "CSockDiag"),
        // Facts about ports: collectors, model, analysis, probes. No printing.
        .target(
            name: "PortwatchCore",
            dependencies: ["CSockDiag"]
        ),
        // Active probes (`portwatch probe`, the daemon's probes): TCP/UDP connects from PortwatchCore,
        // TLS handshakes (NIOSSL), certificates (X509), latency statistics (HdrHistogram).
        .target(
            name: "PortwatchProbe",
            dependencies: [
                "PortwatchCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // The monitor daemon: config, sampler service, history store, rules, alerting, HTTP.
        .target(
            name: "PortwatchMonitor",
            dependencies: [
                "PortwatchCore",
                "PortwatchProbe",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Yams", package: "Yams"),
            ],
            // The vendored chart library and its licence; embed.sh turns them into Swift sources.
            exclude: ["Dashboard/vendor"]
        ),
        // The command-line interface: one file per subcommand, rendering.
        .executableTarget(
            name: "portwatch",
            dependencies: [
                "PortwatchCore",
                "PortwatchProbe",
                "PortwatchMonitor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmark tool (a separate product, not part of the CLI): fills a history database.
        .executableTarget(
            name: "portwatch-bench",
            dependencies: [
                "PortwatchCore",
                "PortwatchMonitor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Shared by the test targets: `.blocking`, which runs a blocking test off the cooperative pool.
        .target(
            name: "PortwatchTestSupport",
            path: "Tests/PortwatchTestSupport"
        ),
        .testTarget(
            name: "PortwatchCoreTests",
            dependencies: ["PortwatchCore", "CSockDiag", "PortwatchTestSupport"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "PortwatchMonitorTests",
            dependencies: [
                "PortwatchMonitor", "PortwatchCore", "PortwatchProbe",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "PortwatchCLITests",
            dependencies: ["portwatch", "PortwatchCore", "PortwatchProbe", "PortwatchTestSupport"]
        ),
    ]
)
