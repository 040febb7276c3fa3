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
