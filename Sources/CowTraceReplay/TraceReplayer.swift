import CowTraceFormat
import MMUSim

/// Replays a recording (`cowtrace record`) through the simulated MMU and
/// compares the model's class of every write-protect fault with the kernel's.
///
/// ```swift
/// let result = try TraceReplayer(header: header).replay(records)
/// print(renderReplay(result))
/// let check = TraceCheck(result: result)
/// print(renderCheck(check))
/// ```
///
/// The records are sorted by time first (stably: mapping and pageRun records,
/// which carry no time, keep the time of the record before them). Then each
/// kind of record drives the model (see docs/replay.md): processes found
/// running are rebuilt from their maps and pagemap; fork, exec, exit and the
/// address-space syscalls are replayed; every fault is replayed at its
/// address, and write-protect faults are compared. What the model could not
/// see (mappings made before tracing or by exec, pages populated without a user
/// fault, processes it never saw created) is made up on the spot, and every
/// disagreement it may explain is labelled with a `ReplayReason`.
///
/// A replayer replays one recording: call `replay` once.
public final class TraceReplayer {
    public let header: TraceHeader
    /// The model, after `replay` the state at the end of the recording.
    public let machine: Machine

    var faultTier: String
    var tierSeesSharedWrites: Bool

    // Per-pid bookkeeping next to the model.
    struct PidState {
        /// Pages whose VMA the replay made up (each a one-page VMA).
        var implicitPages: Set<UInt64> = [] {
            didSet {
                fewImplicitPages = implicitPages.count <= 8 ? Array(implicitPages) : nil
                implicitPageBits = implicitPages.count <= 64 ? implicitPages.reduce(0) { $0 | PidState.bit($1) } : ~0
            }
        }
        /// `implicitPages` in an array while they are few (nil once many):
        /// a process has a few such pages at most, usually, and they are
        /// looked for at every write-protect fault.
        private(set) var fewImplicitPages: [UInt64]? = []
        /// The implicit pages' `bit`s (all set once there are many): a page
        /// whose bit is clear is none of them, found without comparing it to each.
        private(set) var implicitPageBits: UInt64 = 0
        @inline(__always)
        static func bit(_ page: UInt64) -> UInt64 { 1 << (page >> 12 & 63) }
        /// The /proc/PID/maps lines recorded at start (inherited by fork, dropped by exec).
        var recordedMaps: [MappingRecord] = []
        /// Whether the model's start_brk is the real one.
        var brkKnown = false
        /// When the address space was last replaced (exec): nothing before matters to its pages.
        var memorySince: UInt64 = 0

        /// `implicitPages.contains(page)`; mutating so that `isImplicitPage` reads it in place.
        /// While the pages are few they are compared one by one in their
        /// array, which costs less than hashing the page or walking the set.
        /// The bit test inlined, the comparisons out of line (for the few pages whose bit is set).
        @inline(__always)
        mutating func hasImplicitPage(_ page: UInt64) -> Bool {
            implicitPageBits & PidState.bit(page) != 0 && comparesImplicitPage(page)
        }

        @inline(never)
        mutating func comparesImplicitPage(_ page: UInt64) -> Bool {
            fewImplicitPages?.contains(page) ?? implicitPages.contains(page)
        }
    }

    /// Whether the replay made up the VMA at `page` of `pid`. Per write-protect
    /// fault, so the state is read in place (`pidState[slot:]` yields it for a
    /// mutating call): `pidState[pid]?` would copy it, retaining and releasing its set and array.
    @inline(__always)
    func isImplicitPage(_ pid: Int32, _ page: UInt64) -> Bool {
        guard let i = pidState.slot(pid) else { return false }
        return pidState[slot: i].hasImplicitPage(page)
    }
    /// By pid (`PidTable`: no hashing per fault).
    var processes = PidTable<ReplayProcess>()
    var pidState = PidTable<PidState>()
    /// Simulated files by key: "path#inode" for /proc maps lines, "fd:pid:fd" for mmap records.
    var files: [String: FileID] = [:]
    /// Kernel frame numbers that two or more pages of traced processes map
    /// (non-exclusive anonymous pages only), and the simulated frame of each once installed.
    var sharedFrameNumbers = SharedFrameNumbers(runStarts: [], runEnds: [])

    // Gaps, and when the model last saw each page (kept only when there are gaps).
    /// How long before a gap record its lost events may lie: the recorder notices
    /// losses when it drains the ring buffer, after they happened.
    public var gapWindowNanoseconds: UInt64 = 1_000_000_000
    var gapTimes: [UInt64] = []
    /// Successful mprotect calls per pid (time, start, end), to undo what a
    /// snapshot read later than its process record already shows.
    var mprotects: [Int32: [(time: UInt64, start: UInt64, end: UInt64)]] = [:]
    /// When each pid's latest process record (snapshot) was taken.
    var snapshotTimes: [Int32: UInt64] = [:]
    struct PageKey: Hashable { var pid: Int32; var page: UInt64 }
    var lastSeen: [PageKey: UInt64] = [:]
    /// Pages installed from a snapshot and not faulted since in the model.
    var snapshotPages = PageBitmapSet()
    /// Processes that forked since their last exec (their snapshot pages may be shared since).
    var forkedSinceExec: Set<Int32> = []
    /// When each forked process was forked, and the children each process forked.
    var forkTimes: [Int32: UInt64] = [:]
    var childrenOf: [Int32: [Int32]] = [:]

    var disagreements: [Disagreement] = []
    /// Recent write-protect faults by the frame they found mapped (see TraceReplayer+Races.swift).
    var frameFaults = FrameFaultLog()
    /// Shared frames of processes that exited lately, by frame (see TraceReplayer+Races.swift).
    var exitedSharers = ExitedSharers()
    /// Exited processes whose pages the kernel was seen to have released (a reuse of one).
    var releasedExits: Set<Int32> = []
    /// How long after its exit event a process may still hold its pages: the
    /// kernel tears the address space down after the event.
    public var exitTeardownWindowNanoseconds: UInt64 = 1_000_000_000
    var stats = ReplayStats()
    var noteIndex: [String: Int] = [:]
    var notes: [ReplayNote] = []
    var gaps: [GapRecord] = []
    var oomKills: [OOMKillRecord] = []
    var end: EndRecord?
    var modelOOMEventsSeen = 0

    /// Builds the model from the header: RAM, swap, overcommit and THP settings.
    /// Throws `ReplayError` for what the model cannot simulate (page sizes other
    /// than 4096, unknown modes, more than 4 TiB).
    public init(header: TraceHeader) throws {
        self.header = header
        machine = Machine(try TraceReplayer.configuration(for: header))
        let tier = header.attachTiers["faults"] ?? header.attachTiers["fault"] ?? ""
        faultTier = tier.isEmpty ? "unknown" : tier
        tierSeesSharedWrites = tier == "fentry" || tier == "kprobe"
    }

    /// The machine configuration a header describes.
    public static func configuration(for header: TraceHeader) throws -> MachineConfiguration {
        guard header.pageSize == 4096 else { throw ReplayError.unsupportedPageSize(header.pageSize) }
        let thp = try thpMode(header.transparentHugePages)
        guard let overcommit = OvercommitMode(rawValue: Int(header.overcommitMemory)) else {
            throw ReplayError.unsupportedOvercommitMode(header.overcommitMemory)
        }
        let ram = header.ramBytes == 0 ? MachineConfiguration().ramBytes : header.ramBytes
        let (sum, overflow) = ram.addingReportingOverflow(header.swapBytes)
        guard !overflow, sum <= Machine.maxMemoryBytes else { throw ReplayError.memoryTooLarge(overflow ? .max : sum) }
        return MachineConfiguration(ramBytes: ram, swapBytes: header.swapBytes, overcommitMode: overcommit,
                                    overcommitRatio: Int(header.overcommitRatio),
                                    overcommitKBytes: Int(clamping: header.overcommitKBytes),
                                    transparentHugePages: thp)
    }

    /// "madvise", "[madvise]" or the whole sysfs line "always [madvise] never".
    static func thpMode(_ text: String) throws -> THPMode {
        var word = String(String(text.drop(while: \.isWhitespace).reversed()).drop(while: \.isWhitespace).reversed())
        if let open = word.firstIndex(of: "["), let close = word[open...].firstIndex(of: "]") {
            word = String(word[word.index(after: open)..<close])
        }
        if word.isEmpty { return .madvise }
        guard let mode = THPMode(rawValue: word) else { throw ReplayError.unsupportedTHPMode(text) }
        return mode
    }

    // MARK: replay

    /// The kernel's class of one write-protect fault, and whether it was inferred
    /// (no resolve and no class on the fault record: a reuse by default).
    struct KernelVerdict {
        var cls: ReplayClass
        var inferred: Bool
        // Carried with every record the model gets: 16 bytes, so no optional stored (UInt64.max: none, never a ktime).
        private var endTime: UInt64
        init(cls: ReplayClass, inferred: Bool, resolvedAt: UInt64? = nil, overBy: UInt64? = nil) {
            self.cls = cls
            self.inferred = inferred
            endTime = overBy ?? resolvedAt ?? .max
        }
        /// With its end already known (`end`).
        init(cls: ReplayClass, inferred: Bool, end: UInt64?) {
            self.cls = cls
            self.inferred = inferred
            endTime = end ?? .max
        }
        /// When the fault was certainly over, if known: when its thread was
        /// next seen doing something else (a fault, an address-space syscall,
        /// exec, exit), else when it was last resolved (the copy's allocation).
        var end: UInt64? { endTime == .max ? nil : endTime }
    }

    /// Replays the records (in any order: they are sorted by time) and returns
    /// the comparison. A recording on disk is better replayed as it is read
    /// (`ReplayPrepass.read`, then `replay(_:visiting:)`, as `cowtrace replay` does).
    public func replay(_ records: [TraceRecord]) -> ReplayResult {
        var prepass = ReplayPrepass()
        for r in records { prepass.feed(r) }
        return replay(consume prepass) { body in for r in records { body(r) } }
    }

    /// Replays one record, in time order; `verdict`: the kernel's class of a fault.
    func apply(_ record: TraceRecord, verdict: KernelVerdict?) {
        switch record {
        case .process(let r): replayProcess(r)
        case .mapping(let r): replayMapping(r)
        case .pageRun(let r): replayPageRun(r)
        case .fork(let r): replayFork(r)
        case .exec(let r): replayExec(r)
        case .exit(let r): replayExit(r)
        case .addressSpace(let r): replayAddressSpace(r)
        case .fault(let r): replayFault(r, verdict: verdict)
        case .resolve: break // folded into the verdicts (VerdictQueue)
        case .oomKill(let r): oomKills.append(r)
        case .gap(let r):
            gaps.append(r)
            stats.gaps += 1
            stats.lostEvents += r.lost
        case .counters(let r): replayCounters(r)
        case .end(let r): end = r
        }
        if machine.oomEvents.count != modelOOMEventsSeen { noteModelOOM() }
    }

    /// The comparison, once every record was replayed.
    func result() -> ReplayResult {
        ReplayResult(header: header, faultTier: faultTier, tierSeesSharedWrites: tierSeesSharedWrites,
                     processes: processes.values.sorted { $0.pid < $1.pid },
                     disagreements: disagreements, gaps: gaps, oomKills: oomKills, end: end,
                     stats: stats, notes: notes)
    }

    // MARK: faults

    struct Hints: OptionSet {
        let rawValue: UInt8
        static let implicitMapping = Hints(rawValue: 1 << 0)
        static let materialized = Hints(rawValue: 1 << 1)
        static let reprotected = Hints(rawValue: 1 << 2)
        static let modelOOM = Hints(rawValue: 1 << 3)
        static let concurrentFault = Hints(rawValue: 1 << 4)
        static let sharerExiting = Hints(rawValue: 1 << 5)
    }

    func replayFault(_ f: CowTraceFormat.FaultRecord, verdict: KernelVerdict?) {
        let pid = f.pid
        let page = f.address & ~UInt64(4095)
        if f.kind != .writeProtect {
            guard ensureProcess(pid) else { return }
            stats.firstTouchFaults += 1
            withProcessRow(pid) { $0.firstTouchFaults += 1 }
            // The fault's site, as for a write-protect fault (below): the
            // fault is taken there unless the replay changed the page first.
            let site = machine.faultSite(pid, containing: page)
            var entryChanged = false
            if site.vma == nil {
                // A file copy on a first touch (do_cow_fault) says the page maps a private file.
                makeImplicitMapping(pid, page, kind: verdict != nil ? .filePrivate : f.mapping)
                entryChanged = true
            }
            // A snapshot read after this fault already shows its result (an
            // exec'd process's maps are read while it runs): undo the page so
            // the fault replays from the state before it.
            if snapshotPages.remove(pid: pid, page: page),
               (entryChanged ? machine.pageTableEntry(pid, page) : site.entry)?.isPresent == true {
                try? machine.madvise(pid, page, length: 4096, .dontNeed)
                stats.snapshotPagesRefaulted += 1
                entryChanged = true
            }
            var outcome: FaultClass? = nil
            do {
                let write = f.kind == .firstTouchWrite
                outcome = try (entryChanged ? machine.fault(pid, at: f.address, write: write)
                    : machine.fault(at: site, write: write))?.faultClass
            } catch {
                modelError("fault refused by the model", "pid \(pid) at \(hex(f.address)): \(error)")
            }
            touch(pid, page, f.time)
            if let kernel = verdict { judgeFirstTouchFileCopy(f, kernel: kernel, outcome: outcome) }
            return
        }

        // The VMA and the entry in one lookup (the fault's site), which also
        // says whether the process is alive (else it is adopted, and the
        // fault replayed again, as for any live process). The entry is read
        // again when the page was changed since, and the fault then finds its
        // site again. One site, never reassigned: the site is large, and a
        // variable assigned twice was copied three times per fault.
        let site = machine.faultSite(pid, containing: page)
        guard site.processIsAlive else {
            // Once: a process ensureProcess adopted is alive (isAlive, as the site says).
            if ensureProcess(pid), machine.isAlive(pid) { replayFault(f, verdict: verdict) }
            return
        }
        stats.writeProtectFaults += 1
        let fromSnapshot = snapshotPages.remove(pid: pid, page: page)
        let kernel = verdict ?? KernelVerdict(cls: .reuse, inferred: true)
        let since = gapTimes.isEmpty ? 0
            : max(lastSeen[PageKey(pid: pid, page: page)] ?? 0, pidState[pid]?.memorySince ?? 0)
        var hints: Hints = []

        var vma = site.vma
        var entryChanged = false
        if vma == nil {
            makeImplicitMapping(pid, page, kind: f.mapping)
            vma = machine.vma(pid, containing: page)
            hints.insert(.implicitMapping)
            entryChanged = true
        } else if isImplicitPage(pid, page) {
            hints.insert(.implicitMapping)
            // Made up at a first touch as anonymous; the kernel says, with
            // this fault, that it maps a file: make it up again as one.
            if f.mapping == .filePrivate || f.mapping == .shared, vma?.file == nil {
                try? machine.munmap(pid, page, length: 4096)
                makeImplicitMapping(pid, page, kind: f.mapping)
                vma = machine.vma(pid, containing: page)
                entryChanged = true
            }
        }
        if fromSnapshot, let vma {
            undoSnapshotCopy(pid, page, vma)
            entryChanged = true
        }
        // The frame the fault finds, from the entry read here when it was present (write-protecting keeps the frame).
        var frameSeen: Int? = nil, entrySeen = false
        // The flags only, not `if let vma`: a copy of the VMA per fault.
        if vma?.flags.contains(.write) == true {
            if let entry = entryChanged ? machine.pageTableEntry(pid, page) : site.entry, entry.isPresent {
                if entry.isWritable, machine.writeProtect(pid, at: page) {
                    stats.reprotectedPages += 1
                    hints.insert(.reprotected)
                }
                frameSeen = Machine.presentFrame(entry, page)
                entrySeen = true
            } else if materialize(pid, page, vma!, kernel: kernel.cls) {
                hints.insert(.materialized)
            }
        }

        let frame = entrySeen ? frameSeen : frameBeforeFault(pid, page)
        // The fault's handle in the log, and the faults it overlaps: nil for
        // none (most faults), no array to retain and release. Two variables,
        // not an optional tuple holding the optional array (an outlined
        // consume of it per fault).
        var logged: Int? = nil
        var racing: [FrameFault]? = nil
        if let frame {
            (logged, racing) = frameFaults.add(FrameFault(pid: pid, start: f.time,
                                                          end: TraceReplayer.faultEnd(start: f.time, kernel),
                                                          kernel: kernel.cls, disagreement: nil), on: frame)
        }

        var outcome: FaultClass? = nil
        var onHugePMD = false
        let oomBefore = machine.oomEvents.count
        do {
            // Only write-protecting (in place) changed the page since its site was found: the fault is taken there.
            let record = try entrySeen && !entryChanged ? machine.fault(at: site, write: true)
                : machine.fault(pid, at: f.address, write: true)
            outcome = record?.faultClass
            onHugePMD = record?.onHugePMD ?? false
        } catch {
            modelError("fault refused by the model", "pid \(pid) at \(hex(f.address)): \(error)")
        }
        if machine.oomEvents.count != oomBefore || outcome == .oom { hints.insert(.modelOOM) }
        touch(pid, page, f.time)

        let model = ReplayClass(model: outcome)
        let copyOrReuse = TraceReplayer.copyAndReuse(kernel.cls, model)
        var disagreement: Int? = nil
        var agreed = false, tierLimited = false
        if model == kernel.cls {
            agreed = true
        } else if kernel.inferred, kernel.cls == .reuse, !tierSeesSharedWrites,
                  model == .sharedWrite || outcome == .segv {
            // The tracepoint tier reads no VMA: a shared write (and a write that
            // ends in SIGSEGV) is a write-protect fault with no copy, i.e. a reuse.
            agreed = true
            tierLimited = true
        } else {
            if copyOrReuse, racing != nil { hints.insert(.concurrentFault) }
            if kernel.cls == .copy, model == .reuse, let frame,
               sharerStillExiting(frame: frame, page: page, pid: pid, time: f.time) {
                hints.insert(.sharerExiting)
            }
            // Both sharers copied: one of the copies was not needed.
            let wasted = kernel.cls == .copy && model == .reuse
                && (racing?.contains { $0.kernel == .copy } ?? true)
            let reason = disagreementReason(hints: hints, since: since, now: f.time, kernel: kernel.cls,
                                            model: model, outcome: outcome, onHugePMD: onHugePMD, vma: vma)
            disagreement = disagreements.count
            disagreements.append(Disagreement(time: f.time, pid: pid, tid: f.tid, address: f.address,
                                              kernel: kernel.cls, model: model,
                                              modelOutcome: outcome?.description ?? "none", reason: reason,
                                              wastedCopy: wasted))
        }
        tallyFault(pid, kernel: kernel.cls, model: model, agreed: agreed, tierLimited: tierLimited)
        if let frame, kernel.cls == .reuse, !exitedSharers.isEmpty { noteReuseAfterExit(frame: frame) }
        // The earlier sharer's disagreement (it reused, or copied, where the
        // model says otherwise) is legal too once this fault overlaps it.
        if kernel.cls == .copy || kernel.cls == .reuse, let racing {
            for earlier in racing { if let i = earlier.disagreement { excuseRace(i) } }
        }
        if let disagreement, let logged { frameFaults.setDisagreement(disagreement, handle: logged) }
    }

    /// A not-present write the kernel counted as a file copy (do_cow_fault):
    /// compared with the model like a write-protect fault.
    /// Changes the process's row in place, made (adopted, comm "?") when it
    /// has none. In place: a copy of the row in and out per fault costs more
    /// than the fault; and not through `processes[pid, default: ...]`, whose
    /// default (an autoclosure) is allocated on the heap at every call.
    @inline(__always)
    func withProcessRow(_ pid: Int32, _ body: (inout ReplayProcess) -> Void) {
        body(&processes[slot: processes.slot(pid) ?? addProcessRow(pid)])
    }

    /// A new row for `pid` (adopted, comm "?"); its slot. Out of line: the
    /// row is large, and building it inline gave every caller a large frame.
    @inline(never)
    func addProcessRow(_ pid: Int32) -> Int {
        processes.insert(pid, ReplayProcess(pid: pid, comm: "?", origin: .adopted))
    }

    /// Counts one compared write-protect fault in the process's row. Out of
    /// line: inlined into replayFault, the row's uniqueness check, bounds
    /// check and unwrap were each a call of their own.
    @inline(never)
    func tallyFault(_ pid: Int32, kernel: ReplayClass, model: ReplayClass, agreed: Bool, tierLimited: Bool) {
        withProcessRow(pid) { $0.tally(kernel: kernel, model: model, agreed: agreed, tierLimited: tierLimited) }
    }

    func judgeFirstTouchFileCopy(_ f: CowTraceFormat.FaultRecord, kernel: KernelVerdict, outcome: FaultClass?) {
        let model = ReplayClass(model: outcome)
        var p = processes[f.pid] ?? ReplayProcess(pid: f.pid, comm: "?", origin: .adopted)
        p.kernel[kernel.cls] += 1
        p.model[model] += 1
        if model == kernel.cls {
            p.agreements += 1
        } else {
            let page = f.address & ~UInt64(4095)
            let vma = machine.vma(f.pid, containing: page)
            let hints: Hints = pidState[f.pid]?.implicitPages.contains(page) == true ? .implicitMapping : []
            let reason = disagreementReason(hints: hints, since: 0, now: f.time, kernel: kernel.cls, model: model,
                                            outcome: outcome, onHugePMD: false, vma: vma)
            disagreements.append(Disagreement(time: f.time, pid: f.pid, tid: f.tid, address: f.address,
                                              kernel: kernel.cls, model: model,
                                              modelOutcome: outcome?.description ?? "none", reason: reason))
        }
        processes[f.pid] = p
    }

    func disagreementReason(hints: Hints, since: UInt64, now: UInt64, kernel: ReplayClass, model: ReplayClass,
                            outcome: FaultClass?, onHugePMD: Bool, vma: VMArea?) -> ReplayReason {
        if hints.contains(.implicitMapping) { return .mappingBeforeTrace }
        if gapBetween(since, now) { return .eventsLostInGap }
        if hints.contains(.materialized) { return .pagePopulatedOutside }
        if hints.contains(.reprotected) { return .writeProtectedOutside }
        if hints.contains(.modelOOM) { return .modelOutOfMemory }
        if outcome == .segv { return .protectionChangedOutside }
        if hints.contains(.concurrentFault) { return .concurrentFault }
        if hints.contains(.sharerExiting) { return .sharerExiting }
        if onHugePMD || vma.map(thpEligible) == true { return .thpSplit }
        if kernel == .copy && model == .reuse { return .transientReference }
        if kernel == .reuse && model == .copy { return .sharerNotSeen }
        return .unexplained
    }

    /// Whether a gap was recorded after `since` and no later than `now` plus
    /// the gap window (a gap recorded just after the fault may hold the fault's resolve).
    func gapBetween(_ since: UInt64, _ now: UInt64) -> Bool {
        guard !gapTimes.isEmpty else { return false }
        let now = now &+ gapWindowNanoseconds
        var lo = 0, hi = gapTimes.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if gapTimes[mid] <= since { lo = mid + 1 } else { hi = mid }
        }
        return lo < gapTimes.count && gapTimes[lo] <= now
    }

    @inline(__always) // per fault, and nothing to do without gaps
    func touch(_ pid: Int32, _ page: UInt64, _ time: UInt64) {
        if !gapTimes.isEmpty { lastSeen[PageKey(pid: pid, page: page)] = time }
    }

    /// Whether anonymous memory of this VMA may be backed by huge pages under the host's THP mode.
    func thpEligible(_ vma: VMArea) -> Bool {
        guard vma.isAnonymous, !vma.isShared, !vma.flags.contains(.noHugePage),
              vma.end - vma.start >= 2 << 20 else { return false }
        switch machine.configuration.transparentHugePages {
        case .always: return true
        case .madvise: return vma.flags.contains(.hugePage)
        case .never: return false
        }
    }

    /// A snapshot read at exec is read while the program runs, so it can show
    /// the result of a write-protect fault recorded after the exec: the anon
    /// copy of a private file page. A fresh mm has no anon page in a private
    /// file mapping but the one exec itself wrote (the .bss tail), which is
    /// writable and does not fault until a fork write-protects it. So a
    /// write-protect fault on such a page, before the process forked, finds the
    /// page-cache page: put it back so the fault replays from the state before it.
    func undoSnapshotCopy(_ pid: Int32, _ page: UInt64, _ vma: VMArea) {
        guard vma.file != nil, !vma.isShared, let since = pidState[pid]?.memorySince, since > 0,
              snapshotTimes[pid] == since, !forkedSinceExec.contains(pid),
              let info = machine.frameInfo(pid, page), info.isAnon else { return }
        do {
            try machine.madvise(pid, page, length: 4096, .dontNeed)
            try machine.installPage(pid, at: page, .file)
            stats.snapshotPagesRefaulted += 1
        } catch {
            modelError("page could not be put back as it was before a snapshot", "pid \(pid) at \(hex(page)): \(error)")
        }
    }

    /// Installs the page a write-protect fault found present in the kernel but the
    /// model never populated: a page-cache page in a file or shared mapping
    /// (fault-around, or a read before tracing), else an anonymous page
    /// (populated by the kernel itself: exec's stack, read() into a buffer,
    /// MAP_POPULATE). In a private file mapping, a copy or reuse shows the page
    /// was anonymous already (a page-cache page is a file copy): written before
    /// the trace, or by exec (the .bss tail, cleared by the kernel). An
    /// anonymous page is shared with the processes forked since it existed
    /// (`forkSharers`), else exclusive.
    func materialize(_ pid: Int32, _ page: UInt64, _ vma: VMArea, kernel: ReplayClass) -> Bool {
        let anonymous = vma.isShared ? false : vma.file == nil || kernel == .copy || kernel == .reuse
        do {
            guard anonymous else {
                try machine.installPage(pid, at: page, .file)
                stats.materializedPages += 1
                return true
            }
            let sharers = forkSharers(pid, page, vma)
            let frame = try machine.installPage(pid, at: page, .anonymous(exclusive: true))
            for sharer in sharers { try machine.installPage(sharer, at: page, .frame(frame)) }
            stats.materializedPages += 1 + sharers.count
            return true
        } catch {
            modelError("page could not be materialized", "pid \(pid) at \(hex(page)): \(error)")
            return false
        }
    }

    /// The other processes that map the page `pid` write-protect faulted on,
    /// when the model has it in none of them. The fault found a present,
    /// read-only PTE in a private mapping; a page the kernel populates itself
    /// is mapped writable (a read maps the zero page, which zero-fills), so a
    /// fork made it read-only, and a first touch after that fork would have
    /// been recorded: the page existed before the fork. So a forked child's
    /// parent maps it too (and so on up), and so does every live process forked
    /// since that has not exec'd and has nothing at that address in the model.
    func forkSharers(_ pid: Int32, _ page: UInt64, _ vma: VMArea) -> [Int32] {
        forkFamily(pid) { q in
            guard self.machine.isAlive(q), let qv = self.machine.vma(q, containing: page), !qv.isShared,
                  qv.file == vma.file, qv.flags.isDisjoint(with: [.dontCopy, .wipeOnFork]) else { return false }
            return self.machine.pageTableEntry(q, page)?.isPresent != true
        }
    }

    /// The processes `pid` shares its address space's past with through forks,
    /// as far as each is `included`: the parent it was forked from (not exec'd
    /// since), that parent's parent, and so on up; then everything forked from
    /// the topmost one since its exec (and not exec'd since), down the tree.
    func forkFamily(_ pid: Int32, _ included: (Int32) -> Bool) -> [Int32] {
        func forkedFrom(_ child: Int32, _ parent: Int32) -> Bool {
            guard processes[child]?.origin == .forked, processes[child]?.parent == parent,
                  let at = forkTimes[child], at >= pidState[parent]?.memorySince ?? 0 else { return false }
            return pidState[child]?.memorySince ?? 0 <= at
        }
        var root = pid
        while let parent = processes[root]?.parent, forkedFrom(root, parent), included(parent) { root = parent }
        var family: Set<Int32> = [root]
        var queue = [root]
        while let q = queue.popLast() {
            for child in childrenOf[q] ?? []
            where !family.contains(child) && forkedFrom(child, q) && (child == pid || included(child)) {
                family.insert(child)
                queue.append(child)
            }
        }
        family.remove(pid)
        return family.sorted()
    }

    /// A one-page VMA for a fault where the model has none: as the recorded
    /// /proc maps line that covers it says, else private anonymous read-write memory.
    /// `kind`: what the kernel said the VMA was at the fault (recorded with it).
    /// A mapping the model lacks was made by exec or before tracing (a later
    /// mmap is recorded), so the processes forked from this one since, and the
    /// one it was forked from, have it too where the model has nothing there.
    func makeImplicitMapping(_ pid: Int32, _ page: UInt64, kind: RecordedMappingKind = .unknown) {
        // Below mmap_min_addr or above the user address space, the kernel raised SIGSEGV.
        guard page >= 0x10000, page < Paging.userAddressLimit else { return }
        let end = page + 4096
        let relatives = forkFamily(pid) { self.machine.isAlive($0) && self.machine.vma($0, containing: page) == nil }
        // A file the model never saw mapped: a made-up one, one per page (and family).
        let madeUp = { (shared: Bool) in
            self.fileObject(key: "implicit:\(pid):\(hex(page))", name: "(mapped before tracing)", shmem: shared, bytes: 4096)
        }
        let line = pidState[pid]?.recordedMaps.first(where: { $0.start <= page && page < $0.end })
        for q in [pid] + relatives {
            do {
                if let line, let spec = MappingSpec(line), spec.kind != .ignored {
                    let pgoff = Int(line.offset >> 12) + Int((page - line.start) >> 12)
                    try adopt(q, spec, start: page, end: end, pgoff: pgoff, heap: false)
                } else {
                    switch kind {
                    case .filePrivate, .shared:
                        try machine.adoptMapping(q, start: page, end: end, protection: .readWrite, shared: kind == .shared,
                                                 file: madeUp(kind == .shared), pgoff: 0, heap: false)
                    case .anonymousPrivate, .unknown:
                        try machine.adoptMapping(q, start: page, end: end, protection: .readWrite, shared: false)
                    }
                }
                pidState[q, default: PidState()].implicitPages.insert(page)
                stats.implicitMappings += 1
            } catch {
                modelError("no mapping could be made up", "pid \(q) at \(hex(page)): \(error)")
            }
        }
    }

    // MARK: processes

    /// Makes sure the model has a live process `pid`; adopts it (empty) if not.
    @discardableResult
    func ensureProcess(_ pid: Int32, comm: String? = nil) -> Bool {
        if machine.isAlive(pid) { return true }
        do {
            try machine.spawn(comm: comm ?? "?", pid: pid)
        } catch {
            modelError("process could not be adopted", "pid \(pid): \(error)")
            return false
        }
        stats.adoptedProcesses += 1
        if var p = processes[pid], p.origin != .countersOnly {
            p.exited = false
            processes[pid] = p
        } else {
            let counters = processes[pid]?.counters
            var p = ReplayProcess(pid: pid, comm: comm ?? counters?.comm ?? "?", origin: .adopted)
            p.counters = counters
            processes[pid] = p
        }
        pidState[pid] = PidState()
        return true
    }

    func replayCounters(_ c: CountersRecord) {
        if processes[c.pid] == nil {
            processes[c.pid] = ReplayProcess(pid: c.pid, comm: c.comm, origin: .countersOnly)
        }
        processes[c.pid]!.counters = c
        if processes[c.pid]!.comm == "?" { processes[c.pid]!.comm = c.comm }
    }

    func noteModelOOM() {
        for event in machine.oomEvents[modelOOMEventsSeen...] {
            if let v = event.victim {
                note("the model's OOM killer killed a process", "pid \(v.pid) (\(v.comm))")
            } else {
                note("the model ran out of memory with nothing to kill", event.dmesg)
            }
        }
        modelOOMEventsSeen = machine.oomEvents.count
    }

    // MARK: notes

    func note(_ kind: String, _ example: @autoclosure () -> String) {
        if let i = noteIndex[kind] {
            notes[i].count += 1
        } else {
            noteIndex[kind] = notes.count
            notes.append(ReplayNote(kind: kind, count: 1, example: example()))
        }
    }

    /// The kernel did something the model refused or could not do.
    func modelError(_ kind: String, _ example: @autoclosure () -> String) {
        stats.modelErrors += 1
        note(kind, example())
    }
}

extension ReplayProcess {
    /// Counts one compared fault.
    @inline(__always)
    mutating func tally(kernel: ReplayClass, model: ReplayClass, agreed: Bool, tierLimited: Bool) {
        self.kernel.countOne(kernel)
        self.model.countOne(model)
        if agreed { agreements += 1 }
        if tierLimited { tierLimitedAgreements += 1 }
    }
}
