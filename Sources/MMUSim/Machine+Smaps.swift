/// /proc/PID/smaps_rollup figures (fs/proc/task_mmu.c smaps_account), in bytes.
public struct SmapsRollup: Equatable, Sendable {
    public var rss = 0
    /// Proportional set size: each page divided by its mapcount (kept exact, in bytes).
    public var pss: Int { Int(pssScaled >> 12) }
    /// Pss in bytes << 12 (PSS_SHIFT), as the kernel accumulates it.
    public var pssScaled: UInt64 = 0
    public var sharedClean = 0
    public var sharedDirty = 0
    public var privateClean = 0
    public var privateDirty = 0
    public var anonymous = 0
}

/// /proc/meminfo figures, in pages unless named otherwise.
public struct MemInfo: Equatable, Sendable {
    public var memTotal: Int
    public var memFree: Int
    /// Frames in use plus page tables.
    public var used: Int
    public var anonPages: Int
    public var cached: Int
    public var shmem: Int
    public var pageTables: Int
    public var swapTotal: Int
    /// The part of `used` beyond RAM (the model swaps by number only).
    public var swapUsed: Int
    public var commitLimit: Int
    public var committedAS: Int
}

extension Machine {
    public func meminfo() -> MemInfo {
        let used = usedPages
        return MemInfo(memTotal: ramPages, memFree: max(0, ramPages - used), used: used, anonPages: anonFrames,
                       cached: fileCacheFrames, shmem: shmemFrames, pageTables: hostTablePages.pointee,
                       swapTotal: swapPages, swapUsed: max(0, used - ramPages),
                       commitLimit: commitLimitPages, committedAS: committedPages)
    }

    /// smaps_rollup of a live process (smaps_pte_range + smaps_account over every VMA).
    public func smaps(_ pid: Int32) -> SmapsRollup {
        var s = SmapsRollup()
        guard let i = taskIndex[pid], let mm = tasks[i].mm else { return s }
        let states = frames.states
        let anonFlag = FrameTable.Flags.anon.rawValue, dirtyFlag = FrameTable.Flags.dirty.rawValue
        // Counted in pages; Pss summed as (PAGE_SIZE << PSS_SHIFT) / mapcount per page, like the kernel.
        // No nested function: captured counters would be boxed and checked on every update.
        var rss = 0, anon = 0, privateDirty = 0, privateClean = 0, sharedDirty = 0, sharedClean = 0
        var pss: UInt64 = 0
        let full = UInt64(Paging.pageSize) << 12
        for vma in mm.vmas {
            var address = vma.start
            while address < vma.end {
                let next = min(vma.end, (address | (Paging.hugePageSize - 1)) &+ 1)
                defer { address = next }
                guard let pmd = mm.pageTable.walk(address, to: .pmd, allocate: false) else { continue }
                let entry = pmd.pointee
                if entry == 0 { continue }
                let huge = entry & PageTableEntry.huge != 0
                if huge && entry & PageTableEntry.special != 0 { continue }
                // A huge PMD maps 512 consecutive frames; a table maps one frame per PTE.
                let table = huge ? nil : PageTable.table(entry) as UnsafeMutablePointer<UInt64>?
                let head = Int((entry & PageTableEntry.frameMask) >> 12)
                var k = huge ? 0 : Paging.pteIndex(address)
                let last = huge ? Paging.hugePageFrames - 1 : Paging.pteIndex(next &- 1)
                while k <= last {
                    let f: Int
                    let dirtyPTE: Bool
                    if let table {
                        let e = table[k]
                        k &+= 1
                        if e & (PageTableEntry.present | PageTableEntry.special) != PageTableEntry.present { continue }
                        f = Int(truncatingIfNeeded: (e & PageTableEntry.frameMask) >> 12)
                        dirtyPTE = e & PageTableEntry.dirty != 0
                    } else {
                        f = head &+ k
                        k &+= 1
                        dirtyPTE = entry & PageTableEntry.dirty != 0
                    }
                    let st = states[f]
                    let mc = st.mapcount
                    // A page with one reference is private whatever its mapcount (folio_ref_count == 1).
                    let isPrivate = mc < 2 || st.refcount == 1
                    rss &+= 1
                    pss &+= isPrivate ? full : full / UInt64(mc)
                    if st.flags & anonFlag != 0 { anon &+= 1 }
                    if dirtyPTE || st.flags & dirtyFlag != 0 {
                        if isPrivate { privateDirty &+= 1 } else { sharedDirty &+= 1 }
                    } else {
                        if isPrivate { privateClean &+= 1 } else { sharedClean &+= 1 }
                    }
                }
            }
        }
        let page = Int(Paging.pageSize)
        s.rss = rss * page
        s.anonymous = anon * page
        s.pssScaled = pss
        s.privateDirty = privateDirty * page
        s.privateClean = privateClean * page
        s.sharedDirty = sharedDirty * page
        s.sharedClean = sharedClean * page
        return s
    }
}
