/// What the replay of a recording (CowTraceReplay) needs beyond the system
/// calls: rebuilding a process that was already running when tracing started
/// (its VMAs at their addresses, its present pages, frames shared by frame
/// number), fixing up state the recording could not show, and mremap.
///
/// None of this is a kernel path: these calls set the model's state directly,
/// as if the history that produced it had been simulated.

/// What `installPage` maps at an address.
public enum InstalledPage: Equatable, Sendable {
    /// The shared zero page, read-only: a private page that was read but never written.
    case zeroPage
    /// A new anonymous page of this process (contents unknown).
    ///
    /// `exclusive: true`: PageAnonExclusive, one map and one reference; a write reuses it.
    /// `exclusive: false`: also mapped by a process the model does not know; one
    /// extra map and reference are held for that process (never dropped), so a
    /// write copies it.
    case anonymous(exclusive: Bool)
    /// The page-cache page of the VMA's file (or shmem object) at the address's file offset.
    case file
    /// A frame already in use (returned by an earlier `installPage`): one more
    /// map and reference. An anonymous frame loses PageAnonExclusive: a write
    /// by either mapper copies, as after fork.
    case frame(Int)
}

/// Pages mapped at consecutive addresses to consecutive frames: `count`
/// pages from `address`, their frames from `frame` upward by one.
public struct SharedPageRun: Equatable, Sendable {
    public var address: UInt64
    public var frame: Int
    public var count: Int
    public init(address: UInt64, frame: Int, count: Int) {
        self.address = address; self.frame = frame; self.count = count
    }

    /// The address `frame` (one of the run's) is mapped at.
    @inline(__always)
    public func address(ofFrame frame: Int) -> UInt64 { address &+ UInt64(frame - self.frame) << 12 }

    /// Takes the page at `address` with `frame` when it continues the run (the
    /// next address, the next frame); false, and unchanged, when it does not.
    @inline(__always)
    public mutating func extend(address: UInt64, frame: Int) -> Bool {
        guard address == self.address &+ UInt64(count) << 12, frame == self.frame + count else { return false }
        count += 1
        return true
    }
}

extension Array where Element == SharedPageRun {
    /// Appends the page at `address` with `frame`: to the last run when it continues it, else as a run of its own.
    @inline(__always)
    public mutating func appendPage(address: UInt64, frame: Int) {
        if isEmpty || !self[count - 1].extend(address: address, frame: frame) {
            append(SharedPageRun(address: address, frame: frame, count: 1))
        }
    }
}

extension Machine {
    /// The anonymous pages `pid` maps whose frame another mapping maps too
    /// (mapcount above 1), 4 KiB frames of huge pages included, as runs in
    /// address order: what its exit releases that another process may be
    /// writing meanwhile. Empty for an unknown pid. Runs, not pages: a large
    /// process shares millions of pages with the child it forked, mostly at
    /// consecutive frames (24 bytes a run instead of 16 a page).
    public func sharedAnonymousRuns(_ pid: Int32) -> [SharedPageRun] {
        var runs: [SharedPageRun] = []
        forEachSharedAnonymousPage(pid) { address, frame in runs.appendPage(address: address, frame: frame) }
        return runs
    }

    private func forEachSharedAnonymousPage(_ pid: Int32, _ body: (_ address: UInt64, _ frame: Int) -> Void) {
        guard let index = taskIndex[pid], let mm = tasks[index].mm else { return }
        func note(_ a: UInt64, _ f: Int) {
            if frames.has(f, .anon), frames.mapcount[f] > 1 { body(a, f) }
        }
        for vma in mm.vmas {
            mm.pageTable.forEachPMD(start: vma.start, end: vma.end) { pmdAddress, pmd in
                let lo = max(vma.start, pmdAddress), hi = min(vma.end, pmdAddress + Paging.hugePageSize)
                if pmd.pointee & PageTableEntry.huge != 0 {
                    let base = Int((pmd.pointee & PageTableEntry.frameMask) >> 12)
                    for k in Paging.pteIndex(lo)...Paging.pteIndex(hi - 1) {
                        note(pmdAddress + UInt64(k) * Paging.pageSize, base + k)
                    }
                    return
                }
                // A plain loop with the address stepped along: a closed range's
                // iterator and the address's checked arithmetic cost more than the entry's test.
                let table = PageTable.table(pmd.pointee)
                var k = Paging.pteIndex(lo)
                let last = Paging.pteIndex(hi - 1)
                var address = pmdAddress &+ UInt64(k) << Paging.pageShift
                while k <= last {
                    let e = table[k]
                    if e & PageTableEntry.present != 0, e & PageTableEntry.special == 0 {
                        note(address, Int((e & PageTableEntry.frameMask) >> 12))
                    }
                    k &+= 1
                    address &+= Paging.pageSize
                }
            }
        }
    }

    /// The VMA of a live process that contains `address` (find_vma), without copying the VMA list.
    public func vma(_ pid: Int32, containing address: UInt64) -> VMArea? {
        guard let i = taskIndex[pid], tasks[i].alive, let mm = tasks[i].mm, let v = mm.findVMA(address) else { return nil }
        return mm.vmas[v]
    }

    /// `vma(pid, containing: address)` and `pageTableEntry(pid, address)` with
    /// one lookup of the task (`faultSite(pid, containing: address)`'s two facts).
    public func vmaAndEntry(_ pid: Int32, containing address: UInt64) -> (vma: VMArea?, entry: PageTableEntry?) {
        let site = faultSite(pid, containing: address)
        return (site.vma, site.entry)
    }

    /// Sets mm->start_brk and mm->brk of a live process, as /proc/PID/stat shows
    /// them, without creating or removing any VMA (the heap itself is adopted
    /// with `adoptMapping(heap: true)`, or grown later with `brk`).
    public func setBreak(_ pid: Int32, start: UInt64, current: UInt64) throws {
        let mm = try task(pid).mm!
        mm.startBrk = start
        mm.brk = max(start, current)
    }

    /// A shmem (tmpfs) object of `size` bytes that lives until the machine does,
    /// like a file in /dev/shm or a memfd: map it MAP_SHARED in several
    /// processes and they share its pages.
    @discardableResult
    public func createSharedMemory(_ name: String, size: UInt64) -> FileID {
        let pages = Int(Paging.pageAlignUp(size) >> 12)
        files.append(FileObject(name: name, sizePages: pages, cache: [Int32](repeating: -1, count: pages), isShmem: true))
        return FileID(rawValue: Int32(files.count - 1))
    }

    /// Makes a file (or shmem object) at least `size` bytes long; never shrinks it.
    public func growFile(_ file: FileID, toAtLeast size: UInt64) throws {
        let id = Int(file.rawValue)
        guard id >= 0, id < files.count else { throw MMError.badFile("\(file) does not exist") }
        let pages = Int(Paging.pageAlignUp(size) >> 12)
        guard pages > files[id].sizePages else { return }
        files[id].cache.append(contentsOf: [Int32](repeating: -1, count: pages - files[id].sizePages))
        files[id].sizePages = pages
    }

    /// Creates a VMA at exactly [start, end), as /proc/PID/maps shows one of a
    /// process that was running before the model saw it. Whatever the model had
    /// in the range is unmapped first (as MAP_FIXED would). Unlike `mmap`, the
    /// overcommit policy cannot refuse it: the kernel already accepted it, so a
    /// private writable mapping is charged to Committed_AS unconditionally.
    ///
    /// - `shared` with no `file`: a new anonymous shmem object (MAP_SHARED|MAP_ANONYMOUS).
    /// - `file`: grown to cover `pgoff` + the mapping's pages if it is shorter.
    /// - `heap`: the VMA is the brk heap (VM_ brk marker), which `brk` later grows or shrinks.
    public func adoptMapping(_ pid: Int32, start: UInt64, end: UInt64, protection: Protection, shared: Bool,
                             file: FileID? = nil, pgoff: Int = 0, heap: Bool = false) throws {
        let task = try task(pid)
        let mm = task.mm!
        guard start % Paging.pageSize == 0, end % Paging.pageSize == 0, start < end,
              end <= Paging.userAddressLimit else {
            throw MMError.invalidArgument("cannot adopt mapping \(hex(start))-\(hex(end))")
        }
        guard !(heap && (shared || file != nil)) else { throw MMError.invalidArgument("the heap is private anonymous memory") }
        if let file {
            try growFile(file, toAtLeast: UInt64(pgoff) * Paging.pageSize + (end - start))
        }
        if mm.anyVMA(intersecting: start, end) { try munmap(pid, start, length: end - start) }
        let pages = Int((end - start) >> 12)
        var flags: VMFlags = []
        if protection.contains(.read) { flags.insert(.read) }
        if protection.contains(.write) { flags.insert(.write) }
        if protection.contains(.exec) { flags.insert(.exec) }
        if shared {
            flags.insert(.shared)
            if protection.contains(.write) { flags.insert(.mayWrite) }
        } else {
            flags.insert(.mayWrite)
            if protection.contains(.write) {
                committedPages += pages
                flags.insert(.account)
            }
        }
        if heap { flags.insert(.brkHeap) }
        var backing = file
        if shared && file == nil {
            files.append(FileObject(name: "/dev/zero (deleted)", sizePages: pages,
                                    cache: [Int32](repeating: -1, count: pages), isShmem: true,
                                    committedPages: 0, anonymousShmem: true))
            backing = FileID(rawValue: Int32(files.count - 1))
        }
        if let backing { files[Int(backing.rawValue)].mappings += 1 }
        insertVMA(mm, VMArea(start: start, end: end, flags: flags, file: backing,
                             pgoff: backing == nil ? 0 : pgoff, hasAnonVMA: false))
    }

    /// Maps one page at `address` (which must be inside a VMA and not mapped yet)
    /// without a fault, and returns its frame. Used to rebuild the pages of a
    /// process found running (/proc/PID/pagemap), and to materialize a page the
    /// kernel populated where the model could not see it.
    ///
    /// The PTE is read-only unless `writable` is set, the VMA allows writes and
    /// the page may be written without a fault (an exclusive anonymous page, or
    /// a page of a shared mapping); a read-only exclusive anonymous page is
    /// reused by the next write, like a page whose sharer has gone.
    ///
    /// Throws EINVAL when there is no VMA, the address is already mapped, the
    /// kind does not fit the VMA (a file page in anonymous memory, an anonymous
    /// or zero page in a shared mapping) or the file is too short; ENOMEM when
    /// no frame is left.
    @discardableResult
    public func installPage(_ pid: Int32, at address: UInt64, _ page: InstalledPage, writable: Bool = false) throws -> Int {
        let task = try task(pid)
        let mm = task.mm!
        let a = Paging.pageAlignDown(address)
        guard let vi = mm.findVMA(a) else { throw MMError.invalidArgument("no VMA at \(hex(a))") }
        let vma = mm.vmas[vi]
        if let pmd = mm.pageTable.walk(a, to: .pmd, allocate: false), pmd.pointee & PageTableEntry.huge != 0 {
            throw MMError.invalidArgument("\(hex(a)) is already mapped (huge page)")
        }
        if let slot = mm.pageTable.walk(a, allocate: false), slot.pointee != 0 {
            throw MMError.invalidArgument("\(hex(a)) is already mapped")
        }
        let canWrite = writable && vma.flags.contains(.write)
        let base = Machine.leafFlags
        let entry: UInt64
        let frame: Int
        switch page {
        case .zeroPage:
            guard !vma.isShared else { throw MMError.invalidArgument("no zero page in a shared mapping") }
            frame = FrameTable.zeroPage
            entry = UInt64(frame) << 12 | base | PageTableEntry.special
        case .anonymous(let exclusive):
            guard !vma.isShared else { throw MMError.invalidArgument("no private anonymous page in a shared mapping") }
            let f = allocPage(task)
            guard f >= 0, task.alive else { throw MMError.outOfMemory("no frame for \(hex(a))") }
            let maps: Int32 = exclusive ? 1 : 2
            frames.states[f] = FrameTable.State(
                refcount: maps, mapcount: maps, owner: pid,
                flags: FrameTable.Flags.anon.rawValue | (exclusive ? FrameTable.Flags.anonExclusive.rawValue : 0),
                memcg: frames.memcg[f])
            frames.contents[f] = 0
            anonFrames += 1
            mm.rss.anon += 1
            mm.vmas[vi].hasAnonVMA = true
            frame = f
            entry = UInt64(f) << 12 | base | (exclusive && canWrite ? Machine.writableDirty : 0)
        case .file:
            guard let file = vma.file else { throw MMError.invalidArgument("no file behind \(hex(a))") }
            let f = filePage(task, file, vma.fileIndex(a))
            if f == -2 { throw MMError.invalidArgument("\(hex(a)) is beyond the end of \(file)") }
            guard f >= 0 else { throw MMError.outOfMemory("no frame for the page cache at \(hex(a))") }
            mapCachePage(f)
            addFileRSS(mm, f, 1)
            frame = f
            entry = UInt64(f) << 12 | base | (vma.isShared && canWrite ? Machine.writableDirty : 0)
        case .frame(let f):
            guard f >= 0, f < frames.capacity else { throw MMError.invalidArgument("no frame \(f)") }
            if f == FrameTable.zeroPage { return try installPage(pid, at: a, .zeroPage) }
            guard frames.refcount[f] > 0 else { throw MMError.invalidArgument("frame \(f) is free") }
            if frames.has(f, .anon) {
                guard !vma.isShared else { throw MMError.invalidArgument("no private anonymous page in a shared mapping") }
                frames.mapcount[f] += 1
                frames.refcount[f] += 1
                frames.clear(f, .anonExclusive)
                mm.rss.anon += 1
                mm.vmas[vi].hasAnonVMA = true
                entry = UInt64(f) << 12 | base
            } else {
                mapCachePage(f)
                addFileRSS(mm, f, 1)
                entry = UInt64(f) << 12 | base | (vma.isShared && canWrite ? Machine.writableDirty : 0)
            }
            frame = f
        }
        mm.pageTable.walk(a, allocate: true)!.pointee = entry
        return frame
    }

    /// Clears the write bit of the PTE (or huge PMD) mapping `address`, as
    /// writeback's page_mkclean, clear_refs or NUMA hinting would. Returns
    /// whether the entry was present and writable.
    @discardableResult
    public func writeProtect(_ pid: Int32, at address: UInt64) -> Bool {
        guard let i = taskIndex[pid], tasks[i].alive, let mm = tasks[i].mm,
              let slot = mm.pageTable.walk(address, allocate: false) else { return false }
        let e = slot.pointee
        guard e & PageTableEntry.present != 0, e & PageTableEntry.write != 0 else { return false }
        slot.pointee = e & ~PageTableEntry.write
        return true
    }

    /// mremap (mm/mremap.c). Shrinking unmaps the tail. Growing extends the VMA
    /// in place when the range after it is free; otherwise, with `mayMove`
    /// (MREMAP_MAYMOVE) or a destination (MREMAP_FIXED), the VMA moves: its
    /// page-table entries move with it (no page is copied or refaulted, as
    /// move_page_tables does), whatever was at the destination is unmapped,
    /// and the old range becomes free. Growth of an accounted VMA is charged.
    /// The old range must lie inside one VMA. Returns the new address.
    @discardableResult
    public func mremap(_ pid: Int32, _ oldAddress: UInt64, oldLength: UInt64, newLength: UInt64,
                       mayMove: Bool = false, to fixedAddress: UInt64? = nil) throws -> UInt64 {
        let task = try task(pid)
        let mm = task.mm!
        let oldLen = Paging.pageAlignUp(oldLength), newLen = Paging.pageAlignUp(newLength)
        guard oldAddress % Paging.pageSize == 0, oldLen > 0, newLen > 0 else {
            throw MMError.invalidArgument("mremap needs a page-aligned address and non-zero lengths")
        }
        let oldEnd = oldAddress + oldLen
        guard let vi = mm.findVMA(oldAddress), mm.vmas[vi].end >= oldEnd else {
            throw MMError.invalidArgument("mremap: \(hex(oldAddress))-\(hex(oldEnd)) is not inside one VMA")
        }
        if let fixed = fixedAddress {
            guard fixed % Paging.pageSize == 0, fixed >= Machine.mmapMinAddress,
                  fixed + newLen <= Paging.userAddressLimit,
                  fixed + newLen <= oldAddress || fixed >= oldEnd else {
                throw MMError.invalidArgument("mremap: destination \(hex(fixed)) is not usable")
            }
            try munmap(pid, fixed, length: newLen)
            if newLen < oldLen { try munmap(pid, oldAddress + newLen, length: oldLen - newLen) }
            let moved = min(oldLen, newLen)
            moveRange(mm, from: oldAddress, length: moved, to: fixed)
            if newLen > oldLen { try growVMA(task, mm, endingAt: fixed + oldLen, by: newLen - oldLen) }
            return fixed
        }
        if newLen <= oldLen {
            if newLen < oldLen { try munmap(pid, oldAddress + newLen, length: oldLen - newLen) }
            return oldAddress
        }
        let growEnd = oldAddress + newLen
        if mm.vmas[vi].end == oldEnd, growEnd <= Paging.userAddressLimit, !mm.anyVMA(intersecting: oldEnd, growEnd) {
            try growVMA(task, mm, endingAt: oldEnd, by: newLen - oldLen)
            return oldAddress
        }
        guard mayMove else { throw MMError.outOfMemory("mremap: no room to grow \(hex(oldAddress)) in place") }
        guard let destination = getUnmappedArea(mm, newLen, align: Paging.pageSize) else {
            throw MMError.outOfMemory("mremap: no free virtual range of \(newLen) bytes")
        }
        return try mremap(pid, oldAddress, oldLength: oldLen, newLength: newLen, to: destination)
    }

    /// Extends the VMA that ends at `end` by `bytes`, charging it if it is accounted.
    func growVMA(_ task: Task, _ mm: MM, endingAt end: UInt64, by bytes: UInt64) throws {
        guard let i = mm.findVMA(end - 1), mm.vmas[i].end == end else {
            throw MMError.invalidArgument("mremap: no VMA ends at \(hex(end))")
        }
        let pages = Int(bytes >> 12)
        if mm.vmas[i].flags.contains(.account) {
            guard vmEnoughMemory(mm, pages: pages, capSysAdmin: task.capSysAdmin) else {
                throw MMError.outOfMemory("overcommit refused mremap growth of \(pages) pages (\(kb(pages)) kB)")
            }
        }
        if let file = mm.vmas[i].file { try growFile(file, toAtLeast: UInt64(mm.vmas[i].fileIndex(end) + pages) << 12) }
        mm.vmas[i].end = end + bytes
        mm.totalVM += pages
    }

    /// move_vma + move_page_tables: [src, src+length) (inside one VMA) becomes
    /// [dst, dst+length), which must be free. Huge PMDs are split first and
    /// their entries moved 4 KiB at a time.
    func moveRange(_ mm: MM, from src: UInt64, length: UInt64, to dst: UInt64) {
        splitVMA(mm, at: src)
        splitVMA(mm, at: src + length)
        guard let i = mm.findVMA(src) else { return }
        var vma = mm.vmas.remove(at: i)
        mm.totalVM -= vma.pages
        mm.pageTable.forEachPMD(start: src, end: src + length) { _, pmd in
            if pmd.pointee & PageTableEntry.huge != 0 { splitHugePMD(mm, pmd) }
        }
        var offset: UInt64 = 0
        while offset < length {
            if let from = mm.pageTable.walk(src + offset, allocate: false), from.pointee != 0 {
                let entry = from.pointee
                from.pointee = 0
                if let to = mm.pageTable.walk(dst + offset, allocate: true) { to.pointee = entry }
            }
            offset += Paging.pageSize
        }
        vma.start = dst
        vma.end = dst + length
        insertVMA(mm, vma)
        mm.pageTable.freeTables(start: src, end: src + length) { mm.anyVMA(intersecting: $0, $1) }
    }
}
