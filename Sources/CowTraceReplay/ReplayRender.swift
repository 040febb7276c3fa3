import MMUSim
import CowTraceFormat

// Plain-text reports of `cowtrace replay` and `cowtrace check`.

/// The model's classes per process, for `cowtrace replay`: pid, comm, copies,
/// reuses, zero-fills, file-copies, shared-writes and MiB copied, a total line,
/// then what the replay had to make up and any notes.
public func renderReplay(_ result: ReplayResult) -> String {
    var lines: [String] = []
    let header = ["pid", "comm", "copies", "reuses", "zero-fills", "file-copies", "shared-writes", "MiB copied"]
    var table: [[String]] = [header]
    for p in result.processes where shownInReplay(p) {
        table.append(replayRow(String(p.pid), p.comm, p.model, p.modelBytesCopied))
    }
    let totals = result.modelTotals
    table.append(replayRow("total", "", totals, UInt64(totals.copy + totals.fileCopy) * 4096))
    lines += renderTable(table, leftAligned: [1])

    let s = result.stats
    let shown = result.processes.filter(shownInReplay).count
    lines.append("")
    lines.append("replayed \(plural(s.writeProtectFaults, "write-protect fault")) and \(plural(s.firstTouchFaults, "first touch", "first touches")) "
        + "of \(plural(shown, "process", "processes")) (fault tier \(result.faultTier))")
    if totals.other > 0 {
        lines.append("\(plural(totals.other, "write-protect fault")) had no class in the model (no fault, SIGSEGV or out of memory)")
    }
    var madeUp: [String] = []
    if s.adoptedProcesses > 0 { madeUp.append(plural(s.adoptedProcesses, "process", "processes") + " adopted") }
    if s.implicitMappings > 0 { madeUp.append(plural(s.implicitMappings, "mapping") + " made before tracing or by exec") }
    if s.materializedPages > 0 { madeUp.append(plural(s.materializedPages, "page") + " populated outside the trace") }
    if s.reprotectedPages > 0 { madeUp.append(plural(s.reprotectedPages, "page") + " write-protected outside the trace") }
    if !madeUp.isEmpty { lines.append("made up for what the model could not see: " + madeUp.joined(separator: ", ")) }
    if s.installedPages > 0 { lines.append("pages found at start: \(s.installedPages) installed, \(s.swappedPages) swapped out") }
    if s.gaps > 0 { lines.append("gaps: \(s.gaps) (\(plural(Int(clamping: s.lostEvents), "event")) lost)") }
    for n in result.notes { lines.append("note: \(n.kind): \(n.count) (e.g. \(n.example))") }
    return lines.joined(separator: "\n") + "\n"
}

/// Processes with faults, and those found running or forked (an adopted process
/// with no fault, such as the parent of `record -c`, is left out).
func shownInReplay(_ p: ReplayProcess) -> Bool {
    p.writeProtectFaults > 0 || p.firstTouchFaults > 0 || p.origin == .foundRunning || p.origin == .forked
}

func replayRow(_ pid: String, _ comm: String, _ c: ClassCounts, _ bytes: UInt64) -> [String] {
    [pid, comm, String(c.copy), String(c.reuse), String(c.zeroFill), String(c.fileCopy), String(c.sharedWrite), mib(bytes)]
}

/// The `cowtrace check` report: kernel vs model (vs counters) per process and
/// class, the counters' consistency, the disagreements with their reasons,
/// and the agreement line.
public func renderCheck(_ check: TraceCheck) -> String {
    var lines: [String] = []
    lines.append("write-protect faults by class (fault tier \(check.faultTier)): kernel records, model, kernel counters")
    var table: [[String]] = [["pid", "comm", "class", "kernel", "model", "counters"]]
    for row in check.rows {
        var first = true
        for cls in ReplayClass.tracerCases where cls != .other || row.kernel.other > 0 || row.model.other > 0 {
            let counter = row.counters.map { cls == .other ? "-" : String($0[cls]) } ?? "-"
            table.append([first ? String(row.pid) : "", first ? row.comm : "", cls.description,
                          String(row.kernel[cls]), String(row.model[cls]), counter])
            first = false
        }
        table.append(["", "", "total", String(row.kernel.total), String(row.model.total),
                      row.counters.map { String($0.total) } ?? "-"])
    }
    lines += renderTable(table, leftAligned: [1, 2])
    lines.append("")

    let withCounters = check.rows.count - check.processesWithoutCounters.count
    if check.mismatches.isEmpty {
        lines.append("counters: the events add up to the kernel's counters for "
            + "\(plural(withCounters, "process", "processes")) with counters")
    } else {
        let why = check.gapsRecorded > 0
            ? "explained by \(plural(check.gapsRecorded, "gap")) (\(plural(Int(clamping: check.lostEvents), "event")) lost)"
            : "no gap was recorded: MISMATCH"
        lines.append("counters: \(plural(check.mismatches.count, "difference")) between the events and the kernel's counters, \(why)")
        for m in check.mismatches {
            lines.append("  pid \(m.pid) (\(m.comm)) \(m.field): \(m.events) in the events, \(m.counters) counted by the kernel")
        }
    }
    if !check.processesWithoutCounters.isEmpty {
        lines.append("counters: none recorded for pid " + check.processesWithoutCounters.map(String.init).joined(separator: ", "))
    }
    lines.append("")

    if check.groups.isEmpty {
        lines.append("disagreements: none")
    } else {
        lines.append("disagreements: \(plural(check.disagreed, "fault")) in \(plural(check.groups.count, "group"))")
        let evidenced = check.groups.filter(\.reason.isEvidenced), unexplained = check.groups.filter { !$0.reason.isEvidenced }
        if !evidenced.isEmpty {
            lines.append("kernel behaviour the model cannot decide (the recording shows why): \(plural(check.evidenced, "fault"))")
            for r in check.evidencedByReason { lines.append("  \(r.reason.rawValue): \(plural(r.count, "fault"))") }
            lines += evidenced.map(groupLine)
        }
        if !unexplained.isEmpty {
            lines.append("unexplained (no evidence in the recording): \(plural(check.unexplained, "fault"))")
            lines += unexplained.map(groupLine)
        }
    }
    if check.wastedCopies > 0 {
        lines.append("wasted copies: \(plural(check.wastedCopies, "copy", "copies")) the kernel made where a reuse was possible "
            + "(\(mib(UInt64(check.wastedCopies) * 4096)) MiB)")
    }
    if check.tierLimited > 0 {
        lines.append("\(plural(check.tierLimited, "fault")) the model classes shared-write (or SIGSEGV) and the "
            + "\(check.faultTier) tier records as reuse: counted as agreements (the tier cannot tell them apart)")
    }
    lines.append(agreementLine(check))
    return lines.joined(separator: "\n") + "\n"
}

func groupLine(_ g: TraceCheck.DisagreementGroup) -> String {
    let examples = g.examples.map(hex).joined(separator: ", ")
    return "  pid \(g.pid) (\(g.comm)): kernel \(g.kernel), model \(g.model): \(plural(g.count, "fault")): "
        + "\(g.reason.rawValue) (e.g. \(examples))"
}

/// "agreement 99.87 % (12345 of 12361 write-protect faults) — threshold 99.5 %: PASS";
/// with evidenced disagreements, "agreement 97.73 % (…) + 445 the model cannot
/// decide = 100.00 % — threshold …": the threshold applies to the sum.
/// Percentages are truncated, never rounded up.
public func agreementLine(_ check: TraceCheck) -> String {
    func percent(_ n: Int) -> String {
        let hundredths = check.total == 0 ? 10_000 : n * 10_000 / check.total
        return "\(hundredths / 100).\(twoDigits(hundredths % 100))"
    }
    let t = Int((check.threshold * 10_000).rounded())
    var threshold = "\(t / 100).\(twoDigits(t % 100))"
    while threshold.hasSuffix("0") { threshold.removeLast() }
    if threshold.hasSuffix(".") { threshold.removeLast() }
    let undecided = check.evidenced == 0 ? ""
        : " + \(check.evidenced) the model cannot decide = \(percent(check.accounted)) %"
    return "agreement \(percent(check.agreed)) % (\(check.agreed) of \(check.total) write-protect faults)\(undecided) — "
        + "threshold \(threshold) %: " + (check.agreementPassed ? "PASS" : "FAIL")
}

// MARK: helpers

func twoDigits(_ v: Int) -> String { v < 10 ? "0\(v)" : String(v) }

/// Bytes as MiB with two decimals (rounded).
func mib(_ bytes: UInt64) -> String {
    let hundredths = (bytes * 100 + (1 << 19)) >> 20
    return "\(hundredths / 100).\(twoDigits(Int(hundredths % 100)))"
}

func plural(_ n: Int, _ one: String, _ many: String? = nil) -> String {
    "\(n) " + (n == 1 ? one : many ?? one + "s")
}

/// Columns separated by two spaces; numbers right-aligned, the listed columns left-aligned.
func renderTable(_ rows: [[String]], leftAligned: Set<Int>) -> [String] {
    guard let width = rows.map(\.count).max() else { return [] }
    var widths = [Int](repeating: 0, count: width)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
        var line = ""
        for (i, cell) in row.enumerated() {
            let pad = String(repeating: " ", count: widths[i] - cell.count)
            if i > 0 { line += "  " }
            line += leftAligned.contains(i) ? cell + pad : pad + cell
        }
        while line.hasSuffix(" ") { line.removeLast() }
        return line
    }
}
