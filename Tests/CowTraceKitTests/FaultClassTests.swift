import CBPF
import CowTraceFaultClass
import CowTraceFormat
import CowTraceKit
import XCTest

/// The one fault-class type against the C source of truth (bpf/cowtrace.h,
/// enum cowtrace_fault_class), which the BPF programs send.
final class FaultClassTests: XCTestCase {
    /// The decoder's inlined range checks (`fromRawValue`) are the synthesized `init(rawValue:)` for every byte.
    func testFromRawValueIsInitRawValueForEveryByte() {
        for raw in 0...255 {
            XCTAssertEqual(FaultClass.fromRawValue(UInt8(raw)), FaultClass(rawValue: UInt8(raw)), "byte \(raw)")
        }
    }

    /// The recorder's inlined conversions are the synthesized initializers, kernel classes only.
    func testKernelAndMappingBytesAreTheirCasesForEveryByte() {
        for raw in 0...255 {
            let byte = UInt8(raw)
            let expected = FaultClass(rawValue: byte).flatMap { $0.isKernelClass ? $0 : nil }
            XCTAssertEqual(FaultClass(kernel: byte), expected, "byte \(raw)")
            XCTAssertEqual(RecordedMappingKind.fromRawValue(orUnknown: byte), RecordedMappingKind(rawValue: byte) ?? .unknown,
                           "byte \(raw)")
        }
    }

    func testKernelClassesHaveTheCHeadersValues() {
        let header: [(FaultClass, cowtrace_fault_class)] = [
            (.unresolved, COWTRACE_CLASS_UNRESOLVED), (.copy, COWTRACE_CLASS_COPY), (.reuse, COWTRACE_CLASS_REUSE),
            (.zeroFill, COWTRACE_CLASS_ZERO_FILL), (.fileCopy, COWTRACE_CLASS_FILE_COPY),
            (.sharedWrite, COWTRACE_CLASS_SHARED_WRITE), (.other, COWTRACE_CLASS_OTHER),
        ]
        for (swift, c) in header {
            XCTAssertEqual(UInt32(swift.rawValue), c.rawValue, "\(swift)")
            XCTAssertEqual(FaultClass(kernel: UInt8(c.rawValue)), swift)
        }
        // Every case the kernel sends is in the table; every other case is the simulator's own.
        XCTAssertEqual(FaultClass.kernelCases, header.map(\.0))
        XCTAssertEqual(FaultClass.allCases.filter(\.isKernelClass), header.map(\.0))
        for sim in FaultClass.allCases where !sim.isKernelClass {
            XCTAssertGreaterThan(UInt32(sim.rawValue), COWTRACE_CLASS_OTHER.rawValue, "\(sim)")
            XCTAssertNil(FaultClass(kernel: sim.rawValue), "the kernel never sends \(sim)")
        }
        XCTAssertNil(FaultClass(kernel: UInt8(COWTRACE_CLASS_OTHER.rawValue) + 1))
    }

    func testCountIsCaseIterablesAndIndexIsDense() {
        XCTAssertEqual(FaultClass.count, FaultClass.allCases.count)
        XCTAssertEqual(FaultClass.count, 17)
        XCTAssertEqual(FaultClass.allCases.map(\.index), Array(0..<FaultClass.count))
    }

    /// The decoder (FaultEvent) uses the same type, and an unknown class byte is `.other`.
    func testDecoderUsesTheOneType() {
        var raw = cowtrace_event()
        raw.type = UInt8(COWTRACE_EVENT_RESOLVE.rawValue)
        raw.class_ = UInt8(COWTRACE_CLASS_ZERO_FILL.rawValue)
        let cls: FaultClass = FaultEvent(raw).faultClass
        XCTAssertEqual(cls, .zeroFill)
        raw.class_ = FaultClass.ksmCopy.rawValue
        XCTAssertEqual(FaultEvent(raw).faultClass, .other)
    }
}
