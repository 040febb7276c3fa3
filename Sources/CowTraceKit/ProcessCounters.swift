import CBPF

/// One process's write-protect faults, summed over CPUs, by class.
public struct ProcessCounters: Equatable, Sendable, Codable {
    public var writeProtectFaults: UInt64 = 0
    public var copies: UInt64 = 0
    public var zeroFills: UInt64 = 0
    public var fileCopies: UInt64 = 0
    public var sharedWrites: UInt64 = 0
    public var hugePMDFaults: UInt64 = 0
    public var forks: UInt64 = 0
    public var execs: UInt64 = 0

    public init() {}

    /// Write-protect faults that copied nothing: the page was exclusive.
    /// Derived, so it is exact whenever the other classes are.
    public var reuses: UInt64 {
        let other = copies &+ zeroFills &+ fileCopies &+ sharedWrites
        return writeProtectFaults >= other ? writeProtectFaults - other : 0
    }

    /// Pages really copied: anonymous and file copies (zero fills copy nothing).
    /// Wrapping: a re-classification in flight may be read half done.
    public var pagesCopied: UInt64 { copies &+ fileCopies }

    /// Bytes that were really copied.
    public func bytesCopied(pageSize: UInt64) -> UInt64 { pagesCopied &* pageSize }

    /// Adds a kernel record with wrapping arithmetic: a copy re-classified as
    /// a file copy is undone with an atomic add of -1, which may be read first.
    public mutating func accumulate(_ c: cowtrace_pid_counters) {
        writeProtectFaults &+= c.wp_faults
        copies &+= c.copies
        zeroFills &+= c.zero_fills
        fileCopies &+= c.file_copies
        sharedWrites &+= c.shared_writes
        hugePMDFaults &+= c.thp_wp_faults
        forks &+= c.forks
        execs &+= c.execs
    }

    /// What was counted between two snapshots of the same process.
    public static func - (a: ProcessCounters, b: ProcessCounters) -> ProcessCounters {
        var r = a
        r.writeProtectFaults &-= b.writeProtectFaults
        r.copies &-= b.copies
        r.zeroFills &-= b.zeroFills
        r.fileCopies &-= b.fileCopies
        r.sharedWrites &-= b.sharedWrites
        r.hugePMDFaults &-= b.hugePMDFaults
        r.forks &-= b.forks
        r.execs &-= b.execs
        return r
    }

    public static func + (a: ProcessCounters, b: ProcessCounters) -> ProcessCounters {
        var r = a
        r.writeProtectFaults &+= b.writeProtectFaults
        r.copies &+= b.copies
        r.zeroFills &+= b.zeroFills
        r.fileCopies &+= b.fileCopies
        r.sharedWrites &+= b.sharedWrites
        r.hugePMDFaults &+= b.hugePMDFaults
        r.forks &+= b.forks
        r.execs &+= b.execs
        return r
    }
}

/// One thread's write-protect faults (`cowtrace stat --threads`): the fault
/// classes only (forks, execs and huge-PMD faults are per process).
public struct ThreadCounters: Equatable, Sendable {
    public var tid: Int32
    /// The thread's process.
    public var pid: Int32
    /// The thread's name: now for a live thread, at its exit otherwise.
    public var comm: String
    public var counters: ProcessCounters
    public var exited: Bool

    public init(tid: Int32, pid: Int32, comm: String, counters: ProcessCounters, exited: Bool) {
        self.tid = tid
        self.pid = pid
        self.comm = comm
        self.counters = counters
        self.exited = exited
    }

    init(_ raw: cowtrace_process_slot, exited: Bool) {
        var c = ProcessCounters()
        c.accumulate(raw.counters)
        self.init(tid: Int32(bitPattern: raw.id), pid: Int32(bitPattern: raw.tgid), comm: cString(raw.comm), counters: c,
                  exited: exited)
    }
}

/// Identity of a traced process, from the fork/exec/exit hooks.
public struct ProcessIdentity: Equatable, Sendable {
    public var ppid: Int32
    public var comm: String
    public var exited: Bool
    public var exitCode: Int32
    public var startNanoseconds: UInt64
    public var exitNanoseconds: UInt64

    init(_ raw: cowtrace_pid_info) {
        ppid = Int32(bitPattern: raw.ppid)
        comm = cString(raw.comm)
        exited = raw.exited != 0
        exitCode = Int32(bitPattern: raw.exit_code)
        startNanoseconds = raw.start_ns
        exitNanoseconds = raw.exit_ns
    }

    public init(ppid: Int32, comm: String) {
        self.ppid = ppid
        self.comm = comm
        exited = false
        exitCode = 0
        startNanoseconds = 0
        exitNanoseconds = 0
    }
}

/// Events the kernel side could not deliver or store, by reason.
public struct DropCounts: Equatable, Sendable, Codable {
    public var ringBufferFull: UInt64 = 0
    public var processMapFull: UInt64 = 0
    public var infoMapFull: UInt64 = 0
    /// Histogram or stack-count entries not stored (maps full).
    public var histogramMapFull: UInt64 = 0
    /// Write-protect faults whose VMA could not be looked up (another BPF
    /// program's lookup was finishing on that CPU): missing from the
    /// mapping histograms, and recorded without their mapping kind.
    public var vmaLookupBusy: UInt64 = 0
    public var total: UInt64 { ringBufferFull + processMapFull + infoMapFull + histogramMapFull + vmaLookupBusy }
    public init() {}
}
