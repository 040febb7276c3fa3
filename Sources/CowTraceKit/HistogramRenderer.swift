import CowTraceFormat
import Foundation

/// Renders per-process histograms as bcc prints them (text), as JSON lines or
/// as CSV. The JSON and CSV schemas are documented in docs/exports.md and are
/// stable: fields are only ever added.
public struct HistogramRenderer {
    public let format: OutputFormat
    private var wroteCSVHeader = false

    public init(format: OutputFormat) {
        self.format = format
    }

    public static let csvHeader = "time,pid,comm,kind,mapping,unit,bucket,low,high,count,hist_count,hist_sum"

    /// Every process's non-empty histograms, processes in the order given,
    /// kinds in `HistogramKind.allCases` order. Text: a title line per
    /// process and kind, then bcc's `print_log2_hist` block, then a blank
    /// line. JSON: one object (one line). CSV: one row per non-empty bucket;
    /// the header only the first time.
    public mutating func render(_ histograms: [ProcessHistograms], at date: Date) -> String {
        switch format {
        case .text:
            var out = ""
            for p in histograms {
                for (kind, h) in Self.nonEmpty(p) {
                    out += Self.title(pid: p.pid, comm: p.comm, kind: kind) + "\n"
                    out += Self.log2Text(h, valueType: kind.unit) + "\n"
                }
            }
            return out
        case .json:
            return renderJSON(histograms, at: date)
        case .csv:
            var out = ""
            if !wroteCSVHeader {
                out += Self.csvHeader + "\n"
                wroteCSVHeader = true
            }
            let time = TableRenderer.iso8601(date)
            for p in histograms {
                for (kind, h) in Self.nonEmpty(p) {
                    for i in Self.shownBuckets(h) where h.buckets[i] > 0 {
                        let (low, high) = Log2Histogram.range(ofBucket: i)
                        out += [time, "\(p.pid)", OutputFormat.csvField(p.comm), Self.kindName(kind),
                                Self.mappingName(kind) ?? "", kind.unit, "\(i)", "\(low)", "\(high)",
                                "\(h.buckets[i])", "\(Self.total(h))", "\(h.sum)"].joined(separator: ",") + "\n"
                    }
                }
            }
            return out
        }
    }

    /// "pid 1234 (redis-server) copies-per-interval (copies)"
    public static func title(pid: Int32, comm: String, kind: HistogramKind) -> String {
        "pid \(pid) (\(comm)) \(kind) (\(kind.unit))"
    }

    /// One histogram exactly as bcc's `print_log2_hist` (libbpf-tools
    /// trace_helpers.c) prints it, with the leading empty buckets left out as
    /// well as the trailing ones: a header, then one `low -> high : count |bar|`
    /// row per bucket, each line ending in "\n". Up to bucket 32 the ranges
    /// are 10 wide and the bar 40; beyond, 20 and 20, as in bcc. Empty: "".
    public static func log2Text(_ h: Log2Histogram, valueType: String) -> String {
        let shown = shownBuckets(h)
        guard let last = shown.last else { return "" }
        let narrow = last <= 32
        let width = narrow ? 10 : 20
        let stars = narrow ? 40 : 20
        let maxCount = shown.map { h.buckets[$0] }.max() ?? 0
        var out = String(repeating: " ", count: narrow ? 5 : 15) + leftAligned(valueType, narrow ? 19 : 29)
            + " : count    distribution\n"
        for i in shown {
            let (low, high) = Log2Histogram.range(ofBucket: i)
            let count = h.buckets[i]
            out += rightAligned("\(low)", width) + " -> " + leftAligned("\(high)", width) + " : "
                + leftAligned("\(count)", 8) + " |" + bar(count, max: maxCount, width: stars) + "|\n"
        }
        return out
    }

    /// bcc's print_stars: `min(val, max) * width / max` stars, padded with spaces.
    static func bar(_ value: UInt64, max: UInt64, width: Int) -> String {
        guard max > 0 else { return String(repeating: " ", count: width) }
        // value ≤ max here; the product is done in 128 bits to stay exact.
        let product = UInt64(width).multipliedFullWidth(by: Swift.min(value, max))
        let n = Int(max.dividingFullWidth((high: product.high, low: product.low)).quotient)
        return String(repeating: "*", count: n) + String(repeating: " ", count: width - n)
    }

    /// The buckets from the first to the last non-empty one.
    static func shownBuckets(_ h: Log2Histogram) -> [Int] {
        guard let first = h.buckets.firstIndex(where: { $0 > 0 }),
              let last = h.buckets.lastIndex(where: { $0 > 0 }) else { return [] }
        return Array(first...last)
    }

    /// The values recorded: the buckets' sum (what the rows add up to).
    static func total(_ h: Log2Histogram) -> UInt64 { h.buckets.reduce(0, &+) }

    static func nonEmpty(_ p: ProcessHistograms) -> [(HistogramKind, Log2Histogram)] {
        HistogramKind.allCases.compactMap { kind in
            guard let h = p.histograms[kind], h.buckets.contains(where: { $0 > 0 }) else { return nil }
            return (kind, h)
        }
    }

    /// The kind without its mapping: copy-latency, copies-per-interval, offset-in-mapping.
    static func kindName(_ kind: HistogramKind) -> String {
        if case .offsetInMapping = kind { return "offset-in-mapping" }
        return kind.description
    }

    static func mappingName(_ kind: HistogramKind) -> String? {
        if case .offsetInMapping(let m) = kind { return m.description }
        return nil
    }

    private func renderJSON(_ histograms: [ProcessHistograms], at date: Date) -> String {
        var processes: [String] = []
        for p in histograms {
            var hists: [String] = []
            for (kind, h) in Self.nonEmpty(p) {
                let buckets = Self.shownBuckets(h).filter { h.buckets[$0] > 0 }.map { i -> String in
                    let (low, high) = Log2Histogram.range(ofBucket: i)
                    return "{\"bucket\":\(i),\"low\":\(low),\"high\":\(high),\"count\":\(h.buckets[i])}"
                }
                let mapping = Self.mappingName(kind).map(OutputFormat.jsonString) ?? "null"
                hists.append("{\"kind\":\"\(Self.kindName(kind))\",\"mapping\":\(mapping),\"unit\":\"\(kind.unit)\","
                             + "\"count\":\(Self.total(h)),\"sum\":\(h.sum),\"buckets\":[\(buckets.joined(separator: ","))]}")
            }
            if hists.isEmpty { continue }
            processes.append("{\"pid\":\(p.pid),\"comm\":\(OutputFormat.jsonString(p.comm)),\"histograms\":[\(hists.joined(separator: ","))]}")
        }
        return "{\"schema_version\":1,\"time\":\"\(TableRenderer.iso8601(date))\",\"processes\":[\(processes.joined(separator: ","))]}\n"
    }

    private static func leftAligned(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    private static func rightAligned(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}
