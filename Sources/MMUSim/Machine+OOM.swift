/// The OOM killer (mm/oom_kill.c).
public struct OOMEvent: Equatable, Sendable {
    /// nil for a global OOM, else the memory cgroup's name.
    public var cgroup: String?
    /// The process whose allocation failed.
    public var triggerPid: Int32
    /// The pages the victim was judged against (oc->totalpages).
    public var totalPages: Int
    /// nil when no process could be killed.
    public var victim: Victim?

    public struct Victim: Equatable, Sendable {
        public var pid: Int32
        public var comm: String
        public var uid: UInt32
        /// oom_badness() of the victim when chosen.
        public var points: Int
        public var totalVMKB: Int
        public var anonRSSKB: Int
        public var fileRSSKB: Int
        public var shmemRSSKB: Int
        public var pgtablesKB: Int
        public var oomScoreAdj: Int
    }

    /// The line the kernel prints (__oom_kill_process).
    public var dmesg: String {
        guard let v = victim else {
            return cgroup == nil ? "Out of memory and no killable processes..."
                : "Memory cgroup out of memory: no killable processes in \(cgroup!)"
        }
        let message = cgroup == nil ? "Out of memory" : "Memory cgroup out of memory"
        return "\(message): Killed process \(v.pid) (\(v.comm)) total-vm:\(v.totalVMKB)kB, anon-rss:\(v.anonRSSKB)kB, "
            + "file-rss:\(v.fileRSSKB)kB, shmem-rss:\(v.shmemRSSKB)kB, UID:\(v.uid) pgtables:\(v.pgtablesKB)kB "
            + "oom_score_adj:\(v.oomScoreAdj)"
    }
}

extension Machine {
    /// totalpages for a global OOM and for /proc/PID/oom_score: RAM + swap.
    public var oomTotalPages: Int { ramPages + swapPages }

    /// oom_badness: rss + swap entries + page-table pages + oom_score_adj × (totalpages / 1000).
    /// nil (LONG_MIN) for an exempt process: oom_score_adj −1000, init (pid 1), or no mm.
    func badness(_ task: Task, totalPages: Int) -> Int? {
        guard task.alive, task.pid != 1, let mm = task.mm else { return nil }
        return Machine.oomBadness(rssPages: mm.rss.total, swapPages: mm.rss.swapEntries, pageTablePages: mm.pageTable.pgtablesPages,
                                  oomScoreAdj: task.oomScoreAdj, totalPages: totalPages)
    }

    /// oom_badness's arithmetic on a process's figures (mm/oom_kill.c): nil
    /// for oom_score_adj −1000. Also used on real processes (the live forecast).
    public static func oomBadness(rssPages: Int, swapPages: Int, pageTablePages: Int, oomScoreAdj: Int, totalPages: Int) -> Int? {
        guard oomScoreAdj != -1000 else { return nil }
        return rssPages + swapPages + pageTablePages + oomScoreAdj * (totalPages / 1000)
    }

    /// oom_badness of a process against the global totalpages; nil if it is exempt.
    public func oomBadness(_ pid: Int32) -> Int? {
        guard let i = taskIndex[pid] else { return nil }
        return badness(tasks[i], totalPages: oomTotalPages)
    }

    /// /proc/PID/oom_score: (1000 + badness × 1000 / totalpages) × 2 / 3, 0 for an exempt process.
    public func oomScore(_ pid: Int32) -> Int {
        guard let b = oomBadness(pid) else { return 0 }
        let total = oomTotalPages
        return (1000 + b * 1000 / total) * 2 / 3
    }

    /// out_of_memory → select_bad_process → oom_kill_process. Returns true if a
    /// victim was killed (its memory is then free).
    func outOfMemory(trigger: Task, memcg: Int?) -> Bool {
        let totalPages = memcg.map { max(memcgs[$0].limitPages, 1) } ?? oomTotalPages
        var chosen: Task?
        var chosenPoints = Int.min
        for task in tasks where task.alive && (memcg == nil || task.memcg == memcg!) {
            // oom_evaluate_task: skip only if lower, so on a tie the later task wins.
            guard let points = badness(task, totalPages: totalPages), points >= chosenPoints else { continue }
            chosen = task
            chosenPoints = points
        }
        var event = OOMEvent(cgroup: memcg.map { memcgs[$0].name }, triggerPid: trigger.pid,
                             totalPages: totalPages, victim: nil)
        guard let victim = chosen, let mm = victim.mm else {
            oomEvents.append(event)
            return false
        }
        event.victim = OOMEvent.Victim(
            pid: victim.pid, comm: victim.comm, uid: victim.uid, points: chosenPoints,
            totalVMKB: kb(mm.totalVM), anonRSSKB: kb(mm.rss.anon), fileRSSKB: kb(mm.rss.file),
            shmemRSSKB: kb(mm.rss.shmem), pgtablesKB: mm.pageTable.pgtablesBytes >> 10,
            oomScoreAdj: victim.oomScoreAdj)
        oomEvents.append(event)
        counters.pointee.vmstat.oomKill += 1
        exitMMap(mm)
        victim.mm = nil
        victim.alive = false
        victim.killedByOOM = true
        return true
    }
}
