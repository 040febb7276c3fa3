/// Runs scenarios under a live tracer and compares every class the kernel
/// counted with what the scenario knows it did.
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
        }
        tracer.forget(pids: [report.parent] + (report.child.map { [$0] } ?? []))
        return ScenarioResult(scenario: scenario, report: report, checks: checks)
    }
}
