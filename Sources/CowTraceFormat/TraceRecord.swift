/// The contents of a cowtrace recording (`cowtrace record`), independent of
/// how they are laid out on disk (TraceFileWriter / TraceFileReader).
///
/// Times are nanoseconds of CLOCK_MONOTONIC (bpf_ktime_get_ns); the header's
/// `clock` turns them into wall-clock time. Addresses are user virtual
/// addresses. Pids are thread-group ids (tgid), tids are thread ids.

#if canImport(CowTraceFaultClass)
@_exported import CowTraceFaultClass
#endif

/// How a write-protect fault ended, as the kernel (tracer) classified it: the
/// one fault-class type, of which a recording holds the kernel's classes only
/// (`FaultClass.kernelCases`; raw values: enum cowtrace_fault_class in bpf/cowtrace.h).
public typealias RecordedFaultClass = FaultClass

/// Which user fault a `fault` record is.
public enum RecordedFaultKind: UInt8, Sendable, CaseIterable {
    /// Present + write: a write-protect fault (the ones the tracer classifies).
    case writeProtect = 1
    /// Not present, read access: first touch of the page by a read.
    case firstTouchRead = 2
    /// Not present, write access: first touch of the page by a write.
    case firstTouchWrite = 3
}

/// The kind of VMA a fault hit, as the kernel saw it at the fault (raw
/// values: enum cowtrace_vma_kind in bpf/cowtrace.h).
public enum RecordedMappingKind: UInt8, Sendable, CaseIterable {
    case unknown = 0
    case anonymousPrivate = 1
    case filePrivate = 2
    /// MAP_SHARED, file or anonymous (shmem).
    case shared = 3

    /// `init(rawValue:)` with `.unknown` for any other byte, as one range
    /// check other modules inline (the recorder takes one per fault event;
    /// the synthesized initializer is a call). The cases are numbered from 0
    /// in order, so a raw value is its case; tests check every byte.
    @inlinable @inline(__always)
    public static func fromRawValue(orUnknown raw: UInt8) -> RecordedMappingKind {
        raw <= RecordedMappingKind.shared.rawValue ? unsafeBitCast(raw, to: RecordedMappingKind.self) : .unknown
    }
}

/// An address-space change, recorded at the exit of the syscall that made it.
public enum AddressSpaceOp: UInt8, Sendable, CaseIterable {
    case mmap = 1      // args: addr, len, prot, flags, fd, offset; result: start address or -errno
    case munmap = 2    // args: addr, len
    case mprotect = 3  // args: addr, len, prot
    case brk = 4       // args: requested break; result: the new break
    case mremap = 5    // args: old addr, old len, new len, flags, new addr; result: new address or -errno
    case madvise = 6   // args: addr, len, advice
}

/// Kinds of loss. Raw values are enum cowtrace_drop_reason in bpf/cowtrace.h.
public enum LossReason: UInt8, Sendable, CaseIterable {
    case ringBufferFull = 0
    case processMapFull = 1
    case infoMapFull = 2
    case histogramMapFull = 3
}

/// What a page was when the recording started (from /proc/PID/pagemap).
public struct PageRunFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// pagemap bit 63.
    public static let present = PageRunFlags(rawValue: 1 << 0)
    /// pagemap bit 62.
    public static let swapped = PageRunFlags(rawValue: 1 << 1)
    /// pagemap bit 61: a file page or shared anonymous (shmem) page.
    public static let fileOrShared = PageRunFlags(rawValue: 1 << 2)
    /// pagemap bit 56: mapped by this process only.
    public static let exclusive = PageRunFlags(rawValue: 1 << 3)
    /// /proc/kpageflags KPF_ZERO_PAGE: the shared zero page.
    public static let zeroPage = PageRunFlags(rawValue: 1 << 4)
    /// /proc/kpageflags KPF_THP: part of a transparent huge page.
    public static let huge = PageRunFlags(rawValue: 1 << 5)
}

/// One recorded item, in the order the recorder saw it (by timestamp within
/// a block, not strictly across blocks: the replay sorts by `time`). The
/// large, rare cases are `indirect`, so an array of (mostly fault) records
/// stays at 48 bytes per element.
public enum TraceRecord: Equatable, Sendable {
    /// A traced process as found when recording started (or when first seen
    /// already running), from /proc/PID/stat and status.
    indirect case process(ProcessRecord)
    /// One line of /proc/PID/maps of a process found at start.
    indirect case mapping(MappingRecord)
    /// A run of pages of a process found at start with the same state:
    /// `count` pages from `address`; when present (and not the zero page),
    /// their frame numbers run from `frame` upward by one.
    indirect case pageRun(PageRunRecord)
    case fork(ForkEventRecord)
    case exec(ExecEventRecord)
    case exit(ExitEventRecord)
    case addressSpace(AddressSpaceRecord)
    /// A user page fault (tracepoint page_fault_user, or do_wp_page's entry).
    case fault(FaultRecord)
    /// The allocation (or wp_page_copy) that resolved the thread's pending
    /// write-protect fault: its final class. A fault with no resolve before
    /// the thread's next fault is a reuse on the tracepoint tier.
    case resolve(ResolveRecord)
    indirect case oomKill(OOMKillRecord)
    /// Events the kernel could not hand over (counted in the kernel, found by
    /// the recorder at `time`): the events in between are missing.
    case gap(GapRecord)
    /// The kernel's exact per-process counters (written at the end, and
    /// periodically so that a cut file still has recent ones).
    indirect case counters(CountersRecord)
    /// The recording ended cleanly.
    case end(EndRecord)
}

public struct ProcessRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var ppid: Int32
    public var uid: UInt32
    public var comm: String
    public var startBrk: UInt64
    public var brk: UInt64
    public var startStack: UInt64
    public init(time: UInt64, pid: Int32, ppid: Int32, uid: UInt32, comm: String,
                startBrk: UInt64, brk: UInt64, startStack: UInt64) {
        self.time = time; self.pid = pid; self.ppid = ppid; self.uid = uid; self.comm = comm
        self.startBrk = startBrk; self.brk = brk; self.startStack = startStack
    }
}

public struct MappingRecord: Equatable, Sendable {
    public var pid: Int32
    public var start: UInt64
    public var end: UInt64
    /// "rwxp" / "rw-s" as in /proc/PID/maps.
    public var permissions: String
    public var offset: UInt64
    public var inode: UInt64
    /// Path or pseudo-name ("[heap]", "[stack]", "" for anonymous).
    public var path: String
    public init(pid: Int32, start: UInt64, end: UInt64, permissions: String, offset: UInt64, inode: UInt64, path: String) {
        self.pid = pid; self.start = start; self.end = end; self.permissions = permissions
        self.offset = offset; self.inode = inode; self.path = path
    }
}

public struct PageRunRecord: Equatable, Sendable {
    public var pid: Int32
    public var address: UInt64
    public var count: UInt32
    public var flags: PageRunFlags
    public var frame: UInt64
    public init(pid: Int32, address: UInt64, count: UInt32, flags: PageRunFlags, frame: UInt64) {
        self.pid = pid; self.address = address; self.count = count; self.flags = flags; self.frame = frame
    }
}

public struct ForkEventRecord: Equatable, Sendable {
    public var time: UInt64
    public var parent: Int32
    public var parentTid: Int32
    public var child: Int32
    public var comm: String
    public init(time: UInt64, parent: Int32, parentTid: Int32, child: Int32, comm: String) {
        self.time = time; self.parent = parent; self.parentTid = parentTid; self.child = child; self.comm = comm
    }
}

public struct ExecEventRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var comm: String
    public init(time: UInt64, pid: Int32, tid: Int32, comm: String) {
        self.time = time; self.pid = pid; self.tid = tid; self.comm = comm
    }
}

public struct ExitEventRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    /// task->exit_code (status << 8 | signal).
    public var exitCode: UInt32
    public init(time: UInt64, pid: Int32, tid: Int32, exitCode: UInt32) {
        self.time = time; self.pid = pid; self.tid = tid; self.exitCode = exitCode
    }
}

public struct AddressSpaceRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var op: AddressSpaceOp
    /// The syscall's first five arguments (unused ones are 0).
    public var args: [UInt64]
    /// The syscall's return value (negative: -errno).
    public var result: Int64
    public init(time: UInt64, pid: Int32, tid: Int32, op: AddressSpaceOp, args: [UInt64], result: Int64) {
        self.time = time; self.pid = pid; self.tid = tid; self.op = op; self.args = args; self.result = result
    }
}

public struct FaultRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var address: UInt64
    public var ip: UInt64
    public var kind: RecordedFaultKind
    /// The class known at the fault (shared-write on fentry/kprobe tiers), else .unresolved.
    public var faultClass: RecordedFaultClass
    /// The kind of VMA the fault hit (what the model needs for a mapping it never saw made).
    public var mapping: RecordedMappingKind
    public init(time: UInt64, pid: Int32, tid: Int32, address: UInt64, ip: UInt64,
                kind: RecordedFaultKind, faultClass: RecordedFaultClass, mapping: RecordedMappingKind = .unknown) {
        self.time = time; self.pid = pid; self.tid = tid; self.address = address; self.ip = ip
        self.kind = kind; self.faultClass = faultClass; self.mapping = mapping
    }
}

public struct ResolveRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var address: UInt64
    public var faultClass: RecordedFaultClass
    public init(time: UInt64, pid: Int32, tid: Int32, address: UInt64, faultClass: RecordedFaultClass) {
        self.time = time; self.pid = pid; self.tid = tid; self.address = address; self.faultClass = faultClass
    }
}

public struct OOMKillRecord: Equatable, Sendable {
    public var time: UInt64
    public var victim: Int32
    public var comm: String
    public var uid: UInt32
    public var oomScoreAdj: Int32
    public var totalVMKB: UInt64
    public var anonRSSKB: UInt64
    public var fileRSSKB: UInt64
    public var shmemRSSKB: UInt64
    public var pgtablesKB: UInt64
    /// "memcg <path>", "global", ... as the OOM tracer reported it.
    public var constraint: String
    public init(time: UInt64, victim: Int32, comm: String, uid: UInt32, oomScoreAdj: Int32,
                totalVMKB: UInt64, anonRSSKB: UInt64, fileRSSKB: UInt64, shmemRSSKB: UInt64,
                pgtablesKB: UInt64, constraint: String) {
        self.time = time; self.victim = victim; self.comm = comm; self.uid = uid; self.oomScoreAdj = oomScoreAdj
        self.totalVMKB = totalVMKB; self.anonRSSKB = anonRSSKB; self.fileRSSKB = fileRSSKB
        self.shmemRSSKB = shmemRSSKB; self.pgtablesKB = pgtablesKB; self.constraint = constraint
    }
}

public struct GapRecord: Equatable, Sendable {
    public var time: UInt64
    public var reason: LossReason
    public var lost: UInt64
    public init(time: UInt64, reason: LossReason, lost: UInt64) {
        self.time = time; self.reason = reason; self.lost = lost
    }
}

public struct CountersRecord: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var comm: String
    public var wpFaults: UInt64
    public var copies: UInt64
    public var zeroFills: UInt64
    public var fileCopies: UInt64
    public var sharedWrites: UInt64
    public var thpWPFaults: UInt64
    public var forks: UInt64
    public var execs: UInt64
    public init(time: UInt64, pid: Int32, comm: String, wpFaults: UInt64, copies: UInt64, zeroFills: UInt64,
                fileCopies: UInt64, sharedWrites: UInt64, thpWPFaults: UInt64, forks: UInt64, execs: UInt64) {
        self.time = time; self.pid = pid; self.comm = comm; self.wpFaults = wpFaults; self.copies = copies
        self.zeroFills = zeroFills; self.fileCopies = fileCopies; self.sharedWrites = sharedWrites
        self.thpWPFaults = thpWPFaults; self.forks = forks; self.execs = execs
    }
}

public struct EndRecord: Equatable, Sendable {
    public var time: UInt64
    /// Why recording stopped: "command exited", "duration", "signal", ...
    public var reason: String
    public init(time: UInt64, reason: String) { self.time = time; self.reason = reason }
}

/// The first block of every recording.
public struct TraceHeader: Equatable, Sendable {
    public static let currentVersion: UInt16 = 1
    public var version: UInt16 = TraceHeader.currentVersion
    /// uname -r of the traced host.
    public var kernelRelease: String
    public var hostname: String
    /// The attach tier of each hook, e.g. ["faults": "tracepoint", "oom": "tracepoint"].
    public var attachTiers: [String: String]
    public var pageSize: UInt32
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC at start, in ns: add it to a record's time for wall-clock time.
    public var realtimeOffsetNanoseconds: Int64
    /// CLOCK_MONOTONIC at start, in ns.
    public var startTime: UInt64
    public var ramBytes: UInt64
    public var swapBytes: UInt64
    /// vm.overcommit_memory, vm.overcommit_ratio, vm.overcommit_kbytes.
    public var overcommitMemory: Int32
    public var overcommitRatio: Int32
    public var overcommitKBytes: UInt64
    /// /sys/kernel/mm/transparent_hugepage/enabled, the selected word ("madvise").
    public var transparentHugePages: String
    /// What was traced, as the user asked ("-c cowtrace-workload ...", "-p 1234", "--all").
    public var selection: String
    /// cowtrace's version.
    public var toolVersion: String

    public init(kernelRelease: String, hostname: String, attachTiers: [String: String], pageSize: UInt32,
                realtimeOffsetNanoseconds: Int64, startTime: UInt64, ramBytes: UInt64, swapBytes: UInt64,
                overcommitMemory: Int32, overcommitRatio: Int32, overcommitKBytes: UInt64,
                transparentHugePages: String, selection: String, toolVersion: String) {
        self.kernelRelease = kernelRelease; self.hostname = hostname; self.attachTiers = attachTiers
        self.pageSize = pageSize; self.realtimeOffsetNanoseconds = realtimeOffsetNanoseconds
        self.startTime = startTime; self.ramBytes = ramBytes; self.swapBytes = swapBytes
        self.overcommitMemory = overcommitMemory; self.overcommitRatio = overcommitRatio
        self.overcommitKBytes = overcommitKBytes; self.transparentHugePages = transparentHugePages
        self.selection = selection; self.toolVersion = toolVersion
    }
}

extension TraceRecord {
    /// The record's time; nil for mapping and pageRun records, which belong
    /// to the process record before them.
    public var time: UInt64? {
        switch self {
        case .process(let r): return r.time
        case .mapping, .pageRun: return nil
        case .fork(let r): return r.time
        case .exec(let r): return r.time
        case .exit(let r): return r.time
        case .addressSpace(let r): return r.time
        case .fault(let r): return r.time
        case .resolve(let r): return r.time
        case .oomKill(let r): return r.time
        case .gap(let r): return r.time
        case .counters(let r): return r.time
        case .end(let r): return r.time
        }
    }

    /// Records in time order, stably; a record without a time keeps the
    /// time of the record before it (mapping and pageRun records stay after
    /// their process record). Returns the input when it is already in order.
    public static func sortedByTime(_ records: [TraceRecord]) -> [TraceRecord] {
        var keys = [UInt64]()
        keys.reserveCapacity(records.count)
        var lastKey: UInt64 = 0
        var sorted = true
        for r in records {
            if let t = r.time { lastKey = t }
            if let previous = keys.last, previous > lastKey { sorted = false }
            keys.append(lastKey)
        }
        if sorted { return records }
        let order = records.indices.sorted { keys[$0] != keys[$1] ? keys[$0] < keys[$1] : $0 < $1 }
        return order.map { records[$0] }
    }
}
