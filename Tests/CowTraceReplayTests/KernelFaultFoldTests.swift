@testable import CowTraceReplay
import CowTraceFormat
import Foundation
import XCTest

/// `cowtrace report` (RecordedTotals) and `replay`/`check` (TraceReplayer)
/// fold the resolve records with one fold (KernelFaultFold): on the same
/// recording file, their per-process kernel classes are the same numbers.
final class KernelFaultFoldTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000

    func fault(_ b: inout TraceBuilder, _ pid: Int32, tid: Int32, _ address: UInt64,
               _ kind: RecordedFaultKind = .writeProtect, carried: RecordedFaultClass = .unresolved) {
        b.records.append(.fault(CowTraceFormat.FaultRecord(time: b.tick(), pid: pid, tid: tid, address: address, ip: 0x401000,
                                                           kind: kind, faultClass: carried)))
    }

    func resolve(_ b: inout TraceBuilder, _ pid: Int32, tid: Int32, _ address: UInt64, _ cls: RecordedFaultClass) {
        b.records.append(.resolve(ResolveRecord(time: b.tick(), pid: pid, tid: tid, address: address, faultClass: cls)))
    }

    /// A recording with every case where the two folds' rules differed:
    /// - pid 1001 (child): 6 copies; thread 1101 faults, the process exits, and
    ///   a resolve with tid 1101 comes after the exit (a new thread's, its fault lost);
    /// - pid 1002: a write-protect fault the fault record calls a shared write
    ///   (fentry), then resolved `.unresolved` (not a copy after all);
    /// - pid 1003: a copy undone by an `.unresolved` resolve; a first-touch
    ///   write's file copy undone (swap-in); a first-touch write's file copy kept;
    /// - pid 1000 (parent): faults still pending at the end.
    func recording() -> TraceBuilder {
        var b = TraceBuilder(tier: "fentry")
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 64)
        b.touch(1000, at: A, pages: 64, write: true)
        b.fork(1000, 1001, comm: "child")
        b.wp(1001, at: A, pages: 6, .copy)
        // Thread exit with a pending fault, then a resolve of that tid.
        fault(&b, 1001, tid: 1001, A + 10 * page)
        b.exit(1001)
        resolve(&b, 1001, tid: 1001, A + 10 * page, .copy)

        b.fork(1000, 1002, comm: "shared")
        fault(&b, 1002, tid: 1002, A + 20 * page, carried: .sharedWrite)
        resolve(&b, 1002, tid: 1002, A + 20 * page, .unresolved)

        b.fork(1000, 1003, comm: "undone")
        fault(&b, 1003, tid: 1003, A + 30 * page)
        resolve(&b, 1003, tid: 1003, A + 30 * page, .copy)
        resolve(&b, 1003, tid: 1003, A + 30 * page, .unresolved)
        fault(&b, 1003, tid: 1003, A + 100 * page, .firstTouchWrite)
        resolve(&b, 1003, tid: 1003, A + 100 * page, .fileCopy)
        resolve(&b, 1003, tid: 1003, A + 100 * page, .unresolved)
        fault(&b, 1003, tid: 1003, A + 101 * page, .firstTouchWrite)
        resolve(&b, 1003, tid: 1003, A + 101 * page, .fileCopy)

        b.wp(1000, at: A + 40 * page, pages: 3, .copy)
        fault(&b, 1000, tid: 1000, A + 50 * page)
        b.records.append(.end(EndRecord(time: b.tick(), reason: "command exited")))
        return b
    }

    func write(_ b: TraceBuilder) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-fold-\(getpid()).ctr").path
        let w = try TraceFileWriter(path: path, header: b.header, overwrite: true)
        for r in b.records { w.append(r) }
        try w.close()
        return path
    }

    func testReportAndReplayKernelClassesAgreeOnTheSameFile() throws {
        let path = try write(recording())
        defer { try? FileManager.default.removeItem(atPath: path) }
        let contents = try TraceFileReader.read(path: path)
        let report = RecordedTotals(records: contents.records, header: contents.header)
        let replay = try TraceReplayer(header: contents.header).replay(contents.records)

        for pid: Int32 in [1000, 1001, 1002, 1003] {
            let r = try XCTUnwrap(report.processes[pid]?.classes, "report has pid \(pid)")
            let k = try XCTUnwrap(replay.process(pid)?.kernel, "replay has pid \(pid)")
            XCTAssertEqual([r.copies, r.reuses, r.zeroFills, r.fileCopies, r.sharedWrites, r.other].map(Int.init),
                           [k.copy, k.reuse, k.zeroFill, k.fileCopy, k.sharedWrite, k.other], "pid \(pid)")
        }
        XCTAssertEqual(Int(report.unmatchedResolves), replay.stats.unmatchedResolves)

        // The numbers, from the rules (KernelFaultFold's doc comment):
        // the child's fault before its exit is a reuse, the resolve after the exit unmatched.
        XCTAssertEqual(report.processes[1001]?.classes, RecordedClassCounts(copies: 6, reuses: 1))
        XCTAssertEqual(replay.process(1001)?.kernel, ClassCounts(copy: 6, reuse: 1))
        XCTAssertEqual(report.unmatchedResolves, 1)
        // An undone resolve leaves the fault record's class.
        XCTAssertEqual(replay.process(1002)?.kernel, ClassCounts(sharedWrite: 1))
        // An undone copy is a reuse; an undone first-touch file copy is no fault; the kept one is a file copy.
        XCTAssertEqual(replay.process(1003)?.kernel, ClassCounts(reuse: 1, fileCopy: 1))
        XCTAssertEqual(report.processes[1003]?.writeProtectFaults, 2)
        // Settled at the end.
        XCTAssertEqual(replay.process(1000)?.kernel, ClassCounts(copy: 3, reuse: 1))
        XCTAssertEqual(replay.kernelTotals.total, Int(report.total.classes.total))
        XCTAssertEqual(replay.kernelTotals.total, 6 + 1 + 1 + 2 + 4)
    }
}
