@testable import MMUSimScenario
import MMUSim
import XCTest

final class ScenarioParseTests: XCTestCase {
    func error(_ text: String, file: String = "bad.yaml") -> ScenarioError? {
        do {
            _ = try Scenario.parse(text, file: file)
            return nil
        } catch {
            return error as? ScenarioError
        }
    }

    func testUnknownFieldNamesLineAndField() {
        let e = error("""
        name: bad
        steps:
          - spawn: p
          - mmap: data
            process: p
            sise: 1GiB
        """)
        XCTAssertEqual(e?.line, 6)
        XCTAssertEqual(e?.field, "steps[2].mmap.sise")
        XCTAssertEqual(e?.description.hasPrefix("bad.yaml:6: steps[2].mmap.sise: unknown field 'sise'; expected one of: mmap, note, process, size"), true, e?.description ?? "")
    }

    func testBadValueMissingFieldAndBadAction() {
        let bad = error("steps:\n  - spawn: p\n  - mmap: d\n    process: p\n    size: big\n")
        XCTAssertEqual(bad?.line, 5)
        XCTAssertEqual(bad?.field, "steps[2].mmap.size")
        XCTAssertTrue(bad?.message.contains("got 'big'") ?? false)
        let missing = error("steps:\n  - spawn: p\n  - mmap: d\n    process: p\n")
        XCTAssertEqual(missing?.line, 3)
        XCTAssertEqual(missing?.field, "steps[2].mmap.size")
        let noAction = error("steps:\n  - process: p\n")
        XCTAssertEqual(noAction?.line, 2)
        XCTAssertTrue(noAction?.message.hasPrefix("a step starts with its action") ?? false)
        let mode = error("machine:\n  ram: 8GiB\n  overcommit: sometimes\nsteps: []\n")
        XCTAssertEqual(mode?.line, 3)
        XCTAssertEqual(mode?.field, "machine.overcommit")
        let huge = error("machine:\n  ram: 8TiB\nsteps: []\n")
        XCTAssertEqual(huge?.line, 2)
        XCTAssertEqual(huge?.field, "machine.ram")
        let top = error("nmae: x\nsteps: []\n")
        XCTAssertEqual(top?.description, "bad.yaml:1: nmae: unknown field 'nmae'; expected one of: name, description, machine, cgroups, files, steps, expect")
        let adj = error("steps:\n  - spawn: p\n  - oom_score_adj: p\n    value: 2000\n")
        XCTAssertEqual(adj?.line, 4)
        XCTAssertEqual(error("steps: [")?.line != nil, true, "YAML syntax errors carry a line")
    }

    func testJSONErrorsCarryLinesToo() {
        let e = error("""
        {
          "name": "j",
          "steps": [
            {"spawn": "p"},
            {"mmap": "d", "process": "p", "size": "lots"}
          ]
        }
        """, file: "s.json")
        XCTAssertEqual(e?.line, 5)
        XCTAssertEqual(e?.field, "steps[2].mmap.size")
    }

    func testSizesAndAmounts() {
        XCTAssertEqual(ScenarioReader.amount("2GiB"), .bytes(2 << 30))
        XCTAssertEqual(ScenarioReader.amount("10 GB"), .bytes(10_000_000_000))
        XCTAssertEqual(ScenarioReader.amount("512m"), .bytes(512 << 20))
        XCTAssertEqual(ScenarioReader.amount("4096"), .bytes(4096))
        XCTAssertEqual(ScenarioReader.amount("10 pages"), .pages(10))
        XCTAssertEqual(ScenarioReader.amount("5%", percentAllowed: true), .percent(5))
        XCTAssertNil(ScenarioReader.amount("5%"))
        XCTAssertNil(ScenarioReader.amount("-1"))
        XCTAssertEqual(Scenario.Amount.percent(5).resolve(in: 10 << 30), 131_072 * 4096)
        XCTAssertEqual(Scenario.Amount.percent(50).resolve(in: 3 * 4096), 4096, "whole pages, rounded down")
    }

    /// A user scenario using most actions, in YAML and the same in JSON.
    func testUserScenarioRunsInYAMLAndJSON() throws {
        let yaml = """
        name: mine
        description: a bit of everything
        machine: {ram: 1GiB, overcommit: never, overcommit_ratio: 100, thp: never}
        cgroups: [{name: box, limit: 512MiB}]
        files: [{name: db.file, size: 64KiB}]
        steps:
          - spawn: p
            pid: 500
            cgroup: box
          - mmap: buf
            process: p
            size: 64KiB
          - write: buf
            process: p
          - mmap: ro
            process: p
            size: 16KiB
            prot: r
          - mprotect: ro
            process: p
            prot: rw
          - mmap: db
            process: p
            file: db.file
            size: 64KiB
            shared: true
          - write: db
            process: p
            length: 50%
          - madvise: buf
            process: p
            advice: wipeonfork
          - fork: p
            child: c
          - read: buf
            process: c
          - write: db
            process: c
            length: 4 pages
          - oom_score_adj: c
            value: 500
          - exec: c
            comm: sh
          - brk: heap
            process: c
            size: 8KiB
          - write: heap
            process: c
          - write: nowhere
            process: c
          - exit: c
          - munmap: ro
            process: p
        expect:
          - copies: {process: c, equals: 0}
          - alive: p
          - failed_steps: 1
        """
        let s = try Scenario.parse(yaml, file: "mine.yaml")
        XCTAssertEqual(s.machine.overcommitMode, .never)
        XCTAssertEqual(s.machine.ramBytes, 1 << 30)
        let r = try ScenarioRunner.run(s)
        for e in r.expectations { XCTAssertTrue(e.passed, "\(e.check): \(e.actual)") }
        XCTAssertEqual(r.steps[2].faults, ["anon-page": 16])
        XCTAssertEqual(r.steps[6].faults, ["shared-write": 8])
        XCTAssertEqual(r.steps[9].faults, ["zero-page": 16], "WIPEONFORK: the child reads zeroes")
        XCTAssertEqual(r.steps[10].faults, ["shared-write": 4])
        XCTAssertEqual(r.steps[15].error, "c has no region named 'nowhere'")
        // Committed_AS: buf 16 + ro 4 (after mprotect) pages; the child's 16 + 2 heap pages are gone with it.
        XCTAssertEqual(r.steps[16].host.committedASKB, (16 + 4) * 4)
        XCTAssertEqual(r.host.committedASKB, 16 * 4)
        XCTAssertEqual(r.processes.first { $0.name == "c" }?.comm, "sh")

        let json = """
        {"name": "mine-json",
         "machine": {"ram": "2GiB"},
         "steps": [
           {"spawn": "p"},
           {"mmap": "d", "process": "p", "size": "1GiB"},
           {"write": "d", "process": "p"},
           {"fork": "p", "child": "c"},
           {"write": "d", "process": "c", "length": "10 pages"}
         ],
         "expect": [{"copies": {"process": "c", "equals": 10}}]}
        """
        let rj = try ScenarioRunner.run(try Scenario.parse(json, file: "mine.json"))
        XCTAssertTrue(rj.passed)
        XCTAssertEqual(rj.steps[4].faults, ["copy": 10])
    }

    func testFailedExpectationIsReported() throws {
        let s = try Scenario.parse("steps:\n  - spawn: p\nexpect:\n  - killed: p\n")
        let r = try ScenarioRunner.run(s)
        XCTAssertFalse(r.passed)
        XCTAssertEqual(r.expectations, [.init(check: "p is killed by the OOM killer", actual: "alive", passed: false)])
        XCTAssertTrue(r.text().contains("FAIL expect p is killed by the OOM killer (got alive)"))
    }

    func testJSONReportEncodes() throws {
        let r = try ScenarioRunner.run(try XCTUnwrap(try Scenario.builtin(named: "increment")))
        let data = try JSONEncoder().encode(r)
        let back = try JSONDecoder().decode(ScenarioReport.self, from: data)
        XCTAssertEqual(back.steps.count, r.steps.count)
        XCTAssertEqual(back.processes, r.processes)
    }
}
