import CowTraceSelfTest
import CowTraceKit
import CowTraceTestSupport
import XCTest

/// A real memory-cgroup OOM kill on the running kernel, compared figure by
/// figure with the kernel's own "Killed process" line
/// (slack: OOMSelfTest.toleranceDescription).
final class OOMKillTests: XCTestCase {
    func testMemoryCgroupKillMatchesKernelLine() throws {
        try requireBPF()
        var options = TracerOptions()
        if let forced = ProcessInfo.processInfo.environment["COWTRACE_TIER"] { options.tier = AttachTier(rawValue: forced) }
        let result = try OOMSelfTest(options: options, workload: try Workload.locate()).run()
        print("oom test on tier \(result.tier), mark_victim(\(result.markVictimPrototype)); kernel: \(result.kernelLine?.text ?? "none")")
        let kill = try XCTUnwrap(result.kill, "no kill record for the test cgroup")
        let line = try XCTUnwrap(result.kernelLine, "no Killed process line in /dev/kmsg")
        XCTAssertEqual(kill.pid, line.pid)
        XCTAssertTrue(kill.victimRead, "the victim's task_struct was not read")
        XCTAssertGreaterThan(line.anonRSSKiB, 0, "the kernel line itself shows no anon rss")
        // The cgroup as the kernel names it in the hierarchy the host mounts (v1 or v2), with the limit the test set.
        let hierarchy = try XCTUnwrap(MemoryCgroupHierarchy.live())
        XCTAssertEqual(result.cgroupVersion, hierarchy.version)
        XCTAssertEqual(hierarchy.directory(of: kill.cgroup), result.cgroupDirectory)
        XCTAssertEqual(kill.cgroupLimitBytes, OOMSelfTest.limitBytes)
        for c in result.checks {
            XCTAssertTrue(c.passed, "\(c.name): reported \(c.reported), kernel \(c.kernel)\(c.note.map { " (\($0))" } ?? "")")
        }
        // The checks compare rss, adj, uid, cgroup and the victim: a probe that saw nothing fails several.
        XCTAssertGreaterThanOrEqual(result.checks.count, 16)
        XCTAssertEqual(result.lostRecords, 0)
    }
}

/// The kernel line parser and the tier planner need no BPF.
final class OOMParsingTests: XCTestCase {
    func testParsesKmsgRecord() throws {
        let record = "3,1234,2586333799,-;Memory cgroup out of memory: Killed process 12931 (a (b) c) total-vm:64140kB, anon-rss:49496kB, file-rss:1096kB, shmem-rss:4kB, UID:1000 pgtables:148kB oom_score_adj:-17\n SUBSYSTEM=x\n"
        let line = try XCTUnwrap(KernelOOMLine.parse(record))
        XCTAssertTrue(line.memcg)
        XCTAssertEqual(line.pid, 12931)
        XCTAssertEqual(line.comm, "a (b) c")
        XCTAssertEqual(line.totalVMKiB, 64140)
        XCTAssertEqual(line.anonRSSKiB, 49496)
        XCTAssertEqual(line.fileRSSKiB, 1096)
        XCTAssertEqual(line.shmemRSSKiB, 4)
        XCTAssertEqual(line.uid, 1000)
        XCTAssertEqual(line.pageTablesKiB, 148)
        XCTAssertEqual(line.oomScoreAdj, -17)
    }

    func testGlobalOOMLineAndGarbage() {
        let global = KernelOOMLine.parse("Out of memory: Killed process 7 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0")
        XCTAssertEqual(global?.memcg, false)
        XCTAssertNil(KernelOOMLine.parse("oom_reaper: reaped process 7 (x), now anon-rss:0kB"))
    }

    struct FakeKernel: KernelSymbols {
        var btf: Set<String> = []
        var kallsyms: Set<String> = []
        var hasKprobePMU = false
        func btfHasFunction(_ name: String) -> Bool { btf.contains(name) }
        func kallsymsHas(_ name: String) -> Bool { kallsyms.contains(name) }
    }

    func testPlanPicksThePrototype() throws {
        let new = try OOMTierPlan.plan(.tracepoint, tracepointArity: 2, kernel: FakeKernel()).get()
        XCTAssertEqual(new.programs, ["tp_mark_victim"])
        let old = try OOMTierPlan.plan(.fentry, tracepointArity: 1, kernel: FakeKernel(btf: ["oom_kill_process"])).get()
        XCTAssertEqual(old.programs, ["tp_mark_victim_pid", "fentry_oom_kill_process", "fexit_oom_kill_process"])
        XCTAssertThrowsError(try OOMTierPlan.plan(.kprobe, tracepointArity: 1, kernel: FakeKernel(kallsyms: ["oom_kill_process"])).get())
        XCTAssertThrowsError(try OOMTierPlan.plan(.tracepoint, tracepointArity: nil, kernel: FakeKernel()).get())
    }
}
