import CowTraceKit
/// Runs scenarios under a live tracer and compares every class the kernel
/// counted with two truths: what the scenario planned, and (as root) what
/// the workload's own page frames show its writes did (`measure[frames]`).
public struct ScenarioResult: Sendable {
    public struct Check: Sendable {
        public let role: Scenario.Role
        public let pid: Int32
        public let measure: String
        public let expected: Int
        public let observed: Int
        public let tolerance: Int
        public var passed: Bool { abs(observed - expected) <= tolerance }
    }

    public let scenario: Scenario
    public let report: Workload.Report
    public let checks: [Check]
    public var passed: Bool { checks.allSatisfy(\.passed) }
}

public struct ScenarioRunner {
    public let tracer: CowTracer
    public let workload: Workload

    /// The tracer must follow spawned children (`followSpawnedChildren`).
    public init(tracer: CowTracer, workload: Workload) {
        self.tracer = tracer
        self.workload = workload
    }

    /// Runs one scenario. The parent's start-up faults (exec, ld.so) are
    /// taken as a baseline at the workload's handshake and subtracted.
    public func run(_ scenario: Scenario) throws -> ScenarioResult {
        var baseline = ProcessCounters()
        let report = try workload.run(scenario.arguments) { pid in
            baseline = try tracer.snapshot().counters[pid] ?? ProcessCounters()
        }
        let snapshot = try tracer.snapshot()
        let histograms = tracer.histogramsEnabled || tracer.mappingHistogramsEnabled ? try tracer.histograms() : []
        var checks: [ScenarioResult.Check] = []
        for role in Scenario.Role.allCases {
            guard var expected = scenario.expected[role] else { continue }
            let pid = role == .parent ? report.parent : (report.child ?? 0)
            if role == .child && pid == 0 { continue }
            var counted = snapshot.counters[pid] ?? ProcessCounters()
            if role == .parent { counted = counted - baseline }
            if scenario.sharedWritesNeedWriteback && report.region_on_tmpfs == true {
                expected.sharedWrites = 0 // tmpfs: no write-protect fault happens at all
            }
            if tracer.tier == .tracepoint, let shared = expected.sharedWrites {
                // No VMA is read on this tier: a shared write is a write-protect fault without a copy.
                expected.reuses = expected.reuses.map { $0 + shared }
                expected.sharedWrites = 0
            }
            let rows: [(String, Int?, UInt64)] = [
                ("copies", expected.copies, counted.copies),
                ("reuses", expected.reuses, counted.reuses),
                ("zero-fills", expected.zeroFills, counted.zeroFills),
                ("file-copies", expected.fileCopies, counted.fileCopies),
                ("shared-writes", expected.sharedWrites, counted.sharedWrites),
                ("execs", expected.execs, counted.execs),
            ]
            for (measure, expectation, got) in rows {
                guard let want = expectation else { continue }
                let tolerance = measure == "execs" ? 0 : Scenario.tolerance(for: want)
                checks.append(.init(role: role, pid: pid, measure: measure, expected: want,
                                    observed: Int(clamping: got), tolerance: tolerance))
            }
            // The second truth, from the kernel's page frames (root only):
            // what the writes really did, whatever the scenario planned.
            if let frames = report.frames?.of(role) {
                let truths: [(String, Int?, Int, UInt64)] = [
                    ("copies[frames]", expected.copies, frames.copied, counted.copies),
                    ("zero-fills[frames]", expected.zeroFills, frames.zero_filled, counted.zeroFills),
                    ("file-copies[frames]", expected.fileCopies, frames.file_copied, counted.fileCopies),
                ]
                for (measure, planned, truth, got) in truths where planned != nil {
                    checks.append(.init(role: role, pid: pid, measure: measure, expected: truth,
                                        observed: Int(clamping: got), tolerance: Scenario.tolerance(for: truth)))
                }
            }
            if tracer.histogramsEnabled || tracer.mappingHistogramsEnabled {
                checks += histogramChecks(role: role, pid: pid, counted: snapshot.counters[pid] ?? ProcessCounters(),
                                          histograms: histograms.first { $0.pid == pid })
            }
        }
        tracer.forget(pids: [report.parent] + (report.child.map { [$0] } ?? []))
        return ScenarioResult(scenario: scenario, report: report, checks: checks)
    }

    /// The kernel's histograms of a process that exited must add up to its
    /// counters (whole life, start-up included): every copy in one burst
    /// interval, every write-protect fault in one mapping kind, and on tiers
    /// that see the fault return, every copy timed once.
    private func histogramChecks(role: Scenario.Role, pid: Int32, counted: ProcessCounters,
                                 histograms: ProcessHistograms?) -> [ScenarioResult.Check] {
        let h = histograms?.histograms ?? [:]
        let copies = Int(clamping: counted.pagesCopied)
        let faults = Int(clamping: counted.writeProtectFaults)
        let byMapping = MappingKind.allCases.reduce(0) { $0 + Int(clamping: h[.offsetInMapping($1)]?.count ?? 0) }
        var checks: [ScenarioResult.Check] = []
        if tracer.histogramsEnabled {
            checks.append(.init(role: role, pid: pid, measure: "hist.copies-per-interval.sum", expected: copies,
                                observed: Int(clamping: h[.copiesPerInterval]?.sum ?? 0), tolerance: Scenario.tolerance(for: copies)))
        }
        if tracer.mappingHistogramsEnabled {
            checks.append(.init(role: role, pid: pid, measure: "hist.offset-in-mapping.count", expected: faults,
                                observed: byMapping, tolerance: Scenario.tolerance(for: faults)))
        }
        if tracer.histogramsEnabled && tracer.tier.seesFaultReturn {
            checks.append(.init(role: role, pid: pid, measure: "hist.copy-latency.count", expected: copies,
                                observed: Int(clamping: h[.copyLatency]?.count ?? 0), tolerance: Scenario.tolerance(for: copies)))
        }
        return checks
    }
}
