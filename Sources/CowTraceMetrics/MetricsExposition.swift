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

    public init(snapshot: TraceSnapshot, histograms: [ProcessHistograms], tier: AttachTier, pageSize: UInt64,
                kernelRelease: String = MetricsExposition.kernelRelease, version: String = CowTraceVersion.current) {
        self.snapshot = snapshot
        self.histograms = histograms
        self.tier = tier
        self.pageSize = pageSize
        self.kernelRelease = kernelRelease
        self.version = version
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
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
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

    /// One process's series or the "other" aggregate.
    private struct Subject {
        var pid: String
        var comm: String?
        var counters: ProcessCounters
        var histograms: [HistogramKind: Log2Histogram]
        /// `pid="1234",comm="x"`, escaped once for all its samples.
        var labelText: String {
            "pid=\"\(pid)\"" + (comm.map { ",comm=\"\(MetricsExposition.escapeLabelValue($0))\"" } ?? "")
        }
    }

    public func render(_ m: MetricsSnapshot) -> String {
        let table = ProcessTable(snapshot: m.snapshot, tier: m.tier, pageSize: m.pageSize)
        var subjects: [Subject] = []
        var index: [Int32: Int] = [:]
        for row in table.rows.prefix(top) {
            index[row.pid] = subjects.count
            subjects.append(Subject(pid: "\(row.pid)", comm: row.comm, counters: row.counters, histograms: [:]))
        }
        var other = Subject(pid: "other", comm: nil, counters: ProcessCounters(), histograms: [:])
        var aggregated = Set<Int32>()
        for row in table.rows.dropFirst(top) {
            other.counters = other.counters + row.counters
            aggregated.insert(row.pid)
        }
        for p in m.histograms {
            let hasValues = p.histograms.values.contains { h in h.buckets.contains { $0 > 0 } }
            if !hasValues { continue }
            if let i = index[p.pid] {
                subjects[i].histograms.merge(p.histograms) { a, b in var s = a; s += b; return s }
            } else {
                for (kind, h) in p.histograms { other.histograms[kind, default: Log2Histogram()] += h }
                aggregated.insert(p.pid)
            }
        }
        if !aggregated.isEmpty { subjects.append(other) }
        let labels = subjects.map(\.labelText)

        // Appended piece by piece: a scrape of a thousand processes has about
        // a hundred thousand samples, and this is where a scrape's time goes.
        var out = [UInt8]()
        out.reserveCapacity(4096 + subjects.count * 1024)
        func put(_ s: String) { out.append(contentsOf: s.utf8) }
        func header(_ name: String, _ type: String, _ help: String) {
            put("# HELP "); put(name); put(" "); put(Self.escapeHelp(help)); put("\n")
            put("# TYPE "); put(name); put(" "); put(type); put("\n")
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
        func line(_ name: String, _ labels: String, _ extra: String, _ value: UInt64) {
            start(name, labels, extra)
            var v = value, n = 0
            repeat { digits[n] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10; n += 1 } while v > 0
            for i in stride(from: n - 1, through: 0, by: -1) { out.append(digits[i]) }
            out.append(UInt8(ascii: "\n"))
        }
        func perSubject(_ name: String, _ type: String, _ help: String, _ value: (ProcessCounters) -> UInt64) {
            guard !subjects.isEmpty else { return }
            header(name, type, help)
            for (i, s) in subjects.enumerated() { line(name, labels[i], "", value(s.counters)) }
        }

        let wp = "cowtrace_write_protect_faults_total"
        if !subjects.isEmpty {
            header(wp, "counter", "Write-protect faults by process and class: copy (page copied after fork), reuse (page was exclusive), zero_fill, file_copy (MAP_PRIVATE file page copied), shared_write.")
            let classLabels = Self.classes.map { "class=\"\($0)\"" }
            for (i, s) in subjects.enumerated() {
                let c = s.counters
                for (j, v) in [c.copies, c.reuses, c.zeroFills, c.fileCopies, c.sharedWrites].enumerated() {
                    line(wp, labels[i], classLabels[j], v)
                }
            }
        }
        perSubject("cowtrace_copied_bytes_total", "counter",
                   "Bytes copied by copy-on-write faults (anonymous and MAP_PRIVATE file copies).") { $0.bytesCopied(pageSize: m.pageSize) }
        perSubject("cowtrace_forks_total", "counter", "Processes forked by this process since tracing started.") { $0.forks }
        perSubject("cowtrace_execs_total", "counter", "Successful execve calls by this process since tracing started.") { $0.execs }

        /// A histogram family: for every subject and kind with values, cumulative
        /// `_bucket` series from the family's lowest to its highest non-empty
        /// bucket (the same `le` set for every series of the family), `+Inf`,
        /// `_sum` and `_count`. Values are divided by `divisor` (ns to s: 1e9;
        /// a division of exact integers is correctly rounded, so 3 ns prints as 3e-09).
        func histogramFamily(_ name: String, _ help: String, _ kinds: [(HistogramKind, String)], divisor: Double?) {
            var series: [(labels: String, extra: String, h: Log2Histogram, first: Int, last: Int)] = []
            for (i, s) in subjects.enumerated() {
                for (kind, extra) in kinds {
                    guard let h = s.histograms[kind], let first = h.buckets.firstIndex(where: { $0 > 0 }),
                          let last = h.buckets.lastIndex(where: { $0 > 0 }) else { continue }
                    series.append((labels[i], extra, h, first, last))
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
            }
        }
        histogramFamily("cowtrace_copy_latency_seconds",
                        "Time in the write-protect fault handler of faults that copied (fentry and kprobe tiers only).",
                        [(.copyLatency, "")], divisor: 1e9)
        histogramFamily("cowtrace_copies_per_interval",
                        "Copies a process made in each interval in which it made any (burst size).",
                        [(.copiesPerInterval, "")], divisor: nil)
        histogramFamily("cowtrace_fault_offset_bytes",
                        "Write-protect faults by the kind of mapping they hit, valued by their offset into the mapping.",
                        MappingKind.allCases.map { (.offsetInMapping($0), "mapping=\"\($0.description)\"") }, divisor: nil)

        let d = m.snapshot.drops
        header("cowtrace_dropped_events_total", "counter",
               "What the kernel side could not deliver or store: ring_buffer_full (events), process_map_full (processes not counted), info_map_full (identities or fork records not stored), histogram_map_full (histogram or stack updates not stored), vma_lookup_busy (faults left out of the mapping histograms).")
        for (reason, v) in [("ring_buffer_full", d.ringBufferFull), ("process_map_full", d.processMapFull),
                            ("info_map_full", d.infoMapFull), ("histogram_map_full", d.histogramMapFull),
                            ("vma_lookup_busy", d.vmaLookupBusy)] {
            line("cowtrace_dropped_events_total", "", "reason=\"\(reason)\"", v)
        }
        header("cowtrace_info", "gauge", "Always 1: the attach tier in use, the kernel release and cowtrace's version.")
        put(Self.sample("cowtrace_info", [("tier", m.tier.rawValue), ("kernel", m.kernelRelease), ("version", m.version)], "1") + "\n")
        let live = m.snapshot.counters.keys.filter { m.snapshot.info[$0]?.exited != true }.count
        header("cowtrace_traced_processes", "gauge", "Processes being traced that have not exited.")
        line("cowtrace_traced_processes", "", "", UInt64(live))
        header("cowtrace_aggregated_processes", "gauge",
               "Processes beyond --top whose counts are summed into the series with pid=\"other\".")
        line("cowtrace_aggregated_processes", "", "", UInt64(aggregated.count))
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

    /// HELP text: backslash and line feed are escaped.
    public static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}
