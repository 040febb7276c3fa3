/// Keeps what long runs must not lose: once an exited process has been read,
/// its final counters move from the kernel's maps (which are bounded) to here,
/// and later snapshots still include it. A pid is reused once pid_max wraps:
/// a retired process whose pid a later process took is kept apart (the
/// `earlier`, which ProcessTable lists too), not overwritten or hidden by the
/// later one.
public struct TraceHistory {
    private var retiredCounters: [Int32: ProcessCounters] = [:]
    private var retiredInfo: [Int32: ProcessIdentity] = [:]
    private var retiredThreads: [Int32: ThreadCounters] = [:]
    /// Exited processes whose pid a later process took, oldest first.
    public private(set) var earlier: [EarlierProcess] = []

    public init() {}

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
        return (merged, exited)
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
