import Foundation

/// The BPF objects compiled from bpf/*.bpf.c at build time by BPFObjectPlugin.
/// The plugin adds one `<name>Base64` member per object in a generated file.
enum EmbeddedBPF {
    /// bpf/cowtrace.bpf.c: the tracer.
    static var cowtrace: [UInt8] { decode(cowtraceBase64) }
    /// bpf/bench_floor.bpf.c: empty programs on the same hooks, for benchmarks.
    static var benchFloor: [UInt8] { decode(benchFloorBase64) }
    /// bpf/oom.bpf.c: one record per OOM kill (`cowtrace oom`).
    static var oom: [UInt8] { decode(oomBase64) }

    /// SHA-256 of each object's bytes, taken by the plugin when it embedded them.
    static let sha256: [(name: String, sha256: String)] = [
        ("cowtrace", cowtraceSHA256), ("oom", oomSHA256), ("bench_floor", benchFloorSHA256),
    ]

    private static func decode(_ base64: String) -> [UInt8] {
        guard let data = Data(base64Encoded: base64) else {
            preconditionFailure("the embedded BPF object is not valid base64: rebuild cowtrace")
        }
        return [UInt8](data)
    }
}
