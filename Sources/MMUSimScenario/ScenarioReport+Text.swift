import MMUSim
/// The human-readable form of a report: a table after each step and a summary.
extension ScenarioReport {
    public func text(steps showSteps: Bool = true) -> String {
        var out: [String] = []
        out.append("Scenario \(name)" + (summary.isEmpty ? "" : ": \(summary)"))
        out.append("Machine: \(machine)")
        if showSteps {
            for step in steps { out.append(""); out += ScenarioReport.text(step) }
        }
        out.append("")
        out += summaryLines()
        return out.joined(separator: "\n") + "\n"
    }

    /// One step: what it did, the faults it caused, a row per process, the host line.
    public static func text(_ step: StepReport) -> [String] {
        var out: [String] = []
        let place = step.line > 0 ? " (line \(step.line))" : ""
        out.append("Step \(step.index)\(place): \(step.action)" + (step.note.map { "  # \($0)" } ?? ""))
        if !step.faults.isEmpty {
            let order = FaultClass.allCases.map(\.description)
            let parts = step.faults.sorted { order.firstIndex(of: $0.key)! < order.firstIndex(of: $1.key)! }
                .map { "\($0.key) \($0.value)" }
            out.append("  faults: " + parts.joined(separator: ", "))
        }
        if let error = step.error { out.append("  failed: \(error)") }
        for line in step.oomEvents { out.append("  dmesg: \(line)") }
        out += table(step.processes).map { "  " + $0 }
        out.append("  " + hostLine(step.host))
        return out
    }

    static func table(_ rows: [ProcessRow]) -> [String] {
        guard !rows.isEmpty else { return [] }
        let header = ["PROCESS", "PID", "STATE", "RSS", "PRIVATE", "SHARED", "PSS", "COPIES", "OOM_SCORE"]
        let body = rows.map { r in
            [r.name, "\(r.pid)", r.state, formatKB(r.rssKB), formatKB(r.privateKB), formatKB(r.sharedKB),
             formatKB(r.pssKB), "\(r.copies)", r.state == "running" ? "\(r.oomScore)" : "-"]
        }
        let widths = header.indices.map { c in ([header] + body).map { $0[c].count }.max()! }
        return ([header] + body).map { row in
            row.enumerated().map { c, cell in
                c == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count)
            }.joined(separator: "  ")
        }
    }

    static func hostLine(_ h: HostRow) -> String {
        var s = "host: used \(formatKB(h.usedKB)) of \(formatKB(h.ramKB))"
        if h.swapUsedKB > 0 { s += " (+\(formatKB(h.swapUsedKB)) swapped)" }
        if h.pageCacheKB > 0 { s += ", page cache \(formatKB(h.pageCacheKB))" }
        s += ", Committed_AS \(formatKB(h.committedASKB)) (CommitLimit \(formatKB(h.commitLimitKB)))"
        s += ", OOM kills \(h.oomKills)"
        return s
    }

    public func summaryLines() -> [String] {
        var out = ["Summary"]
        for p in processes {
            out.append("  \(p.name) (pid \(p.pid)): \(p.state), \(p.copies) pages copied (\(formatKB(p.copies * 4))), "
                + "\(p.faults) faults, RSS \(formatKB(p.rssKB)) (anon \(formatKB(p.anonKB)), file \(formatKB(p.fileKB)), "
                + "shmem \(formatKB(p.shmemKB))), Private_Dirty \(formatKB(p.privateDirtyKB))")
        }
        out.append("  " + ScenarioReport.hostLine(host))
        let failed = steps.filter { $0.error != nil }
        for s in failed { out.append("  step \(s.index) failed: \(s.error!)") }
        if oomEvents.isEmpty { out.append("  no OOM kill") }
        for e in oomEvents { out.append("  dmesg: \(e)") }
        for e in expectations {
            out.append("  \(e.passed ? "ok  " : "FAIL") expect \(e.check)" + (e.passed ? "" : " (got \(e.actual))"))
        }
        return out
    }
}
