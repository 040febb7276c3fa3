/// What handling one page fault did: the one fault-class type of cowtrace.
///
/// The first seven cases are the kernel's (the tracer's) classes, with the
/// raw values of enum cowtrace_fault_class in bpf/cowtrace.h, which the BPF
/// programs send and the recording format stores (a test checks the two
/// agree). The others exist only in the simulator (MMUSim), which sees every
/// fault's outcome; the kernel never sends them (`init(kernel:)` refuses
/// them). Their raw values start at 0x80, so that a class the C header adds
/// (7, 8, ...) can never mean a simulator outcome in an older reader.
/// `index` numbers all cases densely (0..<count), for tables by class.
public enum FaultClass: UInt8, CaseIterable, Sendable, Comparable, CustomStringConvertible {
    /// COWTRACE_CLASS_UNRESOLVED. Tracepoint tier: no copy seen (yet), a reuse
    /// unless a resolve follows. As a resolve: not a copy-on-write fault after all.
    case unresolved = 0
    /// wp_page_copy of an anonymous page shared after fork: a new page, contents copied.
    case copy = 1
    /// wp_page_reuse: the page was exclusive (or its last user); made writable, nothing copied (vmstat pgreuse).
    case reuse = 2
    /// wp_page_copy from the zero page: a new zeroed page, nothing copied.
    case zeroFill = 3
    /// A private file page copied to a new anonymous page: do_cow_fault (not-present write) or wp_page_copy of a page-cache page.
    case fileCopy = 4
    /// A write to a MAP_SHARED mapping: wp_page_shared or do_shared_fault; never a copy.
    case sharedWrite = 5
    /// COWTRACE_CLASS_OTHER: a kernel class this version does not name.
    case other = 6

    // The simulator's own outcomes.
    /// wp_page_copy of a KSM page: always a copy (vmstat cow_ksm). The tracer sees a `copy`.
    case ksmCopy = 0x80
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

    /// How many cases (`index` runs 0..<count).
    public static let count = allCases.count

    /// First raw value of the simulator's own outcomes.
    public static let firstSimulatorRawValue: UInt8 = 0x80

    /// The case's position in `allCases`: the kernel's classes by raw value, then the simulator's.
    /// Inlinable, for the simulator's per-fault counts: the constants are
    /// spelled out (`firstSimulatorRawValue`, `kernelCases.count`), as an
    /// inlinable body cannot fold another module's stored constants; a test
    /// checks them.
    @inlinable @inline(__always)
    public var index: Int {
        rawValue < 0x80 ? Int(rawValue) : Int(rawValue &- 0x80) &+ 7
    }

    /// The kernel's classes (enum cowtrace_fault_class), in raw-value order.
    public static let kernelCases: [FaultClass] = [.unresolved, .copy, .reuse, .zeroFill, .fileCopy, .sharedWrite, .other]

    /// The classes a write-protect fault ends in, as the tracer names them
    /// (`unresolved` settled as a reuse; `other` for anything else).
    public static let tracerCases: [FaultClass] = [.copy, .reuse, .zeroFill, .fileCopy, .sharedWrite, .other]

    /// `init(rawValue:)` as two range checks other modules inline: the
    /// recording's decoder calls it for every fault and resolve, where the
    /// synthesized initializer was a call (7 % of `check`'s first pass), and a
    /// switch over the raw values a jump table whose indirect branch, taken per
    /// record, was a fifth of the first pass. A case is stored as its position
    /// in the declaration (`index`, which `allCases` follows), so the position
    /// is the value; FaultClassTests checks every byte against `init(rawValue:)`.
    @inlinable @inline(__always)
    public static func fromRawValue(_ raw: UInt8) -> FaultClass? {
        let position: UInt8
        if raw <= 6 {
            position = raw
        } else if raw &- 0x80 <= 0x89 - 0x80 {
            position = raw &- 0x80 &+ 7
        } else {
            return nil
        }
        return unsafeBitCast(position, to: FaultClass.self)
    }

    /// A kernel class from its byte (BPF event, recording); nil for other
    /// values. Inlined: the recorder takes one per fault and resolve event,
    /// where `init(rawValue:)` was a call (3 % of its samples).
    @inlinable @inline(__always)
    public init?(kernel raw: UInt8) {
        guard raw <= FaultClass.other.rawValue, let c = FaultClass.fromRawValue(raw) else { return nil }
        self = c
    }

    /// True for the kernel's classes (`kernelCases`).
    public var isKernelClass: Bool { rawValue <= FaultClass.other.rawValue }

    /// The class the tracer reports for this simulated fault, or nil for faults it does not classify.
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
        case .unresolved: return "unresolved"
        case .copy: return "copy"
        case .reuse: return "reuse"
        case .zeroFill: return "zero-fill"
        case .fileCopy: return "file-copy"
        case .sharedWrite: return "shared-write"
        case .other: return "other"
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

    public static func < (a: FaultClass, b: FaultClass) -> Bool { a.index < b.index }
}
