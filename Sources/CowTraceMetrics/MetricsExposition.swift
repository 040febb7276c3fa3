import CowTraceForecast
import CowTraceFormat
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where `cowtrace serve` reads what it exports from: the tracer, wrapped so
/// that exited processes keep their final counts (TracerMetricsSource in
/// Sources/cowtrace/Serve.swift); tests use a fixed one. MetricsCollector
/// calls snapshot() and then histograms(), under its lock.
public protocol MetricsSource: AnyObject {
    var tier: AttachTier { get }
    var pageSize: UInt64 { get }
    func snapshot() throws -> TraceSnapshot
    func histograms() throws -> [ProcessHistograms]
}

/// Everything one exposition is built from, read at one time.
public struct MetricsSnapshot: Sendable {
    public var snapshot: TraceSnapshot
    public var histograms: [ProcessHistograms]
    public var tier: AttachTier
    public var pageSize: UInt64
    /// uname -r.
    public var kernelRelease: String
    /// cowtrace's version.
    public var version: String
    /// The interval cowtrace_copies_per_interval counts copies in, if known.
    public var burstIntervalNanoseconds: UInt64?
    /// kernel.bpf_stats_enabled when the snapshot was taken (by default read
    /// then, so at every scrape); nil: unknown, no cowtrace_bpf_stats_enabled.
    public var bpfStatsEnabled: Bool?

    public init(snapshot: TraceSnapshot, histograms: [ProcessHistograms], tier: AttachTier, pageSize: UInt64,
                kernelRelease: String = MetricsExposition.kernelRelease, version: String = CowTraceVersion.current,
                burstIntervalNanoseconds: UInt64? = nil, bpfStatsEnabled: Bool? = KernelFacts.bpfStatsEnabled()) {
        self.burstIntervalNanoseconds = burstIntervalNanoseconds
        self.bpfStatsEnabled = bpfStatsEnabled
        self.snapshot = snapshot
        self.histograms = histograms
        self.tier = tier
        self.pageSize = pageSize
        self.kernelRelease = kernelRelease
        self.version = version
    }
}

/// The two exposition formats `serve` answers in.
public enum ExpositionFormat: Sendable {
    /// Prometheus text format 0.0.4, the default.
    case text
    /// OpenMetrics 1.0 text: `# UNIT`, `_created`, exemplars, `# EOF`.
    case openMetrics

    public var contentType: String {
        switch self {
        case .text: return "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// OpenMetrics when the Accept header lists it (with q > 0), else text.
    public init(accept: String?) {
        self = .text
        for item in (accept ?? "").split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard parts.first == "application/openmetrics-text" else { continue }
            if parts.contains(where: { $0.hasPrefix("q=") && Double($0.dropFirst(2)) == 0 }) { continue }
            self = .openMetrics
            return
        }
    }
}

/// The Prometheus text exposition format (version 0.0.4) of a snapshot:
/// per-process counters by fault class, bytes copied, forks and execs, the
/// histograms as Prometheus histograms, the drop counters, and an info
/// metric. The metric names, labels and the top-N rule are documented in
/// docs/exports.md.
///
/// Cardinality is bounded: the `top` processes with the most pages copied
/// (ties: lower pid first) get series of their own; every other process is
/// summed into one series with `pid="other"` (and no `comm`), so a metric
/// never has more than top + 1 series per label combination of its own
/// (class, mapping, le).
public struct MetricsExposition {
    public static let contentType = ExpositionFormat.text.contentType
    public static let defaultTop = 50
    /// uname -r, read once.
    public static let kernelRelease: String = {
        var name = utsname()
        uname(&name)
        return cString(name.release)
    }()

    /// The processes with series of their own.
    public var top: Int

    public init(top: Int = MetricsExposition.defaultTop) {
        precondition(top >= 0)
        self.top = top
    }

    /// The fault classes, as the `class` label spells them.
    public static let classes = ["copy", "reuse", "zero_fill", "file_copy", "shared_write"]

    /// The 0.0.4 text of a single snapshot, per process (--group-by pid).
    public func render(_ m: MetricsSnapshot) -> String {
        render(MetricsAggregator(grouping: .pid, top: top).update(m), m, format: .text, created: 0)
    }

    /// The exposition of `series` (from a MetricsAggregator fed `m`).
    /// `created`: when the unlabelled counters started (OpenMetrics `_created`).
    public func render(_ series: MetricsSeries, _ m: MetricsSnapshot, format: ExpositionFormat, created: Double,
                       forks: [ForkRisk] = []) -> String {
        let subjects = series.subjects
        let om = format == .openMetrics
        let labels = subjects.map { s in s.labels.map { "\($0.0)=\"\(Self.escapeLabelValue($0.1))\"" }.joined(separator: ",") }
        let createdText = subjects.map { Self.float($0.created) }

        // Appended piece by piece: a scrape of a thousand processes has about
        // a hundred thousand samples, and this is where a scrape's time goes.
        var out = [UInt8]()
        out.reserveCapacity(4096 + subjects.count * 1024)
        func put(_ s: String) { out.append(contentsOf: s.utf8) }
        func header(_ name: String, _ type: String, _ help: String) {
            var family = name
            if om && type == "counter" && family.hasSuffix("_total") { family.removeLast("_total".count) }
            if om && type == "gauge" && family.hasSuffix("_info") { family.removeLast("_info".count) }
            let omType = om && name.hasSuffix("_info") && type == "gauge" ? "info" : type
            put("# HELP "); put(family); put(" "); put(Self.escapeHelp(help, openMetrics: om)); put("\n")
            put("# TYPE "); put(family); put(" "); put(omType); put("\n")
            if om, let unit = ["bytes", "seconds"].first(where: { family.hasSuffix("_" + $0) }) {
                put("# UNIT "); put(family); put(" "); put(unit); put("\n")
            }
        }
        func start(_ name: String, _ labels: String, _ extra: String) {
            put(name)
            if !labels.isEmpty || !extra.isEmpty {
                out.append(UInt8(ascii: "{")); put(labels)
                if !labels.isEmpty && !extra.isEmpty { out.append(UInt8(ascii: ",")) }
                put(extra); out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: " "))
        }
        func line(_ name: String, _ labels: String, _ extra: String, _ value: String) {
            start(name, labels, extra); put(value); out.append(UInt8(ascii: "\n"))
        }
        var digits = [UInt8](repeating: 0, count: 20)
        func number(_ value: UInt64) {
            var v = value, n = 0
            repeat { digits[n] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10; n += 1 } while v > 0
            for i in stride(from: n - 1, through: 0, by: -1) { out.append(digits[i]) }
        }
        func line(_ name: String, _ labels: String, _ extra: String, _ value: UInt64) {
            start(name, labels, extra)
            number(value)
            out.append(UInt8(ascii: "\n"))
        }
        /// A counter sample; in OpenMetrics with its exemplar and `_created`.
        func counter(_ name: String, _ i: Int?, _ extra: String, _ value: UInt64, exemplar: MetricsExemplar? = nil) {
            let labelText = i.map { labels[$0] } ?? ""
            start(name, labelText, extra)
            number(value)
            if om, let e = exemplar {
                put(" # {pid=\"\(e.pid)\",comm=\"\(Self.escapeLabelValue(e.comm))\"} ")
                number(e.copiedBytes)
                put(" "); put(Self.timestamp(e.timestamp))
            }
            out.append(UInt8(ascii: "\n"))
            if om {
                line(String(name.dropLast("_total".count)) + "_created", labelText, extra, i.map { createdText[$0] } ?? Self.float(created))
            }
        }
        func perSubject(_ name: String, _ help: String, exemplars: Bool = false, _ value: (ProcessCounters) -> UInt64) {
            guard !subjects.isEmpty else { return }
            header(name, "counter", help)
            for (i, s) in subjects.enumerated() { counter(name, i, "", value(s.counters), exemplar: exemplars ? s.exemplar : nil) }
        }

        let wp = "cowtrace_write_protect_faults_total"
        if !subjects.isEmpty {
            header(wp, "counter", "Write-protect faults by \(series.grouping == .pid ? "process" : series.grouping.rawValue) and class: copy (page copied after fork), reuse (page was exclusive), zero_fill, file_copy (MAP_PRIVATE file page copied), shared_write. Unit: faults.")
            let classLabels = Self.classes.map { "class=\"\($0)\"" }
            for (i, s) in subjects.enumerated() {
                let c = s.counters
                for (j, v) in [c.copies, c.reuses, c.zeroFills, c.fileCopies, c.sharedWrites].enumerated() {
                    counter(wp, i, classLabels[j], v)
                }
            }
        }
        perSubject("cowtrace_copied_bytes_total",
                   "Bytes copied by copy-on-write faults (anonymous and MAP_PRIVATE file copies), in bytes.", exemplars: true) { $0.bytesCopied(pageSize: m.pageSize) }
        perSubject("cowtrace_forks_total", "Processes forked since tracing started. Unit: forks.") { $0.forks }
        perSubject("cowtrace_execs_total", "Successful execve calls since tracing started. Unit: execs.") { $0.execs }

        /// A histogram family: for every subject and kind with values, cumulative
        /// `_bucket` series from the family's lowest to its highest non-empty
        /// bucket (the same `le` set for every series of the family), `+Inf`,
        /// `_sum` and `_count`. Values are divided by `divisor` (ns to s: 1e9;
        /// a division of exact integers is correctly rounded, so 3 ns prints as 3e-09).
        func histogramFamily(_ name: String, _ help: String, _ kinds: [(HistogramKind, String)], divisor: Double?) {
            var series: [(labels: String, extra: String, h: Log2Histogram, first: Int, last: Int, subject: Int)] = []
            for (i, s) in subjects.enumerated() {
                for (kind, extra) in kinds {
                    guard let h = s.histograms[kind], let first = h.buckets.firstIndex(where: { $0 > 0 }),
                          let last = h.buckets.lastIndex(where: { $0 > 0 }) else { continue }
                    series.append((labels[i], extra, h, first, last, i))
                }
            }
            guard !series.isEmpty else { return }
            let first = series.map(\.first).min()!
            let last = series.map(\.last).max()!
            let bounds = (first...last).map { "le=\"" + Self.bound(Log2Histogram.range(ofBucket: $0).high, divisor: divisor) + "\"" }
            let bucket = name + "_bucket", sumName = name + "_sum", countName = name + "_count"
            header(name, "histogram", help)
            for s in series {
                let labels = s.extra.isEmpty ? s.labels : s.labels + "," + s.extra
                var cumulative: UInt64 = 0
                for i in 0..<first { cumulative &+= s.h.buckets[i] }
                for i in first...last {
                    cumulative &+= s.h.buckets[i]
                    line(bucket, labels, bounds[i - first], cumulative)
                }
                for i in (last + 1)..<s.h.buckets.count { cumulative &+= s.h.buckets[i] }
                line(bucket, labels, "le=\"+Inf\"", cumulative)
                line(sumName, labels, "", divisor.map { Self.float(Double(s.h.sum) / $0) } ?? String(s.h.sum))
                line(countName, labels, "", cumulative)
                if om { line(name + "_created", labels, "", createdText[s.subject]) }
            }
        }
        histogramFamily("cowtrace_copy_latency_seconds",
                        "Time in the write-protect fault handler of faults that copied (fentry and kprobe tiers only), in seconds.",
                        [(.copyLatency, "")], divisor: 1e9)
        histogramFamily("cowtrace_copies_per_interval",
                        "Copies a process made in each interval in which it made any (burst size). Unit: copies per interval of cowtrace_copies_per_interval_seconds.",
                        [(.copiesPerInterval, "")], divisor: nil)
        histogramFamily("cowtrace_fault_offset_bytes",
                        "Write-protect faults by the kind of mapping they hit, valued by their offset into the mapping, in bytes.",
                        MappingKind.allCases.map { (.offsetInMapping($0), "mapping=\"\($0.description)\"") }, divisor: nil)

        let d = m.snapshot.drops
        header("cowtrace_dropped_events_total", "counter",
               "Events the kernel side could not deliver or store, by reason: ring_buffer_full (events to user space), histogram_map_full (histogram or stack updates), vma_lookup_busy (faults left out of the mapping histograms). Unit: events.")
        for (reason, v) in [("ring_buffer_full", d.ringBufferFull), ("histogram_map_full", d.histogramMapFull),
                            ("vma_lookup_busy", d.vmaLookupBusy)] {
            counter("cowtrace_dropped_events_total", nil, "reason=\"\(reason)\"", v)
        }
        header("cowtrace_dropped_processes_total", "counter",
               "Processes the kernel side could not store, by reason: process_map_full (processes not counted), info_map_full (identities or fork records not stored). Unit: processes.")
        for (reason, v) in [("process_map_full", d.processMapFull), ("info_map_full", d.infoMapFull)] {
            counter("cowtrace_dropped_processes_total", nil, "reason=\"\(reason)\"", v)
        }
        if let ns = m.burstIntervalNanoseconds {
            header("cowtrace_copies_per_interval_seconds", "gauge",
                   "The length of the intervals cowtrace_copies_per_interval counts a process's copies in, in seconds.")
            line("cowtrace_copies_per_interval_seconds", "", "", Self.float(Double(ns) / 1e9))
        }
        header("cowtrace_info", "gauge", "Always 1 (build and runtime information): the attach tier in use, the kernel release (uname -r) and cowtrace's version.")
        put(Self.sample("cowtrace_info", [("tier", m.tier.rawValue), ("kernel", m.kernelRelease), ("version", m.version)], "1") + "\n")
        let live = m.snapshot.counters.keys.filter { m.snapshot.info[$0]?.exited != true }.count
        header("cowtrace_traced_processes", "gauge", "Processes being traced that have not exited. Unit: processes.")
        line("cowtrace_traced_processes", "", "", UInt64(live))
        if series.grouping == .pid {
            header("cowtrace_aggregated_processes", "gauge",
                   "Processes beyond --top whose counts are summed into the series with pid=\"other\". Unit: processes.")
            line("cowtrace_aggregated_processes", "", "", UInt64(series.aggregatedProcesses))
        } else {
            header("cowtrace_groups", "gauge",
                   "Groups (by --group-by) with series of their own, at most --max-groups; later ones are summed into \(series.grouping.rawValue)=\"other\". Unit: groups.")
            line("cowtrace_groups", "", "", UInt64(series.groups))
        }
        // cowtrace's own cost: the kernel's statistics of every attached program.
        if let enabled = m.bpfStatsEnabled {
            header("cowtrace_bpf_stats_enabled", "gauge",
                   "1 when kernel.bpf_stats_enabled is on and the kernel counts cowtrace_bpf_program_runs_total and cowtrace_bpf_program_run_seconds_total; 0 when off (turn on: \(KernelFacts.bpfStatsHowToEnable)). Read at every scrape. Unit: boolean.")
            line("cowtrace_bpf_stats_enabled", "", "", enabled ? 1 : 0)
        }
        let programs = m.snapshot.programs
        if !programs.isEmpty {
            let off = m.bpfStatsEnabled == false
                ? " kernel.bpf_stats_enabled is 0 now: unless a process holds a BPF_ENABLE_STATS fd the kernel is not counting, and the value stays where it was (0 if never on); turn on with \(KernelFacts.bpfStatsHowToEnable)."
                : ""
            let programLabels = programs.map { "program=\"\(Self.escapeLabelValue($0.name))\"" }
            header("cowtrace_bpf_program_runs_total", "counter",
                   "Runs of each attached cowtrace BPF program since it was loaded (the kernel's run_cnt; counted only while kernel.bpf_stats_enabled is 1). Unit: runs." + off)
            for (i, p) in programs.enumerated() { counter("cowtrace_bpf_program_runs_total", nil, programLabels[i], p.runs) }
            header("cowtrace_bpf_program_run_seconds_total", "counter",
                   "Time each attached cowtrace BPF program ran since it was loaded (the kernel's run_time_ns; counted only while kernel.bpf_stats_enabled is 1), in seconds." + off)
            for (i, p) in programs.enumerated() {
                start("cowtrace_bpf_program_run_seconds_total", "", programLabels[i])
                put(Self.float(Double(p.runNanoseconds) / 1e9)); out.append(UInt8(ascii: "\n"))
                if om { line("cowtrace_bpf_program_run_seconds_created", "", programLabels[i], Self.float(created)) }
            }
        }
        // The fork-risk forecast (docs/forecast.md): one series per live fork
        // whose child has not exec'd, at most --max-forks (the most shared first);
        // a series ends with its fork.
        if !forks.isEmpty {
            let forkLabels = forks.map { f in
                "parent_pid=\"\(f.parentPID)\",child_pid=\"\(f.childPID)\",domain=\"\(Self.escapeLabelValue(f.domain))\""
            }
            header("cowtrace_fork_shared_bytes", "gauge",
                   "An upper bound on what a live fork's pair can still copy: the child's resident anonymous pages less those either side copied since the fork, in bytes.")
            for (i, f) in forks.enumerated() { line("cowtrace_fork_shared_bytes", forkLabels[i], "", f.sharedBytes) }
            header("cowtrace_fork_headroom_bytes", "gauge",
                   "What the fork's memory domain (its memory cgroup with the least left, or the host) has left before the OOM killer, in bytes.")
            for (i, f) in forks.enumerated() { line("cowtrace_fork_headroom_bytes", forkLabels[i], "", f.headroomBytes) }
            header("cowtrace_fork_copy_rate_bytes", "gauge", "Bytes per second the fork's pair copied over the recent window.")
            for (i, f) in forks.enumerated() { line("cowtrace_fork_copy_rate_bytes", forkLabels[i], "", UInt64(f.copyBytesPerSecond)) }
            header("cowtrace_fork_at_risk", "gauge",
                   "1 when the fork's shared bytes exceed its domain's headroom: the OOM killer acts if the pair goes on writing.")
            for (i, f) in forks.enumerated() { line("cowtrace_fork_at_risk", forkLabels[i], "", f.atRisk ? 1 : 0) }
        }
        if om { put("# EOF\n") }
        return String(decoding: out, as: UTF8.self)
    }

    /// A bucket's upper bound: the largest value it holds (values are
    /// integers, so `le` is exact), divided.
    static func bound(_ high: UInt64, divisor: Double?) -> String {
        guard let divisor else { return "\(high)" }
        return float(Double(high) / divisor)
    }

    /// Shortest round-trip form ("1.023e-06", "0.5", "3.0" → "3").
    static func float(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func sample(_ name: String, _ labels: [(String, String)], _ value: String) -> String {
        if labels.isEmpty { return "\(name) \(value)" }
        return name + "{" + labels.map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",") + "} " + value
    }

    /// Label values: backslash, double quote and line feed are escaped.
    public static func escapeLabelValue(_ s: String) -> String {
        if !s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) { return s }
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// HELP text: backslash and line feed are escaped (and, in OpenMetrics, double quotes).
    public static func escapeHelp(_ s: String, openMetrics: Bool = false) -> String {
        let t = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
        return openMetrics ? t.replacingOccurrences(of: "\"", with: "\\\"") : t
    }

    /// Unix seconds with millisecond precision ("1700000000.123").
    static func timestamp(_ t: Double) -> String {
        let ms = Int64((t * 1000).rounded())
        let frac = ms % 1000
        return "\(ms / 1000)." + String(repeating: "0", count: frac < 10 ? 2 : frac < 100 ? 1 : 0) + "\(frac)"
    }
}
