@testable import CowTraceReplay
import CowTraceFormat
import XCTest

final class StreamRecordTests: XCTestCase {
    func testFaultsAndResolvesGoThroughWhole() {
        let f = FaultRecord(time: 9, pid: 1, tid: 2, address: 0x7000, ip: 0x40_1000, kind: .firstTouchWrite,
                            faultClass: .sharedWrite, mapping: .filePrivate)
        // Whole but for the ip, which the replay does not use.
        var withoutIP = f
        withoutIP.ip = 0
        XCTAssertEqual(StreamRecord(fault: f).fault, withoutIP)
        XCTAssertEqual(StreamRecord(fault: f).kind, .fault)
        let r = ResolveRecord(time: 10, pid: 1, tid: 2, address: 0x7000, faultClass: .fileCopy)
        XCTAssertEqual(StreamRecord(resolve: r).resolve, r)
        XCTAssertEqual(StreamRecord(resolve: r).kind, .resolve)
        XCTAssertEqual(StreamRecord(other: 12345).otherNumber, 12345)
        XCTAssertTrue(_isPOD(StreamRecord.self))
        XCTAssertTrue(_isPOD(ReplayStep.self))
        // One per record in the model's batches and the verdict queue.
        XCTAssertEqual(MemoryLayout<StreamRecord>.size, 28)
        XCTAssertEqual(MemoryLayout<ReplayStep>.stride, 40)
        let v = TraceReplayer.KernelVerdict(cls: .copy, inferred: false, resolvedAt: 20, overBy: 30)
        for verdict in [nil, v, TraceReplayer.KernelVerdict(cls: .reuse, inferred: true)] {
            let step = ReplayStep(record: StreamRecord(fault: f), verdict: verdict)
            XCTAssertEqual(step.record.fault, withoutIP)
            XCTAssertEqual(step.verdict?.cls, verdict?.cls)
            XCTAssertEqual(step.verdict?.inferred, verdict?.inferred)
            XCTAssertEqual(step.verdict?.end, verdict?.end)
        }
        XCTAssertEqual(v.end, 30, "the thread's next act bounds the fault before its last resolve")
        XCTAssertEqual(TraceReplayer.KernelVerdict(cls: .copy, inferred: false, resolvedAt: 20).end, 20)
    }

    func testOtherRecordsAreTakenByNumberAndTheStoreShrinks() {
        var store = OtherRecords()
        func exit(_ i: Int) -> TraceRecord { .exit(ExitEventRecord(time: UInt64(i), pid: 1, tid: Int32(i), exitCode: 0)) }
        var numbers: [Int] = []
        for i in 0..<5000 { numbers.append(store.add(exit(i))) }
        XCTAssertEqual(numbers, Array(0..<5000))
        XCTAssertEqual(store.peek(3), exit(3))
        // Taken nearly in order: one held back.
        XCTAssertEqual(store.take(1), exit(1))
        for i in 2..<5000 { XCTAssertEqual(store.take(i), exit(i)) }
        XCTAssertEqual(store.count, 5000)
        XCTAssertEqual(store.take(0), exit(0))
        XCTAssertEqual(store.count, 0)
        XCTAssertEqual(store.add(exit(7)), 5000)
        XCTAssertEqual(store.take(5000), exit(7))
    }
}
