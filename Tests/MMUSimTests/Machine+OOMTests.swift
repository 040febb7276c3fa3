@testable import MMUSim
import XCTest

final class MachineOOMTests: XCTestCase {
    /// 1 GiB, no swap: totalpages = 262144, totalpages/1000 = 262.
    /// A 1000-page mapping (PMD-aligned) uses 2 PTE tables + 1 PMD + 1 PUD: badness = 1000 + 4 = 1004.
    func testOOMScoreFormula() throws {
        let m = Machine(MachineConfiguration(ramBytes: 1 * GiB))
        let p = try m.spawn(comm: "p")
        let empty = try m.spawn(comm: "idle")
        try m.write(p, try m.anon(p, 1000 * page), length: 1000 * page)
        XCTAssertEqual(m.oomBadness(p), 1004)
        // (1000 + 1004*1000/262144) * 2/3 = (1000 + 3) * 2/3 = 668
        XCTAssertEqual(m.oomScore(p), 668)
        XCTAssertEqual(m.oomScore(empty), 666)
        try m.setOOMScoreAdj(p, 500)
        // badness = 1004 + 500*262 = 132004; 132004000/262144 = 503; (1503)*2/3 = 1002
        XCTAssertEqual(m.oomBadness(p), 132_004)
        XCTAssertEqual(m.oomScore(p), 1002)
        try m.setOOMScoreAdj(p, -500)
        // badness = 1004 - 131000 = -129996; -129996000/262144 = -495 (C truncation); 505*2/3 = 336
        XCTAssertEqual(m.oomScore(p), 336)
        try m.setOOMScoreAdj(p, -1000)
        XCTAssertNil(m.oomBadness(p))
        XCTAssertEqual(m.oomScore(p), 0)
        let initTask = try m.spawn(comm: "init", pid: 1)
        XCTAssertNil(m.oomBadness(initTask), "init is never killed")
    }

    /// 64 MiB (16384 pages), no swap. A writes 40 MiB (10240 pages, 22 table pages), forks B.
    /// Used = 10240 + 2 x 22 = 10284, so B can copy 16384 - 10284 = 6100 pages before the OOM.
    /// Both score 10240 + 22 = 10262: a tie, and the later-scanned task (B) is killed.
    func testTieKillsTheLaterTaskTheChild() throws {
        let m = Machine(MachineConfiguration(ramBytes: 64 * MiB))
        let a = try m.spawn(comm: "big", pid: 100)
        let addr = try m.anon(a, 40 * MiB)
        try m.write(a, addr, length: 40 * MiB)
        XCTAssertEqual(m.pageTablePages(a), 22)
        let b = try m.fork(a, childPid: 101)
        XCTAssertEqual(m.usedPages, 10_284)
        let r = try m.write(b, addr, length: 40 * MiB)
        XCTAssertEqual(r.faults[.copy], 6100)
        XCTAssertEqual(r.faults[.oom], 1)
        XCTAssertTrue(r.outOfMemory)
        XCTAssertFalse(m.isAlive(b)); XCTAssertTrue(m.wasKilledByOOM(b)); XCTAssertTrue(m.isAlive(a))
        XCTAssertEqual(m.oomEvents.count, 1)
        let e = m.oomEvents[0]
        XCTAssertEqual(e.victim?.points, 10_262)
        XCTAssertEqual(e.totalPages, 16_384)
        XCTAssertEqual(e.dmesg, "Out of memory: Killed process 101 (big) total-vm:40960kB, anon-rss:40960kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:88kB oom_score_adj:0")
        XCTAssertEqual(m.usedPages, 10_262)
        // The parent owns every page again.
        XCTAssertEqual(try m.write(a, addr, length: 40 * MiB).faults[.reuse], 10_240)
    }

    /// Same, but B lowers its oom_score_adj by 1: 10262 - 16 = 10246 < 10262, so A dies.
    /// B's 6101st copy then succeeds, and its remaining 4139 pages are its alone: reuse.
    func testOOMScoreAdjMakesTheParentTheVictim() throws {
        let m = Machine(MachineConfiguration(ramBytes: 64 * MiB))
        let a = try m.spawn(comm: "big", pid: 100)
        let addr = try m.anon(a, 40 * MiB)
        try m.write(a, addr, length: 40 * MiB)
        let b = try m.fork(a, childPid: 101)
        try m.setOOMScoreAdj(b, -1)
        let r = try m.write(b, addr, length: 40 * MiB)
        XCTAssertTrue(r.completed)
        XCTAssertEqual(r.faults[.copy], 6101)
        XCTAssertEqual(r.faults[.reuse], 4139)
        XCTAssertFalse(m.isAlive(a))
        XCTAssertEqual(m.oomEvents.map { $0.victim?.pid }, [100])
        XCTAssertEqual(m.usedPages, 10_240 + 22)
    }

    func testNoKillableProcess() throws {
        let m = Machine(MachineConfiguration(ramBytes: 64 * MiB))
        let a = try m.spawn(comm: "big", oomScoreAdj: -1000)
        let addr = try m.anon(a, 40 * MiB)
        try m.write(a, addr, length: 40 * MiB)
        let b = try m.fork(a)
        XCTAssertEqual(m.oomScoreAdj(b), -1000, "inherited at fork")
        let r = try m.write(b, addr, length: 40 * MiB)
        XCTAssertTrue(r.outOfMemory)
        XCTAssertEqual(r.faults[.copy], 6100)
        XCTAssertNil(m.oomEvents.last?.victim)
        XCTAssertEqual(m.oomEvents.last?.dmesg, "Out of memory and no killable processes...")
    }

    /// A 64 MiB memory cgroup (16384 pages). A reads a 2 MiB library (512 page-cache pages, charged)
    /// and writes 48 MiB (12288 pages): usage 12800. B (forked) copies 16384 - 12800 = 3584 pages.
    /// totalpages = 16384. A: 12288 + 512 + 27 table pages = 12827. B: 12288 + 26 = 12314
    /// (fork does not copy the library's PTEs). A, the parent, is killed.
    func testMemoryCgroupOOMKillsTheParentWithMoreRSS() throws {
        let m = Machine()
        try m.createCgroup("box", limitBytes: 64 * MiB)
        let a = try m.spawn(comm: "redis-server", pid: 200, cgroup: "box")
        let lib = m.createFile("libc.so.6", size: 2 * MiB)
        let text = try m.mmap(a, length: 2 * MiB, protection: [.read, .exec], flags: .private, file: lib)
        try m.read(a, text, length: 2 * MiB)
        let heap = try m.anon(a, 48 * MiB)
        try m.write(a, heap, length: 48 * MiB)
        XCTAssertEqual(m.cgroupUsagePages("box"), 12_800)
        XCTAssertEqual(m.pageTablePages(a), 27)
        let b = try m.fork(a, childPid: 201)
        XCTAssertEqual(m.pageTablePages(b), 26)
        let r = try m.write(b, heap, length: 48 * MiB)
        XCTAssertTrue(r.completed)
        XCTAssertEqual(r.faults[.copy], 3585)
        XCTAssertEqual(r.faults[.reuse], 12_288 - 3585)
        let e = m.oomEvents[0]
        XCTAssertEqual(e.cgroup, "box")
        XCTAssertEqual(e.totalPages, 16_384)
        XCTAssertEqual(e.victim?.points, 12_827)
        XCTAssertEqual(e.dmesg, "Memory cgroup out of memory: Killed process 200 (redis-server) total-vm:51200kB, anon-rss:49152kB, file-rss:2048kB, shmem-rss:0kB, UID:0 pgtables:108kB oom_score_adj:0")
        XCTAssertEqual(m.cgroupUsagePages("box"), 12_800, "B's 12288 pages + the cached library")
    }

    func testReclaimDropsUnmappedPageCacheBeforeKilling() throws {
        let m = Machine(MachineConfiguration(ramBytes: 16 * MiB))
        let p = try m.spawn(comm: "p")
        let f = m.createFile("big.dat", size: 8 * MiB)
        let a = try m.mmap(p, length: 8 * MiB, protection: .read, flags: .private, file: f)
        try m.read(p, a, length: 8 * MiB)
        try m.munmap(p, a, length: 8 * MiB)
        XCTAssertEqual(m.meminfo().cached, 2048)
        let b = try m.anon(p, 12 * MiB)
        XCTAssertTrue(try m.write(p, b, length: 12 * MiB).completed)
        XCTAssertTrue(m.oomEvents.isEmpty)
        // Needed: 3072 anon + 8 table pages (6 PTE + PMD + PUD) on top of 2048 cached = 5128,
        // 1032 over the 4096 pages of RAM. Reclaim frees batches of 32: 33 batches = 1056 pages.
        XCTAssertEqual(m.meminfo().cached, 2048 - 1056)
        XCTAssertEqual(m.meminfo().pageTables, 8)
        XCTAssertEqual(m.usedPages, 992 + 3072 + 8)
    }
}
