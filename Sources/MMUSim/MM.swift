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

    /// The index of the VMA `findVMA` last found (the per-thread vmacache of
    /// kernels before 6.1): faults come in runs on one VMA, and the search's
    /// branches are the replay's most mispredicted. It needs no invalidation:
    /// the VMAs are sorted and disjoint, so the one at this index that
    /// contains the address is the answer whatever changed since.
    var vmaCache = 0

    /// find_vma: the index of the VMA containing `address`, if any.
    @inline(__always)
    func findVMA(_ address: UInt64) -> Int? {
        let cached = vmaCache
        if cached < vmas.count, vmas[cached].start <= address, address < vmas[cached].end { return cached }
        return searchVMA(address)
    }

    @inline(never)
    func searchVMA(_ address: UInt64) -> Int? {
        var lo = 0, hi = vmas.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if vmas[mid].end <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo < vmas.count, vmas[lo].start <= address else { return nil }
        vmaCache = lo
        return lo
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
