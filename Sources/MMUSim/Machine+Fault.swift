/// Page-fault handling, mirroring mm/memory.c and mm/huge_memory.c.
extension Machine {
    static let leafFlags = PageTableEntry.present | PageTableEntry.user | PageTableEntry.accessed
    static let writableDirty = PageTableEntry.write | PageTableEntry.dirty

    /// access_error on x86: may this VMA be accessed this way at all?
    @inline(__always)
    static func accessAllowed(_ vma: VMArea, write: Bool) -> Bool {
        write ? vma.flags.contains(.write) : !vma.flags.isDisjoint(with: [.read, .write, .exec])
    }

    /// handle_mm_fault for the fault described by `ctx` (address, and `pte` when
    /// the hardware walk already reached the PTE). With a PTE, the PMD points to
    /// a PTE table: nothing happens at the PMD level and the fault goes straight
    /// to handle_pte_fault.
    @inline(__always)
    func handleMMFault(_ ctx: inout FaultContext) -> FaultClass {
        guard let pte = ctx.pte else { return handlePMDFault(&ctx) }
        counters.pointee.vmstat.pgfault &+= 1
        ctx.origPTE = pte.pointee
        return handlePTEFault(&ctx)
    }

    /// __handle_mm_fault from the top: the PMD level (THP) first, then the PTE level.
    @inline(never)
    func handlePMDFault(_ ctx: inout FaultContext) -> FaultClass {
        counters.pointee.vmstat.pgfault &+= 1
        let mm = ctx.mm
        let write = ctx.write
        guard let pmd = mm.pageTable.walk(ctx.address, to: .pmd, allocate: true) else { return .oom }
        ctx.pmd = pmd
        if pmd.pointee == 0, thpSuitable(ctx.vma, ctx.address) {
            if let done = doHugePMDAnonymousPage(&ctx) { return done }
        } else if pmd.pointee & PageTableEntry.huge != 0 {
            if !write || pmd.pointee & PageTableEntry.write != 0 {
                pmd.pointee |= PageTableEntry.accessed | (write ? PageTableEntry.dirty : 0)
                return .spurious
            }
            if let done = doHugePMDWPPage(&ctx) { return done }
            // Fallback: the PMD was split; the write is handled 4 KiB at a time.
        }
        guard let slot = mm.pageTable.walk(ctx.address, to: .pte, allocate: true) else { return .oom }
        ctx.pte = slot
        ctx.origPTE = slot.pointee
        return handlePTEFault(&ctx)
    }

    /// handle_pte_fault.
    @inline(__always)
    func handlePTEFault(_ ctx: inout FaultContext) -> FaultClass {
        let entry = ctx.origPTE
        if entry == 0 {
            return ctx.isAnonymousVMA ? doAnonymousPage(&ctx) : doFault(&ctx)
        }
        if ctx.write && entry & PageTableEntry.write == 0 {
            return doWPPage(&ctx)
        }
        ctx.pte!.pointee |= PageTableEntry.accessed | (ctx.write ? PageTableEntry.dirty : 0)
        return .spurious
    }

    /// anon_vma_prepare: from now on fork copies this VMA's page tables.
    @inline(__always)
    func anonVMAPrepare(_ ctx: inout FaultContext) {
        if !ctx.hasAnonVMA {
            markAnonVMA(ctx.mmRef, ctx.vmaIndex)
            ctx.hasAnonVMA = true
        }
    }

    // Out of line: runs once per VMA, and keeps the fault path's frame small.
    @inline(never)
    func markAnonVMA(_ mm: Unmanaged<MM>, _ vmaIndex: Int) {
        mm.takeUnretainedValue().vmas[vmaIndex].hasAnonVMA = true
    }

    /// Sets up a freshly allocated frame as an exclusive anonymous page of this mm.
    @inline(__always)
    func newAnonPage(_ f: Int, _ ctx: inout FaultContext, contents: UInt64) {
        let memcg = frames.states[f].memcg
        frames.states[f] = FrameTable.State(refcount: 1, mapcount: 1, owner: ctx.pid,
                                            flags: FrameTable.Flags.anon.rawValue | FrameTable.Flags.anonExclusive.rawValue,
                                            memcg: memcg)
        frames.contents[f] = contents
        counters.pointee.anonFrames &+= 1
    }

    /// do_anonymous_page: a read maps the zero page; a write gets a new zeroed page.
    @inline(__always)
    func doAnonymousPage(_ ctx: inout FaultContext) -> FaultClass {
        if !ctx.write {
            ctx.pte!.pointee = UInt64(FrameTable.zeroPage) << 12 | Machine.leafFlags | PageTableEntry.special
            return .zeroPage
        }
        anonVMAPrepare(&ctx)
        let f = allocPage(&ctx)
        guard f >= 0 else { return .oom }
        newAnonPage(f, &ctx, contents: 0)
        ctx.pte!.pointee = UInt64(f) << 12 | Machine.leafFlags | Machine.writableDirty
        ctx.rss.pointee.anon &+= 1
        return .anonymousPage
    }

    /// do_fault: a not-present fault on a file or shmem mapping.
    @inline(never)
    func doFault(_ ctx: inout FaultContext) -> FaultClass {
        if !ctx.write { return doReadFault(&ctx) }
        return ctx.vma.isShared ? doSharedFault(&ctx) : doCOWFault(&ctx)
    }

    @inline(__always)
    func addFileRSS(_ rss: UnsafeMutablePointer<RSSCounters>, _ f: Int, _ delta: Int) {
        if frames.has(f, .shmem) { rss.pointee.shmem += delta } else { rss.pointee.file += delta }
    }

    @inline(__always)
    func addFileRSS(_ mm: MM, _ f: Int, _ delta: Int) { addFileRSS(mm.rssCounters, f, delta) }

    /// do_read_fault: map the page-cache page. Private mappings map it read-only
    /// (a later write copies it); shared shmem maps it writable at once, while a
    /// shared regular file keeps it read-only so that the first write is
    /// reported (writenotify, page_mkwrite).
    func doReadFault(_ ctx: inout FaultContext) -> FaultClass {
        let f = filePage(ctx.task, ctx.vma.file!, ctx.vma.fileIndex(ctx.address))
        if f == -2 { return .sigbus }
        guard f >= 0 else { return .oom }
        mapCachePage(f)
        addFileRSS(ctx.rss, f, 1)
        var entry = UInt64(f) << 12 | Machine.leafFlags
        if ctx.vma.isShared, ctx.vma.flags.contains(.write), frames.has(f, .shmem) {
            entry |= PageTableEntry.write
        }
        ctx.pte!.pointee = entry
        return .fileRead
    }

    /// do_cow_fault: a write to a not-present page of a private file mapping
    /// copies the page-cache page into a new anonymous page. It is not a
    /// write-protect fault (error code 0x6, not 0x7).
    func doCOWFault(_ ctx: inout FaultContext) -> FaultClass {
        anonVMAPrepare(&ctx)
        let cached = filePage(ctx.task, ctx.vma.file!, ctx.vma.fileIndex(ctx.address))
        if cached == -2 { return .sigbus }
        guard cached >= 0 else { return .oom }
        frames.refcount[cached] += 1 // held across the allocation so reclaim keeps it
        let f = allocPage(&ctx)
        putPage(cached)
        guard f >= 0 else { return .oom }
        newAnonPage(f, &ctx, contents: frames.contents[cached])
        ctx.pte!.pointee = UInt64(f) << 12 | Machine.leafFlags | Machine.writableDirty
        ctx.rss.pointee.anon &+= 1
        return .fileCopy
    }

    /// do_shared_fault: a write to a not-present page of a shared mapping maps
    /// the page-cache page writable and dirties it. Nothing is copied.
    func doSharedFault(_ ctx: inout FaultContext) -> FaultClass {
        let f = filePage(ctx.task, ctx.vma.file!, ctx.vma.fileIndex(ctx.address))
        if f == -2 { return .sigbus }
        guard f >= 0 else { return .oom }
        mapCachePage(f)
        frames.set(f, .dirty)
        addFileRSS(ctx.rss, f, 1)
        ctx.pte!.pointee = UInt64(f) << 12 | Machine.leafFlags | Machine.writableDirty
        return .sharedWrite
    }

    /// do_wp_page: a write to a present, read-only PTE.
    @inline(__always)
    func doWPPage(_ ctx: inout FaultContext) -> FaultClass {
        let entry = ctx.origPTE
        if ctx.vmaFlags.contains(.shared) {
            // wp_page_shared: writenotify said "tell me"; no copy.
            let f = Int((entry & PageTableEntry.frameMask) >> 12)
            frames.set(f, .dirty)
            ctx.pte!.pointee = entry | Machine.writableDirty | PageTableEntry.accessed
            return .sharedWrite
        }
        if entry & PageTableEntry.special != 0 {
            // vm_normal_page is NULL for the zero page: wp_page_copy allocates a zeroed page.
            return copyPage(&ctx, old: nil)
        }
        let f = Int((entry & PageTableEntry.frameMask) >> 12)
        let flags = frames.flags[f]
        if flags & FrameTable.Flags.anon.rawValue != 0 {
            if flags & FrameTable.Flags.ksm.rawValue != 0 {
                counters.pointee.vmstat.cowKSM += 1
                return copyPage(&ctx, old: f)
            }
            if flags & FrameTable.Flags.anonExclusive.rawValue != 0 {
                return reusePage(&ctx)
            }
            // wp_can_reuse_anon_folio: the last reference is ours.
            if frames.refcount[f] == 1 {
                frames.set(f, .anonExclusive)
                frames.owner[f] = ctx.pid // folio_move_anon_rmap
                return reusePage(&ctx)
            }
            return copyPage(&ctx, old: f)
        }
        // A page-cache page mapped read-only in a private mapping.
        return copyPage(&ctx, old: f)
    }

    /// wp_page_reuse: make the PTE writable; nothing is copied.
    @inline(__always)
    func reusePage(_ ctx: inout FaultContext) -> FaultClass {
        ctx.pte!.pointee = ctx.origPTE | Machine.writableDirty | PageTableEntry.accessed
        counters.pointee.vmstat.pgreuse &+= 1
        return .reuse
    }

    /// wp_page_copy: a new page for this mm, filled from the old one (or zeroed
    /// for the zero page); the old page loses one map and one reference.
    @inline(__always)
    func copyPage(_ ctx: inout FaultContext, old: Int?) -> FaultClass {
        anonVMAPrepare(&ctx)
        let new = allocPage(&ctx)
        guard new >= 0 else { return .oom }
        let result: FaultClass
        if let old {
            newAnonPage(new, &ctx, contents: frames.contents[old])
            if frames.has(old, .anon) {
                result = frames.has(old, .ksm) ? .ksmCopy : .copy
                frames.mapcount[old] &-= 1
                putPage(old)
            } else {
                result = .fileCopy
                dropCachePageForCopy(&ctx, old)
            }
        } else {
            newAnonPage(new, &ctx, contents: 0)
            ctx.rss.pointee.anon &+= 1
            result = .zeroFill
        }
        ctx.pte!.pointee = UInt64(new) << 12 | Machine.leafFlags | Machine.writableDirty
        return result
    }

    /// The page-cache side of a private file copy: RSS moves from file to anon.
    @inline(never)
    func dropCachePageForCopy(_ ctx: inout FaultContext, _ old: Int) {
        addFileRSS(ctx.rss, old, -1)
        ctx.rss.pointee.anon &+= 1
        unmapCachePage(old)
    }

    // MARK: transparent huge pages

    /// thp_vma_allowable_order + thp_vma_suitable_order for an anonymous PMD fault.
    func thpSuitable(_ vma: VMArea, _ address: UInt64) -> Bool {
        guard vma.isAnonymous, !vma.isShared, !vma.flags.contains(.noHugePage) else { return false }
        switch configuration.transparentHugePages {
        case .never: return false
        case .madvise: guard vma.flags.contains(.hugePage) else { return false }
        case .always: break
        }
        let start = address & ~(Paging.hugePageSize - 1)
        return start >= vma.start && start + Paging.hugePageSize <= vma.end
    }

    /// do_huge_pmd_anonymous_page. Returns nil to fall back to 4 KiB pages.
    @inline(never)
    func doHugePMDAnonymousPage(_ ctx: inout FaultContext) -> FaultClass? {
        let pmd = ctx.pmd!
        if !ctx.write {
            guard configuration.hugeZeroPage else { return nil }
            pmd.pointee = UInt64(FrameTable.hugeZeroPage) << 12 | Machine.leafFlags
                | PageTableEntry.huge | PageTableEntry.special
            ctx.mm.pageTable.depositTable()
            return .hugeZeroPage
        }
        anonVMAPrepare(&ctx)
        let head = allocHugePage(ctx.task)
        guard head >= 0 else {
            counters.pointee.vmstat.thpFaultFallback += 1
            return nil
        }
        for f in head..<(head + Paging.hugePageFrames) {
            newAnonPage(f, &ctx, contents: 0)
            frames.set(f, .huge)
        }
        pmd.pointee = UInt64(head) << 12 | Machine.leafFlags | Machine.writableDirty | PageTableEntry.huge
        ctx.mm.pageTable.depositTable()
        ctx.rss.pointee.anon += Paging.hugePageFrames
        counters.pointee.vmstat.thpFaultAlloc += 1
        return .hugePage
    }

    /// do_huge_pmd_wp_page: reuse an exclusive huge page whole; otherwise split
    /// the PMD and let the 4 KiB path copy (no 2 MiB copy ever happens on CoW).
    /// Returns nil after a split.
    @inline(never)
    func doHugePMDWPPage(_ ctx: inout FaultContext) -> FaultClass? {
        let pmd = ctx.pmd!
        let entry = pmd.pointee
        if entry & PageTableEntry.special == 0 {
            let head = Int((entry & PageTableEntry.frameMask) >> 12)
            var reusable = frames.has(head, .anonExclusive)
            if !reusable {
                reusable = (head..<(head + Paging.hugePageFrames)).allSatisfy { frames.refcount[$0] == 1 }
            }
            if reusable {
                for f in head..<(head + Paging.hugePageFrames) {
                    frames.set(f, .anonExclusive)
                    frames.owner[f] = ctx.pid
                }
                pmd.pointee = entry | Machine.writableDirty | PageTableEntry.accessed
                counters.pointee.vmstat.pgreuse += 1
                return .reuse
            }
        }
        splitHugePMD(ctx.mm, pmd)
        return nil
    }

    /// __split_huge_pmd: replace a huge PMD with a PTE table mapping the same
    /// 512 frames (or 512 zero-page entries), with the same permissions. Map and
    /// reference counts are already per 4 KiB frame, so they do not change.
    @inline(never)
    func splitHugePMD(_ mm: MM, _ pmd: UnsafeMutablePointer<UInt64>) {
        let entry = pmd.pointee
        let table = mm.pageTable.withdrawDepositedTable(into: pmd)
        if entry & PageTableEntry.special != 0 {
            let zero = UInt64(FrameTable.zeroPage) << 12 | Machine.leafFlags | PageTableEntry.special
            for i in 0..<Paging.hugePageFrames { table[i] = zero }
        } else {
            let head = (entry & PageTableEntry.frameMask) >> 12
            let keep = entry & (PageTableEntry.present | PageTableEntry.write | PageTableEntry.user
                | PageTableEntry.accessed | PageTableEntry.dirty | PageTableEntry.noExecute)
            for i in 0..<Paging.hugePageFrames { table[i] = (head + UInt64(i)) << 12 | keep }
        }
        counters.pointee.vmstat.thpSplitPMD += 1
    }
}
