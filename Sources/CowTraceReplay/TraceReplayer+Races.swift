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
        guard var list = faultsOnFrame[frame] else { return [] }
        list.removeAll { $0.end < start }
        faultsOnFrame[frame] = list.isEmpty ? nil : list
        return list.filter { $0.pid != pid }
    }

    func rememberFault(on frame: Int, _ fault: FrameFault) {
        faultsOnFrame[frame, default: []].append(fault)
        frameFaultsKept += 1
        // Faults on frames never faulted again would stay forever: drop the finished ones now and then.
        if frameFaultsKept >= frameFaultsSweepAt {
            let now = fault.start
            faultsOnFrame = faultsOnFrame.compactMapValues { list in
                let open = list.filter { $0.end >= now }
                return open.isEmpty ? nil : open
            }
            frameFaultsKept = faultsOnFrame.values.reduce(0) { $0 + $1.count }
            frameFaultsSweepAt = max(1 << 16, 2 * frameFaultsKept)
        }
    }

    /// Relabels an earlier copy-or-reuse disagreement a later overlapping fault
    /// proved a race, unless a reason that comes first in the order already holds.
    func excuseRace(_ i: Int) {
        let d = disagreements[i]
        guard Set([d.kernel, d.model]) == [.copy, .reuse], ReplayReason.racesOverride.contains(d.reason) else { return }
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
        if let oldest = exitedSharers.values.map(\.time).min(), oldest &+ exitTeardownWindowNanoseconds < time {
            exitedSharers = exitedSharers.filter { $0.value.time &+ exitTeardownWindowNanoseconds >= time }
            releasedExits.formIntersection(exitedSharers.values.map(\.pid))
        }
        for (address, frame) in machine.sharedAnonymousPages(pid) {
            exitedSharers[frame] = ExitedSharer(pid: pid, time: time, address: address)
        }
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
