import CowTraceSymbols

/// Folded stacks ("comm;root;…;leaf count" per line), the input of
/// flamegraph.pl and speedscope.
public enum FoldedStacks {
    public static func render(_ stacks: [StackCount], symbolizer: StackSymbolizer, comm: (Int32) -> String) -> String {
        var merged: [String: UInt64] = [:]
        for s in stacks {
            let frames = s.addresses.isEmpty ? ["[no user stack]"] : symbolizer.frames(pid: s.pid, addresses: s.addresses)
            let line = ([sanitize(comm(s.pid))] + frames.map(sanitize)).joined(separator: ";")
            merged[line, default: 0] += s.copies
        }
        return merged.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
            .map { "\($0.key) \($0.value)\n" }.joined()
    }

    /// Frames may not hold the separators of the format.
    static func sanitize(_ frame: String) -> String {
        String(frame.map { $0 == ";" || $0 == "\n" ? "_" : $0 })
    }
}
