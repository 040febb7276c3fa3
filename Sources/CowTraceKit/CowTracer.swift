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
    /// How the kernel finds a process's slot from its pid (see PIDIndex).
    public var pidIndex = PIDIndex.automatic
    public init() {}
}

/// A snapshot of everything the kernel counted so far.
public struct TraceSnapshot: Sendable {
    public var counters: [Int32: ProcessCounters]
    public var info: [Int32: ProcessIdentity]
    public var drops: DropCounts
    /// Per-thread counters (TracerOptions.perThread), by tid.
    public var threads: [Int32: ThreadCounters]
    /// The kernel's run count and run time of every attached program.
    public var programs: [BPFProgramStatistics]

    public init(counters: [Int32: ProcessCounters], info: [Int32: ProcessIdentity], drops: DropCounts,
                threads: [Int32: ThreadCounters] = [:], programs: [BPFProgramStatistics] = []) {
        self.counters = counters
        self.info = info
        self.drops = drops
        self.threads = threads
        self.programs = programs
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
    /// The object's maps and programs, checked when it was opened.
    let maps: CowTraceMaps
    /// Threads are counted (TracerOptions.perThread).
    public let perThreadEnabled: Bool
    /// The pid index in use: direct or hashed (TracerOptions.pidIndex).
    public let pidIndex: PIDIndex
    /// cowtrace_cfg.index_mask: 0 for the direct index.
    let indexMask: UInt32
    private var ringBuffer: RingBuffer?
    /// The events' rings, one per CPU (only when events are sent).
    private var rings: PerCPURings?
    /// The last partial batches were handed over (`flushEventBatches`).
    private var batchesFlushed = false

    public init(options: TracerOptions) throws {
        let missing = KernelFacts.missingBPFCapabilities()
        if !missing.isEmpty { throw TracerError.notPrivileged(missing: missing) }
        guard FileManager.default.fileExists(atPath: KernelFacts.btfPath) else {
            throw TracerError.btfMissing(path: KernelFacts.btfPath)
        }
        LibBPFLog.enableCapture(verbose: options.verbose)

        let chosen = try TierAttempts.first(forced: options.tier, plan: { TierPlanner.plan($0) }) {
            try CowTracer.loadAndAttach(plan: $0, options: options)
        }
        attempts = chosen.attempts
        histogramsEnabled = options.histograms
        mappingHistogramsEnabled = options.mappingHistograms
        object = chosen.loaded.object
        links = chosen.loaded.links
        maps = chosen.loaded.maps
        rings = chosen.loaded.rings
        tier = chosen.plan.tier
        copyByAlloc = chosen.plan.copyByAlloc
        perThreadEnabled = options.perThread
        pidIndex = options.pidIndex.resolved(pidMax: KernelFacts.pidMax())
        indexMask = pidIndex == .hashed ? PIDIndex.cachePairs(maxProcesses: options.maxProcesses) - 1 : 0

        for pid in options.selection.pids { try trace(pid: pid) }
        // The tier checks and the load parsed the kernel's BTF and symbols
        // (several MiB): a long-running tracer must not keep them resident.
        KernelFacts.releaseLoadMemory()
    }

    deinit { close() }

    /// Detaches every program and frees the maps.
    public func close() {
        ringBuffer = nil
        rings = nil
        links.removeAll()
        object?.close()
        object = nil
    }

    private static func loadAndAttach(plan: TierPlan, options: TracerOptions) throws -> (object: BPFObject, links: [BPFLink], maps: CowTraceMaps, rings: PerCPURings?) {
        let object = try BPFObject(bytes: EmbeddedBPF.cowtrace, name: "cowtrace")
        let maps = try CowTraceMaps(object)
        var programs = plan.allPrograms + (options.forkLineage ? TierPlan.lineagePrograms : [])
        if options.recordAddressSpace { programs += plan.recordPrograms }
        if options.histograms, let ret = plan.faultReturnProgram, !programs.contains(ret) { programs.append(ret) }
        // register_process and unregister_process are run by user space
        // (trace(pid:)), never attached.
        try object.enableOnly(Set(programs + [CowTracer.registerProgram, CowTracer.unregisterProgram]))
        try maps.exitedCounters.setMaxEntries(options.maxProcesses)
        try maps.pidInfo.setMaxEntries(options.maxProcesses)
        // Maps a configuration does not use are sized 1 (the kernel allocates
        // an array, a ring buffer or a preallocated hash in full at load).
        try maps.forkRecords.setMaxEntries(options.forkLineage ? options.maxProcesses : 1)
        try maps.forkStart.setMaxEntries(options.forkLineage ? 4096 : 1)
        // Slot 0 means "not traced"; pid_slots holds two pids per element.
        let slots = options.maxProcesses &+ 1
        let index = options.pidIndex.resolved(pidMax: KernelFacts.pidMax())
        let cachePairs = PIDIndex.cachePairs(maxProcesses: options.maxProcesses)
        let pidPairs = index == .hashed ? cachePairs : UInt32((KernelFacts.pidMax() + 2) / 2)
        try maps.processSlots.setMaxEntries(slots)
        try maps.pidSlots.setMaxEntries(pidPairs)
        try maps.pidIndex.setMaxEntries(index == .hashed ? options.maxProcesses : 1)
        let threadSlots: UInt32 = options.perThread ? slots : 1
        try maps.threadSlots.setMaxEntries(threadSlots)
        try maps.tidSlots.setMaxEntries(options.perThread ? pidPairs : 1)
        try maps.tidIndex.setMaxEntries(options.perThread && index == .hashed ? options.maxProcesses : 1)
        try maps.exitedThreads.setMaxEntries(options.perThread ? options.maxProcesses : 1)
        // The rings themselves are made after load, and only when events are sent.
        let sendsEvents = options.emitEvents || options.processEvents
        try maps.events.setSlots(sendsEvents ? BPFPerCPURingBuffers.possibleCPUs : 1)
        guard let config = object.rodataVariable("cowtrace_cfg", as: cowtrace_config.self) else {
            throw TracerError.openObject(.noEntry)
        }
        config.pointee.trace_all = options.selection.all ? 1 : 0
        config.pointee.spawner_tgid = options.selection.followSpawnedChildren ? UInt32(getpid()) : 0
        config.pointee.emit_events = options.emitEvents ? 1 : 0
        config.pointee.fault_mode = plan.mode
        config.pointee.copy_by_alloc = plan.copyByAlloc ? 1 : 0
        config.pointee.fork_lineage = options.forkLineage ? 1 : 0
        config.pointee.record_faults = options.recordAddressSpace ? plan.recordFaults : 0
        config.pointee.no_wakeup = options.eventsWithoutWakeup ? 1 : 0
        config.pointee.histograms = options.histograms ? 1 : 0
        config.pointee.mapping_histograms = options.mappingHistograms ? 1 : 0
        config.pointee.user_stacks = options.userStacks ? 1 : 0
        config.pointee.process_events = options.processEvents ? 1 : 0
        config.pointee.burst_interval_ns = max(options.burstIntervalNanoseconds, 1_000_000)
        config.pointee.process_slots = slots
        config.pointee.per_thread = options.perThread ? 1 : 0
        config.pointee.thread_slots = threadSlots
        config.pointee.index_mask = index == .hashed ? cachePairs - 1 : 0
        try maps.histograms.setMaxEntries(options.histograms || options.mappingHistograms
                                          ? options.maxProcesses &* UInt32(COWTRACE_HIST_NR.rawValue) : 1)
        // The stack maps are preallocated: keep them tiny unless asked for.
        try maps.stacks.setMaxEntries(options.userStacks ? 16384 : 1)
        try maps.stackCopies.setMaxEntries(options.userStacks ? 65536 : 1)
        try object.load(tier: plan.tier)
        // Every ring in place before the first program runs: an event with no
        // ring would be counted lost.
        let cpus = BPFPerCPURingBuffers.onlineCPUs()
        let rings = sendsEvents
            ? try maps.events.createRings(bytes: BPFPerCPURingBuffers.bytesPerRing(totalBytes: options.ringBufferBytes,
                                                                                   cpus: cpus.count), cpus: cpus)
            : nil
        let links = try object.attach(programs, tier: plan.tier)
        return (object, links, maps, rings)
    }

    static let registerProgram = "register_process"
    static let unregisterProgram = "unregister_process"

    /// Starts counting for an existing process (and the children it forks).
    /// The kernel claims its slot (the register_process program), with the
    /// same atomics as for a fork, so that it never races a traced fork.
    public func trace(pid: Int32) throws {
        guard pid > 0, let pidfd = PIDFD(pid) else { throw TracerError.noSuchProcess(pid: pid) }
        guard object != nil else { throw TracerError.mapAccess(map: "process_slots", operation: "start counting pid \(pid) after close", errno: Errno(EBADF)) }
        var args = cowtrace_register_args(tgid: UInt32(pid), slot: 0)
        try maps.registerProcess.run(context: &args)
        if args.slot == 0 {
            throw TracerError.processTableFull(pid: pid)
        }
        // Exited before its slot was claimed: its exit hook will never free
        // the slot, and a later process with the same pid would inherit it.
        if pidfd.hasExited {
            try maps.unregisterProcess.run(context: &args)
            throw TracerError.noSuchProcess(pid: pid)
        }
        var info = cowtrace_pid_info()
        info.ppid = UInt32(ProcFS.parentPID(of: pid) ?? 0)
        ProcFS.comm(of: pid).map { setComm(&info, $0) }
        // EEXIST: the kernel named it first (it forked or exec'd meanwhile).
        try? maps.pidInfo.update(UInt32(pid), info, flags: UInt64(BPF_NOEXIST))
    }

    /// Reads every traced process's counters, identities and the drop counters.
    /// Live processes are read from their slot, exited ones from exited_counters.
    public func snapshot() throws -> TraceSnapshot {
        var info: [Int32: ProcessIdentity] = [:]
        for key in try maps.pidInfo.keys() {
            if let raw = maps.pidInfo.lookup(key) { info[Int32(bitPattern: key)] = ProcessIdentity(raw) }
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
        return TraceSnapshot(counters: counters, info: info, drops: try drops(), threads: threads,
                             programs: programStatistics())
    }

    /// The kernel's run count and run time of every attached program, in
    /// attach order (non-zero only while kernel.bpf_stats_enabled is 1).
    public func programStatistics() -> [BPFProgramStatistics] {
        object?.statistics(of: links.map(\.program)) ?? []
    }

    /// Every counted thread: live ones of live processes (listed in
    /// /proc/PID/task, read from their slots), and exited ones.
    private func threadCounters(liveProcesses: [Int32]) throws -> [Int32: ThreadCounters] {
        var threads: [Int32: ThreadCounters] = [:]
        for tid in try maps.exitedThreads.keys() {
            if let raw = maps.exitedThreads.lookup(tid) {
                threads[Int32(bitPattern: tid)] = ThreadCounters(raw, exited: true)
            }
        }
        for pid in liveProcesses {
            for tid in ProcFS.threads(of: pid) where threads[tid] == nil {
                if let raw = slot(of: UInt32(bitPattern: tid), index: maps.tidSlots, hash: maps.tidIndex, slots: maps.threadSlots) {
                    var live = ThreadCounters(raw, exited: false)
                    if let name = ProcFS.threadComm(pid: pid, tid: tid) { live.comm = name }
                    threads[tid] = live
                }
            }
        }
        return threads
    }

    /// The slot `id` owns through an index map (pid_slots, tid_slots), and,
    /// with the hashed index, its hash (pid_index, tid_index) when the cache
    /// entry belongs to another id.
    private func slot(of id: UInt32, index: BPFMap<UInt32, cowtrace_pid_slot_pair>, hash: BPFMap<UInt32, UInt32>,
                      slots: BPFMap<UInt32, cowtrace_process_slot>) -> cowtrace_process_slot? {
        let mask = indexMask
        if let pair = index.lookup(mask == 0 ? id >> 1 : (id >> 1) & mask) {
            let slot = id & 1 == 0 ? pair.slot.0 : pair.slot.1
            if slot != 0, let raw = slots.lookup(slot), raw.id == id { return raw }
        }
        guard mask != 0, let slot = hash.lookup(id), slot != 0,
              let raw = slots.lookup(slot), raw.id == id else { return nil }
        return raw
    }

    /// A live process's counters: its slot from pid_slots, then the slot,
    /// if the process still owns it.
    private func liveCounters(_ pid: Int32) -> ProcessCounters? {
        guard let raw = slot(of: UInt32(bitPattern: pid), index: maps.pidSlots, hash: maps.pidIndex, slots: maps.processSlots) else { return nil }
        var c = ProcessCounters()
        c.accumulate(raw.counters)
        return c
    }

    private func exitedCounters(_ pid: Int32) -> ProcessCounters? {
        guard let raw = maps.exitedCounters.lookup(UInt32(bitPattern: pid)) else { return nil }
        var c = ProcessCounters()
        c.accumulate(raw)
        return c
    }

    /// Every fork of a traced process seen so far (needs `forkLineage`).
    public func forkRecords() throws -> [ForkRecord] {
        var records: [ForkRecord] = []
        for key in try maps.forkRecords.keys() {
            if let raw = maps.forkRecords.lookup(key) { records.append(ForkRecord(raw)) }
        }
        return records.sorted { $0.forkNanoseconds < $1.forkNanoseconds }
    }

    public func drops() throws -> DropCounts {
        var result = DropCounts()
        for reason in 0..<Int(COWTRACE_DROP_NR.rawValue) {
            let sum = try maps.drops.values(UInt32(reason)).reduce(0, &+)
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

    /// How many process slots are claimed (owned by a live process), and, with
    /// the hashed index, how many pids pid_index holds. Reads every slot:
    /// for tests and the soak, not for every scrape.
    public func slotUsage() throws -> (claimed: Int, indexed: Int?) {
        var claimed = 0
        for slot in 1..<UInt32(maps.processSlots.maxEntries) where (maps.processSlots.lookup(slot)?.id ?? 0) != 0 {
            claimed += 1
        }
        return (claimed, indexMask == 0 ? nil : try maps.pidIndex.keys().count)
    }

    /// Removes processes from the kernel's maps (after their exit was reported),
    /// to make room on long runs.
    public func forget(pids: [Int32]) {
        if perThreadEnabled && !pids.isEmpty {
            let gone = Set(pids.map { UInt32(bitPattern: $0) })
            for tid in (try? maps.exitedThreads.keys()) ?? [] {
                if let raw = maps.exitedThreads.lookup(tid), gone.contains(raw.tgid) {
                    maps.exitedThreads.delete(tid)
                }
            }
        }
        for pid in pids {
            let key = UInt32(bitPattern: pid)
            maps.exitedCounters.delete(key)
            maps.pidInfo.delete(key)
            maps.forkRecords.delete(key)
            if histogramsEnabled || mappingHistogramsEnabled {
                for kind in HistogramKind.allCases {
                    maps.histograms.delete(cowtrace_hist_key(tgid: key, kind: kind.rawValue))
                }
            }
        }
    }

    // MARK: events

    /// Delivers ring-buffer events to `handler` from `pollEvents`.
    public func onEvent(_ handler: @escaping (FaultEvent) -> Void) throws {
        ringBuffer = try eventReader { bytes in
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
        ringBuffer = try eventReader(handler)
    }

    private func eventReader(_ handler: @escaping (UnsafeRawBufferPointer) -> Void) throws -> RingBuffer {
        guard let rings else {
            throw TracerError.mapAccess(map: maps.events.name, operation: "read events (the tracer was started without them) from",
                                        errno: Errno(EINVAL))
        }
        return try RingBuffer(name: maps.events.name, descriptors: rings.descriptors, unpack: CowTracer.unpackBatch,
                              raw: handler)
    }

    /// A batch of fault events (recording) as its events; any other record as itself.
    static func unpackBatch(_ record: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        let size = Int(COWTRACE_SHORT_EVENT_SIZE), header = MemoryLayout<cowtrace_event_batch>.offset(of: \.events)!
        guard record.count >= MemoryLayout<cowtrace_event_batch>.size, let base = record.baseAddress,
              base.load(fromByteOffset: MemoryLayout<cowtrace_event_batch>.offset(of: \.type)!, as: UInt8.self)
                == UInt8(COWTRACE_EVENT_BATCH.rawValue) else {
            body(record)
            return
        }
        let count = min(Int(base.loadUnaligned(fromByteOffset: MemoryLayout<cowtrace_event_batch>.offset(of: \.count)!,
                                                as: UInt32.self)), Int(COWTRACE_BATCH_EVENTS))
        for i in 0..<count {
            body(UnsafeRawBufferPointer(rebasing: record[(header + i * size)..<(header + (i + 1) * size)]))
        }
    }

    /// Detaches every program, keeping the maps: what they counted and sent
    /// can still be read, and nothing changes it any more.
    public func detach() {
        links.removeAll()
    }

    /// Recording, once detached: hands each CPU's last, partial batch of
    /// fault events to the event handler. Returns how many events.
    @discardableResult
    public func flushEventBatches() throws -> Int {
        guard let ringBuffer, links.isEmpty, !batchesFlushed else { return 0 }
        batchesFlushed = true
        var n = 0
        for batch in try maps.eventBatches.values(0) where batch.count > 0 {
            n += Int(batch.count)
            withUnsafeBytes(of: batch) { ringBuffer.inject($0) }
        }
        return n
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
