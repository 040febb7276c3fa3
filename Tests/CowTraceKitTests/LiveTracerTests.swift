import CowTraceSelfTest
import CowTraceKit
import CowTraceTestSupport
import XCTest

/// Real BPF on the running kernel: every scenario of the matrix, counted by
/// the best tier this kernel allows, compared class by class with what the
/// workload did (slack: Scenario.toleranceDescription).
final class LiveScenarioTests: XCTestCase {
    nonisolated(unsafe) private static var shared: (CowTracer, Workload)?

    private func runner() throws -> ScenarioRunner {
        try requireBPF()
        if Self.shared == nil {
            var options = TracerOptions()
            options.selection.followSpawnedChildren = true
            if let forced = ProcessInfo.processInfo.environment["COWTRACE_TIER"] { options.tier = AttachTier(rawValue: forced) }
            Self.shared = (try CowTracer(options: options), try Workload.locate())
            print("live tests on tier \(Self.shared!.0.tier)")
        }
        return ScenarioRunner(tracer: Self.shared!.0, workload: Self.shared!.1)
    }

    private func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let scenario = try XCTUnwrap(Scenario.named(name))
        let result = try runner().run(scenario)
        for c in result.checks {
            XCTAssertTrue(c.passed, "\(name): \(c.role) \(c.measure) counted \(c.observed), expected \(c.expected) ± \(c.tolerance)", file: file, line: line)
        }
        // A probe that counted nothing must fail: every scenario expects some non-zero class.
        XCTAssertTrue(result.checks.contains { $0.expected > 0 && $0.passed }, "\(name) checked nothing non-zero", file: file, line: line)
        // As root the workload's page frames are a second truth, and it is compared.
        XCTAssertNotNil(result.report.frames, "\(name): no frame-number truth (pagemap) as root", file: file, line: line)
        XCTAssertTrue(result.checks.contains { $0.measure.hasSuffix("[frames]") }, "\(name): nothing compared with the frames", file: file, line: line)
    }

    func testMatrixIsLargeEnough() { XCTAssertGreaterThanOrEqual(Scenario.matrix.count, 8) }
    func testChildWritesHalf() throws { try check("child-writes-half") }
    func testParentWritesWhileChildAlive() throws { try check("parent-writes-child-alive") }
    func testParentWritesAfterChildExited() throws { try check("parent-writes-child-exited") }
    func testChildFirstThenParent() throws { try check("child-first-then-parent") }
    func testParentFirstThenChild() throws { try check("parent-first-then-child") }
    func testChildReadsIntoShared() throws { try check("child-reads-into-shared") }
    func testKernelWritesCopyAndReuse() throws { try check("kernel-writes-copy-and-reuse") }
    func testFileReadIntoBuffer() throws { try check("file-read-into-buffer") }
    func testSmallRegion() throws { try check("small-region") }
    func testLargeRegion() throws { try check("large-region") }
    func testZeroPage() throws { try check("zero-page") }
    func testSharedFile() throws { try check("shared-file") }
    func testPrivateFileNoHugePage() throws { try check("private-file-nohugepage") }
    /// Issue 12: no madvise, so most writes are not-present faults (do_cow_fault), counted as file copies.
    func testPrivateFileReadThenWrite() throws { try check("private-file-read-then-write") }
    func testPrivateFileWriteWithoutRead() throws { try check("private-file-write-without-read") }
    func testForkExec() throws { try check("fork-exec") }
    func testTransparentHugePage() throws { try check("thp-child-writes") }

    /// The whole matrix again with the kernel bucketing histograms: the
    /// counts stay right and every histogram adds up to the counters.
    func testMatrixWithHistograms() throws {
        try requireBPF()
        var options = TracerOptions()
        options.selection.followSpawnedChildren = true
        options.histograms = true
        options.mappingHistograms = true
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let runner = ScenarioRunner(tracer: tracer, workload: try Workload.locate())
        for scenario in Scenario.matrix {
            let result = try runner.run(scenario)
            for c in result.checks {
                XCTAssertTrue(c.passed, "\(scenario.name): \(c.role) \(c.measure) counted \(c.observed), expected \(c.expected) ± \(c.tolerance)")
            }
            XCTAssertTrue(result.checks.contains { $0.measure.hasPrefix("hist.") && $0.expected > 0 && $0.passed }, scenario.name)
        }
    }
}

final class LiveTracerTests: XCTestCase {
    /// -p mode: a process that was not spawned by the tracer is counted only
    /// once traced, and the child it forks afterwards is followed.
    func testTracingAnExistingPidFollowsItsFork() throws {
        try requireBPF()
        let tracer = try CowTracer(options: TracerOptions())
        defer { tracer.close() }
        let workload = try Workload.locate()
        var tracedAt = Int32(0)
        let report = try workload.run(["--pages", "2048", "child:write:0:1024", "child:exit"]) { pid in
            XCTAssertNil(try tracer.snapshot().counters[pid], "not traced yet: must not be counted")
            try tracer.trace(pid: pid)
            tracedAt = pid
        }
        XCTAssertEqual(report.parent, tracedAt)
        let snapshot = try tracer.snapshot()
        let child = try XCTUnwrap(report.child.flatMap { snapshot.counters[$0] }, "the forked child must be followed")
        XCTAssertEqual(Int(child.copies), 1024, accuracy: Scenario.tolerance(for: 1024))
        XCTAssertEqual(snapshot.counters[report.parent]?.forks, 1)
        XCTAssertEqual(snapshot.info[report.child!]?.ppid, report.parent)
        XCTAssertEqual(snapshot.info[report.child!]?.exited, true)
    }

    func testUnknownPidIsRefused() throws {
        try requireBPF()
        var options = TracerOptions()
        options.selection.pids = [Int32.max - 7]
        XCTAssertThrowsError(try CowTracer(options: options)) { error in
            XCTAssertTrue("\(error)".contains("no process with pid"), "\(error)")
        }
    }

    /// The ring buffer carries one resolve event per copy, plus fork and exit.
    func testRingBufferEventsAgreeWithCounters() throws {
        try requireBPF()
        var options = TracerOptions()
        options.selection.followSpawnedChildren = true
        options.emitEvents = true
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        var events: [FaultEvent] = []
        try tracer.onEvent { events.append($0) }
        let report = try Workload.locate().run(["--pages", "2048", "child:write:0:2048", "child:exit"])
        while tracer.pollEvents(timeoutMilliseconds: 100) > 0 {}
        let child = try XCTUnwrap(report.child)
        let counters = try XCTUnwrap(try tracer.snapshot().counters[child])
        let childCopies = events.filter { $0.pid == child && $0.kind == .resolve && $0.faultClass == .copy }.count
        XCTAssertEqual(UInt64(childCopies), counters.copies, "one resolve event per counted copy")
        XCTAssertEqual(childCopies, 2048, accuracy: Scenario.tolerance(for: 2048))
        XCTAssertEqual(events.filter { $0.pid == child && $0.kind == .writeProtectFault }.count, Int(counters.writeProtectFaults))
        XCTAssertTrue(events.contains { $0.kind == .fork && $0.pid == report.parent && $0.otherPID == child })
        XCTAssertTrue(events.contains { $0.kind == .exit && $0.pid == child })
        XCTAssertEqual(try tracer.drops().ringBufferFull, 0)
    }

    /// A tiny ring buffer overflows: the losses are counted, never silent.
    func testRingBufferOverflowIsCounted() throws {
        try requireBPF()
        var options = TracerOptions()
        options.selection.followSpawnedChildren = true
        options.emitEvents = true
        options.ringBufferBytes = 4096
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        try tracer.onEvent { _ in }
        _ = try Workload.locate().run(["--pages", "4096", "child:write:0:4096", "child:exit"])
        XCTAssertGreaterThan(try tracer.drops().ringBufferFull, 1000, "4096 faults cannot fit a 4 KiB ring buffer unread")
    }
}
