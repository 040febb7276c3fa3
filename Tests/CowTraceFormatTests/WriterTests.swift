import Foundation
import XCTest
@testable import CowTraceFormat

final class WriterTests: XCTestCase {
    private func createError(_ path: String, overwrite: Bool = false,
                             file: StaticString = #filePath, line: UInt = #line) -> TraceFileError? {
        do {
            let w = try TraceFileWriter(path: path, header: sampleHeader(), overwrite: overwrite)
            try w.close()
            XCTFail("expected \(path) to be refused", file: file, line: line)
            return nil
        } catch let e as TraceFileError {
            return e
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
            return nil
        }
    }

    func testWritingThroughASymlinkFails() throws {
        let dir = try makeTemporaryDirectory(self)
        let target = "\(dir)/target"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: target))
        let link = "\(dir)/link.ctr"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        for overwrite in [false, true] {
            let error = createError(link, overwrite: overwrite)
            XCTAssertEqual(error?.problem, .symbolicLink, "overwrite: \(overwrite)")
            XCTAssertEqual(error?.description,
                           "\(link): is a symbolic link, which cowtrace never follows; remove it or choose another -o path")
        }
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep me")
        // A dangling link is not followed either: its target is not created.
        let dangling = "\(dir)/dangling.ctr"
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: "\(dir)/created-through-link")
        XCTAssertEqual(createError(dangling)?.problem, .symbolicLink)
        XCTAssertEqual(createError(dangling, overwrite: true)?.problem, .symbolicLink)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/created-through-link"))
    }

    func testExistingFileWithoutOverwriteFails() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/out.ctr"
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        let error = createError(path)
        XCTAssertEqual(error?.problem, .exists)
        XCTAssertEqual(error?.description, "\(path): exists; pass --force to overwrite it or choose another -o path")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")

        let writer = try TraceFileWriter(path: path, header: sampleHeader(), overwrite: true)
        writer.append(end())
        try writer.close()
        let contents = try TraceFileReader.read(path: path)
        XCTAssertEqual(contents.records, [end()])
        XCTAssertEqual(contents.bytes, writer.bytesWritten)
    }

    func testOtherCreateErrors() throws {
        let dir = try makeTemporaryDirectory(self)
        let missingDir = createError("\(dir)/no/such/dir/out.ctr")
        XCTAssertEqual(missingDir?.problem, .noSuchDirectory)
        XCTAssertEqual(missingDir?.description,
                       "cannot create \(dir)/no/such/dir/out.ctr: its directory does not exist; create the directory or choose another -o path")
        XCTAssertEqual(createError(dir)?.problem, .isDirectory)
        XCTAssertEqual(createError(dir, overwrite: true)?.problem, .isDirectory)
        XCTAssertEqual(TraceFileError(path: "/ro/out.ctr", problem: .permissionDenied).description,
                       "cannot create /ro/out.ctr: permission denied; choose a writable -o path")
    }

    func testNewFileHasMode0644AndTheHeaderRightAway() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/new.ctr"
        let old = umask(0o022)
        defer { umask(old) }
        let writer = try TraceFileWriter(path: path, header: sampleHeader())
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644)
        XCTAssertEqual(Int(st.st_size), filePrefix().count)
        XCTAssertEqual(writer.bytesWritten, filePrefix().count)
        XCTAssertEqual(writer.blocksWritten, 1)
        XCTAssertEqual(writer.recordsWritten, 0)
        // Readable at once: a header and no records, cut.
        let contents = try TraceFileReader.read(path: path)
        XCTAssertEqual(contents.header, sampleHeader())
        XCTAssertEqual(contents.cut, .noEndRecord(offset: filePrefix().count))
        try writer.close()
    }

    func testFlushWritesOneBlockAndCountsIt() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/flush.ctr"
        let writer = try TraceFileWriter(path: path, header: sampleHeader())
        try writer.flush()                             // nothing buffered: no block
        XCTAssertEqual(writer.blocksWritten, 1)
        writer.append(fault(1))
        writer.append(fault(2))
        XCTAssertEqual(writer.recordsBuffered, 2)
        XCTAssertEqual(writer.recordsWritten, 0)
        try writer.flush(fsync: true)
        XCTAssertEqual(writer.blocksWritten, 2)
        XCTAssertEqual(writer.recordsWritten, 2)
        XCTAssertEqual(writer.recordsBuffered, 0)
        XCTAssertEqual(writer.bytesWritten, filePrefix().count + 32 + 2 * faultRecordBytes)
        writer.append(end())
        try writer.close()
        try writer.close()                             // closing twice does nothing
        XCTAssertEqual(writer.blocksWritten, 3)
        XCTAssertEqual(writer.recordsWritten, 3)
        XCTAssertEqual(try TraceFileReader.read(path: path).records, [fault(1), fault(2), end()])
    }

    func testFullBlocksAreWrittenByAppend() throws {
        let dir = try makeTemporaryDirectory(self)
        let writer = try TraceFileWriter(path: "\(dir)/auto.ctr", header: sampleHeader(), blockBytes: 10 * faultRecordBytes)
        for i in 0..<9 { writer.append(fault(i)) }
        XCTAssertEqual(writer.blocksWritten, 1)
        writer.append(fault(9))
        XCTAssertEqual(writer.blocksWritten, 2)
        XCTAssertEqual(writer.recordsWritten, 10)
        XCTAssertEqual(writer.recordsBuffered, 0)
        try writer.close()
    }

    func testAppendAfterCloseIsDroppedAndReported() throws {
        let dir = try makeTemporaryDirectory(self)
        let writer = try TraceFileWriter(path: "\(dir)/closed.ctr", header: sampleHeader())
        try writer.close()
        writer.append(fault(1))
        XCTAssertEqual(writer.recordsDropped, 1)
        XCTAssertEqual(writer.error?.problem, .closed)
        XCTAssertThrowsError(try writer.flush()) { XCTAssertEqual(($0 as? TraceFileError)?.problem, .closed) }
    }

    func testWriteErrorIsKeptAndTheFileStaysReadable() throws {
        // /dev/full fails every write with ENOSPC.
        guard FileManager.default.fileExists(atPath: "/dev/full") else { throw XCTSkip("no /dev/full") }
        XCTAssertThrowsError(try TraceFileWriter(path: "/dev/full", header: sampleHeader(), overwrite: true)) {
            XCTAssertEqual(($0 as? TraceFileError)?.problem, .noSpace)
            XCTAssertEqual("\($0)", "cannot write /dev/full: no space left on device; free some space or choose another -o path (the blocks written so far stay readable)")
        }
    }

    func testDeinitWritesTheLastBlock() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = "\(dir)/deinit.ctr"
        do {
            let writer = try TraceFileWriter(path: path, header: sampleHeader())
            writer.append(fault(1))
        }
        let contents = try TraceFileReader.read(path: path)
        XCTAssertEqual(contents.records, [fault(1)])
        XCTAssertEqual(contents.cut, .noEndRecord(offset: contents.bytes))
    }
}
