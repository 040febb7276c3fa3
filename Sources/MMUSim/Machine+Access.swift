/// How a range is touched.
public enum AccessKind: String, Sendable {
    case read, write
}

/// What touching a range did.
public struct AccessResult: Equatable, Sendable {
    public var faults = FaultCounts()
    /// Set when the access stopped with SIGSEGV (no VMA, or a VMA that forbids it).
    public var segvAddress: UInt64?
    /// Set when the access stopped with SIGBUS (past the end of a mapped file).
    public var sigbusAddress: UInt64?
    /// The process was killed by the OOM killer during the access (or no memory was left).
    public var outOfMemory = false
    public init() {}
    /// The access ran to the end of the range.
    public var completed: Bool { segvAddress == nil && sigbusAddress == nil && !outOfMemory }
}

extension Machine {
    /// Touches every page of [address, address+length) in order, as a loop of
    /// loads or stores would, and handles each fault on the way. Stops at the
    /// first SIGSEGV, SIGBUS or OOM failure.
    @discardableResult
    public func access(_ pid: Int32, _ address: UInt64, length: UInt64, _ kind: AccessKind) throws -> AccessResult {
        let task = try task(pid)
        var result = AccessResult()
        guard length > 0 else { return result }
        accessRange(task, address, address &+ length, write: kind == .write, &result)
        task.addFaults(result.faults)
        return result
    }

    /// Touches one page in every `every` over [address, address+length): a
    /// strided loop, such as updating every 20th record in place.
    @discardableResult
    public func access(_ pid: Int32, _ address: UInt64, length: UInt64, _ kind: AccessKind, every: Int) throws -> AccessResult {
        guard every > 1 else { return try access(pid, address, length: length, kind) }
        let task = try task(pid)
        var result = AccessResult()
        let stride = Paging.pageSize * UInt64(every)
        let end = address &+ length
        let logging = faultLog != nil
        withUnsafeTemporaryAllocation(of: Int.self, capacity: FaultClass.count) { buffer in
            let counts = buffer.baseAddress!
            counts.initialize(repeating: 0, count: FaultClass.count)
            var a = Paging.pageAlignDown(address)
            while a < end, result.completed {
                accessRange(task, a, a + 1, write: kind == .write, logging: logging, counts, &result)
                a += stride
            }
            result.faults.add(counts)
        }
        task.addFaults(result.faults)
        return result
    }

    public func read(_ pid: Int32, _ address: UInt64, length: UInt64) throws -> AccessResult {
        try access(pid, address, length: length, .read)
    }

    public func write(_ pid: Int32, _ address: UInt64, length: UInt64) throws -> AccessResult {
        try access(pid, address, length: length, .write)
    }

    /// One access to one address, as the replay of a traced fault: returns the
    /// fault it caused, or nil when the page tables already allowed it.
    public func fault(_ pid: Int32, at address: UInt64, write: Bool) throws -> FaultRecord? {
        guard let i = taskIndex[pid], tasks[i].alive else { throw MMError.noSuchProcess(pid) }
        // Borrowed, not retained: the task list holds the task through the
        // fault (only fork replaces an entry of it).
        return Unmanaged.passUnretained(tasks[i])._withUnsafeGuaranteedRef { task in
            // The last fault is caught by `log` (no array per fault); `faultLog`, when set, still gets every one.
            lastFault.pointee = nil
            accessRange(task, address, address &+ 1, write: write, logging: true, faultCounts, &unreadResult)
            task.takeFaults(faultCounts)
            return lastFault.pointee
        }
    }

    /// Where a fault at one page of one process is handled, found once: the
    /// task, the VMA containing the page (find_vma) and the page's entry slot
    /// (the walk of handle_mm_fault: a PTE, or a huge PMD), with the entry it
    /// held. `fault(at:write:)` takes a fault there without finding any of it
    /// again, as the kernel's handlers pass one `struct vm_fault` down.
    ///
    /// A site stays valid while the processes, VMAs and page tables stay as
    /// they were; the entry's bits may change in place (as `writeProtect`
    /// changes them): the fault reads the entry again.
    public struct FaultSite {
        /// The VMA containing the page; nil when there is none or the process is not alive.
        public let vma: VMArea?
        /// The entry found at the page (a huge PMD's for a huge page); nil when the slot is empty or has no table.
        public let entry: PageTableEntry?
        /// The process exists and is alive (`isAlive(pid)`).
        public let processIsAlive: Bool
        let pid: Int32
        /// The page-aligned address.
        let address: UInt64
        let task: Unmanaged<Task>?
        let mm: Unmanaged<MM>?
        let vmaIndex: Int
        /// The PTE slot, when the walk reached one (nil at a huge PMD or a missing table).
        let pte: UnsafeMutablePointer<UInt64>?
    }

    /// The site of a fault at `address` of `pid` (see `FaultSite`): one lookup
    /// of the task, the VMA and the page-table entry.
    public func faultSite(_ pid: Int32, containing address: UInt64) -> FaultSite {
        let page = Paging.pageAlignDown(address)
        guard let i = taskIndex[pid], let mm = tasks[i].mm.map(Unmanaged.passUnretained) else {
            let alive = taskIndex[pid].map { tasks[$0].alive } ?? false
            return FaultSite(vma: nil, entry: nil, processIsAlive: alive, pid: pid, address: page, task: nil, mm: nil,
                             vmaIndex: 0, pte: nil)
        }
        let alive = tasks[i].alive
        let task = Unmanaged.passUnretained(tasks[i])
        // Borrowed, not retained: nothing here can drop the task's mm.
        return mm._withUnsafeGuaranteedRef { m in
            let vmaIndex = alive ? m.findVMA(page) : nil
            let vma = vmaIndex.map { m.vmas[$0] }
            guard let slot = m.pageTable.lookup(page) else {
                return FaultSite(vma: vma, entry: nil, processIsAlive: alive, pid: pid, address: page, task: task, mm: mm,
                                 vmaIndex: vmaIndex ?? 0, pte: nil)
            }
            // An empty PTE is a site too: a first touch is taken there, as accessVMA takes it.
            let entry = slot.pointee
            return FaultSite(vma: vma, entry: entry == 0 ? nil : PageTableEntry(rawValue: entry), processIsAlive: alive,
                             pid: pid, address: page, task: alive ? task : nil, mm: mm, vmaIndex: vmaIndex ?? 0,
                             pte: entry & PageTableEntry.huge == 0 ? slot : nil)
        }
    }

    /// `fault(pid, at: address, write:)` at a site `faultSite` found for the
    /// address: handle_mm_fault with the VMA and the PTE already reached, as
    /// the hardware walk reaches them before the fault (`accessVMA` does the
    /// same per page, an empty PTE included). A site with no VMA, no PTE (a
    /// huge PMD, a missing table) or a VMA that forbids the access takes the
    /// full path of `fault(_:at:write:)`.
    public func fault(at site: FaultSite, write: Bool) throws -> FaultRecord? {
        guard let taskRef = site.task, let mmRef = site.mm, let pte = site.pte, let vma = site.vma,
              Machine.accessAllowed(vma, write: write) else {
            return try fault(site.pid, at: site.address, write: write)
        }
        assert(isCurrent(site), "a fault site used after the model changed under it")
        let need = PageTableEntry.present | (write ? PageTableEntry.write : 0)
        let entry = pte.pointee
        if entry & need == need {
            pte.pointee = entry | PageTableEntry.accessed | (write ? PageTableEntry.dirty : 0)
            return nil
        }
        // Borrowed, not retained: the task list holds the task, and the task its mm.
        var ctx = FaultContext(taskRef: taskRef, mmRef: mmRef, vmaIndex: site.vmaIndex, address: site.address, write: write)
        ctx.pte = pte
        let cls = handleMMFault(&ctx)
        taskRef._withUnsafeGuaranteedRef { $0.faultsByClass[cls.index] += 1 }
        let record = FaultRecord(pid: site.pid, address: site.address, write: write,
                                 present: entry & PageTableEntry.present != 0, cls)
        lastFault.pointee = record
        if faultLog != nil { faultLog!.append(record) }
        return record
    }

    /// Whether `site` is what `faultSite` finds now (for assertions).
    func isCurrent(_ site: FaultSite) -> Bool {
        let now = faultSite(site.pid, containing: site.address)
        return now.task?.toOpaque() == site.task?.toOpaque() && now.mm?.toOpaque() == site.mm?.toOpaque()
            && now.vma == site.vma && now.vmaIndex == site.vmaIndex && now.pte == site.pte
            && now.processIsAlive == site.processIsAlive
    }

    /// Reads the page's content word (one 64-bit word per page in this model).
    public func load(_ pid: Int32, _ address: UInt64) throws -> UInt64 {
        let result = try access(pid, address, length: 1, .read)
        guard result.completed, let info = frameInfo(pid, address) else {
            throw MMError.invalidArgument("load from \(hex(address)) failed: \(describe(result))")
        }
        return info.contents
    }

    /// Writes the page's content word, faulting as a store would.
    public func store(_ pid: Int32, _ address: UInt64, _ value: UInt64) throws {
        let result = try access(pid, address, length: 1, .write)
        guard result.completed, let entry = pageTableEntry(pid, address) else {
            throw MMError.invalidArgument("store to \(hex(address)) failed: \(describe(result))")
        }
        let frame = entry.frame + (entry.isHuge ? Paging.pteIndex(address) : 0)
        frames.contents[frame] = value
    }

    /// `(*p)++`: a load then a store of the page's content word. Returns the new value.
    @discardableResult
    public func increment(_ pid: Int32, _ address: UInt64) throws -> UInt64 {
        let value = try load(pid, address) &+ 1
        try store(pid, address, value)
        return value
    }

    /// Pins the pages of a range for DMA (pin_user_pages with FOLL_WRITE):
    /// faults them in for writing, then adds GUP_PIN_COUNTING_BIAS to each refcount.
    public func pin(_ pid: Int32, _ address: UInt64, length: UInt64) throws {
        let result = try access(pid, address, length: length, .write)
        guard result.completed else { throw MMError.invalidArgument("cannot pin: \(describe(result))") }
        let task = try task(pid)
        task.mm!.hasPinned = true
        forEachPage(pid, address, length) { frames.refcount[$0] += FrameTable.pinBias }
    }

    /// unpin_user_pages.
    public func unpin(_ pid: Int32, _ address: UInt64, length: UInt64) throws {
        forEachPage(pid, address, length) { f in
            if frames.refcount[f] > FrameTable.pinBias { frames.refcount[f] -= FrameTable.pinBias }
        }
    }

    func forEachPage(_ pid: Int32, _ address: UInt64, _ length: UInt64, _ body: (Int) -> Void) {
        var a = Paging.pageAlignDown(address)
        while a < address &+ length {
            if let info = frameInfo(pid, a), !info.isZeroPage { body(info.frame) }
            a += Paging.pageSize
        }
    }

    func describe(_ r: AccessResult) -> String {
        if let a = r.segvAddress { return "SIGSEGV at \(hex(a))" }
        if let a = r.sigbusAddress { return "SIGBUS at \(hex(a))" }
        if r.outOfMemory { return "out of memory" }
        return "ok"
    }

    /// The loop a CPU runs: translate each page; fault when the entry does not allow the access.
    func accessRange(_ task: Task, _ start: UInt64, _ end: UInt64, write: Bool, _ result: inout AccessResult) {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: FaultClass.count) { buffer in
            let counts = buffer.baseAddress!
            counts.initialize(repeating: 0, count: FaultClass.count)
            accessRange(task, start, end, write: write, logging: faultLog != nil, counts, &result)
            result.faults.add(counts)
        }
    }

    func accessRange(_ task: Task, _ start: UInt64, _ end: UInt64, write: Bool, logging: Bool,
                     _ counts: UnsafeMutablePointer<Int>, _ result: inout AccessResult) {
        var address = Paging.pageAlignDown(start)
        while address < end {
            guard task.alive, let mm = task.mm else { result.outOfMemory = true; return }
            guard let vmaIndex = mm.findVMA(address), Machine.accessAllowed(mm.vmas[vmaIndex], write: write) else {
                // bad_area / access_error: the fault event fires, then SIGSEGV.
                let slot = mm.pageTable.walk(address, allocate: false)
                let present = slot.map { $0.pointee & PageTableEntry.present != 0 } ?? false
                counts[FaultClass.segv.index] += 1
                if logging { log(task, address, write: write, present: present, .segv) }
                result.segvAddress = address
                return
            }
            guard accessVMA(task, mm, vmaIndex, &address, end, write: write, logging: logging, counts, &result) else { return }
        }
    }

    /// The part of the access in one VMA, from `address` to the VMA's end or
    /// `end`; false when the access stopped there. Out of `accessRange` so that
    /// the mm is a parameter: its uses inside cost no reference counting.
    @inline(never)
    func accessVMA(_ task: Task, _ mm: MM, _ vmaIndex: Int, _ address: inout UInt64, _ end: UInt64,
                   write: Bool, logging: Bool, _ counts: UnsafeMutablePointer<Int>,
                   _ result: inout AccessResult) -> Bool {
        let need = PageTableEntry.present | (write ? PageTableEntry.write : 0)
        let setBits = PageTableEntry.accessed | (write ? PageTableEntry.dirty : 0)
        let vma = mm.vmas[vmaIndex]
        let stop = min(end, vma.end)
        var ctx = FaultContext(task: task, mm: mm, vmaIndex: vmaIndex, vma: vma, address: 0, write: write)
        let table = mm.pageTable
        // The paging-structure cache: the last PTE table reached, by its 2 MiB tag.
        var cachedTag = UInt64.max
        var cachedTable: UnsafeMutablePointer<UInt64>? = nil
        while address < stop {
            let tag = address >> Paging.pmdShift
            let slot: UnsafeMutablePointer<UInt64>?
            if tag == cachedTag {
                slot = cachedTable! + Paging.pteIndex(address)
            } else if let pmd = table.walk(address, to: .pmd, allocate: false), pmd.pointee != 0 {
                if pmd.pointee & PageTableEntry.huge != 0 {
                    slot = pmd
                } else {
                    cachedTag = tag
                    cachedTable = PageTable.table(pmd.pointee)
                    slot = cachedTable! + Paging.pteIndex(address)
                }
            } else {
                slot = nil
            }
            var present = false
            var hint: UnsafeMutablePointer<UInt64>? = nil
            if let slot {
                let entry = slot.pointee
                if entry & need == need {
                    slot.pointee = entry | setBits
                    address = entry & PageTableEntry.huge != 0
                        ? (address | (Paging.hugePageSize - 1)) &+ 1 : address &+ Paging.pageSize
                    continue
                }
                present = entry & PageTableEntry.present != 0
                if entry & PageTableEntry.huge == 0 { hint = slot }
            }
            ctx.address = address
            ctx.pte = hint
            ctx.pmd = nil
            let cls = handleMMFault(&ctx)
            if hint == nil { cachedTag = .max } // the PMD may have changed (new table, huge page, split)
            counts[cls.index] &+= 1
            if logging { log(task, address, write: write, present: present, cls, huge: present && hint == nil) }
            switch cls {
            case .anonymousPage, .copy, .zeroPage, .zeroFill, .fileCopy, .fileRead, .sharedWrite, .ksmCopy:
                address &+= Paging.pageSize
            case .oom:
                result.outOfMemory = true
                return false
            case .sigbus:
                result.sigbusAddress = address
                return false
            case .hugePage, .hugeZeroPage:
                address = (address | (Paging.hugePageSize - 1)) + 1
            case .reuse, .spurious, .segv, .unresolved, .other:
                // A PTE-level fix leaves the page accessible; a PMD-level one is retried.
                if hint != nil { address &+= Paging.pageSize } else { continue }
            }
        }
        return true
    }

    func log(_ task: Task, _ address: UInt64, write: Bool, present: Bool, _ cls: FaultClass, huge: Bool = false) {
        let record = FaultRecord(pid: task.pid, address: address, write: write, present: present, cls, huge: huge)
        lastFault.pointee = record
        if faultLog != nil { faultLog!.append(record) }
    }
}

public func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

extension FaultRecord {
    /// The record of a fault at `address`, with the error code the CPU pushes for it.
    init(pid: Int32, address: UInt64, write: Bool, present: Bool, _ cls: FaultClass, huge: Bool = false) {
        let code = FaultErrorCode.user | (write ? FaultErrorCode.write : 0) | (present ? FaultErrorCode.protection : 0)
        self.init(pid: pid, address: address, errorCode: code, faultClass: cls, onHugePMD: huge)
    }
}
