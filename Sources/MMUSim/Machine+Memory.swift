/// mmap, munmap, mprotect, madvise and brk (mm/mmap.c, mm/mprotect.c, mm/madvise.c).
extension Machine {
    static let mmapMinAddress: UInt64 = 0x10000

    /// mmap. Returns the start address. Private writable mappings are charged
    /// to Committed_AS (VM_ACCOUNT) unless MAP_NORESERVE outside mode 2; a
    /// shared anonymous mapping charges its shmem object once.
    @discardableResult
    public func mmap(_ pid: Int32, length: UInt64, protection: Protection, flags: MapFlags,
                     file: FileID? = nil, offset: UInt64 = 0, at fixedAddress: UInt64? = nil) throws -> UInt64 {
        let task = try task(pid)
        let mm = task.mm!
        guard length > 0 else { throw MMError.invalidArgument("mmap length is 0") }
        guard flags.contains(.shared) != flags.contains(.private) else {
            throw MMError.invalidArgument("mmap needs exactly one of MAP_SHARED and MAP_PRIVATE")
        }
        let anonymous = flags.contains(.anonymous)
        guard anonymous == (file == nil) else {
            throw MMError.invalidArgument(anonymous ? "MAP_ANONYMOUS takes no file" : "a file mapping needs a file")
        }
        if let file, Int(file.rawValue) >= files.count { throw MMError.badFile("\(file) does not exist") }
        guard offset % Paging.pageSize == 0 else { throw MMError.invalidArgument("offset not page aligned") }
        let len = Paging.pageAlignUp(length)
        let pages = Int(len >> 12)

        var vmFlags: VMFlags = [.mayWrite]
        if protection.contains(.read) { vmFlags.insert(.read) }
        if protection.contains(.write) { vmFlags.insert(.write) }
        if protection.contains(.exec) { vmFlags.insert(.exec) }
        if flags.contains(.shared) { vmFlags.insert(.shared) }
        if flags.contains(.noReserve), configuration.overcommitMode != .never { vmFlags.insert(.noReserve) }

        let start: UInt64
        if let fixedAddress {
            guard fixedAddress % Paging.pageSize == 0, fixedAddress >= Machine.mmapMinAddress,
                  fixedAddress + len <= Paging.userAddressLimit else {
                throw MMError.invalidArgument("MAP_FIXED address \(hex(fixedAddress)) is not usable")
            }
            start = fixedAddress
            try munmap(pid, start, length: len)
        } else {
            let align = anonymous && len >= Paging.hugePageSize ? Paging.hugePageSize : Paging.pageSize
            guard let found = getUnmappedArea(mm, len, align: align) else {
                throw MMError.outOfMemory("no free virtual range of \(len) bytes")
            }
            start = found
        }

        // accountable_mapping: private, writable, not MAP_NORESERVE.
        if !vmFlags.contains(.shared), vmFlags.contains(.write), !vmFlags.contains(.noReserve) {
            guard vmEnoughMemory(mm, pages: pages, capSysAdmin: task.capSysAdmin) else {
                throw MMError.outOfMemory("overcommit refused \(pages) pages (\(kb(pages)) kB)")
            }
            vmFlags.insert(.account)
        }
        var backing = file
        if anonymous && flags.contains(.shared) {
            // shmem_zero_setup: an anonymous shmem object, charged once (shmem_acct_size).
            let charge = vmFlags.contains(.noReserve) ? 0 : pages
            if charge > 0, !vmEnoughMemory(mm, pages: charge, capSysAdmin: task.capSysAdmin) {
                throw MMError.outOfMemory("overcommit refused shared \(pages) pages (\(kb(pages)) kB)")
            }
            files.append(FileObject(name: "/dev/zero (deleted)", sizePages: pages,
                                    cache: [Int32](repeating: -1, count: pages), isShmem: true,
                                    committedPages: charge, anonymousShmem: true))
            backing = FileID(rawValue: Int32(files.count - 1))
        }
        if let backing { files[Int(backing.rawValue)].mappings += 1 }
        let vma = VMArea(start: start, end: start + len, flags: vmFlags, file: backing,
                         pgoff: anonymous ? 0 : Int(offset >> 12), hasAnonVMA: false)
        insertVMA(mm, vma)
        return start
    }

    func insertVMA(_ mm: MM, _ vma: VMArea) {
        let i = mm.vmas.firstIndex { $0.start > vma.start } ?? mm.vmas.count
        mm.vmas.insert(vma, at: i)
        mm.totalVM += vma.pages
    }

    /// Top-down search for a gap below mmap_base (vm_unmapped_area).
    func getUnmappedArea(_ mm: MM, _ len: UInt64, align: UInt64) -> UInt64? {
        var top = configuration.mmapBase
        let floor = max(Machine.mmapMinAddress, Paging.pageAlignUp(mm.brk))
        for vma in mm.vmas.reversed() where vma.start < top {
            if top >= len, (top - len) & ~(align - 1) >= vma.end {
                return (top - len) & ~(align - 1)
            }
            top = vma.start
        }
        guard top >= len else { return nil }
        let candidate = (top - len) & ~(align - 1)
        return candidate >= floor ? candidate : nil
    }

    /// munmap: split at the ends, zap the pages, uncharge VM_ACCOUNT, free the page tables no VMA needs.
    public func munmap(_ pid: Int32, _ address: UInt64, length: UInt64) throws {
        let task = try task(pid)
        let mm = task.mm!
        guard address % Paging.pageSize == 0, length > 0 else {
            throw MMError.invalidArgument("munmap needs a page-aligned address and a length")
        }
        let end = address + Paging.pageAlignUp(length)
        splitVMA(mm, at: address)
        splitVMA(mm, at: end)
        var kept: [VMArea] = []
        for vma in mm.vmas {
            guard vma.start >= address, vma.end <= end else { kept.append(vma); continue }
            removeVMA(mm, vma)
        }
        mm.vmas = kept
        mm.pageTable.freeTables(start: address, end: end) { mm.anyVMA(intersecting: $0, $1) }
    }

    /// Zaps a VMA's pages and undoes its accounting (the VMA is removed by the caller).
    func removeVMA(_ mm: MM, _ vma: VMArea) {
        zapRange(mm, vma.start, vma.end)
        if vma.flags.contains(.account) { vmUnacctMemory(vma.pages) }
        if let file = vma.file { releaseFileMapping(file) }
        mm.totalVM -= vma.pages
    }

    /// __split_vma: make `address` a VMA boundary, splitting a huge PMD across it.
    func splitVMA(_ mm: MM, at address: UInt64) {
        guard let i = mm.findVMA(address), mm.vmas[i].start != address else { return }
        if address % Paging.hugePageSize != 0,
           let pmd = mm.pageTable.walk(address, to: .pmd, allocate: false),
           pmd.pointee & PageTableEntry.huge != 0 {
            splitHugePMD(mm, pmd)
        }
        var tail = mm.vmas[i]
        tail.pgoff += Int((address - tail.start) >> 12)
        tail.start = address
        mm.vmas[i].end = address
        mm.vmas.insert(tail, at: i + 1)
        if let file = tail.file { files[Int(file.rawValue)].mappings += 1 }
    }

    /// zap_page_range: unmap every page in [start, end), dropping maps, references and RSS.
    func zapRange(_ mm: MM, _ start: UInt64, _ end: UInt64) {
        // Anonymous pages zapped, taken off the RSS once at the end (zap_pte_range's rss[] and add_mm_rss_vec).
        var anonZapped = 0
        defer { mm.rssCounters.pointee.anon -= anonZapped }
        mm.pageTable.forEachPMD(start: start, end: end) { pmdAddress, pmd in
            if pmd.pointee & PageTableEntry.huge != 0 {
                if pmdAddress >= start && pmdAddress + Paging.hugePageSize <= end {
                    zapHugePMD(mm, pmd)
                    return
                }
                splitHugePMD(mm, pmd)
            }
            let table = PageTable.table(pmd.pointee)
            let lo = max(start, pmdAddress), hi = min(end, pmdAddress + Paging.hugePageSize)
            var i = Paging.pteIndex(lo)
            let last = Paging.pteIndex(hi - 1)
            while i <= last {
                zapPTE(mm, table + i, anonZapped: &anonZapped)
                i += 1
            }
        }
    }

    @inline(__always)
    func zapPTE(_ mm: MM, _ slot: UnsafeMutablePointer<UInt64>, anonZapped: inout Int) {
        let entry = slot.pointee
        guard entry != 0 else { return }
        slot.pointee = 0
        guard entry & PageTableEntry.special == 0 else { return }
        let f = Int((entry & PageTableEntry.frameMask) >> 12)
        var state = frames.states[f]
        if state.flags & FrameTable.Flags.anon.rawValue != 0 {
            anonZapped &+= 1
            state.mapcount &-= 1
            state.refcount &-= 1
            if state.refcount == 0 { freeFrame(f) } else { frames.states[f] = state }
        } else {
            addFileRSS(mm, f, -1)
            unmapCachePage(f)
        }
    }

    func zapHugePMD(_ mm: MM, _ pmd: UnsafeMutablePointer<UInt64>) {
        let entry = pmd.pointee
        pmd.pointee = 0
        mm.pageTable.releaseDepositedTable()
        guard entry & PageTableEntry.special == 0 else { return }
        let head = Int((entry & PageTableEntry.frameMask) >> 12)
        for f in head..<(head + Paging.hugePageFrames) {
            frames.mapcount[f] -= 1
            putPage(f)
        }
        mm.rss.anon -= Paging.hugePageFrames
    }

    /// mprotect. Making a private mapping writable for the first time charges
    /// it (VM_ACCOUNT); making it read-only write-protects every PTE; making it
    /// writable again upgrades only exclusive anonymous pages (can_change_pte_writable).
    public func mprotect(_ pid: Int32, _ address: UInt64, length: UInt64, protection: Protection) throws {
        let task = try task(pid)
        let mm = task.mm!
        guard address % Paging.pageSize == 0 else { throw MMError.invalidArgument("mprotect address not page aligned") }
        let end = address + Paging.pageAlignUp(length)
        var cursor = address
        for vma in mm.vmas where vma.end > address && vma.start < end {
            if vma.start > cursor { break }
            cursor = vma.end
        }
        guard cursor >= end else { throw MMError.outOfMemory("mprotect range \(hex(address))-\(hex(end)) is not fully mapped") }
        splitVMA(mm, at: address)
        splitVMA(mm, at: end)
        for i in mm.vmas.indices where mm.vmas[i].start >= address && mm.vmas[i].end <= end {
            var flags = mm.vmas[i].flags.subtracting([.read, .write, .exec])
            if protection.contains(.read) { flags.insert(.read) }
            if protection.contains(.write) { flags.insert(.write) }
            if protection.contains(.exec) { flags.insert(.exec) }
            let old = mm.vmas[i].flags
            if flags.contains(.write), old.isDisjoint(with: [.account, .write, .shared, .noReserve]) {
                guard vmEnoughMemory(mm, pages: mm.vmas[i].pages, capSysAdmin: task.capSysAdmin) else {
                    throw MMError.outOfMemory("overcommit refused making \(mm.vmas[i].pages) pages writable")
                }
                flags.insert(.account)
            }
            mm.vmas[i].flags = flags
            changeProtection(mm, mm.vmas[i])
        }
    }

    /// change_protection over one VMA.
    func changeProtection(_ mm: MM, _ vma: VMArea) {
        let writable = vma.flags.contains(.write)
        mm.pageTable.forEachPMD(start: vma.start, end: vma.end) { pmdAddress, pmd in
            if pmd.pointee & PageTableEntry.huge != 0 {
                let entry = pmd.pointee
                if !writable {
                    pmd.pointee = entry & ~PageTableEntry.write
                } else if entry & PageTableEntry.special == 0, !vma.isShared,
                          frames.has(Int((entry & PageTableEntry.frameMask) >> 12), .anonExclusive) {
                    pmd.pointee = entry | PageTableEntry.write
                }
                return
            }
            let table = PageTable.table(pmd.pointee)
            let lo = max(vma.start, pmdAddress), hi = min(vma.end, pmdAddress + Paging.hugePageSize)
            for i in Paging.pteIndex(lo)...Paging.pteIndex(hi - 1) {
                let entry = table[i]
                guard entry & PageTableEntry.present != 0 else { continue }
                if !writable {
                    table[i] = entry & ~PageTableEntry.write
                } else if entry & PageTableEntry.special == 0 {
                    let f = Int((entry & PageTableEntry.frameMask) >> 12)
                    let upgrade = vma.isShared ? entry & PageTableEntry.dirty != 0
                        : frames.has(f, .anon) && frames.has(f, .anonExclusive)
                    if upgrade { table[i] = entry | PageTableEntry.write }
                }
            }
        }
    }

    /// madvise for the advice that changes fork, THP and KSM behaviour, plus MADV_DONTNEED.
    public func madvise(_ pid: Int32, _ address: UInt64, length: UInt64, _ advice: Advice) throws {
        let task = try task(pid)
        let mm = task.mm!
        guard address % Paging.pageSize == 0 else { throw MMError.invalidArgument("madvise address not page aligned") }
        let end = address + Paging.pageAlignUp(length)
        splitVMA(mm, at: address)
        splitVMA(mm, at: end)
        for i in mm.vmas.indices where mm.vmas[i].start >= address && mm.vmas[i].end <= end {
            switch advice {
            case .dontFork: mm.vmas[i].flags.insert(.dontCopy)
            case .doFork: mm.vmas[i].flags.remove(.dontCopy)
            case .wipeOnFork:
                guard mm.vmas[i].isAnonymous, !mm.vmas[i].isShared else {
                    throw MMError.invalidArgument("MADV_WIPEONFORK needs private anonymous memory")
                }
                mm.vmas[i].flags.insert(.wipeOnFork)
            case .keepOnFork: mm.vmas[i].flags.remove(.wipeOnFork)
            case .hugePage: mm.vmas[i].flags.remove(.noHugePage); mm.vmas[i].flags.insert(.hugePage)
            case .noHugePage: mm.vmas[i].flags.remove(.hugePage); mm.vmas[i].flags.insert(.noHugePage)
            case .mergeable:
                if mm.vmas[i].isAnonymous && !mm.vmas[i].isShared { mm.vmas[i].flags.insert(.mergeable) }
            case .unmergeable: mm.vmas[i].flags.remove(.mergeable)
            case .dontNeed: zapRange(mm, mm.vmas[i].start, mm.vmas[i].end)
            }
        }
    }

    /// brk: grow or shrink the heap. Growth is charged like mmap and fails with ENOMEM.
    @discardableResult
    public func brk(_ pid: Int32, _ newBreak: UInt64) throws -> UInt64 {
        let task = try task(pid)
        let mm = task.mm!
        guard newBreak >= mm.startBrk else { return mm.brk }
        let oldEnd = Paging.pageAlignUp(mm.brk), newEnd = Paging.pageAlignUp(newBreak)
        if newEnd < oldEnd {
            try munmap(pid, newEnd, length: oldEnd - newEnd)
        } else if newEnd > oldEnd {
            guard !mm.anyVMA(intersecting: oldEnd, newEnd) else {
                throw MMError.outOfMemory("brk to \(hex(newBreak)) collides with a mapping")
            }
            let pages = Int((newEnd - oldEnd) >> 12)
            guard vmEnoughMemory(mm, pages: pages, capSysAdmin: task.capSysAdmin) else {
                throw MMError.outOfMemory("overcommit refused brk growth of \(pages) pages (\(kb(pages)) kB)")
            }
            if let i = mm.findVMA(oldEnd - 1), mm.vmas[i].end == oldEnd, mm.vmas[i].flags.contains(.brkHeap) {
                mm.vmas[i].end = newEnd
                mm.totalVM += pages
            } else {
                insertVMA(mm, VMArea(start: oldEnd, end: newEnd, flags: [.read, .write, .mayWrite, .account, .brkHeap],
                                     file: nil, pgoff: 0, hasAnonVMA: false))
            }
        }
        mm.brk = newBreak
        return newBreak
    }

    /// The current program break.
    public func currentBreak(_ pid: Int32) throws -> UInt64 { try task(pid).mm!.brk }
}

/// Pages as KiB (4 KiB pages), as the kernel prints them.
public func kb(_ pages: Int) -> Int { pages * 4 }
