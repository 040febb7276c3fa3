@testable import CowTraceReplay
import CowTraceFormat
import Foundation
import MMUSim
import XCTest

/// Kernel behaviour the model cannot decide, counted apart from agreements
/// only where the recording shows the evidence: overlapping faults of two
/// sharers, a sharer's exit that had not yet torn its pages down.
final class TraceCheckRaceTests: XCTestCase {
    let A: UInt64 = 0x7f12_3400_0000

    /// Parent 1000 with 64 pages written, forked into 1001.
    func forked() -> TraceBuilder {
        var b = TraceBuilder()
        b.comms[1000] = "parent"
        b.mmap(1000, at: A, pages: 64)
        b.touch(1000, at: A, pages: 64, write: true)
        b.fork(1000, 1001, comm: "child")
        return b
    }

    func testBothSharersCopyingAtOnceIsARaceAndAWastedCopy() throws {
        var b = forked()
        b.wp(1001, at: A, pages: 8, .copy)
        b.wpTogether(1001, .copy, 1000, .copy, at: A + 8 * page) // both saw two references
        b.wp(1000, at: A, pages: 8, .reuse)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements.count, 1)
        let d = try XCTUnwrap(result.disagreements.first)
        XCTAssertEqual([d.pid], [1000])
        XCTAssertEqual([d.kernel, d.model], [.copy, .reuse])
        XCTAssertEqual(d.reason, .concurrentFault)
        XCTAssertTrue(d.wastedCopy)

        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.evidenced, check.unexplained, check.total], [17, 1, 0, 18])
        XCTAssertEqual(check.wastedCopies, 1)
        XCTAssertEqual(check.evidencedByReason.map(\.reason), [.concurrentFault])
        XCTAssertTrue(check.passed, "17 agreements + 1 evidenced race of 18")
        XCTAssertEqual(agreementLine(check), "agreement 94.44 % (17 of 18 write-protect faults) + 1 the model cannot decide "
            + "= 100.00 % — threshold 99.5 %: PASS")
        let report = renderCheck(check)
        XCTAssertTrue(report.contains("kernel behaviour the model cannot decide (the recording shows why): 1 fault"), report)
        XCTAssertTrue(report.contains("  concurrent fault by another sharer of the page: 1 fault"), report)
        XCTAssertTrue(report.contains("wasted copies: 1 copy the kernel made where a reuse was possible (0.00 MiB)"), report)
        XCTAssertFalse(report.contains("unexplained (no evidence"), report)
    }

    func testTheLaterSharerCopyingFirstExcusesTheEarlierOnesReuse() throws {
        var b = forked()
        // 1001 entered first, but 1000 took its lock first and copied; 1001 then found one reference.
        b.wpTogether(1001, .reuse, 1000, .copy, at: A)
        // With no resolve, 1001's fault is known to be over only at its thread's next event.
        b.exit(1001)
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements.map(\.reason), [.concurrentFault, .concurrentFault])
        XCTAssertEqual(result.disagreements.map { [$0.kernel, $0.model] }, [[.reuse, .copy], [.copy, .reuse]])
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.evidenced, check.unexplained], [0, 2, 0])
        XCTAssertEqual(check.wastedCopies, 0, "one copy for one page: nothing wasted")
        XCTAssertTrue(check.passed)
    }

    func testACopyAfterTheOtherFaultWasOverIsUnexplained() throws {
        var b = forked()
        b.wp(1001, at: A, .copy)
        b.touch(1001, at: A + 64 * page, write: false) // 1001 faulted again: its copy was over
        b.wp(1000, at: A, .copy)                      // no overlapping fault: no evidence
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements.map(\.reason), [.transientReference])
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.evidenced, check.unexplained], [1, 0, 1])
        XCTAssertEqual(check.wastedCopies, 1)
        XCTAssertFalse(check.passed)
        // --min-agreement applies to agreements plus evidenced reasons: 1 of 2 here.
        XCTAssertTrue(TraceCheck(result: result, threshold: 0.5).passed)
        let report = renderCheck(check)
        XCTAssertTrue(report.contains("unexplained (no evidence in the recording): 1 fault"), report)
        XCTAssertTrue(report.hasSuffix("agreement 50.00 % (1 of 2 write-protect faults) — threshold 99.5 %: FAIL\n"), report)
    }

    func testACopyRightAfterTheSharersExitIsItsTeardown() throws {
        var b = forked()
        b.exit(1001)
        b.wp(1000, at: A, pages: 4, .copy)  // the child's pages are not zapped yet
        b.wp(1000, at: A + 4 * page, pages: 4, .reuse) // now they are
        b.wp(1000, at: A + 8 * page, .copy) // after a reuse showed the teardown done: no evidence
        b.end()
        let result = try b.replay()
        XCTAssertEqual(result.disagreements.map(\.reason), Array(repeating: .sharerExiting, count: 4) + [.transientReference])
        let check = TraceCheck(result: result)
        XCTAssertEqual([check.agreed, check.evidenced, check.unexplained], [4, 4, 1])
        XCTAssertEqual(check.wastedCopies, 5)

        // Long after the exit the window is over: nothing is evidenced.
        let late = try TraceReplayer(header: b.header)
        late.exitTeardownWindowNanoseconds = 500
        XCTAssertEqual(late.replay(b.records).disagreements.map(\.reason).filter { $0 == .sharerExiting }.count, 0)
    }

    func testCheckJSONAndCSVCountTheThreeKinds() throws {
        var b = forked()
        b.wpTogether(1001, .copy, 1000, .copy, at: A)
        b.wp(1001, at: A + page, .reuse) // the parent still shares it: unexplained
        b.end()
        let check = TraceCheck(result: try b.replay())
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(renderCheckJSON(check).utf8)) as? [String: Any])
        let agreement = try XCTUnwrap(doc["agreement"] as? [String: Any])
        XCTAssertEqual(agreement["agreed"] as? Int, 1)
        XCTAssertEqual(agreement["evidenced"] as? Int, 1)
        XCTAssertEqual(agreement["unexplained"] as? Int, 1)
        XCTAssertEqual(agreement["accounted"] as? Int, 2)
        XCTAssertEqual(agreement["wasted_copies"] as? Int, 1)
        XCTAssertEqual(agreement["evidenced_by_reason"] as? [String: Int], ["concurrent fault by another sharer of the page": 1])
        XCTAssertEqual(agreement["passed"] as? Bool, false)
        let groups = try XCTUnwrap(doc["disagreements"] as? [[String: Any]])
        XCTAssertEqual(Set(groups.map { $0["evidenced"] as? Bool }), [true, false])
        let rows = try XCTUnwrap(doc["processes"] as? [[String: Any]])
        let parent = try XCTUnwrap(rows.first { $0["pid"] as? Int == 1000 })
        XCTAssertEqual([parent["agreements"], parent["evidenced"], parent["unexplained"], parent["wasted_copies"]].map { $0 as? Int },
                       [0, 1, 0, 1])

        let csv = renderCheckCSV(check).split(separator: "\n").map(String.init)
        XCTAssertEqual(csv.first, "pid,comm,class,kernel,model,counters")
        XCTAssertTrue(csv.contains("1000,parent,evidenced,1,,"), csv.joined(separator: "\n"))
        XCTAssertTrue(csv.contains("1000,parent,wasted_copies,1,,"))
        XCTAssertTrue(csv.contains("1001,child,agreed,1,,"))
        XCTAssertTrue(csv.contains("1001,child,unexplained,1,,"))
    }
}
