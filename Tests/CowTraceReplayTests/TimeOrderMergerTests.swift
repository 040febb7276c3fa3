@testable import CowTraceReplay
import CowTraceFormat
import XCTest

/// TimeOrderMerger (TraceReplayer+Streaming.swift) hands records over as
/// `TraceRecord.sortedByTime` orders them: stably by time, a record without
/// one (mapping, pageRun) keeping the time of the record before it.
final class TimeOrderMergerTests: XCTestCase {
    func merged(_ records: [TraceRecord]) -> [TraceRecord] {
        var prepass = ReplayPrepass()
        for r in records { prepass.feed(r) }
        var merger = TimeOrderMerger<TraceRecord>(prepass)
        var out: [TraceRecord] = []
        for r in records { merger.add(r, time: r.time) { out.append($0) } }
        merger.finish { out.append($0) }
        return out
    }

    /// Blocks of records in time order each, interleaved as per-CPU rings
    /// write them, with equal times (exit records with tids as tags) and
    /// pageRun records that carry no time.
    func testInterleavedBlocksWithTiesComeOutAsSortedByTime() {
        var rng = LCG(seed: 16)
        for round in 0..<6 {
            var records: [TraceRecord] = []
            var cpuTime: [UInt64] = [0, 0]
            var tag: Int32 = 0
            let blockSize = [50, 700, 3000, 4096, 5000, 9000][round]
            while records.count < 5 * ReplayPrepass.chunkSize {
                let cpu = Int(rng.next() % 2)
                for _ in 0..<blockSize {
                    tag += 1
                    // Small steps: many equal times across and within blocks.
                    cpuTime[cpu] += rng.next() % 3
                    if rng.next() % 10 == 0 {
                        records.append(.pageRun(PageRunRecord(pid: tag, address: 0, count: 1, flags: [], frame: 0)))
                    } else {
                        records.append(.exit(ExitEventRecord(time: cpuTime[cpu], pid: Int32(cpu), tid: tag, exitCode: 0)))
                    }
                }
            }
            XCTAssertEqual(merged(records), TraceRecord.sortedByTime(records), "blocks of \(blockSize)")
        }
    }

    func testInOrderRecordsPassStraightThrough() {
        let records = (0..<10_000).map { TraceRecord.exit(ExitEventRecord(time: UInt64($0 / 3), pid: 1, tid: Int32($0), exitCode: 0)) }
        XCTAssertEqual(merged(records), records)
    }

    /// A deterministic generator (tests must not depend on the run): Knuth's
    /// MMIX linear congruential one, high bits.
    struct LCG {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
    }
}
