import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace oom --format json`: a real memory-cgroup OOM kill (caused by
/// `cowtrace oom-selftest`, run as oom's `-c` command) is one snake_case line
/// with `schema_version`, whose figures match what the self-test set up.
final class OOMCLITests: XCTestCase {
    private struct Report: Decodable {
        struct Kill: Decodable {
            var pid: Int32
            var comm: String
            var victimRead: Bool
            var anonRssKib: UInt64
            var cgroupId: UInt64
            var cgroupLimitBytes: UInt64?
            var triggerPid: Int32
            var constraint: String
            var timestampNanoseconds: UInt64
        }
        var kill: Kill
    }

    func testJSONLineOfARealKill() throws {
        try requireBPF()
        let cowtrace = builtProductsDirectory().appendingPathComponent("cowtrace").path
        let r = try runProduct("cowtrace", ["oom", "--format", "json", "-c", cowtrace, "oom-selftest"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        // The self-test's own check of the kill against the kernel's "Killed process" line.
        let victimLine = try XCTUnwrap(lines.first { $0.contains("victim is the child") }, r.stdout)
        let victim = try XCTUnwrap(victimLine.split(separator: " ").compactMap { Int32($0) }.first, victimLine)
        let kills = try lines.filter { $0.hasPrefix("{") }.map { try decodeSnakeCaseJSON(Report.self, $0).kill }
        let kill = try XCTUnwrap(kills.first { $0.pid == victim }, r.stdout)
        XCTAssertEqual(kill.comm, "cowtrace-worklo")
        XCTAssertTrue(kill.victimRead)
        XCTAssertEqual(kill.constraint, "memcg")
        XCTAssertEqual(kill.cgroupLimitBytes, 64 << 20, "the self-test's memory.max")
        // The child rewrote its share of a 48 MiB region under a 64 MiB limit.
        XCTAssertGreaterThanOrEqual(kill.anonRssKib, 24 * 1024)
        XCTAssertLessThanOrEqual(kill.anonRssKib, 64 * 1024)
        XCTAssertGreaterThan(kill.cgroupId, 0)
        XCTAssertGreaterThan(kill.triggerPid, 0)
        XCTAssertGreaterThan(kill.timestampNanoseconds, 0)
    }
}
