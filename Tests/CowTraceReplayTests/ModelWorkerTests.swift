@testable import CowTraceReplay
import CowTraceFormat
import XCTest

/// ModelWorker applies every step on its own thread, in the order sent, each
/// other record with its step; `finish` returns once all were applied.
final class ModelWorkerTests: XCTestCase {
    final class Log: @unchecked Sendable {
        var seen: [(UInt64, TraceRecord?)] = []
    }

    func testEveryStepArrivesInOrderWithItsRecord() {
        let log = Log()
        let worker = ModelWorker { steps, others in
            var other = 0
            for step in steps {
                if step.kind == .other {
                    log.seen.append((step.record.time, others[other]))
                    other += 1
                } else {
                    log.seen.append((step.record.time, nil))
                }
            }
        }
        let n = 5 * ModelWorker.batchSize * ModelWorker.maxBatches + 17
        var expected: [(UInt64, TraceRecord?)] = []
        for i in 0..<n {
            if i % 1000 == 0 {
                let record = TraceRecord.gap(GapRecord(time: UInt64(i), reason: .ringBufferFull, lost: 1))
                var step = ReplayStep(record: StreamRecord(other: i), verdict: nil)
                step.record.time = UInt64(i)
                worker.send(step, other: record)
                expected.append((UInt64(i), record))
            } else {
                let f = FaultRecord(time: UInt64(i), pid: 1, tid: 1, address: 0, ip: 0, kind: .writeProtect, faultClass: .unresolved)
                worker.send(ReplayStep(record: StreamRecord(fault: f), verdict: nil))
                expected.append((UInt64(i), nil))
            }
        }
        worker.finish()
        XCTAssertEqual(log.seen.count, n)
        XCTAssertEqual(log.seen.map(\.0), expected.map(\.0))
        XCTAssertEqual(log.seen.map(\.1), expected.map(\.1))
        worker.finish()   // twice: nothing more
        XCTAssertEqual(log.seen.count, n)
    }
}
