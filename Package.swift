// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "portwatch",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "portwatch", targets: ["portwatch"]),
        .library(name: "PortwatchCore", targets: ["PortwatchCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Kernel headers and netlink macros as real C functions, with layout asserts.
        .target(name: "CSockDiag"),
        // Facts about ports: collectors, model, analysis, probes. No printing.
        .target(
            name: "PortwatchCore",
            dependencies: ["CSockDiag"]
        ),
        // The command-line interface: one file per subcommand, rendering.
        .executableTarget(
            name: "portwatch",
            dependencies: [
                "PortwatchCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "PortwatchCoreTests",
            dependencies: ["PortwatchCore", "CSockDiag"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "PortwatchCLITests",
            dependencies: ["portwatch", "PortwatchCore"]
        ),
    ]
)
