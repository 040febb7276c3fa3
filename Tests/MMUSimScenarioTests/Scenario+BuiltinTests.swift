@testable import MMUSimScenario
import MMUSim
import XCTest

/// Every built-in scenario runs, passes its own expectations, and shows its headline figure.
final class ScenarioBuiltinTests: XCTestCase {
    func run(_ name: String) throws -> ScenarioReport {
        let scenario = try XCTUnwrap(try Scenario.builtin(named: name))
        let report = try ScenarioRunner.run(scenario)
        for e in report.expectations { XCTAssertTrue(e.passed, "\(name): expect \(e.check), got \(e.actual)") }
        XCTAssertFalse(report.summary.isEmpty)
        return report
    }

    func row(_ r: ScenarioReport, _ name: String) -> ScenarioReport.ProcessRow { r.processes.first { $0.name == name }! }

    func testEveryBuiltinParsesAndHasASummary() throws {
        XCTAssertEqual(Scenario.builtinNames.count, 10)
        for name in Scenario.builtinNames {
            let s = try XCTUnwrap(try Scenario.builtin(named: name))
            XCTAssertEqual(s.name, name)
            XCTAssertFalse(s.summary.isEmpty)
            XCTAssertFalse(s.expectations.isEmpty, name)
        }
    }

    func testForkExecCopiesNothing() throws {
        let r = try run("fork-exec")
        XCTAssertEqual(row(r, "child").copies, 0)
        XCTAssertEqual(row(r, "shell").copies, 0)
        // After exec the child maps and writes 1 MiB of its own: 256 first-touch faults.
        XCTAssertEqual(r.steps[6].faults, ["anon-page": 256])
        // Alone again, the parent's 524288 writes are all reuses.
        XCTAssertEqual(r.steps[8].faults, ["reuse": 524_288])
    }

    func testChildWrites10PagesCopies10() throws {
        let r = try run("child-writes-10-pages")
        XCTAssertEqual(r.steps[4].faults, ["copy": 10])
        XCTAssertEqual(r.steps[5].faults, [:], "reads of shared pages do not fault")
        let child = r.steps[5].processes.first { $0.name == "child" }!
        // 10 private pages, 262134 shared; PSS = 40 KiB + 262134 x 2 KiB.
        XCTAssertEqual(child.privateKB, 40)
        XCTAssertEqual(child.sharedKB, 1_048_536)
        XCTAssertEqual(child.pssKB, 40 + 524_268)
    }

    func testRedisBGSaveCopies512MiB() throws {
        let r = try run("redis-bgsave")
        // 10 GiB = 2621440 pages; every 20th page = 131072 pages = 512 MiB.
        XCTAssertEqual(r.steps[5].faults, ["copy": 131_072])
        let child = r.steps[5].processes.first { $0.name == "bgsave" }!
        XCTAssertEqual(child.privateDirtyKB, 512 * 1024, "rdb_last_cow_size: the child's Private_Dirty")
        let parent = r.steps[5].processes.first { $0.name == "redis-server" }!
        XCTAssertEqual(parent.privateKB, 512 * 1024)
        XCTAssertEqual(r.steps[5].host.usedKB, (10 * 1024 * 1024 + 512 * 1024) + 2 * 5131 * 4,
                       "10 GiB + 512 MiB of copies + 2 x 5131 page-table pages")
    }

    /// 8 GiB = 2097152 pages. The 6 GiB parent has 1572864 pages and 3072 PTE + 6 PMD + 1 PUD = 3079
    /// table pages; so does the child. Free after the fork: 2097152 - 1572864 - 6158 = 518130 pages.
    func testOOM8GKillsTheChildInModes0And1() throws {
        for name in ["oom-8g", "oom-8g-always"] {
            let r = try run(name)
            XCTAssertEqual(r.steps[4].faults, ["copy": 518_130, "oom": 1], name)
            XCTAssertEqual(r.oomEvents, ["Out of memory: Killed process 1001 (app) total-vm:6291456kB, anon-rss:6291456kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:12316kB oom_score_adj:0"])
            XCTAssertEqual(row(r, "child").state, "killed (OOM)")
        }
    }

    func testOOM8GNeverRefusesTheFork() throws {
        let r = try run("oom-8g-never")
        // allowed = 2097152 - 2048 - min(1572864/32, 32768) = 2062336 < 2 x 1572864.
        XCTAssertEqual(r.steps[3].error?.hasPrefix("ENOMEM: fork"), true)
        XCTAssertEqual(r.host.committedASKB, 6 * 1024 * 1024)
        XCTAssertEqual(r.oomEvents, [])
    }

    func testOOM8GAdjKillsTheParent() throws {
        let r = try run("oom-8g-adj")
        // The child's 518131st copy waits for the kill; the rest of its 786432 pages are its own: reuse.
        XCTAssertEqual(r.steps[5].faults, ["copy": 518_131, "reuse": 786_432 - 518_131])
        XCTAssertEqual(r.oomEvents.first?.hasPrefix("Out of memory: Killed process 1000 (app)"), true)
    }

    func testOOM8GProtectedHasNoVictim() throws {
        let r = try run("oom-8g-protected")
        XCTAssertEqual(r.oomEvents, ["Out of memory and no killable processes..."])
        XCTAssertEqual(r.steps[4].faults, ["copy": 518_130, "oom": 1])
    }

    func testIncrementExample() throws {
        let r = try run("increment")
        XCTAssertEqual(r.steps[6].faults, ["file-copy": 1], ".data: do_cow_fault")
        XCTAssertEqual(r.steps[10].action, "child: data++ -> 1")
        XCTAssertEqual(r.steps[10].faults, ["copy": 1])
        XCTAssertEqual(r.steps[14].action, "parent: data++ -> 1")
        XCTAssertEqual(r.steps[14].faults, ["reuse": 1])
    }

    func testMemcgForkKillsTheParent() throws {
        let r = try run("memcg-fork")
        XCTAssertEqual(r.oomEvents, ["Memory cgroup out of memory: Killed process 2000 (app) total-vm:51200kB, anon-rss:49152kB, file-rss:2048kB, shmem-rss:0kB, UID:0 pgtables:108kB oom_score_adj:0"])
    }

    func testTextReportHasATablePerStepAndASummary() throws {
        let r = try run("child-writes-10-pages")
        let text = r.text()
        XCTAssertTrue(text.contains("Step 5 (line 16): child: write 10 pages of data  # each write-protect fault copies one 4 KiB page"), text)
        XCTAssertTrue(text.contains("  faults: copy 10"))
        XCTAssertTrue(text.contains("PROCESS  PID   STATE"))
        XCTAssertTrue(text.contains("child (pid 1001): exited, 10 pages copied (40 KiB)"))
        XCTAssertTrue(text.contains("parent (pid 1000): running, 0 pages copied (0 B), 262144 faults, RSS 1 GiB (anon 1 GiB, file 0 B, shmem 0 B), Private_Dirty 1 GiB"), text)
        XCTAssertTrue(text.contains("ok   expect child made 10 copies"))
    }
}
