import Foundation
import XCTest
@testable import CowTraceFormat

/// A fresh directory under the system temp dir, removed by the test's teardown.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("cowtrace-format-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

func sampleHeader() -> TraceHeader {
    TraceHeader(kernelRelease: "6.18.44-fc-v595", hostname: "host-ü", attachTiers: ["faults": "tracepoint", "oom": "fentry"],
                pageSize: 4096, realtimeOffsetNanoseconds: 1_700_000_000_000_000_000, startTime: 123_456_789,
                ramBytes: 24 << 30, swapBytes: 0, overcommitMemory: 0, overcommitRatio: 50, overcommitKBytes: 0,
                transparentHugePages: "madvise", selection: "-c cowtrace-workload --storm 8", toolVersion: "0.1.0")
}

func fault(_ i: Int, kind: RecordedFaultKind = .writeProtect, cls: RecordedFaultClass = .unresolved,
           mapping: RecordedMappingKind = .anonymousPrivate) -> TraceRecord {
    .fault(FaultRecord(time: UInt64(1000 + i), pid: Int32(100 + i % 7), tid: Int32(200 + i % 13),
                       address: 0x7f00_0000_0000 + UInt64(i) * 4096, ip: 0x5555_0000_1000 + UInt64(i % 100),
                       kind: kind, faultClass: cls, mapping: mapping))
}

/// Bytes of an encoded fault record (38 fixed + the optional mapping byte, always written).
let faultRecordBytes = 39

func end(_ time: UInt64 = 99_999) -> TraceRecord { .end(EndRecord(time: time, reason: "command exited")) }

/// Reads little-endian values out of a byte array.
func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
    UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
}

func putLE32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) {
    for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
}

/// File offsets of every block (walking the block headers of a sound file).
func blockOffsets(_ bytes: [UInt8]) -> [Int] {
    var offsets: [Int] = []
    var o = TraceFormat.preambleSize
    while o + 32 <= bytes.count {
        offsets.append(o)
        o += 32 + Int(le32(bytes, o + 16))
    }
    return offsets
}

/// A block with correct checksums around `payload`.
func makeBlock(kind: UInt32, sequence: UInt64, payload: [UInt8], count: Int) -> [UInt8] {
    var h: [UInt8] = []
    appendLE(&h, TraceFormat.blockMagic)
    appendLE(&h, kind)
    appendLE(&h, sequence)
    appendLE(&h, UInt32(payload.count))
    appendLE(&h, UInt32(count))
    appendLE(&h, payload.withUnsafeBytes { traceCRC32($0.baseAddress, $0.count) })
    appendLE(&h, h.withUnsafeBytes { traceCRC32($0.baseAddress, 28) })
    return h + payload
}

/// Recomputes the checksums of the block at `offset` (after a test edited it).
func resealBlock(_ bytes: inout [UInt8], at offset: Int) {
    let length = Int(le32(bytes, offset + 16))
    let crc = bytes.withUnsafeBytes { traceCRC32($0.baseAddress! + offset + 32, length) }
    putLE32(&bytes, offset + 24, crc)
    let hcrc = bytes.withUnsafeBytes { traceCRC32($0.baseAddress! + offset, 28) }
    putLE32(&bytes, offset + 28, hcrc)
}

/// Encodes records into one payload (no block header).
func encodePayload(_ records: [TraceRecord]) -> [UInt8] {
    let encoder = TraceBlockEncoder(payloadCapacity: 1 << 20)
    for r in records { encoder.append(r) }
    return Array(UnsafeRawBufferPointer(start: encoder.buffer + 32, count: encoder.payloadLength))
}

/// Preamble + header block of `sampleHeader()`.
func filePrefix(_ header: TraceHeader = sampleHeader()) -> [UInt8] {
    encodeFilePrefix(header: header)
}

func readError(_ bytes: [UInt8], path: String = "t.ctr", file: StaticString = #filePath, line: UInt = #line) -> TraceFileError? {
    do {
        _ = try TraceFileReader.read(bytes: bytes, path: path)
        XCTFail("expected a TraceFileError", file: file, line: line)
        return nil
    } catch let e as TraceFileError {
        return e
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
        return nil
    }
}
