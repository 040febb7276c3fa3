import CowTraceFormat
import Foundation

/// The per-process table `stat` prints: one row per traced process.
public struct ProcessTable: Sendable {
    public struct Row: Sendable {
        public let pid: Int32
        public let ppid: Int32
        public let comm: String
        public let counters: ProcessCounters
        public let exited: Bool
        /// How it ended, once `exited`.
        public let exit: ExitStatus?
        /// Its counted threads, most copies first (`showsThreads`).
        public let threads: [ThreadCounters]
    }

    public let rows: [Row]
    /// Rows carry their threads (the tracer counted per thread).
    public let showsThreads: Bool
    public let drops: DropCounts
    public let tier: AttachTier
    public let pageSize: UInt64
    /// Exited processes folded into one sum (TraceHistory.maxExited): not rows,
    /// but printed as one summed row and part of `totals`.
    public let folded: FoldedProcesses

    /// Rows sorted by bytes copied, then pid. Processes that never faulted,
    /// forked or exec'd are left out unless `includeIdle`.
    /// `earlier`: exited processes whose pid a later one took (TraceHistory), a row each.
    public init(snapshot: TraceSnapshot, tier: AttachTier, pageSize: UInt64, includeIdle: Bool = false,
                showsThreads: Bool = false, earlier: [EarlierProcess] = [], folded: FoldedProcesses = FoldedProcesses()) {
        let threadsByProcess = Dictionary(grouping: snapshot.threads.values, by: \.pid)
        var rows: [Row] = []
        for (pid, counters) in snapshot.counters {
            if !includeIdle && counters == ProcessCounters() { continue }
            let info = snapshot.info[pid]
            let comm = info?.comm.nonEmpty ?? ProcFS.comm(of: pid) ?? "?"
            let threads = (threadsByProcess[pid] ?? []).sorted { a, b in
                let ca = a.counters.pagesCopied, cb = b.counters.pagesCopied
                return ca != cb ? ca > cb : a.tid < b.tid
            }
            let exited = info?.exited ?? false
            rows.append(Row(pid: pid, ppid: info?.ppid ?? 0, comm: comm, counters: counters, exited: exited,
                            exit: exited ? info.map { ExitStatus(raw: $0.exitCode) } : nil, threads: threads))
        }
        for e in earlier where includeIdle || e.counters != ProcessCounters() {
            rows.append(Row(pid: e.pid, ppid: e.info?.ppid ?? 0, comm: e.info?.comm.nonEmpty ?? "?", counters: e.counters,
                            exited: true, exit: e.info.map { ExitStatus(raw: $0.exitCode) }, threads: []))
        }
        self.showsThreads = showsThreads
        rows.sort { a, b in
            let ca = a.counters.pagesCopied, cb = b.counters.pagesCopied
            return ca != cb ? ca > cb : a.pid < b.pid
        }
        self.rows = rows
        self.drops = snapshot.drops
        self.tier = tier
        self.pageSize = pageSize
        self.folded = folded
    }

    /// Every row's counts plus the folded ones'.
    public var totals: ProcessCounters { rows.reduce(folded.counters) { $0 + $1.counters } }
}

/// Renders tables as bcc-style text, JSON lines or CSV.
public struct TableRenderer {
    public let format: OutputFormat
    public var maxRows: Int
    private var wroteCSVHeader = false

    public init(format: OutputFormat, maxRows: Int = 0) {
        self.format = format
        self.maxRows = maxRows
    }

    public static let csvHeader = "time,pid,ppid,comm,wp_faults,copies,reuses,zero_fills,file_copies,shared_writes,thp_wp_faults,bytes_copied,forks,execs,exited"
    /// With threads (`stat --threads`): one more column; a thread's row has
    /// its process's pid and ppid, its own name and tid, and no forks or execs.
    public static let csvHeaderWithThreads = csvHeader + ",tid"

    public mutating func render(_ table: ProcessTable, at date: Date, final: Bool) -> String {
        switch format {
        case .text: return renderText(table, at: date, final: final)
        case .json: return renderJSON(table, at: date, final: final)
        case .csv:
            var out = ""
            if !wroteCSVHeader {
                out += (table.showsThreads ? Self.csvHeaderWithThreads : Self.csvHeader) + "\n"
                wroteCSVHeader = true
            }
            let time = Self.iso8601(date)
            for r in table.rows {
                let c = r.counters
                out += csvRow(time, r, name: r.comm, c, perProcess: ["\(c.hugePMDFaults)", "\(c.forks)", "\(c.execs)"],
                              exited: r.exited, tid: table.showsThreads ? "" : nil, pageSize: table.pageSize)
                guard table.showsThreads else { continue }
                for t in r.threads {
                    out += csvRow(time, r, name: t.comm, t.counters, perProcess: ["", "", ""],
                                  exited: t.exited, tid: "\(t.tid)", pageSize: table.pageSize)
                }
            }
            if table.folded.processes > 0 {
                // pid and ppid empty: the row is many processes (docs/exports.md).
                let c = table.folded.counters
                var fields = [time, "", "", Self.foldedName(table.folded), "\(c.writeProtectFaults)", "\(c.copies)",
                              "\(c.reuses)", "\(c.zeroFills)", "\(c.fileCopies)", "\(c.sharedWrites)", "\(c.hugePMDFaults)",
                              "\(c.bytesCopied(pageSize: table.pageSize))", "\(c.forks)", "\(c.execs)", "1"]
                if table.showsThreads { fields.append("") }
                out += fields.joined(separator: ",") + "\n"
            }
            return out
        }
    }

    private func renderText(_ table: ProcessTable, at date: Date, final: Bool) -> String {
        let clock = DateFormatter()
        clock.dateFormat = "HH:mm:ss"
        var out = final ? "\(clock.string(from: date)) final totals (tier: \(table.tier))\n"
                        : "\(clock.string(from: date)) totals since start (tier: \(table.tier))\n"
        out += pad("PID", 8) + " " + pad("COMM", 17, left: true) + pad("COPIES", 10) + pad("REUSES", 10)
            + pad("ZEROFILL", 10) + pad("FILECOPY", 10) + pad("SHARED", 9) + pad("MIB-COPIED", 12)
            + pad("FORKS", 7) + pad("EXECS", 7) + "\n"
        let shown = maxRows > 0 ? Array(table.rows.prefix(maxRows)) : table.rows
        for r in shown {
            let c = r.counters
            let mib = Double(c.bytesCopied(pageSize: table.pageSize)) / 1_048_576
            let comm = String(r.comm.prefix(15)) + (r.exited ? "*" : "")
            out += textRow(id: "\(r.pid)", name: comm, c, mib: mib, forks: "\(c.forks)", execs: "\(c.execs)")
            guard table.showsThreads else { continue }
            for t in r.threads {
                let mib = Double(t.counters.bytesCopied(pageSize: table.pageSize)) / 1_048_576
                let name = "└ " + String(t.comm.prefix(13)) + (t.exited ? "*" : "")
                out += textRow(id: "\(t.tid)", name: name, t.counters, mib: mib, forks: "-", execs: "-")
            }
        }
        if table.folded.processes > 0 {
            let c = table.folded.counters
            let mib = Double(c.bytesCopied(pageSize: table.pageSize)) / 1_048_576
            out += textRow(id: "-", name: "(\(table.folded.processes) folded)*", c, mib: mib, forks: "\(c.forks)", execs: "\(c.execs)")
            out += "(\(Self.foldedName(table.folded)): the oldest exits beyond --max-exited, summed in the row marked -)\n"
        }
        if table.showsThreads { out += "(└ TID: a thread of the process above, counted from its first write fault)\n" }
        if shown.count < table.rows.count {
            out += "... \(table.rows.count - shown.count) more processes (use --top 0 to show all)\n"
        }
        if table.rows.contains(where: \.exited) { out += ExitStatus.exitedLegend(shown.map { ($0.pid, $0.exit) }) }
        if table.tier == .tracepoint && table.rows.contains(where: { $0.counters.reuses > 0 }) {
            out += "(tracepoint tier: REUSES includes writes to shared mappings)\n"
        }
        if table.drops.total > 0 {
            out += "LOST: \(table.drops.ringBufferFull) events (ring buffer full), \(table.drops.processMapFull) processes not counted, \(table.drops.infoMapFull) identities or fork records not stored, \(table.drops.histogramMapFull) histogram or stack entries not stored (maps full: raise --max-processes), \(table.drops.vmaLookupBusy) VMA lookups refused (another BPF tool was looking VMAs up)\n"
        }
        return out
    }

    private func renderJSON(_ table: ProcessTable, at date: Date, final: Bool) -> String {
        var processes: [String] = []
        for r in table.rows {
            let c = r.counters
            processes.append("""
                {"pid":\(r.pid),"ppid":\(r.ppid),"comm":\(OutputFormat.jsonString(r.comm)),"wp_faults":\(c.writeProtectFaults),\
                "copies":\(c.copies),"reuses":\(c.reuses),"zero_fills":\(c.zeroFills),"file_copies":\(c.fileCopies),\
                "shared_writes":\(c.sharedWrites),"thp_wp_faults":\(c.hugePMDFaults),\
                "bytes_copied":\(c.bytesCopied(pageSize: table.pageSize)),"forks":\(c.forks),"execs":\(c.execs),\
                "exited":\(r.exited),"exit":\(r.exit.map { OutputFormat.jsonString($0.description) } ?? "null")\(threadsJSON(r, table))}
                """)
        }
        let d = table.drops
        let f = table.folded.counters
        return """
            {"schema_version":1,"time":"\(Self.iso8601(date))","final":\(final),"tier":"\(table.tier)","page_size":\(table.pageSize),\
            "processes":[\(processes.joined(separator: ","))],\
            "folded_exited":{"processes":\(table.folded.processes),"wp_faults":\(f.writeProtectFaults),"copies":\(f.copies),\
            "reuses":\(f.reuses),"zero_fills":\(f.zeroFills),"file_copies":\(f.fileCopies),"shared_writes":\(f.sharedWrites),\
            "thp_wp_faults":\(f.hugePMDFaults),"bytes_copied":\(f.bytesCopied(pageSize: table.pageSize)),"forks":\(f.forks),"execs":\(f.execs)},\
            "lost":{"ring_buffer_full":\(d.ringBufferFull),"process_map_full":\(d.processMapFull),"info_map_full":\(d.infoMapFull),"histogram_map_full":\(d.histogramMapFull),"vma_lookup_busy":\(d.vmaLookupBusy)}}

            """
    }

    /// One text row: a process, or (forks and execs "-") one of its threads.
    private func textRow(id: String, name: String, _ c: ProcessCounters, mib: Double, forks: String, execs: String) -> String {
        pad(id, 8) + " " + pad(name, 17, left: true) + pad("\(c.copies)", 10)
            + pad("\(c.reuses)", 10) + pad("\(c.zeroFills)", 10) + pad("\(c.fileCopies)", 10)
            + pad("\(c.sharedWrites)", 9) + pad(String(format: "%.1f", mib), 12)
            + pad(forks, 7) + pad(execs, 7) + "\n"
    }

    /// One CSV row of process `r`: its own (perProcess: thp_wp_faults, forks,
    /// execs) or one of its threads' (those empty); `tid` is the last column
    /// when the table shows threads.
    private func csvRow(_ time: String, _ r: ProcessTable.Row, name: String, _ c: ProcessCounters, perProcess: [String],
                        exited: Bool, tid: String?, pageSize: UInt64) -> String {
        var fields = [time, "\(r.pid)", "\(r.ppid)", OutputFormat.csvField(name), "\(c.writeProtectFaults)", "\(c.copies)",
                      "\(c.reuses)", "\(c.zeroFills)", "\(c.fileCopies)", "\(c.sharedWrites)", perProcess[0],
                      "\(c.bytesCopied(pageSize: pageSize))", perProcess[1], perProcess[2], exited ? "1" : "0"]
        if let tid { fields.append(tid) }
        return fields.joined(separator: ",") + "\n"
    }

    /// `,"threads":[...]` when the table shows threads, else nothing.
    private func threadsJSON(_ r: ProcessTable.Row, _ table: ProcessTable) -> String {
        guard table.showsThreads else { return "" }
        let items = r.threads.map { t -> String in
            let c = t.counters
            return "{\"tid\":\(t.tid),\"comm\":\(OutputFormat.jsonString(t.comm)),\"wp_faults\":\(c.writeProtectFaults),"
                + "\"copies\":\(c.copies),\"reuses\":\(c.reuses),\"zero_fills\":\(c.zeroFills),"
                + "\"file_copies\":\(c.fileCopies),\"shared_writes\":\(c.sharedWrites),"
                + "\"bytes_copied\":\(c.bytesCopied(pageSize: table.pageSize)),\"exited\":\(t.exited)}"
        }
        return ",\"threads\":[" + items.joined(separator: ",") + "]"
    }

    private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        if s.count >= width { return s + (left ? " " : "") }
        let spaces = String(repeating: " ", count: width - s.count)
        return left ? s + spaces : spaces + s
    }

    /// The folded row's name: text COMMs and the CSV `comm`.
    static func foldedName(_ f: FoldedProcesses) -> String {
        "\(f.processes) exited process\(f.processes == 1 ? "" : "es") folded"
    }

    static func iso8601(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
