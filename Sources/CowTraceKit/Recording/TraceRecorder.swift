import CBPF
import CowTraceFormat
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `cowtrace record` is asked to do.
public struct RecorderOptions: Sendable {
    public var tracer = TracerOptions()
    public var path: String
    /// Replace an existing file.
    public var overwrite = false
    /// How often the file gets a complete block, fresh counters and gap
    /// records: what a SIGKILL can lose at most.
    public var flushIntervalSeconds: Double = 0.25
    /// Also record OOM kills (any process on the host).
    public var recordOOMKills = true
    /// As the user asked ("-c cmd args", "-p 1234", "--all"), for the header.
    public var selectionDescription = ""

    public init(path: String) {
        self.path = path
        tracer.emitEvents = true
        tracer.recordAddressSpace = true
        tracer.eventsWithoutWakeup = true
        tracer.ringBufferBytes = 64 << 20
    }
}

/// Figures of a finished (or running) recording.
public struct RecordingSummary: Sendable {
    public var records: UInt64
    public var bytes: UInt64
    public var events: UInt64
    public var lostEvents: UInt64
    public var seconds: Double
}

/// What recording the address spaces of the already-running processes cost
/// at the start: the pages read from their pagemaps, the runs written, the
/// time and the recorder's resident memory around it.
public struct SnapshotCost: Sendable {
    public var processes = 0
    /// Pages summarised (present or swapped) and the page runs they made.
    public var pages: UInt64 = 0
    public var runs = 0
    public var seconds = 0.0
    /// VmRSS before and after, and VmHWM after (KiB).
    public var rssBeforeKiB = 0
    public var rssAfterKiB = 0
    public var peakKiB = 0

    /// "1 process, 4194304 pages in 8192 runs, 1.20 s, RSS +12.0 MiB (peak 80.0 MiB)".
    public var text: String {
        String(format: "%d process%@, %llu pages in %d runs, %.2f s, RSS %+.1f MiB (peak %.1f MiB)",
               processes, processes == 1 ? "" : "es", pages, runs, seconds,
               Double(rssAfterKiB - rssBeforeKiB) / 1024, Double(peakKiB) / 1024)
    }

    static func selfStatus(_ key: String) -> Int {
        guard let text = readPseudoFile("/proc/self/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
        }
        return 0
    }
}

/// Records traced processes into a cowtrace trace file: the live tracer with
/// per-event output, first-touch faults and address-space syscalls, OOM kills,
/// a snapshot of each already-running process, the kernel's counters and
/// every loss as a gap.
public final class TraceRecorder {
    /// Private: its event handler uses this recorder without a retain, so
    /// nothing but the recorder may poll it.
    private let tracer: CowTracer
    /// The tier the fault programs attached on.
    public var tier: AttachTier { tracer.tier }
    private let oom: OOMTracer?
    private let writer: TraceFileWriter
    private let options: RecorderOptions
    private var writeError: Error?
    private var lastDrops = DropCounts()
    private var lastFlush = MonotonicClock.nanoseconds()
    private let started = MonotonicClock.nanoseconds()
    /// Unchecked exclusivity: counted per event, on the one thread that pumps.
    @exclusivity(unchecked) private var events: UInt64 = 0
    private var oomKills: [OOMKill] = []
    /// Processes whose maps were recorded at exec, so a pid reused later is recorded again.
    private var snapshotted = Set<Int32>()
    /// The snapshot of the processes running when the recording started.
    public private(set) var initialSnapshot = SnapshotCost()

    public init(options: RecorderOptions) throws {
        self.options = options
        tracer = try CowTracer(options: options.tracer)
        var tiers = ["faults": tracer.tier.rawValue, "processes": "tracepoint", "address-space": "tracepoint"]
        if options.recordOOMKills {
            let o = try OOMTracer(options: options.tracer)
            tiers["oom"] = o.tier.rawValue
            oom = o
        } else {
            oom = nil
        }
        writer = try TraceFileWriter(path: options.path, header: TraceRecorder.header(options: options, tiers: tiers),
                                     overwrite: options.overwrite)
        // Unretained, and used without a retain: no reference count traffic
        // per event. The tracer, and with it this handler, belongs to self,
        // and only self's pump and finish run it.
        let me = Unmanaged.passUnretained(self)
        try tracer.onRawEvent { bytes in me._withUnsafeGuaranteedRef { $0.receive(bytes) } }
        oom?.onKill { [unowned self] kill in self.oomKills.append(kill) }
        let now = MonotonicClock.nanoseconds()
        var cost = SnapshotCost()
        cost.rssBeforeKiB = SnapshotCost.selfStatus("VmRSS")
        var pids = options.tracer.selection.pids
        if options.tracer.selection.all { pids += TraceRecorder.allPids().filter { $0 != getpid() } }
        for pid in pids {
            let (runs, pages) = snapshot(pid: pid, time: now, pages: true)
            cost.processes += 1
            cost.runs += runs
            cost.pages += pages
        }
        cost.seconds = Double(MonotonicClock.nanoseconds() - now) / 1e9
        cost.rssAfterKiB = SnapshotCost.selfStatus("VmRSS")
        cost.peakKiB = SnapshotCost.selfStatus("VmHWM")
        initialSnapshot = cost
    }

    /// Starts tracing a running process (a cgroup member) and records its address space.
    public func trace(pid: Int32) throws {
        try tracer.trace(pid: pid)
        if !snapshotted.contains(pid) { snapshot(pid: pid, time: MonotonicClock.nanoseconds(), pages: true) }
    }

    /// Records pid's address space; returns the page runs written and the pages they cover.
    @discardableResult
    private func snapshot(pid: Int32, time: UInt64, pages: Bool) -> (runs: Int, pages: UInt64) {
        snapshotted.insert(pid)
        var runs = 0, covered: UInt64 = 0
        for record in AddressSpaceSnapshot.records(pid: pid, time: time, pages: pages) {
            if case .pageRun(let r) = record { runs += 1; covered += UInt64(r.count) }
            writer.append(record)
        }
        return (runs, covered)
    }

    /// Moves what the kernel has into the file; every flush interval, also
    /// counters, gaps and a complete block. Returns the events handled.
    /// `waitMilliseconds`: block up to that long for a wakeup (an exec wakes
    /// the reader at once; other events are collected on the next call).
    @discardableResult
    public func pump(waitMilliseconds: Int32 = 0) throws -> Int {
        // Events sent without a wakeup never make epoll ready: after the wait
        // (which an exec ends early), read whatever is there.
        var n = waitMilliseconds > 0 ? tracer.pollEvents(timeoutMilliseconds: waitMilliseconds) : 0
        n += tracer.consumeEvents()
        _ = oom?.poll(timeoutMilliseconds: 0)
        for kill in oomKills { writer.append(.oomKill(TraceRecorder.record(kill))) }
        oomKills.removeAll()
        if let e = writeError { throw e }
        let now = MonotonicClock.nanoseconds()
        if Double(now - lastFlush) / 1e9 >= options.flushIntervalSeconds {
            try checkpoint(time: now)
            lastFlush = now
        }
        return n
    }

    /// Counters of every traced process, losses since the last checkpoint, and a flush.
    private func checkpoint(time: UInt64) throws {
        let drops = try tracer.drops()
        let deltas: [(LossReason, UInt64, UInt64)] = [
            (.ringBufferFull, drops.ringBufferFull, lastDrops.ringBufferFull),
            (.processMapFull, drops.processMapFull, lastDrops.processMapFull),
            (.infoMapFull, drops.infoMapFull, lastDrops.infoMapFull),
            (.histogramMapFull, drops.histogramMapFull, lastDrops.histogramMapFull),
        ]
        for (reason, now, before) in deltas where now > before {
            writer.append(.gap(GapRecord(time: time, reason: reason, lost: now - before)))
        }
        lastDrops = drops
        let snap = try tracer.snapshot()
        for (pid, c) in snap.counters.sorted(by: { $0.key < $1.key }) {
            writer.append(.counters(CountersRecord(
                time: time, pid: pid, comm: snap.info[pid]?.comm ?? "",
                wpFaults: c.writeProtectFaults, copies: c.copies, zeroFills: c.zeroFills,
                fileCopies: c.fileCopies, sharedWrites: c.sharedWrites, thpWPFaults: c.hugePMDFaults,
                forks: c.forks, execs: c.execs)))
        }
        try writer.flush()
    }

    /// Drains the kernel, writes the final counters and the end record, closes the file.
    public func finish(reason: String) throws -> RecordingSummary {
        // Nothing is sent once detached: drain the rings, then each CPU's
        // last batch of fault events (the kernel holds up to 63 per CPU).
        tracer.detach()
        while try pump() > 0 {}
        try tracer.flushEventBatches()
        let now = MonotonicClock.nanoseconds()
        try checkpoint(time: now)
        writer.append(.end(EndRecord(time: now, reason: reason)))
        try writer.close()
        oom?.close()
        tracer.close()
        return summary
    }

    public var summary: RecordingSummary {
        RecordingSummary(records: UInt64(writer.recordsWritten), bytes: UInt64(writer.bytesWritten), events: events,
                         lostEvents: lastDrops.ringBufferFull + lastDrops.processMapFull + lastDrops.infoMapFull,
                         seconds: Double(MonotonicClock.nanoseconds() - started) / 1e9)
    }

    // MARK: events

    private func receive(_ bytes: UInt8Buffer) {
        guard let base = bytes.baseAddress, bytes.count >= Int(COWTRACE_SHORT_EVENT_SIZE) else { return }
        events += 1
        if TraceRecorder.appendShortEvent(base, to: writer) { return }
        let type = base.load(fromByteOffset: ShortEvent.type, as: UInt8.self)
        if type == UInt8(COWTRACE_EVENT_ADDRESS_SPACE.rawValue) {
            guard bytes.count >= MemoryLayout<cowtrace_vm_event>.size else { return }
            let e = base.loadUnaligned(as: cowtrace_vm_event.self)
            guard let op = TraceRecorder.operation(syscall: e.nr) else { return }
            writer.append(.addressSpace(AddressSpaceRecord(
                time: e.ts_ns, pid: Int32(bitPattern: e.pid), tid: Int32(bitPattern: e.tid), op: op,
                args: [e.arg0, e.arg1, e.arg2, e.arg3, e.arg4], result: e.result)))
            return
        }
        // Process events carry the comm; copy what there is into a zeroed event.
        var e = cowtrace_event()
        withUnsafeMutableBytes(of: &e) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix($0.count))) }
        let pid = Int32(bitPattern: e.pid), tid = Int32(bitPattern: e.tid)
        switch UInt32(e.type) {
        case COWTRACE_EVENT_FORK.rawValue:
            writer.append(.fork(ForkEventRecord(time: e.ts_ns, parent: pid, parentTid: tid,
                                                child: Int32(bitPattern: e.other_pid), comm: TraceRecorder.comm(e))))
        case COWTRACE_EVENT_EXEC.rawValue:
            writer.append(.exec(ExecEventRecord(time: e.ts_ns, pid: pid, tid: tid, comm: TraceRecorder.comm(e))))
            // The new program's mappings (ELF, stack, heap) and the pages exec
            // itself wrote (arguments on the stack, the .bss tail) come from
            // the kernel, not from faults or syscalls the tracer sees: read
            // them while the process runs.
            snapshot(pid: pid, time: e.ts_ns, pages: true)
        case COWTRACE_EVENT_EXIT.rawValue:
            writer.append(.exit(ExitEventRecord(time: e.ts_ns, pid: pid, tid: tid, exitCode: e.other_pid)))
        default:
            break
        }
    }

    /// Byte offsets of cowtrace_event's fields in the short (40-byte) form
    /// the fault events take (checked against the C struct by the tests).
    enum ShortEvent {
        static let time = 0, address = 8, ip = 16, pid = 24, tid = 28, otherPid = 32, type = 36, faultClass = 37
    }

    /// A write-protect fault, first touch or resolve event (at least
    /// COWTRACE_SHORT_EVENT_SIZE bytes at `base`) read field by field
    /// straight into `writer`, the same record `receive` made of a zeroed
    /// cowtrace_event. False, writing nothing, for any other event type.
    @inline(__always)
    static func appendShortEvent(_ base: UnsafeRawPointer, to writer: TraceFileWriter) -> Bool {
        let type = UInt32(base.load(fromByteOffset: ShortEvent.type, as: UInt8.self))
        let isFault = type == COWTRACE_EVENT_WP_FAULT.rawValue || type == COWTRACE_EVENT_FIRST_TOUCH.rawValue
        guard isFault || type == COWTRACE_EVENT_RESOLVE.rawValue else { return false }
        let time = base.loadUnaligned(fromByteOffset: ShortEvent.time, as: UInt64.self)
        let address = base.loadUnaligned(fromByteOffset: ShortEvent.address, as: UInt64.self)
        let pid = base.loadUnaligned(fromByteOffset: ShortEvent.pid, as: Int32.self)
        let tid = base.loadUnaligned(fromByteOffset: ShortEvent.tid, as: Int32.self)
        let kernelClass = base.load(fromByteOffset: ShortEvent.faultClass, as: UInt8.self)
        guard isFault else {
            writer.appendResolve(time: time, pid: pid, tid: tid, address: address,
                                 faultClass: FaultClass(kernel: kernelClass) ?? .other)
            return true
        }
        let ip = base.loadUnaligned(fromByteOffset: ShortEvent.ip, as: UInt64.self)
        let otherPid = base.loadUnaligned(fromByteOffset: ShortEvent.otherPid, as: UInt32.self)
        // Bits 8..15 of a fault event's other_pid: the VMA kind the kernel found.
        let mapping = RecordedMappingKind.fromRawValue(orUnknown: UInt8(truncatingIfNeeded: otherPid >> 8))
        if type == COWTRACE_EVENT_WP_FAULT.rawValue {
            writer.appendFault(time: time, pid: pid, tid: tid, address: address, ip: ip, kind: .writeProtect,
                               faultClass: FaultClass(kernel: kernelClass) ?? .other, mapping: mapping)
        } else {
            writer.appendFault(time: time, pid: pid, tid: tid, address: address, ip: ip,
                               kind: otherPid & 0x2 != 0 ? .firstTouchWrite : .firstTouchRead,
                               faultClass: .unresolved, mapping: mapping)
        }
        return true
    }

    typealias UInt8Buffer = UnsafeRawBufferPointer

    static func operation(syscall nr: UInt32) -> AddressSpaceOp? {
        switch nr {
        case 9: return .mmap
        case 10: return .mprotect
        case 11: return .munmap
        case 12: return .brk
        case 25: return .mremap
        case 28: return .madvise
        default: return nil
        }
    }

    static func comm(_ e: cowtrace_event) -> String {
        cString(e.comm)
    }

    static func record(_ k: OOMKill) -> OOMKillRecord {
        OOMKillRecord(time: k.timestampNanoseconds, victim: k.pid, comm: k.comm, uid: k.uid, oomScoreAdj: k.oomScoreAdj,
                      totalVMKB: k.totalVMKiB, anonRSSKB: k.anonRSSKiB, fileRSSKB: k.fileRSSKiB,
                      shmemRSSKB: k.shmemRSSKiB, pgtablesKB: k.pageTablesKiB,
                      constraint: k.constraint == .memcg ? "memcg \(k.oomCgroup ?? k.cgroup)" : k.constraint.rawValue)
    }

    static func allPids() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.sorted()
    }

    static func header(options: RecorderOptions, tiers: [String: String]) -> TraceHeader {
        var u = utsname()
        uname(&u)
        func field<T>(_ v: inout T) -> String { withUnsafeBytes(of: &v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        let meminfo = readPseudoFile("/proc/meminfo") ?? ""
        func kB(_ key: String) -> UInt64 {
            let line = meminfo.split(separator: "\n").first { $0.hasPrefix(key + ":") }
            return (line?.split(separator: " ").dropFirst().first).flatMap { UInt64($0) }.map { $0 * 1024 } ?? 0
        }
        func sysctl(_ name: String) -> String? { readPseudoFile("/proc/sys/vm/\(name)")?.trimmingCharacters(in: .whitespacesAndNewlines) }
        let thp = readPseudoFile("/sys/kernel/mm/transparent_hugepage/enabled").flatMap { text -> String? in
            guard let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]") else { return nil }
            return String(text[text.index(after: open)..<close])
        } ?? "never"
        var real = timespec(), mono = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        let realNs = Int64(real.tv_sec) * 1_000_000_000 + Int64(real.tv_nsec)
        let monoNs = Int64(mono.tv_sec) * 1_000_000_000 + Int64(mono.tv_nsec)
        return TraceHeader(
            kernelRelease: field(&u.release), hostname: field(&u.nodename), attachTiers: tiers,
            pageSize: UInt32(sysconf(Int32(_SC_PAGESIZE))), realtimeOffsetNanoseconds: realNs - monoNs,
            startTime: UInt64(monoNs), ramBytes: kB("MemTotal"), swapBytes: kB("SwapTotal"),
            overcommitMemory: Int32(sysctl("overcommit_memory") ?? "0") ?? 0,
            overcommitRatio: Int32(sysctl("overcommit_ratio") ?? "50") ?? 50,
            overcommitKBytes: UInt64(sysctl("overcommit_kbytes") ?? "0") ?? 0,
            transparentHugePages: thp, selection: options.selectionDescription, toolVersion: CowTraceVersion.current)
    }
}

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
