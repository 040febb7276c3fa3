import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace stat --oom`: a real memory-cgroup OOM kill (caused by
/// `cowtrace oom-selftest`) shows up under the table with its victim.
final class StatOOMCLITests: XCTestCase {
    func testStatPrintsTheOOMKillUnderTheTable() throws {
        try requireBPF()
        let cowtrace = builtProductsDirectory().appendingPathComponent("cowtrace")
        let stat = Process()
        stat.executableURL = cowtrace
        stat.arguments = ["stat", "--oom", "--all", "--top", "3", "1"]
        let statOut = Pipe()
        stat.standardOutput = statOut
        stat.standardError = FileHandle.nullDevice
        try stat.run()
        defer { if stat.isRunning { stat.terminate() } }
        Thread.sleep(forTimeInterval: 1.5) // attached before the kill

        let kill = Process()
        kill.executableURL = cowtrace
        kill.arguments = ["oom-selftest"]
        let killOut = Pipe()
        kill.standardOutput = killOut
        try kill.run()
        let selftest = String(decoding: killOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        kill.waitUntilExit()
        XCTAssertEqual(kill.terminationStatus, 0, selftest)
        let victimLine = try XCTUnwrap(selftest.split(separator: "\n").first { $0.contains("victim is the child") }, selftest)
        let victim = try XCTUnwrap(victimLine.split(separator: " ").first { Int($0) != nil }, String(victimLine))

        Thread.sleep(forTimeInterval: 1.5) // one more interval prints the kill
        stat.interrupt()
        let output = String(decoding: statOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        stat.waitUntilExit()
        XCTAssertEqual(stat.terminationStatus, 0)
        XCTAssertTrue(output.contains("OOM kill: memory cgroup"), output)
        XCTAssertTrue(output.contains("victim   \(victim) (cowtrace-worklo)"), output)
        XCTAssertTrue(output.contains("final totals"), output)
    }
}
