import CCRC32
import XCTest
@testable import CowTraceFormat

/// The recording's checksum (`traceCRC32`, CCRC32's folding) against the
/// CRC-32 check value of the standard and zlib's own code, at every length
/// and alignment the folding treats differently.
final class TraceFormatChecksumTests: XCTestCase {
    /// Pseudo-random bytes (a fixed LCG), so that a failure repeats.
    private func bytes(_ count: Int) -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    func testTheStandardCheckValue() {
        // CRC-32 (ISO-HDLC, zlib's) of "123456789" is 0xCBF43926.
        let check = Array("123456789".utf8)
        XCTAssertEqual(check.withUnsafeBytes { traceCRC32($0.baseAddress, $0.count) }, 0xCBF4_3926)
        // 64 bytes and more take the folding path: the same value from a longer run that ends with those bytes, continued.
        let long = [UInt8](repeating: 0x5A, count: 1000) + check
        let head = long[0..<1000].withUnsafeBytes { ccrc32(0, $0.baseAddress, $0.count) }
        let whole = long.withUnsafeBytes { ccrc32(0, $0.baseAddress, $0.count) }
        XCTAssertEqual(check.withUnsafeBytes { ccrc32(head, $0.baseAddress, $0.count) }, whole)
    }

    func testEveryLengthToFourKiBAtEveryAlignmentMatchesZlib() {
        let data = bytes(4096 + 16)
        var mismatches = 0
        data.withUnsafeBytes { all in
            for offset in 0..<16 {
                for length in 0...4096 {
                    let p = all.baseAddress! + offset
                    if ccrc32(0, p, length) != ccrc32_zlib(0, p, length) { mismatches += 1 }
                }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testLargeBuffersAndNonzeroStartsMatchZlib() {
        let data = bytes(3 << 20)
        data.withUnsafeBytes { all in
            for length in [64, 65, 4095, 65_536, 65_536 + 48, 1 << 20, (3 << 20) - 5] {
                for start: UInt32 in [0, 0xFFFF_FFFF, 0x1234_5678] {
                    XCTAssertEqual(ccrc32(start, all.baseAddress! + 5, length), ccrc32_zlib(start, all.baseAddress! + 5, length),
                                   "length \(length) start \(start)")
                }
            }
        }
    }

    /// This VM's CPU (x86-64 with PCLMULQDQ) takes the folding path; the tests above then test it.
    func testTheFoldingPathIsTakenOnX86WithCarrylessMultiply() throws {
        #if arch(x86_64)
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        guard cpuinfo.contains(" pclmulqdq") && cpuinfo.contains(" sse4_1") else {
            throw XCTSkip("this CPU has no PCLMULQDQ/SSE4.1: zlib computes every checksum")
        }
        XCTAssertEqual(ccrc32_uses_clmul(), 1)
        #else
        XCTAssertEqual(ccrc32_uses_clmul(), 0)
        #endif
    }
}
