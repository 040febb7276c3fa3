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
        let runs = stride(from: 0, to: b.records.count, by: 700).map { Array(b.records[$0..<min($0 + 700, b.records.count)]) }
        var shuffled: [TraceRecord] = []
        for i in stride(from: 0, to: runs.count, by: 2) {
            if i + 1 < runs.count { shuffled += runs[i + 1] }
            shuffled += runs[i]
        }
        for records in [b.records, shuffled] {
            let path = try write(records, b)
            let parts = try TraceFileReader.parts(path: path, count: 2)
            XCTAssertEqual(parts.count, 2)
            XCTAssertNotEqual(parts[1].recordsBefore % ReplayPrepass.chunkSize, 0)

            var whole = ReplayPrepass()
            let wholeSummary = try TraceFileReader.visitRecords(path: path, &whole)
            var checksums = BlockChecksums()
            let (joined, summary) = try ReplayPrepass.read(path: path, salvage: false, checksums: &checksums)
            XCTAssertEqual(summary, wholeSummary)
            XCTAssertEqual(joined.records, whole.records)
            XCTAssertEqual(joined.chunkMinimum, whole.chunkMinimum)
            XCTAssertEqual(joined.inOrder, whole.inOrder)
            XCTAssertEqual(joined.gapTimes, whole.gapTimes)
            XCTAssertTrue(checksums.complete)

            let expected = try TraceReplayer(header: b.header).replay(records)
            let result = try TraceReplayer(header: b.header).replay(joined) { (feed: inout ReplayFeed) in
                try TraceFileReader.visitRecords(path: path, checksums: &checksums, &feed)
            }
            XCTAssertEqual(result.processes, expected.processes)
            XCTAssertEqual(result.stats, expected.stats)
            XCTAssertEqual(result.disagreements, expected.disagreements)
        }
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
