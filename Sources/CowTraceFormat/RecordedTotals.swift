/// What a recording says happened, per process, folded from its records
/// alone (no model): the kernel's class of every write-protect fault, forks,
/// execs, exits, losses and the kernel's own counters.
///
/// The kernel's class of every write-protect fault comes from
/// `KernelFaultFold` (the rules are there), the same fold `replay` and
/// `check` use. Records are folded in time order (`RecordedTotals.sortedByTime`).

/// Write-protect faults by the kernel's class.
public struct RecordedClassCounts: Equatable, Sendable {
    public var copies: UInt64 = 0
    public var reuses: UInt64 = 0
    public var zeroFills: UInt64 = 0
    public var fileCopies: UInt64 = 0
    public var sharedWrites: UInt64 = 0
    /// Faults whose class this version does not name (`.other`).
    public var other: UInt64 = 0

    public init() {}

    public init(copies: UInt64 = 0, reuses: UInt64 = 0, zeroFills: UInt64 = 0, fileCopies: UInt64 = 0,
                sharedWrites: UInt64 = 0, other: UInt64 = 0) {
        self.copies = copies; self.reuses = reuses; self.zeroFills = zeroFills
        self.fileCopies = fileCopies; self.sharedWrites = sharedWrites; self.other = other
    }

    /// Pages really copied: anonymous copies and MAP_PRIVATE file copies.
    public var pagesCopied: UInt64 { copies &+ fileCopies }

    /// Every classified fault.
    public var total: UInt64 { copies &+ reuses &+ zeroFills &+ fileCopies &+ sharedWrites &+ other }

    /// The count of one class (`.unresolved` counts as a reuse).
    public subscript(_ c: RecordedFaultClass) -> UInt64 {
        switch c {
        case .copy: return copies
        case .reuse, .unresolved: return reuses
        case .zeroFill: return zeroFills
        case .fileCopy: return fileCopies
        case .sharedWrite: return sharedWrites
        default: return other   // .other (a simulator outcome is never recorded)
        }
    }

    /// Counts one fault of class `c` (`.unresolved`: a reuse).
    public mutating func add(_ c: RecordedFaultClass, _ n: UInt64 = 1) {
        switch c {
        case .copy: copies &+= n
        case .reuse, .unresolved: reuses &+= n
        case .zeroFill: zeroFills &+= n
        case .fileCopy: fileCopies &+= n
        case .sharedWrite: sharedWrites &+= n
        default: other &+= n   // .other (a simulator outcome is never recorded)
        }
    }

    public static func + (a: RecordedClassCounts, b: RecordedClassCounts) -> RecordedClassCounts {
        RecordedClassCounts(copies: a.copies &+ b.copies, reuses: a.reuses &+ b.reuses,
                            zeroFills: a.zeroFills &+ b.zeroFills, fileCopies: a.fileCopies &+ b.fileCopies,
                            sharedWrites: a.sharedWrites &+ b.sharedWrites, other: a.other &+ b.other)
    }
}

/// One write-protect fault with the kernel's final class.
public struct ClassifiedFault: Equatable, Sendable {
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var address: UInt64
    public var ip: UInt64
    public var faultClass: RecordedFaultClass
    /// True when no resolve and no class on the fault record said it: a reuse by default.
    public var inferred: Bool
    /// A first-touch write resolved as a file copy (do_cow_fault), not a write-protect fault record.
    public var firstTouch: Bool
    /// The fault record's position in the time-ordered records (-1: not given).
    public var index: Int
    /// When the fault was last resolved (the copy's allocation); nil with no resolve.
    public var resolvedAt: UInt64?
    /// When its thread was next seen doing something else (a fault, an
    /// address-space syscall, exec, exit): the fault was over by then.
    public var overBy: UInt64?
    @inlinable
    public init(time: UInt64, pid: Int32, tid: Int32, address: UInt64, ip: UInt64,
                faultClass: RecordedFaultClass, inferred: Bool, firstTouch: Bool = false,
                index: Int = -1, resolvedAt: UInt64? = nil, overBy: UInt64? = nil) {
        self.time = time; self.pid = pid; self.tid = tid; self.address = address; self.ip = ip
        self.faultClass = faultClass; self.inferred = inferred; self.firstTouch = firstTouch
        self.index = index; self.resolvedAt = resolvedAt; self.overBy = overBy
    }
}

/// One fork seen in the recording: `parent` forked `child` at `time`. Also
/// the parent of a process found running at start (its process record's
/// ppid), when the parent was traced too: then `time` is nil.
public struct RecordedFork: Equatable, Sendable {
    public var parent: Int32
    public var child: Int32
    /// Nil: the child was already running when the recording started.
    public var time: UInt64?
    public init(parent: Int32, child: Int32, time: UInt64?) {
        self.parent = parent; self.child = child; self.time = time
    }
}

/// Everything the recording says about one process (thread group).
public struct RecordedProcess: Equatable, Sendable {
    public var pid: Int32
    /// From the process record (found at start) or the fork record that created it.
    public var ppid: Int32?
    /// The last name seen: process, fork, exec and counters records, in time order.
    public var comm: String
    /// Write-protect faults by the kernel's class.
    public var classes = RecordedClassCounts()
    /// Write-protect fault records, and first-touch writes resolved as file copies (the kernel's wp_faults).
    public var writeProtectFaults: UInt64 = 0
    /// Of them, the ones no resolve or fault class said anything about (reuses by default).
    public var inferredReuses: UInt64 = 0
    /// First-touch fault records (read or write to a page not present).
    public var firstTouchFaults: UInt64 = 0
    /// Fork records with this process as parent.
    public var forks: UInt64 = 0
    /// Exec records of this process.
    public var execs: UInt64 = 0
    /// The exit record's task->exit_code (status << 8 | signal); nil: no exit recorded.
    public var exitCode: UInt32?
    public var exitTime: UInt64?
    /// When the fork record that created it was written; nil: found running at start.
    public var forkTime: UInt64?
    /// Times of the first and last record about this process (any type with a time).
    public var firstTime: UInt64?
    public var lastTime: UInt64?
    /// Copies (copy + file-copy) per time bin: `RecordedTotals.binCount` equal
    /// bins from `RecordedTotals.startTime` to `endTime`, by fault time.
    public var copiesOverTime: [UInt64] = []
    /// Copies per burst interval in which the process copied (as the kernel's
    /// copies-per-interval histogram counts them), in log2 buckets: bucket 0
    /// holds 0 and 1, bucket i ≥ 1 holds [2^i, 2^(i+1)). 64 buckets.
    public var copiesPerInterval: [UInt64] = Array(repeating: 0, count: 64)
    /// The kernel's last counters record for this process (its final counts
    /// when the recording ended cleanly).
    public var counters: CountersRecord?

    public init(pid: Int32, comm: String = "") {
        self.pid = pid
        self.comm = comm
    }

    /// Pages copied (copy + file-copy).
    public var pagesCopied: UInt64 { classes.pagesCopied }

    /// The fields in which the kernel's last counters differ from the sums of
    /// the events, as (name, events, kernel); empty when they agree or when
    /// there are no counters.
    public var counterMismatches: [(field: String, events: UInt64, kernel: UInt64)] {
        guard let k = counters else { return [] }
        var out: [(String, UInt64, UInt64)] = []
        func check(_ name: String, _ events: UInt64, _ kernel: UInt64) {
            if events != kernel { out.append((name, events, kernel)) }
        }
        check("wp_faults", writeProtectFaults, k.wpFaults)
        check("copies", classes.copies, k.copies)
        check("zero_fills", classes.zeroFills, k.zeroFills)
        check("file_copies", classes.fileCopies, k.fileCopies)
        check("shared_writes", classes.sharedWrites, k.sharedWrites)
        check("forks", forks, k.forks)
        check("execs", execs, k.execs)
        return out
    }
}

/// The folded recording.
public struct RecordedTotals: Equatable, Sendable {
    /// Every process any record names, by pid.
    public var processes: [Int32: RecordedProcess]
    /// Sums over every process (pid 0, comm "total").
    public var total: RecordedProcess
    /// Events the kernel could not hand over (sum of the gap records), and by reason.
    public var lostEvents: UInt64
    public var lostByReason: [LossReason: UInt64]
    public var gaps: [GapRecord]
    /// The kernel's last counters record per pid.
    public var lastCounters: [Int32: CountersRecord]
    /// Every fork, in time order (process-record parents first).
    public var forks: [RecordedFork]
    public var oomKills: [OOMKillRecord]
    /// The end record, if the recording ended cleanly.
    public var end: EndRecord?
    /// The time span of the bins: the header's start time (when given and not
    /// after the first record) to the last record's time.
    public var startTime: UInt64
    public var endTime: UInt64
    public var binCount: Int
    /// Interval of the copies-per-interval histograms, in ns.
    public var burstInterval: UInt64
    /// Resolve records with no open fault of their thread (its fault was lost, or never traced).
    public var unmatchedResolves: UInt64
    public var records: Int

    /// Folds `records` (in any order: they are sorted by time first).
    /// - Parameters:
    ///   - header: its start time begins the time bins.
    ///   - bins: how many equal time bins `copiesOverTime` has (at least 1).
    ///   - burstInterval: the copies-per-interval interval, in ns (the kernel's default 100 ms).
    public init(records: [TraceRecord], header: TraceHeader? = nil, bins: Int = 60,
                burstInterval: UInt64 = 100_000_000) {
        self.init(sorted: RecordedTotals.sortedByTime(records), header: header, bins: bins,
                  burstInterval: burstInterval)
    }

    /// Folds records already in time order (`sortedByTime`).
    public init(sorted: [TraceRecord], header: TraceHeader? = nil, bins: Int = 60,
                burstInterval: UInt64 = 100_000_000) {
        var first: UInt64?
        var last: UInt64 = 0
        for r in sorted {
            guard let t = RecordedTotals.time(of: r) else { continue }
            if first == nil { first = t }
            last = max(last, t)
        }
        let firstTime = first ?? header?.startTime ?? 0
        var start = firstTime
        if let h = header, h.startTime <= firstTime, h.startTime > 0 { start = h.startTime }
        startTime = start
        endTime = max(start, last)
        binCount = max(1, bins)
        self.burstInterval = max(1, burstInterval)
        processes = [:]
        total = RecordedProcess(pid: 0, comm: "total")
        lostEvents = 0
        lostByReason = [:]
        gaps = []
        lastCounters = [:]
        forks = []
        oomKills = []
        end = nil
        unmatchedResolves = 0
        records = sorted.count
        fold(sorted)
    }

    /// The time of a record; nil for mapping and pageRun records.
    public static func time(of record: TraceRecord) -> UInt64? { record.time }

    /// The records sorted by time, stably; records without a time (mapping,
    /// pageRun) keep the time of the record before them, so they stay right
    /// after their process record.
    public static func sortedByTime(_ records: [TraceRecord]) -> [TraceRecord] { TraceRecord.sortedByTime(records) }

    /// The kernel's class of every write-protect fault in `sorted` (records in
    /// time order), handed to `body` in the order the faults are settled: when
    /// their thread faults again, or at the end.
    /// The fold is `KernelFaultFold`; returns the resolve records it could not match.
    @discardableResult
    public static func forEachClassifiedFault(_ sorted: [TraceRecord], _ body: (ClassifiedFault) -> Void) -> UInt64 {
        var fold = KernelFaultFold()
        for (i, r) in sorted.enumerated() { fold.feed(r, at: i, body) }
        fold.finish(body)
        return fold.unmatchedResolves
    }

    /// The kernel's copies-per-interval histogram of one process from its copy
    /// times (sorted): an interval opens at a copy more than `interval` ns
    /// after the open interval's first copy; each interval's copy count goes
    /// into its log2 bucket (64 buckets).
    public static func copiesPerInterval(_ sortedTimes: [UInt64], interval: UInt64) -> [UInt64] {
        var buckets = [UInt64](repeating: 0, count: 64)
        var start: UInt64 = 0
        var count: UInt64 = 0
        for t in sortedTimes {
            if count == 0 || t &- start >= interval {
                if count > 0 { buckets[log2Bucket(count)] += 1 }
                start = t
                count = 1
            } else {
                count += 1
            }
        }
        if count > 0 { buckets[log2Bucket(count)] += 1 }
        return buckets
    }

    /// The bin of `time` among `binCount` equal bins from `startTime` to `endTime`.
    public func bin(of time: UInt64) -> Int {
        guard time > startTime, endTime > startTime else { return 0 }
        let span = Double(endTime - startTime)
        let i = Int(Double(time - startTime) / span * Double(binCount))
        return min(binCount - 1, max(0, i))
    }

    /// Seconds from `startTime` to the start of bin `i`.
    public func binStartSeconds(_ i: Int) -> Double {
        Double(endTime - startTime) / 1e9 * Double(i) / Double(binCount)
    }

    /// Processes sorted by pages copied (most first), then pid.
    public var byCopies: [RecordedProcess] {
        processes.values.sorted { a, b in
            a.pagesCopied != b.pagesCopied ? a.pagesCopied > b.pagesCopied : a.pid < b.pid
        }
    }

    /// Children of `pid` in the fork tree, in fork order.
    public func children(of pid: Int32) -> [RecordedFork] { forks.filter { $0.parent == pid } }

    /// Processes without a recorded parent (the roots of the fork tree), by pid.
    public var roots: [Int32] {
        let children = Set(forks.map(\.child))
        return processes.keys.filter { !children.contains($0) }.sorted()
    }

    // MARK: folding

    private mutating func touch(_ pid: Int32, _ time: UInt64?) {
        if processes[pid] == nil {
            var p = RecordedProcess(pid: pid)
            p.copiesOverTime = Array(repeating: 0, count: binCount)
            processes[pid] = p
        }
        guard let t = time else { return }
        // In place: no copy of the process's arrays.
        if processes[pid]!.firstTime.map({ t < $0 }) ?? true { processes[pid]!.firstTime = t }
        if processes[pid]!.lastTime.map({ t > $0 }) ?? true { processes[pid]!.lastTime = t }
    }

    private mutating func setComm(_ pid: Int32, _ comm: String) {
        if !comm.isEmpty { processes[pid]?.comm = comm }
    }

    private mutating func fold(_ sorted: [TraceRecord]) {
        var classifier = KernelFaultFold()
        // Copy times per pid, for the copies-per-interval histograms.
        var copyTimes: [Int32: [UInt64]] = [:]
        var forkPairs = Set<Int64>()
        var forksAtStart: [RecordedFork] = []

        func settle(_ f: ClassifiedFault) {
            touch(f.pid, nil)
            if f.firstTouch { processes[f.pid]!.writeProtectFaults += 1 }
            processes[f.pid]!.classes.add(f.faultClass)
            if f.inferred { processes[f.pid]!.inferredReuses += 1 }
            if f.faultClass == .copy || f.faultClass == .fileCopy {
                processes[f.pid]!.copiesOverTime[bin(of: f.time)] += 1
                copyTimes[f.pid, default: []].append(f.time)
            }
        }

        for (i, record) in sorted.enumerated() {
            classifier.feed(record, at: i, settle)
            switch record {
            case .process(let r):
                touch(r.pid, r.time)
                setComm(r.pid, r.comm)
                if processes[r.pid]?.ppid == nil && r.ppid > 0 { processes[r.pid]?.ppid = r.ppid }
            case .mapping, .pageRun, .addressSpace:
                if case .addressSpace(let r) = record { touch(r.pid, r.time) }
            case .fork(let r):
                touch(r.parent, r.time)
                guard r.child != r.parent else { break }
                touch(r.child, r.time)
                processes[r.parent]!.forks += 1
                // The comm of the forking thread: the parent's name when nothing else
                // named it (a thread may have its own), and the child's until it execs.
                if processes[r.parent]!.comm.isEmpty { setComm(r.parent, r.comm) }
                if processes[r.child]!.comm.isEmpty { setComm(r.child, r.comm) }
                processes[r.child]!.ppid = r.parent
                processes[r.child]!.forkTime = r.time
                forks.append(RecordedFork(parent: r.parent, child: r.child, time: r.time))
                forkPairs.insert(Int64(r.parent) << 32 | Int64(UInt32(bitPattern: r.child)))
            case .exec(let r):
                touch(r.pid, r.time)
                processes[r.pid]!.execs += 1
                setComm(r.pid, r.comm)
            case .exit(let r):
                touch(r.pid, r.time)
                processes[r.pid]!.exitCode = r.exitCode
                processes[r.pid]!.exitTime = r.time
            case .fault(let r):
                touch(r.pid, r.time)
                if r.kind == .writeProtect {
                    processes[r.pid]!.writeProtectFaults += 1
                } else {
                    processes[r.pid]!.firstTouchFaults += 1
                }
            case .resolve(let r):
                touch(r.pid, r.time)
            case .oomKill(let r):
                oomKills.append(r)
            case .gap(let r):
                lostEvents &+= r.lost
                lostByReason[r.reason, default: 0] &+= r.lost
                gaps.append(r)
            case .counters(let r):
                touch(r.pid, nil)   // periodic, also after the exit: not activity
                setComm(r.pid, r.comm)
                lastCounters[r.pid] = r
                processes[r.pid]!.counters = r
            case .end(let r):
                end = r
            }
        }
        classifier.finish(settle)
        unmatchedResolves = classifier.unmatchedResolves
        for (pid, times) in copyTimes {
            processes[pid]!.copiesPerInterval = RecordedTotals.copiesPerInterval(times.sorted(), interval: burstInterval)
        }

        // Parents of processes found running at start, when they are in the recording too.
        for p in processes.values.sorted(by: { $0.pid < $1.pid }) {
            guard let ppid = p.ppid, p.forkTime == nil, processes[ppid] != nil, ppid != p.pid else { continue }
            if forkPairs.contains(Int64(ppid) << 32 | Int64(UInt32(bitPattern: p.pid))) { continue }
            forksAtStart.append(RecordedFork(parent: ppid, child: p.pid, time: nil))
        }
        forks = forksAtStart + forks

        var t = RecordedProcess(pid: 0, comm: "total")
        t.copiesOverTime = Array(repeating: 0, count: binCount)
        for p in processes.values {
            t.classes = t.classes + p.classes
            t.writeProtectFaults += p.writeProtectFaults
            t.inferredReuses += p.inferredReuses
            t.firstTouchFaults += p.firstTouchFaults
            t.forks += p.forks
            t.execs += p.execs
            if let f = p.firstTime, t.firstTime.map({ f < $0 }) ?? true { t.firstTime = f }
            if let l = p.lastTime, t.lastTime.map({ l > $0 }) ?? true { t.lastTime = l }
            for i in 0..<binCount { t.copiesOverTime[i] += p.copiesOverTime[i] }
            for i in 0..<64 { t.copiesPerInterval[i] += p.copiesPerInterval[i] }
        }
        total = t
    }
}

/// bcc's log2 bucket: 0 and 1 in bucket 0, [2^i, 2^(i+1)) in bucket i.
@inline(__always)
func log2Bucket(_ v: UInt64) -> Int { v < 2 ? 0 : 63 - v.leadingZeroBitCount }

/// The one fold from fault and resolve records to the kernel's class of each
/// write-protect fault, used by `cowtrace report` (RecordedTotals) and by
/// `replay`/`check` (TraceReplayer). It follows what the kernel does
/// (bpf/cowtrace_fault_*.bpf.h), records in time order:
///
/// - A `fault` record of kind `.writeProtect` or `.firstTouchWrite` opens the
///   thread's fault; the thread's next `fault` record (any kind) settles it
///   first. The kernel keeps one pending fault per thread (per CPU, the
///   thread's own exception): nothing resolves a fault once its thread faults again.
/// - A `resolve` record re-resolves the thread's latest open fault, the last
///   one winning (a copy re-classified as a file copy on rss_stat). A resolve
///   with no open fault of its thread and pid is unmatched (its fault was lost,
///   or never traced). A first-touch write takes only what the kernel sends for
///   one: file-copy, or its undoing (`.unresolved`).
/// - A `.unresolved` resolve means "not a copy-on-write fault after all" (the
///   kernel sends it when a not-present write's file copy was a swap-in): it
///   undoes the earlier resolves. A first-touch write so undone is no
///   write-protect fault; a write-protect fault so undone has the class its
///   fault record carries, else it is a reuse (as with no resolve at all).
/// - An `exit` record settles its thread's open fault. The kernel emits exit
///   at the last thread's sched_process_exit, after every fault and resolve of
///   that thread (6.1's rss-cache fold, which may turn a copy into a file copy,
///   runs earlier in do_exit); a later resolve with that tid is a new
///   thread's, whose fault was not recorded: unmatched.
/// - A write-protect fault with no (remaining) resolve has the class its fault
///   record carries (shared-write on the fentry and kprobe tiers), else it is
///   a reuse, `inferred` (the kernel derives reuses: wp_faults minus the rest).
///   A first-touch write is a fault only when its last resolve is a file copy
///   (do_cow_fault), counted as a write-protect fault of that class, as the
///   kernel's counters count it.
/// - Faults still open at the end are settled in fault-time order.
public struct KernelFaultFold {
    @usableFromInline struct Pending {
        @usableFromInline var fault: FaultRecord
        @usableFromInline var index: Int
        @usableFromInline var resolved: RecordedFaultClass?
        @usableFromInline var resolvedAt: UInt64?
        /// The thread's first address-space syscall, exec or exit after the fault.
        @usableFromInline var over: UInt64?

        @inlinable init(fault: FaultRecord, index: Int) {
            self.fault = fault
            self.index = index
        }
    }
    // The per-record paths (feed(fault:), feed(resolve:), settle) are inlinable:
    // the replay's reading thread folds about a million records, and a call
    // with a ClassifiedFault copied through it per fault was 15 % of that thread.
    /// The open fault of each thread, by tid (no hashing: one per fault record).
    @usableFromInline var pending = PidTable<Pending>()
    /// Resolve records with no open fault of their thread.
    public var unmatchedResolves: UInt64 { unmatched }
    @usableFromInline var unmatched: UInt64 = 0
    /// Resolve records seen.
    public var resolves: UInt64 { resolvesSeen }
    @usableFromInline var resolvesSeen: UInt64 = 0

    public init() {}

    @inlinable @inline(__always)
    static func settle(_ p: Pending, at next: UInt64?) -> ClassifiedFault? {
        let f = p.fault
        let overBy: UInt64? = switch (next, p.over) {
        case let (a?, b?): min(a, b)
        case let (a, b): a ?? b
        }
        if f.kind == .firstTouchWrite {
            guard p.resolved == .fileCopy else { return nil }
            return ClassifiedFault(time: f.time, pid: f.pid, tid: f.tid, address: f.address, ip: f.ip,
                                   faultClass: .fileCopy, inferred: false, firstTouch: true,
                                   index: p.index, resolvedAt: p.resolvedAt, overBy: overBy)
        }
        var cls: RecordedFaultClass = .reuse
        var inferred = false
        if let r = p.resolved, r != .unresolved {
            cls = r
        } else if f.faultClass != .unresolved {
            cls = f.faultClass
        } else {
            inferred = true
        }
        return ClassifiedFault(time: f.time, pid: f.pid, tid: f.tid, address: f.address, ip: f.ip,
                               faultClass: cls, inferred: inferred,
                               index: p.index, resolvedAt: p.resolvedAt, overBy: overBy)
    }

    /// Feeds the record at position `index` of the time-ordered records;
    /// `body` gets the faults this record settles.
    public mutating func feed(_ record: TraceRecord, at index: Int = -1, _ body: (ClassifiedFault) -> Void) {
        feed(record, at: index) { _, c in if let c { body(c) } }
    }

    /// Like `feed(_:at:_:)`, but `closed` gets every fault this record closes,
    /// by its `index`, with its class, or nil for a first-touch write that
    /// turned out no write-protect fault.
    public mutating func feed(_ record: TraceRecord, at index: Int = -1,
                              closed: (_ index: Int, ClassifiedFault?) -> Void) {
        switch record {
        case .fault(let f):
            feed(fault: f, at: index, closed: closed)
        case .resolve(let r):
            feed(resolve: r)
        case .addressSpace(let a):
            markOver(a.tid, a.time)
        case .exec(let e):
            markOver(e.tid, e.time)
        case .exit(let e):
            // The thread is gone: its open fault is settled (a new thread may reuse the tid).
            if let i = pending.slot(e.tid) {
                let p = pending[slot: i]
                pending.remove(e.tid, slot: i)
                closed(p.index, Self.settle(p, at: e.time))
            }
        default:
            break
        }
    }

    /// `feed(.fault(f), at: index, closed: closed)`, for a caller that holds the fault record itself.
    @inlinable
    public mutating func feed(fault f: FaultRecord, at index: Int = -1, closed: (_ index: Int, ClassifiedFault?) -> Void) {
        let opens = f.kind != .firstTouchRead
        // One lookup: the thread's open fault, if any, is settled and replaced in its slot.
        if let i = pending.slot(f.tid) {
            closed(pending[slot: i].index, Self.settle(pending[slot: i], at: f.time))
            if opens { pending[slot: i] = Pending(fault: f, index: index) } else { pending.remove(f.tid, slot: i) }
        } else if opens {
            pending.insert(f.tid, Pending(fault: f, index: index))
        }
    }

    /// `feed(.resolve(r)) { _, _ in }`: a resolve closes no fault.
    @inlinable @inline(__always)
    public mutating func feed(resolve r: ResolveRecord) {
        resolvesSeen += 1
        if let i = pending.slot(r.tid), pending[slot: i].fault.pid == r.pid,
           pending[slot: i].fault.kind == .writeProtect || r.faultClass == .fileCopy || r.faultClass == .unresolved {
            pending[slot: i].resolved = r.faultClass
            pending[slot: i].resolvedAt = r.time
        } else {
            unmatched += 1
        }
    }

    private mutating func markOver(_ tid: Int32, _ time: UInt64) {
        if let i = pending.slot(tid), pending[slot: i].over == nil { pending[slot: i].over = time }
    }

    /// Settles the faults still open, in fault-time order (so that the output does not depend on hashing).
    public mutating func finish(_ body: (ClassifiedFault) -> Void) {
        finish { _, c in if let c { body(c) } }
    }

    /// Like `finish(_:)`, with every fault closed, as `feed(_:at:closed:)` hands them over.
    public mutating func finish(closed: (_ index: Int, ClassifiedFault?) -> Void) {
        for p in pending.values.sorted(by: { ($0.fault.time, $0.fault.tid) < ($1.fault.time, $1.fault.tid) }) {
            closed(p.index, Self.settle(p, at: nil))
        }
        pending = PidTable()
    }
}
