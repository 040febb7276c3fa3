import CowTraceFormat

extension CowTraceVersion {
    /// The git commit the binary was built from (`-dirty` with uncommitted
    /// changes), recorded by BPFObjectPlugin at build time.
    public static var commit: String { BuildInfo.gitCommit }

    /// `cowtrace --version`: which source and which BPF programs a binary
    /// carries, so that a bug report names both.
    public static var long: String {
        let objects = EmbeddedBPF.sha256.map { "\($0.name) \($0.sha256.prefix(12))" }
        return "cowtrace \(current) (commit \(commit))\nbpf objects (sha256): \(objects.joined(separator: ", "))"
    }
}
