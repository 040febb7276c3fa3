import CowTraceFormat
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One interval of a snapshot child's life: the pages each side copied in
/// it, and everything copied since the fork.
public struct ForkProfileSample: Codable, Equatable, Sendable {
    /// Seconds from the fork to the end of this interval.
    public var elapsedSeconds: Double
    public var parentCopies: UInt64
    public var childCopies: UInt64
    /// Bytes copied by both sides since the fork, up to this interval's end.
    public var bytesCopiedSoFar: UInt64

    public init(elapsedSeconds: Double, parentCopies: UInt64, childCopies: UInt64, bytesCopiedSoFar: UInt64) {
        self.elapsedSeconds = elapsedSeconds
        self.parentCopies = parentCopies
        self.childCopies = childCopies
        self.bytesCopiedSoFar = bytesCopiedSoFar
    }
}

/// What one fork cost, from the fork to the child's exit (or exec): the
/// copies each side made while the child lived, the timeline, and the
/// parent's time in the fork syscall.
public struct ForkProfile: Codable, Equatable, Sendable {
    public enum End: String, Codable, Sendable { case exit, exec, running }

    public var parent: Int32
    public var child: Int32
    public var childComm: String
    public var pageSize: UInt64
    /// The parent's time in fork/clone; nil when the syscall's start was not seen.
    public var forkLatencyNanoseconds: UInt64?
    /// Pages mapped by the parent at fork (total_vm).
    public var mappedPagesAtFork: UInt64?
    public var durationSeconds: Double
    /// How the profile ended: the child exited or exec'd, or cowtrace was
    /// stopped while it still ran.
    public var endedBy: End
    /// The child's exit status as a shell's `$?` shows it (128 + signal when killed).
    public var childExitCode: Int32?
    /// How the child ended, in words: "exited with status 0", "killed by SIGSEGV".
    public var childExit: String?
    /// Pages the parent copied while the child lived: each one leaves the
    /// old page to the child alone.
    public var parentCopies: UInt64
    /// Pages the child copied.
    public var childCopies: UInt64
    public var samples: [ForkProfileSample]
    /// Events the kernel side lost while profiling (ring buffer, full maps).
    public var drops: UInt64

    public var totalCopies: UInt64 { parentCopies + childCopies }
    public var bytesCopied: UInt64 { totalCopies &* pageSize }

    /// The interval that copied the most.
    public var peakSample: ForkProfileSample? {
        samples.max { $0.parentCopies + $0.childCopies < $1.parentCopies + $1.childCopies }
    }
}

/// Follows the forks of one traced process: waits for the next one, then
/// samples both sides' copies every interval until the child exits or execs.
/// The tracer must trace the parent with `forkLineage` on; without a fork
/// record (map full) the child is found through the process identities and
/// the fork latency is unknown.
public final class ForkProfiler {
    public let tracer: CowTracer
    public let parent: Int32
    private var armedAt: UInt64 = 0
    private var parentBaseline: UInt64 = 0
    private var seen = Set<Int32>()

    public init(tracer: CowTracer, parent: Int32) {
        self.tracer = tracer
        self.parent = parent
        arm()
    }

    /// Forks from now on count; earlier ones are ignored.
    public func arm() {
        armedAt = monotonicNanoseconds()
        parentBaseline = (try? tracer.snapshot().counters[parent].map(copies)) ?? 0
    }

    /// Polls until the parent forks a child it has not profiled yet. Returns
    /// nil on timeout, when `shouldStop` says so, or when the parent exits.
    public func waitForFork(timeoutSeconds: Double?, shouldStop: () -> Bool = { false }) throws -> Int32? {
        let deadline = timeoutSeconds.map { monotonicSeconds() + $0 }
        while true {
            let snapshot = try tracer.snapshot()
            if let child = try newChild(in: snapshot) {
                seen.insert(child)
                return child
            }
            if snapshot.info[parent]?.exited == true || (kill(parent, 0) != 0 && errno == ESRCH) { return nil }
            parentBaseline = snapshot.counters[parent].map(copies) ?? parentBaseline
            if shouldStop() { return nil }
            if let deadline, monotonicSeconds() >= deadline { return nil }
            usleep(5_000)
        }
    }

    private func newChild(in snapshot: TraceSnapshot) throws -> Int32? {
        let viaRecords = try tracer.forkRecords()
            .filter { $0.parent == parent && $0.forkNanoseconds >= armedAt && !seen.contains($0.child) }
            .map(\.child)
        if let first = viaRecords.first { return first }
        return snapshot.info
            .filter { $0.value.ppid == parent && $0.value.startNanoseconds >= armedAt && !seen.contains($0.key) }
            .min { $0.value.startNanoseconds < $1.value.startNanoseconds }?.key
    }

    /// Samples every `intervalSeconds` until the child exits or execs (or
    /// `shouldStop`), handing each sample to `onSample` as it completes.
    public func follow(child: Int32, intervalSeconds: Double, shouldStop: () -> Bool = { false },
                       onSample: (ForkProfileSample) -> Void = { _ in }) throws -> ForkProfile {
        let startDrops = try tracer.drops().total
        var record = try tracer.forkRecords().first { $0.child == child && $0.parent == parent }
        var snapshot = try tracer.snapshot()
        let forkNs = record?.forkNanoseconds ?? snapshot.info[child]?.startNanoseconds ?? monotonicNanoseconds()
        let parentAtFork = record?.parentCopiesAtFork ?? parentBaseline

        var samples: [ForkProfileSample] = []
        var lastParent: UInt64 = 0, lastChild: UInt64 = 0
        var nextSampleNs = forkNs + UInt64(intervalSeconds * 1e9)
        var end = ForkProfile.End.running
        var endNs: UInt64 = 0
        var parentTotal: UInt64 = 0, childTotal: UInt64 = 0
        while true {
            let now = monotonicNanoseconds()
            snapshot = try tracer.snapshot()
            record = try tracer.forkRecords().first { $0.child == child && $0.parent == parent } ?? record
            let childInfo = snapshot.info[child]
            let childCounters = snapshot.counters[child] ?? ProcessCounters()
            // Cumulative figures never go down: a source that reads lower
            // (a child's slot freed at exit, a parent gone) keeps the last.
            parentTotal = max(parentTotal, snapshot.counters[parent].map { sub(copies($0), parentAtFork) } ?? 0)
            childTotal = max(childTotal, copies(childCounters))
            if let r = record, let how = r.endedBy {
                end = how == .exec ? .exec : .exit
                endNs = r.endNanoseconds ?? now
                parentTotal = max(parentTotal, r.parentCopiesDuring() ?? 0)
                childTotal = max(childTotal, r.childCopiesAtEnd ?? 0)
            } else if childCounters.execs > 0 {
                end = .exec
                endNs = now
            } else if childInfo?.exited == true || childInfo == nil && kill(child, 0) != 0 && errno == ESRCH {
                end = .exit
                endNs = childInfo?.exitNanoseconds ?? now
            }
            let stop = end == .running && shouldStop()
            let sampleEnd = end == .running ? now : endNs
            if sampleEnd >= nextSampleNs || end != .running || stop {
                let sample = ForkProfileSample(
                    elapsedSeconds: Double(sampleEnd &- forkNs) / 1e9,
                    parentCopies: sub(parentTotal, lastParent),
                    childCopies: sub(childTotal, lastChild),
                    bytesCopiedSoFar: (parentTotal + childTotal) * tracer.pageSize)
                samples.append(sample)
                onSample(sample)
                lastParent = parentTotal
                lastChild = childTotal
                while nextSampleNs <= sampleEnd { nextSampleNs += UInt64(intervalSeconds * 1e9) }
            }
            if end != .running || stop {
                if stop { endNs = now }
                break
            }
            let wait = min(Double(nextSampleNs &- monotonicNanoseconds()) / 1e9, 0.02)
            if wait > 0 { usleep(useconds_t(wait * 1e6)) }
        }
        let childInfo = snapshot.info[child]
        let exit = end == .exit ? childInfo.map { ExitStatus(raw: $0.exitCode) } : nil
        return ForkProfile(
            parent: parent, child: child, childComm: childInfo?.comm ?? ProcFS.comm(of: child) ?? "?",
            pageSize: tracer.pageSize,
            forkLatencyNanoseconds: record?.latencyNanoseconds,
            mappedPagesAtFork: record?.totalVMPages,
            durationSeconds: Double(endNs &- forkNs) / 1e9,
            endedBy: end,
            childExitCode: exit?.shellCode, childExit: exit?.description,
            parentCopies: parentTotal, childCopies: childTotal,
            samples: samples,
            drops: sub(try tracer.drops().total, startDrops))
    }

    private func copies(_ c: ProcessCounters) -> UInt64 { c.pagesCopied }
}

private func sub(_ a: UInt64, _ b: UInt64) -> UInt64 { a >= b ? a - b : 0 }

public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

private func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) / 1e9 }

/// The text rendering shared by `cowtrace fork-profile` and `cowtrace redis`.
public enum ForkProfileText {
    public static let timelineHeader = pad("ELAPSED", 9) + " " + pad("PARENT", 12) + " " + pad("CHILD", 12) + " " + pad("COPIED(MiB)", 14)

    private static func pad(_ s: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - s.count)) + s
    }

    public static func row(_ s: ForkProfileSample) -> String {
        String(format: "%8.2fs %12llu %12llu %14.1f", s.elapsedSeconds, s.parentCopies, s.childCopies, mebibytes(s.bytesCopiedSoFar))
    }

    /// The summary lines after the timeline.
    public static func summary(_ p: ForkProfile) -> [String] {
        var lines: [String] = []
        let ended: String
        switch p.endedBy {
        case .exit: ended = p.childExit ?? "exited"
        case .exec: ended = "exec'd"
        case .running: ended = "still running (stopped following)"
        }
        lines.append("child \(p.child) (\(p.childComm)) of \(p.parent): \(ended) after \(String(format: "%.2f", p.durationSeconds)) s")
        lines.append(String(format: "copied:        %.1f MiB (%llu pages: parent %llu, child %llu)",
                            mebibytes(p.bytesCopied), p.totalCopies, p.parentCopies, p.childCopies))
        if let peak = p.peakSample, peak.parentCopies + peak.childCopies > 0 {
            lines.append(String(format: "peak interval: %.1f MiB copied in the interval ending at %.2f s",
                                mebibytes((peak.parentCopies + peak.childCopies) * p.pageSize), peak.elapsedSeconds))
        }
        if let latency = p.forkLatencyNanoseconds {
            var line = String(format: "fork latency:  %.3f ms in the fork syscall", Double(latency) / 1e6)
            if let mapped = p.mappedPagesAtFork {
                line += String(format: " (%.1f MiB mapped)", mebibytes(mapped * p.pageSize))
            }
            lines.append(line)
        } else {
            lines.append("fork latency:  unknown (the fork syscall began before tracing)")
        }
        if p.drops > 0 { lines.append("warning: the kernel side lost \(p.drops) events while profiling; counts may be low") }
        return lines
    }

    public static func mebibytes(_ bytes: UInt64) -> Double { Double(bytes) / 1_048_576 }
}
