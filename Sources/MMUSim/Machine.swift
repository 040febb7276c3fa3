/// Errors of the simulated system calls, named by their errno.
public enum MMError: Error, Equatable, CustomStringConvertible {
    /// ENOMEM: the overcommit policy refused the charge, or no memory was left.
    case outOfMemory(String)
    /// EINVAL: a bad address, length or flag combination.
    case invalidArgument(String)
    /// ESRCH: no live process with this pid.
    case noSuchProcess(Int32)
    /// EBADF: no such file.
    case badFile(String)

    public var description: String {
        switch self {
        case .outOfMemory(let why): return "ENOMEM: \(why)"
        case .invalidArgument(let why): return "EINVAL: \(why)"
        case .noSuchProcess(let pid): return "ESRCH: no live process \(pid)"
        case .badFile(let why): return "EBADF: \(why)"
        }
    }
}

/// vm.overcommit_memory.
public enum OvercommitMode: Int, Sendable, CaseIterable {
    /// 0, OVERCOMMIT_GUESS: refuse only a single request larger than RAM + swap.
    case heuristic = 0
    /// 1, OVERCOMMIT_ALWAYS: never refuse.
    case always = 1
    /// 2, OVERCOMMIT_NEVER: refuse when Committed_AS would reach CommitLimit less the reserves.
    case never = 2
}

/// /sys/kernel/mm/transparent_hugepage/enabled.
public enum THPMode: String, Sendable, CaseIterable {
    case always, madvise, never
}

/// The simulated machine's size and sysctls.
public struct MachineConfiguration: Sendable {
    public var ramBytes: UInt64
    public var swapBytes: UInt64
    public var overcommitMode: OvercommitMode
    /// vm.overcommit_ratio (percent of RAM in CommitLimit), default 50.
    public var overcommitRatio: Int
    /// vm.overcommit_kbytes; when non-zero it replaces the ratio.
    public var overcommitKBytes: Int
    /// vm.admin_reserve_kbytes; nil = the boot default min(free/32, 8 MiB).
    public var adminReserveKBytes: Int?
    /// vm.user_reserve_kbytes; nil = the boot default min(free/32, 128 MiB).
    public var userReserveKBytes: Int?
    public var transparentHugePages: THPMode
    /// transparent_hugepage/use_zero_page.
    public var hugeZeroPage: Bool
    /// Where top-down mmap placement starts (mm->mmap_base).
    public var mmapBase: UInt64
    /// Where brk heaps start (mm->start_brk).
    public var brkBase: UInt64

    public init(ramBytes: UInt64 = 8 << 30, swapBytes: UInt64 = 0,
                overcommitMode: OvercommitMode = .heuristic, overcommitRatio: Int = 50,
                overcommitKBytes: Int = 0, adminReserveKBytes: Int? = nil, userReserveKBytes: Int? = nil,
                transparentHugePages: THPMode = .madvise, hugeZeroPage: Bool = true,
                mmapBase: UInt64 = 0x7f00_0000_0000, brkBase: UInt64 = 0x5555_5600_0000) {
        self.ramBytes = ramBytes
        self.swapBytes = swapBytes
        self.overcommitMode = overcommitMode
        self.overcommitRatio = overcommitRatio
        self.overcommitKBytes = overcommitKBytes
        self.adminReserveKBytes = adminReserveKBytes
        self.userReserveKBytes = userReserveKBytes
        self.transparentHugePages = transparentHugePages
        self.hugeZeroPage = hugeZeroPage
        self.mmapBase = mmapBase
        self.brkBase = brkBase
    }
}

/// RSS counters of one mm (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES), in pages.
public struct RSSCounters: Equatable, Sendable {
    public var anon = 0
    public var file = 0
    public var shmem = 0
    public var swapEntries = 0
    public init(anon: Int = 0, file: Int = 0, shmem: Int = 0, swapEntries: Int = 0) {
        self.anon = anon; self.file = file; self.shmem = shmem; self.swapEntries = swapEntries
    }
    /// get_mm_rss: file + anon + shmem.
    public var total: Int { anon + file + shmem }
}

/// An address space (`struct mm_struct`).
final class MM {
    let pageTable: PageTable
    /// Sorted by start, non-overlapping.
    var vmas: [VMArea] = []
    let rssCounters: UnsafeMutablePointer<RSSCounters>
    var rss: RSSCounters { get { rssCounters.pointee } set { rssCounters.pointee = newValue } }
    /// mm->total_vm, in pages.
    var totalVM = 0
    var startBrk: UInt64
    var brk: UInt64
    /// MMF_HAS_PINNED: some page was ever pinned (FOLL_PIN) in this mm.
    var hasPinned = false

    init(pool: TablePool, brkBase: UInt64) {
        pageTable = PageTable(pool: pool)
        startBrk = brkBase
        brk = brkBase
        rssCounters = .allocate(capacity: 1)
        rssCounters.initialize(to: RSSCounters())
    }

    deinit { rssCounters.deallocate() }

    /// find_vma: the index of the VMA containing `address`, if any.
    func findVMA(_ address: UInt64) -> Int? {
        var lo = 0, hi = vmas.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if vmas[mid].end <= address { lo = mid + 1 } else { hi = mid }
        }
        return lo < vmas.count && vmas[lo].start <= address ? lo : nil
    }

    /// Whether any VMA intersects [lo, hi).
    func anyVMA(intersecting lo: UInt64, _ hi: UInt64) -> Bool {
        var l = 0, h = vmas.count
        while l < h {
            let mid = (l + h) / 2
            if vmas[mid].end <= lo { l = mid + 1 } else { h = mid }
        }
        return l < vmas.count && vmas[l].start < hi
    }
}

/// One simulated process (`struct task_struct` with its signal struct).
final class Task {
    let pid: Int32
    var comm: String
    let uid: UInt32
    var oomScoreAdj: Int
    let capSysAdmin: Bool
    var mm: MM?
    /// memcg and alive are read on every page allocation.
    struct State { var memcg: Int; var alive: Bool }
    let state: UnsafeMutablePointer<State>
    var memcg: Int { get { state.pointee.memcg } set { state.pointee.memcg = newValue } }
    var alive: Bool { get { state.pointee.alive } set { state.pointee.alive = newValue } }
    var killedByOOM = false
    let parent: Int32?
    var faults = FaultCounts()

    init(pid: Int32, comm: String, uid: UInt32, oomScoreAdj: Int, memcg: Int, capSysAdmin: Bool, parent: Int32?, mm: MM) {
        self.pid = pid
        self.comm = String(comm.prefix(15)) // TASK_COMM_LEN - 1
        self.uid = uid
        self.oomScoreAdj = oomScoreAdj
        state = .allocate(capacity: 1)
        state.initialize(to: State(memcg: memcg, alive: true))
        self.capSysAdmin = capSysAdmin
        self.parent = parent
        self.mm = mm
    }

    deinit { state.deallocate() }
}

/// A file or shmem object with its page cache (`struct address_space`).
struct FileObject {
    var name: String
    var sizePages: Int
    /// Frame per page offset, -1 when not cached.
    var cache: [Int32]
    var isShmem: Bool
    /// VMAs that refer to it; an anonymous shmem object dies with its last one.
    var mappings = 0
    /// Pages charged to Committed_AS for a MAP_SHARED|MAP_ANONYMOUS object (shmem_acct_size).
    var committedPages = 0
    var anonymousShmem = false
}

/// A memory cgroup with a limit (memory.max / memory.limit_in_bytes).
struct MemoryCgroup {
    var name: String
    var limitPages: Int
    var usagePages = 0
}

/// Host-wide event counters, named after /proc/vmstat.
public struct VMStat: Equatable, Sendable {
    public var pgfault = 0
    public var pgreuse = 0
    public var cowKSM = 0
    public var thpFaultAlloc = 0
    public var thpFaultFallback = 0
    public var thpSplitPMD = 0
    public var oomKill = 0
    public var pinnedCopiedAtFork = 0
    public var ksmPagesShared = 0
    public var ksmPagesSharing = 0
}

/// The simulated kernel: physical memory, processes, overcommit and the OOM killer.
///
/// Deterministic and single-threaded: the same calls give the same frames,
/// faults and victims every time.
public final class Machine {
    public let configuration: MachineConfiguration
    let frames: FrameTable
    /// Page-table pages of every mm, and the count of them (updated by PageTable).
    let tablePool = TablePool()
    var hostTablePages: UnsafeMutablePointer<Int> { tablePool.pages }
    var tasks: [Task] = []
    var taskIndex: [Int32: Int] = [:]
    var nextPid: Int32 = 1000
    var files: [FileObject] = []
    var memcgs: [MemoryCgroup] = [MemoryCgroup(name: "/", limitPages: Int.max)]
    /// Counters touched on every fault live behind a pointer: a stored `var`
    /// of a class would pay a dynamic exclusivity check on each access.
    struct Counters {
        var usedFrames = 0
        var anonFrames = 0
        var fileCacheFrames = 0
        var shmemFrames = 0
        var mappedFileCacheFrames = 0
        var committedPages = 0
        var vmstat = VMStat()
    }
    let counters: UnsafeMutablePointer<Counters>
    /// Frames in use (anon, page cache, shmem), not counting page tables or the zero pages.
    var usedFrames: Int { get { counters.pointee.usedFrames } set { counters.pointee.usedFrames = newValue } }
    var anonFrames: Int { get { counters.pointee.anonFrames } set { counters.pointee.anonFrames = newValue } }
    var fileCacheFrames: Int { get { counters.pointee.fileCacheFrames } set { counters.pointee.fileCacheFrames = newValue } }
    var shmemFrames: Int { get { counters.pointee.shmemFrames } set { counters.pointee.shmemFrames = newValue } }
    /// Page-cache (non-shmem) frames that are mapped somewhere, so not reclaimable here.
    var mappedFileCacheFrames: Int {
        get { counters.pointee.mappedFileCacheFrames } set { counters.pointee.mappedFileCacheFrames = newValue }
    }
    /// vm_committed_as, in pages.
    public internal(set) var committedPages: Int {
        get { counters.pointee.committedPages } set { counters.pointee.committedPages = newValue }
    }
    public internal(set) var vmstat: VMStat {
        get { counters.pointee.vmstat } set { counters.pointee.vmstat = newValue }
    }
    public internal(set) var oomEvents: [OOMEvent] = []
    /// When set, every handled fault is appended here (for replay and tests).
    public var faultLog: [FaultRecord]? = nil

    public let ramPages: Int
    public let swapPages: Int
    /// Simulator memory per simulated frame (frame record, file index, free-list slot).
    public static var bytesPerFrame: Int { FrameTable.bytesPerFrame }

    public init(_ configuration: MachineConfiguration = MachineConfiguration()) {
        self.configuration = configuration
        ramPages = Int(configuration.ramBytes >> 12)
        swapPages = Int(configuration.swapBytes >> 12)
        frames = FrameTable(frames: ramPages + swapPages)
        counters = .allocate(capacity: 1)
        counters.initialize(to: Counters())
    }

    deinit {
        for task in tasks { task.mm = nil }
        counters.deallocate()
    }

    // MARK: processes

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
                  owner: Int(frames.owner[f]), contents: frames.contents[f])
    }

    // MARK: files and cgroups

    /// Creates a file of `size` bytes whose pages are read from "disk" on first use.
    @discardableResult
    public func createFile(_ name: String, size: UInt64) -> FileID {
        let pages = Int(Paging.pageAlignUp(size) >> 12)
        files.append(FileObject(name: name, sizePages: pages, cache: [Int32](repeating: -1, count: pages), isShmem: false))
        return FileID(rawValue: Int32(files.count - 1))
    }

    public func file(named name: String) -> FileID? {
        files.firstIndex { $0.name == name && !$0.anonymousShmem }.map { FileID(rawValue: Int32($0)) }
    }

    /// Creates a memory cgroup with a limit in bytes.
    public func createCgroup(_ name: String, limitBytes: UInt64) throws {
        guard !memcgs.contains(where: { $0.name == name }) else {
            throw MMError.invalidArgument("cgroup \(name) exists")
        }
        memcgs.append(MemoryCgroup(name: name, limitPages: Int(limitBytes >> 12)))
    }

    func memcgIndex(_ name: String) throws -> Int {
        guard let i = memcgs.firstIndex(where: { $0.name == name }) else {
            throw MMError.invalidArgument("no cgroup named \(name)")
        }
        return i
    }

    /// Pages charged to a memory cgroup (memory.current / 4096).
    public func cgroupUsagePages(_ name: String) -> Int? { memcgs.first { $0.name == name }?.usagePages }

    /// Moves a process into a cgroup (its existing pages stay charged where they are, as in cgroup v2).
    public func attach(_ pid: Int32, toCgroup name: String) throws {
        try task(pid).memcg = memcgIndex(name)
    }
}
