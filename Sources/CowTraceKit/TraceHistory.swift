/// Keeps what long runs must not lose: once an exited process has been read,
/// its final counters move from the kernel's maps (which are bounded) to here,
/// and later snapshots still include it.
public struct TraceHistory {
    private var retiredCounters: [Int32: ProcessCounters] = [:]
    private var retiredInfo: [Int32: ProcessIdentity] = [:]
    private var retiredThreads: [Int32: ThreadCounters] = [:]

    public init() {}

    /// The snapshot with every retired process added back; then the exited
    /// processes it holds are retired and removed from the kernel's maps.
    public mutating func merge(_ snapshot: TraceSnapshot, retiringFrom tracer: CowTracer) -> TraceSnapshot {
        var merged = snapshot
        for (pid, counters) in retiredCounters where merged.counters[pid] == nil {
            merged.counters[pid] = counters
            merged.info[pid] = retiredInfo[pid]
        }
        for (tid, thread) in retiredThreads where merged.threads[tid] == nil {
            merged.threads[tid] = thread
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
        tracer.forget(pids: exited)
        return merged
    }
}
