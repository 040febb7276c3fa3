@testable import MMUSim
import XCTest

final class MachineForkTests: XCTestCase {
    /// KERNEL-NOTES "refcount walk": fork makes mapcount 2 / refcount 2 and clears
    /// exclusive; the first writer copies; the other then finds refcount 1 and reuses.
    func testRefcountWalk() throws {
        let m = Machine()
        let p = try m.spawn(comm: "parent")
        let a = try m.anon(p, 4 * page)
        XCTAssertEqual(try m.write(p, a, length: 4 * page).faults[.anonymousPage], 4)
        let original = m.frameInfo(p, a)!
        XCTAssertEqual([original.refcount, original.mapcount], [1, 1])
        XCTAssertTrue(original.isAnonExclusive)

        let c = try m.fork(p)
        let shared = m.frameInfo(p, a)!
        XCTAssertEqual([shared.refcount, shared.mapcount], [2, 2])
        XCTAssertFalse(shared.isAnonExclusive)
        XCTAssertEqual(m.frameInfo(c, a)!.frame, original.frame)
        XCTAssertFalse(m.pageTableEntry(p, a)!.isWritable, "parent write-protected")
        XCTAssertFalse(m.pageTableEntry(c, a)!.isWritable, "child write-protected")
        XCTAssertTrue(m.pageTableEntry(c, a)!.isDirty, "private PTEs keep the dirty bit")
        XCTAssertFalse(m.pageTableEntry(c, a)!.isYoung, "child PTEs are old")
        XCTAssertEqual(m.rss(c).anon, 4)
        XCTAssertEqual(m.pageTablePages(c), 3, "PUD + PMD + PTE table copied")

        // Child writes first: copy.
        XCTAssertEqual(try m.write(c, a, length: 1).faults[.copy], 1)
        let copy = m.frameInfo(c, a)!
        XCTAssertNotEqual(copy.frame, original.frame)
        XCTAssertEqual([copy.refcount, copy.mapcount], [1, 1])
        XCTAssertTrue(copy.isAnonExclusive)
        XCTAssertEqual([m.frameInfo(frame: original.frame).refcount, m.frameInfo(frame: original.frame).mapcount], [1, 1])
        // Parent still faults (read-only PTE) but reuses.
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.reuse], 1)
        XCTAssertTrue(m.frameInfo(p, a)!.isAnonExclusive)
        // Page 1 the other way round: parent copies, child reuses.
        XCTAssertEqual(try m.write(p, a + page, length: 1).faults[.copy], 1)
        XCTAssertEqual(try m.write(c, a + page, length: 1).faults[.reuse], 1)
        XCTAssertEqual(m.vmstat.pgreuse, 2)
        XCTAssertEqual(m.meminfo().anonPages, 6, "4 originals + 2 copies")
        XCTAssertEqual(m.faults(c).copies, 1)
    }

    func testForkThenExecCopiesNothing() throws {
        let m = Machine()
        let p = try m.spawn(comm: "big")
        let a = try m.anon(p, 64 * MiB)
        try m.write(p, a, length: 64 * MiB)
        let before = m.meminfo().anonPages
        let c = try m.fork(p)
        try m.exec(c, comm: "ls")
        XCTAssertEqual(m.faults(c).copies, 0)
        XCTAssertEqual(m.meminfo().anonPages, before)
        XCTAssertEqual(m.rss(c), RSSCounters())
        XCTAssertEqual(m.comm(c), "ls")
        // The parent's pages are its own again: every write is a reuse.
        let r = try m.write(p, a, length: 64 * MiB)
        XCTAssertEqual(r.faults[.reuse], 16384)
        XCTAssertEqual(r.faults.copies, 0)
    }

    func testPinnedPagesAreCopiedAtFork() throws {
        let m = Machine()
        let p = try m.spawn(comm: "dma")
        let a = try m.anon(p, 2 * page)
        try m.write(p, a, length: 2 * page)
        try m.pin(p, a, length: page)
        XCTAssertEqual(m.frameInfo(p, a)!.refcount, 1025)
        let c = try m.fork(p)
        XCTAssertEqual(m.vmstat.pinnedCopiedAtFork, 1)
        XCTAssertNotEqual(m.frameInfo(c, a)!.frame, m.frameInfo(p, a)!.frame)
        XCTAssertTrue(m.pageTableEntry(p, a)!.isWritable, "the pinned page stays writable in the parent")
        XCTAssertTrue(m.pageTableEntry(c, a)!.isWritable)
        XCTAssertNil(try m.fault(p, at: a, write: true))
        XCTAssertNil(try m.fault(c, at: a, write: true))
        // The unpinned page is shared as usual.
        XCTAssertEqual(m.frameInfo(c, a + page)!.frame, m.frameInfo(p, a + page)!.frame)
        XCTAssertEqual(m.frameInfo(p, a + page)!.mapcount, 2)
    }

    func testDontForkAndWipeOnFork() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, page), b = try m.anon(p, page)
        try m.store(p, a, 42); try m.store(p, b, 43)
        try m.madvise(p, a, length: page, .dontFork)
        try m.madvise(p, b, length: page, .wipeOnFork)
        XCTAssertEqual(m.committedPages, 2)
        let c = try m.fork(p)
        XCTAssertEqual(m.committedPages, 3, "the DONTFORK VMA is not charged for the child")
        XCTAssertEqual(try m.read(c, a, length: 1).faults[.segv], 1)
        XCTAssertEqual(try m.load(c, b), 0, "wiped: the child sees zero-fill")
        XCTAssertEqual(m.faults(c)[.zeroPage], 1)
        XCTAssertEqual(try m.load(p, b), 43)
        XCTAssertEqual(m.totalVMPages(c), 1)
    }

    func testFileMappingsWithoutAnonVMAAreNotCopiedAtFork() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let lib = m.createFile("libc.so", size: 2 * MiB)
        let text = try m.mmap(p, length: 2 * MiB, protection: [.read, .exec], flags: .private, file: lib)
        try m.read(p, text, length: 2 * MiB)
        XCTAssertEqual(m.rss(p).file, 512)
        let c = try m.fork(p)
        XCTAssertEqual(m.rss(c).file, 0, "pure file mappings refault in the child")
        XCTAssertEqual(m.pageTablePages(c), 0)
        XCTAssertEqual(try m.read(c, text, length: 2 * MiB).faults[.fileRead], 512)
        XCTAssertEqual(m.frameInfo(c, text)!.mapcount, 2)
    }

    func testTransparentHugePageSplitsAndCopies4KiB() throws {
        let m = Machine(MachineConfiguration(transparentHugePages: .always))
        let p = try m.spawn(comm: "thp")
        let a = try m.anon(p, 4 * MiB)
        XCTAssertEqual(a % (2 * MiB), 0, "large anonymous mappings are PMD aligned")
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.hugePage], 1)
        XCTAssertEqual(m.rss(p).anon, 512)
        XCTAssertTrue(m.pageTableEntry(p, a)!.isHuge)
        XCTAssertEqual(m.pageTablePages(p), 3, "PUD + PMD + the deposited PTE table")
        XCTAssertEqual(try m.write(p, a, length: 2 * MiB).faults.total, 0)
        // A read of the second 2 MiB maps the huge zero page.
        XCTAssertEqual(try m.read(p, a + 2 * MiB, length: 1).faults[.hugeZeroPage], 1)
        XCTAssertEqual(m.rss(p).anon, 512)

        let c = try m.fork(p)
        XCTAssertEqual(m.rss(c).anon, 512)
        XCTAssertEqual(m.frameInfo(p, a + 5 * page)!.mapcount, 2)
        // The child writes one 4 KiB page: the PMD is split, one 4 KiB copy.
        m.faultLog = []
        let w = try m.write(c, a + 5 * page, length: 1)
        XCTAssertEqual(m.faultLog, [FaultRecord(pid: c, address: a + 5 * page, errorCode: 0x7, faultClass: .copy, onHugePMD: true)])
        XCTAssertTrue(m.faultLog![0].isWriteProtectFault)
        m.faultLog = nil
        XCTAssertEqual(w.faults[.copy], 1); XCTAssertEqual(w.faults.total, 1)
        XCTAssertEqual(m.vmstat.thpSplitPMD, 1)
        XCTAssertFalse(m.pageTableEntry(c, a)!.isHuge)
        XCTAssertEqual(m.rss(c).anon, 512)
        XCTAssertEqual(m.meminfo().anonPages, 513)
        XCTAssertTrue(m.pageTableEntry(p, a)!.isHuge, "the parent's PMD is untouched")
        // The parent writes page 5: not all subpages have refcount 1 -> split; page 5 is the parent's alone -> reuse.
        XCTAssertEqual(try m.write(p, a + 5 * page, length: 1).faults[.reuse], 1)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.copy], 1)
        XCTAssertEqual(m.vmstat.thpSplitPMD, 2)
        // Write to the huge zero page: split to 512 zero-page PTEs, zero-fill 4 KiB.
        XCTAssertEqual(try m.write(p, a + 2 * MiB, length: 1).faults[.zeroFill], 1)
        XCTAssertEqual(m.vmstat.thpSplitPMD, 3)
        XCTAssertTrue(m.pageTableEntry(p, a + 2 * MiB + page)!.isSpecial)
        // An exclusive huge page is reused whole.
        let q = try m.spawn(comm: "q")
        let b = try m.anon(q, 2 * MiB)
        try m.write(q, b, length: 1)
        let cq = try m.fork(q)
        try m.exit(cq)
        XCTAssertEqual(try m.write(q, b, length: 2 * MiB).faults[.reuse], 1)
        XCTAssertTrue(m.pageTableEntry(q, b)!.isHuge && m.pageTableEntry(q, b)!.isWritable)
    }

    func testExitFreesEverything() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 8 * MiB)
        try m.write(p, a, length: 8 * MiB)
        let c = try m.fork(p)
        try m.write(c, a, length: 4 * MiB)
        XCTAssertEqual(m.meminfo().anonPages, 2048 + 1024)
        try m.exit(p)
        try m.exit(c)
        let info = m.meminfo()
        XCTAssertEqual([info.used, info.anonPages, info.pageTables, info.committedAS], [0, 0, 0, 0])
        XCTAssertFalse(m.isAlive(p))
        XCTAssertThrowsError(try m.write(p, a, length: 1)) { XCTAssertEqual($0 as? MMError, .noSuchProcess(p)) }
    }
}
