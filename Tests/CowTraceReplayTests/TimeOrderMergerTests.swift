@testable import CowTraceReplay
import CowTraceFormat
import XCTest

/// TimeOrderMerger (TraceReplayer+Streaming.swift) hands records over as
/// `TraceRecord.sortedByTime` orders them: stably by time, a record without
/// one (mapping, pageRun) keeping the time of the record before it.
final class TimeOrderMergerTests: XCTestCase {
    /// The records through the merger as the replay's feed uses it: the late
    /// records taken aside by the prepass (`LateRecords`) when `takingLateAside`,
    /// else chunks buffered. Both must give `TraceRecord.sortedByTime`.
    func merged(_ records: [TraceRecord], takingLateAside: Bool) -> (records: [TraceRecord], prepass: ReplayPrepass) {
        var prepass = ReplayPrepass()
        for r in records { prepass.feed(r) }
        var merger = takingLateAside
            ? TimeOrderMerger<TraceRecord>(prepass) { late in
                switch late {
                case .stream(let s): s.kind == .fault ? .fault(s.fault) : .resolve(s.resolve)
                case .other(let r): r
                }
            }
            : TimeOrderMerger<TraceRecord>(prepass)
        var out: [TraceRecord] = []
        for r in records { merger.add(r, time: r.time) { out.append($0) } }
        merger.finish { out.append($0) }
        return (out, prepass)
    }

    func merged(_ records: [TraceRecord]) -> [TraceRecord] {
        let chunks = merged(records, takingLateAside: false).records
        let (late, prepass) = merged(records, takingLateAside: true)
        XCTAssertEqual(late, chunks, "late records taken aside (\(prepass.late.count), complete: \(prepass.late.isComplete))")
        return late
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

    /// One CPU's last batch written when recording ends, as the recorder does:
    /// its records are the only ones taken aside, and nothing else is late.
    func testABatchWrittenAtTheEndIsAllThatIsTakenAside() {
        var records: [TraceRecord] = []
        for t in 0..<20_000 {
            records.append(.exit(ExitEventRecord(time: UInt64(t) * 10, pid: 1, tid: Int32(t), exitCode: 0)))
            if t % 100 == 0 { records.append(.pageRun(PageRunRecord(pid: Int32(t), address: 0, count: 1, flags: [], frame: 0))) }
        }
        // The late batch: 64 faults and resolves from early on, and a mapping among them (no time).
        for k in 0..<64 {
            records.append(.fault(FaultRecord(time: 1005 + UInt64(k) * 20, pid: 2, tid: 2, address: UInt64(k) << 12, ip: 0,
                                              kind: .writeProtect, faultClass: .unresolved, mapping: .anonymousPrivate)))
            records.append(.resolve(ResolveRecord(time: 1006 + UInt64(k) * 20, pid: 2, tid: 2, address: UInt64(k) << 12,
                                                  faultClass: .copy)))
            if k == 10 { records.append(.pageRun(PageRunRecord(pid: 99, address: 0, count: 1, flags: [], frame: 0))) }
        }
        records.append(.exit(ExitEventRecord(time: 300_000, pid: 1, tid: 1, exitCode: 0)))
        XCTAssertEqual(merged(records), TraceRecord.sortedByTime(records))
        let prepass = merged(records, takingLateAside: true).prepass
        XCTAssertTrue(prepass.late.isComplete)
        XCTAssertEqual(prepass.late.count, 129)
    }

    /// More late records than `LateRecords.limit`: the merger buffers chunks, with the same order.
    func testTooManyLateRecordsAreMergedByChunks() {
        let n = LateRecords.limit + 100
        let records = [TraceRecord.exit(ExitEventRecord(time: UInt64(n) * 2, pid: 1, tid: 0, exitCode: 0))]
            + (0..<n).map { TraceRecord.exit(ExitEventRecord(time: UInt64($0), pid: 1, tid: Int32($0 + 1), exitCode: 0)) }
        XCTAssertEqual(merged(records), TraceRecord.sortedByTime(records))
        XCTAssertFalse(merged(records, takingLateAside: true).prepass.late.isComplete)
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
