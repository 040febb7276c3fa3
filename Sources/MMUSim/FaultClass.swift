/// What handling one page fault did. The first five cases are the tracer's
/// classes (CowTraceKit classifies live faults into them); the others exist
/// only in the simulator, which sees every fault's outcome.
public enum FaultClass: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// wp_page_copy of an anonymous page shared after fork: a new page, contents copied.
    case copy
    /// wp_page_reuse: the page was exclusive (or its last user); made writable, nothing copied (vmstat pgreuse).
    case reuse
    /// wp_page_copy from the zero page: a new zeroed page, nothing copied.
    case zeroFill
    /// A private file page copied to a new anonymous page: do_cow_fault (not-present write) or wp_page_copy of a page-cache page.
    case fileCopy
    /// A write to a MAP_SHARED mapping: wp_page_shared or do_shared_fault; never a copy.
    case sharedWrite
    /// wp_page_copy of a KSM page: always a copy (vmstat cow_ksm). The tracer sees a `copy`.
    case ksmCopy
    /// do_anonymous_page on a write: first touch, a new zeroed page.
    case anonymousPage
    /// do_anonymous_page on a read: the shared zero page is mapped read-only.
    case zeroPage
    /// do_read_fault: a file (or shmem) page from the page cache is mapped.
    case fileRead
    /// do_huge_pmd_anonymous_page on a write: a new 2 MiB page.
    case hugePage
    /// do_huge_pmd_anonymous_page on a read: the huge zero page is mapped.
    case hugeZeroPage
    /// The PTE already allowed the access (another path fixed it first); only the accessed/dirty bits change.
    case spurious
    /// No VMA, or the VMA forbids the access: SIGSEGV.
    case segv
    /// A file mapping beyond the end of its file: SIGBUS.
    case sigbus
    /// No memory could be found even after the OOM killer ran (or the faulting process was the victim).
    case oom

    static let count = 15

    /// The class the tracer reports for this fault, or nil for faults it does not classify.
    public var tracerClass: FaultClass? {
        switch self {
        case .copy, .ksmCopy: return .copy
        case .reuse, .zeroFill, .fileCopy, .sharedWrite: return self
        default: return nil
        }
    }

    /// True for faults that copied page contents (what "copies so far" counts).
    public var isCopy: Bool { self == .copy || self == .ksmCopy || self == .fileCopy }

    public var description: String {
        switch self {
        case .copy: return "copy"
        case .reuse: return "reuse"
        case .zeroFill: return "zero-fill"
        case .fileCopy: return "file-copy"
        case .sharedWrite: return "shared-write"
        case .ksmCopy: return "ksm-copy"
        case .anonymousPage: return "anon-page"
        case .zeroPage: return "zero-page"
        case .fileRead: return "file-read"
        case .hugePage: return "huge-page"
        case .hugeZeroPage: return "huge-zero-page"
        case .spurious: return "spurious"
        case .segv: return "segv"
        case .sigbus: return "sigbus"
        case .oom: return "oom"
        }
    }
}

/// Fault counts by class.
public struct FaultCounts: Equatable, Sendable {
    public private(set) var counts = [Int](repeating: 0, count: FaultClass.count)
    public init() {}
    public subscript(_ c: FaultClass) -> Int {
        get { counts[c.rawValue] }
        set { counts[c.rawValue] = newValue }
    }
    public var total: Int { counts.reduce(0, +) }
    /// copy + ksm-copy + file-copy.
    public var copies: Int { self[.copy] + self[.ksmCopy] + self[.fileCopy] }
    mutating func add(_ raw: UnsafeMutablePointer<Int>) {
        for i in counts.indices { counts[i] += raw[i] }
    }

    public static func += (lhs: inout FaultCounts, rhs: FaultCounts) {
        for i in lhs.counts.indices { lhs.counts[i] += rhs.counts[i] }
    }
}

/// One handled fault, in the terms the tracer records.
public struct FaultRecord: Equatable, Sendable {
    public var pid: Int32
    public var address: UInt64
    /// The x86 error code the CPU would push: 0x1 present, 0x2 write, 0x4 user.
    public var errorCode: UInt32
    public var faultClass: FaultClass
    /// The fault hit a huge PMD (the tracer's thp_wp_faults when it is a write-protect fault).
    public var onHugePMD: Bool = false

    public init(pid: Int32, address: UInt64, errorCode: UInt32, faultClass: FaultClass, onHugePMD: Bool = false) {
        self.pid = pid
        self.address = address
        self.errorCode = errorCode
        self.faultClass = faultClass
        self.onHugePMD = onHugePMD
    }

    /// Present and write (error code bits 0x1 and 0x2): what the tracer calls a write-protect fault.
    public var isWriteProtectFault: Bool { errorCode & 0x3 == 0x3 }
}

/// The x86 page-fault error code bits.
public enum FaultErrorCode {
    public static let protection: UInt32 = 0x1
    public static let write: UInt32 = 0x2
    public static let user: UInt32 = 0x4
}
