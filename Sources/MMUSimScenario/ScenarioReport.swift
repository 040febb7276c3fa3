import MMUSim
/// What a scenario run did, step by step, ready to print as a table or JSON.
public struct ScenarioReport: Codable, Sendable {
    public var name: String
    public var summary: String
    public var machine: String
    public var steps: [StepReport] = []
    public var oomEvents: [String] = []
    public var expectations: [ExpectationResult] = []
    /// Final figures per process, in creation order.
    public var processes: [ProcessRow] = []
    public var host: HostRow
    public var failedSteps: Int { steps.filter { $0.error != nil }.count }
    public var passed: Bool { expectations.allSatisfy(\.passed) }

    public struct StepReport: Codable, Sendable {
        public var index: Int
        /// Line in the scenario file (0 for steps built in code).
        public var line: Int
        public var action: String
        public var note: String?
        /// Faults this step caused, by class name (only classes that occurred).
        public var faults: [String: Int]
        /// ENOMEM, SIGSEGV and the like, when the step did not complete.
        public var error: String?
        public var oomEvents: [String]
        public var processes: [ProcessRow]
        public var host: HostRow
    }

    public struct ProcessRow: Codable, Sendable, Equatable {
        public var name: String
        public var pid: Int32
        public var comm: String
        /// "running", "exited", or "killed (OOM)".
        public var state: String
        public var rssKB: Int
        public var anonKB: Int
        public var fileKB: Int
        public var shmemKB: Int
        public var pssKB: Int
        /// Private_Clean + Private_Dirty.
        public var privateKB: Int
        /// Shared_Clean + Shared_Dirty.
        public var sharedKB: Int
        public var privateDirtyKB: Int
        /// copy + ksm-copy + file-copy faults so far.
        public var copies: Int
        public var faults: Int
        public var oomScore: Int
        public var oomScoreAdj: Int
    }

    public struct HostRow: Codable, Sendable, Equatable {
        public var ramKB: Int
        public var usedKB: Int
        public var swapUsedKB: Int
        public var pageCacheKB: Int
        public var committedASKB: Int
        public var commitLimitKB: Int
        public var oomKills: Int

        /// `committed_as_kb` (Committed_AS) under `.convertToSnakeCase`, not `committed_askb`.
        enum CodingKeys: String, CodingKey {
            case ramKB, usedKB, swapUsedKB, pageCacheKB, committedASKB = "committedAsKB", commitLimitKB, oomKills
        }
    }

    public struct ExpectationResult: Codable, Sendable, Equatable {
        public var check: String
        public var actual: String
        public var passed: Bool
    }
}
