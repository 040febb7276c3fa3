import CBPF
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which processes to trace.
public struct TraceSelection: Sendable {
    /// Every process on the host.
    public var all = false
    /// These processes (and the children they fork from now on).
    public var pids: [Int32] = []
    /// Processes that this process spawns (cowtrace -c), and their descendants.
    public var followSpawnedChildren = false
    public init() {}
}

public struct TracerOptions: Sendable {
    public var selection = TraceSelection()
    /// Use only this tier; nil picks the best one that attaches.
    public var tier: AttachTier?
    /// Send per-fault events to the ring buffer (recording, `cowtrace events`).
    public var emitEvents = false
    /// Room for this many processes in the kernel's maps.
    public var maxProcesses: UInt32 = 16384
    /// Ring buffer size in bytes (a power of two, at least one page).
    public var ringBufferBytes: UInt32 = 4 << 20
    /// Keep a record per fork (latency, size, copies attributed to it): adds
    /// hooks on the fork-family syscalls.
    public var forkLineage = false
    /// Echo libbpf's messages to stderr.
    public var verbose = false
    /// Recording: also send first-touch faults and address-space syscalls
    /// (mmap, munmap, mprotect, brk, mremap, madvise) of traced processes.
    public var recordAddressSpace = false
    /// Submit events without waking the reader: it must poll on a timer
    /// (cheaper per event under a fault storm).
    public var eventsWithoutWakeup = false
    /// Bucket per-process histograms in the kernel (`histograms()`): copies
    /// per interval, and copy latency on tiers that see the fault return.
    public var histograms = false
    /// Also bucket write-protect faults by mapping kind (offset into the
    /// mapping). On the tracepoint tier this looks the VMA up on every
    /// write-protect fault (about 1 µs each); fentry/kprobe get it for free.
    public var mappingHistograms = false
    /// Interval of the copies-per-interval histogram.
    public var burstIntervalNanoseconds: UInt64 = 100_000_000
    /// Count copies per user stack (`stackCounts()`).
    public var userStacks = false
    /// Send fork, exec and exit events (not fault events) to the ring buffer.
    public var processEvents = false
    /// Also count write-protect faults per thread (`TraceSnapshot.threads`),
    /// from each thread's first one on; room for `maxProcesses` threads.
    public var perThread = false
    public init() {}
}

/// A snapshot of everything the kernel counted so far.
public struct TraceSnapshot: Sendable {
    public var counters: [Int32: ProcessCounters]
    public var info: [Int32: ProcessIdentity]
    public var drops: DropCounts
    /// Per-thread counters (TracerOptions.perThread), by tid.
    public var threads: [Int32: ThreadCounters]

    public init(counters: [Int32: ProcessCounters], info: [Int32: ProcessIdentity], drops: DropCounts,
                threads: [Int32: ThreadCounters] = [:]) {
        self.counters = counters
        self.info = info
        self.drops = drops
        self.threads = threads
    }
}

/// The live tracer: probes the attach tiers, loads and attaches the programs
/// of the best one, and reads the kernel's counters. Detaches on `close()` or
/// when released.
public final class CowTracer {
    public let tier: AttachTier
    public let copyByAlloc: Bool
    /// Every tier tried, in order, with why it failed.
    public let attempts: [TierAttempt]
    public let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
    /// The kernel buckets histograms (TracerOptions.histograms).
    public let histogramsEnabled: Bool
    /// The kernel buckets write-protect faults by mapping kind (TracerOptions.mappingHistograms).
    public let mappingHistogramsEnabled: Bool

    var object: BPFObject?
    private var links: [BPFLink] = []
    private let slotsFD: Int32
    private let pidSlotsFD: Int32
    private let threadSlotsFD: Int32
    private let tidSlotsFD: Int32
    private let exitedThreadsFD: Int32
    /// Threads are counted (TracerOptions.perThread).
    public let perThreadEnabled: Bool
    private let exitedFD: Int32
    private let forkRecordsFD: Int32
    private let infoFD: Int32
    private let dropsFD: Int32
    private let eventsFD: Int32
    let possibleCPUs: Int
    private var ringBuffer: RingBuffer?

    public init(options: TracerOptions) throws {
        let missing = KernelFacts.missingBPFCapabilities()
        if !missing.isEmpty { throw TracerError.notPrivileged(missing: missing) }
        guard FileManager.default.fileExists(atPath: KernelFacts.btfPath) else {
            throw TracerError.btfMissing(path: KernelFacts.btfPath)
        }
        LibBPFLog.enableCapture(verbose: options.verbose)

        var attempts: [TierAttempt] = []
        var chosen: (BPFObject, [BPFLink], TierPlan)?
        for tier in options.tier.map({ [$0] }) ?? AttachTier.allCases {
            let plan: TierPlan
            switch TierPlanner.plan(tier) {
            case .failure(let reason):
                attempts.append(TierAttempt(tier: tier, failure: reason.description, programs: [], copyByAlloc: false))
                if options.tier != nil { throw TracerError.tierUnavailable(tier: tier, reason: reason.description) }
                continue
            case .success(let p):
                plan = p
            }
            do {
                let (object, links) = try CowTracer.loadAndAttach(plan: plan, options: options)
                attempts.append(TierAttempt(tier: tier, failure: nil, programs: plan.allPrograms, copyByAlloc: plan.copyByAlloc))
                chosen = (object, links, plan)
                break
            } catch let error as TracerError {
                attempts.append(TierAttempt(tier: tier, failure: error.description, programs: plan.allPrograms, copyByAlloc: plan.copyByAlloc))
                if options.tier != nil { throw error }
            }
        }
        self.attempts = attempts
        histogramsEnabled = options.histograms
        mappingHistogramsEnabled = options.mappingHistograms
        guard let (object, links, plan) = chosen else { throw TracerError.noTierAvailable(attempts) }
        self.object = object
        self.links = links
        tier = plan.tier
        copyByAlloc = plan.copyByAlloc
        slotsFD = try object.mapDescriptor("process_slots")
        pidSlotsFD = try object.mapDescriptor("pid_slots")
        threadSlotsFD = try object.mapDescriptor("thread_slots")
        tidSlotsFD = try object.mapDescriptor("tid_slots")
        exitedThreadsFD = try object.mapDescriptor("exited_threads")
        perThreadEnabled = options.perThread
        exitedFD = try object.mapDescriptor("exited_counters")
        forkRecordsFD = try object.mapDescriptor("fork_records")
        infoFD = try object.mapDescriptor("pid_info")
        dropsFD = try object.mapDescriptor("drops")
        eventsFD = try object.mapDescriptor("events")
        possibleCPUs = Int(libbpf_num_possible_cpus())

        for pid in options.selection.pids { try trace(pid: pid) }
    }

    deinit { close() }

    /// Detaches every program and frees the maps.
    public func close() {
        ringBuffer = nil
        links.removeAll()
        object = nil
    }

    private static func loadAndAttach(plan: TierPlan, options: TracerOptions) throws -> (BPFObject, [BPFLink]) {
        let object = try BPFObject(bytes: EmbeddedBPF.cowtrace, name: "cowtrace")
        var programs = plan.allPrograms + (options.forkLineage ? TierPlan.lineagePrograms : [])
        if options.recordAddressSpace { programs += TierPlan.recordPrograms }
        if options.histograms, let ret = plan.faultReturnProgram, !programs.contains(ret) { programs.append(ret) }
        // register_process and unregister_process are run by user space
        // (trace(pid:)), never attached.
        object.enableOnly(Set(programs + [CowTracer.registerProgram, CowTracer.unregisterProgram]))
        for map in ["exited_counters", "pid_info", "fork_records"] {
            object.setMaxEntries(map, options.maxProcesses)
        }
        // Slot 0 means "not traced"; pid_slots holds two pids per element.
        let slots = options.maxProcesses &+ 1
        let pidPairs = UInt32((KernelFacts.pidMax() + 2) / 2)
        object.setMaxEntries("process_slots", slots)
        object.setMaxEntries("pid_slots", pidPairs)
        let threadSlots: UInt32 = options.perThread ? slots : 1
        object.setMaxEntries("thread_slots", threadSlots)
        object.setMaxEntries("tid_slots", options.perThread ? pidPairs : 1)
        object.setMaxEntries("exited_threads", options.perThread ? options.maxProcesses : 1)
        object.setMaxEntries("events", options.ringBufferBytes)
        guard let config = object.rodataVariable("cowtrace_cfg", as: cowtrace_config.self) else {
            throw TracerError.openObject(.noEntry)
        }
        config.pointee.trace_all = options.selection.all ? 1 : 0
        config.pointee.spawner_tgid = options.selection.followSpawnedChildren ? UInt32(getpid()) : 0
        config.pointee.emit_events = options.emitEvents ? 1 : 0
        config.pointee.fault_mode = plan.mode
        config.pointee.copy_by_alloc = plan.copyByAlloc ? 1 : 0
        config.pointee.fork_lineage = options.forkLineage ? 1 : 0
        config.pointee.record_faults = options.recordAddressSpace ? 1 : 0
        config.pointee.no_wakeup = options.eventsWithoutWakeup ? 1 : 0
        config.pointee.histograms = options.histograms ? 1 : 0
        config.pointee.mapping_histograms = options.mappingHistograms ? 1 : 0
        config.pointee.user_stacks = options.userStacks ? 1 : 0
        config.pointee.process_events = options.processEvents ? 1 : 0
        config.pointee.burst_interval_ns = max(options.burstIntervalNanoseconds, 1_000_000)
        config.pointee.process_slots = slots
        config.pointee.per_thread = options.perThread ? 1 : 0
        config.pointee.thread_slots = threadSlots
        object.setMaxEntries("histograms", options.histograms || options.mappingHistograms
                             ? options.maxProcesses &* UInt32(COWTRACE_HIST_NR.rawValue) : 1)
        // The stack maps are preallocated: keep them tiny unless asked for.
        object.setMaxEntries("stacks", options.userStacks ? 16384 : 1)
        object.setMaxEntries("stack_copies", options.userStacks ? 65536 : 1)
        try object.load(tier: plan.tier)
        let links = try programs.map { try object.attach($0, tier: plan.tier) }
        return (object, links)
    }

    static let registerProgram = "register_process"
    static let unregisterProgram = "unregister_process"

    /// Starts counting for an existing process (and the children it forks).
    /// The kernel claims its slot (the register_process program), with the
    /// same atomics as for a fork, so that it never races a traced fork.
    public func trace(pid: Int32) throws {
        guard pid > 0, let pidfd = PIDFD(pid) else { throw TracerError.noSuchProcess(pid: pid) }
        guard let object else { throw TracerError.mapAccess(map: "process_slots", operation: "start counting pid \(pid) after close", errno: Errno(EBADF)) }
        var args = cowtrace_register_args(tgid: UInt32(pid), slot: 0)
        try object.run(CowTracer.registerProgram, context: &args)
        if args.slot == 0 {
            throw TracerError.processTableFull(pid: pid)
        }
        // Exited before its slot was claimed: its exit hook will never free
        // the slot, and a later process with the same pid would inherit it.
        if pidfd.hasExited {
            try object.run(CowTracer.unregisterProgram, context: &args)
            throw TracerError.noSuchProcess(pid: pid)
        }
        var tgid = UInt32(pid)
        var info = cowtrace_pid_info()
        info.ppid = UInt32(ProcFS.parentPID(of: pid) ?? 0)
        ProcFS.comm(of: pid).map { setComm(&info, $0) }
        _ = bpf_map_update_elem(infoFD, &tgid, &info, UInt64(BPF_NOEXIST))
    }

    /// Reads every traced process's counters, identities and the drop counters.
    /// Live processes are read from their slot, exited ones from exited_counters.
    public func snapshot() throws -> TraceSnapshot {
        var info: [Int32: ProcessIdentity] = [:]
        for key in try keys(of: infoFD, map: "pid_info") {
            var k = key
            var raw = cowtrace_pid_info()
            if bpf_map_lookup_elem(infoFD, &k, &raw) == 0 { info[Int32(bitPattern: key)] = ProcessIdentity(raw) }
        }
        var counters: [Int32: ProcessCounters] = [:]
        for (pid, identity) in info {
            if !identity.exited, let live = liveCounters(pid) {
                counters[pid] = live
            } else if let final = exitedCounters(pid) {
                counters[pid] = final
            }
        }
        let threads = perThreadEnabled ? try threadCounters(liveProcesses: info.filter { !$0.value.exited }.map(\.key)) : [:]
        return TraceSnapshot(counters: counters, info: info, drops: try drops(), threads: threads)
    }

    /// Every counted thread: live ones of live processes (listed in
    /// /proc/PID/task, read from their slots), and exited ones.
    private func threadCounters(liveProcesses: [Int32]) throws -> [Int32: ThreadCounters] {
        var threads: [Int32: ThreadCounters] = [:]
        for tid in try keys(of: exitedThreadsFD, map: "exited_threads") {
            var k = tid
            var raw = cowtrace_process_slot()
            if bpf_map_lookup_elem(exitedThreadsFD, &k, &raw) == 0 {
                threads[Int32(bitPattern: tid)] = ThreadCounters(raw, exited: true)
            }
        }
        for pid in liveProcesses {
            for tid in ProcFS.threads(of: pid) where threads[tid] == nil {
                if let raw = slot(of: UInt32(bitPattern: tid), index: tidSlotsFD, slots: threadSlotsFD) {
                    var live = ThreadCounters(raw, exited: false)
                    if let name = ProcFS.threadComm(pid: pid, tid: tid) { live.comm = name }
                    threads[tid] = live
                }
            }
        }
        return threads
    }

    /// The slot `id` owns through an index map (pid_slots, tid_slots).
    private func slot(of id: UInt32, index indexFD: Int32, slots slotsFD: Int32) -> cowtrace_process_slot? {
        var index = id >> 1
        var pair = cowtrace_pid_slot_pair()
        guard bpf_map_lookup_elem(indexFD, &index, &pair) == 0 else { return nil }
        var slot = id & 1 == 0 ? pair.slot.0 : pair.slot.1
        guard slot != 0 else { return nil }
        var raw = cowtrace_process_slot()
        guard bpf_map_lookup_elem(slotsFD, &slot, &raw) == 0, raw.id == id else { return nil }
        return raw
    }

    /// A live process's counters: its slot from pid_slots, then the slot,
    /// if the process still owns it.
    private func liveCounters(_ pid: Int32) -> ProcessCounters? {
        guard let raw = slot(of: UInt32(bitPattern: pid), index: pidSlotsFD, slots: slotsFD) else { return nil }
        var c = ProcessCounters()
        c.accumulate(raw.counters)
        return c
    }

    private func exitedCounters(_ pid: Int32) -> ProcessCounters? {
        var key = UInt32(bitPattern: pid)
        var raw = cowtrace_pid_counters()
        guard bpf_map_lookup_elem(exitedFD, &key, &raw) == 0 else { return nil }
        var c = ProcessCounters()
        c.accumulate(raw)
        return c
    }

    /// Every fork of a traced process seen so far (needs `forkLineage`).
    public func forkRecords() throws -> [ForkRecord] {
        var records: [ForkRecord] = []
        for key in try keys(of: forkRecordsFD, map: "fork_records") {
            var k = key
            var raw = cowtrace_fork_record()
            if bpf_map_lookup_elem(forkRecordsFD, &k, &raw) == 0 { records.append(ForkRecord(raw)) }
        }
        return records.sorted { $0.forkNanoseconds < $1.forkNanoseconds }
    }

    public func drops() throws -> DropCounts {
        var result = DropCounts()
        var values = [UInt64](repeating: 0, count: possibleCPUs)
        for reason in 0..<Int(COWTRACE_DROP_NR.rawValue) {
            var key = UInt32(reason)
            let rc = values.withUnsafeMutableBytes { bpf_map_lookup_elem(dropsFD, &key, $0.baseAddress) }
            if rc != 0 { throw TracerError.mapAccess(map: "drops", operation: "read", errno: Errno(rc)) }
            let sum = values.reduce(0, &+)
            switch UInt32(reason) {
            case COWTRACE_DROP_RINGBUF_FULL.rawValue: result.ringBufferFull = sum
            case COWTRACE_DROP_PID_MAP_FULL.rawValue: result.processMapFull = sum
            case COWTRACE_DROP_INFO_MAP_FULL.rawValue: result.infoMapFull = sum
            case COWTRACE_DROP_HIST_MAP_FULL.rawValue: result.histogramMapFull = sum
            case COWTRACE_DROP_VMA_BUSY.rawValue: result.vmaLookupBusy = sum
            default: break
            }
        }
        return result
    }

    /// Removes processes from the kernel's maps (after their exit was reported),
    /// to make room on long runs.
    public func forget(pids: [Int32]) {
        if perThreadEnabled && !pids.isEmpty {
            let gone = Set(pids.map { UInt32(bitPattern: $0) })
            for tid in (try? keys(of: exitedThreadsFD, map: "exited_threads")) ?? [] {
                var k = tid
                var raw = cowtrace_process_slot()
                if bpf_map_lookup_elem(exitedThreadsFD, &k, &raw) == 0, gone.contains(raw.tgid) {
                    _ = bpf_map_delete_elem(exitedThreadsFD, &k)
                }
            }
        }
        for pid in pids {
            var key = UInt32(bitPattern: pid)
            _ = bpf_map_delete_elem(exitedFD, &key)
            _ = bpf_map_delete_elem(infoFD, &key)
            _ = bpf_map_delete_elem(forkRecordsFD, &key)
            if histogramsEnabled || mappingHistogramsEnabled, let fd = try? object?.mapDescriptor("histograms") {
                for kind in HistogramKind.allCases {
                    var k = cowtrace_hist_key(tgid: UInt32(bitPattern: pid), kind: kind.rawValue)
                    _ = bpf_map_delete_elem(fd, &k)
                }
            }
        }
    }

    func keys(of fd: Int32, map: String) throws -> [UInt32] {
        var keys: [UInt32] = []
        var next: UInt32 = 0
        var rc = bpf_map_get_next_key(fd, nil, &next)
        while rc == 0 {
            keys.append(next)
            var current = next
            rc = bpf_map_get_next_key(fd, &current, &next)
        }
        if Errno(rc) != Errno.noEntry {
            throw TracerError.mapAccess(map: map, operation: "iterate", errno: Errno(rc))
        }
        return keys
    }

    // MARK: events

    /// Delivers ring-buffer events to `handler` from `pollEvents`.
    public func onEvent(_ handler: @escaping (FaultEvent) -> Void) throws {
        ringBuffer = try RingBuffer(mapFD: eventsFD, map: "events") { bytes in
            guard bytes.count >= Int(COWTRACE_SHORT_EVENT_SIZE) else { return }
            // Fault events stop before comm: copy what there is into a zeroed event.
            var raw = cowtrace_event()
            withUnsafeMutableBytes(of: &raw) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix($0.count))) }
            handler(FaultEvent(raw))
        }
    }

    /// Delivers every ring-buffer record as raw bytes (a cowtrace_event, or a
    /// cowtrace_vm_event when its type says so) from `pollEvents`: the
    /// recorder's fast path.
    public func onRawEvent(_ handler: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        ringBuffer = try RingBuffer(mapFD: eventsFD, map: "events", raw: handler)
    }

    /// Reads what the ring buffer holds without waiting (for readers that
    /// poll on a timer, with `eventsWithoutWakeup`).
    @discardableResult
    public func consumeEvents() -> Int {
        ringBuffer?.consume() ?? 0
    }

    /// Waits up to `timeoutMilliseconds` for events; returns how many were handled.
    @discardableResult
    public func pollEvents(timeoutMilliseconds: Int32) -> Int {
        ringBuffer?.poll(timeoutMilliseconds: timeoutMilliseconds) ?? 0
    }
}

private func setComm(_ info: inout cowtrace_pid_info, _ comm: String) {
    withUnsafeMutableBytes(of: &info.comm) { buf in
        let bytes = Array(comm.utf8.prefix(buf.count - 1))
        buf.copyBytes(from: bytes)
        buf[bytes.count] = 0
    }
}
