/// The page allocator and page-cache lookups: where memory runs out, reclaim
/// and the OOM killer are invoked, as in `__alloc_pages_slowpath` and
/// `try_charge_memcg`.
extension Machine {
    /// Frames available in all: RAM plus swap (the model swaps by number only).
    var capacityPages: Int { ramPages + swapPages }

    /// Pages in use: frames plus page-table pages.
    public var usedPages: Int { usedFrames + hostTablePages.pointee }

    /// Allocates one order-0 frame charged to `task`'s cgroup. Runs reclaim and
    /// the OOM killer when needed. Returns -1 if nothing could be found or if
    /// `task` itself was killed meanwhile (then its page tables are gone).
    /// allocPage for a fault: the fast path needs no reference to the task.
    @inline(__always)
    func allocPage(_ ctx: inout FaultContext) -> Int {
        if ctx.taskState.pointee.memcg == 0, usedFrames &+ hostTablePages.pointee < capacityPages {
            let f = frames.allocate()
            if f >= 0 {
                counters.pointee.usedFrames &+= 1
                frames.memcg[f] = 0
                return f
            }
        }
        return allocPageSlow(ctx.taskRef.takeUnretainedValue())
    }

    @inline(__always)
    func allocPage(_ task: Task) -> Int {
        // Fast path: root cgroup, memory to spare.
        if task.memcg == 0, usedFrames + hostTablePages.pointee < capacityPages {
            let f = frames.allocate()
            if f >= 0 {
                usedFrames += 1
                frames.memcg[f] = 0
                return f
            }
        }
        return allocPageSlow(task)
    }

    @inline(never)
    func allocPageSlow(_ task: Task) -> Int {
        while true {
            let cg = task.memcg
            if cg != 0, memcgFull(cg, adding: 1) {
                guard outOfMemory(trigger: task, memcg: cg), task.alive else { return -1 }
                continue
            }
            if usedFrames + hostTablePages.pointee >= capacityPages {
                if reclaimPageCache(1) > 0 { continue }
                guard outOfMemory(trigger: task, memcg: nil), task.alive else { return -1 }
                continue
            }
            let f = frames.allocate()
            if f < 0 { return -1 }
            usedFrames += 1
            if cg != 0 { memcgCharge(cg, 1) }
            frames.memcg[f] = UInt16(truncatingIfNeeded: cg)
            return f
        }
    }

    /// Allocates a 2 MiB folio for a THP fault, or returns -1 to fall back to
    /// 4 KiB pages. Like a THP allocation (__GFP_NORETRY), it never triggers
    /// the OOM killer and fails rather than reclaim.
    func allocHugePage(_ task: Task) -> Int {
        let n = Paging.hugePageFrames
        let cg = task.memcg
        if cg != 0, memcgFull(cg, adding: n) { return -1 }
        if usedFrames + hostTablePages.pointee + n > capacityPages { return -1 }
        let head = frames.allocateHuge()
        if head < 0 { return -1 }
        usedFrames += n
        if cg != 0 { memcgCharge(cg, n) }
        for f in head..<(head + n) { frames.memcg[f] = UInt16(truncatingIfNeeded: cg) }
        return head
    }

    // Kept out of line so that the root cgroup's path never touches `memcgs`.
    @inline(never) func memcgFull(_ cg: Int, adding n: Int) -> Bool { memcgs[cg].usagePages + n > memcgs[cg].limitPages }
    @inline(never) func memcgCharge(_ cg: Int, _ n: Int) { memcgs[cg].usagePages += n }

    /// Frees a frame whose last reference is gone.
    @inline(__always)
    func freeFrame(_ f: Int) {
        let state = frames.states[f]
        if state.memcg != 0 { memcgCharge(Int(state.memcg), -1) }
        if state.flags & FrameTable.Flags.anon.rawValue != 0 { anonFrames -= 1 }
        usedFrames -= 1
        frames.release(f)
    }

    /// put_page: drops one reference and frees the frame at zero.
    @inline(__always)
    func putPage(_ f: Int) {
        frames.refcount[f] &-= 1
        if frames.refcount[f] == 0 { freeFrame(f) }
    }

    /// Adds a mapping of a page-cache page (folio_add_file_rmap + folio_get).
    func mapCachePage(_ f: Int) {
        frames.mapcount[f] += 1
        frames.refcount[f] += 1
        if frames.mapcount[f] == 1, !frames.has(f, .shmem) { mappedFileCacheFrames += 1 }
    }

    /// Removes a mapping of a page-cache page; the cache keeps its own reference.
    func unmapCachePage(_ f: Int) {
        frames.mapcount[f] -= 1
        if frames.mapcount[f] == 0, !frames.has(f, .shmem) { mappedFileCacheFrames -= 1 }
        putPage(f)
    }

    /// Finds or reads in page `index` of a file (filemap_fault / shmem_get_folio).
    /// Returns the frame, -1 when out of memory, -2 beyond the end of the file.
    func filePage(_ task: Task, _ file: FileID, _ index: Int) -> Int {
        let id = Int(file.rawValue)
        guard index >= 0, index < files[id].sizePages else { return -2 }
        let cached = files[id].cache[index]
        if cached >= 0 { return Int(cached) }
        let f = allocPage(task)
        if f < 0 { return -1 }
        let shmem = files[id].isShmem
        frames.flags[f] = FrameTable.Flags.pageCache.rawValue | (shmem ? FrameTable.Flags.shmem.rawValue : 0)
        frames.refcount[f] = 1
        frames.owner[f] = file.rawValue
        frames.fileIndex[f] = Int32(index)
        // A file's bytes differ page to page; shmem starts zeroed.
        frames.contents[f] = shmem ? 0 : (UInt64(id + 1) << 32) | UInt64(index)
        files[id].cache[index] = Int32(f)
        if shmem { shmemFrames += 1 } else { fileCacheFrames += 1 }
        return f
    }

    /// Drops clean, unmapped page-cache pages (shrink_page_list on the file LRU),
    /// at least `wanted` and up to a batch of 32. Returns how many were freed.
    func reclaimPageCache(_ wanted: Int) -> Int {
        guard fileCacheFrames > mappedFileCacheFrames else { return 0 }
        let batch = max(wanted, 32)
        var freed = 0
        for id in files.indices where !files[id].isShmem {
            for index in files[id].cache.indices {
                let f = Int(files[id].cache[index])
                guard f >= 0, frames.mapcount[f] == 0, frames.refcount[f] == 1 else { continue }
                files[id].cache[index] = -1
                fileCacheFrames -= 1
                freeFrame(f)
                freed += 1
                if freed >= batch { return freed }
            }
        }
        return freed
    }

    /// Releases an anonymous shmem object whose last mapping went away.
    func releaseFileMapping(_ file: FileID) {
        let id = Int(file.rawValue)
        files[id].mappings -= 1
        guard files[id].anonymousShmem, files[id].mappings == 0 else { return }
        for index in files[id].cache.indices {
            let f = Int(files[id].cache[index])
            guard f >= 0 else { continue }
            files[id].cache[index] = -1
            shmemFrames -= 1
            putPage(f)
        }
        vmUnacctMemory(files[id].committedPages)
        files[id].committedPages = 0
    }
}
