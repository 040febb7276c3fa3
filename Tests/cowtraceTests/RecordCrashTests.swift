import CowTraceFormat
import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace record` killed with SIGKILL: the file reads back up to its last
/// complete block and says it was cut; nothing recorded before is lost.
final class RecordCrashTests: XCTestCase {
    func testKilledRecorderLeavesAReadableFileWithTheCutReported() throws {
        try requireBPF()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-crash-\(getpid()).ctr").path
        try? FileManager.default.removeItem(atPath: path)
        defer { try? FileManager.default.removeItem(atPath: path) }

        let recorder = Process()
        recorder.executableURL = URL(fileURLWithPath: productPath("cowtrace"))
        recorder.arguments = ["record", "-o", path, "--all", "--no-oom", "--duration", "120"]
        let err = Pipe()
        recorder.standardError = err
        recorder.standardOutput = FileHandle.nullDevice
        try recorder.run()
        // Wait until it is recording (it says so on stderr once attached).
        let started = Date()
        var said = ""
        while !said.contains("recording to"), Date().timeIntervalSince(started) < 60 {
            said += String(decoding: err.fileHandleForReading.availableData, as: UTF8.self)
        }
        XCTAssertTrue(said.contains("recording to"), said)

        // A workload whose child copies a known number of pages, recorded with the rest of the host.
        let pages = 2048
        let w = try runProduct("cowtrace-workload", ["--pages", "4096", "child:write:0:\(pages)", "child:exit"])
        XCTAssertEqual(w.status, 0, w.stderr)
        let child = try XCTUnwrap(workloadLine(w.stdout)?["child"] as? Int)
        // The file is readable while it is written (complete blocks only):
        // wait until the child's copies are in it, then kill the recorder.
        func childCopies(_ records: [TraceRecord]) -> Int {
            records.filter {
                if case .resolve(let r) = $0 { return r.pid == Int32(child) && r.faultClass == .copy }
                return false
            }.count
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let partial = try? TraceFileReader.read(path: path), childCopies(partial.records) >= pages { break }
            Thread.sleep(forTimeInterval: 0.25)
        }
        kill(recorder.processIdentifier, SIGKILL)
        recorder.waitUntilExit()
        XCTAssertEqual(recorder.terminationReason, .uncaughtSignal)

        let contents = try TraceFileReader.read(path: path)
        guard case .noEndRecord = contents.cut else { return XCTFail("cut not reported: \(String(describing: contents.cut))") }
        XCTAssertFalse(contents.records.contains { if case .end = $0 { return true }; return false })
        // The child's copies, as the kernel resolved them, are all in the file.
        let copies = childCopies(contents.records)
        XCTAssertEqual(copies, pages, accuracy: pageSlack(pages), "copies of child \(child) recorded before the kill")
        XCTAssertTrue(contents.records.contains { if case .fork(let f) = $0 { return f.child == Int32(child) }; return false })
    }
}
