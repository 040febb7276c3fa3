import CowTraceSelfTest
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest

/// The pid index: which one a kernel.pid_max gets, and the hashed index (the
/// one systemd hosts get: pid_max 4194304) counting every scenario of the
/// matrix right, on this kernel, whatever this host's own pid_max.
final class PIDIndexTests: XCTestCase {
    func testPidMaxChoosesTheIndex() {
        XCTAssertEqual(PIDIndex.automatic.resolved(pidMax: 32768), .direct)
        XCTAssertEqual(PIDIndex.automatic.resolved(pidMax: PIDIndex.directLimit), .direct)
        XCTAssertEqual(PIDIndex.automatic.resolved(pidMax: 4_194_304), .hashed)
        XCTAssertEqual(PIDIndex.direct.resolved(pidMax: 4_194_304), .direct)
        XCTAssertEqual(PIDIndex.hashed.resolved(pidMax: 32768), .hashed)
    }

    /// Every scenario, counted through the hashed index, against the
    /// workload's own account and its pagemap frames (slack:
    /// Scenario.toleranceDescription).
    func testMatrixThroughTheHashedIndex() throws {
        try requireBPF()
        var options = TracerOptions()
        options.selection.followSpawnedChildren = true
        options.pidIndex = .hashed
        options.perThread = true
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        XCTAssertEqual(tracer.pidIndex, .hashed)
        let runner = ScenarioRunner(tracer: tracer, workload: try Workload.locate())
        for scenario in Scenario.matrix {
            let result = try runner.run(scenario)
            for c in result.checks {
                XCTAssertTrue(c.passed, "\(scenario.name): \(c.role) \(c.measure) counted \(c.observed), expected \(c.expected) ± \(c.tolerance)")
            }
            XCTAssertTrue(result.checks.contains { $0.expected > 0 && $0.passed }, "\(scenario.name) checked nothing non-zero")
        }
        // Every traced process has exited: the hash holds no pid, no slot is claimed.
        let usage = try tracer.slotUsage()
        XCTAssertEqual(usage.claimed, 0)
        XCTAssertEqual(usage.indexed, 0)
    }

    /// --all through the hashed index: 300 processes come and go; afterwards
    /// the claimed slots and the hash's pids are the live processes again
    /// (slack: processes that other tests or the host start or end between
    /// the reads), and each short-lived child's copies were counted.
    func testSlotsReturnAfterChurn() throws {
        try requireBPF()
        var options = TracerOptions()
        options.selection.all = true
        options.pidIndex = .hashed
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let workload = try Workload.locate()
        Thread.sleep(forTimeInterval: 0.5)
        let before = try tracer.slotUsage()
        var children: [Int32] = []
        for _ in 0..<300 {
            let report = try workload.run(["--pages", "64", "child:write:0:32", "child:exit"])
            if let child = report.child { children.append(child) }
        }
        let snapshot = try tracer.snapshot()
        XCTAssertEqual(children.count, 300)
        for child in children {
            // The region's 32 pages, plus the child's own stack and libc pages it dirties on the way out (a few).
            let copies = snapshot.counters[child]?.copies ?? 0
            XCTAssertTrue((32...48).contains(copies), "child \(child): \(copies) copies, expected 32 to 48")
        }
        let after = try tracer.slotUsage()
        let live = try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.count
        print("slots claimed \(before.claimed) -> \(after.claimed), pids in the hash \(before.indexed ?? -1) -> \(after.indexed ?? -1), live processes \(live)")
        // The two reads are not one instant: processes of the host start and end between them.
        XCTAssertEqual(after.claimed, after.indexed ?? -1000, accuracy: 10, "every claimed slot is in the hash and no more")
        XCTAssertLessThanOrEqual((after.indexed ?? 0) - (before.indexed ?? 0), 20, "300 processes came and went: the hash must not keep them")
        XCTAssertLessThanOrEqual(after.claimed, live + 5, "claimed slots must not outnumber live processes")
        XCTAssertLessThanOrEqual(abs(after.claimed - before.claimed), 20, "300 processes came and went: the slots must come back")
    }
}
