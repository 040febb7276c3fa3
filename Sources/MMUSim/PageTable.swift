#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The four-level page table of one address space (mm->pgd and below).
///
/// Every table is a real 4 KiB-aligned block of 512 `UInt64` entries. An upper
/// entry holds the next table's address in its frame bits, so `walk` chases
/// pointers exactly as the MMU and `pgd_offset`/`p4d_offset`/`pud_offset`/
/// `pmd_offset`/`pte_offset_map` do. The tables count towards the owner's
/// `mm_pgtables_bytes` (PUD, PMD and PTE tables; the PGD itself is not counted,
/// as in the kernel) and towards the host's page-table memory.
public final class PageTable {
    /// The level a walk stops at.
    public enum Level: Int, Sendable { case pud = 3, pmd = 2, pte = 1 }

    let pgd: UnsafeMutablePointer<UInt64>
    /// PTE tables, including the one deposited for each huge PMD (pgtable_trans_huge_deposit).
    public internal(set) var nrPtes = 0
    public internal(set) var nrPmds = 0
    public internal(set) var nrPuds = 0
    /// Where tables come from and go back to; it also counts the host's page-table pages.
    let pool: TablePool
    let hostTablePages: UnsafeMutablePointer<Int>

    init(pool: TablePool) {
        self.pool = pool
        hostTablePages = pool.pages
        pgd = pool.take()
    }

    deinit {
        freeAllTables()
        pool.give(pgd)
    }

    /// Bytes of page tables, as `mm_pgtables_bytes`.
    public var pgtablesBytes: Int { (nrPtes + nrPmds + nrPuds) * Int(Paging.pageSize) }
    public var pgtablesPages: Int { nrPtes + nrPmds + nrPuds }

    @inline(__always) static func table(_ entry: UInt64) -> UnsafeMutablePointer<UInt64> {
        UnsafeMutablePointer(bitPattern: UInt(entry & PageTableEntry.frameMask))!
    }

    @inline(__always) static func tableEntry(_ table: UnsafeMutablePointer<UInt64>) -> UInt64 {
        UInt64(UInt(bitPattern: table)) | PageTableEntry.present | PageTableEntry.write | PageTableEntry.user
    }

    /// Walks from the PGD down to `level` for `address` and returns the entry slot there.
    ///
    /// Stops early, returning the PMD slot, if the PMD is a huge leaf (the caller
    /// checks `huge`). With `allocate`, missing tables are created on the way
    /// (`__pud_alloc`, `__pmd_alloc`, `__pte_alloc`); without it, returns nil at
    /// the first missing table. This is the only walk in the simulator.
    public func walk(_ address: UInt64, to level: Level = .pte, allocate: Bool) -> UnsafeMutablePointer<UInt64>? {
        // PGD -> PUD table
        let pgdSlot = pgd + Paging.pgdIndex(address)
        if pgdSlot.pointee == 0 {
            guard allocate else { return nil }
            pgdSlot.pointee = PageTable.tableEntry(pool.take())
            nrPuds += 1; hostTablePages.pointee += 1
        }
        let pudSlot = PageTable.table(pgdSlot.pointee) + Paging.pudIndex(address)
        if level == .pud { return pudSlot }
        if pudSlot.pointee == 0 {
            guard allocate else { return nil }
            pudSlot.pointee = PageTable.tableEntry(pool.take())
            nrPmds += 1; hostTablePages.pointee += 1
        }
        let pmdSlot = PageTable.table(pudSlot.pointee) + Paging.pmdIndex(address)
        if level == .pmd || pmdSlot.pointee & PageTableEntry.huge != 0 { return pmdSlot }
        if pmdSlot.pointee == 0 {
            guard allocate else { return nil }
            pmdSlot.pointee = PageTable.tableEntry(pool.take())
            nrPtes += 1; hostTablePages.pointee += 1
        }
        return PageTable.table(pmdSlot.pointee) + Paging.pteIndex(address)
    }

    /// `walk(address, to: .pte, allocate: false)` inlined, for the lookup
    /// the replay makes per fault (`Machine.faultSite`): the slot of the leaf
    /// entry mapping `address` (a PTE, or the PMD when it is a huge leaf), nil
    /// at the first missing table. The walk's level and allocation cases cost
    /// more than the four loads.
    @inline(__always)
    func lookup(_ address: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let pgdEntry = pgd[Paging.pgdIndex(address)]
        guard pgdEntry != 0 else { return nil }
        let pudEntry = PageTable.table(pgdEntry)[Paging.pudIndex(address)]
        guard pudEntry != 0 else { return nil }
        let pmdSlot = PageTable.table(pudEntry) + Paging.pmdIndex(address)
        let pmdEntry = pmdSlot.pointee
        if pmdEntry & PageTableEntry.huge != 0 { return pmdSlot }
        guard pmdEntry != 0 else { return nil }
        return PageTable.table(pmdEntry) + Paging.pteIndex(address)
    }

    /// Installs a PTE table under an empty or huge PMD slot, for a split.
    /// The table was already counted when the huge PMD was installed (it is the deposited one).
    func withdrawDepositedTable(into pmdSlot: UnsafeMutablePointer<UInt64>) -> UnsafeMutablePointer<UInt64> {
        let table = pool.take()
        pmdSlot.pointee = PageTable.tableEntry(table)
        return table
    }

    /// Counts the PTE table deposited with a huge PMD.
    func depositTable() { nrPtes += 1; hostTablePages.pointee += 1 }
    /// Releases a deposited table when a huge PMD is zapped.
    func releaseDepositedTable() { nrPtes -= 1; hostTablePages.pointee -= 1 }

    /// Frees the page tables covering [start, end) that no VMA still needs
    /// (free_pgtables with floor/ceiling): a PTE table goes when no VMA touches
    /// its 2 MiB, a PMD table when none touches its 1 GiB, a PUD table its 512 GiB.
    /// `isCovered(lo, hi)` says whether any remaining VMA intersects [lo, hi).
    func freeTables(start: UInt64, end: UInt64, isCovered: (UInt64, UInt64) -> Bool) {
        guard start < end else { return }
        var pgdAddress = start & ~((1 << 39) - 1)
        while pgdAddress < end {
            let pgdSlot = pgd + Paging.pgdIndex(pgdAddress)
            let pgdNext = pgdAddress + (1 << 39)
            if pgdSlot.pointee != 0 {
                let pudTable = PageTable.table(pgdSlot.pointee)
                var pudAddress = max(pgdAddress, start & ~((1 << 30) - 1))
                while pudAddress < min(end, pgdNext) {
                    let pudSlot = pudTable + Paging.pudIndex(pudAddress)
                    let pudNext = pudAddress + (1 << 30)
                    if pudSlot.pointee != 0 {
                        let pmdTable = PageTable.table(pudSlot.pointee)
                        var pmdAddress = max(pudAddress, start & ~((1 << 21) - 1))
                        while pmdAddress < min(end, pudNext) {
                            let pmdSlot = pmdTable + Paging.pmdIndex(pmdAddress)
                            if pmdSlot.pointee != 0, pmdSlot.pointee & PageTableEntry.huge == 0,
                               !isCovered(pmdAddress, pmdAddress + (1 << 21)) {
                                pool.give(PageTable.table(pmdSlot.pointee))
                                pmdSlot.pointee = 0
                                nrPtes -= 1; hostTablePages.pointee -= 1
                            }
                            pmdAddress += 1 << 21
                        }
                        if !isCovered(pudAddress, pudNext), PageTable.isEmpty(pmdTable) {
                            pool.give(pmdTable); pudSlot.pointee = 0
                            nrPmds -= 1; hostTablePages.pointee -= 1
                        }
                    }
                    pudAddress = pudNext
                }
                if !isCovered(pgdAddress, pgdNext), PageTable.isEmpty(pudTable) {
                    pool.give(pudTable); pgdSlot.pointee = 0
                    nrPuds -= 1; hostTablePages.pointee -= 1
                }
            }
            pgdAddress = pgdNext
        }
    }

    static func isEmpty(_ table: UnsafeMutablePointer<UInt64>) -> Bool {
        for i in 0..<512 where table[i] != 0 { return false }
        return true
    }

    /// Frees every table below the PGD (exit_mmap's free_pgtables over the whole space).
    func freeAllTables() {
        for g in 0..<512 where pgd[g] != 0 {
            let pud = PageTable.table(pgd[g])
            for u in 0..<512 where pud[u] != 0 {
                let pmd = PageTable.table(pud[u])
                for m in 0..<512 where pmd[m] != 0 {
                    if pmd[m] & PageTableEntry.huge == 0 { pool.give(PageTable.table(pmd[m])) }
                }
                pool.give(pmd)
            }
            pool.give(pud)
            pgd[g] = 0
        }
        hostTablePages.pointee -= nrPtes + nrPmds + nrPuds
        nrPtes = 0; nrPmds = 0; nrPuds = 0
    }

    /// Calls `body` for every PMD slot that is populated (table or huge leaf) within [start, end).
    /// `body` receives the 2 MiB-aligned address of the slot.
    func forEachPMD(start: UInt64, end: UInt64, _ body: (UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        var address = start & ~((1 << 21) - 1)
        while address < end {
            guard let pudSlot = walk(address, to: .pud, allocate: false), pudSlot.pointee != 0 else {
                // Skip the whole missing PUD table (or PGD entry) in one step.
                let step: UInt64 = (pgd[Paging.pgdIndex(address)] == 0) ? (1 << 39) : (1 << 30)
                address = (address & ~(step - 1)) + step
                continue
            }
            let pmdSlot = PageTable.table(pudSlot.pointee) + Paging.pmdIndex(address)
            if pmdSlot.pointee != 0 { body(address, pmdSlot) }
            address += 1 << 21
        }
    }
}

/// Page-table pages for every address space of one Machine. Tables are carved
/// from 2 MiB chunks (one host allocation per 512 tables), and freed tables are
/// kept and handed out again, zeroed, as the kernel's page allocator would.
/// (Asking the host for huge pages here made the first fork slower, not faster:
/// a huge-page fault may have to compact memory.)
final class TablePool {
    /// Page-table pages in use, host-wide.
    let pages: UnsafeMutablePointer<Int>
    private var spare: [UnsafeMutablePointer<UInt64>] = []
    private var chunks: [UnsafeMutableRawPointer] = []
    private var carved = TablePool.tablesPerChunk
    static let chunkBytes = 2 << 20
    static let tablesPerChunk = chunkBytes / 4096

    init() {
        pages = .allocate(capacity: 1)
        pages.initialize(to: 0)
    }

    deinit {
        for chunk in chunks { free(chunk) }
        pages.deallocate()
    }

    /// A zeroed, 4 KiB-aligned table.
    func take() -> UnsafeMutablePointer<UInt64> {
        let raw: UnsafeMutableRawPointer
        if let table = spare.popLast() {
            raw = UnsafeMutableRawPointer(table)
        } else {
            if carved == TablePool.tablesPerChunk {
                var chunk: UnsafeMutableRawPointer?
                guard posix_memalign(&chunk, TablePool.chunkBytes, TablePool.chunkBytes) == 0, let chunk else {
                    fatalError("page table allocation failed")
                }
                chunks.append(chunk)
                carved = 0
            }
            raw = chunks[chunks.count - 1] + carved * 4096
            carved += 1
        }
        memset(raw, 0, 4096)
        return raw.bindMemory(to: UInt64.self, capacity: 512)
    }

    func give(_ table: UnsafeMutablePointer<UInt64>) { spare.append(table) }
}
