import MMUSim
/// A scripted run of the simulated machine: processes, mappings, accesses,
/// forks, and what to expect. Built-in scenarios and user files (YAML or JSON,
/// see docs/simulate.md) both become this value.
public struct Scenario: Sendable {
    public var name: String
    /// One line saying what the scenario shows.
    public var summary: String
    public var machine: MachineConfiguration
    public var cgroups: [Cgroup] = []
    public var files: [File] = []
    public var steps: [Step] = []
    public var expectations: [Expectation] = []

    public init(name: String, summary: String, machine: MachineConfiguration) {
        self.name = name
        self.summary = summary
        self.machine = machine
    }

    public struct Cgroup: Sendable, Equatable {
        public var name: String
        public var limitBytes: UInt64
    }

    public struct File: Sendable, Equatable {
        public var name: String
        public var sizeBytes: UInt64
    }

    /// One step, with the line it came from (0 when built in code).
    public struct Step: Sendable {
        public var action: Action
        public var line: Int
        /// Free text shown next to the step.
        public var note: String?
    }

    /// Where in a region a step acts: an offset and a length, each absolute or relative.
    public struct Span: Sendable, Equatable {
        public var offset: Amount = .bytes(0)
        public var length: Amount = .percent(100)
        /// Touch only every n-th page (1 = every page).
        public var every: Int = 1
    }

    /// A quantity given in bytes, pages, or percent of the region.
    public enum Amount: Sendable, Equatable {
        case bytes(UInt64)
        case pages(Int)
        case percent(Double)

        func resolve(in regionLength: UInt64) -> UInt64 {
            switch self {
            case .bytes(let b): return b
            case .pages(let p): return UInt64(p) * Paging.pageSize
            case .percent(let p):
                // Whole pages, rounded down, as a program touching p% of its pages would.
                let pages = Double(regionLength / Paging.pageSize) * p / 100
                return UInt64(pages.rounded(.down)) * Paging.pageSize
            }
        }
    }

    public enum Action: Sendable {
        case spawn(process: String, pid: Int32?, oomScoreAdj: Int, cgroup: String?, uid: UInt32, capSysAdmin: Bool)
        case mmap(process: String, region: String, size: UInt64, protection: Protection, shared: Bool,
                  file: String?, offset: UInt64, noReserve: Bool, advice: [Advice])
        case munmap(process: String, region: String)
        case mprotect(process: String, region: String, protection: Protection)
        case madvise(process: String, region: String, advice: Advice)
        /// Sets the heap (region made by brk) to `size` bytes.
        case brk(process: String, region: String, size: UInt64)
        case access(process: String, region: String, kind: AccessKind, span: Span)
        case store(process: String, region: String, offset: Amount, value: UInt64)
        case increment(process: String, region: String, offset: Amount)
        case fork(parent: String, child: String, pid: Int32?)
        case exec(process: String, comm: String)
        case exit(process: String)
        case oomScoreAdj(process: String, value: Int)
        case pin(process: String, region: String, span: Span)
        case ksm
    }

    /// A check on the outcome; a failed one makes the run fail.
    public enum Expectation: Sendable, Equatable {
        case killed(String)
        case alive(String)
        case copies(process: String, equals: Int)
        case oomKills(Int)
        case failedSteps(Int)
        case value(process: String, region: String, offset: Amount, equals: UInt64)
    }
}
