import CBPF

/// One OOM kill, as bpf/oom.bpf.c saw it at `mark_victim`: the victim's
/// figures (kB, like the kernel's "Killed process" line), the task that ran
/// out of memory, and, when `oom_kill_process` could be hooked, the limit the
/// kill was judged against.
public struct OOMKill: Sendable, Codable, Equatable {
    /// The victim's process (tgid) and thread (the tracepoint's pid).
    public var pid: Int32
    public var tid: Int32
    public var comm: String
    /// False when only the pid is known (old `mark_victim(int pid)` prototype,
    /// and the victim's task_struct could not be found): the figures below are 0.
    public var victimRead: Bool
    public var totalVMKiB: UInt64
    public var anonRSSKiB: UInt64
    public var fileRSSKiB: UInt64
    public var shmemRSSKiB: UInt64
    public var swapKiB: UInt64
    public var pageTablesKiB: UInt64
    /// The rss figures are exact sums of the kernel's per-CPU counters (or
    /// 6.1's atomics). The `*Approximate` ones are the central counts alone,
    /// which is what kernels 6.2 .. the 2026 OOM accuracy fix print.
    public var rssExact: Bool
    public var anonRSSApproximateKiB: UInt64
    public var fileRSSApproximateKiB: UInt64
    public var shmemRSSApproximateKiB: UInt64
    public var oomScoreAdj: Int32
    public var uid: UInt32
    /// The victim's memory cgroup, relative to its hierarchy's root ("/" for the root).
    public var cgroup: String
    public var cgroupID: UInt64
    /// That cgroup's own limit in bytes (v2 memory.max, v1
    /// memory.limit_in_bytes), read from cgroupfs when the kill is delivered;
    /// nil when unlimited or not readable.
    public var cgroupLimitBytes: UInt64?
    /// The task that ran out of memory (the kernel's `current` at the kill).
    public var triggerPID: Int32
    public var triggerTID: Int32
    public var triggerComm: String
    /// What the kind of OOM is and how cowtrace knows it.
    public var constraint: Constraint
    /// The memory cgroup whose limit was hit (memcg OOMs, when known).
    public var oomCgroup: String?
    /// The limit judged against, in pages (`oc->totalpages`), when known.
    public var limitPages: UInt64?
    /// Where `limitPages` came from: "oom_control" or "cgroupfs".
    public var limitSource: String?
    /// The process `oom_kill_process` chose (nil on the tracepoint tier).
    public var chosenPID: Int32?
    /// bpf_ktime_get_ns() at the kill.
    public var timestampNanoseconds: UInt64
    /// The program that sent it: "mark_victim(task, uid)" or "mark_victim(pid)".
    public var source: String
    /// Kernel return addresses of the killing task (for the constraint).
    public var kernelStack: [UInt64]

    /// Keys that JSONEncoder's `.convertToSnakeCase` turns into the documented
    /// snake_case (`total_vm_kib`, `cgroup_id`, `trigger_pid`; docs/exports.md)
    /// and `.convertFromSnakeCase` back.
    enum CodingKeys: String, CodingKey {
        case pid, tid, comm, victimRead
        case totalVMKiB = "totalVmKib", anonRSSKiB = "anonRssKib", fileRSSKiB = "fileRssKib"
        case shmemRSSKiB = "shmemRssKib", swapKiB = "swapKib", pageTablesKiB = "pageTablesKib"
        case rssExact, anonRSSApproximateKiB = "anonRssApproximateKib"
        case fileRSSApproximateKiB = "fileRssApproximateKib", shmemRSSApproximateKiB = "shmemRssApproximateKib"
        case oomScoreAdj, uid, cgroup, cgroupID = "cgroupId", cgroupLimitBytes
        case triggerPID = "triggerPid", triggerTID = "triggerTid", triggerComm
        case constraint, oomCgroup, limitPages, limitSource, chosenPID = "chosenPid"
        case timestampNanoseconds, source, kernelStack
    }

    public enum Constraint: String, Sendable, Codable {
        /// A memory cgroup reached its limit.
        case memcg
        /// The whole machine ran out (RAM + swap).
        case global
        /// Neither hook said, and the stack did not either.
        case unknown
    }

    /// Decodes a record; `memcgFromStack` decides the constraint when no
    /// oom_kill_process hook ran (tracepoint tier).
    init(_ e: oom_kill_event, memcgFromStack: ([UInt64]) -> Bool?) {
        pid = Int32(bitPattern: e.pid)
        tid = Int32(bitPattern: e.tid)
        comm = cString(e.comm)
        victimRead = e.flags & UInt32(OOM_VICTIM_READ.rawValue) != 0
        totalVMKiB = e.total_vm_kb
        anonRSSKiB = e.anon_rss_kb
        fileRSSKiB = e.file_rss_kb
        shmemRSSKiB = e.shmem_rss_kb
        swapKiB = e.swap_kb
        pageTablesKiB = e.pgtables_kb
        rssExact = e.flags & UInt32(OOM_RSS_EXACT.rawValue) != 0
        anonRSSApproximateKiB = e.anon_rss_approx_kb
        fileRSSApproximateKiB = e.file_rss_approx_kb
        shmemRSSApproximateKiB = e.shmem_rss_approx_kb
        oomScoreAdj = e.oom_score_adj
        uid = e.uid
        cgroup = cgroupPath(e.cgroup_names, depth: e.cgroup_depth)
        cgroupID = e.cgroup_id
        triggerPID = Int32(bitPattern: e.trigger_pid)
        triggerTID = Int32(bitPattern: e.trigger_tid)
        triggerComm = cString(e.trigger_comm)
        timestampNanoseconds = e.ts_ns
        source = e.source == UInt8(OOM_SOURCE_MARK_VICTIM_TASK.rawValue) ? "mark_victim(task, uid)" : "mark_victim(pid)"
        let frames = Int(e.stack_len) / 8
        kernelStack = withUnsafeBytes(of: e.kstack) { Array($0.bindMemory(to: UInt64.self).prefix(frames)) }
        if e.flags & UInt32(OOM_CONTEXT.rawValue) != 0 {
            let memcg = e.flags & UInt32(OOM_MEMCG.rawValue) != 0
            constraint = memcg ? .memcg : .global
            oomCgroup = memcg ? cgroupPath(e.oom_cgroup_names, depth: e.oom_cgroup_depth) : nil
            limitPages = e.totalpages
            limitSource = "oom_control"
            chosenPID = Int32(bitPattern: e.chosen_pid)
        } else {
            switch memcgFromStack(kernelStack) {
            case true?: constraint = .memcg
            case false?: constraint = .global
            case nil: constraint = .unknown
            }
        }
    }
}

/// "/a/b/c" from names stored leaf first; 0x80 in depth marks a longer path.
private func cgroupPath<T>(_ names: T, depth: UInt8) -> String {
    let count = Int(depth & 0x7f)
    let size = Int(OOM_CGROUP_NAME_LEN)
    let parts: [String] = withUnsafeBytes(of: names) { raw in
        (0..<min(count, Int(OOM_CGROUP_DEPTH))).map { i in
            String(decoding: raw[(i * size)..<((i + 1) * size)].prefix { $0 != 0 }, as: UTF8.self)
        }
    }
    let path = "/" + parts.reversed().joined(separator: "/")
    return depth & 0x80 != 0 ? "…" + path : path
}
