/// Processes and what can be read about them (/proc/PID/...).
extension Machine {
    /// Creates a process with an empty address space (as after exec of a tiny static program).
    @discardableResult
    public func spawn(comm: String, pid: Int32? = nil, uid: UInt32 = 0, oomScoreAdj: Int = 0,
                      cgroup: String? = nil, capSysAdmin: Bool = false) throws -> Int32 {
        let newPid = pid ?? nextPid
        if let existing = taskIndex[newPid], tasks[existing].alive {
            throw MMError.invalidArgument("pid \(newPid) is already in use")
        }
        nextPid = max(nextPid, newPid + 1)
        let memcg = try cgroup.map { try memcgIndex($0) } ?? 0
        let task = Task(pid: newPid, comm: comm, uid: uid, oomScoreAdj: clampAdj(oomScoreAdj), memcg: memcg,
                        capSysAdmin: capSysAdmin, parent: nil, mm: newMM())
        taskIndex[newPid] = tasks.count
        tasks.append(task)
        return newPid
    }

    func newMM() -> MM { MM(pool: tablePool, brkBase: configuration.brkBase) }

    func clampAdj(_ adj: Int) -> Int { min(max(adj, -1000), 1000) }

    func task(_ pid: Int32) throws -> Task {
        guard let i = taskIndex[pid], tasks[i].alive else { throw MMError.noSuchProcess(pid) }
        return tasks[i]
    }

    /// Writes /proc/PID/oom_score_adj.
    public func setOOMScoreAdj(_ pid: Int32, _ adj: Int) throws {
        try task(pid).oomScoreAdj = clampAdj(adj)
    }

    /// Live pids in task-list order (the order the OOM killer scans).
    public var pids: [Int32] { tasks.filter(\.alive).map(\.pid) }
    /// Every pid ever created, in creation order, dead ones included.
    public var allPids: [Int32] { tasks.map(\.pid) }

    public func isAlive(_ pid: Int32) -> Bool { taskIndex[pid].map { tasks[$0].alive } ?? false }
    public func wasKilledByOOM(_ pid: Int32) -> Bool { taskIndex[pid].map { tasks[$0].killedByOOM } ?? false }
    public func comm(_ pid: Int32) -> String? { taskIndex[pid].map { tasks[$0].comm } }
    public func oomScoreAdj(_ pid: Int32) -> Int? { taskIndex[pid].map { tasks[$0].oomScoreAdj } }

    /// Faults handled for this process so far, by class.
    public func faults(_ pid: Int32) -> FaultCounts { taskIndex[pid].map { tasks[$0].faults } ?? FaultCounts() }

    /// The RSS counters of a live process (zero for a dead one).
    public func rss(_ pid: Int32) -> RSSCounters {
        guard let i = taskIndex[pid], let mm = tasks[i].mm else { return RSSCounters() }
        return mm.rss
    }

    /// mm->total_vm in pages.
    public func totalVMPages(_ pid: Int32) -> Int {
        guard let i = taskIndex[pid], let mm = tasks[i].mm else { return 0 }
        return mm.totalVM
    }

    /// mm_pgtables_bytes / PAGE_SIZE.
    public func pageTablePages(_ pid: Int32) -> Int {
        guard let i = taskIndex[pid], let mm = tasks[i].mm else { return 0 }
        return mm.pageTable.pgtablesPages
    }

    /// The VMAs of a live process.
    public func vmas(_ pid: Int32) -> [VMArea] {
        guard let i = taskIndex[pid], let mm = tasks[i].mm else { return [] }
        return mm.vmas
    }

    /// The leaf entry mapping `address` (a PTE, or a huge PMD), without faulting.
    public func pageTableEntry(_ pid: Int32, _ address: UInt64) -> PageTableEntry? {
        guard let i = taskIndex[pid], let mm = tasks[i].mm,
              let slot = mm.pageTable.walk(address, allocate: false), slot.pointee != 0 else { return nil }
        return PageTableEntry(rawValue: slot.pointee)
    }

    /// The number of the 4 KiB frame mapped at `address` (inside a huge page
    /// when the PMD is huge), without faulting; nil when nothing is present
    /// or the zero page (or huge zero page) is mapped. `frameInfo(pid, address)?.frame`
    /// without reading the frame's state.
    public func presentFrame(_ pid: Int32, _ address: UInt64) -> Int? {
        guard let i = taskIndex[pid], let mm = tasks[i].mm,
              let slot = mm.pageTable.walk(address, allocate: false) else { return nil }
        return Machine.presentFrame(PageTableEntry(rawValue: slot.pointee), address)
    }

    /// `presentFrame(pid, address)` for the entry `pageTableEntry(pid, address)` returned.
    /// Inlinable: the replay asks it at every write-protect fault, where a call
    /// also fetched Machine's metadata.
    @inlinable @inline(__always)
    public static func presentFrame(_ entry: PageTableEntry, _ address: UInt64) -> Int? {
        guard entry.isPresent else { return nil }
        var f = entry.frame
        if entry.isHuge { f += Paging.pteIndex(address) }
        if f == FrameTable.zeroPage || (f >= FrameTable.hugeZeroPage && f < FrameTable.hugeZeroPage + 512) { return nil }
        return f
    }

    /// The frame mapped at `address`, without faulting.
    public func frameInfo(_ pid: Int32, _ address: UInt64) -> FrameInfo? {
        guard let entry = pageTableEntry(pid, address), entry.isPresent else { return nil }
        var frame = entry.frame
        if entry.isHuge { frame += Paging.pteIndex(address) }
        return frameInfo(frame: frame)
    }

    public func frameInfo(frame f: Int) -> FrameInfo {
        FrameInfo(frame: f, refcount: Int(frames.refcount[f]), mapcount: Int(frames.mapcount[f]),
                  isAnon: frames.has(f, .anon), isAnonExclusive: frames.has(f, .anonExclusive),
                  isKSM: frames.has(f, .ksm),
                  isZeroPage: f == FrameTable.zeroPage || (f >= FrameTable.hugeZeroPage && f < FrameTable.hugeZeroPage + 512),
                  isPageCache: frames.has(f, .pageCache), isHuge: frames.has(f, .huge),
                  owner: frames.refcount[f] == 0 ? 0 : Int(frames.owner[f]), // a free frame's owner links the free list
                  contents: frames.contents[f])
    }
}
