import CBPF
import CowTraceFaultClass
import CowTraceFormat
@testable import CowTraceKit
import Foundation
import XCTest

/// The recorder's per-event path: fault, first-touch and resolve events read
/// field by field from the ring's bytes straight into the file.
final class TraceRecorderTests: XCTestCase {
    func testShortEventOffsetsAreTheStructs() {
        typealias E = cowtrace_event
        typealias O = TraceRecorder.ShortEvent
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.ts_ns), O.time)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.address), O.address)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.ip), O.ip)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.pid), O.pid)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.tid), O.tid)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.other_pid), O.otherPid)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.type), O.type)
        XCTAssertEqual(MemoryLayout<E>.offset(of: \.class_), O.faultClass)
        XCTAssertLessThanOrEqual(O.faultClass + 1, Int(COWTRACE_SHORT_EVENT_SIZE))
    }

    /// A short event as the kernel sends it: 40 bytes, nothing after them
    /// (the bytes past the end are poisoned, so reading them would show).
    private func short(_ type: cowtrace_event_type, time: UInt64, pid: UInt32, tid: UInt32, address: UInt64, ip: UInt64,
                       otherPid: UInt32, class_: UInt8) -> [UInt8] {
        var e = cowtrace_event()
        e.ts_ns = time; e.pid = pid; e.tid = tid; e.address = address; e.ip = ip
        e.other_pid = otherPid; e.type = UInt8(type.rawValue); e.class_ = class_
        return withUnsafeBytes(of: &e) { Array($0.prefix(Int(COWTRACE_SHORT_EVENT_SIZE))) } + [UInt8](repeating: 0xA5, count: 24)
    }

    func testShortEventsBecomeTheirRecords() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-recorder-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let header = TraceHeader(kernelRelease: "6.18", hostname: "h", attachTiers: [:], pageSize: 4096,
                                 realtimeOffsetNanoseconds: 0, startTime: 0, ramBytes: 0, swapBytes: 0,
                                 overcommitMemory: 0, overcommitRatio: 50, overcommitKBytes: 0,
                                 transparentHugePages: "never", selection: "", toolVersion: "t")
        let writer = try TraceFileWriter(path: "\(dir)/t.ctr", header: header)
        let copy = UInt8(FaultClass.copy.rawValue)
        let cases: [([UInt8], TraceRecord?)] = [
            // A write-protect fault: its class, and the VMA kind from bits 8..15 of other_pid.
            (short(COWTRACE_EVENT_WP_FAULT, time: 100, pid: 7, tid: 8, address: 0x7f00_0000_1000, ip: 0x401234,
                   otherPid: 0x0107, class_: copy),
             .fault(FaultRecord(time: 100, pid: 7, tid: 8, address: 0x7f00_0000_1000, ip: 0x401234, kind: .writeProtect,
                                faultClass: .copy, mapping: .anonymousPrivate))),
            // A class the kernel does not have reads as .other; an unknown VMA kind as .unknown.
            (short(COWTRACE_EVENT_WP_FAULT, time: 101, pid: 0xFFFF_FFFF, tid: 0x8000_0000, address: .max, ip: 0,
                   otherPid: 0xFF07, class_: 250),
             .fault(FaultRecord(time: 101, pid: -1, tid: .min, address: .max, ip: 0, kind: .writeProtect,
                                faultClass: .other, mapping: .unknown))),
            // First touches: bit 1 of the error code is the write.
            (short(COWTRACE_EVENT_FIRST_TOUCH, time: 102, pid: 7, tid: 9, address: 0x2000, ip: 0x5000, otherPid: 0x0306, class_: 0),
             .fault(FaultRecord(time: 102, pid: 7, tid: 9, address: 0x2000, ip: 0x5000, kind: .firstTouchWrite,
                                faultClass: .unresolved, mapping: .shared))),
            (short(COWTRACE_EVENT_FIRST_TOUCH, time: 103, pid: 7, tid: 9, address: 0x3000, ip: 0x5004, otherPid: 0x0204, class_: copy),
             .fault(FaultRecord(time: 103, pid: 7, tid: 9, address: 0x3000, ip: 0x5004, kind: .firstTouchRead,
                                faultClass: .unresolved, mapping: .filePrivate))),
            (short(COWTRACE_EVENT_RESOLVE, time: 104, pid: 7, tid: 8, address: 0x7f00_0000_1000, ip: 99, otherPid: 5,
                   class_: UInt8(FaultClass.reuse.rawValue)),
             .resolve(ResolveRecord(time: 104, pid: 7, tid: 8, address: 0x7f00_0000_1000, faultClass: .reuse))),
            // Not short events: left to the caller, nothing written.
            (short(COWTRACE_EVENT_FORK, time: 105, pid: 7, tid: 7, address: 0, ip: 0, otherPid: 10, class_: 0), nil),
            (short(COWTRACE_EVENT_EXEC, time: 106, pid: 7, tid: 7, address: 0, ip: 0, otherPid: 0, class_: 0), nil),
            (short(COWTRACE_EVENT_EXIT, time: 107, pid: 7, tid: 7, address: 0, ip: 0, otherPid: 0, class_: 0), nil),
            (short(COWTRACE_EVENT_ADDRESS_SPACE, time: 108, pid: 7, tid: 7, address: 0, ip: 0, otherPid: 9, class_: 0), nil),
            (short(COWTRACE_EVENT_BATCH, time: 109, pid: 0, tid: 0, address: 0, ip: 0, otherPid: 0, class_: 0), nil),
        ]
        for (bytes, want) in cases {
            let handled = bytes.withUnsafeBytes { TraceRecorder.appendShortEvent($0.baseAddress!, to: writer) }
            XCTAssertEqual(handled, want != nil, "type \(bytes[36])")
        }
        try writer.close()
        XCTAssertEqual(try TraceFileReader.read(path: "\(dir)/t.ctr").records, cases.compactMap(\.1))
    }
}
