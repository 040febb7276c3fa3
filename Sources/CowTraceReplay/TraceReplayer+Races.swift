import CowTraceFormat
import MMUSim

/// Concurrent write-protect faults on one frame.
///
/// The kernel decides copy or reuse from the frame's reference count, read
/// under the faulting process's own page-table lock. Two sharers faulting on
/// the same frame at overlapping times take two different locks: each can read
/// the count before the other's copy drops its reference, and both copy (or the
/// later one copies first and the earlier one reuses). Both outcomes are the
/// kernel working as designed. The model applies one fault at a time and
/// predicts copy then reuse; these records let the replay see that the
/// recording shows the overlap, and excuse either outcome.
extension TraceReplayer {
    /// A write-protect fault on a frame, kept while a later fault may still
    /// overlap it. Packed in 25 bytes (no optional stored; widest fields
    /// first), so that a log entry with its link takes 32, not 56: a child
    /// that writes its share of a large snapshot logs a fault a page.
    struct FrameFault {
        var start: UInt64
        /// Upper bound of when the fault was over (see `faultEnd`).
        var end: UInt64
        var pid: Int32
        /// `disagreement`, or -1 for none.
        private var disagreementIndex: Int32
        var kernel: ReplayClass

        init(pid: Int32, start: UInt64, end: UInt64, kernel: ReplayClass, disagreement: Int?) {
            self.start = start
            self.end = end
            self.pid = pid
            self.kernel = kernel
            disagreementIndex = Int32(clamping: disagreement ?? -1)
        }

        /// Index in `disagreements` when the model and kernel disagreed on it.
        var disagreement: Int? {
            get { disagreementIndex < 0 ? nil : Int(disagreementIndex) }
            set { disagreementIndex = Int32(newValue ?? -1) }
        }
    }

    /// The recent write-protect faults by the frame they found mapped: per
    /// frame a chain, latest first, through one array of faults (no list per
    /// frame), its head in `FrameHeads`. Faults are logged in start order, so
    /// a fault that ended before one starts overlaps no later one either: it is
    /// unlinked when met, and the log is compacted now and then.
    struct FrameFaultLog {
        private struct Entry {
            var fault: FrameFault
            /// The frame's previous fault (index in `entries`), -1 for none.
            var older: Int32
            /// The frame's slot in `latest`: compaction finds the heads to move from the faults.
            var slot: Int32
        }
        private var latest = FrameHeads()
        private var entries: [Entry] = []
        private var compactAt = FrameFaultLog.minimumInterval
        /// Faults logged between two compactions at least. Fewer than the
        /// faults of a child writing its share of a large snapshot, which
        /// are over one after the other: the log stays small.
        private static let minimumInterval = 1 << 12

        /// Logs `fault` on `frame`; returns its handle (for `setDisagreement`)
        /// and the earlier faults of other processes on the frame that overlap
        /// it, nil for none (no array to retain and release per fault).
        mutating func add(_ fault: FrameFault, on frame: Int) -> (handle: Int, overlapping: [FrameFault]?) {
            if entries.count >= compactAt { compact(now: fault.start) }
            let slot = latest.slot(frame)
            var first: Int32 = -1, last: Int32 = -1
            var overlapping: [FrameFault]? = nil
            var i = latest[slot]
            while i >= 0 {
                let e = entries[Int(i)]
                if e.fault.end >= fault.start {
                    if last < 0 { first = i } else { entries[Int(last)].older = i }
                    last = i
                    if e.fault.pid != fault.pid {
                        if overlapping == nil { overlapping = [] }
                        overlapping!.append(e.fault)
                    }
                }
                i = e.older
            }
            if last >= 0 { entries[Int(last)].older = -1 }
            let handle = entries.count
            entries.append(Entry(fault: fault, older: first, slot: Int32(truncatingIfNeeded: slot)))
            latest[slot] = Int32(handle)
            return (handle, overlapping)
        }

        mutating func setDisagreement(_ disagreement: Int, handle: Int) {
            entries[handle].fault.disagreement = disagreement
        }

        /// Keeps only the faults not over before `now`, in place. Runs once
        /// as many faults were logged since as it keeps: O(1) a fault. Visits
        /// the faults only, not the chain heads: a head that is set is the
        /// index of its frame's latest fault, which names the frame.
        ///
        /// One pass, in log order. A chain runs from later faults to earlier
        /// ones, so by the time a fault is visited every fault its link can
        /// reach was: `liveAt[i]` says where the first fault kept from `i` down
        /// its chain (`i` itself, else the faults it links to) moved (-1:
        /// none), and a link or a head is
        /// redirected with one lookup instead of a walk down the faults that
        /// are over. A fault kept moves down to the next free index, never
        /// above its own: the faults not visited yet stay where they were.
        private mutating func compact(now: UInt64) {
            var liveAt = [Int32](repeating: -1, count: entries.count)
            var kept = 0
            for i in entries.indices {
                var e = entries[i]
                let olderLive = e.older < 0 ? -1 : liveAt[Int(e.older)]
                if e.fault.end >= now {
                    liveAt[i] = Int32(kept)
                    e.older = olderLive
                    entries[kept] = e
                    kept += 1
                } else {
                    liveAt[i] = olderLive
                }
                // The head names its chain's latest fault: the highest index, visited last.
                let slot = Int(e.slot)
                if latest[slot] == Int32(i) { latest[slot] = liveAt[i] }
            }
            entries.removeLast(entries.count - kept)
            compactAt = kept + max(FrameFaultLog.minimumInterval, kept)
        }
    }

    /// Frame → head of its chain in `FrameFaultLog`, indexed by the model's
    /// frame number (frames are numbered densely from 0, below RAM + swap
    /// pages): no hashing and no probing on the fault path. In chunks of 1024
    /// frames (4 KiB), each made when a frame in it is first faulted on: 4
    /// bytes a frame where faults happen, nothing where none does (a process
    /// found running maps many frames it never write-faults). The chunks lie
    /// one after the other in one array, in the order made, found through a
    /// directory: a head is read or set with one array access, not two.
    struct FrameHeads {
        static let chunkShift = 10
        static let chunkMask = (1 << chunkShift) - 1
        /// Per chunk of frames, where its heads start in `heads`, plus one; 0: no chunk yet.
        private var directory: [Int32] = []
        /// The head of each frame's chain (-1: none), chunk after chunk.
        private var heads: [Int32] = []

        /// The slot of `frame` in `heads`, its chunk made when it has none.
        @inline(__always)
        mutating func slot(_ frame: Int) -> Int {
            let c = frame >> FrameHeads.chunkShift
            if c >= directory.count || directory[c] == 0 { makeChunk(c, frame) }
            return Int(directory[c] &- 1) << FrameHeads.chunkShift | frame & FrameHeads.chunkMask
        }

        /// The head of the chain in `slot` (from `slot`), -1 for none.
        subscript(slot: Int) -> Int32 {
            @inline(__always) get { heads[slot] }
            @inline(__always) set { heads[slot] = newValue }
        }

        @inline(never)
        private mutating func makeChunk(_ c: Int, _ frame: Int) {
            precondition(frame >= 0, "negative frame number")
            if c >= directory.count { directory.append(contentsOf: repeatElement(0, count: c + 1 - directory.count)) }
            directory[c] = Int32(heads.count >> FrameHeads.chunkShift) + 1
            heads.append(contentsOf: repeatElement(-1, count: 1 << FrameHeads.chunkShift))
        }
    }

    /// When a fault was certainly over: when its thread did something else
    /// next (a thread handles one fault at a time), else its last resolve, else
    /// its start. An upper bound: a thread preempted between two faults
    /// stretches it, so an overlap means the race was possible, not certain.
    static func faultEnd(start: UInt64, _ v: KernelVerdict) -> UInt64 {
        max(start, v.end ?? start)
    }

    /// The frame a write-protect fault finds mapped before it runs (the 4 KiB
    /// frame inside a huge page; nil for the zero pages).
    func frameBeforeFault(_ pid: Int32, _ page: UInt64) -> Int? {
        machine.presentFrame(pid, page)
    }

    /// Whether one class is a copy and the other a reuse.
    @inline(__always)
    static func copyAndReuse(_ a: ReplayClass, _ b: ReplayClass) -> Bool {
        (a == .copy && b == .reuse) || (a == .reuse && b == .copy)
    }

    /// Relabels an earlier copy-or-reuse disagreement a later overlapping fault
    /// proved a race, unless a reason that comes first in the order already holds.
    func excuseRace(_ i: Int) {
        let d = disagreements[i]
        guard TraceReplayer.copyAndReuse(d.kernel, d.model), ReplayReason.racesOverride.contains(d.reason) else { return }
        disagreements[i].reason = .concurrentFault
    }

    // MARK: exits

    /// A shared anonymous page of a process at its exit event.
    struct ExitedSharer {
        var pid: Int32
        var time: UInt64
        var address: UInt64
    }

    /// The kernel's exit event fires at the start of do_exit; the address space
    /// is torn down after it (exit_mmap), one page table at a time. Until its
    /// page is zapped the exiting process still holds its reference, so the
    /// other sharer's write copies where the model, which ends the process at
    /// the event, reuses. Remembers which pages were shared, and when.
    func rememberExitingSharer(_ pid: Int32, _ time: UInt64) {
        if let oldest = exitedSharers.oldestTime, oldest &+ exitTeardownWindowNanoseconds < time {
            exitedSharers.removeExits { $0 &+ exitTeardownWindowNanoseconds < time }
            releasedExits.formIntersection(exitedSharers.pids)
        }
        exitedSharers.add(pid: pid, time: time, runs: machine.sharedAnonymousRuns(pid))
    }

    /// Whether a process that mapped this frame at this address exited at most
    /// `exitTeardownWindowNanoseconds` before `time`, and the kernel has not
    /// yet reused a page it shared (which shows its teardown was done).
    func sharerStillExiting(frame: Int, page: UInt64, pid: Int32, time: UInt64) -> Bool {
        guard let e = exitedSharers[frame], e.pid != pid, e.address == page, !releasedExits.contains(e.pid) else {
            return false
        }
        return e.time <= time && time <= e.time &+ exitTeardownWindowNanoseconds
    }

    /// A reuse of a page an exited process shared: its pages are gone from here on.
    func noteReuseAfterExit(frame: Int) {
        if let e = exitedSharers[frame] { releasedExits.insert(e.pid) }
    }
}

/// The shared frames of processes that exited lately, as a dictionary from
/// frame to the latest exit that shared it would hold them, but by exit: each
/// exit's pages as runs of consecutive addresses at consecutive frames,
/// sorted by frame (the array the model returned them in), instead of a
/// dictionary entry per page (a large process shares every page with the
/// child it forked, mostly at consecutive frames).
struct ExitedSharers {
    private struct Exit {
        var pid: Int32
        var time: UInt64
        /// Sorted by frame and disjoint: each frame once (the array handed to `add`, sorted in place).
        var runs: [SharedPageRun]
        /// Frames no later exit shared (the ones a dictionary would still hold for this exit).
        var visible: Int
    }
    /// In exit order (the replay runs in time order, so oldest first).
    private var exits: [Exit] = []
    private var visibleTotal = 0

    var isEmpty: Bool { visibleTotal == 0 }

    /// The earliest exit time of the frames held.
    var oldestTime: UInt64? { exits.lazy.filter { $0.visible > 0 }.map(\.time).min() }

    /// The pids of the frames held.
    var pids: Set<Int32> { Set(exits.lazy.filter { $0.visible > 0 }.map(\.pid)) }

    subscript(frame: Int) -> TraceReplayer.ExitedSharer? {
        guard visibleTotal > 0, let (i, k) = find(frame, before: exits.count) else { return nil }
        return TraceReplayer.ExitedSharer(pid: exits[i].pid, time: exits[i].time,
                                          address: exits[i].runs[k].address(ofFrame: frame))
    }

    /// The latest exit before `end` that shared `frame`, and the run of it there.
    private func find(_ frame: Int, before end: Int) -> (Int, Int)? {
        var i = end
        while i > 0 {
            i -= 1
            if let k = ExitedSharers.run(containing: frame, in: exits[i].runs) { return (i, k) }
        }
        return nil
    }

    /// The run of `runs` (sorted by frame, disjoint) holding `frame`.
    private static func run(containing frame: Int, in runs: [SharedPageRun]) -> Int? {
        // The first run starting after `frame`; the one before it may hold it.
        var lo = 0, hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].frame <= frame { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, frame < runs[lo - 1].frame + runs[lo - 1].count else { return nil }
        return lo - 1
    }

    /// Drops the exits whose time `expired` says.
    mutating func removeExits(_ expired: (UInt64) -> Bool) {
        exits.removeAll { e in
            guard expired(e.time) else { return false }
            visibleTotal -= e.visible
            return true
        }
    }

    /// One exit's shared pages as runs in address order; a frame given twice
    /// keeps its last (highest) address, as a dictionary filled in that order would.
    mutating func add(pid: Int32, time: UInt64, runs: consuming [SharedPageRun]) {
        guard !runs.isEmpty else { return }
        runs.sort { $0.frame != $1.frame ? $0.frame < $1.frame : $0.address < $1.address }
        if !ExitedSharers.areDisjoint(runs) { runs = ExitedSharers.highestAddressPerFrame(runs) }
        var kept = 0
        for r in runs.indices { kept += runs[r].count }
        // This exit takes over the frames an earlier exit held.
        if visibleTotal > 0 {
            for r in runs.indices {
                for frame in runs[r].frame..<runs[r].frame + runs[r].count {
                    if let (i, _) = find(frame, before: exits.count) {
                        exits[i].visible -= 1
                        visibleTotal -= 1
                    }
                }
            }
            exits.removeAll { $0.visible == 0 }
        }
        visibleTotal += kept
        exits.append(Exit(pid: pid, time: time, runs: runs, visible: kept))
    }

    /// Whether no frame is in two of `runs` (sorted by frame).
    private static func areDisjoint(_ runs: [SharedPageRun]) -> Bool {
        for i in runs.indices.dropFirst() where runs[i - 1].frame + runs[i - 1].count > runs[i].frame { return false }
        return true
    }

    /// Runs with each frame once, at its highest address in `runs`. Page by
    /// page: only for a process that maps a frame twice (rare).
    private static func highestAddressPerFrame(_ runs: [SharedPageRun]) -> [SharedPageRun] {
        var pages: [(frame: Int, address: UInt64)] = []
        for run in runs {
            for f in run.frame..<(run.frame + run.count) { pages.append((f, run.address(ofFrame: f))) }
        }
        pages.sort { $0.frame != $1.frame ? $0.frame < $1.frame : $0.address < $1.address }
        var result: [SharedPageRun] = []
        for (i, page) in pages.enumerated() where i + 1 == pages.count || pages[i + 1].frame != page.frame {
            result.appendPage(address: page.address, frame: page.frame)
        }
        return result
    }
}
