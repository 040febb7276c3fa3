import Foundation
import XCTest
@testable import CowTraceFormat

final class DamageTests: XCTestCase {
    /// Header block, three blocks of 10 faults (sequence 1...3), then a block with the end record.
    let records: [TraceRecord] = (0..<30).map { fault($0) } + [end()]
    var file: [UInt8] { TraceFileWriter.encodedFile(header: sampleHeader(), records: records, blockBytes: 10 * faultRecordBytes) }

    func testTheSoundFileReads() throws {
        let bytes = file
        XCTAssertEqual(blockOffsets(bytes).count, 5)
        let contents = try TraceFileReader.read(bytes: bytes)
        XCTAssertEqual(contents.records, records)
        XCTAssertNil(contents.cut)
    }

    func testTruncatedTrailingBlockNamesTheOffsetAndSalvageReadsWhatIsBefore() throws {
        let sound = file
        let last = blockOffsets(sound)[4]
        let bytes = Array(sound.dropLast(5))          // end block: 28 payload bytes, 23 present
        let error = readError(bytes, path: "trace.ctr")
        XCTAssertEqual(error?.problem, .truncatedBlock(offset: last, declared: 28, present: 23))
        XCTAssertEqual(error?.offset, last)
        XCTAssertEqual(error?.recordsBefore, 30)
        XCTAssertEqual(error?.description,
                       "trace.ctr: truncated block at offset \(last) (header says 28 payload bytes, 23 present): "
                       + "the recorder was cut off mid-write; pass --salvage to read the 30 records before it")

        let salvaged = try TraceFileReader.read(bytes: bytes, path: "trace.ctr", salvage: true)
        XCTAssertEqual(salvaged.records, Array(records.prefix(30)))
        XCTAssertEqual(salvaged.blocks, 4)
        XCTAssertEqual(salvaged.cut, .damaged(offset: last, problem: TraceFileError(
            path: "trace.ctr", problem: .truncatedBlock(offset: last, declared: 28, present: 23))))
        if case .damaged(_, let problem)? = salvaged.cut {
            XCTAssertEqual(problem.description,
                           "trace.ctr: truncated block at offset \(last) (header says 28 payload bytes, 23 present): "
                           + "the recorder was cut off mid-write")
        }
    }

    func testTruncatedBlockHeader() throws {
        let sound = file
        let last = blockOffsets(sound)[4]
        let bytes = Array(sound[0..<(last + 10)])
        XCTAssertEqual(readError(bytes)?.problem, .truncatedBlockHeader(offset: last, present: 10))
        let salvaged = try TraceFileReader.read(bytes: bytes, salvage: true)
        XCTAssertEqual(salvaged.records.count, 30)
        XCTAssertEqual(salvaged.cut?.offset, last)
    }

    func testFlippedByteInTheMiddleBlockIsAChecksumErrorAndSalvageStopsThere() throws {
        var bytes = file
        let middle = blockOffsets(bytes)[2]
        bytes[middle + 32 + 50] ^= 0x01
        let error = readError(bytes)
        XCTAssertEqual(error?.problem, .payloadChecksum(offset: middle, sequence: 2))
        XCTAssertEqual(error?.description,
                       "t.ctr: payload checksum mismatch in block 2 at offset \(middle): the file is damaged; "
                       + "pass --salvage to read the 10 records before it")
        let salvaged = try TraceFileReader.read(bytes: bytes, path: "t.ctr", salvage: true)
        XCTAssertEqual(salvaged.records, Array(records.prefix(10)))
        XCTAssertEqual(salvaged.blocks, 2)
        XCTAssertEqual(salvaged.cut?.offset, middle)

        var streamed = 0
        let summary = try TraceFileReader.forEachRecord(bytes: Data(bytes), path: "t.ctr", salvage: true) { _ in streamed += 1 }
        XCTAssertEqual(streamed, 10)
        XCTAssertEqual(summary.cut, salvaged.cut)
    }

    func testFlippedByteInABlockHeader() throws {
        var bytes = file
        let o = blockOffsets(bytes)[3]
        bytes[o + 9] ^= 0x80                           // the sequence number
        XCTAssertEqual(readError(bytes)?.problem, .headerChecksum(offset: o))
        XCTAssertEqual(try TraceFileReader.read(bytes: bytes, salvage: true).records.count, 20)
    }

    func testBadBlockMagic() {
        var bytes = file
        let o = blockOffsets(bytes)[1]
        bytes[o] = UInt8(ascii: "X")
        let error = readError(bytes)
        XCTAssertEqual(error?.problem, .badBlockMagic(offset: o, found: 0x4B42_5458))
        XCTAssertEqual(error?.description,
                       "t.ctr: bad block magic at offset \(o) (0x4b425458, expected \"CTBK\"): the file is damaged; "
                       + "pass --salvage to read its header (there are no records before it)")
    }

    func testDamagedHeaderBlockIsAnErrorEvenWhenSalvaging() {
        var bytes = file
        bytes[16 + 32 + 3] ^= 0xFF
        for salvage in [false, true] {
            XCTAssertThrowsError(try TraceFileReader.read(bytes: bytes, path: "t.ctr", salvage: salvage)) { e in
                XCTAssertEqual((e as? TraceFileError)?.problem, .payloadChecksum(offset: 16, sequence: 0))
                XCTAssertEqual((e as? TraceFileError)?.description,
                               "t.ctr: payload checksum mismatch in block 0 at offset 16: the file is damaged")
            }
        }
    }

    func testWrongVersion() {
        var bytes = file
        bytes[8] = 9
        let error = readError(bytes, path: "trace.ctr")
        XCTAssertEqual(error?.problem, .unsupportedVersion(9))
        XCTAssertEqual(error?.description,
                       "trace.ctr: written by format version 9; this cowtrace reads versions up to 1: upgrade cowtrace")
        bytes[8] = 0
        XCTAssertEqual(readError(bytes)?.problem, .unsupportedVersion(0))
    }

    func testNotACowtraceFile() {
        var bytes = file
        bytes[0] = UInt8(ascii: "X")
        let error = readError(bytes, path: "notes.txt")
        XCTAssertEqual(error?.problem, .notCowtrace)
        XCTAssertEqual(error?.description,
                       "notes.txt: not a cowtrace recording (no COWTRACE magic at offset 0); pass a file written by cowtrace record -o")
        XCTAssertEqual(readError(Array("hello".utf8))?.problem, .notCowtrace)
        XCTAssertEqual(readError(Array("COW".utf8))?.problem, .truncatedPreamble(present: 3))
        XCTAssertEqual(readError(Array(file.prefix(12)))?.problem, .truncatedPreamble(present: 12))
        // The preamble alone: the header block is missing.
        XCTAssertEqual(readError(Array(file.prefix(16)))?.problem, .truncatedBlockHeader(offset: 16, present: 0))
    }

    func testEmptyFile() throws {
        let error = readError([], path: "e.ctr")
        XCTAssertEqual(error?.problem, .empty)
        XCTAssertEqual(error?.description,
                       "e.ctr: empty file (0 bytes): the recorder wrote nothing before it stopped; record again")
        let dir = try makeTemporaryDirectory(self)
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(dir)/empty.ctr", contents: Data()))
        XCTAssertThrowsError(try TraceFileReader.read(path: "\(dir)/empty.ctr", salvage: true)) {
            XCTAssertEqual(($0 as? TraceFileError)?.problem, .empty)
        }
    }

    func testMissingFileAndDirectory() throws {
        let dir = try makeTemporaryDirectory(self)
        XCTAssertThrowsError(try TraceFileReader.read(path: "\(dir)/nope.ctr")) {
            XCTAssertEqual(($0 as? TraceFileError)?.problem, .missing)
            XCTAssertEqual("\($0)", "\(dir)/nope.ctr: no such file; check the path (cowtrace record -o writes it)")
        }
        XCTAssertThrowsError(try TraceFileReader.forEachRecord(path: dir) { _ in }) {
            XCTAssertEqual(($0 as? TraceFileError)?.problem, .unreadable(errno: EISDIR))
        }
    }

    // MARK: crafted blocks (sound checksums, bad contents)

    private func withRecordsPayload(_ payload: [UInt8], count: Int, sequence: UInt64 = 1, kind: UInt32 = 2) -> [UInt8] {
        filePrefix() + makeBlock(kind: kind, sequence: sequence, payload: payload, count: count)
    }
    private var firstPayloadOffset: Int { filePrefix().count + 32 }

    func testUnknownRecordTypeIsSkippedByItsLength() throws {
        let unknown: [UInt8] = [200, 0, 10, 0, 1, 2, 3, 4, 5, 6]
        let payload = encodePayload([fault(1)]) + unknown + encodePayload([fault(2), end()])
        let contents = try TraceFileReader.read(bytes: withRecordsPayload(payload, count: 4))
        XCTAssertEqual(contents.records, [fault(1), fault(2), end()])
        XCTAssertNil(contents.cut)
        // Every reader counts the records it hands over, not the one skipped
        // (the block header counts it): the fuzzer found a streaming read of a
        // file that counted it.
        var handed = 0
        let streamed = try TraceFileReader.forEachRecord(bytes: Data(withRecordsPayload(payload, count: 4))) { _ in handed += 1 }
        XCTAssertEqual(streamed.records, 3)
        XCTAssertEqual(handed, 3)
        let path = NSTemporaryDirectory() + "unknown-type-\(getpid()).ctr"
        try Data(withRecordsPayload(payload, count: 4)).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        struct Counter: TraceRecordVisitor {
            var count = 0
            mutating func visit(fault: FaultRecord) { count += 1 }
            mutating func visit(resolve: ResolveRecord) { count += 1 }
            mutating func visit(_ record: TraceRecord) { count += 1 }
        }
        var counter = Counter()
        let visited = try TraceFileReader.visitRecords(path: path, &counter)
        XCTAssertEqual(visited.records, 3)
        XCTAssertEqual(counter.count, 3)
        var partCounter = Counter()
        var checksums = BlockChecksums()
        let part = TracePart(start: TraceFormat.preambleSize, end: withRecordsPayload(payload, count: 4).count,
                             sequence: 0, recordsBefore: 0)
        XCTAssertEqual(TraceFileReader.visitRecords(path: path, part: part, checksums: &checksums, &partCounter)?.records, 3)
        XCTAssertEqual(partCounter.count, 3)
    }

    func testFieldsAppendedToAKnownRecordAreIgnored() throws {
        var longer = encodePayload([fault(7)])
        longer[2] = UInt8(faultRecordBytes + 4)
        longer += [9, 9, 9, 9]
        let contents = try TraceFileReader.read(bytes: withRecordsPayload(longer + encodePayload([end()]), count: 2))
        XCTAssertEqual(contents.records, [fault(7), end()])
    }

    func testUnknownBlockKindAndHeaderKeyAreSkipped() throws {
        // A header block with an extra entry of an unknown key and value type.
        let prefix = filePrefix()
        let headerPayload = Array(prefix[48...])
        let entries = Int(headerPayload[0]) | Int(headerPayload[1]) << 8
        var entry: [UInt8] = []
        appendString16(&entry, "futureKey")
        entry.append(77)
        appendLE(&entry, UInt32(3))
        entry += [1, 2, 3]
        var newPayload: [UInt8] = []
        appendLE(&newPayload, UInt16(entries + 1))
        newPayload += entry + headerPayload[2...]
        let bytes = Array(prefix[0..<16]) + makeBlock(kind: 1, sequence: 0, payload: newPayload, count: entries + 1)
            + makeBlock(kind: 9, sequence: 1, payload: [1, 2, 3], count: 0)
            + makeBlock(kind: 2, sequence: 2, payload: encodePayload([fault(1), end()]), count: 2)
        let contents = try TraceFileReader.read(bytes: bytes)
        XCTAssertEqual(contents.header, sampleHeader())
        XCTAssertEqual(contents.records, [fault(1), end()])
        XCTAssertEqual(contents.blocks, 3)
    }

    func testRecordRunningPastThePayload() {
        var payload = encodePayload([fault(1)])
        payload[2] = 200
        let error = readError(withRecordsPayload(payload, count: 1))
        XCTAssertEqual(error?.problem, .recordOverrun(offset: firstPayloadOffset, length: 200, available: 39))
        XCTAssertEqual(error?.description,
                       "t.ctr: record at offset \(firstPayloadOffset) is 200 bytes but only 39 remain in its block: "
                       + "the file is damaged; pass --salvage to read its header (there are no records before it)")
        // Three stray bytes after a record: not even a record header.
        let stray = encodePayload([fault(1)]) + [8, 0, 38]
        XCTAssertEqual(readError(withRecordsPayload(stray, count: 2))?.problem,
                       .recordOverrun(offset: firstPayloadOffset + 39, length: 4, available: 3))
    }

    func testRecordTooShortForItsType() throws {
        let short: [UInt8] = [8, 0, 30, 0] + [UInt8](repeating: 0, count: 26)
        let payload = encodePayload([fault(1)]) + short
        let error = readError(withRecordsPayload(payload, count: 2))
        XCTAssertEqual(error?.problem, .recordTooShort(offset: firstPayloadOffset + 39, type: 8, length: 30, needed: 38))
        XCTAssertEqual(error?.description,
                       "t.ctr: fault record at offset \(firstPayloadOffset + 39) is 30 bytes, too short (needs 38): "
                       + "the file is damaged; pass --salvage to read the 1 record before it")
        let salvaged = try TraceFileReader.read(bytes: withRecordsPayload(payload, count: 2), salvage: true)
        XCTAssertEqual(salvaged.records, [fault(1)])
        XCTAssertEqual(salvaged.cut?.offset, firstPayloadOffset + 39)

        // A string length running past the record: exec with comm "abc" claiming 100 bytes.
        var exec = encodePayload([.exec(ExecEventRecord(time: 1, pid: 2, tid: 3, comm: "abc"))])
        XCTAssertEqual(exec.count, 25)
        exec[20] = 100
        XCTAssertEqual(readError(withRecordsPayload(exec, count: 1))?.problem,
                       .recordTooShort(offset: firstPayloadOffset, type: 5, length: 25, needed: 122))
        // A length below the 4-byte record header.
        XCTAssertEqual(readError(withRecordsPayload([8, 0, 2, 0], count: 1))?.problem,
                       .recordTooShort(offset: firstPayloadOffset, type: 8, length: 2, needed: 4))
        // Every known type, one byte short.
        for (type, minimum) in TraceFormat.minimumRecordLength {
            let r = [type, 0, UInt8(minimum - 1), 0] + [UInt8](repeating: 0, count: minimum - 5)
            XCTAssertEqual(readError(withRecordsPayload(r, count: 1))?.problem,
                           .recordTooShort(offset: firstPayloadOffset, type: type, length: minimum - 1, needed: minimum))
        }
    }

    func testInvalidEnumValues() {
        var f = encodePayload([fault(1)])
        f[36] = 9
        XCTAssertEqual(readError(withRecordsPayload(f, count: 1))?.problem,
                       .invalidValue(offset: firstPayloadOffset, field: "fault kind", value: 9))
        f = encodePayload([fault(1)])
        f[37] = 7
        XCTAssertEqual(readError(withRecordsPayload(f, count: 1))?.problem,
                       .invalidValue(offset: firstPayloadOffset, field: "fault class", value: 7))
        f = encodePayload([fault(1)])
        f[38] = 99
        XCTAssertEqual(readError(withRecordsPayload(f, count: 1))?.problem,
                       .invalidValue(offset: firstPayloadOffset, field: "fault mapping", value: 99))
        var r = encodePayload([.resolve(ResolveRecord(time: 1, pid: 2, tid: 3, address: 4, faultClass: .copy))])
        r[28] = 255
        XCTAssertEqual(readError(withRecordsPayload(r, count: 1))?.problem,
                       .invalidValue(offset: firstPayloadOffset, field: "resolve class", value: 255))
        var g = encodePayload([.gap(GapRecord(time: 1, reason: .infoMapFull, lost: 2))])
        g[12] = 200
        let error = readError(withRecordsPayload(g, count: 1))
        XCTAssertEqual(error?.problem, .invalidValue(offset: firstPayloadOffset, field: "loss reason", value: 200))
        XCTAssertEqual(error?.description,
                       "t.ctr: record at offset \(firstPayloadOffset) has invalid loss reason 200: the file is damaged "
                       + "or was written by a newer cowtrace; pass --salvage to read its header (there are no records before it)")
        var a = encodePayload([.addressSpace(AddressSpaceRecord(time: 1, pid: 2, tid: 3, op: .mmap, args: [], result: 0))])
        a[20] = 0
        XCTAssertEqual(readError(withRecordsPayload(a, count: 1))?.problem,
                       .invalidValue(offset: firstPayloadOffset, field: "address-space op", value: 0))
    }

    func testFirstBlockNotAHeader() {
        let bytes = Array(filePrefix()[0..<16]) + makeBlock(kind: 2, sequence: 0, payload: encodePayload([end()]), count: 1)
        let error = readError(bytes)
        XCTAssertEqual(error?.problem, .firstBlockNotHeader(offset: 16, kind: 2))
        XCTAssertNil(error?.recordsBefore)
    }

    func testSecondHeaderBlock() {
        let prefix = filePrefix()
        let again = makeBlock(kind: 1, sequence: 1, payload: Array(prefix[48...]), count: Int(le32(prefix, 16 + 20)))
        XCTAssertEqual(readError(prefix + again)?.problem, .unexpectedHeaderBlock(offset: prefix.count))
    }

    func testSequenceNumbersOutOfOrder() throws {
        let bytes = withRecordsPayload(encodePayload([fault(1)]), count: 1)
            + makeBlock(kind: 2, sequence: 3, payload: encodePayload([end()]), count: 1)
        let second = blockOffsets(bytes)[2]
        let error = readError(bytes)
        XCTAssertEqual(error?.problem, .sequence(offset: second, expected: 2, found: 3))
        XCTAssertEqual(error?.description,
                       "t.ctr: block at offset \(second) has sequence number 3, expected 2: blocks are missing or "
                       + "out of order; pass --salvage to read the 1 record before it")
        let salvaged = try TraceFileReader.read(bytes: bytes, salvage: true)
        XCTAssertEqual(salvaged.records, [fault(1)])
        XCTAssertEqual(salvaged.cut?.offset, second)
    }

    func testRecordCountMismatch() {
        let bytes = withRecordsPayload(encodePayload([fault(1), end()]), count: 5)
        XCTAssertEqual(readError(bytes)?.problem,
                       .recordCountMismatch(offset: filePrefix().count, declared: 5, found: 2))
    }

    func testPayloadLengthOverTheCap() {
        var bytes = withRecordsPayload(encodePayload([end()]), count: 1)
        let o = filePrefix().count
        putLE32(&bytes, o + 16, UInt32(17 << 20))
        let hcrc = bytes.withUnsafeBytes { traceCRC32($0.baseAddress! + o, 28) }
        putLE32(&bytes, o + 28, hcrc)
        XCTAssertEqual(readError(bytes)?.problem, .payloadTooLarge(offset: o, declared: 17 << 20))
        // A huge declared length within the cap is a truncated block, not an allocation.
        putLE32(&bytes, o + 16, UInt32(16 << 20))
        let hcrc2 = bytes.withUnsafeBytes { traceCRC32($0.baseAddress! + o, 28) }
        putLE32(&bytes, o + 28, hcrc2)
        XCTAssertEqual(readError(bytes)?.problem, .truncatedBlock(offset: o, declared: 16 << 20, present: 28))
    }

    func testMalformedHeaderBlock() {
        let prefix = filePrefix()
        var payload = Array(prefix[48...])
        payload.removeLast(3)                          // cuts the schema table short
        let bytes = Array(prefix[0..<16]) + makeBlock(kind: 1, sequence: 0, payload: payload, count: Int(le32(prefix, 36)))
        guard case .malformedHeader(let o, let detail)? = readError(bytes)?.problem else {
            return XCTFail("expected a malformed header")
        }
        XCTAssertEqual(o, 16)
        XCTAssertEqual(detail, "schema of end runs past the payload")
    }

    func testEveryDescriptionIsOneLine() {
        var bytes = file
        bytes[blockOffsets(bytes)[2] + 40] ^= 1
        let problems: [TraceProblem] = [
            .exists, .symbolicLink, .permissionDenied, .readOnlyFileSystem, .noSuchDirectory, .isDirectory, .noSpace,
            .headerTooLarge(bytes: 1 << 25), .closed, .system(operation: "write", errno: EIO), .missing,
            .unreadable(errno: EACCES), .empty, .notCowtrace, .truncatedPreamble(present: 3), .unsupportedVersion(2),
            .truncatedBlockHeader(offset: 1, present: 2), .truncatedBlock(offset: 1, declared: 2, present: 1),
            .badBlockMagic(offset: 1, found: 0), .headerChecksum(offset: 1), .payloadTooLarge(offset: 1, declared: 1 << 30),
            .payloadChecksum(offset: 1, sequence: 1), .firstBlockNotHeader(offset: 1, kind: 2),
            .unexpectedHeaderBlock(offset: 1), .sequence(offset: 1, expected: 1, found: 2),
            .malformedHeader(offset: 1, detail: "x"), .recordOverrun(offset: 1, length: 2, available: 1),
            .recordTooShort(offset: 1, type: 99, length: 2, needed: 3), .invalidValue(offset: 1, field: "f", value: 1),
            .recordCountMismatch(offset: 1, declared: 1, found: 2),
        ]
        for problem in problems {
            for before in [nil, 0, 1, 5] as [Int?] {
                let text = TraceFileError(path: "p.ctr", problem: problem, recordsBefore: before).description
                XCTAssertFalse(text.contains("\n"), text)
                XCTAssertTrue(text.contains("p.ctr"), text)
                if let offset = problem.offset { XCTAssertTrue(text.contains("offset \(offset)"), text) }
            }
        }
    }
}
