import Foundation

/// The victim's fork ancestry, victim first, with the pages each process
/// copied since its fork: what the main tracer (`CowTracer`) counted for
/// processes it saw fork, and /proc for ancestors it did not (or none).
public struct OOMAncestry: Sendable, Codable, Equatable {
    public struct Link: Sendable, Codable, Equatable {
        public var pid: Int32
        public var comm: String
        /// bpf_ktime_get_ns() at its fork, when the tracer saw the fork.
        public var forkedAtNanoseconds: UInt64?
        /// Pages it copied since cowtrace started following it (copies + file copies).
        public var pagesCopied: UInt64?
        public var bytesCopied: UInt64?
        /// Where the link came from: "tracer" or "proc".
        public var source: String
    }

    public var chain: [Link]

    public init(chain: [Link]) { self.chain = chain }

    /// Walks parents from the victim up to `maxDepth` links or pid 1.
    public static func build(victim pid: Int32, comm: String, snapshot: TraceSnapshot?, pageSize: UInt64, maxDepth: Int = 8) -> OOMAncestry {
        var chain: [Link] = []
        var current = pid
        var currentComm: String? = comm
        var seen = Set<Int32>()
        while current > 0, chain.count < maxDepth, !seen.contains(current) {
            seen.insert(current)
            let parent: Int32?
            if let info = snapshot?.info[current] {
                let counters = snapshot?.counters[current]
                chain.append(Link(pid: current, comm: currentComm ?? info.comm,
                                  forkedAtNanoseconds: info.startNanoseconds == 0 ? nil : info.startNanoseconds,
                                  pagesCopied: counters?.pagesCopied,
                                  bytesCopied: counters.map { $0.bytesCopied(pageSize: pageSize) },
                                  source: "tracer"))
                parent = info.ppid
            } else {
                let name = currentComm ?? ProcFS.comm(of: current) ?? "?"
                chain.append(Link(pid: current, comm: name, forkedAtNanoseconds: nil, pagesCopied: nil, bytesCopied: nil, source: "proc"))
                parent = ProcFS.parentPID(of: current)
            }
            guard let p = parent, p > 0, current != 1 else { break }
            current = p
            currentComm = nil
        }
        return OOMAncestry(chain: chain)
    }

    /// "killed 4242 (worker) ← forked by 4200 (server) 3.2 s earlier; it had
    /// copied 512.0 MiB since its fork ← 1 (systemd)"
    public func line(killedAtNanoseconds: UInt64) -> String {
        guard let victim = chain.first else { return "" }
        var text = "killed \(victim.pid) (\(victim.comm))"
        guard chain.count > 1 else { return text + " (parent unknown)" }
        let parent = chain[1]
        if let forked = victim.forkedAtNanoseconds, killedAtNanoseconds >= forked {
            let seconds = Double(killedAtNanoseconds - forked) / 1e9
            text += " ← forked by \(parent.pid) (\(parent.comm)) \(String(format: "%.1f", seconds)) s earlier"
            if let bytes = victim.bytesCopied {
                text += "; it had copied \(OOMFormat.mebibytes(bytes)) since its fork"
            }
        } else {
            text += " ← child of \(parent.pid) (\(parent.comm)) (its fork was before cowtrace started"
            if let bytes = victim.bytesCopied { text += "; copied \(OOMFormat.mebibytes(bytes)) since then" }
            text += ")"
        }
        for link in chain.dropFirst(2) {
            text += " ← \(link.pid) (\(link.comm))"
        }
        return text
    }
}

enum OOMFormat {
    static func mebibytes(_ bytes: UInt64) -> String {
        String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }
}
