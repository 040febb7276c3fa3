/// Per-process histograms the kernel buckets (bpf/cowtrace.bpf.c, `histograms`
/// map); user space only prints and exports them.

/// A log2 histogram as bcc prints it: bucket 0 holds the values 0 and 1,
/// bucket i (i ≥ 1) holds [2^i, 2^(i+1)).
public struct Log2Histogram: Equatable, Sendable {
    public static let bucketCount = 64
    public var buckets: [UInt64]
    /// Sum of the recorded values, and how many were recorded.
    public var sum: UInt64
    public var count: UInt64

    public init(buckets: [UInt64] = Array(repeating: 0, count: Log2Histogram.bucketCount), sum: UInt64 = 0, count: UInt64 = 0) {
        self.buckets = buckets
        self.sum = sum
        self.count = count
    }

    /// The bucket a value falls in.
    public static func bucket(of value: UInt64) -> Int {
        value < 2 ? 0 : 63 - value.leadingZeroBitCount
    }

    /// Smallest and largest value of bucket i (inclusive).
    public static func range(ofBucket i: Int) -> (low: UInt64, high: UInt64) {
        if i == 0 { return (0, 1) }
        let low = UInt64(1) << UInt64(i)
        return (low, i == 63 ? UInt64.max : (low << 1) - 1)
    }

    public mutating func record(_ value: UInt64, times: UInt64 = 1) {
        buckets[Log2Histogram.bucket(of: value)] += times
        sum &+= value &* times
        count += times
    }

    public static func += (lhs: inout Log2Histogram, rhs: Log2Histogram) {
        for i in 0..<min(lhs.buckets.count, rhs.buckets.count) { lhs.buckets[i] += rhs.buckets[i] }
        lhs.sum &+= rhs.sum
        lhs.count += rhs.count
    }
}

/// The kind of mapping a write-protect fault hit (raw values: enum cowtrace_mapping_kind).
public enum MappingKind: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case heap = 0, stack = 1, anonymous = 2, filePrivate = 3, shared = 4
    public var description: String {
        switch self {
        case .heap: return "heap"
        case .stack: return "stack"
        case .anonymous: return "anon-mmap"
        case .filePrivate: return "file-private"
        case .shared: return "shared"
        }
    }
}

/// What a histogram measures.
public enum HistogramKind: Hashable, Sendable, CustomStringConvertible {
    /// Time in the write-protect fault handler of faults that copied, in ns.
    /// Only tiers that see the fault return (fentry/fexit, kretprobe) fill it.
    case copyLatency
    /// Copies a process made in each interval in which it made any (burst size).
    case copiesPerInterval
    /// Write-protect faults by the kind of mapping they hit, valued by the
    /// fault's offset into that mapping, in bytes.
    case offsetInMapping(MappingKind)

    public static var allCases: [HistogramKind] {
        [.copyLatency, .copiesPerInterval] + MappingKind.allCases.map { .offsetInMapping($0) }
    }

    /// Raw key in the kernel map (enum cowtrace_hist_kind).
    public var rawValue: UInt32 {
        switch self {
        case .copyLatency: return 0
        case .copiesPerInterval: return 1
        case .offsetInMapping(let m): return 2 + m.rawValue
        }
    }

    public init?(rawValue: UInt32) {
        switch rawValue {
        case 0: self = .copyLatency
        case 1: self = .copiesPerInterval
        default:
            guard rawValue >= 2, let m = MappingKind(rawValue: rawValue - 2) else { return nil }
            self = .offsetInMapping(m)
        }
    }

    /// The unit of the histogram's values.
    public var unit: String {
        switch self {
        case .copyLatency: return "ns"
        case .copiesPerInterval: return "copies"
        case .offsetInMapping: return "bytes"
        }
    }

    public var description: String {
        switch self {
        case .copyLatency: return "copy-latency"
        case .copiesPerInterval: return "copies-per-interval"
        case .offsetInMapping(let m): return "offset-in-\(m)"
        }
    }
}

/// One process's histograms.
public struct ProcessHistograms: Equatable, Sendable {
    public var pid: Int32
    public var comm: String
    public var histograms: [HistogramKind: Log2Histogram]
    public init(pid: Int32, comm: String, histograms: [HistogramKind: Log2Histogram]) {
        self.pid = pid
        self.comm = comm
        self.histograms = histograms
    }
}
