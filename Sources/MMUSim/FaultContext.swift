/// Everything one fault's handlers need (`struct vm_fault`), passed down the
/// chain `handleMMFault` → `handlePTEFault` → `doAnonymousPage`/`doFault`/`doWPPage`
/// → `reusePage`/`copyPage`. The access loop builds one per VMA it walks and
/// sets the address and entry of each fault in it.
///
/// The hot fields (pid, the task's state, the RSS counters) are plain values
/// and pointers, so handling a fault costs no reference counting; the task and
/// mm objects are reachable for the rare paths (OOM, anon_vma_prepare).
struct FaultContext {
    let taskRef: Unmanaged<Task>
    let mmRef: Unmanaged<MM>
    let pid: Int32
    let taskState: UnsafeMutablePointer<Task.State>
    let rss: UnsafeMutablePointer<RSSCounters>
    let vmaIndex: Int
    /// The hot facts of the VMA; the rest is read through `vma` when needed.
    let vmaFlags: VMFlags
    let isAnonymousVMA: Bool
    var hasAnonVMA: Bool
    /// Page-aligned faulting address.
    var address: UInt64
    /// FAULT_FLAG_WRITE.
    let write: Bool
    /// The PMD slot, once walked.
    var pmd: UnsafeMutablePointer<UInt64>? = nil
    /// The PTE slot, once walked.
    var pte: UnsafeMutablePointer<UInt64>? = nil
    /// The entry as found (vmf->orig_pte).
    var origPTE: UInt64 = 0

    init(task: Task, mm: MM, vmaIndex: Int, vma: VMArea, address: UInt64, write: Bool) {
        self.init(task: task, mm: mm, vmaIndex: vmaIndex, vmaFlags: vma.flags, anonymous: vma.file == nil,
                  hasAnonVMA: vma.hasAnonVMA, address: address, write: write)
    }

    init(task: Task, mm: MM, vmaIndex: Int, vmaFlags: VMFlags, anonymous: Bool, hasAnonVMA: Bool,
         address: UInt64, write: Bool) {
        taskRef = .passUnretained(task)
        mmRef = .passUnretained(mm)
        pid = task.pid
        taskState = task.state
        rss = mm.rssCounters
        self.vmaIndex = vmaIndex
        self.vmaFlags = vmaFlags
        isAnonymousVMA = anonymous
        self.hasAnonVMA = hasAnonVMA
        self.address = address
        self.write = write
    }

    /// The context of a fault in the VMA at `vmaIndex` of the mm, from
    /// references the caller holds (no reference counting).
    @inline(__always)
    init(taskRef: Unmanaged<Task>, mmRef: Unmanaged<MM>, vmaIndex: Int, address: UInt64, write: Bool) {
        let (pid, state) = taskRef._withUnsafeGuaranteedRef { ($0.pid, $0.state) }
        let (rss, flags, anonymous, hasAnonVMA) = mmRef._withUnsafeGuaranteedRef { mm in
            (mm.rssCounters, mm.vmas[vmaIndex].flags, mm.vmas[vmaIndex].file == nil, mm.vmas[vmaIndex].hasAnonVMA)
        }
        self.taskRef = taskRef
        self.mmRef = mmRef
        self.pid = pid
        taskState = state
        self.rss = rss
        self.vmaIndex = vmaIndex
        vmaFlags = flags
        isAnonymousVMA = anonymous
        self.hasAnonVMA = hasAnonVMA
        self.address = address
        self.write = write
    }

    var task: Task { taskRef.takeUnretainedValue() }
    var mm: MM { mmRef.takeUnretainedValue() }
    var vma: VMArea { mmRef.takeUnretainedValue().vmas[vmaIndex] }
}
