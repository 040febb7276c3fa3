import Foundation
import XCTest
@testable import CowTraceFormat

/// The recorder's per-event path (`appendFault`, `appendResolve`) writes the
/// very bytes `append(.fault(...))` and `append(.resolve(...))` write.
final class EncoderFastPathTests: XCTestCase {
    private let times: [UInt64] = [0, 1, 0x0123_4567_89AB_CDEF, .max]
    private let pids: [Int32] = [0, 1, -1, .max, .min]
    private let addresses: [UInt64] = [0, 0x7fff_ffff_f000, .max]

    private func faults() -> [FaultRecord] {
        var out: [FaultRecord] = []
        for kind in RecordedFaultKind.allCases {
            for c in RecordedFaultClass.allCases {
                for m in RecordedMappingKind.allCases {
                    out.append(FaultRecord(time: 77, pid: 12, tid: 13, address: 0x1000, ip: 0x401000,
                                           kind: kind, faultClass: c, mapping: m))
                }
            }
        }
        for t in times {
            for p in pids {
                for a in addresses {
                    out.append(FaultRecord(time: t, pid: p, tid: p &+ 1, address: a, ip: ~a,
                                           kind: .writeProtect, faultClass: .copy, mapping: .anonymousPrivate))
                }
            }
        }
        return out
    }

    private func resolves() -> [ResolveRecord] {
        var out = RecordedFaultClass.allCases.map { ResolveRecord(time: 5, pid: 6, tid: 7, address: 0x2000, faultClass: $0) }
        for t in times {
            for p in pids {
                for a in addresses { out.append(ResolveRecord(time: t, pid: p, tid: ~p, address: a, faultClass: .reuse)) }
            }
        }
        return out
    }

    func testFaultAndResolveFastPathsEncodeLikeAppend() {
        let slow = TraceBlockEncoder(payloadCapacity: 1 << 20), fast = TraceBlockEncoder(payloadCapacity: 1 << 20)
        for r in faults() {
            let a = slow.append(.fault(r))
            let b = fast.appendFault(time: r.time, pid: r.pid, tid: r.tid, address: r.address, ip: r.ip,
                                     kind: r.kind, faultClass: r.faultClass, mapping: r.mapping)
            XCTAssertEqual(a, b)
            XCTAssertEqual(fast.position - b, TraceFormat.faultRecordBytes)
        }
        for r in resolves() {
            let a = slow.append(.resolve(r))
            let b = fast.appendResolve(time: r.time, pid: r.pid, tid: r.tid, address: r.address, faultClass: r.faultClass)
            XCTAssertEqual(a, b)
            XCTAssertEqual(fast.position - b, TraceFormat.resolveRecordBytes)
        }
        XCTAssertEqual(slow.recordCount, fast.recordCount)
        XCTAssertEqual(slow.position, fast.position)
        // The payloads (the block header slot is filled in by seal).
        let a = Array(UnsafeRawBufferPointer(start: slow.buffer + TraceFormat.blockHeaderSize, count: slow.payloadLength))
        let b = Array(UnsafeRawBufferPointer(start: fast.buffer + TraceFormat.blockHeaderSize, count: fast.payloadLength))
        XCTAssertTrue(a == b, "first difference at payload byte \((0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? -1)")
    }

    /// Through the writer, with blocks small enough that records split them:
    /// the same file, and it reads back as the records.
    func testWriterFastPathsWriteTheSameFile() throws {
        let dir = try makeTemporaryDirectory(self)
        var records: [TraceRecord] = []
        for (f, r) in zip(faults(), resolves() + resolves() + resolves() + resolves()) {
            records.append(.fault(f))
            records.append(.resolve(r))
        }
        records.append(.end(EndRecord(time: 9, reason: "done")))
        for blockBytes in [64 << 10, 100, 1] {
            let slowPath = "\(dir)/slow-\(blockBytes).ctr", fastPath = "\(dir)/fast-\(blockBytes).ctr"
            let slow = try TraceFileWriter(path: slowPath, header: sampleHeader(), blockBytes: blockBytes)
            let fast = try TraceFileWriter(path: fastPath, header: sampleHeader(), blockBytes: blockBytes)
            for record in records {
                slow.append(record)
                switch record {
                case .fault(let r):
                    fast.appendFault(time: r.time, pid: r.pid, tid: r.tid, address: r.address, ip: r.ip,
                                     kind: r.kind, faultClass: r.faultClass, mapping: r.mapping)
                case .resolve(let r):
                    fast.appendResolve(time: r.time, pid: r.pid, tid: r.tid, address: r.address, faultClass: r.faultClass)
                default:
                    fast.append(record)
                }
            }
            try slow.close()
            try fast.close()
            XCTAssertEqual(fast.recordsWritten, records.count)
            XCTAssertEqual(fast.blocksWritten, slow.blocksWritten)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: fastPath)), try Data(contentsOf: URL(fileURLWithPath: slowPath)),
                           "blockBytes \(blockBytes)")
            XCTAssertEqual(try TraceFileReader.read(path: fastPath).records, records)
        }
    }

    func testFastPathsAfterCloseAreDroppedAndReported() throws {
        let dir = try makeTemporaryDirectory(self)
        let w = try TraceFileWriter(path: "\(dir)/t.ctr", header: sampleHeader())
        try w.close()
        w.appendFault(time: 1, pid: 2, tid: 3, address: 4, ip: 5, kind: .writeProtect, faultClass: .copy, mapping: .unknown)
        w.appendResolve(time: 1, pid: 2, tid: 3, address: 4, faultClass: .copy)
        XCTAssertEqual(w.recordsDropped, 2)
        XCTAssertEqual(w.error?.problem, .closed)
    }
}
