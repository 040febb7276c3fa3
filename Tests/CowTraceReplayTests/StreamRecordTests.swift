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

    func testPageRunsGoThroughWhole() {
        let runs = [
            PageRunRecord(pid: 7, address: 0x7f00_0000_0000, count: 16, flags: [.present, .exclusive], frame: 0x1234),
            // pagemap's largest frame number (55 bits), every flag, the largest count.
            PageRunRecord(pid: .max, address: .max, count: .max, flags: PageRunFlags(rawValue: 0xff), frame: 1 << 55 - 1),
            PageRunRecord(pid: -1, address: 0, count: 0, flags: [.swapped], frame: 0),
            PageRunRecord(pid: 1, address: 0x1000, count: 1, flags: [], frame: 1 << 56 - 1),
        ]
        for r in runs {
            let s = StreamRecord(pageRun: r)
            XCTAssertEqual(s?.kind, .pageRun)
            XCTAssertEqual(s?.pageRun, r)
        }
        // Beyond 56 bits the flags would not fit: such a record goes as an other record.
        XCTAssertNil(StreamRecord(pageRun: PageRunRecord(pid: 1, address: 0, count: 1, flags: [.present], frame: 1 << 56)))
        XCTAssertNil(StreamRecord(pageRun: PageRunRecord(pid: 1, address: 0, count: 1, flags: [], frame: .max)))
    }

    func testTheQueuesOpenMarkFitsTheStep() {
        let f = FaultRecord(time: 9, pid: 1, tid: 2, address: 0x7000, ip: 0, kind: .writeProtect,
                            faultClass: .unresolved, mapping: .anonymousPrivate)
        var step = ReplayStep(record: StreamRecord(fault: f), verdict: nil)
        step.open = true
        let v = TraceReplayer.KernelVerdict(cls: .copy, inferred: true, resolvedAt: 20, overBy: 30)
        step.verdict = v
        XCTAssertTrue(step.open, "setting the verdict leaves the mark")
        step.open = false
        XCTAssertEqual(step.verdict?.cls, .copy)
        XCTAssertEqual(step.verdict?.inferred, true)
        XCTAssertEqual(step.verdict?.end, 30)
        XCTAssertEqual(step.record.fault, f)
        XCTAssertEqual(MemoryLayout<ReplayStep>.stride, 40, "a held record is 40 bytes, the mark included")
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
