@testable import CowTraceReplay
@testable import CowTraceFormat
import Foundation
import XCTest

/// ReplayPrepass.read (ReplayPrepass+Parts.swift): the two halves of a file
/// read at once and joined give the prepass, summary and replay of one whole read.
final class ReplayPrepassPartsTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000

    func trace() -> TraceBuilder {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 3000)
        b.touch(1000, at: A, pages: 3000, write: true)
        b.fork(1000, 1001, comm: "child")
        b.wp(1000, at: A, .copy)
        b.gap(lost: 2)
        b.wp(1001, at: A + 4096, pages: 2999, .copy)
        b.exit(1001)
        b.exit(1000)
        b.end()
        return b
    }

    func write(_ records: [TraceRecord], _ b: TraceBuilder) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-parts-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/t.ctr"
        // Small blocks: many of them, so that the halves split a merge chunk.
        let bytes = TraceFileWriter.encodedFile(header: b.header, records: records, blockBytes: 3001)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testTheHalvesJoinedAreTheWholeRead() throws {
        let b = trace()
        // Out of order across blocks too: each pair of 700-record runs swapped.
        for records in [b.records, swappingRuns(b.records, of: 700)] {
            let path = try write(records, b)
            let parts = try TraceFileReader.parts(path: path, count: 2)
            XCTAssertEqual(parts.count, 2)
            XCTAssertNotEqual(parts[1].recordsBefore % ReplayPrepass.chunkSize, 0)
            try assertJoinedIsWhole(path, records, b)
        }
    }

    /// A batch of faults written at the end (a CPU's last, as the recorder does):
    /// the later half takes it aside, and the join keeps it.
    func testALateBatchAtTheEndIsTakenAsideByTheLaterHalf() throws {
        let b = trace()
        var records = b.records
        let batch = Array(records[1000..<1064])
        records.removeSubrange(1000..<1064)
        records.insert(contentsOf: batch, at: records.count - 1)
        let path = try write(records, b)
        try assertJoinedIsWhole(path, records, b)
        var checksums = BlockChecksums()
        let (joined, _) = try ReplayPrepass.read(path: path, salvage: false, checksums: &checksums)
        XCTAssertTrue(joined.late.isComplete)
        XCTAssertEqual(joined.late.count, 64)
        XCTAssertFalse(joined.inOrder)
    }

    /// A cut in a run of records without a time (here mappings, as a snapshot's):
    /// the later half's first records take the earlier half's last time, as in a
    /// whole read, so an in-order file stays in order and no chunk's minimum drops to 0.
    func testACutAmongUntimedRecordsKeepsTheKeys() throws {
        var b = trace()
        let untimed = (0..<12_000).map { k in
            TraceRecord.mapping(MappingRecord(pid: 1000, start: 0x5500_0000_0000 + UInt64(k) * 8192,
                                              end: 0x5500_0000_1000 + UInt64(k) * 8192, permissions: "r--p",
                                              offset: 0, inode: 0, path: ""))
        }
        b.records.insert(contentsOf: untimed, at: 3100)
        let path = try write(b.records, b)
        let parts = try TraceFileReader.parts(path: path, count: 2)
        XCTAssertEqual(parts.count, 2)
        XCTAssertTrue((3100..<15_100).contains(parts[1].recordsBefore), "the cut is among the mappings")
        try assertJoinedIsWhole(path, b.records, b)
        var whole = ReplayPrepass()
        _ = try TraceFileReader.visitRecords(path: path, &whole)
        XCTAssertTrue(whole.inOrder)
        XCTAssertFalse(whole.chunkMinimum.dropFirst().contains(0))
    }

    /// The two halves read at once and joined give what one whole read of `path` gives,
    /// and the replay of `records`.
    func assertJoinedIsWhole(_ path: String, _ records: [TraceRecord], _ b: TraceBuilder,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        var whole = ReplayPrepass()
        let wholeSummary = try TraceFileReader.visitRecords(path: path, &whole)
        var checksums = BlockChecksums()
        let (joined, summary) = try ReplayPrepass.read(path: path, salvage: false, checksums: &checksums)
        XCTAssertEqual(summary, wholeSummary, file: file, line: line)
        XCTAssertEqual(joined.records, whole.records, file: file, line: line)
        XCTAssertEqual(joined.chunkMinimum, whole.chunkMinimum, file: file, line: line)
        XCTAssertEqual(joined.inOrder, whole.inOrder, file: file, line: line)
        XCTAssertEqual(joined.gapTimes, whole.gapTimes, file: file, line: line)
        // The late records the halves took aside are the whole read's, or the join gave up (chunks are merged then).
        if joined.late.isComplete {
            XCTAssertEqual(joined.late.positions, whole.late.positions, file: file, line: line)
            XCTAssertEqual(joined.late.keys, whole.late.keys, file: file, line: line)
        }
        XCTAssertTrue(checksums.complete, file: file, line: line)

        let expected = try TraceReplayer(header: b.header).replay(records)
        let result = try TraceReplayer(header: b.header).replay(joined) { (feed: inout ReplayFeed) in
            try TraceFileReader.visitRecords(path: path, checksums: &checksums, &feed)
        }
        XCTAssertEqual(result.processes, expected.processes, file: file, line: line)
        XCTAssertEqual(result.stats, expected.stats, file: file, line: line)
        XCTAssertEqual(result.disagreements, expected.disagreements, file: file, line: line)
    }

    func testADamagedHalfIsReadWholeAndReported() throws {
        let b = trace()
        let path = try write(b.records, b)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count * 3 / 4] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        var checksums = BlockChecksums()
        XCTAssertThrowsError(try ReplayPrepass.read(path: path, salvage: false, checksums: &checksums))
        let (salvaged, summary) = try ReplayPrepass.read(path: path, salvage: true, checksums: &checksums)
        var whole = ReplayPrepass()
        XCTAssertEqual(summary, try TraceFileReader.visitRecords(path: path, salvage: true, &whole))
        XCTAssertEqual(salvaged.records, whole.records)
        XCTAssertNotNil(summary.cut)
    }
}
