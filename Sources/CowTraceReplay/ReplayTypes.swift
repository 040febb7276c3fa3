import CowTraceFormat
import MMUSim

/// The class of a write-protect fault as the tracer names it
/// (`FaultClass.tracerCases`): the five classes, plus `other` (a kernel class
/// the tracer does not name, or a model outcome that is none of the five: no
/// fault, SIGSEGV, out of memory). The one fault-class type.
public typealias ReplayClass = FaultClass

extension FaultClass {
    /// The kernel's recorded class in the tracer's terms (`.unresolved` counts as a reuse: no copy was seen).
    public init(kernel recorded: FaultClass) {
        switch recorded {
        case .unresolved, .reuse: self = .reuse
        case .copy, .zeroFill, .fileCopy, .sharedWrite: self = recorded
        default: self = .other
        }
    }

    /// The model's outcome in the tracer's terms (`FaultClass.tracerClass`); nil is `.other`.
    public init(model: FaultClass?) {
        self = model?.tracerClass ?? .other
    }
}

/// Write-protect faults by class.
public struct ClassCounts: Equatable, Sendable {
    public var copy = 0
    public var reuse = 0
    public var zeroFill = 0
    public var fileCopy = 0
    public var sharedWrite = 0
    public var other = 0

    public init(copy: Int = 0, reuse: Int = 0, zeroFill: Int = 0, fileCopy: Int = 0, sharedWrite: Int = 0, other: Int = 0) {
        self.copy = copy; self.reuse = reuse; self.zeroFill = zeroFill
        self.fileCopy = fileCopy; self.sharedWrite = sharedWrite; self.other = other
    }

    /// The kernel's exact counters in the same terms: reuses = wpFaults − copies −
    /// zeroFills − fileCopies − sharedWrites (negative if the counters disagree with themselves).
    public init(counters c: CountersRecord) {
        copy = Int(c.copies)
        zeroFill = Int(c.zeroFills)
        fileCopy = Int(c.fileCopies)
        sharedWrite = Int(c.sharedWrites)
        reuse = Int(c.wpFaults) - copy - zeroFill - fileCopy - sharedWrite
    }

    /// Inlined: the replay tallies two classes per fault, and `+= 1` through an
    /// out-of-line getter and setter runs the switch twice.
    public subscript(_ c: ReplayClass) -> Int {
        @inline(__always) get {
            switch c {
            case .copy: return copy
            case .reuse: return reuse
            case .zeroFill: return zeroFill
            case .fileCopy: return fileCopy
            case .sharedWrite: return sharedWrite
            case .unresolved: return reuse
            default: return other
            }
        }
        @inline(__always) set {
            switch c {
            case .copy: copy = newValue
            case .reuse: reuse = newValue
            case .zeroFill: zeroFill = newValue
            case .fileCopy: fileCopy = newValue
            case .sharedWrite: sharedWrite = newValue
            case .unresolved: reuse = newValue
            default: other = newValue
            }
        }
    }

    /// `self[c] += 1` with one switch, where the subscript's getter and
    /// setter run one each (the replay counts two classes per fault).
    @inline(__always)
    mutating func countOne(_ c: ReplayClass) {
        switch c {
        case .copy: copy += 1
        case .reuse, .unresolved: reuse += 1
        case .zeroFill: zeroFill += 1
        case .fileCopy: fileCopy += 1
        case .sharedWrite: sharedWrite += 1
        default: other += 1
        }
    }

    public var total: Int { copy + reuse + zeroFill + fileCopy + sharedWrite + other }

    public static func += (a: inout ClassCounts, b: ClassCounts) {
        for c in ReplayClass.tracerCases { a[c] += b[c] }
    }
}

/// Why the model's class differs from the kernel's. The first that applies is given,
/// in this order. Raw values are the stable strings of the reports and JSON.
public enum ReplayReason: String, CaseIterable, Sendable {
    /// The address had no VMA in the model (mapped before tracing, or by exec): one was made up.
    case mappingBeforeTrace = "mapping made before tracing or by exec"
    /// A gap (events lost) was recorded between the model's last sight of the
    /// page (or the exec that made the address space) and the fault, or up to
    /// `TraceReplayer.gapWindowNanoseconds` after it.
    case eventsLostInGap = "events lost in a gap"
    /// The page was present in the kernel but never populated in the model (the
    /// kernel populated it without a user fault: exec's stack, read() into a
    /// buffer, MAP_POPULATE, fault-around, or before tracing): it was materialized.
    case pagePopulatedOutside = "page populated outside the trace"
    /// The model's PTE was writable, the kernel's was not (writeback, clear_refs,
    /// NUMA balancing, userfaultfd-wp): the model write-protected it first.
    case writeProtectedOutside = "page write-protected outside the trace"
    /// The model's VMA does not allow the write (SIGSEGV) but the kernel classified the fault.
    case protectionChangedOutside = "protection changed outside the trace"
    /// The model ran out of memory (or killed the process) handling the fault.
    case modelOutOfMemory = "the model ran out of memory"
    /// Another sharer of the frame faulted on it at an overlapping time (the
    /// recording shows both faults): each may have seen two references, so
    /// both copying, or the later one copying and the earlier reusing, is legal.
    case concurrentFault = "concurrent fault by another sharer of the page"
    /// The kernel copied a page the model sees as exclusive, shortly after the
    /// exit event of the process that shared it: the kernel tears an address
    /// space down after that event, so the page still had its second reference.
    case sharerExiting = "a sharer had exited but not yet released the page"
    /// The fault was in memory that is (or may be) backed by a huge page: the
    /// kernel's THPs were split, collapsed or allocated differently.
    case thpSplit = "THP split"
    /// The kernel copied a page the model saw as exclusive: a transient
    /// reference (LRU batch, swap cache, GUP) made the kernel's refcount check fail.
    case transientReference = "transient reference turned reuse into copy"
    /// The kernel reused a page the model still sees shared: a sharer went away
    /// (exit, unmap, exec) where the model could not see it.
    case sharerNotSeen = "a sharer's exit or unmap was not seen"
    case unexplained = "unexplained"

    /// Whether this is kernel behaviour the model cannot decide, given only
    /// where the recording shows the evidence for it: the gap record, the huge
    /// PMD or THP-eligible VMA, the other sharer's overlapping fault. These
    /// count with the agreements against the threshold. The reasons for state
    /// the model had to make up (a mapping, a page, a protection) say why the
    /// model may be wrong, not that the kernel's outcome was legal; the two read
    /// from the classes alone (a copy where the model reuses, a reuse where it
    /// copies) are guesses. Both kinds name a possible cause of an unexplained
    /// disagreement.
    public var isEvidenced: Bool {
        switch self {
        case .concurrentFault, .sharerExiting, .eventsLostInGap, .thpSplit: return true
        default: return false
        }
    }

    /// The reasons after `concurrentFault` in the order: a later overlapping fault replaces them.
    static let racesOverride: Set<ReplayReason> = [.sharerExiting, .thpSplit, .transientReference, .sharerNotSeen,
                                                   .unexplained]
}

/// One traced process as the replay saw it.
public struct ReplayProcess: Equatable, Sendable {
    public enum Origin: String, Sendable {
        /// Found running when recording started (process/mapping/pageRun records).
        case foundRunning = "found-running"
        /// Created by a recorded fork.
        case forked
        /// First seen in an event with no fork or process record: adopted with an empty address space.
        case adopted
        /// Seen only in counters records.
        case countersOnly = "counters-only"
    }

    public var pid: Int32
    public var comm: String
    public var parent: Int32?
    public var origin: Origin
    public var execs = 0
    public var exited = false
    public var exitCode: UInt32?
    /// The kernel's classes, from the fault and resolve records.
    public var kernel = ClassCounts()
    /// The model's classes for the same faults.
    public var model = ClassCounts()
    /// Faults where the two agree (tier-limited agreements included).
    public var agreements = 0
    /// Shared writes the tracepoint tier records as reuses (and, on that tier,
    /// writes that end in SIGSEGV): counted as agreements.
    public var tierLimitedAgreements = 0
    /// Not-present faults replayed (not compared: the tracer classifies write-protect faults only).
    public var firstTouchFaults = 0
    /// The last counters record of this pid.
    public var counters: CountersRecord?

    public init(pid: Int32, comm: String, parent: Int32? = nil, origin: Origin) {
        self.pid = pid; self.comm = comm; self.parent = parent; self.origin = origin
    }

    public var writeProtectFaults: Int { kernel.total }
    /// Bytes the model copied (copies and file copies, 4 KiB each).
    public var modelBytesCopied: UInt64 { UInt64(model.copy + model.fileCopy) * 4096 }
}

/// One write-protect fault whose kernel and model classes differ.
public struct Disagreement: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var address: UInt64
    public var kernel: ReplayClass
    public var model: ReplayClass
    /// The model's own outcome (`FaultClass.description`, or "none" when the page tables allowed the write).
    public var modelOutcome: String
    public var reason: ReplayReason
    /// The kernel copied where the model reused, and no other copy made this one
    /// necessary (a transient reference, or both racing sharers copied).
    public var wastedCopy = false
}

/// What the replay did, in numbers.
public struct ReplayStats: Equatable, Sendable {
    public var records = 0
    public var writeProtectFaults = 0
    public var firstTouchFaults = 0
    public var resolves = 0
    /// Resolve records with no pending write-protect fault of their thread.
    public var unmatchedResolves = 0
    /// Processes created because an event named a pid the model did not know.
    public var adoptedProcesses = 0
    /// One-page VMAs made up for faults at addresses the model had no VMA for.
    public var implicitMappings = 0
    /// Pages installed for write-protect faults on pages the model had not populated.
    public var materializedPages = 0
    /// Pages the model had writable, write-protected for a kernel write-protect fault.
    public var reprotectedPages = 0
    /// Pages installed from pageRun records.
    public var installedPages = 0
    /// Pages the pageRun records show swapped out (left unpopulated).
    public var swappedPages = 0
    public var addressSpaceOps = 0
    /// Syscalls that failed in the kernel (result < 0): replayed as no change.
    public var failedSyscalls = 0
    /// Operations the kernel did that the model refused or could not do (see the notes).
    public var modelErrors = 0
    /// Private mappings of a late snapshot made writable again until a recorded mprotect.
    public var protectionsUndone = 0
    /// Snapshot pages faulted again (the snapshot was read after the fault).
    public var snapshotPagesRefaulted = 0
    /// Anonymous pages an exec snapshot shows shared, installed as the process's own:
    /// the snapshot was read after the process forked.
    public var snapshotPagesShared = 0
    /// madvise advice the model does not model (ignored).
    public var ignoredAdvice = 0
    public var gaps = 0
    public var lostEvents: UInt64 = 0
}

/// Something the replay had to work around, counted by kind, with the first example.
public struct ReplayNote: Equatable, Sendable {
    public var kind: String
    public var count: Int
    public var example: String
}

/// The outcome of replaying a recording through the model.
public struct ReplayResult: Sendable {
    public var header: TraceHeader
    /// The fault hooks' attach tier ("fentry", "kprobe", "tracepoint", or "unknown").
    public var faultTier: String
    /// Whether the tier records shared writes (fentry, kprobe); on the tracepoint tier they are reuses.
    public var tierSeesSharedWrites: Bool
    /// Every process seen, by pid.
    public var processes: [ReplayProcess]
    /// Every disagreeing write-protect fault, in time order.
    public var disagreements: [Disagreement]
    public var gaps: [GapRecord]
    public var oomKills: [OOMKillRecord]
    public var end: EndRecord?
    public var stats: ReplayStats
    public var notes: [ReplayNote]

    public func process(_ pid: Int32) -> ReplayProcess? { processes.first { $0.pid == pid } }

    public var modelTotals: ClassCounts { processes.reduce(into: ClassCounts()) { $0 += $1.model } }
    public var kernelTotals: ClassCounts { processes.reduce(into: ClassCounts()) { $0 += $1.kernel } }
}

/// Why a recording cannot be replayed at all.
public enum ReplayError: Error, Equatable, CustomStringConvertible {
    case unsupportedPageSize(UInt32)
    case unsupportedTHPMode(String)
    case unsupportedOvercommitMode(Int32)
    case memoryTooLarge(UInt64)

    public var description: String {
        switch self {
        case .unsupportedPageSize(let size):
            return "cannot replay a recording with \(size)-byte pages: the model simulates 4096-byte pages (x86-64) only"
        case .unsupportedTHPMode(let mode):
            return "cannot replay: unknown transparent_hugepage mode \"\(mode)\" (expected always, madvise or never)"
        case .unsupportedOvercommitMode(let mode):
            return "cannot replay: unknown vm.overcommit_memory \(mode) (expected 0, 1 or 2)"
        case .memoryTooLarge(let bytes):
            return "cannot replay: \(bytes >> 30) GiB of RAM + swap is more than the model's \(Machine.maxMemoryBytes >> 40) TiB"
        }
    }
}

