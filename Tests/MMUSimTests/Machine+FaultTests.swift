@testable import MMUSim
import XCTest

final class MachineFaultTests: XCTestCase {
    func testAnonymousReadMapsTheZeroPageAndWriteZeroFills() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, 4 * page)
        XCTAssertEqual(try m.read(p, a, length: page).faults[.zeroPage], 1)
        let pte = m.pageTableEntry(p, a)!
        XCTAssertTrue(pte.isSpecial && pte.isPresent && !pte.isWritable)
        XCTAssertEqual(pte.frame, 0)
        XCTAssertEqual(m.rss(p).anon, 0, "the zero page is not counted in RSS")
        XCTAssertEqual(m.meminfo().anonPages, 0)
        // The write is a write-protect fault on the zero page: zero-fill, not a copy.
        let w = try m.write(p, a, length: page)
        XCTAssertEqual(w.faults[.zeroFill], 1)
        XCTAssertEqual(w.faults.total, 1)
        XCTAssertEqual(m.rss(p).anon, 1)
        XCTAssertFalse(m.pageTableEntry(p, a)!.isSpecial)
        // Never-read page: a write is a first touch.
        XCTAssertEqual(try m.write(p, a + page, length: page).faults[.anonymousPage], 1)
        // A second pass faults nothing.
        XCTAssertEqual(try m.write(p, a, length: 2 * page).faults.total, 0)
        let info = m.frameInfo(p, a)!
        XCTAssertEqual(info.refcount, 1); XCTAssertEqual(info.mapcount, 1)
        XCTAssertTrue(info.isAnonExclusive)
    }

    func testWriteToReadOnlyVMAOrUnmappedAddressIsSIGSEGV() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let ro = try m.mmap(p, length: 2 * page, protection: .read, flags: [.private, .anonymous])
        let r = try m.write(p, ro + 100, length: 1)
        XCTAssertEqual(r.faults[.segv], 1)
        XCTAssertEqual(r.segvAddress, ro)
        XCTAssertFalse(r.completed)
        XCTAssertEqual(try m.read(p, 0x1000, length: 1).segvAddress, 0x1000)
        let none = try m.mmap(p, length: page, protection: .none, flags: [.private, .anonymous])
        XCTAssertEqual(try m.read(p, none, length: 1).faults[.segv], 1)
        XCTAssertEqual(m.committedPages, 0, "read-only and PROT_NONE private mappings are not charged")
    }

    func testPrivateFileMappingCopiesFromThePageCache() throws {
        let m = Machine()
        m.faultLog = []
        let p = try m.spawn(comm: "p")
        let f = m.createFile("data", size: 11 * MiB)
        let a = try m.mmap(p, length: 11 * MiB, protection: .readWrite, flags: .private, file: f)
        // Read then write page 0: do_read_fault, then do_wp_page -> wp_page_copy (error code 0x7).
        XCTAssertEqual(try m.read(p, a, length: 1).faults[.fileRead], 1)
        XCTAssertEqual(m.rss(p), RSSCounters(anon: 0, file: 1))
        let cached = m.frameInfo(p, a)!
        XCTAssertEqual(cached.refcount, 2, "page cache + one mapping")
        XCTAssertEqual(cached.mapcount, 1)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.fileCopy], 1)
        XCTAssertEqual(m.rss(p), RSSCounters(anon: 1, file: 0), "RSS moves from file to anon")
        XCTAssertEqual(m.frameInfo(frame: cached.frame).refcount, 1, "only the page cache holds it now")
        XCTAssertEqual(m.frameInfo(frame: cached.frame).mapcount, 0)
        XCTAssertEqual(m.frameInfo(p, a)!.contents, cached.contents, "contents copied")
        // Write to a never-mapped page: do_cow_fault, a not-present write (error code 0x6).
        XCTAssertEqual(try m.write(p, a + page, length: 1).faults[.fileCopy], 1)
        let codes = m.faultLog!.map(\.errorCode)
        XCTAssertEqual(codes, [0x4, 0x7, 0x6])
        XCTAssertEqual(m.faultLog!.map(\.faultClass), [.fileRead, .fileCopy, .fileCopy])
        XCTAssertEqual(m.meminfo().cached, 2)
        // Past the end of the file: SIGBUS.
        let g = m.createFile("short", size: 100)
        let b = try m.mmap(p, length: 2 * page, protection: .read, flags: .private, file: g)
        XCTAssertEqual(try m.read(p, b + page, length: 1).sigbusAddress, b + page)
    }

    func testSharedMappingsNeverCopy() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let f = m.createFile("log", size: 4 * page)
        let a = try m.mmap(p, length: 4 * page, protection: .readWrite, flags: .shared, file: f)
        XCTAssertEqual(try m.write(p, a, length: 1).faults[.sharedWrite], 1, "do_shared_fault")
        XCTAssertEqual(try m.read(p, a + page, length: 1).faults[.fileRead], 1)
        XCTAssertEqual(try m.write(p, a + page, length: 1).faults[.sharedWrite], 1, "writenotify: wp_page_shared")
        XCTAssertEqual(m.rss(p), RSSCounters(anon: 0, file: 2))
        let c = try m.fork(p)
        // Shared VMAs have no anon_vma: fork copies no PTEs; the child faults them in.
        XCTAssertEqual(m.rss(c).file, 0)
        XCTAssertEqual(try m.write(c, a, length: 1).faults[.sharedWrite], 1)
        XCTAssertEqual(try m.write(p, a, length: 2 * page).faults.total, 0, "the parent's PTEs stay writable")
        XCTAssertEqual(m.frameInfo(p, a)!.frame, m.frameInfo(c, a)!.frame)
        XCTAssertEqual(m.frameInfo(p, a)!.mapcount, 2)
        // Shared anonymous memory is shmem: mapped writable on read, counted as shmem RSS.
        let s = try m.mmap(p, length: 2 * page, protection: .readWrite, flags: [.shared, .anonymous])
        XCTAssertEqual(try m.read(p, s, length: 1).faults[.fileRead], 1)
        XCTAssertEqual(try m.write(p, s, length: 1).faults.total, 0)
        XCTAssertEqual(m.rss(p).shmem, 1)
        XCTAssertEqual(m.meminfo().shmem, 1)
    }

    func testReplayFaultReturnsOneRecordOrNil() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p")
        let a = try m.anon(p, page)
        let first = try m.fault(p, at: a + 8, write: true)
        XCTAssertEqual(first, FaultRecord(pid: p, address: a, errorCode: 0x6, faultClass: .anonymousPage))
        XCTAssertNil(try m.fault(p, at: a + 16, write: true))
        XCTAssertEqual(m.faults(p)[.anonymousPage], 1)
        XCTAssertEqual(FaultClass.count, FaultClass.allCases.count)
        XCTAssertEqual(FaultClass.allCases.compactMap(\.tracerClass), [.copy, .reuse, .zeroFill, .fileCopy, .sharedWrite, .copy])
        XCTAssertEqual(FaultClass.ksmCopy.tracerClass, .copy)
        XCTAssertNil(FaultClass.anonymousPage.tracerClass)
    }

    func testContentsFollowCopies() throws {
        // The seed's global/stack/heap example, one page each.
        let m = Machine()
        let p = try m.spawn(comm: "increment")
        let global = try m.anon(p, page), stack = try m.anon(p, page), heap = try m.anon(p, page)
        for v in [global, stack, heap] { try m.store(p, v, 0) }
        let c = try m.fork(p)
        for v in [global, stack, heap] { XCTAssertEqual(try m.increment(c, v), 1) }
        XCTAssertEqual(m.faults(c)[.copy], 3)
        for v in [global, stack, heap] { XCTAssertEqual(try m.load(p, v), 0) }
        try m.exit(c)
        for v in [global, stack, heap] { XCTAssertEqual(try m.increment(p, v), 1) }
        // The child is gone: the parent is the sole owner and reuses every page.
        XCTAssertEqual(m.faults(p)[.reuse], 3)
        XCTAssertEqual(m.faults(p)[.copy], 0)
    }
}
