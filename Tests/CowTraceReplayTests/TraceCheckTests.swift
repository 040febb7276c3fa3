@testable import CowTraceReplay
import CowTraceFormat
import Foundation
import MMUSim
import XCTest

final class TraceCheckTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000

    func forkedParent(_ b: inout TraceBuilder, childCopies: UInt64 = 16) {
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 64)
        b.touch(1000, at: A, pages: 64, write: true)
        b.fork(1000, 1001, comm: "child")
        b.wp(1001, at: A, pages: childCopies, .copy)
    }

    func testInjectedWrongKernelClassIsOneDisagreement() throws {
        var b = TraceBuilder()
        forkedParent(&b, childCopies: 15)
        b.wp(1001, at: A + 15 * page, .reuse) // the kernel "reused" a page still shared with the parent
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements.count, 1)
        let d = try XCTUnwrap(result.disagreements.first)
        XCTAssertEqual([d.kernel, d.model], [.reuse, .copy])
        XCTAssertEqual(d.modelOutcome, "copy")
        XCTAssertEqual(d.reason, .sharerNotSeen)

        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.total, check.disagreed], [15, 16, 1])
        XCTAssertEqual(check.groups, [TraceCheck.DisagreementGroup(pid: 1001, comm: "child", kernel: .reuse, model: .copy,
                                                                   reason: .sharerNotSeen, count: 1, examples: [A + 15 * page])])
        XCTAssertFalse(check.agreementPassed)
        XCTAssertTrue(check.countersConsistent, "the counters say the same as the events")
        XCTAssertFalse(check.passed)
        XCTAssertEqual(agreementLine(check),
                       "agreement 93.75 % (15 of 16 write-protect faults) — threshold 99.5 %: FAIL")
        // With a threshold the ratio meets, it passes.
        XCTAssertTrue(TraceCheck(result: result, threshold: 0.9375).agreementPassed)
        XCTAssertEqual(agreementLine(TraceCheck(result: result, threshold: 0.9)),
                       "agreement 93.75 % (15 of 16 write-protect faults) — threshold 90 %: PASS")

        let report = renderCheck(check)
        XCTAssertTrue(report.contains("disagreements: 1 fault in 1 group"), report)
        XCTAssertTrue(report.contains("pid 1001 (child): kernel reuse, model copy: 1 fault: a sharer's exit or unmap was not seen (e.g. 0x7f123400f000)"), report)
        XCTAssertTrue(report.hasSuffix("threshold 99.5 %: FAIL\n"), report)
    }

    func testKernelCopyOfAnExclusivePageIsATransientReference() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.exit(1001)
        b.wp(1000, at: A, pages: 63, .reuse)
        b.wp(1000, at: A + 63 * page, .copy) // LRU batch reference: the kernel copied
        b.end()
        let check = TraceCheck(result: try b.replay())
        XCTAssertEqual(check.groups.map(\.reason), [.transientReference])
        XCTAssertEqual(check.groups.first?.examples, [A + 63 * page])
        XCTAssertEqual([check.agreed, check.total], [79, 80])
        // 79/80 = 98.75 %: below 99.5 %.
        XCTAssertEqual(agreementLine(check), "agreement 98.75 % (79 of 80 write-protect faults) — threshold 99.5 %: FAIL")
    }

    func testGapExplainsCountersAndDisagreementsAfterIt() throws {
        var b = TraceBuilder()
        forkedParent(&b, childCopies: 8)
        b.lostWP(1001, at: A + 9 * page, .copy)   // lost: the ring buffer was full
        b.gap(lost: 1)
        b.wp(1000, at: A + 9 * page, .reuse)     // the kernel knows the child copied it; the model does not
        b.wp(1000, at: A + 10 * page, .copy)
        // No mapping in the model (made by exec, so the live child has it too:
        // the model copies); that reason comes first.
        b.wp(1000, at: 0x7ffc_0000_1000, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.stats.gaps, 1)
        XCTAssertEqual(result.stats.lostEvents, 1)
        XCTAssertEqual(result.disagreements.map(\.reason), [.eventsLostInGap, .mappingBeforeTrace])
        let check = TraceCheck(result: result)
        XCTAssertEqual(check.mismatches, [
            TraceCheck.CounterMismatch(pid: 1001, comm: "child", field: "write-protect faults", events: 8, counters: 9),
            TraceCheck.CounterMismatch(pid: 1001, comm: "child", field: "copy", events: 8, counters: 9),
        ])
        XCTAssertTrue(check.countersConsistent)
        XCTAssertTrue(check.mismatchesExplainedByGaps)
        XCTAssertEqual([check.agreed, check.total], [9, 11])
        let report = renderCheck(check)
        XCTAssertTrue(report.contains("counters: 2 differences between the events and the kernel's counters, explained by 1 gap (1 event lost)"), report)
        XCTAssertTrue(report.contains("kernel reuse, model copy: 1 fault: events lost in a gap"), report)
    }

    func testCountersMismatchWithoutAGapIsReported() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.kernel[1001]!.copies += 1
        b.kernel[1001]!.wpFaults += 1
        b.end()
        let check = TraceCheck(result: try b.replay())
        XCTAssertTrue(check.agreementPassed)
        XCTAssertEqual(check.mismatches.map(\.field), ["write-protect faults", "copy"])
        XCTAssertFalse(check.countersConsistent)
        XCTAssertFalse(check.passed)
        let report = renderCheck(check)
        XCTAssertTrue(report.contains("no gap was recorded: MISMATCH"), report)
        XCTAssertTrue(report.contains("pid 1001 (child) copy: 16 in the events, 17 counted by the kernel"), report)
        let table = report.split(separator: "\n").map(String.init)
        XCTAssertTrue(table.contains("1001  child   copy              16     16        17"), report)
    }

    func testProcessWithoutCountersIsListed() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.writeCounters([1000])
        let check = TraceCheck(result: try b.replay())
        XCTAssertEqual(check.processesWithoutCounters, [1001])
        XCTAssertTrue(check.countersConsistent)
        XCTAssertTrue(renderCheck(check).contains("counters: none recorded for pid 1001"))
    }

    func testJSONHasStableKeys() throws {
        var b = TraceBuilder()
        forkedParent(&b)
        b.end()
        let result = try b.replay()
        let replay = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(renderReplayJSON(result).utf8)) as? [String: Any])
        XCTAssertEqual(replay["format"] as? String, "cowtrace-replay")
        XCTAssertEqual(replay["schema_version"] as? Int, 1)
        XCTAssertEqual(replay["fault_tier"] as? String, "tracepoint")
        XCTAssertEqual(Set(replay.keys), ["schema_version", "format", "version", "kernel_release", "hostname", "selection", "fault_tier",
                                          "tier_sees_shared_writes", "processes", "totals", "total_bytes_copied", "stats",
                                          "gaps", "lost_events", "oom_kills", "end_reason", "notes"])
        let processes = try XCTUnwrap(replay["processes"] as? [[String: Any]])
        XCTAssertEqual(processes.map { $0["pid"] as? Int }, [1000, 1001])
        XCTAssertTrue(processes[0]["parent"] is NSNull)
        let childModel = try XCTUnwrap(processes[1]["model"] as? [String: Int])
        XCTAssertEqual(childModel, ["copy": 16, "reuse": 0, "zero_fill": 0, "file_copy": 0, "shared_write": 0, "other": 0, "total": 16])

        let check = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(renderCheckJSON(TraceCheck(result: result)).utf8)) as? [String: Any])
        XCTAssertEqual(check["schema_version"] as? Int, 1)
        XCTAssertEqual(Set(check.keys), ["schema_version", "format", "version", "fault_tier", "tier_sees_shared_writes", "processes",
                                         "counters", "disagreements", "agreement", "passed"])
        let agreement = try XCTUnwrap(check["agreement"] as? [String: Any])
        XCTAssertEqual(agreement["agreed"] as? Int, 16)
        XCTAssertEqual(agreement["total"] as? Int, 16)
        XCTAssertEqual(agreement["passed"] as? Bool, true)
        XCTAssertEqual(agreement["line"] as? String, "agreement 100.00 % (16 of 16 write-protect faults) — threshold 99.5 %: PASS")
        XCTAssertEqual(check["passed"] as? Bool, true)
    }
}
