import CBPF
import CowTraceKit
import XCTest

final class EventDecodingTests: XCTestCase {
    func testFaultEventDecodesEveryField() {
        var raw = cowtrace_event()
        raw.ts_ns = 123_456_789
        raw.address = 0x7f00_dead_b000
        raw.ip = 0x5555_0000_1234
        raw.pid = 4242
        raw.tid = 4243
        raw.other_pid = 0
        raw.type = UInt8(COWTRACE_EVENT_RESOLVE.rawValue)
        raw.class_ = UInt8(COWTRACE_CLASS_FILE_COPY.rawValue)
        withUnsafeMutableBytes(of: &raw.comm) { buf in
            let name = Array("redis-server".utf8)
            buf.copyBytes(from: name)
            buf[name.count] = 0
        }
        let event = FaultEvent(raw)
        XCTAssertEqual(event.timestampNanoseconds, 123_456_789)
        XCTAssertEqual(event.address, 0x7f00_dead_b000)
        XCTAssertEqual(event.instructionPointer, 0x5555_0000_1234)
        XCTAssertEqual(event.pid, 4242)
        XCTAssertEqual(event.tid, 4243)
        XCTAssertEqual(event.kind, .resolve)
        XCTAssertEqual(event.faultClass, .fileCopy)
        XCTAssertEqual(event.comm, "redis-server")
    }

    func testUnknownEventTypeAndClassAreNotMisread() {
        var raw = cowtrace_event()
        raw.type = 99
        raw.class_ = 77
        let event = FaultEvent(raw)
        XCTAssertNil(event.kind)
        XCTAssertEqual(event.faultClass, .other)
        XCTAssertEqual(event.comm, "")
    }

    /// The shared header's layout is what the BPF side writes: pin it.
    func testSharedStructSizesMatchTheBPFSide() {
        XCTAssertEqual(MemoryLayout<cowtrace_pid_counters>.size, 10 * 8)
        XCTAssertEqual(MemoryLayout<cowtrace_event>.size, 8 * 3 + 4 * 3 + 4 + 16)
        XCTAssertEqual(MemoryLayout<cowtrace_pid_info>.size, 4 + 4 + 8 + 8 + 8 + 16)
        XCTAssertEqual(MemoryLayout<cowtrace_config>.size, 4 + 12 + 8 + 4 + 4 + 4 + 4) // ... index_mask, padding to 8
        // One slot per cache-line pair: two processes never share a line.
        XCTAssertEqual(MemoryLayout<cowtrace_process_slot>.size, Int(COWTRACE_SLOT_SIZE))
        XCTAssertEqual(MemoryLayout<cowtrace_pid_slot_pair>.size, 8)
        XCTAssertEqual(MemoryLayout<cowtrace_register_args>.size, 8)
        // The recorder's second record type shares the first 40 bytes: type at offset 36 in both.
        XCTAssertEqual(MemoryLayout<cowtrace_vm_event>.size, 72)
        XCTAssertEqual(MemoryLayout<cowtrace_event>.offset(of: \cowtrace_event.type), 36)
        XCTAssertEqual(MemoryLayout<cowtrace_vm_event>.offset(of: \cowtrace_vm_event.type), 36)
        XCTAssertEqual(MemoryLayout<cowtrace_hist>.size, (64 + 2) * 8)
    }

    /// A copy counted on one CPU and re-classified as a file copy on another
    /// leaves -1 there: the wrapping sum must still come out right.
    func testPerCPUSumsWrapAcrossReclassification() {
        var cpu0 = cowtrace_pid_counters()
        cpu0.wp_faults = 10
        cpu0.copies = 6
        var cpu1 = cowtrace_pid_counters()
        cpu1.copies = UInt64.max // -1
        cpu1.file_copies = 1
        var total = ProcessCounters()
        total.accumulate(cpu0)
        total.accumulate(cpu1)
        XCTAssertEqual(total.copies, 5)
        XCTAssertEqual(total.fileCopies, 1)
        XCTAssertEqual(total.reuses, 4)
        XCTAssertEqual(total.bytesCopied(pageSize: 4096), 6 * 4096)
    }

    func testReusesNeverGoNegative() {
        var c = ProcessCounters()
        c.writeProtectFaults = 3
        c.copies = 5
        XCTAssertEqual(c.reuses, 0)
    }

    func testErrnoNamesAndMessages() {
        XCTAssertEqual(Errno(-1).name, "EPERM")
        XCTAssertEqual(Errno(1).description, "operation not permitted (EPERM)")
        XCTAssertEqual(Errno(524).name, "ENOTSUPP")
    }
}
