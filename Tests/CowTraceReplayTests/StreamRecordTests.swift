@testable import CowTraceReplay
import CowTraceFormat
import XCTest

final class StreamRecordTests: XCTestCase {
    func testFaultsAndResolvesGoThroughWhole() {
        let f = FaultRecord(time: 9, pid: 1, tid: 2, address: 0x7000, ip: 0x40_1000, kind: .firstTouchWrite,
                            faultClass: .sharedWrite, mapping: .filePrivate)
        XCTAssertEqual(StreamRecord(fault: f).fault, f)
        XCTAssertEqual(StreamRecord(fault: f).kind, .fault)
        let r = ResolveRecord(time: 10, pid: 1, tid: 2, address: 0x7000, faultClass: .fileCopy)
        XCTAssertEqual(StreamRecord(resolve: r).resolve, r)
        XCTAssertEqual(StreamRecord(resolve: r).kind, .resolve)
        XCTAssertEqual(StreamRecord(other: 12345).otherNumber, 12345)
        XCTAssertTrue(_isPOD(StreamRecord.self))
        XCTAssertTrue(_isPOD(ReplayStep.self))
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
