import Foundation
import XCTest
@testable import CowTraceFormat

/// `TraceFileReader.visitRecords` (faults and resolves as their structs) and
/// `BlockChecksums` (a second read trusting the first read's checksums).
final class TraceRecordVisitorTests: XCTestCase {
    struct Collector: TraceRecordVisitor {
        var records: [TraceRecord] = []
        var faults = 0, resolves = 0
        mutating func visit(fault: FaultRecord) { faults += 1; records.append(.fault(fault)) }
        mutating func visit(resolve: ResolveRecord) { resolves += 1; records.append(.resolve(resolve)) }
        mutating func visit(_ record: TraceRecord) { records.append(record) }
    }

    let records: [TraceRecord] = (0..<30).flatMap { i -> [TraceRecord] in
        let r = TraceRecord.resolve(ResolveRecord(time: UInt64(1000 + i), pid: 100, tid: 200, address: 0x1000, faultClass: .copy))
        return i % 3 == 0 ? [fault(i), r] : [fault(i)]
    } + [.gap(GapRecord(time: 5000, reason: .ringBufferFull, lost: 3)), end()]

    var file: [UInt8] { TraceFileWriter.encodedFile(header: sampleHeader(), records: records, blockBytes: 10 * faultRecordBytes) }

    func testVisitorGetsTheRecordsForEachRecordHandsOver() throws {
        let bytes = file
        var collector = Collector()
        let summary = try bytes.withUnsafeBytes { try TraceFileReader.visitRecords(bytes: $0, &collector) }
        XCTAssertEqual(collector.records, records)
        XCTAssertEqual(collector.faults, 30)
        XCTAssertEqual(collector.resolves, 10)
        XCTAssertEqual(summary.records, records.count)
        XCTAssertNil(summary.cut)
    }

    func testASecondReadWithTheFirstReadsChecksumsReadsTheSame() throws {
        let path = try makeTemporaryDirectory(self) + "/t.ctr"
        try Data(file).write(to: URL(fileURLWithPath: path))
        var checksums = BlockChecksums()
        var first = Collector()
        let s1 = try TraceFileReader.visitRecords(path: path, checksums: &checksums, &first)
        XCTAssertTrue(checksums.complete)
        var second = Collector()
        let s2 = try TraceFileReader.visitRecords(path: path, checksums: &checksums, &second)
        XCTAssertEqual(first.records, records)
        XCTAssertEqual(second.records, records)
        XCTAssertEqual(s1, s2)
    }

    func testAFirstReadStillFindsADamagedPayload() throws {
        var bytes = file
        let middle = blockOffsets(bytes)[2]
        bytes[middle + 32 + 20] ^= 0x01
        let path = try makeTemporaryDirectory(self) + "/t.ctr"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        var checksums = BlockChecksums()
        var collector = Collector()
        XCTAssertThrowsError(try TraceFileReader.visitRecords(path: path, checksums: &checksums, &collector)) { error in
            XCTAssertEqual((error as? TraceFileError)?.problem, .payloadChecksum(offset: middle, sequence: 2))
        }
    }

    func testChecksumsAreTrustedOnlyForTheBlockTheyWereVerifiedFor() {
        var checksums = BlockChecksums()
        checksums.add(block: 0, 7)
        checksums.add(block: 1, 8)
        checksums.add(block: 3, 9)   // not the next block: not kept
        XCTAssertFalse(checksums.verified(block: 0, 7), "not trusted before the read that filled it is over")
        checksums.complete = true
        XCTAssertTrue(checksums.verified(block: 0, 7))
        XCTAssertTrue(checksums.verified(block: 1, 8))
        XCTAssertFalse(checksums.verified(block: 1, 7))
        XCTAssertFalse(checksums.verified(block: 3, 9))
        checksums.add(block: 2, 10)
        XCTAssertFalse(checksums.verified(block: 2, 10), "a complete set takes no more")
    }
}
