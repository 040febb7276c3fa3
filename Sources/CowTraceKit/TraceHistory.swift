/// Keeps what long runs must not lose: once an exited process has been read,
/// its final counters move from the kernel's maps (which are bounded) to here,
/// and later snapshots still include it. A pid is reused once pid_max wraps:
/// a retired process whose pid a later process took is kept apart (the
/// `earlier`, which ProcessTable lists too), not overwritten or hidden by the
/// later one.
///
/// Bounded by `maxExited`: beyond that many kept exited processes (retired and
/// earlier together, idle ones included), the oldest exits (lowest exit time,
/// then lowest pid) are folded into `folded`, one sum, and dropped from every
/// dictionary here; their kernel entries were forgotten when they retired.
/// Nothing is lost: the sum keeps their counts, so totals stay exact.
public struct TraceHistory {
    private var retiredCounters: [Int32: ProcessCounters] = [:]
    private var retiredInfo: [Int32: ProcessIdentity] = [:]
    private var retiredThreads: [Int32: ThreadCounters] = [:]
    /// Exited processes whose pid a later process took, oldest first.
    public private(set) var earlier: [EarlierProcess] = []
    /// At most this many exited processes are kept apart (0: all of them).
    public let maxExited: Int
    /// The exited processes folded beyond `maxExited`, summed.
    public private(set) var folded = FoldedProcesses()
    /// Folded at the last merge: if the kernel still shows one (forget had
    /// not taken effect), it is not counted twice. Bounded by one merge's folds.
    private var justFolded: [Int32: (info: ProcessIdentity?, counters: ProcessCounters)] = [:]

    public init(maxExited: Int = 0) {
        self.maxExited = max(0, maxExited)
    }

    /// Exited processes kept apart (listed, not folded).
    public var keptExited: Int { retiredInfo.count + earlier.count }

    /// The snapshot with every retired process added back; then the exited
    /// processes it holds are retired and removed from the kernel's maps.
    public mutating func merge(_ snapshot: TraceSnapshot, retiringFrom tracer: CowTracer) -> TraceSnapshot {
        let (merged, exited) = merge(snapshot)
        tracer.forget(pids: exited)
        return merged
    }

    /// `merge(_:retiringFrom:)` without the kernel: the merged snapshot and the
    /// pids to forget.
    public mutating func merge(_ snapshot: TraceSnapshot) -> (TraceSnapshot, exited: [Int32]) {
        var snapshot = snapshot
        var refolded: [Int32] = []
        for (pid, was) in justFolded where snapshot.info[pid] != nil && snapshot.info[pid] == was.info {
            if let now = snapshot.counters[pid] { folded.counters = folded.counters + (now - was.counters) }
            snapshot.counters[pid] = nil
            snapshot.info[pid] = nil
            refolded.append(pid)
        }
        if !refolded.isEmpty {
            let gone = Set(refolded)
            snapshot.threads = snapshot.threads.filter { !gone.contains($0.value.pid) }
        }
        justFolded = [:]
        var merged = snapshot
        var reused: [Int32] = []
        for (pid, counters) in retiredCounters {
            if let info = merged.info[pid], info != retiredInfo[pid] {
                reused.append(pid) // a later process has this pid now
            } else if merged.counters[pid] == nil {
                merged.counters[pid] = counters
                merged.info[pid] = retiredInfo[pid]
            }
        }
        for (tid, thread) in retiredThreads where merged.threads[tid] == nil {
            merged.threads[tid] = thread
        }
        for pid in reused {
            earlier.append(EarlierProcess(pid: pid, info: retiredInfo[pid], counters: retiredCounters[pid]!))
            retiredCounters[pid] = nil
            retiredInfo[pid] = nil
        }
        let exited = snapshot.info.filter { $0.value.exited }.map(\.key)
        for pid in exited {
            retiredCounters[pid] = snapshot.counters[pid]
            retiredInfo[pid] = snapshot.info[pid]
        }
        let exitedSet = Set(exited)
        for (tid, thread) in snapshot.threads where exitedSet.contains(thread.pid) {
            retiredThreads[tid] = thread
        }
        fold(into: &merged)
        return (merged, exited + refolded)
    }

    /// Folds the oldest exits beyond `maxExited` into `folded` and out of
    /// `merged` and every dictionary here.
    private mutating func fold(into merged: inout TraceSnapshot) {
        let excess = keptExited - maxExited
        guard maxExited > 0, excess > 0 else { return }
        // (exit time, pid, index in earlier or nil for a retired process)
        var candidates: [(exit: UInt64, pid: Int32, earlier: Int?)] = []
        candidates.reserveCapacity(keptExited)
        for (pid, info) in retiredInfo { candidates.append((info.exitNanoseconds, pid, nil)) }
        for (i, e) in earlier.enumerated() { candidates.append((e.info?.exitNanoseconds ?? 0, e.pid, i)) }
        candidates.sort { a, b in
            a.exit != b.exit ? a.exit < b.exit : a.pid != b.pid ? a.pid < b.pid : (a.earlier ?? Int.max) < (b.earlier ?? Int.max)
        }
        var goneEarlier = Set<Int>()
        var goneRetired = Set<Int32>()
        for c in candidates.prefix(excess) {
            folded.processes += 1
            if let i = c.earlier {
                folded.counters = folded.counters + earlier[i].counters
                goneEarlier.insert(i)
                continue
            }
            let counters = retiredCounters.removeValue(forKey: c.pid) ?? ProcessCounters()
            let info = retiredInfo.removeValue(forKey: c.pid)
            folded.counters = folded.counters + counters
            goneRetired.insert(c.pid)
            justFolded[c.pid] = (info, counters)
            if merged.info[c.pid] == info {
                merged.counters[c.pid] = nil
                merged.info[c.pid] = nil
            }
        }
        if !goneEarlier.isEmpty {
            earlier = earlier.enumerated().filter { !goneEarlier.contains($0.offset) }.map(\.element)
        }
        if !goneRetired.isEmpty {
            retiredThreads = retiredThreads.filter { !goneRetired.contains($0.value.pid) }
            merged.threads = merged.threads.filter { !(goneRetired.contains($0.value.pid) && merged.counters[$0.value.pid] == nil) }
        }
    }
}

/// Exited processes folded into one sum (TraceHistory.maxExited): how many,
/// and their counts added up.
public struct FoldedProcesses: Equatable, Sendable {
    public var processes: Int = 0
    public var counters = ProcessCounters()

    public init(processes: Int = 0, counters: ProcessCounters = ProcessCounters()) {
        self.processes = processes
        self.counters = counters
    }
}

/// An exited process whose pid was reused by a later one (pid_max wrapped).
public struct EarlierProcess: Sendable {
    public var pid: Int32
    public var info: ProcessIdentity?
    public var counters: ProcessCounters

    public init(pid: Int32, info: ProcessIdentity?, counters: ProcessCounters) {
        self.pid = pid
        self.info = info
        self.counters = counters
    }
}
