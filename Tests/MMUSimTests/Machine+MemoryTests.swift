@testable import MMUSim
import XCTest

final class MachineMemoryTests: XCTestCase {
    func testMprotectWriteProtectsAndUpgradesOnlyExclusiveAnonPages() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 2 * page)
        try m.write(p, a, length: 2 * page)
        try m.mprotect(p, a, length: 2 * page, protection: .read)
        XCTAssertFalse(m.pageTableEntry(p, a)!.isWritable)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.segv], 1)
        let c = try m.fork(p)
        try m.mprotect(p, a, length: 2 * page, protection: .readWrite)
        // Shared with the child: not exclusive, so the PTE stays read-only and the write faults (copy).
        XCTAssertFalse(m.pageTableEntry(p, a)!.isWritable)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.copy], 1)
        try m.exit(c)
        // Page 1 is now the parent's alone (refcount 1) but not marked exclusive: still a (reuse) fault.
        XCTAssertEqual(try m.write(p, a + page, length: 1).faults[.reuse], 1)
        // An exclusive page is upgraded by mprotect itself: no fault at all.
        try m.mprotect(p, a, length: 2 * page, protection: .read)
        try m.mprotect(p, a, length: 2 * page, protection: .readWrite)
        XCTAssertTrue(m.pageTableEntry(p, a)!.isWritable)
        XCTAssertNil(try m.fault(p, at: a, write: true))
    }

    func testMunmapSplitsVMAsAndFreesPageTablesNoVMANeeds() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 6 * MiB) // 2 MiB aligned: three PTE tables
        try m.write(p, a, length: 6 * MiB)
        XCTAssertEqual(m.pageTablePages(p), 3 + 1 + 1)
        // Unmap the middle 2 MiB: its PTE table goes, the neighbours stay.
        try m.munmap(p, a + 2 * MiB, length: 2 * MiB)
        XCTAssertEqual(m.vmas(p).map { $0.end - $0.start }, [2 * MiB, 2 * MiB])
        XCTAssertEqual(m.pageTablePages(p), 2 + 1 + 1)
        XCTAssertEqual(m.rss(p).anon, 1024)
        XCTAssertEqual(m.committedPages, 1024)
        // Unmap 4 KiB inside the first 2 MiB: the table stays (the rest of the VMA uses it).
        try m.munmap(p, a + page, length: page)
        XCTAssertEqual(m.vmas(p).count, 3)
        XCTAssertEqual(m.pageTablePages(p), 4)
        XCTAssertEqual(try m.read(p, a + page, length: 1).segvAddress, a + page)
        try m.munmap(p, a, length: 6 * MiB)
        XCTAssertEqual(m.pageTablePages(p), 0)
        XCTAssertEqual(m.meminfo().used, 0)
    }

    func testMadviseDontneedDropsPagesAndTheNextReadIsZero() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 4 * page)
        try m.store(p, a, 7)
        try m.madvise(p, a, length: 4 * page, .dontNeed)
        XCTAssertEqual(m.rss(p).anon, 0)
        XCTAssertEqual(try m.load(p, a), 0)
        XCTAssertEqual(m.faults(p)[.zeroPage], 1)
    }

    func testSharedAnonymousIsChargedOnceAndFreedWithItsLastMapping() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let s = try m.mmap(p, length: 8 * page, protection: .readWrite, flags: [.shared, .anonymous])
        try m.write(p, s, length: 8 * page)
        XCTAssertEqual(m.committedPages, 8)
        let c = try m.fork(p)
        XCTAssertEqual(m.committedPages, 8)
        try m.write(c, s, length: 8 * page)
        XCTAssertEqual(m.faults(c)[.sharedWrite], 8)
        XCTAssertEqual(m.rss(c).shmem, 8)
        XCTAssertEqual(m.meminfo().shmem, 8)
        try m.exit(p)
        XCTAssertEqual(m.meminfo().shmem, 8, "the child still maps it")
        try m.exit(c)
        XCTAssertEqual(m.meminfo().shmem, 0)
        XCTAssertEqual(m.committedPages, 0)
        XCTAssertEqual(m.meminfo().used, 0)
    }

    func testTHPMadviseModeAndExecResetsTheAddressSpace() throws {
        let m = Machine(MachineConfiguration(transparentHugePages: .madvise))
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 4 * MiB)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.anonymousPage], 1, "madvise mode: no THP without MADV_HUGEPAGE")
        try m.madvise(p, a + 2 * MiB, length: 2 * MiB, .hugePage)
        XCTAssertEqual(try m.write(p, a + 2 * MiB, length: 1).faults[.hugePage], 1)
        XCTAssertEqual(m.vmstat.thpFaultAlloc, 1)
        // Unmapping half of a huge page splits it first.
        try m.munmap(p, a + 3 * MiB, length: 1 * MiB)
        XCTAssertEqual(m.rss(p).anon, 1 + 256)
        XCTAssertEqual(m.vmstat.thpSplitPMD, 1)
        try m.exec(p, comm: "a-very-long-command-name")
        XCTAssertEqual(m.comm(p), "a-very-long-com", "TASK_COMM_LEN")
        XCTAssertEqual(m.vmas(p), [])
        XCTAssertEqual(m.meminfo().anonPages, 0)
        XCTAssertEqual(m.committedPages, 0)
    }

    func testFaultLogErrorCodesForSIGSEGV() throws {
        let m = Machine()
        m.faultLog = []
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, page)
        try m.write(p, a, length: 1)
        try m.mprotect(p, a, length: page, protection: .read)
        try m.write(p, a, length: 1)          // present page, read-only VMA: 0x7 then SIGSEGV
        try m.write(p, 0x20_0000, length: 1)  // nothing mapped: 0x6
        XCTAssertEqual(m.faultLog!.map(\.errorCode), [0x6, 0x7, 0x6])
        XCTAssertEqual(m.faultLog!.map(\.faultClass), [.anonymousPage, .segv, .segv])
    }

    func testCgroupChargesAreReturnedAtExit() throws {
        let m = Machine()
        try m.createCgroup("box", limitBytes: 8 * MiB)
        let p = try m.spawn(comm: "p", cgroup: "box")
        let a = try m.anon(p, 4 * MiB)
        try m.write(p, a, length: 4 * MiB)
        XCTAssertEqual(m.cgroupUsagePages("box"), 1024)
        let q = try m.spawn(comm: "q")
        try m.attach(q, toCgroup: "box")
        try m.write(q, try m.anon(q, 5 * MiB), length: 5 * MiB)
        // The limit is 2048 pages; the OOM comes at q's 1025th page. Then p = 1024 pages + 4 table pages
        // (2 PTE + PMD + PUD) = 1028 and q = 1024 + 5 = 1029: the walk for the 1025th page allocated
        // q's third PTE table before the page itself. q scores higher and dies.
        XCTAssertFalse(m.isAlive(q))
        XCTAssertEqual(m.oomEvents.count, 1)
        XCTAssertEqual(m.oomEvents[0].victim?.points, 1029)
        XCTAssertEqual(m.oomEvents[0].victim?.pid, q)
        XCTAssertEqual(m.oomEvents[0].totalPages, 2048)
        XCTAssertEqual(m.cgroupUsagePages("box"), 1024)
        try m.exit(p)
        XCTAssertEqual(m.cgroupUsagePages("box"), 0)
        XCTAssertThrowsError(try m.spawn(comm: "r", cgroup: "nope"))
    }
}
