import CowTraceFormat
import Foundation

/// What `cowtrace report` shows about one recording: its header, the totals
/// folded from its records (no model), and where it was cut.
public struct RecordingReportInput: Sendable {
    public var path: String
    public var header: TraceHeader
    public var totals: RecordedTotals
    public var cut: TraceCut?
    /// Blocks and bytes of the file (0: unknown).
    public var blocks: Int
    public var bytes: Int

    public init(path: String, header: TraceHeader, totals: RecordedTotals, cut: TraceCut?, blocks: Int = 0, bytes: Int = 0) {
        self.path = path; self.header = header; self.totals = totals; self.cut = cut
        self.blocks = blocks; self.bytes = bytes
    }

    /// Processes shown: the ones with faults, forks, execs or kernel counters,
    /// most pages copied first.
    public var shownProcesses: [RecordedProcess] {
        totals.byCopies.filter { !$0.isIdle }
    }

    public var pageSize: UInt64 { UInt64(max(1, header.pageSize)) }

    /// Seconds from the recording's start to its last record.
    public var durationSeconds: Double { Double(totals.endTime - totals.startTime) / 1e9 }

    /// The recording's start as UTC wall-clock time (ISO 8601), from the header's clock.
    public var startedAt: String { RecordingReport.wallClock(header, header.startTime) }

    /// "recording cut at offset N: ..." or nil when it ended with an end record.
    public var cutText: String? {
        switch cut {
        case nil: return nil
        case .noEndRecord(let offset)?:
            return "recording cut at offset \(offset): no end record (the recorder was killed)"
        case .damaged(let offset, let problem)?:
            return "recording cut at offset \(offset): \(problem.description); the totals are the records before it"
        }
    }

    /// The header summary, as (name, value) pairs.
    public var facts: [(String, String)] {
        let h = header
        let tiers = h.attachTiers.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        var out: [(String, String)] = [
            ("kernel", h.kernelRelease + (h.hostname.isEmpty ? "" : " on \(h.hostname)")),
            ("attach tiers", tiers.isEmpty ? "none recorded" : tiers),
            ("host RAM", RecordingReport.bytes(h.ramBytes) + ", swap " + RecordingReport.bytes(h.swapBytes)),
            ("transparent huge pages", h.transparentHugePages),
            ("overcommit", "vm.overcommit_memory=\(h.overcommitMemory), ratio \(h.overcommitRatio), kbytes \(h.overcommitKBytes)"),
            ("page size", "\(h.pageSize) bytes"),
            ("started", startedAt),
            ("duration", String(format: "%.3f s", durationSeconds)),
            ("selection", h.selection.isEmpty ? "(not recorded)" : h.selection),
            ("ended", totals.end.map { "\($0.reason)" } ?? "no end record"),
            ("recorded by", "cowtrace \(h.toolVersion)"),
        ]
        var file = "\(totals.records) records"
        if blocks > 0 { file += ", \(blocks) blocks" }
        if bytes > 0 { file += ", " + RecordingReport.bytes(UInt64(bytes)) }
        out.append(("file", file))
        return out
    }

    /// "none", or "N (ring buffer full: a, process map full: b)".
    public var lostText: String {
        guard totals.lostEvents > 0 else { return "none" }
        let parts = LossReason.allCases.compactMap { r -> String? in
            guard let n = totals.lostByReason[r], n > 0 else { return nil }
            return "\(RecordingReport.lossName(r)): \(n)"
        }
        return "\(totals.lostEvents) (\(parts.joined(separator: ", ")))"
    }
}

extension RecordedProcess {
    /// Nothing happened to it in the recording (found at start, then idle).
    public var isIdle: Bool {
        writeProtectFaults == 0 && firstTouchFaults == 0 && forks == 0 && execs == 0 && classes.total == 0
            && (counters.map { $0.wpFaults == 0 && $0.forks == 0 && $0.execs == 0 } ?? true)
    }
}

/// The text, JSON and CSV forms of `cowtrace report`.
public enum RecordingReport {
    public static func render(_ input: RecordingReportInput, format: OutputFormat, top: Int = 0) -> String {
        switch format {
        case .text: return text(input, top: top)
        case .json: return json(input)
        case .csv: return csv(input)
        }
    }

    // MARK: text

    public static func text(_ r: RecordingReportInput, top: Int = 0) -> String {
        var out = "recording \(printable(r.path))\n"
        for (name, value) in r.facts { out += "  " + pad(name + ":", 24, left: true) + printable(value) + "\n" }
        out += "  " + pad("lost events:", 24, left: true) + r.lostText + "\n"
        if let cut = r.cutText { out += "  " + printable(cut) + "\n" }
        out += "\n"
        let all = r.shownProcesses
        let shown = top > 0 ? Array(all.prefix(top)) : all
        out += pad("PID", 8) + " " + pad("COMM", 17, left: true) + pad("COPIES", 10) + pad("REUSES", 10)
            + pad("ZEROFILL", 10) + pad("FILECOPY", 10) + pad("SHARED", 9) + pad("MIB-COPIED", 12)
            + pad("FORKS", 7) + pad("EXECS", 7) + "\n"
        var differing = 0
        for p in shown {
            let c = p.classes
            let mib = Double(p.pagesCopied * r.pageSize) / 1_048_576
            let comm = String(printable(p.comm.isEmpty ? "?" : p.comm).prefix(15)) + (p.exitTime != nil ? "*" : "")
            let mismatches = p.counterMismatches
            out += pad("\(p.pid)", 8) + " " + pad(comm, 17, left: true) + pad("\(c.copies)", 10)
                + pad("\(c.reuses)", 10) + pad("\(c.zeroFills)", 10) + pad("\(c.fileCopies)", 10)
                + pad("\(c.sharedWrites)", 9) + pad(String(format: "%.1f", mib), 12)
                + pad("\(p.forks)", 7) + pad("\(p.execs)", 7) + (mismatches.isEmpty ? "" : "  !") + "\n"
            if !mismatches.isEmpty {
                differing += 1
                out += pad("", 9) + "! kernel counters differ: "
                    + mismatches.map { "\($0.field) \($0.kernel) (events \($0.events))" }.joined(separator: ", ") + "\n"
            }
        }
        let t = r.totals.total
        out += pad("", 8) + " " + pad("total", 17, left: true) + pad("\(t.classes.copies)", 10)
            + pad("\(t.classes.reuses)", 10) + pad("\(t.classes.zeroFills)", 10) + pad("\(t.classes.fileCopies)", 10)
            + pad("\(t.classes.sharedWrites)", 9)
            + pad(String(format: "%.1f", Double(t.pagesCopied * r.pageSize) / 1_048_576), 12)
            + pad("\(t.forks)", 7) + pad("\(t.execs)", 7) + "\n"
        if shown.count < all.count {
            out += "... \(all.count - shown.count) more processes (use --top 0 to show all)\n"
        }
        let idle = r.totals.processes.count - all.count
        if idle > 0 { out += "(\(idle) processes without faults, forks or execs not shown)\n" }
        if all.contains(where: { $0.exitTime != nil }) {
            out += ExitStatus.exitedLegend(shown.map { ($0.pid, $0.exitTime != nil ? $0.exitCode.map { ExitStatus(raw: $0) } : nil) })
        }
        if r.header.attachTiers["faults"] == "tracepoint" && t.classes.reuses > 0 {
            out += "(tracepoint tier: REUSES includes writes to shared mappings)\n"
        }
        let withCounters = all.filter { $0.counters != nil }.count
        if differing > 0 {
            out += "! the kernel's counters differ from the recorded events for \(differing) process\(differing == 1 ? "" : "es")"
                + (r.totals.lostEvents > 0 ? " (events were lost)" : r.cut != nil ? " (the recording was cut)" : "") + "\n"
        } else if withCounters > 0 {
            out += "kernel counters: equal to the recorded events for all \(withCounters) processes that have them\n"
        }
        if !r.totals.oomKills.isEmpty {
            out += "\nOOM kills:\n"
            for k in r.totals.oomKills {
                out += "  " + String(format: "+%.3f s", seconds(r, k.time)) + "  pid \(k.victim) (\(printable(k.comm)))"
                    + " anon-rss \(k.anonRSSKB) kB, file-rss \(k.fileRSSKB) kB, constraint \(printable(k.constraint))\n"
            }
        }
        return out
    }

    // MARK: JSON

    public static func json(_ r: RecordingReportInput) -> String {
        let h = r.header
        var o = JSONObject()
        o.raw("schema_version", "1")
        o.add("file", r.path)
        var header = JSONObject()
        header.add("kernel", h.kernelRelease)
        header.add("hostname", h.hostname)
        var tiers = JSONObject()
        for (k, v) in h.attachTiers.sorted(by: { $0.key < $1.key }) { tiers.add(k, v) }
        header.raw("attach_tiers", tiers.text)
        header.add("page_size", UInt64(h.pageSize))
        header.add("ram_bytes", h.ramBytes)
        header.add("swap_bytes", h.swapBytes)
        header.add("transparent_hugepages", h.transparentHugePages)
        header.raw("overcommit_memory", "\(h.overcommitMemory)")
        header.raw("overcommit_ratio", "\(h.overcommitRatio)")
        header.add("overcommit_kbytes", h.overcommitKBytes)
        header.add("selection", h.selection)
        header.add("tool_version", h.toolVersion)
        header.add("start_time_ns", h.startTime)
        header.add("started", r.startedAt)
        o.raw("header", header.text)
        o.raw("duration_seconds", String(format: "%.6f", r.durationSeconds))
        o.add("records", UInt64(r.totals.records))
        o.add("blocks", UInt64(r.blocks))
        o.add("bytes", UInt64(r.bytes))
        o.raw("end", r.totals.end.map { e -> String in
            var j = JSONObject(); j.add("time_ns", e.time); j.add("reason", e.reason); return j.text
        } ?? "null")
        o.raw("cut", r.cut.map { c -> String in
            var j = JSONObject()
            j.add("offset", UInt64(c.offset))
            if case .damaged(_, let problem) = c { j.add("problem", problem.description) } else { j.add("problem", "no end record") }
            j.add("text", r.cutText ?? "")
            return j.text
        } ?? "null")
        var lost = JSONObject()
        lost.add("total", r.totals.lostEvents)
        for reason in LossReason.allCases { lost.add(lossKey(reason), r.totals.lostByReason[reason] ?? 0) }
        o.raw("lost_events", lost.text)
        o.raw("processes", "[" + r.shownProcesses.map { processJSON($0, r) }.joined(separator: ",") + "]")
        o.raw("total", processJSON(r.totals.total, r))
        o.raw("forks", "[" + r.totals.forks.map { f -> String in
            var j = JSONObject()
            j.raw("parent", "\(f.parent)"); j.raw("child", "\(f.child)")
            j.raw("time_ns", f.time.map { "\($0)" } ?? "null")
            return j.text
        }.joined(separator: ",") + "]")
        o.raw("oom_kills", "[" + r.totals.oomKills.map { k -> String in
            var j = JSONObject()
            j.add("time_ns", k.time); j.raw("pid", "\(k.victim)"); j.add("comm", k.comm); j.add("uid", UInt64(k.uid))
            j.raw("oom_score_adj", "\(k.oomScoreAdj)"); j.add("total_vm_kb", k.totalVMKB); j.add("anon_rss_kb", k.anonRSSKB)
            j.add("file_rss_kb", k.fileRSSKB); j.add("shmem_rss_kb", k.shmemRSSKB); j.add("pgtables_kb", k.pgtablesKB)
            j.add("constraint", k.constraint)
            return j.text
        }.joined(separator: ",") + "]")
        return o.text + "\n"
    }

    static func processJSON(_ p: RecordedProcess, _ r: RecordingReportInput) -> String {
        var j = JSONObject()
        j.raw("pid", "\(p.pid)")
        j.raw("ppid", p.ppid.map { "\($0)" } ?? "null")
        j.add("comm", p.comm)
        j.add("wp_faults", p.writeProtectFaults)
        j.add("copies", p.classes.copies)
        j.add("reuses", p.classes.reuses)
        j.add("zero_fills", p.classes.zeroFills)
        j.add("file_copies", p.classes.fileCopies)
        j.add("shared_writes", p.classes.sharedWrites)
        j.add("other", p.classes.other)
        j.add("inferred_reuses", p.inferredReuses)
        j.add("first_touch_faults", p.firstTouchFaults)
        j.add("bytes_copied", p.pagesCopied * r.pageSize)
        j.add("forks", p.forks)
        j.add("execs", p.execs)
        j.raw("exit_code", p.exitCode.map { "\($0)" } ?? "null")
        j.raw("exit_time_ns", p.exitTime.map { "\($0)" } ?? "null")
        j.raw("fork_time_ns", p.forkTime.map { "\($0)" } ?? "null")
        j.raw("first_time_ns", p.firstTime.map { "\($0)" } ?? "null")
        j.raw("last_time_ns", p.lastTime.map { "\($0)" } ?? "null")
        j.raw("kernel", p.counters.map { k -> String in
            var c = JSONObject()
            c.add("time_ns", k.time); c.add("wp_faults", k.wpFaults); c.add("copies", k.copies)
            c.add("zero_fills", k.zeroFills); c.add("file_copies", k.fileCopies); c.add("shared_writes", k.sharedWrites)
            c.add("thp_wp_faults", k.thpWPFaults); c.add("forks", k.forks); c.add("execs", k.execs)
            return c.text
        } ?? "null")
        let mismatches = p.counterMismatches
        j.raw("kernel_differs", mismatches.isEmpty ? "false" : "true")
        j.raw("differences", "[" + mismatches.map { m -> String in
            var d = JSONObject(); d.add("field", m.field); d.add("events", m.events); d.add("kernel", m.kernel); return d.text
        }.joined(separator: ",") + "]")
        j.raw("copies_over_time", "[" + p.copiesOverTime.map { "\($0)" }.joined(separator: ",") + "]")
        return j.text
    }

    // MARK: CSV

    public static let csvHeader = "pid,ppid,comm,wp_faults,copies,reuses,zero_fills,file_copies,shared_writes,other,first_touch_faults,bytes_copied,forks,execs,exit_code,kernel_wp_faults,kernel_copies,kernel_zero_fills,kernel_file_copies,kernel_shared_writes,kernel_forks,kernel_execs,kernel_differs"

    public static func csv(_ r: RecordingReportInput) -> String {
        var out = csvHeader + "\n"
        for p in r.shownProcesses {
            let c = p.classes
            var fields = ["\(p.pid)", p.ppid.map { "\($0)" } ?? "", OutputFormat.csvField(p.comm), "\(p.writeProtectFaults)",
                          "\(c.copies)", "\(c.reuses)", "\(c.zeroFills)", "\(c.fileCopies)", "\(c.sharedWrites)", "\(c.other)",
                          "\(p.firstTouchFaults)", "\(p.pagesCopied * r.pageSize)", "\(p.forks)", "\(p.execs)",
                          p.exitCode.map { "\($0)" } ?? ""]
            if let k = p.counters {
                fields += ["\(k.wpFaults)", "\(k.copies)", "\(k.zeroFills)", "\(k.fileCopies)", "\(k.sharedWrites)",
                           "\(k.forks)", "\(k.execs)", p.counterMismatches.isEmpty ? "0" : "1"]
            } else {
                fields += ["", "", "", "", "", "", "", ""]
            }
            out += fields.joined(separator: ",") + "\n"
        }
        return out
    }

    // MARK: helpers

    static func seconds(_ r: RecordingReportInput, _ time: UInt64) -> Double {
        time >= r.totals.startTime ? Double(time - r.totals.startTime) / 1e9 : -Double(r.totals.startTime - time) / 1e9
    }

    /// UTC wall-clock time of a monotonic timestamp, from the header's clock offset.
    public static func wallClock(_ h: TraceHeader, _ time: UInt64) -> String {
        let ns = Int64(bitPattern: time) &+ h.realtimeOffsetNanoseconds
        let date = Date(timeIntervalSince1970: Double(ns) / 1e9)
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    public static func bytes(_ b: UInt64) -> String {
        if b >= 1 << 30 { return String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
        if b >= 1 << 20 { return String(format: "%.1f MiB", Double(b) / Double(1 << 20)) }
        if b >= 1 << 10 { return String(format: "%.1f KiB", Double(b) / Double(1 << 10)) }
        return "\(b) bytes"
    }

    static func lossName(_ r: LossReason) -> String {
        switch r {
        case .ringBufferFull: return "ring buffer full"
        case .processMapFull: return "process map full"
        case .infoMapFull: return "info map full"
        case .histogramMapFull: return "histogram map full"
        }
    }

    static func lossKey(_ r: LossReason) -> String {
        switch r {
        case .ringBufferFull: return "ring_buffer_full"
        case .processMapFull: return "process_map_full"
        case .infoMapFull: return "info_map_full"
        case .histogramMapFull: return "histogram_map_full"
        }
    }

    /// Control characters (terminal escapes) as "?".
    static func printable(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
    }

    static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        if s.count >= width { return s + (left ? " " : "") }
        let spaces = String(repeating: " ", count: width - s.count)
        return left ? s + spaces : spaces + s
    }
}

/// A JSON object written field by field, keys in insertion order.
struct JSONObject {
    private var fields: [String] = []
    mutating func add(_ key: String, _ value: String) { fields.append(OutputFormat.jsonString(key) + ":" + OutputFormat.jsonString(value)) }
    mutating func add(_ key: String, _ value: UInt64) { fields.append(OutputFormat.jsonString(key) + ":\(value)") }
    mutating func raw(_ key: String, _ json: String) { fields.append(OutputFormat.jsonString(key) + ":" + json) }
    var text: String { "{" + fields.joined(separator: ",") + "}" }
}
