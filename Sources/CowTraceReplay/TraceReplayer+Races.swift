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
    /// A write-protect fault on a frame, kept while a later fault may still overlap it.
    struct FrameFault {
        var pid: Int32
        var start: UInt64
        /// Upper bound of when the fault was over (see `faultEnd`).
        var end: UInt64
        var kernel: ReplayClass
        /// Index in `disagreements` when the model and kernel disagreed on it.
        var disagreement: Int?
    }

    /// When a fault was certainly over: when its thread did something else
    /// next (a thread handles one fault at a time), else its last resolve, else
    /// its start. An upper bound: a thread preempted between two faults
    /// stretches it, so an overlap means the race was possible, not certain.
    static func faultEnd(start: UInt64, _ v: KernelVerdict) -> UInt64 {
        max(start, v.overBy ?? v.resolvedAt ?? start)
    }

    /// The frame a write-protect fault finds mapped before it runs (the 4 KiB
    /// frame inside a huge page; nil for the zero pages).
    func frameBeforeFault(_ pid: Int32, _ page: UInt64) -> Int? {
        guard let info = machine.frameInfo(pid, page), !info.isZeroPage else { return nil }
        return info.frame
    }

    /// The earlier faults of other processes on `frame` whose interval overlaps
    /// one starting at `start` (faults are replayed in start order, so an earlier
    /// one overlaps when it ended at or after `start`).
    func overlappingFaults(on frame: Int, pid: Int32, start: UInt64) -> [FrameFault] {
        // In place (no copy of the list), and no new array unless another process's fault overlaps.
        // An emptied list stays (this fault is remembered on the same frame
        // next, into its storage); the sweep in `rememberFault` drops the rest.
        guard let i = faultsOnFrame.index(forKey: frame) else { return [] }
        faultsOnFrame.values[i].removeAll { $0.end < start }
        let list = faultsOnFrame.values[i]
        guard list.contains(where: { $0.pid != pid }) else { return [] }
        return list.filter { $0.pid != pid }
    }

    /// Whether one class is a copy and the other a reuse.
    @inline(__always)
    static func copyAndReuse(_ a: ReplayClass, _ b: ReplayClass) -> Bool {
        (a == .copy && b == .reuse) || (a == .reuse && b == .copy)
    }

    func rememberFault(on frame: Int, _ fault: FrameFault) {
        faultsOnFrame[frame, default: []].append(fault)
        frameFaultsKept += 1
        // Faults on frames never faulted again would stay forever: drop the finished ones now and then.
        if frameFaultsKept >= frameFaultsSweepAt {
            // In place: no new dictionary or list unless frames have to go.
            let now = fault.start
            var kept = 0, emptied = 0
            var i = faultsOnFrame.values.startIndex
            while i != faultsOnFrame.values.endIndex {
                faultsOnFrame.values[i].removeAll { $0.end < now }
                let n = faultsOnFrame.values[i].count
                kept += n
                if n == 0 { emptied += 1 }
                faultsOnFrame.values.formIndex(after: &i)
            }
            if emptied > 0 { faultsOnFrame = faultsOnFrame.filter { !$0.value.isEmpty } }
            frameFaultsKept = kept
            frameFaultsSweepAt = max(1 << 16, 2 * frameFaultsKept)
        }
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
        exitedSharers.add(pid: pid, time: time, pages: machine.sharedAnonymousPages(pid))
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
/// exit's frames sorted (4 bytes each) with their addresses, instead of a
/// dictionary entry per page (a large process shares every page with the
/// child it forked).
struct ExitedSharers {
    private struct Exit {
        var pid: Int32
        var time: UInt64
        /// Sorted, each once.
        var frames: [Int32]
        var addresses: [UInt64]
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
        return TraceReplayer.ExitedSharer(pid: exits[i].pid, time: exits[i].time, address: exits[i].addresses[k])
    }

    /// The latest exit before `end` that shared `frame`, and the frame's position in it.
    private func find(_ frame: Int, before end: Int) -> (Int, Int)? {
        guard let f = Int32(exactly: frame) else { return nil }
        var i = end
        while i > 0 {
            i -= 1
            let frames = exits[i].frames
            var lo = 0, hi = frames.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if frames[mid] < f { lo = mid + 1 } else { hi = mid }
            }
            if lo < frames.count, frames[lo] == f { return (i, lo) }
        }
        return nil
    }

    /// Drops the exits whose time `expired` says.
    mutating func removeExits(_ expired: (UInt64) -> Bool) {
        exits.removeAll { e in
            guard expired(e.time) else { return false }
            visibleTotal -= e.visible
            return true
        }
    }

    /// One exit's shared pages (address, frame) in address order; a frame
    /// given twice keeps its last (highest) address, as a dictionary filled in that order would.
    mutating func add(pid: Int32, time: UInt64, pages: consuming [(address: UInt64, frame: Int)]) {
        guard !pages.isEmpty else { return }
        pages.sort { $0.frame != $1.frame ? $0.frame < $1.frame : $0.address < $1.address }
        var frames: [Int32] = [], addresses: [UInt64] = []
        frames.reserveCapacity(pages.count)
        addresses.reserveCapacity(pages.count)
        for (address, frame) in pages {
            let f = Int32(truncatingIfNeeded: frame)
            if frames.last == f {
                addresses[addresses.count - 1] = address
            } else {
                frames.append(f)
                addresses.append(address)
            }
        }
        pages = []
        // This exit takes over the frames an earlier exit held.
        if visibleTotal > 0 {
            for f in frames {
                if let (i, _) = find(Int(f), before: exits.count) {
                    exits[i].visible -= 1
                    visibleTotal -= 1
                }
            }
            exits.removeAll { $0.visible == 0 }
        }
        exits.append(Exit(pid: pid, time: time, frames: frames, addresses: addresses, visible: frames.count))
        visibleTotal += frames.count
    }
}
