/// fork (kernel/fork.c dup_mmap, mm/memory.c copy_page_range), exec and exit.
extension Machine {
    /// fork: a child with a copy of the parent's VMAs and page tables. Private
    /// writable PTEs are write-protected in both; anonymous pages gain one map
    /// and one reference and lose their exclusive flag; DMA-pinned exclusive
    /// pages are copied into the child at once. Each VM_ACCOUNT VMA is charged
    /// again; a refused charge fails the whole fork with ENOMEM.
    @discardableResult
    public func fork(_ pid: Int32, childPid: Int32? = nil, comm: String? = nil) throws -> Int32 {
        let parent = try task(pid)
        let newPid = childPid ?? nextPid
        if taskIndex[newPid].map({ tasks[$0].alive }) == true {
            throw MMError.invalidArgument("pid \(newPid) is already in use")
        }
        let parentMM = parent.mm!
        let childMM = newMM()
        let child = Task(pid: newPid, comm: comm ?? parent.comm, uid: parent.uid, oomScoreAdj: parent.oomScoreAdj,
                         memcg: parent.memcg, capSysAdmin: parent.capSysAdmin, parent: pid, mm: childMM)
        childMM.startBrk = parentMM.startBrk
        childMM.brk = parentMM.brk
        for vma in parentMM.vmas {
            if vma.flags.contains(.dontCopy) { continue }
            if vma.flags.contains(.account) {
                guard vmEnoughMemory(parentMM, pages: vma.pages, capSysAdmin: parent.capSysAdmin) else {
                    exitMMap(childMM) // uncharges every VMA copied so far
                    throw MMError.outOfMemory("fork: overcommit refused \(vma.pages) pages (\(kb(vma.pages)) kB) of \(hex(vma.start))-\(hex(vma.end))")
                }
            }
            var copy = vma
            if vma.flags.contains(.wipeOnFork) { copy.hasAnonVMA = false }
            if let file = vma.file { files[Int(file.rawValue)].mappings += 1 }
            childMM.vmas.append(copy)
            childMM.totalVM += vma.pages
            // vma_needs_copy: only VMAs with an anon_vma; the rest refault on demand.
            if !vma.flags.contains(.wipeOnFork), vma.hasAnonVMA {
                guard copyPageRange(parent, parentMM, child, childMM, vma) else {
                    exitMMap(childMM) // uncharges every VMA copied so far
                    throw MMError.outOfMemory("fork: no memory to copy a pinned page")
                }
            }
        }
        nextPid = max(nextPid, newPid + 1)
        if let old = taskIndex[newPid] { tasks[old] = child } else {
            taskIndex[newPid] = tasks.count
            tasks.append(child)
        }
        return newPid
    }

    /// copy_page_range for one VMA. Returns false if a pinned page could not be copied.
    func copyPageRange(_ parent: Task, _ src: MM, _ child: Task, _ dst: MM, _ vma: VMArea) -> Bool {
        let cow = vma.isCOWMapping
        let shared = vma.isShared
        var anonCopied = 0
        defer { dst.rss.anon += anonCopied }
        // An explicit loop over the PMDs, not a closure: captured counters would be boxed.
        var pmdAddress = vma.start & ~(Paging.hugePageSize - 1)
        while pmdAddress < vma.end {
            defer { pmdAddress &+= Paging.hugePageSize }
            guard let pmd = src.pageTable.walk(pmdAddress, to: .pmd, allocate: false), pmd.pointee != 0 else { continue }
            if pmd.pointee & PageTableEntry.huge != 0 {
                if copyHugePMD(src, dst, pmd, pmdAddress, cow: cow) { continue }
                splitHugePMD(src, pmd) // pinned: copy 4 KiB at a time below
            }
            let srcTable = PageTable.table(pmd.pointee)
            let lo = max(vma.start, pmdAddress), hi = min(vma.end, pmdAddress + Paging.hugePageSize)
            let dstFirst = dst.pageTable.walk(lo, allocate: true)! - Paging.pteIndex(lo)
            var i = Paging.pteIndex(lo)
            let last = Paging.pteIndex(hi - 1)
            while i <= last {
                defer { i &+= 1 }
                var entry = srcTable[i]
                guard entry & PageTableEntry.present != 0 else { continue }
                if entry & PageTableEntry.special == 0 {
                    let f = Int((entry & PageTableEntry.frameMask) >> 12)
                    // One read and one write of the frame record (cheap in debug builds too).
                    var state = frames.states[f]
                    if state.flags & FrameTable.Flags.anon.rawValue != 0 {
                        if src.hasPinned, state.refcount >= FrameTable.pinBias,
                           state.flags & FrameTable.Flags.anonExclusive.rawValue != 0 {
                            // copy_present_page: the child gets its own copy now.
                            let new = allocPage(parent)
                            guard new >= 0, parent.alive else { return false }
                            frames.states[new] = FrameTable.State(
                                refcount: 1, mapcount: 1, owner: child.pid,
                                flags: FrameTable.Flags.anon.rawValue | FrameTable.Flags.anonExclusive.rawValue,
                                memcg: frames.memcg[new])
                            frames.contents[new] = frames.contents[f]
                            anonFrames += 1
                            dstFirst[i] = UInt64(new) << 12 | Machine.leafFlags | Machine.writableDirty
                            anonCopied &+= 1
                            counters.pointee.vmstat.pinnedCopiedAtFork += 1
                            continue
                        }
                        state.flags &= ~FrameTable.Flags.anonExclusive.rawValue
                        anonCopied &+= 1
                    } else {
                        addFileRSS(dst, f, 1)
                    }
                    state.mapcount &+= 1
                    state.refcount &+= 1
                    frames.states[f] = state
                }
                if cow && entry & PageTableEntry.write != 0 {
                    srcTable[i] = entry & ~PageTableEntry.write
                    entry &= ~PageTableEntry.write
                }
                if shared { entry &= ~PageTableEntry.dirty }
                dstFirst[i] = entry & ~PageTableEntry.accessed
            }
        }
        return true
    }

    /// copy_huge_pmd. Returns false when the huge page is pinned and must be split first.
    func copyHugePMD(_ src: MM, _ dst: MM, _ pmd: UnsafeMutablePointer<UInt64>, _ address: UInt64, cow: Bool) -> Bool {
        var entry = pmd.pointee
        if entry & PageTableEntry.special == 0 {
            let head = Int((entry & PageTableEntry.frameMask) >> 12)
            let range = head..<(head + Paging.hugePageFrames)
            if src.hasPinned, range.contains(where: { frames.refcount[$0] >= FrameTable.pinBias }) { return false }
            for f in range {
                frames.mapcount[f] += 1
                frames.refcount[f] += 1
                frames.clear(f, .anonExclusive)
            }
            dst.rss.anon += Paging.hugePageFrames
            if cow {
                pmd.pointee = entry & ~PageTableEntry.write
                entry &= ~PageTableEntry.write
            }
        }
        let dstPMD = dst.pageTable.walk(address, to: .pmd, allocate: true)!
        dstPMD.pointee = entry & ~PageTableEntry.accessed
        dst.pageTable.depositTable()
        return true
    }

    /// execve: the old address space is dropped and the process starts with an empty one.
    public func exec(_ pid: Int32, comm: String? = nil) throws {
        let task = try task(pid)
        exitMMap(task.mm!)
        task.mm = newMM()
        if let comm { task.comm = String(comm.prefix(15)) }
    }

    /// exit: the address space is torn down; the process is gone.
    public func exit(_ pid: Int32) throws {
        let task = try task(pid)
        exitMMap(task.mm!)
        task.mm = nil
        task.alive = false
    }

    /// exit_mmap: unmap everything, uncharge VM_ACCOUNT, free all page tables.
    func exitMMap(_ mm: MM) {
        for vma in mm.vmas { removeVMA(mm, vma) }
        mm.vmas = []
        mm.pageTable.freeAllTables()
    }
}
