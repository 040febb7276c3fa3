import CowTraceFormat

/// The comparison of a replay: per process and class the kernel's count (from
/// the fault and resolve records), the model's, and the kernel's exact
/// counters; the disagreements grouped by (pid, kernel class, model class,
/// reason); and the agreement ratio against a threshold.
///
/// Every write-protect fault is one of three: an agreement; kernel behaviour
/// the model cannot decide, with a reason the recording shows evidence for
/// (`evidenced`, e.g. a concurrent fault of another sharer); or unexplained.
/// The threshold applies to agreements plus evidenced disagreements.
public struct TraceCheck: Sendable {
    public static let defaultThreshold = 0.995

    public struct ProcessRow: Equatable, Sendable {
        public var pid: Int32
        public var comm: String
        /// From the fault and resolve records.
        public var kernel: ClassCounts
        /// The model's classes of the same faults.
        public var model: ClassCounts
        /// The kernel's counters (last counters record), nil when none was recorded.
        public var counters: ClassCounts?
        public var agreements: Int
        public var tierLimitedAgreements: Int
        /// Disagreements the recording shows a reason for (kernel behaviour the model cannot decide).
        public var evidenced = 0
        /// Copies the kernel made where a reuse was possible.
        public var wastedCopies = 0
        public var writeProtectFaults: Int { kernel.total }
        /// Disagreements with no evidence for a reason.
        public var unexplained: Int { writeProtectFaults - agreements - evidenced }
    }

    /// One figure where the events do not add up to the kernel's counters.
    public struct CounterMismatch: Equatable, Sendable {
        public var pid: Int32
        public var comm: String
        /// "write-protect faults", or a class name ("copy", "reuse", ...).
        public var field: String
        public var events: Int
        public var counters: Int
    }

    public struct DisagreementGroup: Equatable, Sendable {
        public var pid: Int32
        public var comm: String
        public var kernel: ReplayClass
        public var model: ReplayClass
        public var reason: ReplayReason
        public var count: Int
        /// Copies among them the kernel made where a reuse was possible.
        public var wastedCopies = 0
        /// Up to three addresses, first seen first.
        public var examples: [UInt64]
    }

    public let threshold: Double
    public let faultTier: String
    public let tierSeesSharedWrites: Bool
    /// Every process with write-protect faults or counters, by pid.
    public let rows: [ProcessRow]
    /// Largest group first.
    public let groups: [DisagreementGroup]
    public let mismatches: [CounterMismatch]
    /// Processes with write-protect fault records but no counters record.
    public let processesWithoutCounters: [Int32]
    public let gapsRecorded: Int
    public let lostEvents: UInt64
    /// Write-protect faults whose kernel and model classes agree (tier-limited ones included).
    public let agreed: Int
    public let total: Int
    /// Agreements only because the tier cannot tell (shared writes, SIGSEGV writes recorded as reuses).
    public let tierLimited: Int
    /// Disagreements whose reason the recording shows evidence for: kernel behaviour the model cannot decide.
    public let evidenced: Int
    /// Evidenced disagreements by reason, most first.
    public let evidencedByReason: [(reason: ReplayReason, count: Int)]
    /// Copies the kernel made where a reuse was possible (a transient reference, or both racing sharers copied).
    public let wastedCopies: Int

    public init(result: ReplayResult, threshold: Double = TraceCheck.defaultThreshold) {
        self.threshold = threshold
        faultTier = result.faultTier
        tierSeesSharedWrites = result.tierSeesSharedWrites
        gapsRecorded = result.gaps.count
        lostEvents = result.gaps.reduce(0) { $0 + $1.lost }

        var evidencedByPid: [Int32: Int] = [:], wastedByPid: [Int32: Int] = [:], byReason: [ReplayReason: Int] = [:]
        for d in result.disagreements {
            if d.reason.isEvidenced {
                evidencedByPid[d.pid, default: 0] += 1
                byReason[d.reason, default: 0] += 1
            }
            if d.wastedCopy { wastedByPid[d.pid, default: 0] += 1 }
        }
        evidenced = byReason.values.reduce(0, +)
        wastedCopies = wastedByPid.values.reduce(0, +)
        evidencedByReason = ReplayReason.allCases.compactMap { r in byReason[r].map { (r, $0) } }
            .sorted { $0.count > $1.count }

        var rows: [ProcessRow] = []
        var mismatches: [CounterMismatch] = []
        var without: [Int32] = []
        for p in result.processes where p.writeProtectFaults > 0 || p.counters != nil {
            let counters = p.counters.map(ClassCounts.init(counters:))
            rows.append(ProcessRow(pid: p.pid, comm: p.comm, kernel: p.kernel, model: p.model, counters: counters,
                                   agreements: p.agreements, tierLimitedAgreements: p.tierLimitedAgreements,
                                   evidenced: evidencedByPid[p.pid] ?? 0, wastedCopies: wastedByPid[p.pid] ?? 0))
            guard let c = p.counters, let cc = counters else {
                without.append(p.pid)
                continue
            }
            var fields: [(String, Int, Int)] = [("write-protect faults", p.kernel.total, Int(c.wpFaults))]
            // Events of class "other" are neither copies nor fills: the counters count them as reuses.
            var events = p.kernel
            events.reuse += events.other
            for cls in ReplayClass.tracerCases where cls != .other { fields.append((cls.description, events[cls], cc[cls])) }
            for (field, e, k) in fields where e != k {
                mismatches.append(CounterMismatch(pid: p.pid, comm: p.comm, field: field, events: e, counters: k))
            }
        }
        self.rows = rows
        self.mismatches = mismatches
        processesWithoutCounters = without

        let comms = Dictionary(result.processes.map { ($0.pid, $0.comm) }, uniquingKeysWith: { a, _ in a })
        struct Key: Hashable { var pid: Int32; var kernel: ReplayClass; var model: ReplayClass; var reason: ReplayReason }
        var order: [Key] = []
        var groups: [Key: DisagreementGroup] = [:]
        for d in result.disagreements {
            let key = Key(pid: d.pid, kernel: d.kernel, model: d.model, reason: d.reason)
            if groups[key] == nil {
                order.append(key)
                groups[key] = DisagreementGroup(pid: d.pid, comm: comms[d.pid] ?? "?", kernel: d.kernel, model: d.model,
                                                reason: d.reason, count: 0, examples: [])
            }
            groups[key]!.count += 1
            if d.wastedCopy { groups[key]!.wastedCopies += 1 }
            if groups[key]!.examples.count < 3, !groups[key]!.examples.contains(d.address) {
                groups[key]!.examples.append(d.address)
            }
        }
        let rank = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        self.groups = order.sorted { a, b in
            let ga = groups[a]!, gb = groups[b]!
            if ga.count != gb.count { return ga.count > gb.count }
            if ga.pid != gb.pid { return ga.pid < gb.pid }
            return rank[a]! < rank[b]!
        }.map { groups[$0]! }

        agreed = result.processes.reduce(0) { $0 + $1.agreements }
        total = result.processes.reduce(0) { $0 + $1.writeProtectFaults }
        tierLimited = result.processes.reduce(0) { $0 + $1.tierLimitedAgreements }
    }

    /// agreed / total (1 when there was no write-protect fault).
    public var ratio: Double { total == 0 ? 1 : Double(agreed) / Double(total) }
    public var disagreed: Int { total - agreed }
    /// Disagreements with no evidence for a reason.
    public var unexplained: Int { disagreed - evidenced }
    /// Agreements plus evidenced disagreements: what `threshold` applies to.
    public var accounted: Int { agreed + evidenced }
    /// accounted / total (1 when there was no write-protect fault).
    public var accountedRatio: Double { total == 0 ? 1 : Double(accounted) / Double(total) }
    public var agreementPassed: Bool { Double(accounted) >= threshold * Double(total) - 1e-9 }
    /// The events add up to the kernel's counters, or a gap explains why they do not.
    public var countersConsistent: Bool { mismatches.isEmpty || gapsRecorded > 0 }
    /// The differences between events and counters are explained by recorded gaps.
    public var mismatchesExplainedByGaps: Bool { !mismatches.isEmpty && gapsRecorded > 0 }
    /// Agreement at or above the threshold, and counters consistent with the events.
    public var passed: Bool { agreementPassed && countersConsistent }
}
