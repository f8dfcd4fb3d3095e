// portwatch-bench: benchmark helpers that are not part of the CLI (see benchmarks/README.md).
import ArgumentParser

struct PortwatchBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portwatch-bench",
        abstract: "Benchmarks of portwatch's daemon parts (not part of the CLI).",
        subcommands: [MetricsScrape.self]
    )
}

PortwatchBench.main()
