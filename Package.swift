// swift-tools-version:6.0
// cowtrace: a copy-on-write fault tracer for Linux, in Swift on eBPF.
import PackageDescription

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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // libbpf, libelf and zlib from Debian, plus the event/counter structs shared with bpf/.
        .target(
            name: "CBPF",
            path: "Sources/CBPF",
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the object in this target.
        .plugin(name: "BPFObjectPlugin", capability: .buildTool()),
        .target(
            name: "CowTraceKit",
            dependencies: ["CBPF", "CowTraceFormat"],
            plugins: ["BPFObjectPlugin"]
        ),
        // The simulated MMU: no BPF dependency, deterministic, single-threaded.
        .target(name: "MMUSim", dependencies: [.product(name: "Yams", package: "Yams")]),
        // The recording file format (`cowtrace record`): blocks with checksums,
        // readable up to the damage. Foundation and zlib only, so that the fuzz
        // script can compile it on its own.
        .target(name: "CowTraceFormat", linkerSettings: [.linkedLibrary("z")]),
        // Replays a recording through the simulated MMU and compares it with the kernel's classes.
        .target(name: "CowTraceReplay", dependencies: ["CowTraceFormat", "MMUSim"]),
        // Simulated fault events per second, fork time and memory per simulated page (run with -c release).
        .executableTarget(name: "mmusim-bench", dependencies: ["MMUSim"]),
        // Recording format write / decode speed (run with -c release); --write-seeds makes the fuzz corpus.
        .executableTarget(name: "trace-format-bench", dependencies: ["CowTraceFormat"]),
        .executableTarget(
            name: "cowtrace",
            dependencies: [
                "CowTraceKit",
                "MMUSim",
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
        .target(name: "CowTraceTestSupport", dependencies: ["CowTraceKit"], path: "Tests/CowTraceTestSupport"),
        .testTarget(name: "CowTraceKitTests", dependencies: ["CowTraceKit", "CBPF", "CowTraceTestSupport"]),
        .testTarget(name: "MMUSimTests", dependencies: ["MMUSim"]),
        .testTarget(name: "CowTraceFormatTests", dependencies: ["CowTraceFormat"]),
        .testTarget(name: "CowTraceReplayTests", dependencies: ["CowTraceReplay", "CowTraceFormat", "MMUSim"]),
        .testTarget(name: "cowtraceTests", dependencies: ["CowTraceKit", "CowTraceFormat", "CowTraceTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
