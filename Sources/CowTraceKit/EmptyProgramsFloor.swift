/// Empty programs on the tracepoint tier's hooks (bpf/bench_floor.bpf.c): the
/// floor a benchmark compares cowtrace's overhead with.
public final class EmptyProgramsFloor {
    private var object: BPFObject?
    private var links: [BPFLink] = []

    public init() throws {
        let missing = KernelFacts.missingBPFCapabilities()
        if !missing.isEmpty { throw TracerError.notPrivileged(missing: missing) }
        LibBPFLog.enableCapture(verbose: false)
        let object = try BPFObject(bytes: EmbeddedBPF.benchFloor, name: "bench_floor")
        try object.load(tier: .tracepoint)
        links = try object.attach(object.programNames, tier: .tracepoint)
        self.object = object
    }

    public func close() {
        links.removeAll()
        object?.close()
        object = nil
    }
}
