@testable import MMUSim
import XCTest

/// The calls CowTraceReplay uses to rebuild processes found running and to fix
/// up state a recording could not show (Machine+Replay.swift).
final class MachineReplayTests: XCTestCase {
    let base: UInt64 = 0x7f00_1000_0000

    func testAdoptedMappingAndExclusivePagesAreReusedOnWrite() throws {
        let m = Machine()
        let p = try m.spawn(comm: "found", pid: 500)
        try m.adoptMapping(p, start: base, end: base + 4 * page, protection: .readWrite, shared: false)
        XCTAssertEqual(m.vmas(p).count, 1)
        XCTAssertTrue(m.vmas(p)[0].flags.contains(.account))
        XCTAssertEqual(m.committedPages, 4)
        XCTAssertEqual(m.vma(p, containing: base + page)?.start, base)
        XCTAssertNil(m.vma(p, containing: base + 4 * page))

        let f = try m.installPage(p, at: base, .anonymous(exclusive: true))
        XCTAssertEqual(m.frameInfo(p, base)?.frame, f)
        XCTAssertEqual([m.frameInfo(frame: f).refcount, m.frameInfo(frame: f).mapcount], [1, 1])
        XCTAssertFalse(m.pageTableEntry(p, base)!.isWritable, "installed read-only by default")
        XCTAssertEqual(m.rss(p).anon, 1)
        XCTAssertEqual(try m.fault(p, at: base, write: true)?.faultClass, .reuse)
        // Writable on request: no fault at all.
        try m.installPage(p, at: base + page, .anonymous(exclusive: true), writable: true)
        XCTAssertNil(try m.fault(p, at: base + page, write: true))
        // Already mapped.
        XCTAssertThrowsError(try m.installPage(p, at: base, .zeroPage))
        // No VMA.
        XCTAssertThrowsError(try m.installPage(p, at: base + 8 * page, .zeroPage))
    }

    /// presentFrame is frameInfo's frame, nil where frameInfo is nil or the zero page.
    func testPresentFrameMatchesFrameInfo() throws {
        let m = Machine()
        let p = try m.spawn(comm: "found", pid: 502)
        try m.adoptMapping(p, start: base, end: base + 4 * page, protection: .readWrite, shared: false)
        let f = try m.installPage(p, at: base, .anonymous(exclusive: true))
        try m.installPage(p, at: base + page, .zeroPage)
        XCTAssertEqual(m.presentFrame(p, base), f)
        XCTAssertEqual(m.presentFrame(p, base + 100), f, "any address in the page")
        XCTAssertTrue(m.frameInfo(p, base + page)!.isZeroPage)
        XCTAssertNil(m.presentFrame(p, base + page), "the zero page")
        XCTAssertNil(m.presentFrame(p, base + 2 * page), "nothing present")
        XCTAssertNil(m.presentFrame(p, base + 64 * page), "no VMA, no table")
        XCTAssertNil(m.presentFrame(999, base), "no such process")
        for a in [base, base + page, base + 2 * page] {
            let info = m.frameInfo(p, a)
            XCTAssertEqual(m.presentFrame(p, a), info.flatMap { $0.isZeroPage ? nil : $0.frame })
            XCTAssertEqual(m.pageTableEntry(p, a).flatMap { Machine.presentFrame($0, a) }, m.presentFrame(p, a))
        }
    }

    func testFramesSharedByNumberCopyThenReuse() throws {
        let m = Machine()
        let a = try m.spawn(comm: "a", pid: 600)
        let b = try m.spawn(comm: "b", pid: 601)
        for p in [a, b] { try m.adoptMapping(p, start: base, end: base + 2 * page, protection: .readWrite, shared: false) }
        let f = try m.installPage(a, at: base, .anonymous(exclusive: true))
        XCTAssertEqual(try m.installPage(b, at: base, .frame(f)), f)
        let info = m.frameInfo(frame: f)
        XCTAssertEqual([info.refcount, info.mapcount], [2, 2])
        XCTAssertFalse(info.isAnonExclusive)
        // b writes first: copy; then a is alone: reuse.
        XCTAssertEqual(try m.fault(b, at: base, write: true)?.faultClass, .copy)
        XCTAssertEqual(try m.fault(a, at: base, write: true)?.faultClass, .reuse)
        XCTAssertEqual(m.meminfo().anonPages, 2)
    }

    func testPageSharedWithAnUnknownProcessAlwaysCopies() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p", pid: 700)
        try m.adoptMapping(p, start: base, end: base + page, protection: .readWrite, shared: false)
        let f = try m.installPage(p, at: base, .anonymous(exclusive: false))
        XCTAssertEqual([m.frameInfo(frame: f).refcount, m.frameInfo(frame: f).mapcount], [2, 2])
        XCTAssertEqual(try m.fault(p, at: base, write: true)?.faultClass, .copy)
        // The other (unknown) mapper keeps the old frame.
        XCTAssertEqual([m.frameInfo(frame: f).refcount, m.frameInfo(frame: f).mapcount], [1, 1])
        XCTAssertEqual(m.meminfo().anonPages, 2)
    }

    func testZeroPageAndFilePagesInstalled() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p", pid: 800)
        try m.adoptMapping(p, start: base, end: base + page, protection: .readWrite, shared: false)
        XCTAssertEqual(try m.installPage(p, at: base, .zeroPage), 0)
        XCTAssertTrue(m.frameInfo(p, base)!.isZeroPage)
        XCTAssertEqual(try m.fault(p, at: base, write: true)?.faultClass, .zeroFill)

        let lib = m.createFile("lib.so", size: page)
        let fileAt = base + 16 * page
        // A mapping longer than the file grows it (the kernel's file was at least this long).
        try m.adoptMapping(p, start: fileAt, end: fileAt + 2 * page, protection: .readWrite, shared: false, file: lib)
        try m.installPage(p, at: fileAt + page, .file)
        XCTAssertEqual(m.rss(p).file, 1)
        XCTAssertEqual(try m.fault(p, at: fileAt + page, write: true)?.faultClass, .fileCopy)
        XCTAssertThrowsError(try m.installPage(p, at: base + page, .file), "no VMA there")

        let data = m.createFile("data", size: page)
        let sharedAt = base + 32 * page
        try m.adoptMapping(p, start: sharedAt, end: sharedAt + page, protection: .readWrite, shared: true, file: data)
        XCTAssertThrowsError(try m.installPage(p, at: sharedAt, .anonymous(exclusive: true)))
        try m.installPage(p, at: sharedAt, .file)
        XCTAssertEqual(try m.fault(p, at: sharedAt, write: true)?.faultClass, .sharedWrite)
        // Written back: write-protected again, and the next write is a shared write again.
        XCTAssertTrue(m.writeProtect(p, at: sharedAt))
        XCTAssertFalse(m.writeProtect(p, at: sharedAt))
        XCTAssertEqual(try m.fault(p, at: sharedAt, write: true)?.faultClass, .sharedWrite)
    }

    func testSharedMemoryObjectIsSharedBetweenProcesses() throws {
        let m = Machine()
        let shm = m.createSharedMemory("/dev/shm/x", size: page)
        let a = try m.spawn(comm: "a", pid: 900)
        let b = try m.spawn(comm: "b", pid: 901)
        try m.adoptMapping(a, start: base, end: base + page, protection: .readWrite, shared: true, file: shm)
        try m.adoptMapping(b, start: base + page, end: base + 2 * page, protection: .readWrite, shared: true, file: shm)
        try m.store(a, base, 42)
        XCTAssertEqual(try m.load(b, base + page), 42)
        XCTAssertEqual(m.rss(a).shmem, 1)
        // Shared anonymous with no object: a fresh one.
        try m.adoptMapping(a, start: base + 8 * page, end: base + 9 * page, protection: .readWrite, shared: true)
        XCTAssertNotNil(m.vmas(a).last?.file)
    }

    func testAdoptedHeapGrowsWithBrk() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p", pid: 1000)
        let heap: UInt64 = 0x5600_0000_0000
        try m.setBreak(p, start: heap, current: heap + 3 * page)
        try m.adoptMapping(p, start: heap, end: heap + 3 * page, protection: .readWrite, shared: false, heap: true)
        XCTAssertEqual(try m.currentBreak(p), heap + 3 * page)
        try m.brk(p, heap + 5 * page)
        XCTAssertEqual(m.vmas(p).count, 1, "the adopted heap VMA grew")
        XCTAssertEqual(m.vmas(p)[0].end, heap + 5 * page)
        try m.brk(p, heap + page)
        XCTAssertEqual(m.vmas(p)[0].end, heap + page)
    }

    func testAdoptMappingReplacesWhatWasThere() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p", pid: 1100)
        try m.adoptMapping(p, start: base, end: base + 4 * page, protection: .readWrite, shared: false)
        try m.installPage(p, at: base + page, .anonymous(exclusive: true))
        try m.adoptMapping(p, start: base + page, end: base + 2 * page, protection: .read, shared: false)
        XCTAssertEqual(m.vmas(p).map(\.start), [base, base + page, base + 2 * page])
        XCTAssertNil(m.frameInfo(p, base + page))
        XCTAssertEqual(m.rss(p).anon, 0)
        XCTAssertEqual(m.committedPages, 3)
    }

    func testMremapMovesPagesWithTheirState() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p", pid: 1200)
        let a = try m.anon(p, 8 * page)
        try m.write(p, a, length: 8 * page)
        let frames = (0..<8).map { m.frameInfo(p, a + UInt64($0) * page)!.frame }
        let dest: UInt64 = 0x6000_0000_0000
        XCTAssertEqual(try m.mremap(p, a, oldLength: 8 * page, newLength: 12 * page, to: dest), dest)
        XCTAssertEqual((0..<8).map { m.frameInfo(p, dest + UInt64($0) * page)?.frame }, frames)
        XCTAssertNil(m.frameInfo(p, a))
        XCTAssertNil(m.vma(p, containing: a))
        XCTAssertEqual(m.vma(p, containing: dest)?.end, dest + 12 * page)
        XCTAssertEqual(m.rss(p).anon, 8)
        XCTAssertEqual(m.committedPages, 12)
        XCTAssertEqual(m.totalVMPages(p), 12)
        // Still exclusive and writable: no fault; the grown part is fresh.
        XCTAssertNil(try m.fault(p, at: dest, write: true))
        XCTAssertEqual(try m.fault(p, at: dest + 8 * page, write: true)?.faultClass, .anonymousPage)
        // After fork, the moved pages are shared like any other.
        let c = try m.fork(p)
        XCTAssertEqual(try m.fault(c, at: dest + page, write: true)?.faultClass, .copy)
    }

    func testMremapInPlaceGrowAndShrink() throws {
        let m = Machine()
        let p = try m.spawn(comm: "p", pid: 1300)
        let a = try m.anon(p, 4 * page)
        try m.write(p, a, length: 4 * page)
        XCTAssertEqual(try m.mremap(p, a, oldLength: 4 * page, newLength: 2 * page), a)
        XCTAssertEqual(m.rss(p).anon, 2)
        XCTAssertEqual(m.committedPages, 2)
        XCTAssertEqual(try m.mremap(p, a, oldLength: 2 * page, newLength: 6 * page), a)
        XCTAssertEqual(m.vma(p, containing: a)?.end, a + 6 * page)
        XCTAssertEqual(m.committedPages, 6)
        // Blocked: no MREMAP_MAYMOVE, ENOMEM; with it, it moves.
        _ = try m.mmap(p, length: page, protection: .readWrite, flags: [.private, .anonymous], at: a + 6 * page)
        XCTAssertThrowsError(try m.mremap(p, a, oldLength: 6 * page, newLength: 8 * page))
        let moved = try m.mremap(p, a, oldLength: 6 * page, newLength: 8 * page, mayMove: true)
        XCTAssertNotEqual(moved, a)
        XCTAssertEqual(m.rss(p).anon, 2)
        XCTAssertNil(try m.fault(p, at: moved + page, write: true))
    }

    func testMremapOfAHugePageSplitsIt() throws {
        let m = Machine(MachineConfiguration(transparentHugePages: .always))
        let p = try m.spawn(comm: "p", pid: 1400)
        let a = try m.anon(p, 4 * MiB)
        try m.write(p, a, length: 2 * MiB)
        XCTAssertTrue(m.pageTableEntry(p, a)!.isHuge)
        let dest: UInt64 = 0x6000_0010_0000 // not 2 MiB aligned
        try m.mremap(p, a, oldLength: 2 * MiB, newLength: 2 * MiB, to: dest)
        XCTAssertFalse(m.pageTableEntry(p, dest)!.isHuge)
        XCTAssertEqual(m.rss(p).anon, 512)
        XCTAssertNil(try m.fault(p, at: dest + 511 * page, write: true))
    }

    func testGrowFile() throws {
        let m = Machine()
        let f = m.createFile("f", size: page)
        let p = try m.spawn(comm: "p", pid: 1500)
        let a = try m.mmap(p, length: 4 * page, protection: .read, flags: .private, file: f)
        XCTAssertEqual(try m.read(p, a + 2 * page, length: 1).sigbusAddress, a + 2 * page)
        try m.growFile(f, toAtLeast: 4 * page)
        XCTAssertTrue(try m.read(p, a + 2 * page, length: 1).completed)
        XCTAssertThrowsError(try m.growFile(FileID(rawValue: 99), toAtLeast: page))
    }

    func testVMAAndEntryIsVMAAndPageTableEntryInOneLookup() throws {
        let m = Machine()
        let p = try m.spawn(comm: "found", pid: 500)
        try m.adoptMapping(p, start: base, end: base + 4 * page, protection: .readWrite, shared: false)
        try m.installPage(p, at: base, .anonymous(exclusive: true))
        for a in [base, base + page, base + 4 * page, base - page] {
            let site = m.vmaAndEntry(p, containing: a)
            XCTAssertEqual(site.vma, m.vma(p, containing: a), "at \(hex(a))")
            XCTAssertEqual(site.entry, m.pageTableEntry(p, a), "at \(hex(a))")
        }
        XCTAssertNotNil(m.vmaAndEntry(p, containing: base).entry)
        XCTAssertNil(m.vmaAndEntry(p, containing: base + page).entry)
        XCTAssertNil(m.vmaAndEntry(501, containing: base).vma)
    }

    /// A fault taken at its site (`fault(at:write:)`) is the fault
    /// `fault(_:at:write:)` takes: the same record, entries, frames, counts and
    /// vmstat, on two machines built alike, for every kind of page a write or
    /// a read may find (the ones with no PTE go the full way).
    func testFaultAtASiteIsTheFaultAtThePid() throws {
        func scene() throws -> (Machine, [(Int32, UInt64)]) {
            let m = Machine(MachineConfiguration(transparentHugePages: .always))
            let p = try m.spawn(comm: "p", pid: 800)
            let c = try m.spawn(comm: "c", pid: 801)
            try m.adoptMapping(p, start: base, end: base + 8 * page, protection: .readWrite, shared: false)
            try m.adoptMapping(c, start: base, end: base + 8 * page, protection: .readWrite, shared: false)
            try m.installPage(p, at: base, .anonymous(exclusive: true))                  // reuse
            let f = try m.installPage(p, at: base + page, .anonymous(exclusive: true))  // shared: copy
            try m.installPage(c, at: base + page, .frame(f))
            try m.installPage(p, at: base + 2 * page, .zeroPage)                        // zero fill
            try m.installPage(p, at: base + 3 * page, .anonymous(exclusive: true), writable: true) // no fault
            // base + 4 * page: nothing present (do_anonymous_page at the empty PTE).
            let lib = m.createFile("lib.so", size: page)
            let fileAt = base + 16 * page
            try m.adoptMapping(p, start: fileAt, end: fileAt + page, protection: .readWrite, shared: false, file: lib)
            try m.installPage(p, at: fileAt, .file)                                     // file copy
            let data = m.createFile("data", size: page)
            let sharedAt = base + 32 * page
            try m.adoptMapping(p, start: sharedAt, end: sharedAt + page, protection: .readWrite, shared: true, file: data)
            try m.installPage(p, at: sharedAt, .file)                                   // shared write
            let readOnly = base + 48 * page
            try m.adoptMapping(p, start: readOnly, end: readOnly + page, protection: .read, shared: false)
            try m.installPage(p, at: readOnly, .anonymous(exclusive: true))             // SIGSEGV
            let huge = try m.anon(p, 4 * MiB)
            try m.write(p, huge, length: 2 * MiB)                                       // a huge PMD
            let addresses = [base, base + page, base + 2 * page, base + 3 * page, base + 4 * page, fileAt, sharedAt,
                             readOnly, huge + 8 * page, base + 64 * page]
            let sites: [(Int32, UInt64)] = addresses.map { (p, $0) } + [(c, base + page), (999, base)]
            return (m, sites)
        }
        for write in [true, false] {
            let (bySite, sites) = try scene()
            let (byPid, _) = try scene()
            for (pid, a) in sites {
                let site = bySite.faultSite(pid, containing: a + 8)
                XCTAssertEqual(site.vma, byPid.vma(pid, containing: a), "at \(hex(a))")
                XCTAssertEqual(site.entry, byPid.pageTableEntry(pid, a), "at \(hex(a))")
                XCTAssertEqual(site.processIsAlive, byPid.isAlive(pid), "at \(hex(a))")
                let full = Result { try byPid.fault(pid, at: a + 8, write: write) }
                let atSite = Result { try bySite.fault(at: site, write: write) }
                XCTAssertEqual(try? atSite.get(), try? full.get(), "write \(write) at \(hex(a))")
                XCTAssertEqual((try? atSite.get()) == nil, (try? full.get()) == nil)
                XCTAssertEqual(bySite.pageTableEntry(pid, a), byPid.pageTableEntry(pid, a), "at \(hex(a))")
                XCTAssertEqual(bySite.frameInfo(pid, a), byPid.frameInfo(pid, a), "at \(hex(a))")
                XCTAssertEqual(bySite.faults(pid), byPid.faults(pid), "at \(hex(a))")
            }
            XCTAssertEqual(bySite.vmstat, byPid.vmstat)
            XCTAssertEqual(bySite.meminfo(), byPid.meminfo())
        }
    }

    /// The shared anonymous pages as runs of consecutive addresses at
    /// consecutive frames: a page no longer shared (copied by the other
    /// mapper) or one at a frame out of line ends a run.
    func testSharedAnonymousRunsFollowAddressesAndFrames() throws {
        let m = Machine()
        let p = try m.spawn(comm: "found", pid: 700)
        try m.adoptMapping(p, start: base, end: base + 8 * page, protection: .readWrite, shared: false)
        // A frame out of line (before the others) for the seventh page.
        let other = try m.spawn(comm: "other", pid: 701)
        try m.adoptMapping(other, start: base, end: base + page, protection: .readWrite, shared: false)
        let away = try m.installPage(other, at: base, .anonymous(exclusive: true))
        var frames: [Int] = []
        for k in 0..<6 { frames.append(try m.installPage(p, at: base + UInt64(k) * page, .anonymous(exclusive: true))) }
        XCTAssertEqual(frames, Array(frames[0]..<frames[0] + 6), "installed at consecutive frames")
        XCTAssertEqual(m.sharedAnonymousRuns(p), [], "nothing shared yet")
        try m.installPage(p, at: base + 6 * page, .frame(away))
        let c = try m.fork(p, childPid: 702)
        XCTAssertEqual(m.sharedAnonymousRuns(p), [SharedPageRun(address: base, frame: frames[0], count: 6),
                                                  SharedPageRun(address: base + 6 * page, frame: away, count: 1)])
        // The child copies its third page: the parent's frame there is its own again.
        XCTAssertEqual(try m.fault(c, at: base + 2 * page, write: true)?.faultClass, .copy)
        XCTAssertEqual(m.sharedAnonymousRuns(p), [SharedPageRun(address: base, frame: frames[0], count: 2),
                                                  SharedPageRun(address: base + 3 * page, frame: frames[3], count: 3),
                                                  SharedPageRun(address: base + 6 * page, frame: away, count: 1)])
        XCTAssertEqual(m.sharedAnonymousRuns(c).map(\.count), [2, 3, 1])
        XCTAssertEqual(m.sharedAnonymousRuns(999), [], "no such process")
    }
}
