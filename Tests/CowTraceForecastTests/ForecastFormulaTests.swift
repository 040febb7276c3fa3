@testable import CowTraceForecast
import CowTraceKit
import MMUSim
import XCTest

/// Each forecast formula on numbers worked by hand.
final class ForecastFormulaTests: XCTestCase {
    let MiB: UInt64 = 1 << 20

    /// cgroup: 256 MiB limit, 183 MiB used, 8 MiB of swap left: 73 + 8 = 81 MiB.
    func testCgroupHeadroomIsLimitLessUsagePlusSwapLeft() {
        let d = MemoryDomain(cgroup: "/a", limitBytes: 256 * MiB, usageBytes: 183 * MiB, swapFreeBytes: 8 * MiB,
                             overcommitMode: 0, commitHeadroomBytes: 1 << 40)
        XCTAssertEqual(d.headroomBytes, 81 * MiB)
        XCTAssertEqual(d.name, "/a")
    }

    /// Over the limit already (usage can pass memory.max briefly): no headroom but the swap.
    func testUsageAboveTheLimitLeavesOnlyTheSwap() {
        let d = MemoryDomain(cgroup: "/a", limitBytes: 100 * MiB, usageBytes: 120 * MiB, swapFreeBytes: 3 * MiB,
                             overcommitMode: 1, commitHeadroomBytes: 0)
        XCTAssertEqual(d.headroomBytes, 3 * MiB)
    }

    /// Mode 2: the commit headroom (CommitLimit − Committed_AS = 50 MiB) caps 8 GiB − 2 GiB + 1 GiB.
    func testOvercommitNeverCapsTheHeadroomAtTheCommitHeadroom() {
        let d = MemoryDomain(cgroup: nil, limitBytes: 8 << 30, usageBytes: 2 << 30, swapFreeBytes: 1 << 30,
                             overcommitMode: 2, commitHeadroomBytes: 50 << 20)
        XCTAssertEqual(d.headroomBytes, 50 * MiB)
        XCTAssertEqual(d.name, "host")
        let negative = MemoryDomain(cgroup: nil, limitBytes: 8 << 30, usageBytes: 2 << 30, swapFreeBytes: 0,
                                    overcommitMode: 2, commitHeadroomBytes: -5)
        XCTAssertEqual(negative.headroomBytes, 0)
    }

    /// /proc/meminfo in kB becomes bytes; HugePages_Total has no unit and stays a count.
    func testMeminfoIsReadInBytes() {
        let m = MemoryDomain.meminfo("MemTotal:       24576000 kB\nMemAvailable:   20000000 kB\nHugePages_Total:       4\n")
        XCTAssertEqual(m["MemTotal"], 24_576_000 * 1024)
        XCTAssertEqual(m["MemAvailable"], 20_000_000 * 1024)
        XCTAssertEqual(m["HugePages_Total"], 4)
    }

    /// oom_badness: rss 46176 + 1150, swap 0, page tables 434176 B = 106 pages, adj 0 → 47432;
    /// with adj 800 in a 65536-page domain: + 800 × 65 = 52000 → 99432 (+ 1000 → exempt: nil).
    func testBadnessArithmetic() {
        XCTAssertEqual(Machine.oomBadness(rssPages: 47326, swapPages: 0, pageTablePages: 106, oomScoreAdj: 0, totalPages: 65536), 47432)
        XCTAssertEqual(Machine.oomBadness(rssPages: 47326, swapPages: 0, pageTablePages: 106, oomScoreAdj: 800, totalPages: 65536), 99432)
        XCTAssertNil(Machine.oomBadness(rssPages: 1, swapPages: 0, pageTablePages: 0, oomScoreAdj: -1000, totalPages: 65536))
    }

    /// The kernel's choice in ForecastCLITests' fork (dmesg, 6.18): parent 47326 rss pages, 434176 B
    /// of page tables; child 46385 and 430080 B. The parent has more points: it is chosen.
    func testLikelyVictimIsTheHighestBadnessAndATieGoesToTheLaterPid() {
        let page: UInt64 = 4096
        let parent = ProcessMemory(pid: 22841, comm: "p", anonBytes: 46176 * page, fileBytes: 1150 * page,
                                   pageTableBytes: 434176, copyableBytes: 0)
        let child = ProcessMemory(pid: 22850, comm: "c", anonBytes: 46252 * page, fileBytes: 133 * page,
                                  pageTableBytes: 430080, copyableBytes: 0)
        XCTAssertEqual(LiveForkForecaster.likelyVictim([child, parent], totalPages: 65536, pageSize: page)?.pid, 22841)
        var twin = parent
        twin.pid = 22900
        XCTAssertEqual(LiveForkForecaster.likelyVictim([twin, parent], totalPages: 65536, pageSize: page)?.pid, 22900)
        var adj = child
        adj.oomScoreAdj = 800
        XCTAssertEqual(LiveForkForecaster.likelyVictim([adj, parent], totalPages: 65536, pageSize: page)?.pid, 22850)
    }

    /// smaps: only rw-p mappings count; Anonymous is copyable, Rss − Anonymous of a file mapping is
    /// its page cache not yet copied, Size is what a fork commits again.
    func testPrivateWritableFromSmaps() {
        let smaps = """
            55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/x
            Size:                  4 kB
            Rss:                   4 kB
            Anonymous:             0 kB
            55d0c0002000-55d0c0006000 rw-p 00002000 08:01 1234 /usr/bin/x
            Size:                 16 kB
            Rss:                  12 kB
            Anonymous:             8 kB
            7f0000000000-7f0000100000 rw-p 00000000 00:00 0
            Size:               1024 kB
            Rss:                 512 kB
            Anonymous:           512 kB
            7f1000000000-7f1000100000 rw-s 00000000 00:01 99 /dev/shm/x
            Size:               1024 kB
            Rss:                1024 kB
            Anonymous:             0 kB
            """
        let s = ProcessMemory.privateWritable(smaps: smaps)
        XCTAssertEqual(s.anon, (8 + 512) * 1024)
        XCTAssertEqual(s.file, 4 * 1024)
        XCTAssertEqual(s.size, (16 + 1024) * 1024)
    }

    /// /proc/PID/cgroup: v1's memory line wins on a hybrid host; else v2's 0:: line.
    func testMemoryCgroupPath() {
        XCTAssertEqual(ProcessMemory.memoryCgroupPath("12:pids:/x\n4:memory:/system.slice/redis.service\n0::/user.slice\n"), "/system.slice/redis.service")
        XCTAssertEqual(ProcessMemory.memoryCgroupPath("0::/system.slice/redis-server.service\n"), "/system.slice/redis-server.service")
        XCTAssertNil(ProcessMemory.memoryCgroupPath("garbage"))
    }

    /// shared = the child's anon rss less both sides' copies since the fork; rate over the window;
    /// seconds = headroom / rate. Worked: 180 MiB anon, 1024 + 256 pages copied → 175 MiB shared.
    func testForkRiskFigures() {
        let r = ForkRisk(parentPID: 1, childPID: 2, domain: "/a", sharedBytes: 180 * MiB - 1280 * 4096, headroomBytes: 70 * MiB,
                         copyBytesPerSecond: Double(35 * MiB), secondsToExhaustion: Double(70 * MiB) / Double(35 * MiB),
                         atRisk: true, likelyVictimPID: 2, likelyVictimComm: "c")
        XCTAssertEqual(r.sharedBytes, 175 * MiB)
        XCTAssertEqual(r.secondsToExhaustion, 2)
        XCTAssertTrue(r.json.contains("\"seconds_to_exhaustion\":2.000"), r.json)
        XCTAssertTrue(r.json.contains("\"shared_bytes\":\(175 * MiB)"), r.json)
        XCTAssertTrue(r.text.hasPrefix("AT RISK: fork 1 -> 2 in /a: shared 175.0 MiB vs headroom 70.0 MiB, copying 35.0 MiB/s, exhausted in 2.0 s."), r.text)
    }
}
