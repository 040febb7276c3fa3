import CBPF
@testable import CowTraceKit
import Foundation
import XCTest

/// The reader side of the per-CPU rings: batches of fault events unpacked,
/// records of several rings merged by time, ring sizes. (The rings themselves
/// are exercised live by LiveTracerTests and every recording test.)
final class RingBufferTests: XCTestCase {
    private func event(time: UInt64, type: cowtrace_event_type, tid: UInt32) -> [UInt8] {
        var e = cowtrace_event()
        e.ts_ns = time
        e.tid = tid
        e.type = UInt8(type.rawValue)
        return withUnsafeBytes(of: &e) { Array($0.prefix(Int(COWTRACE_SHORT_EVENT_SIZE))) }
    }

    private func times(_ records: [[UInt8]]) -> [UInt64] {
        records.map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
    }

    func testMergerHandsRecordsOverInTimeOrderTiesInArrivalOrder() {
        let merger = TimeMerger()
        // Two rings read one after the other: each in order, together not.
        let arrivals: [(UInt64, UInt32)] = [(10, 1), (30, 1), (50, 1), (20, 2), (30, 2), (60, 2)]
        for (t, tid) in arrivals {
            event(time: t, type: COWTRACE_EVENT_WP_FAULT, tid: tid).withUnsafeBytes { merger.add($0) { $1($0) } }
        }
        var out: [[UInt8]] = []
        merger.drain { out.append(Array($0)) }
        XCTAssertEqual(times(out), [10, 20, 30, 30, 50, 60])
        let tids = out.map { $0.withUnsafeBytes { $0.load(fromByteOffset: 28, as: UInt32.self) } }
        XCTAssertEqual(tids, [1, 2, 1, 2, 1, 2], "equal times keep the order they arrived in")
        var again = 0
        merger.drain { _ in again += 1 }
        XCTAssertEqual(again, 0, "a drained merger hands nothing over twice")
    }

    /// Against a stable sort by time of everything added: one run, two runs
    /// (merged), more runs (sorted), with ties within and across runs.
    func testMergerMatchesAStableSortOfWhatArrived() {
        var rng = SystemRandomNumberGenerator()
        let shapes: [[Int]] = [[5], [4, 6], [1, 1], [3, 3, 3], [7, 2, 5, 1], [0, 4], [4, 0]]
        for shape in shapes {
            for _ in 0..<20 {
                let merger = TimeMerger()
                var arrivals: [(UInt64, UInt32)] = []
                var tid: UInt32 = 0
                for length in shape {
                    // A run in order (times may repeat), starting anywhere.
                    var t = UInt64.random(in: 0..<6, using: &rng)
                    for _ in 0..<length {
                        t += UInt64.random(in: 0..<3, using: &rng)
                        tid += 1
                        arrivals.append((t, tid))
                    }
                }
                for (t, tid) in arrivals {
                    event(time: t, type: COWTRACE_EVENT_WP_FAULT, tid: tid).withUnsafeBytes { merger.add($0) { $1($0) } }
                }
                var out: [[UInt8]] = []
                merger.drain { out.append(Array($0)) }
                let want = arrivals.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element)
                XCTAssertEqual(times(out), want.map(\.0), "shape \(shape): \(arrivals)")
                XCTAssertEqual(out.map { $0.withUnsafeBytes { $0.load(fromByteOffset: 28, as: UInt32.self) } }, want.map(\.1),
                               "ties in arrival order, shape \(shape): \(arrivals)")
                XCTAssertTrue(out.allSatisfy { $0.count == Int(COWTRACE_SHORT_EVENT_SIZE) })
            }
        }
    }

    func testMergerKeepsEventsOfABatchWithTheirBytes() {
        // Two batches, one per ring, interleaved in time: every event comes
        // out whole, with its own bytes.
        let merger = TimeMerger()
        for (ring, first) in [(UInt32(1), UInt64(10)), (UInt32(2), UInt64(11))] {
            var batch = cowtrace_event_batch()
            batch.type = UInt8(COWTRACE_EVENT_BATCH.rawValue)
            batch.count = 3
            withUnsafeMutableBytes(of: &batch.events) { slots in
                for i in 0..<3 {
                    let e = event(time: first + UInt64(2 * i), type: COWTRACE_EVENT_RESOLVE, tid: ring * 100 + UInt32(i))
                    slots.baseAddress!.advanced(by: i * Int(COWTRACE_SHORT_EVENT_SIZE)).copyMemory(from: e, byteCount: e.count)
                }
            }
            withUnsafeBytes(of: &batch) { merger.add($0, unpack: CowTracer.unpackBatch) }
        }
        var out: [[UInt8]] = []
        merger.drain { out.append(Array($0)) }
        XCTAssertEqual(times(out), [10, 11, 12, 13, 14, 15])
        XCTAssertEqual(out.map { $0.withUnsafeBytes { $0.load(fromByteOffset: 28, as: UInt32.self) } }, [100, 200, 101, 201, 102, 202])
    }

    func testBatchUnpacksIntoItsCountedEventsOnly() {
        var batch = cowtrace_event_batch()
        batch.type = UInt8(COWTRACE_EVENT_BATCH.rawValue)
        batch.count = 3
        withUnsafeMutableBytes(of: &batch.events) { slots in
            for i in 0..<4 {  // a fourth, stale event past count must not come out
                let e = event(time: UInt64(100 + i), type: COWTRACE_EVENT_RESOLVE, tid: UInt32(i))
                slots.baseAddress!.advanced(by: i * Int(COWTRACE_SHORT_EVENT_SIZE)).copyMemory(from: e, byteCount: e.count)
            }
        }
        var out: [[UInt8]] = []
        withUnsafeBytes(of: &batch) { CowTracer.unpackBatch($0) { out.append(Array($0)) } }
        XCTAssertEqual(times(out), [100, 101, 102])
        XCTAssertTrue(out.allSatisfy { $0.count == Int(COWTRACE_SHORT_EVENT_SIZE) })
        XCTAssertEqual(out[2][36], UInt8(COWTRACE_EVENT_RESOLVE.rawValue))
    }

    func testOtherRecordsPassThroughUnpackWhole() {
        var fork = cowtrace_event()
        fork.type = UInt8(COWTRACE_EVENT_FORK.rawValue)
        var out: [Int] = []
        withUnsafeBytes(of: &fork) { CowTracer.unpackBatch($0) { out.append($0.count) } }
        XCTAssertEqual(out, [MemoryLayout<cowtrace_event>.size])
    }

    func testCPUListsParseAsTheKernelWritesThem() {
        XCTAssertEqual(BPFPerCPURingBuffers.parseCPUList("0-3\n"), [0, 1, 2, 3])
        XCTAssertEqual(BPFPerCPURingBuffers.parseCPUList("0,2-3,8"), [0, 2, 3, 8])
        XCTAssertEqual(BPFPerCPURingBuffers.parseCPUList("0"), [0])
        XCTAssertEqual(BPFPerCPURingBuffers.parseCPUList(""), [])
        XCTAssertEqual(BPFPerCPURingBuffers.parseCPUList("3-1,x"), [], "nonsense yields nothing, not a crash")
        // This machine: every online CPU is a possible one, and there is one at least.
        let online = BPFPerCPURingBuffers.onlineCPUs()
        XCTAssertFalse(online.isEmpty)
        XCTAssertTrue(online.allSatisfy { $0 < BPFPerCPURingBuffers.possibleCPUs })
        XCTAssertEqual(online.count, ProcessInfo.processInfo.activeProcessorCount)
    }

    func testRingSizeSplitsTheBudgetOverCPUsWithAFloor() {
        let mib: UInt32 = 1 << 20
        XCTAssertEqual(BPFPerCPURingBuffers.bytesPerRing(totalBytes: 64 * mib, cpus: 2), 32 * mib)
        XCTAssertEqual(BPFPerCPURingBuffers.bytesPerRing(totalBytes: 64 * mib, cpus: 6), 8 * mib, "a power of two, rounded down")
        XCTAssertEqual(BPFPerCPURingBuffers.bytesPerRing(totalBytes: 64 * mib, cpus: 256), mib, "at least 1 MiB a CPU")
        XCTAssertEqual(BPFPerCPURingBuffers.bytesPerRing(totalBytes: 4096, cpus: 8), 4096, "a budget under 1 MiB is each ring's")
    }
}
