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
    var taskIndex = PidIndex()
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
    /// The last fault `log` saw (what `fault(_:at:write:)` returns), behind a pointer: no exclusivity check per fault.
    let lastFault: UnsafeMutablePointer<FaultRecord?>
    /// Per-class counts of the faults of one `fault(_:at:write:)`, zero between
    /// calls: no buffer to allocate and clear per replayed fault.
    let faultCounts: UnsafeMutablePointer<Int>
    /// Where `fault(_:at:write:)` has the access's result written, which it
    /// does not read: no result (and its counts array) made per replayed fault.
    var unreadResult = AccessResult()

    public let ramPages: Int
    public let swapPages: Int
    /// Simulator memory per simulated frame (frame record, file index; a free frame links the free list through its record).
    public static var bytesPerFrame: Int { FrameTable.bytesPerFrame }

    /// The most RAM + swap a Machine can simulate (frame numbers are 32-bit).
    public static let maxMemoryBytes: UInt64 = 4 << 40

    public init(_ configuration: MachineConfiguration = MachineConfiguration()) {
        precondition(configuration.ramBytes + configuration.swapBytes <= Machine.maxMemoryBytes,
                     "MMUSim simulates at most 4 TiB of RAM + swap")
        self.configuration = configuration
        ramPages = Int(configuration.ramBytes >> 12)
        swapPages = Int(configuration.swapBytes >> 12)
        frames = FrameTable(frames: ramPages + swapPages)
        counters = .allocate(capacity: 1)
        counters.initialize(to: Counters())
        lastFault = .allocate(capacity: 1)
        lastFault.initialize(to: nil)
        faultCounts = .allocate(capacity: FaultClass.count)
        faultCounts.initialize(repeating: 0, count: FaultClass.count)
    }

    deinit {
        for task in tasks { task.mm = nil }
        counters.deallocate()
        lastFault.deallocate()
        faultCounts.deallocate()
    }
}

