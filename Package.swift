// swift-tools-version:6.0
// cowtrace: a copy-on-write fault tracer for Linux, in Swift on eBPF.
import PackageDescription

/// The simulated MMU and the replay keep their state in classes (Machine,
/// TraceReplayer), whose every property access is checked for exclusivity at
/// run time: 14 % of `cowtrace check`'s time. Debug builds (the tests) keep the checks.
var uncheckedExclusivityInRelease: [SwiftSetting] {
    [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
}

let package = Package(
    name: "cowtrace",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cowtrace", targets: ["cowtrace"]),
        .executable(name: "cowtrace-workload", targets: ["cowtrace-workload"]),
        .library(name: "CowTraceKit", targets: ["CowTraceKit"]),
        .library(name: "MMUSim", targets: ["MMUSim"]),
        .library(name: "CowTraceFormat", targets: ["CowTraceFormat"]),
        .library(name: "CowTraceReplay", targets: ["CowTraceReplay"]),
        .library(name: "CowTraceReport", targets: ["CowTraceReport"]),
        .library(name: "CowTraceMetrics", targets: ["CowTraceMetrics"]),
        .library(name: "CowTraceRedis", targets: ["CowTraceRedis"]),
        .library(name: "CowTraceSymbols", targets: ["CowTraceSymbols"]),
        .library(name: "MMUSimScenario", targets: ["MMUSimScenario"]),
        .library(name: "CowTraceSelfTest", targets: ["CowTraceSelfTest"]),
        .library(name: "CowTraceForecast", targets: ["CowTraceForecast"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // Layers, arrows pointing one way: the cowtrace CLI -> the libraries -> the C shims.
        // The C shims: libbpf (with libelf and zlib, which it links) and the
        // event/counter structs shared with bpf/; the ELF symbol reader over libelf;
        // the recording's checksum.
        .target(
            name: "CBPF",
            path: "Sources/CBPF",
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        .target(name: "CELF", path: "Sources/CELF", linkerSettings: [.linkedLibrary("elf")]),
        // The recording format's checksum (zlib's CRC-32) by carry-less multiplication, zlib elsewhere.
        .target(name: "CCRC32", path: "Sources/CCRC32", linkerSettings: [.linkedLibrary("z")]),
        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the object in this target.
        .plugin(name: "BPFObjectPlugin", capability: .buildTool()),
        // The live tracers: the embedded BPF objects, attach tiers, typed maps,
        // ring buffers, and what is counted with them (stat, forks, oom, record, self-tests).
        .target(
            name: "CowTraceKit",
            dependencies: ["CBPF", "CowTraceFormat", "CowTraceSymbols"],
            plugins: ["BPFObjectPlugin"]
        ),
        // The self-tests: workloads whose copies are known in advance, run under the tracers and checked.
        .target(name: "CowTraceSelfTest", dependencies: ["CowTraceKit", "CowTraceFormat"]),
        // The fork-risk forecast: a real process's memory and its domain's limits, run through the simulated MMU.
        .target(name: "CowTraceForecast", dependencies: ["CowTraceKit", "MMUSim", "CowTraceFormat"]),
        // User-stack symbols from ELF files and /proc/PID/maps (no libbpf).
        .target(name: "CowTraceSymbols", dependencies: ["CELF", "CowTraceFormat"]),
        // The Prometheus/OpenMetrics exposition of the live counters, and its HTTP endpoint (SwiftNIO's HTTP/1 server).
        .target(name: "CowTraceMetrics", dependencies: [
            "CowTraceKit", "CowTraceForecast",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // A Redis client, a Redis server to test against, and BGSAVE profiles from the tracer.
        .target(name: "CowTraceRedis", dependencies: ["CowTraceKit"]),
        // The recording's report: per-process totals, HTML and SVG, from the file format alone (no libbpf).
        .target(name: "CowTraceReport", dependencies: ["CowTraceFormat"]),
        // The one fault-class type: the kernel's classes (bpf/cowtrace.h's values) and the simulator's outcomes.
        .target(name: "CowTraceFaultClass"),
        // The simulated MMU: no BPF dependency, deterministic, single-threaded.
        .target(name: "MMUSim", dependencies: ["CowTraceFaultClass"], swiftSettings: uncheckedExclusivityInRelease),
        // MMUSim's scenario language: parse (YAML), built-ins, run, report.
        .target(name: "MMUSimScenario", dependencies: ["MMUSim", .product(name: "Yams", package: "Yams")]),
        // The recording file format (`cowtrace record`): blocks with checksums,
        // readable up to the damage. Foundation, CCRC32 and CowTraceFaultClass only,
        // so that the fuzz script can compile it on its own (with those two).
        .target(name: "CowTraceFormat", dependencies: ["CowTraceFaultClass", "CCRC32"]),
        // Replays a recording through the simulated MMU and compares it with the kernel's classes.
        .target(name: "CowTraceReplay", dependencies: ["CowTraceFormat", "MMUSim"],
                swiftSettings: uncheckedExclusivityInRelease),
        // Simulated fault events per second, fork time and memory per simulated page (run with -c release).
        .executableTarget(name: "mmusim-bench", dependencies: ["MMUSim"]),
        // Recording format write / decode speed (run with -c release); --write-seeds makes the fuzz corpus.
        .executableTarget(name: "trace-format-bench", dependencies: ["CowTraceFormat", "CCRC32"]),
        .executableTarget(
            name: "cowtrace",
            dependencies: [
                "CowTraceKit",
                "CowTraceMetrics",
                "CowTraceRedis",
                "CowTraceSelfTest",
                "CowTraceForecast",
                "CowTraceReport",
                "MMUSim",
                "MMUSimScenario",
                "CowTraceFormat",
                "CowTraceReplay",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Controlled fork/CoW scenarios, in C so that the workload touches exactly the pages it says.
        // Frame pointers: `cowtrace stat --stacks` walks its stacks in tests.
        .executableTarget(name: "cowtrace-workload", path: "Sources/cowtrace-workload",
                          cSettings: [.unsafeFlags(["-fno-omit-frame-pointer"])]),
        // Skips BPF tests when not root, and fails them when COWTRACE_REQUIRE_BPF=1 (CI).
        .target(name: "CowTraceTestSupport", dependencies: ["CowTraceKit", "CowTraceSelfTest"], path: "Tests/CowTraceTestSupport"),
        .testTarget(name: "CowTraceKitTests", dependencies: ["CowTraceKit", "CowTraceSelfTest", "CBPF", "CowTraceFaultClass", "CowTraceTestSupport"]),
        .testTarget(name: "MMUSimTests", dependencies: ["MMUSim"]),
        .testTarget(name: "MMUSimScenarioTests", dependencies: ["MMUSimScenario", "MMUSim"]),
        .testTarget(name: "CowTraceReportTests", dependencies: ["CowTraceReport", "CowTraceFormat"]),
        .testTarget(name: "CowTraceMetricsTests", dependencies: ["CowTraceMetrics", "CowTraceKit", "CowTraceTestSupport"]),
        .testTarget(name: "CowTraceRedisTests", dependencies: ["CowTraceRedis"]),
        .testTarget(name: "CowTraceForecastTests", dependencies: ["CowTraceForecast", "CowTraceKit", "MMUSim"]),
        .testTarget(name: "CowTraceFormatTests", dependencies: ["CowTraceFormat", "CCRC32"]),
        .testTarget(name: "CowTraceReplayTests", dependencies: ["CowTraceReplay", "CowTraceFormat", "MMUSim"]),
        .testTarget(name: "cowtraceTests", dependencies: ["CowTraceKit", "CowTraceRedis", "CowTraceMetrics", "CowTraceSelfTest", "CowTraceFormat", "CowTraceTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)

