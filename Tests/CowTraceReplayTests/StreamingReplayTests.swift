@testable import CowTraceReplay
import CowTraceFormat
import XCTest

/// The streaming replay (TraceReplayer+Streaming.swift) on more records than
/// one merge chunk, out of order across chunks, with faults held open across
/// thousands of records.
final class StreamingReplayTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000
    let pages: UInt64 = 4096

    /// A parent writes `pages` pages and forks two children; its write-protect
    /// fault stays open (its thread faults no more) while both children copy
    /// every other page, until it exits.
    func twoChildrenCopy() -> TraceBuilder {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: pages)
        b.touch(1000, at: A, pages: pages, write: true)
        b.fork(1000, 1001, comm: "child")
        b.fork(1000, 1002, comm: "child")
        b.wp(1000, at: A, .copy)
        b.wp(1001, at: A + page, pages: pages - 1, .copy)
        b.wp(1002, at: A + page, pages: pages - 1, .copy)
        b.exit(1001)
        b.exit(1002)
        b.exit(1000)
        b.end()
        return b
    }

    func testAFaultHeldOpenAcrossChunksKeepsItsVerdictAndItsPlace() throws {
        let b = twoChildrenCopy()
        XCTAssertGreaterThan(b.records.count, 4 * ReplayPrepass.chunkSize)
        let result = try b.replay()
        XCTAssertEqual(result.process(1000)?.kernel, ClassCounts(copy: 1))
        XCTAssertEqual(result.process(1001)?.kernel, ClassCounts(copy: Int(pages) - 1))
        XCTAssertEqual(result.process(1002)?.kernel, ClassCounts(copy: Int(pages) - 1))
        let check = TraceCheck(result: result)
        XCTAssertEqual(check.total, 2 * Int(pages) - 1)
        XCTAssertEqual(check.agreed, check.total)
        XCTAssertEqual(result.stats.records, b.records.count)
    }

    func testRecordsOutOfOrderAcrossChunksReplayAsInOrder() throws {
        let b = twoChildrenCopy()
        // Blocks of 3000 records, each pair swapped: out of order across chunk boundaries.
        let shuffled = swappingRuns(b.records, of: 3000)
        XCTAssertNotEqual(shuffled, b.records)
        var prepass = ReplayPrepass()
        for r in shuffled { prepass.feed(r) }
        XCTAssertFalse(prepass.inOrder)

        let inOrder = try b.replay()
        let merged = try TraceReplayer(header: b.header).replay(shuffled)
        XCTAssertEqual(renderReplayJSON(merged), renderReplayJSON(inOrder))
        XCTAssertEqual(renderCheckJSON(TraceCheck(result: merged)), renderCheckJSON(TraceCheck(result: inOrder)))
    }
}

/// FrameFaultLog against a plain list of every fault per frame, through its compactions.
final class FrameFaultLogTests: XCTestCase {
    func testOverlapsAsAPlainListFindsThem() {
        typealias Fault = TraceReplayer.FrameFault
        var log = TraceReplayer.FrameFaultLog()
        var all: [Int: [Fault]] = [:]
        var rng = SystemRandomNumberGenerator()
        var start: UInt64 = 0
        // Compactions from 4096 faults logged on: on 64 frames, then on many (fewer: more chain heads to visit).
        for n in 0..<300_000 {
            start += UInt64.random(in: 0...3, using: &rng)
            let frame = Int.random(in: 0..<(n < 150_000 ? 64 : 50_000), using: &rng)
            let fault = Fault(pid: Int32.random(in: 1...4, using: &rng), start: start,
                              end: start + UInt64.random(in: 0...(n % 2 == 0 ? 40 : 400), using: &rng), kernel: .copy, disagreement: n)
            all[frame]?.removeAll { $0.end < start }
            let expected = (all[frame] ?? []).filter { $0.pid != fault.pid }.map(\.disagreement)
            let got = (log.add(fault, on: frame).overlapping ?? []).map(\.disagreement)
            XCTAssertEqual(got.sorted { $0! < $1! }, expected.sorted { $0! < $1! }, "fault \(n)")
            if got.count != expected.count { return }
            all[frame, default: []].append(fault)
        }
    }
}
